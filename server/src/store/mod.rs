//! Storage: SeaORM queries and transactions, the only code that talks SQL.
//!
//! Functions take any `ConnectionTrait` (the pool or a transaction) and speak
//! domain types, so the service layer composes them inside one transaction
//! without seeing a SeaORM model.

pub mod events;
pub mod identities;
pub mod loader;
pub mod outbox;
pub mod profiles;

use std::time::Duration;

use c360_migration::{Migrator, MigratorTrait};
use prometheus_client::metrics::counter::Counter;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    TransactionTrait,
};

use crate::domain::DomainError;

/// The database: a pool, PostgreSQL or SQLite.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    max_connections: u32,
}

impl Store {
    /// Connects to `url` (`postgres://…` or `sqlite://…`).
    ///
    /// SQLite gets a single connection: it allows one writer at a time anyway,
    /// and one connection turns a read-then-write transaction's lock upgrade
    /// (which SQLite answers with SQLITE_BUSY, not a wait) into a queue.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbErr> {
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
            .sqlx_logging(false);
        let db = Database::connect(options).await?;
        if sqlite {
            // WAL lets readers proceed beside the writer and survives a crash
            // with every committed transaction.
            db.execute_unprepared("PRAGMA journal_mode = WAL").await?;
            db.execute_unprepared("PRAGMA synchronous = NORMAL").await?;
        }
        Ok(Self { db, max_connections })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        Migrator::up(&self.db, None).await
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

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<DatabaseTransaction, DomainError> {
        self.db.begin().await.map_err(db_error)
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

/// Whether row locks (`SELECT … FOR UPDATE`) exist on this backend.
pub(crate) fn supports_row_locks(conn: &impl ConnectionTrait) -> bool {
    conn.get_database_backend() == DatabaseBackend::Postgres
}

/// Maps a database error: unreachable → UNAVAILABLE, anything else → INTERNAL.
/// The cause is logged here and not sent to the caller.
pub fn db_error(err: DbErr) -> DomainError {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
            tracing::warn!(error = %err, "database unavailable");
            DomainError::Unavailable("database".into())
        }
        other => {
            tracing::error!(error = %other, "database error");
            DomainError::Internal("database".into())
        }
    }
}
