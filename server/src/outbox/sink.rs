//! Where the relay sends events: one small trait, so another broker can be
//! added without touching the outbox.

use std::future::Future;

/// One event to publish.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Topic (the event's subject).
    pub topic: &'a str,
    /// Ordering key: the customer id. Messages with one key keep their order.
    pub key: &'a str,
    /// The envelope's eventType.
    pub event_type: &'a str,
    /// The envelope's eventId, stable across redeliveries.
    pub event_id: &'a str,
    /// The owning tenant.
    pub tenant: &'a str,
    /// The JSON envelope.
    pub value: &'a [u8],
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The broker acknowledged it.
    Delivered,
    /// The broker (or the client, before sending) refused it for good:
    /// sending it again would fail the same way.
    Refused(String),
    /// Not sent: an earlier message with the same key was not sent in this call.
    NotSent,
    /// Not acknowledged this time (broker unreachable, timed out); worth
    /// sending again.
    Failed(String),
}

/// A broker the relay can publish to.
pub trait EventSink: Send + Sync + 'static {
    /// Makes sure every topic exists with its partition count (creating the
    /// missing ones). Called before the first publish and after failures.
    fn prepare(&self) -> impl Future<Output = Result<(), String>> + Send;

    /// Sends `batch` in order and waits for each message's outcome, returned
    /// in the same order. Messages with one key must reach the broker in
    /// order, and none may be sent after one with the same key that could not
    /// be sent in this call ([`Outcome::NotSent`]).
    fn publish(&self, batch: &[Message<'_>]) -> impl Future<Output = Vec<Outcome>> + Send;
}
