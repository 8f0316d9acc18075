//! Live updates from the change stream (`EventService.WatchChanges`). Each
//! event carries its `position`: subscribing again with `after` set to the
//! last one received resumes without a gap or a repeat.

use async_graphql::{Context, ID, Json, Object, Result, Subscription as SubscriptionObject};
use c360_proto::v1 as pb;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};

use super::{
    customer::Customer,
    customer_id, session,
    types::{json_of_struct, time},
};
use crate::errors;

/// One domain event of the tenant.
pub struct ChangeEvent(pub pb::ChangeEvent);

/// One domain event of the tenant.
#[Object]
impl ChangeEvent {
    /// Where the event sits in commit order: pass it as `after` to resume after it.
    async fn position(&self) -> &str {
        &self.0.position
    }

    /// e.g. `CustomerProfileUpdatedEvent`.
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    /// Stable across redeliveries.
    async fn event_id(&self) -> &str {
        &self.0.event_id
    }

    /// The customer the event is about (for a merge, the target).
    async fn aggregate_id(&self) -> ID {
        ID(self.0.aggregate_id.clone())
    }

    /// When the change happened.
    async fn timestamp(&self) -> Option<DateTime<Utc>> {
        time(self.0.timestamp.as_ref())
    }

    /// The Kafka topic of the event.
    async fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The event's payload, shaped by the caller's role like a profile.
    async fn payload(&self) -> Json<serde_json::Value> {
        Json(json_of_struct(self.0.payload.as_ref()))
    }

    /// Payload paths shown in masked form for the caller's role.
    async fn masked_fields(&self) -> &[String] {
        &self.0.masked_fields
    }

    /// Payload paths withheld from the caller's role.
    async fn hidden_fields(&self) -> &[String] {
        &self.0.hidden_fields
    }

    /// The customer as it is now (read when asked for, not as of the event).
    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(session::loaders(ctx).profiles.load_one(self.0.aggregate_id.clone()).await?.map(Customer))
    }
}

/// The entry points for live updates.
pub struct Subscription;

/// The entry points for live updates.
#[SubscriptionObject]
impl Subscription {
    /// Every change of one customer, from now on or resumed after a position.
    async fn customer_changed(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer (profile id or global id).")] id: ID,
        #[graphql(desc = "Resume after this event's position.")] after: Option<String>,
    ) -> Result<impl Stream<Item = Result<ChangeEvent>> + use<>> {
        watch(ctx, customer_id(&id), after, None).await
    }

    /// The tenant's domain events, optionally of some types only, from now on or resumed after a position.
    async fn tenant_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only these event types (e.g. `CustomerMergedEvent`); none: all.")] types: Option<Vec<String>>,
        #[graphql(desc = "Resume after this event's position.")] after: Option<String>,
    ) -> Result<impl Stream<Item = Result<ChangeEvent>> + use<>> {
        watch(ctx, String::new(), after, types).await
    }
}

/// Opens `WatchChanges`; a failure of the stream ends the subscription with
/// that error.
async fn watch(
    ctx: &Context<'_>,
    profile_id: String,
    after: Option<String>,
    types: Option<Vec<String>>,
) -> Result<impl Stream<Item = Result<ChangeEvent>> + use<>> {
    let session = session::of(ctx);
    let request = session.request(pb::WatchChangesRequest { after_position: after.unwrap_or_default(), profile_id });
    let stream = session.events().watch_changes(request).await.map_err(|s| errors::upstream(&s))?.into_inner();
    let wanted = move |event: &pb::ChangeEvent| types.as_ref().is_none_or(|t| t.contains(&event.event_type));
    Ok(stream
        .scan(false, |ended, item| {
            let out = match item {
                _ if *ended => None,
                Ok(event) => Some(Ok(event)),
                Err(status) => {
                    *ended = true;
                    Some(Err(errors::upstream(&status)))
                }
            };
            futures::future::ready(out)
        })
        .filter_map(move |item| {
            futures::future::ready(match item {
                Ok(event) if wanted(&event) => Some(Ok(ChangeEvent(event))),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
        }))
}
