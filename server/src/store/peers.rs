//! The cache's peers in the database: instances' heartbeats and the holds of
//! writes whose invalidation Redis could not confirm (see `cache::peers`).
//! Every time is the database's clock in milliseconds, so instances' clocks
//! never meet.

use std::time::Duration;

use futures::{FutureExt, future::BoxFuture};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

use super::{db_error, sql::Sql};
use crate::{
    cache::peers::{Census, Coordination, OwedHold},
    domain::DomainError,
};

/// [`Coordination`] through the deployment's database.
pub struct DatabasePeers {
    db: DatabaseConnection,
}

impl DatabasePeers {
    /// Peers coordinated through `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    fn sql(&self) -> Sql {
        Sql::new(self.db.get_database_backend())
    }

    /// The database's clock in milliseconds, as SQL.
    fn now_ms(&self) -> &'static str {
        match self.db.get_database_backend() {
            DbBackend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
            _ => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        }
    }
}

/// `created_ms` of a hold not yet dated: never old enough to release or to cover.
const UNDATED: i64 = i64::MAX / 4;

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Coordination for DatabasePeers {
    fn poll<'a>(&'a self, instance: Option<&'a str>, window: Duration) -> BoxFuture<'a, Result<Census, DomainError>> {
        async move {
            let now = self.now_ms();
            let mut census = Census::default();
            if let Some(instance) = instance {
                // The gap since this instance's last heartbeat, by the clock
                // writers judge membership with.
                let mut sql = self.sql();
                sql.push(&format!("SELECT {now} - seen_ms AS gap FROM cache_instances WHERE id = "))
                    .bind(instance.to_owned());
                if let Some(row) = self.db.query_one_raw(sql.statement()).await.map_err(db_error)? {
                    census.gap_ms = Some(row.try_get("", "gap").map_err(db_error)?);
                }
                let mut sql = self.sql();
                sql.push("INSERT INTO cache_instances (id, seen_ms) VALUES (")
                    .bind(instance.to_owned())
                    .push(&format!(", {now}) ON CONFLICT (id) DO UPDATE SET seen_ms = excluded.seen_ms"));
                self.db.execute_raw(sql.statement()).await.map_err(db_error)?;
            }
            let mut sql = self.sql();
            sql.push("SELECT COUNT(*) AS holds FROM cache_holds");
            if let Some(row) = self.db.query_one_raw(sql.statement()).await.map_err(db_error)? {
                census.holds = row.try_get("", "holds").map_err(db_error)?;
            }
            let mut sql = self.sql();
            sql.push(&format!("SELECT id FROM cache_instances WHERE seen_ms > {now} - ")).bind(millis(window));
            for row in self.db.query_all_raw(sql.statement()).await.map_err(db_error)? {
                census.members.push(row.try_get("", "id").map_err(db_error)?);
            }
            Ok(census)
        }
        .boxed()
    }

    fn hold<'a>(&'a self, writes: &'a [String], covered: Duration) -> BoxFuture<'a, Result<bool, DomainError>> {
        async move {
            let now = self.now_ms();
            // Committed first, on its own: from here on every heartbeat sees
            // a hold, whatever happens to older ones. Dated only once
            // committed (until then far in the future, so nothing releases
            // it or counts it as old), so its age never runs ahead of its
            // visibility.
            let mut sql = self.sql();
            sql.push("INSERT INTO cache_holds (created_ms, writes, applied) VALUES (")
                .bind(UNDATED)
                .push(", ")
                .bind(writes.join("\n"))
                .push(", ")
                .bind(writes.is_empty())
                .push(") RETURNING id");
            let row = self
                .db
                .query_one_raw(sql.statement())
                .await
                .map_err(db_error)?
                .ok_or_else(|| DomainError::Internal("INSERT … RETURNING answered no row".to_owned()))?;
            let id: i64 = row.try_get("", "id").map_err(db_error)?;
            let mut sql = self.sql();
            sql.push(&format!("UPDATE cache_holds SET created_ms = {now} WHERE id = ")).bind(id);
            self.db.execute_raw(sql.statement()).await.map_err(db_error)?;
            // Another hold dated at least `covered` ago still stands: every
            // heartbeat since then has seen it or this one.
            let mut sql = self.sql();
            sql.push(&format!("SELECT COUNT(*) AS n FROM cache_holds WHERE created_ms <= {now} - "))
                .bind(millis(covered))
                .push(" AND id <> ")
                .bind(id);
            let standing: i64 = match self.db.query_one_raw(sql.statement()).await.map_err(db_error)? {
                Some(row) => row.try_get("", "n").map_err(db_error)?,
                None => 0,
            };
            Ok(standing > 0)
        }
        .boxed()
    }

    fn owed(&self) -> BoxFuture<'_, Result<Vec<OwedHold>, DomainError>> {
        async move {
            let mut sql = self.sql();
            sql.push("SELECT id, writes FROM cache_holds WHERE applied = ").bind(false).push(" ORDER BY id LIMIT 1000");
            let rows = self.db.query_all_raw(sql.statement()).await.map_err(db_error)?;
            rows.into_iter()
                .map(|row| {
                    let writes: String = row.try_get("", "writes").map_err(db_error)?;
                    Ok(OwedHold {
                        id: row.try_get("", "id").map_err(db_error)?,
                        writes: writes.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect(),
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn paid<'a>(&'a self, ids: &'a [i64]) -> BoxFuture<'a, Result<(), DomainError>> {
        async move {
            if ids.is_empty() {
                return Ok(());
            }
            let mut sql = self.sql();
            sql.push("UPDATE cache_holds SET applied = ").bind(true).push(" WHERE ").in_list("id", ids.iter().copied());
            self.db.execute_raw(sql.statement()).await.map_err(db_error)?;
            Ok(())
        }
        .boxed()
    }

    fn release(&self, age: Duration, gone: Duration) -> BoxFuture<'_, Result<(), DomainError>> {
        async move {
            let now = self.now_ms();
            let mut sql = self.sql();
            sql.push("DELETE FROM cache_holds WHERE applied = ")
                .bind(true)
                .push(&format!(" AND created_ms < {now} - "))
                .bind(millis(age));
            self.db.execute_raw(sql.statement()).await.map_err(db_error)?;
            let mut sql = self.sql();
            sql.push(&format!("DELETE FROM cache_instances WHERE seen_ms < {now} - ")).bind(millis(gone));
            self.db.execute_raw(sql.statement()).await.map_err(db_error)?;
            Ok(())
        }
        .boxed()
    }

    fn leave<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<(), DomainError>> {
        async move {
            let mut sql = self.sql();
            sql.push("DELETE FROM cache_instances WHERE id = ").bind(instance.to_owned());
            self.db.execute_raw(sql.statement()).await.map_err(db_error)?;
            Ok(())
        }
        .boxed()
    }
}
