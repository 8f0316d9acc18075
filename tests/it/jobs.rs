//! Bulk deduplication as a background job (docs/jobs.md): progress, the
//! merges and review pairs it leaves, cancel, and one instance per job
//! across instances sharing a database.

use std::time::Duration;

use c360_proto::v1 as pb;
use c360_server::{
    auth::Role,
    cache::ProfileCache,
    cli::seed::{Plan, load},
    domain::{
        TenantId,
        identifiers::NormalizationPolicy,
        job::{Job, JobKind, JobOptions, JobProgress, JobState},
    },
    seed::SeedOptions,
    store::{self, SqliteDurability, Store},
};
use c360_tests::{IdentityClient, TENANT, TestApp};
use clap::Parser;
use sea_orm::ConnectionTrait;

use crate::count;

/// `profiles` seeded people of `TENANT` (a fifth of them duplicates) in
/// the app's database.
async fn seed(app: &TestApp, profiles: u64) -> Store {
    let store = Store::connect(&app.db.url, 4, SqliteDurability::Full, ProfileCache::none()).await.expect("connect");
    let plan = Plan {
        options: SeedOptions {
            tenant: TenantId::parse(TENANT).expect("tenant"),
            seed: 7,
            duplicates: 0.2,
            organizations: 0.0,
        },
        profiles,
        events: 0,
        batch_size: 500,
        parallel: 2,
    };
    load(&store, &NormalizationPolicy::default(), &plan, None).await.expect("seed");
    store
}

async fn job(client: &mut IdentityClient, id: &str) -> pb::Job {
    let request = pb::GetJobRequest { job_id: id.to_owned() };
    client.get_job(request).await.expect("get job").into_inner().job.expect("job")
}

/// The job once it ended (within two minutes).
async fn ended(client: &mut IdentityClient, id: &str) -> pb::Job {
    let mut last = None;
    for _ in 0..1200 {
        let job = job(client, id).await;
        if ![pb::JobState::Queued as i32, pb::JobState::Running as i32].contains(&job.state) {
            return job;
        }
        last = Some(job);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} did not end within two minutes: {last:?}");
}

async fn start(client: &mut IdentityClient, dry_run: bool) -> pb::Job {
    let request = pb::StartDeduplicationRequest { dry_run };
    client.start_deduplication(request).await.expect("start").into_inner().job.expect("job")
}

/// Profiles merged into another, and pairs queued for review.
async fn merged_and_queued(app: &TestApp) -> (i64, i64) {
    let db = app.db.connect().await;
    let sql = "SELECT COUNT(*) AS n FROM profiles WHERE merged_into IS NOT NULL";
    let row = db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await;
    let merged = row.expect("count").expect("row").try_get::<i64>("", "n").expect("n");
    let queued = count(&db, "match_candidates").await;
    db.close().await.expect("close");
    (merged, queued)
}

async fn a_job_finds_merges_and_queues_with_its_progress(app: TestApp) {
    let store = seed(&app, 1_500).await;
    let mut steward = app.identity(TENANT, &[Role::Steward]);

    // A dry run first: found and scored, nothing written but the job.
    let dry = start(&mut steward, true).await;
    assert_eq!(dry.state, pb::JobState::Queued as i32, "{dry:?}");
    assert!(dry.dry_run);
    let dry = ended(&mut steward, &dry.job_id).await;
    assert_eq!(dry.state, pb::JobState::Succeeded as i32, "{dry:?}");
    let progress = dry.progress.clone().expect("progress");
    assert_eq!((progress.processed, progress.total), (1_500, 1_500), "{progress:?}");
    assert!(progress.candidate_pairs > 0 && progress.clusters > 0, "{progress:?}");
    assert_eq!((progress.merges, progress.review_pairs), (0, 0), "a dry run merges and queues nothing");
    assert_eq!(merged_and_queued(&app).await, (0, 0));

    let started = start(&mut steward, false).await;
    assert_eq!(started.requested_by, "test-user");
    assert_eq!(started.kind, "DEDUPLICATION");
    let done = ended(&mut steward, &started.job_id).await;
    assert_eq!(done.state, pb::JobState::Succeeded as i32, "{done:?}");
    assert!(done.start_time.is_some() && done.finish_time.is_some(), "{done:?}");
    let progress = done.progress.expect("progress");
    assert_eq!(progress.step, "done");
    assert_eq!((progress.processed, progress.total), (1_500, 1_500), "{progress:?}");
    assert_eq!(progress.clusters, dry.progress.expect("dry progress").clusters, "the same data, the same clusters");
    assert_eq!(progress.merges + progress.merges_refused, progress.clusters, "{progress:?}");
    assert!(progress.merges > 0, "{progress:?}");
    assert_eq!(progress.model_version, 1);
    // Each merge made one or more profiles MERGED; the review pairs wait.
    let (merged, queued) = merged_and_queued(&app).await;
    assert!(merged >= progress.merges as i64, "{merged} merged");
    assert_eq!(queued, progress.review_pairs as i64);

    // Cancelling a finished job changes nothing.
    let request = pb::CancelJobRequest { job_id: started.job_id.clone() };
    let after = steward.cancel_job(request).await.expect("cancel").into_inner().job.expect("job");
    assert_eq!((after.state, after.cancel_requested), (pb::JobState::Succeeded as i32, false));
    store.close().await.expect("close");
}
on_both!(a_job_finds_merges_and_queues_with_its_progress, a_job_finds_merges_and_queues_with_its_progress);

/// A job another instance holds, stored as that instance would.
async fn held_elsewhere(store: &Store, lease: chrono::Duration) -> Job {
    held_elsewhere_with(store, lease, JobOptions::default()).await
}

/// The same, with `options`.
async fn held_elsewhere_with(store: &Store, lease: chrono::Duration, options: JobOptions) -> Job {
    let now = chrono::Utc::now();
    let job = Job {
        id: uuid::Uuid::now_v7(),
        tenant: TenantId::parse(TENANT).expect("tenant"),
        kind: JobKind::Deduplication,
        state: JobState::Running,
        options,
        requested_by: "someone".to_owned(),
        created_at: now,
        started_at: Some(now),
        finished_at: None,
        owner: Some("instance:elsewhere".to_owned()),
        cancel_requested: false,
        progress: JobProgress { step: "reading".to_owned(), ..JobProgress::default() },
        error: None,
    };
    store::jobs::insert(store.db(), &job, Some(now + lease)).await.expect("insert");
    job
}

async fn lapse(store: &Store, job: &Job) {
    let backend = store.db().get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "UPDATE jobs SET lease_until = $1 WHERE id = $2",
        _ => "UPDATE jobs SET lease_until = ? WHERE id = ?",
    };
    let then = chrono::Utc::now() - chrono::Duration::minutes(1);
    let statement = sea_orm::Statement::from_sql_and_values(backend, sql, [then.into(), job.id.into()]);
    let done = store.db().execute_raw(statement).await.expect("lapse");
    assert_eq!(done.rows_affected(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_by_one_instance_is_neither_started_again_nor_run_by_another_until_its_lease_lapses() {
    let app = TestApp::spawn_with(c360_tests::TestDb::postgres().await, &["--job-poll", "100ms"]).await;
    let sibling = app.sibling(&[]).await;
    let store = seed(&app, 300).await;
    // Asked with limits of its own: whoever takes it over keeps them.
    let options = JobOptions { dry_run: true, max_block: Some(2), ..JobOptions::default() };
    let held = held_elsewhere_with(&store, chrono::Duration::hours(1), options).await;

    let mut steward = app.identity(TENANT, &[Role::Steward]);
    let refused =
        steward.start_deduplication(pb::StartDeduplicationRequest::default()).await.expect_err("one at a time");
    assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{refused:?}");
    assert!(refused.message().contains(&held.id.to_string()), "names the job under way: {}", refused.message());

    // Both instances look for work every 100 ms; neither takes a held job.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let stored = store::jobs::get(store.db(), &tenant, held.id).await.expect("get").expect("job");
    assert_eq!(stored.owner.as_deref(), Some("instance:elsewhere"));
    assert_eq!(stored.progress, held.progress, "nobody else wrote its progress");

    // Its owner died: the lease lapses and one of the two takes it over.
    lapse(&store, &held).await;
    let done = ended(&mut steward, &held.id.to_string()).await;
    assert_eq!(done.state, pb::JobState::Succeeded as i32, "{done:?}");
    let stored = store::jobs::get(store.db(), &tenant, held.id).await.expect("get").expect("job");
    let owner = stored.owner.expect("owner");
    assert!(owner.starts_with("instance:") && owner != "instance:elsewhere", "{owner}");
    assert_eq!(stored.progress.processed, 300);
    let asked = stored.progress.candidate_pairs;
    let started = start(&mut steward, true).await;
    let default = ended(&mut steward, &started.job_id).await;
    let default = default.progress.expect("progress").candidate_pairs;
    assert!(asked < default, "ran with its own block limit: {asked} candidate pairs, {default} by default");
    drop(sibling);
    store.close().await.expect("close");
}

/// An owner that cannot renew its lease stops before the lease lapses:
/// past it another instance may take the job, and two must never run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_cannot_renew_its_lease_stops_before_it_lapses() {
    use c360_server::{dedupe::Tracker, jobs::hold};
    let db = c360_tests::TestDb::postgres().await;
    let store = Store::connect(&db.url, 2, SqliteDurability::Full, ProfileCache::none()).await.expect("connect");
    // Every renewal fails from now on, as with the database out of reach.
    store.clone().close().await.expect("close");
    let cancel = tokio_util::sync::CancellationToken::new();
    let lease = Duration::from_millis(900);
    let started = std::time::Instant::now();
    let work = async { tokio::time::timeout(Duration::from_secs(10), cancel.cancelled()).await.is_ok() };
    let (stopped, held) =
        hold(&store, uuid::Uuid::now_v7(), "instance:test", lease, &Tracker::default(), &cancel, work).await;
    assert!(stopped && held.lost, "stopped: {stopped}, {held:?}");
    assert!(started.elapsed() < lease + Duration::from_millis(500), "within its lease: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_instances_claiming_one_job_at_once_exactly_one_gets_it() {
    let app = TestApp::spawn().await;
    let store = Store::connect(&app.db.url, 16, SqliteDurability::Full, ProfileCache::none()).await.expect("connect");
    for _ in 0..5 {
        let job = held_elsewhere(&store, chrono::Duration::hours(1)).await;
        lapse(&store, &job).await;
        let claims = (0..12).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let now = chrono::Utc::now();
                let owner = format!("instance:{i}");
                store::jobs::claim(store.db(), job.id, &owner, now, now + chrono::Duration::minutes(1)).await
            })
        });
        let won: Vec<_> = futures::future::join_all(claims)
            .await
            .into_iter()
            .filter_map(|claim| claim.expect("task").expect("claim"))
            .collect();
        assert_eq!(won.len(), 1, "{won:?}");
        assert_eq!(won[0].state, JobState::Running);
        // Done with this one, so the next can be started.
        let owner = won[0].owner.clone().expect("owner");
        let (progress, now) = (JobProgress::default(), chrono::Utc::now());
        let finished = store::jobs::finish(store.db(), job.id, &owner, JobState::Succeeded, &progress, None, now);
        assert!(finished.await.expect("finish"));
    }
    store.close().await.expect("close");
}

async fn cancelled_jobs_stop_and_say_so(app: TestApp) {
    let store = seed(&app, 4_000).await;
    let mut steward = app.identity(TENANT, &[Role::Steward]);

    // Running: it stops within about a second of the ask.
    let running = start(&mut steward, false).await;
    let request = pb::CancelJobRequest { job_id: running.job_id.clone() };
    let asked = steward.cancel_job(request).await.expect("cancel").into_inner().job.expect("job");
    assert!(asked.cancel_requested, "{asked:?}");
    let stopped = ended(&mut steward, &running.job_id).await;
    assert_eq!(stopped.state, pb::JobState::Cancelled as i32, "{stopped:?}");
    assert!(stopped.finish_time.is_some());

    // Held by an instance that died after the ask: whoever takes it over
    // ends it without running it.
    let held = held_elsewhere(&store, chrono::Duration::hours(1)).await;
    let request = pb::CancelJobRequest { job_id: held.id.to_string() };
    let asked = steward.cancel_job(request).await.expect("cancel").into_inner().job.expect("job");
    assert_eq!((asked.state, asked.cancel_requested), (pb::JobState::Running as i32, true));
    lapse(&store, &held).await;
    let stopped = ended(&mut steward, &held.id.to_string()).await;
    assert_eq!(stopped.state, pb::JobState::Cancelled as i32, "{stopped:?}");
    assert_eq!(merged_and_queued(&app).await.0, 0, "neither job merged anything");
    store.close().await.expect("close");
}
on_both!(cancelled_jobs_stop_and_say_so, cancelled_jobs_stop_and_say_so);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_asked_for_by_their_id_in_the_callers_tenant_only() {
    let app = TestApp::spawn().await;
    let mut steward = app.identity(TENANT, &[Role::Steward]);
    let started = start(&mut steward, true).await;

    let mut other = app.identity("globex", &[Role::Steward]);
    let request = pb::GetJobRequest { job_id: started.job_id.clone() };
    let missing = other.get_job(request).await.expect_err("another tenant's job");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let request = pb::GetJobRequest { job_id: "not-a-job".to_owned() };
    let bad = steward.get_job(request).await.expect_err("not an id");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(crate::violated_fields(&bad), ["job_id"]);

    let mut agent = app.identity(TENANT, &[Role::Agent]);
    let denied = agent.start_deduplication(pb::StartDeduplicationRequest::default()).await.expect_err("agent");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    ended(&mut steward, &started.job_id).await;
}

/// Runs `c360 dedupe` (merging) in this process against `app`'s database.
async fn dedupe_command(app: &TestApp) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8");
    let args = ["c360", "dedupe", "--tenant", TENANT, "--database-url", &app.db.url, "--data-dir", data_dir];
    c360_server::cli::Cli::try_parse_from(args).expect("dedupe arguments").run().await
}

/// A killed `c360 dedupe` leaves its job RUNNING with nobody renewing it:
/// the next command takes it over once the lease lapses (no server need be
/// running), and refuses, naming it, while it is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_runs_a_job_its_stopped_owner_left_and_refuses_a_held_one() {
    // The server looks for work once an hour: the command, not it, takes the job.
    let app = TestApp::spawn_with(c360_tests::TestDb::postgres().await, &["--job-poll", "1h"]).await;
    let store = seed(&app, 300).await;
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let held = held_elsewhere(&store, chrono::Duration::hours(1)).await;
    let refused = dedupe_command(&app).await.expect_err("the job is held");
    assert!(refused.to_string().contains(&held.id.to_string()), "names the job under way: {refused}");

    lapse(&store, &held).await;
    dedupe_command(&app).await.expect("runs the job left behind");
    let done = store::jobs::get(store.db(), &tenant, held.id).await.expect("get").expect("job");
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    let progress = &done.progress;
    assert!(progress.total >= 250 && progress.processed == progress.total, "every profile read: {progress:?}");
    assert!(done.progress.merges > 0, "{:?}", done.progress);
    assert!(store::jobs::active(store.db(), &tenant, JobKind::Deduplication).await.expect("active").is_none());

    // A dry run left behind gives way: cancelled, and the command runs its own.
    let dry =
        held_elsewhere_with(&store, chrono::Duration::hours(1), JobOptions { dry_run: true, ..JobOptions::default() })
            .await;
    lapse(&store, &dry).await;
    dedupe_command(&app).await.expect("runs in place of the dry run");
    let replaced = store::jobs::get(store.db(), &tenant, dry.id).await.expect("get").expect("job");
    assert_eq!(replaced.state, JobState::Cancelled, "{replaced:?}");
    assert!(replaced.error.as_deref().is_some_and(|e| e.contains("replaced")), "{replaced:?}");
    store.close().await.expect("close");
}
