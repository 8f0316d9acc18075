//! The live change feed: one reader of the outbox per instance, fanned out to
//! every `WatchChanges` subscriber, so subscribers cost no database polls of
//! their own once they caught up with history.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use sea_orm::DatabaseConnection;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::store::outbox::{self, Stamped};

/// Rows read per query.
const PAGE: u64 = 1_000;
/// How often positions stamped by other instances are looked for; this
/// instance's own stamps wake the feed at once.
const POLL: Duration = Duration::from_millis(100);

/// Subscribers' shared view of the outbox, in position order.
#[derive(Clone)]
pub struct ChangeFeed {
    inner: Arc<Inner>,
}

struct Inner {
    sender: broadcast::Sender<Arc<Stamped>>,
    /// Rows read per query: at most what a subscriber may fall behind, so
    /// one page cannot push a reading subscriber out.
    page: u64,
    /// Every stamped row up to this position was sent (or nobody listened).
    /// Locked while sending, so a subscriber's start position and its
    /// receiver agree.
    head: Mutex<i64>,
}

impl ChangeFeed {
    /// A feed that buffers up to `capacity` events for a subscriber that
    /// reads slower than events arrive; one further behind is dropped.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        let page = (capacity.max(1) as u64).min(PAGE);
        Self { inner: Arc::new(Inner { sender, page, head: Mutex::new(0) }) }
    }

    /// A receiver of every event after the returned position.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<Stamped>>, i64) {
        let head = self.inner.head.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (self.inner.sender.subscribe(), *head)
    }

    /// Reads new positions as they are stamped and sends them to the
    /// subscribers, until `stop`.
    pub async fn run(self, db: DatabaseConnection, mut stamped: watch::Receiver<i64>, stop: CancellationToken) {
        let mut failing = false;
        loop {
            // Seen from here on: a stamp made while this reads wakes the
            // next wait at once.
            stamped.borrow_and_update();
            let result = self.advance(&db).await;
            match result {
                Ok(full) if full => {
                    // Let subscribers take the page before the next one.
                    tokio::task::yield_now().await;
                    continue;
                }
                Ok(_) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "change feed cannot read the outbox; retrying");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = super::next_stamp(&mut stamped, if failing { Duration::from_secs(1) } else { POLL }) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Sends the next page of stamped rows; `true` when there may be more.
    async fn advance(&self, db: &DatabaseConnection) -> Result<bool, crate::domain::DomainError> {
        let from = *self.inner.head.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.inner.sender.receiver_count() == 0 {
            // Nobody listens: skip ahead without reading the rows.
            let (last, _) = outbox::positions(db).await?;
            let mut head = self.inner.head.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if self.inner.sender.receiver_count() == 0 && *head == from {
                *head = last.max(from);
            }
            return Ok(false);
        }
        let rows = outbox::after(db, from, None, None, self.inner.page).await?;
        let full = rows.len() as u64 == self.inner.page;
        let mut head = self.inner.head.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *head != from {
            // Only this task moves the head; a changed head is impossible,
            // but sending twice would be worse than reading again.
            return Ok(true);
        }
        for row in rows {
            *head = row.pos;
            // An error only means nobody listens right now.
            let _ = self.inner.sender.send(Arc::new(row));
        }
        Ok(full)
    }
}
