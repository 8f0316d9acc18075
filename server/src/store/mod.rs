//! Storage: SeaORM queries and transactions, the only code that talks SQL.
//!
//! Functions take any `ConnectionTrait` (the pool or a transaction) and speak
//! domain types, so the service layer composes them inside one transaction
//! without seeing a SeaORM model.

pub mod audit;
pub mod consents;
pub mod deployment;
pub mod events;
pub mod identities;
pub mod imports;
pub mod jobs;
pub mod loader;
pub mod matching;
pub mod merges;
pub mod outbox;
pub mod peers;
pub mod profiles;
pub mod requests;
pub mod settings;
mod sql;
mod unit_of_work;

pub use unit_of_work::UnitOfWork;

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;

use c360_migration::{Migrator, MigratorTrait};
use prometheus_client::metrics::counter::Counter;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr, TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

use crate::{cache::ProfileCache, domain::DomainError};

/// When the embedded SQLite database acknowledges a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SqliteDurability {
    /// Only once the commit is on disk (`synchronous = FULL`): nothing
    /// acknowledged is lost, even on a power cut. The default.
    #[default]
    Full,
    /// Once the commit is in the write-ahead log (`synchronous = NORMAL`):
    /// faster commits, but a power cut or OS crash can lose the last
    /// acknowledged ones (a crash of c360 alone loses nothing).
    Normal,
}

/// The database (a pool, PostgreSQL or SQLite) and the cache its writes invalidate.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    max_connections: u32,
    cache: ProfileCache,
    /// Pinged after each commit that wrote outbox rows: wakes the stamper.
    written: Arc<Notify>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.db.get_database_backend()).finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to `url` (`postgres://…` or `sqlite://…`); writes committed
    /// through [`Store::begin`] invalidate `cache`.
    ///
    /// SQLite gets a single connection: it allows one writer at a time anyway,
    /// and one connection turns a read-then-write transaction's lock upgrade
    /// (which SQLite answers with SQLITE_BUSY, not a wait) into a queue.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        durability: SqliteDurability,
        cache: ProfileCache,
    ) -> Result<Self, DbErr> {
        let sqlite = url.starts_with("sqlite:");
        let max_connections = if sqlite { 1 } else { max_connections.max(1) };
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections)
            .min_connections(if sqlite { 1 } else { 0 })
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            // The default pings every connection on every checkout: a second
            // round trip per query, a third of the database's work on a cold
            // read (docs/performance.md). Only a connection idle long enough
            // for a proxy or firewall to have dropped it is tested.
            .test_before_acquire_if_idle_for(Duration::from_secs(30))
            .sqlx_logging(false)
            // Set on every connection the pool opens, not once on the first:
            // WAL lets readers proceed beside the writer; `synchronous` says
            // when a commit is acknowledged (see SqliteDurability).
            .map_sqlx_sqlite_opts(move |options| {
                options.journal_mode(SqliteJournalMode::Wal).synchronous(match durability {
                    SqliteDurability::Full => SqliteSynchronous::Full,
                    SqliteDurability::Normal => SqliteSynchronous::Normal,
                })
            });
        let db = Database::connect(options).await?;
        cache.coordinate(Arc::new(peers::DatabasePeers::new(db.clone())));
        Ok(Self { db, max_connections, cache, written: Arc::new(Notify::new()) })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        Migrator::up(&self.db, None).await
    }

    /// Refreshes the planner's statistics of the tables a bulk load grew
    /// (PostgreSQL's advice after one; autovacuum would get there later, or,
    /// where it is off, never): the load's own later queries and the
    /// servers' then plan for the rows that are there. SQLite: nothing.
    pub async fn analyze_after_bulk_load(&self) -> Result<(), DomainError> {
        if self.db.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let statement = sea_orm::Statement::from_string(
            DatabaseBackend::Postgres,
            "ANALYZE profiles, identities, import_rows, outbox".to_owned(),
        );
        self.db.execute_raw(statement).await.map_err(db_error)?;
        Ok(())
    }

    /// The pool.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// A batching reader of profiles by id that counts its queries in
    /// `queries`. It uses at most half the pool, so writes always find a
    /// connection (SQLite's single connection is shared: reads and writes
    /// take turns there anyway).
    pub fn profile_loader(&self, queries: Counter) -> loader::ProfileLoader {
        loader::ProfileLoader::spawn(self.db.clone(), (self.max_connections as usize / 2).max(1), queries)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }

    /// Starts a unit of work: every write goes through one.
    pub async fn begin(&self) -> Result<UnitOfWork, DomainError> {
        let tx = self.db.begin().await.map_err(db_error)?;
        Ok(UnitOfWork::new(tx, self.cache.clone(), Arc::clone(&self.written)))
    }

    /// The cache this store's writes invalidate.
    pub fn cache(&self) -> &ProfileCache {
        &self.cache
    }

    /// Notified after every commit that wrote domain events (the stamper waits on it).
    pub fn outbox_written(&self) -> Arc<Notify> {
        Arc::clone(&self.written)
    }

    /// Closes the pool.
    pub async fn close(self) -> Result<(), DbErr> {
        self.db.close().await
    }
}

/// Most bind parameters one statement may carry: under SQLite's 32,766 (and
/// PostgreSQL's 65,535). Bulk inserts split their rows by it.
pub(crate) const MAX_BIND_PARAMS: usize = 30_000;

/// Rows of `columns` columns per bulk insert statement.
pub(crate) fn rows_per_statement(columns: usize) -> usize {
    (MAX_BIND_PARAMS / columns).max(1)
}

/// How often a unit of work is tried in all when concurrent writes keep
/// getting in its way.
const ATTEMPTS: usize = 5;

/// Runs `attempt` again (a few times, briefly apart) when a concurrent
/// write got in its way: a rollback for a concurrent transaction
/// (ABORTED; on SQLite, another process's commit) or an etag moved on.
pub(crate) async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, DomainError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DomainError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(DomainError::Aborted(_) | DomainError::StaleEtag { .. }) if tries < ATTEMPTS => {
                tokio::time::sleep(std::time::Duration::from_millis(20 * tries as u64)).await;
            }
            outcome => return outcome,
        }
    }
}

/// Whether row locks (`SELECT … FOR UPDATE`) exist on this backend.
pub(crate) fn supports_row_locks(conn: &impl ConnectionTrait) -> bool {
    conn.get_database_backend() == DatabaseBackend::Postgres
}

/// Whether the transaction lost to a concurrent one: PostgreSQL's deadlock
/// and serialization failures, and SQLite's busy database (another process
/// writing the same file, e.g. `c360 import` beside a running server: a
/// transaction that read first cannot then write past a newer commit).
fn rolled_back_by_a_concurrent_one(err: &DbErr) -> bool {
    let (DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e)) | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))) = err else {
        return false;
    };
    // SQLite's codes are the extended result codes: BUSY (5), BUSY_RECOVERY
    // (261), BUSY_SNAPSHOT (517), BUSY_TIMEOUT (773).
    e.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| matches!(code.as_ref(), "40P01" | "40001" | "5" | "261" | "517" | "773"))
}

/// Maps a database error: unreachable → UNAVAILABLE, rolled back for a
/// concurrent transaction → ABORTED, anything else → INTERNAL. The cause is
/// logged here and not sent to the caller.
pub fn db_error(err: DbErr) -> DomainError {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
            tracing::warn!(error = %err, "database unavailable");
            DomainError::Unavailable("database".into())
        }
        // Lost to a concurrent transaction: rolled back, worth retrying.
        ref other if rolled_back_by_a_concurrent_one(other) => {
            tracing::warn!(error = %other, "transaction aborted by a concurrent one");
            DomainError::Aborted("a concurrent change to the same records won; retry".into())
        }
        other => {
            tracing::error!(error = %other, "database error");
            DomainError::Internal("database".into())
        }
    }
}
