//! What the outbox relay and the change stream need:
//!
//! - `outbox.pos`: the position in commit order, stamped after commit by one
//!   stamper at a time (`seq` is assigned at insert, and a row with a lower
//!   `seq` can commit after a higher one); NULL until stamped. Rows that were
//!   already committed when this runs get `pos = seq`.
//! - `outbox.lane`: one of 16 lanes, computed by the database from the
//!   customer id (a generated column, so rows written by any binary, older
//!   ones included, get the same lane), so that one relay at a time publishes
//!   one customer's events.
//! - `outbox_state`: the last position stamped and how far rows were pruned.
//! - `outbox_lanes`: per lane, which relay holds it until when, and the
//!   position through which its events are acknowledged by the broker.
//! - `outbox_relays`: the relays alive, so they can share the lanes.
//! - `outbox_parked`: rows the broker refused for good, and the later rows of
//!   the same customer that wait behind them.
//!
//! `published_at` stays but is no longer written: a lane's acknowledged
//! position says it for every row (one write per batch instead of one per
//! row). Binaries from before this migration still write it during a rolling
//! upgrade; a later migration may drop it.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000006_outbox_relay"
    }
}

/// Lanes of the relay; fixed, because a customer's lane must never change.
const LANES: i16 = 16;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DatabaseBackend::Postgres;
        db.execute_unprepared("DROP INDEX idx_outbox_pending").await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(ColumnDef::new(Outbox::Pos).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // The lane is the low four bits of the customer id's last byte (the
        // relay computes the same in Rust). SQLite can add only a virtual
        // generated column; it may hold a UUID as 16 bytes or as text.
        let lane = if postgres {
            "ALTER TABLE outbox ADD COLUMN lane smallint GENERATED ALWAYS AS \
             ((get_byte(uuid_send(aggregate_id), 15) & 15)::smallint) STORED"
        } else {
            "ALTER TABLE outbox ADD COLUMN lane INTEGER GENERATED ALWAYS AS \
             (CASE WHEN typeof(aggregate_id) = 'blob' \
              THEN instr('0123456789ABCDEF', substr(hex(aggregate_id), 32, 1)) - 1 \
              ELSE instr('0123456789abcdef', lower(substr(aggregate_id, -1, 1))) - 1 END) VIRTUAL"
        };
        db.execute_unprepared(lane).await?;
        db.execute_unprepared("UPDATE outbox SET pos = seq").await?;
        db.execute_unprepared("CREATE INDEX idx_outbox_unstamped ON outbox (seq) WHERE pos IS NULL").await?;
        db.execute_unprepared("CREATE UNIQUE INDEX idx_outbox_pos ON outbox (pos)").await?;

        manager
            .create_table(
                Table::create()
                    .table(OutboxState::Table)
                    .col(ColumnDef::new(OutboxState::Id).small_integer().not_null().primary_key())
                    .col(ColumnDef::new(OutboxState::LastPos).big_integer().not_null())
                    .col(ColumnDef::new(OutboxState::PrunedThrough).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        db.execute_unprepared(
            "INSERT INTO outbox_state (id, last_pos, pruned_through) SELECT 1, COALESCE(MAX(seq), 0), 0 FROM outbox",
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(OutboxLanes::Table)
                    .col(ColumnDef::new(OutboxLanes::Lane).small_integer().not_null().primary_key())
                    .col(ColumnDef::new(OutboxLanes::Owner).string_len(128).null())
                    .col(ColumnDef::new(OutboxLanes::LeaseUntil).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(OutboxLanes::PublishedPos).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        let lanes: Vec<String> = (0..LANES).map(|lane| format!("({lane}, 0)")).collect();
        db.execute_unprepared(&format!("INSERT INTO outbox_lanes (lane, published_pos) VALUES {}", lanes.join(", ")))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OutboxRelays::Table)
                    .col(ColumnDef::new(OutboxRelays::Id).string_len(128).not_null().primary_key())
                    .col(ColumnDef::new(OutboxRelays::SeenAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OutboxParked::Table)
                    .col(ColumnDef::new(OutboxParked::Seq).big_integer().not_null().primary_key())
                    .col(ColumnDef::new(OutboxParked::Pos).big_integer().not_null())
                    .col(ColumnDef::new(OutboxParked::Lane).small_integer().not_null())
                    .col(ColumnDef::new(OutboxParked::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(OutboxParked::AggregateId).uuid().not_null())
                    .col(ColumnDef::new(OutboxParked::EventType).string_len(64).not_null())
                    .col(ColumnDef::new(OutboxParked::Reason).text().not_null())
                    .col(ColumnDef::new(OutboxParked::WaitsFor).big_integer().null())
                    .col(ColumnDef::new(OutboxParked::RetryRequested).boolean().not_null().default(false))
                    .col(ColumnDef::new(OutboxParked::ParkedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["outbox_parked", "outbox_relays", "outbox_lanes", "outbox_state"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX idx_outbox_pos").await?;
        db.execute_unprepared("DROP INDEX idx_outbox_unstamped").await?;
        for column in [Outbox::Pos, Outbox::Lane] {
            manager.alter_table(Table::alter().table(Outbox::Table).drop_column(column).to_owned()).await?;
        }
        db.execute_unprepared("CREATE INDEX idx_outbox_pending ON outbox (seq) WHERE published_at IS NULL").await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Pos,
    Lane,
}

#[derive(DeriveIden)]
enum OutboxState {
    Table,
    Id,
    LastPos,
    PrunedThrough,
}

#[derive(DeriveIden)]
enum OutboxLanes {
    Table,
    Lane,
    Owner,
    LeaseUntil,
    PublishedPos,
}

#[derive(DeriveIden)]
enum OutboxRelays {
    Table,
    Id,
    SeenAt,
}

#[derive(DeriveIden)]
enum OutboxParked {
    Table,
    Seq,
    Pos,
    Lane,
    TenantId,
    AggregateId,
    EventType,
    Reason,
    WaitsFor,
    RetryRequested,
    ParkedAt,
}
