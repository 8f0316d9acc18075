//! The outbox's background work: stamping committed events with their
//! position in commit order, relaying them to the broker, pruning, and the
//! live change feed. The rows and their queries are in `store::outbox`.

pub mod feed;
pub mod kafka;
mod relay;
pub(crate) use relay::AbortOnDrop;
pub mod sink;
mod stamper;

pub use relay::{Relay, RelayConfig};
pub use stamper::Stamper;

use std::time::Duration;

use tokio::sync::watch;

/// Waits for the next position stamped, or `poll` at most (other instances'
/// stamps are not announced here); once the stamper is gone (shutting
/// down), just `poll`.
async fn next_stamp(stamped: &mut watch::Receiver<i64>, poll: Duration) {
    tokio::select! {
        changed = stamped.changed() => {
            if changed.is_err() {
                tokio::time::sleep(poll).await;
            }
        }
        () = tokio::time::sleep(poll) => {}
    }
}
