//! Read-your-writes across two real `c360 serve` processes sharing PostgreSQL
//! and a private Redis, tried as a skeptical user would: writes through one,
//! reads through the other right after each write returns; then concurrent
//! readers; then deletes and lookups; with another process loading the CPU;
//! with Redis frozen, then killed. Not one read may be older than the last
//! write acknowledged before it was sent — in both cache modes.

use std::{
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, Database};
use tokio::process::{Child, Command};

use super::{pb, profiles_as, serve_logged, terminate, token_from};

/// A redis-server of the test's own on a free port (it keeps nothing on disk).
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let mut redis = Self { port, child: None };
        redis.restart().await;
        redis
    }

    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed (see README.md)");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the private redis-server did not start");
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    async fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running").to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().await.expect("kill").success());
    }
}

/// Processes that keep both cores busy while they live.
struct CpuLoad(Vec<Child>);

impl CpuLoad {
    fn start() -> Self {
        Self(
            (0..2)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .kill_on_drop(true)
                        .spawn()
                        .expect("start a CPU load")
                })
                .collect(),
        )
    }

    async fn stop(mut self) {
        for child in &mut self.0 {
            let _ = child.kill().await;
        }
    }
}

/// What every phase counts: reads, and reads older than the write acknowledged before them.
#[derive(Default)]
struct Tally {
    reads: AtomicUsize,
    stale: Arc<std::sync::Mutex<Vec<String>>>,
    /// How long each update took to return, by phase (for docs/caching.md).
    writes: std::sync::Mutex<Vec<(&'static str, Duration)>>,
}

impl Tally {
    fn check(&self, phase: &str, floor: i64, seen: i64) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if seen < floor {
            self.stale
                .lock()
                .expect("tally")
                .push(format!("{phase}: read version {seen} after {floor} was acknowledged"));
        }
    }
}

/// An UpdateProfile setting `id`'s segment.
fn set_segment(id: &str, segment: &str) -> pb::UpdateProfileRequest {
    pb::UpdateProfileRequest {
        request_id: String::new(),
        profile: Some(pb::Profile { id: id.into(), segment: segment.into(), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["segment".into()] }),
        etag: String::new(),
        source: String::new(),
    }
}

async fn two_instances_never_serve_an_older_version(l1_capacity_mb: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("jwt-secret");
    std::fs::write(&secret, "two-instances-secret-".repeat(3)).expect("write secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let secret = secret.to_str().expect("utf-8 path").to_owned();
    let database = format!("c360_peers_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect("postgres://root@127.0.0.1:5432/postgres").await.expect("PostgreSQL");
    admin.execute_unprepared(&format!("CREATE DATABASE {database}")).await.expect("create database");
    let mut redis = PrivateRedis::start().await;

    let database_url = format!("postgres://root@127.0.0.1:5432/{database}");
    let redis_url = format!("redis://127.0.0.1:{}", redis.port);
    let env = [("C360_CACHE_KEY", "a-cache-key-of-at-least-32-bytes-for-two")];
    let start = |name: &str| {
        let data = dir.path().join(name);
        let (database_url, redis_url, secret) = (database_url.clone(), redis_url.clone(), secret.clone());
        async move {
            let data = data.to_str().expect("utf-8 path").to_owned();
            let args = [
                "--database-url",
                &database_url,
                "--redis-url",
                &redis_url,
                "--jwt-secret-file",
                &secret,
                "--cache-l1-capacity-mb",
                l1_capacity_mb,
            ];
            serve_logged(&data, &args, &env).await
        }
    };
    let (writer_server, writer_addr, _, _) = start("a").await;
    let token = token_from(&secret).await;
    let mut writer = profiles_as(&writer_addr, &token).await;

    let email = format!("ada.{}@example.com", uuid::Uuid::new_v4().simple());
    let created = writer
        .create_profile(pb::CreateProfileRequest {
            request_id: String::new(),
            profile: Some(pb::Profile {
                kind: pb::ProfileKind::Person as i32,
                given_name: "Ada".into(),
                family_name: "Peers".into(),
                emails: vec![pb::EmailAddress {
                    address: email.clone(),
                    label: "home".into(),
                    primary: true,
                    lineage: None,
                }],
                ..Default::default()
            }),
            source: String::new(),
        })
        .await
        .expect("create")
        .into_inner();
    let id = created.id.clone();
    let tally = Arc::new(Tally::default());

    // The writer alone first: what an update costs with nobody else to tell.
    for round in 0..200 {
        let sent = Instant::now();
        writer.update_profile(set_segment(&id, &format!("solo{round}"))).await.expect("update");
        tally.writes.lock().expect("tally").push(("solo", sent.elapsed()));
    }
    let (reader_server, reader_addr, _, _) = start("b").await;
    let reader = profiles_as(&reader_addr, &token).await;
    let acknowledged = Arc::new(AtomicI64::new(201));

    // One write, then a read through the other instance (by id, and now and
    // then by email).
    let rounds = |phase: &'static str, count: usize| {
        let (mut writer, mut reader, id, email) = (writer.clone(), reader.clone(), id.clone(), email.clone());
        let (tally, acknowledged) = (Arc::clone(&tally), Arc::clone(&acknowledged));
        async move {
            for round in 0..count {
                let update = set_segment(&id, &format!("{phase}{round}"));
                let sent = Instant::now();
                let written: i64 =
                    writer.update_profile(update).await.expect("update").into_inner().etag.parse().expect("etag");
                tally.writes.lock().expect("tally").push((phase, sent.elapsed()));
                acknowledged.store(written, Ordering::SeqCst);
                let read = reader.get_profile(pb::GetProfileRequest { id: id.clone() }).await.expect("read");
                tally.check(phase, written, read.into_inner().etag.parse().expect("etag"));
                if round % 10 == 0 {
                    let lookup = pb::LookupProfileRequest {
                        r#type: pb::IdentifierType::Email as i32,
                        value: email.clone(),
                        source: String::new(),
                    };
                    let found = reader.lookup_profile(lookup).await.expect("lookup").into_inner();
                    tally.check(phase, written, found.etag.parse().expect("etag"));
                }
            }
        }
    };
    // Readers on the other instance while writes go on: each read must be at
    // least as new as the write acknowledged before it was sent.
    let concurrent = |phase: &'static str, writes: usize| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (mut reader, id) = (reader.clone(), id.clone());
                let (tally, acknowledged) = (Arc::clone(&tally), Arc::clone(&acknowledged));
                let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let stop = Arc::clone(&done);
                let task = tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let floor = acknowledged.load(Ordering::SeqCst);
                        let read = reader.get_profile(pb::GetProfileRequest { id: id.clone() }).await.expect("read");
                        tally.check(phase, floor, read.into_inner().etag.parse().expect("etag"));
                    }
                });
                (done, task)
            })
            .collect();
        let writes = rounds(phase, writes);
        async move {
            writes.await;
            for (done, task) in readers {
                done.store(true, Ordering::SeqCst);
                task.await.expect("reader");
            }
        }
    };
    // A profile cached by the reader, deleted through the writer: gone at once.
    let deletes = |phase: &'static str, count: usize| {
        let (mut writer, mut reader, tally) = (writer.clone(), reader.clone(), Arc::clone(&tally));
        async move {
            for round in 0..count {
                let email = format!("gone.{round}.{}@example.com", uuid::Uuid::new_v4().simple());
                let profile = pb::Profile {
                    kind: pb::ProfileKind::Person as i32,
                    given_name: "Gone".into(),
                    emails: vec![pb::EmailAddress {
                        address: email.clone(),
                        label: String::new(),
                        primary: true,
                        lineage: None,
                    }],
                    ..Default::default()
                };
                let create = pb::CreateProfileRequest {
                    request_id: String::new(),
                    profile: Some(profile),
                    source: String::new(),
                };
                let id = writer.create_profile(create).await.expect("create").into_inner().id;
                let lookup = || pb::LookupProfileRequest {
                    r#type: pb::IdentifierType::Email as i32,
                    value: email.clone(),
                    source: String::new(),
                };
                for _ in 0..2 {
                    reader.get_profile(pb::GetProfileRequest { id: id.clone() }).await.expect("cached by the reader");
                    reader.lookup_profile(lookup()).await.expect("cached holder");
                }
                let deleted = writer
                    .delete_profile(pb::DeleteProfileRequest { id: id.clone(), etag: String::new() })
                    .await
                    .expect("delete")
                    .into_inner();
                // A delete is soft: the record stays readable, INACTIVE, and
                // its identifiers are released.
                tally.reads.fetch_add(2, Ordering::Relaxed);
                match reader.get_profile(pb::GetProfileRequest { id: id.clone() }).await {
                    Ok(read)
                        if read.get_ref().etag == deleted.etag
                            && read.get_ref().status == pb::ProfileStatus::Inactive as i32 => {}
                    other => {
                        tally.stale.lock().expect("tally").push(format!("{phase}: deleted profile read as {other:?}"))
                    }
                }
                match reader.lookup_profile(lookup()).await {
                    Err(status) if status.code() == tonic::Code::NotFound => {}
                    other => {
                        tally.stale.lock().expect("tally").push(format!("{phase}: deleted holder found as {other:?}"))
                    }
                }
            }
        }
    };

    let started = Instant::now();
    rounds("plain", 500).await;
    concurrent("concurrent", 200).await;
    deletes("deletes", 50).await;

    let load = CpuLoad::start();
    rounds("loaded", 200).await;
    concurrent("loaded-concurrent", 100).await;
    deletes("loaded-deletes", 20).await;
    load.stop().await;

    // Frozen Redis: calls hang; whatever it held is still there when it resumes.
    redis.signal("-STOP").await;
    concurrent("frozen", 10).await;
    deletes("frozen-deletes", 3).await;
    redis.signal("-CONT").await;
    concurrent("resumed", 100).await;

    // Killed, then back empty.
    redis.kill().await;
    concurrent("killed", 10).await;
    deletes("killed-deletes", 3).await;
    redis.restart().await;
    concurrent("restarted", 100).await;
    rounds("after", 100).await;

    let stale = tally.stale.lock().expect("tally").clone();
    let writes = tally.writes.lock().expect("tally").clone();
    for phase in ["solo", "plain", "loaded", "frozen", "killed", "after"] {
        let mut times: Vec<Duration> = writes.iter().filter(|(p, _)| *p == phase).map(|(_, t)| *t).collect();
        times.sort();
        if let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last()) {
            println!("L1 {l1_capacity_mb} MiB, {phase}: {} updates, median {median:?}, max {max:?}", times.len());
        }
    }
    println!(
        "L1 {l1_capacity_mb} MiB: {} reads across two processes in {:?}, {} stale",
        tally.reads.load(Ordering::Relaxed),
        started.elapsed(),
        stale.len()
    );
    assert!(stale.is_empty(), "stale reads: {stale:#?}");
    drop((writer, reader));
    terminate(writer_server).await;
    terminate(reader_server).await;
    redis.kill().await;
    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
}

/// Issue 17, item 1, with the in-process cache on (the default).
#[tokio::test]
async fn two_processes_never_serve_an_older_version_with_l1() {
    two_instances_never_serve_an_older_version("256").await;
}

/// Issue 17, item 1, with the in-process cache off (Redis only).
#[tokio::test]
async fn two_processes_never_serve_an_older_version_without_l1() {
    two_instances_never_serve_an_older_version("0").await;
}
