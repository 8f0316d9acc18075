//! `c360 outbox list|retry|skip`: the events the broker refused for good,
//! and the operator's two ways out.

use std::io::Write;

use clap::{Args, Subcommand};

use crate::{
    cache::ProfileCache,
    config::{DataDirArgs, DatabaseArgs},
    store::outbox,
};

/// What to do with parked events.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List the events the broker refused for good, and those waiting behind them.
    List(Target),
    /// Publish a refused event again (after fixing the broker or topic), then those waiting behind it.
    Retry {
        /// The refused event's `seq`, as listed.
        seq: i64,
        /// The database.
        #[command(flatten)]
        target: Target,
    },
    /// Give up on a refused event: it is never published, and the customer's later events flow again.
    Skip {
        /// The refused event's `seq`, as listed.
        seq: i64,
        /// The database.
        #[command(flatten)]
        target: Target,
    },
}

/// The database to act on.
#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    data: DataDirArgs,
    #[command(flatten)]
    database: DatabaseArgs,
}

impl Target {
    /// Connects (one connection), invalidating `cache` on writes.
    pub async fn connect(&self, cache: ProfileCache) -> anyhow::Result<crate::store::Store> {
        self.database.connect(&self.data.data_dir, 1, cache).await
    }
}

impl OutboxCommand {
    fn target(&self) -> &Target {
        match self {
            Self::List(target) | Self::Retry { target, .. } | Self::Skip { target, .. } => target,
        }
    }

    /// Runs the command, writing its report to `out`.
    pub async fn run(self, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
        let target = self.target();
        let store = target.connect(ProfileCache::none()).await?;
        let db = store.db();
        let result = match &self {
            Self::List(_) => {
                let rows = outbox::parked(db, None).await?;
                if rows.is_empty() {
                    writeln!(out, "no parked events")?;
                }
                for row in rows {
                    let state = match row.waits_for {
                        None if row.retry_requested => "refused, retry requested".to_owned(),
                        None => "refused".to_owned(),
                        Some(refused) => format!("waits for {refused}"),
                    };
                    writeln!(
                        out,
                        "seq {}  pos {}  tenant {}  customer {}  {}  parked {}  {}: {}",
                        row.seq,
                        row.pos,
                        row.tenant_id,
                        row.aggregate_id,
                        row.event_type,
                        row.parked_at.format("%Y-%m-%dT%H:%M:%SZ"),
                        state,
                        row.reason
                    )?;
                }
                Ok(())
            }
            Self::Retry { seq, .. } => {
                if outbox::request_retry(db, *seq).await? {
                    writeln!(out, "event {seq} will be published again, then the events waiting behind it")?;
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("no parked event with seq {seq} (see `c360 outbox list`)"))
                }
            }
            Self::Skip { seq, .. } => {
                if outbox::skip(db, *seq).await? {
                    writeln!(out, "event {seq} will not be published; the customer's later events are released")?;
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("no refused event with seq {seq} (see `c360 outbox list`)"))
                }
            }
        };
        store.close().await?;
        result
    }
}
