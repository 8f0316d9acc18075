//! The read-through cache: reads are served from it, every read started after
//! a write returned sees that write, concurrent misses cost one database read,
//! other instances drop their copy, and a Redis outage fails no request.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use c360_proto::v1 as pb;
use c360_server::auth::Role;
use c360_tests::{PrivateRedis, ProfileClient, TestApp, TestDb};
use sea_orm::{ConnectionTrait, Statement};

use crate::{create, person, set_segment};

const DB_LOADS: &str = "c360_cache_database_loads_total";
const L1_HITS: &str = "c360_cache_requests_total{tier=\"l1\",result=\"hit\"}";
const PROFILE_QUERIES: &str = "c360_database_profile_queries_total";
const L2_HITS: &str = "c360_cache_requests_total{tier=\"l2\",result=\"hit\"}";

async fn version(client: &mut ProfileClient, id: &str) -> i64 {
    let profile = client.get_profile(pb::GetProfileRequest { id: id.into() }).await.expect("get").into_inner();
    profile.etag.parse().expect("etag")
}

async fn new_profile(app: &TestApp, name: &str) -> pb::Profile {
    app.agent().create_profile(create(person(name, "Cached", ""))).await.expect("create").into_inner()
}

#[tokio::test]
async fn repeated_reads_are_served_by_the_cache_tiers() {
    let app = TestApp::spawn_with_redis(&[]).await;
    let created = new_profile(&app, "Ada").await;
    let mut client = app.agent();
    let loads = app.metric(DB_LOADS).await;
    for _ in 0..5 {
        assert_eq!(version(&mut client, &created.id).await, 1);
    }
    assert_eq!(app.metric(DB_LOADS).await - loads, 1.0, "one database read, then cache hits");
    assert!(app.metric(L1_HITS).await >= 4.0);

    // Another instance with L1 off reads the copy the first one put in Redis.
    let sibling = app.sibling(&["--cache-l1-capacity-mb", "0"]).await;
    let mut other = sibling.agent();
    assert_eq!(version(&mut other, &created.id).await, 1);
    assert_eq!(sibling.metric(DB_LOADS).await, 0.0);
    assert_eq!(sibling.metric(L2_HITS).await, 1.0);
}

#[tokio::test]
async fn concurrent_misses_on_one_profile_cost_one_database_read() {
    let app = TestApp::spawn_with_redis(&[]).await;
    let created = new_profile(&app, "Ada").await;
    let loads = app.metric(DB_LOADS).await;
    let reads = (0..32).map(|_| {
        let (mut client, id) = (app.agent(), created.id.clone());
        tokio::spawn(async move { version(&mut client, &id).await })
    });
    for read in futures::future::join_all(reads).await {
        assert_eq!(read.expect("task"), 1);
    }
    assert_eq!(app.metric(DB_LOADS).await - loads, 1.0);
}

#[tokio::test]
async fn not_found_is_cached_briefly() {
    let app = TestApp::spawn().await;
    let mut client = app.agent();
    let unknown = uuid::Uuid::now_v7().to_string();
    let loads = app.metric(DB_LOADS).await;
    for _ in 0..3 {
        let status = client.get_profile(pb::GetProfileRequest { id: unknown.clone() }).await.expect_err("unknown");
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
    assert_eq!(app.metric(DB_LOADS).await - loads, 1.0);
}

#[tokio::test]
async fn batch_get_reads_only_what_the_cache_lacks() {
    let app = TestApp::spawn_with_redis(&[]).await;
    let mut client = app.agent();
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(new_profile(&app, &format!("B{i}")).await.id);
    }
    for id in &ids[..3] {
        version(&mut client, id).await;
    }
    let loads = app.metric(DB_LOADS).await;
    let mut request = ids.clone();
    request.push(uuid::Uuid::now_v7().to_string());
    let reply = client.batch_get_profiles(pb::BatchGetProfilesRequest { ids: request }).await.expect("batch");
    let reply = reply.into_inner();
    assert_eq!(reply.profiles.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(reply.missing_ids.len(), 1);
    assert_eq!(app.metric(DB_LOADS).await - loads, 4.0, "three uncached profiles and the unknown id");
}

/// Writers update profiles while readers read them; every read records the
/// newest version acknowledged to a writer before the read began, and must
/// see at least that version.
async fn assert_read_your_writes(app: &TestApp, readers: &[ProfileClient], rounds: i64) {
    let profiles: Vec<String> = [new_profile(app, "Rw0").await.id, new_profile(app, "Rw1").await.id].into();
    let acknowledged: Arc<Vec<AtomicI64>> = Arc::new(profiles.iter().map(|_| AtomicI64::new(1)).collect());
    let done = Arc::new(AtomicBool::new(false));

    let mut reader_tasks = Vec::new();
    for (n, client) in readers.iter().enumerate() {
        let (mut client, profiles, acknowledged, done) =
            (client.clone(), profiles.clone(), Arc::clone(&acknowledged), Arc::clone(&done));
        reader_tasks.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !done.load(Ordering::Acquire) {
                let which = (reads as usize + n) % profiles.len();
                let floor = acknowledged[which].load(Ordering::Acquire);
                let seen = version(&mut client, &profiles[which]).await;
                assert!(seen >= floor, "a read that began after version {floor} was acknowledged saw {seen}");
                reads += 1;
            }
            reads
        }));
    }
    let mut writers = Vec::new();
    for (which, id) in profiles.iter().enumerate() {
        let (mut client, id, acknowledged) = (app.agent(), id.clone(), Arc::clone(&acknowledged));
        writers.push(tokio::spawn(async move {
            for round in 0..rounds {
                let updated = client.update_profile(set_segment(&id, &format!("S{round}"), "")).await.expect("update");
                let version: i64 = updated.into_inner().etag.parse().expect("etag");
                acknowledged[which].fetch_max(version, Ordering::AcqRel);
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    done.store(true, Ordering::Release);
    let mut total = 0;
    for reader in reader_tasks {
        total += reader.await.expect("reader kept read-your-writes");
    }
    assert!(total > rounds as u64, "readers ran throughout ({total} reads)");
}

#[tokio::test]
async fn no_read_after_a_write_sees_an_older_version_with_redis() {
    let app = TestApp::spawn_with_redis(&[]).await;
    let readers: Vec<_> = (0..6).map(|_| app.agent()).collect();
    assert_read_your_writes(&app, &readers, 150).await;
}

#[tokio::test]
async fn no_read_after_a_write_sees_an_older_version_in_process() {
    let app = TestApp::spawn().await;
    let readers: Vec<_> = (0..6).map(|_| app.agent()).collect();
    assert_read_your_writes(&app, &readers, 150).await;
}

#[tokio::test]
async fn instances_without_l1_see_each_others_writes_at_once() {
    let app = TestApp::spawn_with_redis(&["--cache-l1-capacity-mb", "0"]).await;
    let sibling = app.sibling(&[]).await;
    // Writes go to the first instance, reads to the second: no window at all.
    let readers: Vec<_> = (0..4).map(|_| sibling.agent()).collect();
    assert_read_your_writes(&app, &readers, 100).await;
}

#[tokio::test]
async fn another_instance_drops_its_l1_copy_when_the_invalidation_arrives() {
    let app = TestApp::spawn_with_redis(&[]).await;
    let sibling = app.sibling(&[]).await;
    let created = new_profile(&app, "Ada").await;
    let mut reader = sibling.agent();
    assert_eq!(version(&mut reader, &created.id).await, 1);
    assert_eq!(version(&mut reader, &created.id).await, 1, "now in the sibling's L1");

    let mut windows = Vec::new();
    for round in 0..20 {
        let updated = app.agent().update_profile(set_segment(&created.id, &format!("W{round}"), "")).await;
        let written: i64 = updated.expect("update").into_inner().etag.parse().expect("etag");
        let acknowledged = Instant::now();
        loop {
            if version(&mut reader, &created.id).await >= written {
                break;
            }
            assert!(acknowledged.elapsed() < Duration::from_secs(5), "the sibling never saw version {written}");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        windows.push(acknowledged.elapsed());
    }
    windows.sort();
    println!(
        "cross-instance invalidation window over {} writes: median {:?}, max {:?}",
        windows.len(),
        windows[windows.len() / 2],
        windows[windows.len() - 1]
    );
}

#[tokio::test]
async fn a_redis_outage_fails_no_request_and_leaves_nothing_stale() {
    let mut redis = PrivateRedis::start().await;
    let app = TestApp::spawn_with_cache(&redis.url(), &[]).await;
    let created = new_profile(&app, "Ada").await;
    let mut client = app.agent();
    assert_eq!(version(&mut client, &created.id).await, 1, "cached in L1 and Redis");
    let wait_for_channel = |up: bool| {
        let cache = app.cache.clone();
        async move {
            for _ in 0..500 {
                if cache.channel_up() == up {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("invalidation channel never became {}", if up { "up" } else { "down" });
        }
    };
    wait_for_channel(true).await;

    // Frozen Redis: calls hang until the timeout, the data stays.
    redis.pause().await;
    for round in 0..5 {
        let started = Instant::now();
        let updated = client.update_profile(set_segment(&created.id, &format!("P{round}"), "")).await;
        let written: i64 = updated.expect("writes succeed while Redis hangs").into_inner().etag.parse().expect("etag");
        assert_eq!(version(&mut client, &created.id).await, written, "reads succeed and see the write");
        assert!(started.elapsed() < Duration::from_secs(3), "bounded by the Redis timeout");
    }
    assert_eq!(app.metric("c360_cache_breaker_state").await, 1.0, "the breaker opened");
    redis.resume().await;
    // Redis still holds version 1; the tombstones this instance could not
    // deliver are replayed as soon as Redis answers. Its own reads never see
    // the old version, before or after.
    let replayed = Instant::now();
    while app.metric("c360_cache_pending_invalidations").await > 0.0 {
        assert_eq!(version(&mut client, &created.id).await, 6);
        assert!(replayed.elapsed() < Duration::from_secs(10), "pending invalidations were never replayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("invalidations replayed {:?} after Redis resumed", replayed.elapsed());
    // Once replayed, no instance can read what Redis held before the outage.
    let sibling = app.sibling(&["--cache-l1-capacity-mb", "0"]).await;
    let mut other = sibling.agent();
    for _ in 0..20 {
        assert_eq!(version(&mut client, &created.id).await, 6);
        assert_eq!(version(&mut other, &created.id).await, 6);
    }
    for _ in 0..200 {
        if app.metric("c360_cache_breaker_state").await == 0.0 {
            break;
        }
        version(&mut client, &created.id).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.metric("c360_cache_breaker_state").await, 0.0, "the breaker closed again");

    // Killed Redis: every request still succeeds; L1 is bypassed while the
    // invalidation channel is down.
    redis.kill().await;
    wait_for_channel(false).await;
    let updated = client.update_profile(set_segment(&created.id, "K", "")).await.expect("write without Redis");
    assert_eq!(updated.into_inner().etag, "7");
    assert_eq!(version(&mut client, &created.id).await, 7);
    let unknown = client.get_profile(pb::GetProfileRequest { id: uuid::Uuid::now_v7().to_string() }).await;
    assert_eq!(unknown.expect_err("unknown").code(), tonic::Code::NotFound);

    // Restarted: the channel comes back and Redis serves again.
    redis.restart().await;
    wait_for_channel(true).await;
    let hits = app.metric(L2_HITS).await + app.metric(L1_HITS).await;
    for _ in 0..50 {
        assert_eq!(version(&mut client, &created.id).await, 7);
        if app.metric(L2_HITS).await + app.metric(L1_HITS).await > hits + 1.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the cache was not used again after Redis returned");
}

#[tokio::test]
async fn concurrent_cold_reads_each_get_their_own_profile_and_never_another_tenants() {
    // L1 off: every read goes to the database, where concurrent reads share queries.
    let app = TestApp::spawn_with(TestDb::postgres().await, &["--cache-l1-capacity-mb", "0"]).await;
    let (acme, globex) = (app.client("acme", Role::Agent), app.client("globex", Role::Agent));
    let mut owned = Vec::new();
    for n in 0..60 {
        for (tenant, client) in [("acme", &acme), ("globex", &globex)] {
            let name = format!("{tenant}{n}");
            let created = client.clone().create_profile(create(person(&name, "Cold", ""))).await.expect("create");
            owned.push((tenant, created.into_inner().id, name));
        }
    }
    let reads = owned.iter().flat_map(|(tenant, id, name)| {
        let (own, other) = if *tenant == "acme" { (&acme, &globex) } else { (&globex, &acme) };
        let (mut own, mut other, id, name) = (own.clone(), other.clone(), id.clone(), name.clone());
        let foreign_id = id.clone();
        let own_read = tokio::spawn(async move {
            let got = own.get_profile(pb::GetProfileRequest { id: id.clone() }).await.expect("own get").into_inner();
            assert_eq!((got.id, got.given_name), (id, name), "each read gets the profile it asked for");
        });
        let other_read = tokio::spawn(async move {
            let status = other.get_profile(pb::GetProfileRequest { id: foreign_id }).await.expect_err("foreign get");
            assert_eq!(status.code(), tonic::Code::NotFound, "another tenant's profile is not found: {status:?}");
        });
        [own_read, other_read]
    });
    let (loads, queries) = (app.metric(DB_LOADS).await, app.metric(PROFILE_QUERIES).await);
    for read in futures::future::join_all(reads.collect::<Vec<_>>()).await {
        read.expect("read task");
    }
    let (loads, queries) = (app.metric(DB_LOADS).await - loads, app.metric(PROFILE_QUERIES).await - queries);
    assert_eq!(loads, 240.0, "every read missed the cache");
    assert!(queries < loads, "concurrent reads shared queries: {queries} queries for {loads} reads");
}

/// A write whose caller gives up while its COMMIT is under way (here a
/// deferred trigger makes the commit take 1.5 s and the deadline is 500 ms,
/// ample for everything before the commit even on a loaded machine)
/// still invalidates every cached copy: the commit completes on the server
/// whatever the caller does, so the invalidation must not be the request's
/// to lose. Another instance that cached the profile then serves the deleted
/// profile as INACTIVE at once, not ACTIVE until the TTL (5 minutes).
#[tokio::test]
async fn a_write_cut_off_during_its_commit_still_invalidates_other_instances() {
    let app = TestApp::spawn_with_redis(&[]).await;
    let sibling = app.sibling(&[]).await;
    let created = new_profile(&app, "Ada").await;
    let mut reader = sibling.agent();
    for _ in 0..2 {
        assert_eq!(version(&mut reader, &created.id).await, 1, "in the sibling's L1 and in Redis");
    }
    let db = app.db.connect().await;
    for sql in [
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON profiles DEFERRABLE INITIALLY DEFERRED \
         FOR EACH ROW EXECUTE FUNCTION slow_commit()",
    ] {
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect("slow commits");
    }

    let mut request = tonic::Request::new(pb::DeleteProfileRequest { id: created.id.clone(), etag: String::new() });
    request.set_timeout(Duration::from_millis(500));
    let cut = app.agent().delete_profile(request).await.expect_err("the commit outlasts the deadline");
    assert_eq!(cut.code(), tonic::Code::DeadlineExceeded, "{cut:?}");
    let sql = format!("SELECT status FROM profiles WHERE id = '{}'", created.id);
    let started = Instant::now();
    loop {
        let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql.clone())).await;
        let status: String = row.expect("query").expect("row").try_get("", "status").expect("status");
        if status == "INACTIVE" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the delete committed anyway");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    loop {
        let read = reader.get_profile(pb::GetProfileRequest { id: created.id.clone() }).await.expect("read");
        if read.into_inner().status == pb::ProfileStatus::Inactive as i32 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the sibling still serves the deleted profile as ACTIVE");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A flood of cold reads whose callers give up at once (random ids, deadlines
/// of a millisecond or two) leaves nothing behind: single flight forgot an
/// entry only when its load finished, so every cancelled load stayed in its
/// map for good and memory grew with the flood.
#[tokio::test]
async fn cancelled_cold_reads_leave_no_load_behind() {
    let app = TestApp::spawn().await;
    let mut cut = 0;
    for round in 0..2_000u32 {
        let mut request = tonic::Request::new(pb::GetProfileRequest { id: uuid::Uuid::now_v7().to_string() });
        request.set_timeout(Duration::from_micros(500 + u64::from(round % 4) * 500));
        match app.agent().get_profile(request).await {
            Err(status)
                if status.code() == tonic::Code::DeadlineExceeded || status.code() == tonic::Code::Cancelled =>
            {
                cut += 1
            }
            _ => {}
        }
    }
    assert!(cut > 100, "most reads are cut off mid-flight: {cut}");
    eventually!(app.metric("c360_cache_loads_in_flight").await == 0.0);
}

/// Found in review: a hold counted as covering (already seen by everyone)
/// could be released by another instance while the new write relied on it,
/// and a hold was dated before its commit made it visible. A hold is now
/// committed first, dated after, and covers only with another hold dated
/// long enough ago still standing; an undated hold is never released.
async fn holds_are_dated_after_their_commit_and_cover_only_beside_an_old_one(app: TestApp) {
    use c360_server::{cache::peers::Coordination, store::peers::DatabasePeers};
    let db = app.db.connect().await;
    let peers = DatabasePeers::new(db.clone());
    let patience = Duration::from_millis(300);
    assert!(!peers.hold(&[], patience).await.expect("hold"), "nothing older stands");
    let census = peers.poll(None, Duration::from_secs(2)).await.expect("poll");
    assert_eq!(census.holds, 1, "a hold is visible as soon as it is left");
    assert!(!peers.hold(&[], patience).await.expect("hold"), "the first is not old enough yet");
    tokio::time::sleep(patience + Duration::from_millis(50)).await;
    assert!(peers.hold(&["P\tkey\t3".to_owned()], patience).await.expect("hold"), "an old one still stands");
    // Paid holds go once old enough; owed ones stay until paid.
    peers.release(patience, Duration::from_secs(60)).await.expect("release");
    let owed = peers.owed().await.expect("owed");
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].writes, ["P\tkey\t3"]);
    assert_eq!(peers.poll(None, Duration::from_secs(2)).await.expect("poll").holds, 1);
    peers.paid(&[owed[0].id]).await.expect("paid");
    tokio::time::sleep(patience + Duration::from_millis(50)).await;
    peers.release(patience, Duration::from_secs(60)).await.expect("release");
    assert_eq!(peers.poll(None, Duration::from_secs(2)).await.expect("poll").holds, 0);
    // A member's gap is measured by the database's clock.
    let first = peers.poll(Some("i1"), Duration::from_secs(2)).await.expect("poll");
    assert_eq!(first.gap_ms, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = peers.poll(Some("i1"), Duration::from_secs(2)).await.expect("poll");
    assert!(second.gap_ms.is_some_and(|gap| (90..2_000).contains(&gap)), "{:?}", second.gap_ms);
    assert!(second.members.iter().any(|m| m == "i1"));
}
on_both!(holds_are_dated_after_their_commit, holds_are_dated_after_their_commit_and_cover_only_beside_an_old_one);
