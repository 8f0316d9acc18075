//! The change stream: a tenant's domain events from a resume position
//! (history, read from the outbox), then live (from the instance's shared
//! feed), in position order with no gap and no repeat.

use std::sync::Arc;

use tokio::sync::{
    broadcast::error::RecvError,
    mpsc::{self, error::TrySendError},
    oneshot,
};
use tokio_util::sync::CancellationToken;

use serde_json::{Map, Value};

use super::Audit;
use crate::{
    auth::{Caller, Permission, masking::Shape},
    domain::{DomainError, ProfileId, view::Disclosure},
    outbox::feed::ChangeFeed,
    store::{
        self, Store,
        outbox::{self, Stamped},
    },
};

/// Rows stamped per transaction when a subscriber starts "from now".
const STAMP_PAGE: u64 = 5_000;
/// Rows read per history query.
const HISTORY_PAGE: u64 = 500;
/// Live events waiting for a subscriber's transport before the subscriber
/// counts as slow and is dropped.
const SUBSCRIBER_BUFFER: usize = 256;

/// Change stream operations.
#[derive(Clone)]
pub struct Events {
    store: Store,
    feed: ChangeFeed,
    stop: CancellationToken,
    audit: Audit,
}

/// A running subscription: its events, then why it ended (nothing when the
/// caller hung up).
pub struct Subscription {
    /// The events, in position order, as stored: pass each through `views`.
    pub events: mpsc::Receiver<Arc<Stamped>>,
    /// Why the stream ended, sent once the events are all delivered.
    pub end: oneshot::Receiver<DomainError>,
    /// Makes the subscriber's view of each event.
    pub views: EventViews,
}

/// One change as a subscriber may see it.
#[derive(Debug, Clone)]
pub struct ChangeView {
    /// The stored event (envelope fields other than the payload).
    pub row: Arc<Stamped>,
    /// The payload, shaped by the subscriber's roles.
    pub payload: Map<String, Value>,
    /// What the shaping masked or withheld.
    pub disclosure: Disclosure,
}

/// Shapes events for one subscriber, by the access policy, and audits
/// what they revealed.
#[derive(Clone)]
pub struct EventViews {
    shape: Shape,
    caller: Caller,
    audit: Audit,
}

impl EventViews {
    /// The subscriber's view of `row`.
    pub async fn view(&self, row: Arc<Stamped>) -> ChangeView {
        let mut envelope: Value = serde_json::from_str(&row.envelope).unwrap_or_default();
        let mut payload = envelope.get_mut("payload").map(Value::take).unwrap_or_default();
        let disclosure = self.shape.event_payload(&row.event_type, &mut payload);
        let payload = match payload {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let ids = [ProfileId::from(row.aggregate_id)];
        self.audit.read(&self.caller, "change.read", ids, &disclosure.revealed, false).await;
        ChangeView { row, payload, disclosure }
    }
}

/// What a subscriber asked for.
#[derive(Debug, Clone, Default)]
pub struct WatchRequest {
    /// Resume after this position; `None`: from the next event committed.
    pub after: Option<i64>,
    /// Only this profile's events.
    pub profile: Option<ProfileId>,
}

impl Events {
    /// The stream over `store`, fed live by `feed`; streams end when `stop` fires.
    pub fn new(store: Store, feed: ChangeFeed, stop: CancellationToken, audit: Audit) -> Self {
        Self { store, feed, stop, audit }
    }

    /// Parses a resume position as clients send it back.
    pub fn parse_position(raw: &str) -> Result<Option<i64>, DomainError> {
        if raw.is_empty() {
            return Ok(None);
        }
        raw.parse::<i64>()
            .ok()
            .filter(|pos| *pos >= 0)
            .map(Some)
            .ok_or_else(|| DomainError::invalid("after_position", "not a position this service gave out"))
    }

    /// Starts a subscription: the caller's tenant's events after the
    /// requested position, then live ones, until the caller hangs up, its
    /// token expires, it falls behind or the server stops.
    pub async fn watch(&self, caller: &Caller, mut request: WatchRequest) -> Result<Subscription, DomainError> {
        caller.require(Permission::WatchChanges)?;
        // A merged id watches the profile it answers for, as every RPC given
        // one does (an id no profile has watches nothing, as before).
        if let Some(asked) = request.profile {
            let db = self.store.db();
            let load = |id: ProfileId| store::profiles::find(db, caller.tenant(), id, false);
            if let Some(found) = load(asked).await? {
                let (profile, _) = super::identity::canonical(asked, found, load).await?;
                request.profile = Some(profile.id);
            }
        }
        // Subscribe first: everything after the feed's head arrives live,
        // and history covers the rest.
        let (mut live, _) = self.feed.subscribe();
        if request.after.is_none() {
            // "From now" means after every event committed before this call:
            // stamp what the stamper has not reached yet.
            while outbox::stamp(self.store.db(), STAMP_PAGE).await?.count == STAMP_PAGE {}
        }
        let (last, pruned) = outbox::positions(self.store.db()).await?;
        let start = match request.after {
            None => last,
            Some(after) if after < pruned => return Err(gone(after, pruned)),
            Some(after) if after > last => {
                return Err(DomainError::OutOfRange(format!(
                    "position {after} is ahead of the last event ({last}): not a position of this deployment"
                )));
            }
            Some(after) => after,
        };
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let (end_tx, end_rx) = oneshot::channel();
        let db = self.store.db().clone();
        let tenant = caller.tenant().clone();
        let profile = request.profile;
        let stop = self.stop.clone();
        let expires = expiry(caller.expires_at());
        tokio::spawn(async move {
            let wanted = |row: &Stamped| {
                row.tenant == tenant.as_str() && profile.is_none_or(|id| id.as_uuid() == row.aggregate_id)
            };
            let mut sent = start;
            let expired = || {
                DomainError::Unauthenticated(
                    "the token expired: subscribe again with a fresh one and the last position received".into(),
                )
            };
            let stopping = || {
                DomainError::ShuttingDown(
                    "this instance is shutting down: resume after the last position received".into(),
                )
            };
            let ended = 'stream: loop {
                // History, page by page, straight from the outbox; a caller
                // catching up may take its time.
                loop {
                    // What is stamped up to now: a page that is not full has
                    // covered it, wanted rows or not.
                    let head = match outbox::positions(&db).await {
                        Ok((last, _)) => last,
                        Err(error) => break 'stream error,
                    };
                    let page = match outbox::after(&db, sent, Some(&tenant), profile, HISTORY_PAGE).await {
                        Ok(page) => page,
                        Err(error) => break 'stream error,
                    };
                    // Pruning may overtake a slow reader near the retention's edge.
                    match outbox::positions(&db).await {
                        Ok((_, pruned)) if pruned > sent => break 'stream gone(sent, pruned),
                        Ok(_) => {}
                        Err(error) => break 'stream error,
                    }
                    let full = page.len() as u64 == HISTORY_PAGE;
                    for row in page {
                        sent = row.pos;
                        tokio::select! {
                            delivered = tx.send(Arc::new(row)) => if delivered.is_err() { return },
                            () = tokio::time::sleep_until(expires) => break 'stream expired(),
                            () = stop.cancelled() => break 'stream stopping(),
                        }
                    }
                    if !full {
                        sent = sent.max(head);
                        break;
                    }
                }
                // Then live, skipping what history already sent. A caller
                // that lets its buffer fill is dropped: it must not hold
                // memory for everyone else. One that fell behind the feed
                // while reading history goes back to history.
                loop {
                    tokio::select! {
                        received = live.recv() => match received {
                            Ok(row) => {
                                if row.pos <= sent {
                                    continue;
                                }
                                sent = row.pos;
                                if !wanted(&row) {
                                    continue;
                                }
                                match tx.try_send(row) {
                                    Ok(()) => {}
                                    Err(TrySendError::Closed(_)) => return,
                                    Err(TrySendError::Full(_)) => break 'stream slow(),
                                }
                            }
                            Err(RecvError::Lagged(_)) => continue 'stream,
                            Err(RecvError::Closed) => return,
                        },
                        () = tokio::time::sleep_until(expires) => break 'stream expired(),
                        () = stop.cancelled() => break 'stream stopping(),
                        () = tx.closed() => return,
                    }
                }
            };
            let _ = end_tx.send(ended);
        });
        let views = EventViews { shape: Shape::of(caller), caller: caller.clone(), audit: self.audit.clone() };
        Ok(Subscription { events: rx, end: end_rx, views })
    }
}

fn gone(after: i64, pruned: i64) -> DomainError {
    DomainError::OutOfRange(format!(
        "position {after} is older than the outbox's retention: events after it were pruned \
         (the oldest position to resume from is {pruned}); start again without a position"
    ))
}

fn slow() -> DomainError {
    DomainError::ResourceExhausted(
        "this subscriber read more slowly than events arrived and was dropped; resume after the last position received"
            .into(),
    )
}

/// The instant a token that expires at `exp` (epoch seconds) lapses.
fn expiry(exp: u64) -> tokio::time::Instant {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let left = std::time::Duration::from_secs(exp).saturating_sub(now);
    // Far enough for "never" without overflowing the clock.
    tokio::time::Instant::now() + left.min(std::time::Duration::from_secs(100 * 365 * 86_400))
}
