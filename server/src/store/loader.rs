//! Coalesces concurrent by-id profile reads into one query.
//!
//! Reads are batched by [`crate::batch::Batcher`]: an idle lane reads every
//! queued request (up to [`MAX_BATCH`]) with one `IN (…)` query per tenant.
//! Each query costs the database a round trip plus the pool's own check of
//! the connection on release, so on a busy server this turns many small reads
//! into a few larger ones (docs/performance.md).
//!
//! A request is queued only once its caller runs, so its query starts after
//! any write that returned before it: batching keeps read-your-writes.

use std::collections::HashMap;

use prometheus_client::metrics::counter::Counter;
use sea_orm::DatabaseConnection;
use tokio::sync::oneshot;

use super::profiles;
use crate::{
    batch::Batcher,
    domain::{DomainError, ProfileId, TenantId, profile::Profile},
};

/// Most profiles one query reads.
pub const MAX_BATCH: usize = 64;

type Reply = oneshot::Sender<Result<Option<Profile>, DomainError>>;

struct Request {
    tenant: TenantId,
    id: ProfileId,
    reply: Reply,
}

/// Reads profiles by id, batching concurrent reads; clones share the lanes,
/// which stop when the last clone is dropped.
#[derive(Clone)]
pub struct ProfileLoader {
    batcher: Batcher<Request>,
}

impl ProfileLoader {
    /// Starts `lanes` lanes (at most that many queries at once) reading from
    /// `db`; `queries` counts the queries sent.
    pub fn spawn(db: DatabaseConnection, lanes: usize, queries: Counter) -> Self {
        let batcher = Batcher::spawn(lanes, MAX_BATCH, move |batch: Vec<Request>| {
            let (db, queries) = (db.clone(), queries.clone());
            async move {
                let mut by_tenant: HashMap<TenantId, Vec<Request>> = HashMap::new();
                for request in batch {
                    by_tenant.entry(request.tenant.clone()).or_default().push(request);
                }
                for (tenant, requests) in by_tenant {
                    queries.inc();
                    answer(&db, &tenant, requests).await;
                }
            }
        });
        Self { batcher }
    }

    /// The profile `id` of `tenant`, or `None` if there is none.
    pub async fn load(&self, tenant: &TenantId, id: ProfileId) -> Result<Option<Profile>, DomainError> {
        let (reply, answer) = oneshot::channel();
        let request = Request { tenant: tenant.clone(), id, reply };
        if self.batcher.submit(request).await.is_err() {
            return Err(DomainError::Unavailable("database reader stopped".into()));
        }
        answer.await.map_err(|_| DomainError::Internal("database reader dropped a read".into()))?
    }
}

async fn answer(db: &DatabaseConnection, tenant: &TenantId, mut requests: Vec<Request>) {
    let mut ids: Vec<ProfileId> = requests.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    match profiles::find_many(db, tenant, &ids).await {
        Ok(found) => {
            let mut found: HashMap<ProfileId, Profile> = found.into_iter().map(|p| (p.id, p)).collect();
            requests.sort_unstable_by_key(|r| r.id);
            let mut requests = requests.into_iter().peekable();
            while let Some(request) = requests.next() {
                // The last asker of an id takes the profile; earlier ones get copies.
                let shared = requests.peek().is_some_and(|next| next.id == request.id);
                let profile = if shared { found.get(&request.id).cloned() } else { found.remove(&request.id) };
                // A caller that gave up no longer listens.
                let _ = request.reply.send(Ok(profile));
            }
        }
        Err(e) => {
            for request in requests {
                let _ = request.reply.send(Err(e.clone()));
            }
        }
    }
}
