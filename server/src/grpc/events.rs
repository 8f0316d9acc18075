//! `c360.v1.EventService`: the change stream.

use std::pin::Pin;

use c360_proto::v1::{self as pb, event_service_server::EventService};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::{auth::caller, limits::WatchSlots};
use crate::{
    auth::Permission,
    convert::{json_into_struct, timestamp},
    domain::{DomainError, ProfileId},
    service::{ChangeView, Events, WatchRequest},
};

/// The gRPC face of [`Events`].
pub struct EventApi {
    events: Events,
    slots: WatchSlots,
}

impl EventApi {
    /// Serves `events`, with at most `slots` open streams per subject.
    pub fn new(events: Events, slots: WatchSlots) -> Self {
        Self { events, slots }
    }
}

/// A stream of change events.
pub type ChangeStream = Pin<Box<dyn Stream<Item = Result<pb::ChangeEvent, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for EventApi {
    type WatchChangesStream = ChangeStream;

    async fn watch_changes(&self, request: Request<pb::WatchChangesRequest>) -> Result<Response<ChangeStream>, Status> {
        let caller = caller(&request)?;
        caller.require(Permission::WatchChanges)?;
        let slot = self.slots.take(&caller)?;
        let request = request.into_inner();
        let after = Events::parse_position(&request.after_position)?;
        let profile = match request.profile_id.as_str() {
            "" => None,
            raw => Some(ProfileId::parse(raw).map_err(|e| DomainError::invalid("profile_id", e))?),
        };
        let subscription = self.events.watch(&caller, WatchRequest { after, profile }).await?;
        // The events, then the status the stream ended with (if any).
        let end = futures::stream::once(subscription.end).filter_map(|ended| ended.ok().map(|e| Err(Status::from(e))));
        let views = subscription.views;
        // The slot is given back when the stream is dropped (ended or hung up).
        let stream = ReceiverStream::new(subscription.events)
            .then(move |row| {
                let views = views.clone();
                let _slot = &slot;
                async move { Ok(change_event(views.view(row).await)) }
            })
            .chain(end);
        Ok(Response::new(Box::pin(stream)))
    }
}

fn change_event(view: ChangeView) -> pb::ChangeEvent {
    let row = &view.row;
    pb::ChangeEvent {
        position: row.pos.to_string(),
        event_type: row.event_type.clone(),
        event_id: row.event_id.to_string(),
        aggregate_id: row.aggregate_id.to_string(),
        timestamp: Some(timestamp(row.created_at)),
        subject: row.subject.clone(),
        payload: Some(json_into_struct(view.payload)),
        masked_fields: view.disclosure.masked,
        hidden_fields: view.disclosure.hidden,
    }
}
