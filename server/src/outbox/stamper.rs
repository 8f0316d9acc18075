//! Stamps committed outbox rows with their position, and prunes old rows.
//! Runs in every instance; the database lets one stamp at a time.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::store::outbox;

/// Rows stamped per transaction.
const STAMP_BATCH: u64 = 5_000;
/// How often rows written by other instances (or CLI commands) are looked
/// for; this instance's own commits wake the stamper at once.
const POLL: Duration = Duration::from_millis(50);

/// The stamping and pruning job.
pub struct Stamper {
    db: DatabaseConnection,
    written: Arc<Notify>,
    stamped: watch::Sender<i64>,
    retention: Duration,
    /// Prune only what the broker acknowledged (a relay runs here; a relay
    /// that ran anywhere in the last 30 days has the same effect).
    published_only: bool,
}

impl Stamper {
    /// A stamper woken by `written`; it announces the last position stamped on `stamped`.
    pub fn new(
        db: DatabaseConnection,
        written: Arc<Notify>,
        stamped: watch::Sender<i64>,
        retention: Duration,
        published_only: bool,
    ) -> Self {
        Self { db, written, stamped, retention, published_only }
    }

    /// Stamps until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut failing = false;
        let mut last_prune = tokio::time::Instant::now();
        loop {
            match outbox::stamp(&self.db, STAMP_BATCH).await {
                Ok(stamp) => {
                    if failing {
                        tracing::info!("outbox stamping works again");
                        failing = false;
                    }
                    if let Some(last) = stamp.last_pos {
                        self.stamped.send_replace(last);
                    }
                    if stamp.count == STAMP_BATCH {
                        continue;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot stamp outbox rows; retrying");
                        failing = true;
                    }
                }
            }
            // A quarter of the retention keeps rows at most 25% past it.
            if last_prune.elapsed() >= (self.retention / 4).clamp(Duration::from_millis(200), Duration::from_secs(60)) {
                last_prune = tokio::time::Instant::now();
                self.prune().await;
            }
            tokio::select! {
                () = self.written.notified() => {}
                () = tokio::time::sleep(if failing { Duration::from_secs(1) } else { POLL }) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    async fn prune(&self) {
        let Ok(retention) = chrono::Duration::from_std(self.retention) else {
            return;
        };
        // An instance without a broker must not drop what another
        // instance's relay has yet to publish.
        let published_only = self.published_only
            || match outbox::relay_seen_since(&self.db, Utc::now() - outbox::RELAY_MEMORY).await {
                Ok(seen) => seen,
                Err(_) => return,
            };
        match outbox::prune(&self.db, Utc::now() - retention, published_only).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned outbox rows past their retention"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the outbox"),
        }
    }
}
