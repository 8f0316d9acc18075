//! The outbox's background work: stamping committed events with their
//! position in commit order, relaying them to the broker, pruning, and the
//! live change feed. The rows and their queries are in `store::outbox`.

pub mod feed;
pub mod kafka;
mod relay;
pub mod sink;
mod stamper;

pub use relay::{Relay, RelayConfig};
pub use stamper::Stamper;
