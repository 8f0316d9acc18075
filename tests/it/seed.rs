//! `c360 seed`'s loader against real PostgreSQL and the embedded SQLite:
//! profiles, identifiers and interactions land whole, and a seed always
//! writes the same tenant.

use c360_server::{
    cache::ProfileCache,
    cli::seed::{Plan, load},
    domain::{TenantId, identifiers::NormalizationPolicy},
    seed::SeedOptions,
    store::{SqliteDurability, Store},
};
use c360_tests::TestDb;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::count;

fn plan(seed: u64, profiles: u64, events: u64) -> Plan {
    Plan {
        options: SeedOptions {
            tenant: TenantId::parse("demo").expect("tenant"),
            seed,
            duplicates: 0.1,
            organizations: 0.1,
        },
        profiles,
        events,
        batch_size: 300,
        parallel: 3,
    }
}

async fn seeded(db: &TestDb, plan: &Plan) -> Vec<u8> {
    let store = Store::connect(&db.url, 4, SqliteDurability::Full, ProfileCache::none()).await.expect("connect");
    store.migrate().await.expect("migrate");
    let mut truth = Vec::new();
    let report = load(&store, &NormalizationPolicy::default(), plan, Some(&mut truth)).await.expect("seed");
    assert_eq!((report.profiles, report.events), (plan.profiles, plan.events));
    store.close().await.expect("close");
    truth
}

/// One text line per event, in event id order: a fingerprint of the table.
async fn events_digest(db: &DatabaseConnection) -> Vec<String> {
    let sql = "SELECT event_id, profile_id, event_type, channel, source, amount_minor, currency FROM events \
               ORDER BY event_id";
    let rows =
        db.query_all_raw(Statement::from_string(db.get_database_backend(), sql.to_owned())).await.expect("events");
    rows.iter()
        .map(|row| {
            let text = |column: &str| row.try_get::<Option<String>>("", column).expect(column).unwrap_or_default();
            let amount = row.try_get::<Option<i64>>("", "amount_minor").expect("amount_minor");
            let profile = row.try_get::<uuid::Uuid>("", "profile_id").expect("profile_id");
            format!(
                "{} {profile} {} {} {} {amount:?} {}",
                text("event_id"),
                text("event_type"),
                text("channel"),
                text("source"),
                text("currency")
            )
        })
        .collect()
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql.to_owned()))
        .await
        .expect("query")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("n")
}

#[tokio::test]
async fn seed_writes_profiles_identifiers_and_events_on_existing_profiles() {
    let db = TestDb::postgres().await;
    let truth = seeded(&db, &plan(11, 2_000, 12_000)).await;
    let conn = db.connect().await;
    assert_eq!(count(&conn, "profiles").await, 2_000);
    assert_eq!(count(&conn, "events").await, 12_000);
    assert!(count(&conn, "identities").await >= 2_000 * 2, "each profile holds an email and an external id at least");
    let orphans = "SELECT COUNT(*) AS n FROM events e LEFT JOIN profiles p \
                   ON p.tenant_id = e.tenant_id AND p.id = e.profile_id WHERE p.id IS NULL";
    assert_eq!(scalar(&conn, orphans).await, 0, "every event names a seeded profile");
    let early = "SELECT COUNT(*) AS n FROM events e JOIN profiles p \
                 ON p.tenant_id = e.tenant_id AND p.id = e.profile_id WHERE e.occurred_at < p.created_at";
    assert_eq!(scalar(&conn, early).await, 0, "no event happens before its customer existed");
    let types = "SELECT COUNT(DISTINCT event_type) AS n FROM events";
    assert!(scalar(&conn, types).await >= 10, "the event mix covers the types");
    let unpriced = "SELECT COUNT(*) AS n FROM events WHERE event_type = 'PURCHASE' \
                    AND (amount_minor IS NULL OR amount_minor <= 0 OR currency IS NULL)";
    assert_eq!(scalar(&conn, unpriced).await, 0, "every purchase has an amount and a currency");
    let busiest = "SELECT MAX(n) AS n FROM (SELECT COUNT(*) AS n FROM events GROUP BY profile_id) per_profile";
    assert!(scalar(&conn, busiest).await >= 50, "a few customers have long histories");
    let pairs = String::from_utf8(truth).expect("utf-8").lines().count() - 1;
    assert!((100..300).contains(&pairs), "about 10% near-duplicates in the truth file, got {pairs}");
}

#[tokio::test]
async fn the_same_seed_writes_the_same_events_on_postgres_and_sqlite() {
    let (postgres, sqlite) = (TestDb::postgres().await, TestDb::sqlite());
    let plan = plan(5, 500, 3_000);
    let truths = [seeded(&postgres, &plan).await, seeded(&sqlite, &plan).await];
    assert_eq!(truths[0], truths[1], "the same duplicates");
    let digests = [events_digest(&postgres.connect().await).await, events_digest(&sqlite.connect().await).await];
    assert_eq!(digests[0].len(), 3_000);
    assert_eq!(digests[0], digests[1], "the same events, row for row");
}

#[tokio::test]
async fn seeding_a_tenant_that_holds_profiles_is_refused_and_writes_nothing() {
    let db = TestDb::postgres().await;
    seeded(&db, &plan(1, 100, 200)).await;
    let store = Store::connect(&db.url, 2, SqliteDurability::Full, ProfileCache::none()).await.expect("connect");
    let error = load(&store, &NormalizationPolicy::default(), &plan(2, 100, 200), None).await.expect_err("refused");
    assert!(error.to_string().contains("tenant 'demo' already holds profiles"), "{error}");
    let conn = db.connect().await;
    assert_eq!((count(&conn, "profiles").await, count(&conn, "events").await), (100, 200));
}

/// A CLI write reaches running instances' caches as an RPC's does: an
/// instance that cached "no such profile" for an id or address the seed then
/// creates answers with the profile as soon as the seed returns. (60
/// profiles: more invalidations than one Redis pipeline carries.)
#[tokio::test]
async fn a_seed_with_redis_invalidates_a_running_instances_cache() {
    use c360_proto::v1 as pb;
    use c360_server::{auth::Role, cli::Cli, seed::Generator};
    use clap::Parser;

    let prefix = format!("c360test-{}", uuid::Uuid::now_v7().simple());
    let redis = c360_tests::redis_url();
    let key = c360_tests::test_cache_key_file();
    let flags = ["--redis-url", &redis, "--cache-prefix", &prefix, "--cache-key-file", &key];
    let app = c360_tests::TestApp::spawn_with(TestDb::postgres().await, &flags).await;
    let options = plan(7, 1, 0).options;
    let first = Generator::new(options, NormalizationPolicy::default()).next_record().profile;
    let mut client = app.client("demo", Role::Agent);
    let get = || pb::GetProfileRequest { id: first.id.to_string() };
    let lookup = || pb::LookupProfileRequest {
        r#type: pb::IdentifierType::ExternalId as i32,
        value: first.data.external_ids[0].id.clone(),
        source: first.data.external_ids[0].source.clone(),
    };
    for _ in 0..2 {
        assert_eq!(client.get_profile(get()).await.expect_err("not yet").code(), tonic::Code::NotFound);
        assert_eq!(client.lookup_profile(lookup()).await.expect_err("not yet").code(), tonic::Code::NotFound);
    }

    let data_dir = tempfile::tempdir().expect("temp dir");
    let data_dir = data_dir.path().to_str().expect("utf-8");
    let args = [
        "c360",
        "seed",
        "--tenant",
        "demo",
        "--profiles",
        "60",
        "--seed",
        "7",
        "--database-url",
        &app.db.url,
        "--data-dir",
        data_dir,
        "--redis-url",
        &redis,
        "--cache-prefix",
        &prefix,
        "--cache-key-file",
        &key,
    ];
    Cli::try_parse_from(args).expect("seed arguments").run().await.expect("seed");

    let found = client.get_profile(get()).await.expect("the cached 'not found' is gone").into_inner();
    assert_eq!(found.id, first.id.to_string());
    let held = client.lookup_profile(lookup()).await.expect("the cached 'nobody' is gone").into_inner();
    assert_eq!(held.id, found.id);
}
