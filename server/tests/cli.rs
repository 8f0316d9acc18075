//! The real `c360` binary, started once as a user would: `serve` on free ports
//! with the embedded default, `token` minting a credential it accepts, calls
//! over the network, then SIGTERM and a clean exit.

use std::{process::Stdio, time::Duration};

use c360_proto::v1::{self as pb, profile_service_client::ProfileServiceClient};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};
use tonic::{Request, metadata::MetadataValue, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[path = "cli/two_instances.rs"]
mod two_instances;

const BIN: &str = env!("CARGO_BIN_EXE_c360");

/// A `c360` command started as a user would start it: no `C360_*` variables,
/// and none of those Cargo sets for the test (as if not under `cargo run`).
fn c360(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("C360_") || name.starts_with("CARGO")) {
        command.env_remove(name);
    }
    // Colours follow the terminal, not a caller's preference.
    command.env_remove("NO_COLOR");
    command.args(args).kill_on_drop(true);
    command
}

/// Starts `c360 serve` on free ports in `data_dir`; returns it and its gRPC address.
async fn serve(data_dir: &str) -> (tokio::process::Child, String) {
    let (server, grpc_addr, _) = serve_with(data_dir, &[]).await;
    (server, grpc_addr)
}

/// [`serve`] with extra environment variables; also returns the banner's lines.
async fn serve_with(data_dir: &str, env: &[(&str, &str)]) -> (tokio::process::Child, String, Vec<String>) {
    let (server, grpc_addr, banner, _) = serve_logged(data_dir, &[], env).await;
    (server, grpc_addr, banner)
}

/// The server's log lines (stderr), as they arrive.
type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// [`serve_with`] with extra arguments; also returns its log.
async fn serve_logged(
    data_dir: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, String, Vec<String>, Log) {
    let mut args = vec!["serve", "--data-dir", data_dir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut command = c360(&args);
    command.envs(env.iter().copied());
    let mut server = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start c360 serve");
    let log = Log::default();
    let mut errors = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let collected = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            collected.lock().expect("log").push(line);
        }
    });
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let banner = tokio::time::timeout(Duration::from_secs(30), async {
        let mut banner = Vec::new();
        loop {
            let line = lines.next_line().await.expect("read stdout").expect("c360 serve exited early");
            let last = line.starts_with("call it:");
            if line.contains("serving gRPC on") || !banner.is_empty() {
                banner.push(line);
            }
            if last {
                return banner;
            }
        }
    })
    .await
    .expect("c360 serve printed its banner");
    let grpc_addr = banner[0].split_whitespace().nth(5).expect("address in banner").to_owned();
    // Keep reading, as a supervisor would: the server's stdout stays open.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (server, grpc_addr, banner, log)
}

/// A ProfileService client sending `token`.
async fn profiles_as(
    grpc_addr: &str,
    token: &str,
) -> ProfileServiceClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        impl FnMut(Request<()>) -> Result<Request<()>, tonic::Status> + Clone + use<>,
    >,
> {
    let channel = Channel::from_shared(format!("http://{grpc_addr}")).expect("uri").connect().await.expect("connect");
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse().expect("header");
    ProfileServiceClient::with_interceptor(channel, move |mut request: Request<()>| {
        request.metadata_mut().insert("authorization", bearer.clone());
        Ok(request)
    })
}

/// `c360 token` signed with the secret in `secret_file`.
async fn token_from(secret_file: &str) -> String {
    let args = ["token", "--tenant", "demo", "--role", "admin", "--jwt-secret-file", secret_file];
    let output = c360(&args).output().await.expect("c360 token");
    assert!(output.status.success(), "c360 token: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

/// Sends SIGTERM and asserts a clean exit.
async fn terminate(mut server: tokio::process::Child) {
    let pid = server.id().expect("pid").to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().await.expect("send SIGTERM");
    assert!(kill.success());
    let exit =
        tokio::time::timeout(Duration::from_secs(30), server.wait()).await.expect("exits after SIGTERM").expect("wait");
    assert!(exit.success(), "c360 serve exited with {exit}");
}

/// Found in review: the SIGHUP test ran without a key file, so it showed only
/// that SIGHUP does not end the server, not that it rotates keys. With a key
/// file, a SIGHUP right after the file changes reloads it (the periodic check
/// may win the race; then the rotation is tried again): tokens of the old
/// secret are refused at once, remembered or not, and the new one's accepted.
#[tokio::test]
async fn sighup_rotates_the_token_secret_of_a_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let secret = dir.path().join("jwt-secret");
    let secret_path = secret.to_str().expect("utf-8 path");
    std::fs::write(&secret, "first-secret-".repeat(4)).expect("write secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let data = data_dir.to_str().expect("utf-8 path");
    let (server, grpc_addr, _, log) = serve_logged(data, &["--jwt-secret-file", secret_path], &[]).await;
    let old_token = token_from(secret_path).await;
    let mut old = profiles_as(&grpc_addr, &old_token).await;
    old.list_profiles(pb::ListProfilesRequest::default()).await.expect("the first secret's token is accepted");

    let pid = server.id().expect("pid").to_string();
    let mut by_sighup = false;
    for attempt in 0..3 {
        let seen = log.lock().expect("log").len();
        std::fs::write(&secret, format!("rotated-secret-{attempt}-").repeat(4)).expect("rotate secret");
        let hup = Command::new("kill").args(["-HUP", &pid]).status().await.expect("send SIGHUP");
        assert!(hup.success());
        let reload = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let line = log.lock().expect("log")[seen..].iter().find(|l| l.contains("token keys reloaded")).cloned();
                if let Some(line) = line {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the key file is reloaded");
        if reload.contains("SIGHUP") {
            by_sighup = true;
            break;
        }
    }
    assert!(by_sighup, "a SIGHUP reloaded the key file: {:?}", log.lock().expect("log"));
    let refused = old.list_profiles(pb::ListProfilesRequest::default()).await.expect_err("the old secret is gone");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let new_token = token_from(secret_path).await;
    let mut new = profiles_as(&grpc_addr, &new_token).await;
    new.list_profiles(pb::ListProfilesRequest::default()).await.expect("the new secret's token is accepted");
    terminate(server).await;
}

/// SIGHUP reloads keys; it must never end the server (its default action).
#[tokio::test]
async fn sighup_reloads_keys_and_does_not_stop_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let (server, _, _) = serve_with(data_dir, &[]).await;
    let pid = server.id().expect("pid").to_string();
    for _ in 0..2 {
        let hup = Command::new("kill").args(["-HUP", &pid]).status().await.expect("send SIGHUP");
        assert!(hup.success());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    terminate(server).await;
}

#[tokio::test]
async fn serve_answers_over_the_network_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let (server, grpc_addr) = serve(data_dir).await;

    let output = c360(&["token", "--data-dir", data_dir, "--tenant", "demo", "--role", "admin"])
        .output()
        .await
        .expect("c360 token");
    assert!(output.status.success(), "c360 token: {}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();

    let channel = Channel::from_shared(format!("http://{grpc_addr}")).expect("uri").connect().await.expect("connect");
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest { service: "c360.v1.ProfileService".into() })
        .await
        .expect("health check")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    // Server reflection lets generic clients (grpcurl, Postman) discover the API.
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies =
        reflection.server_reflection_info(tokio_stream::iter([request])).await.expect("reflection").into_inner();
    let reply = replies.message().await.expect("reflection reply").expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let services: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(services.contains(&"c360.v1.ProfileService"), "{services:?}");

    let mut client = profiles_as(&grpc_addr, &token).await;
    let profile = pb::Profile { given_name: "Ada".into(), family_name: "Lovelace".into(), ..Default::default() };
    let created = client
        .create_profile(pb::CreateProfileRequest {
            request_id: String::new(),
            profile: Some(profile),
            source: String::new(),
        })
        .await
        .expect("create over the network")
        .into_inner();
    let fetched = client.get_profile(pb::GetProfileRequest { id: created.id.clone() }).await.expect("get").into_inner();
    assert_eq!(fetched, created);

    terminate(server).await;
}

#[tokio::test]
async fn migrate_prepares_an_empty_database_and_token_refuses_unknown_roles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let output = c360(&["migrate", "--data-dir", data_dir]).output().await.expect("c360 migrate");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.path().join("c360.db").exists());

    let output = c360(&["token", "--data-dir", data_dir, "--tenant", "demo", "--role", "wizard"])
        .output()
        .await
        .expect("c360 token");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown role 'wizard'"));

    let output = c360(&["token", "--tenant", "demo", "--role", "admin"])
        .env("C360_JWT_SECRET", "short")
        .output()
        .await
        .expect("c360 token");
    assert!(!output.status.success(), "a secret under 32 bytes is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 32 bytes"));

    // Found by reading the landed code: secrets were accepted as flags, which
    // every user of the machine can read in `ps`.
    let output = c360(&["token", "--tenant", "demo", "--role", "admin", "--jwt-secret", &"s".repeat(40)])
        .output()
        .await
        .expect("c360 token");
    assert!(!output.status.success(), "a secret on the command line is refused");

    let output = c360(&["migrate", "--data-dir", data_dir, "--worker-threads", "0"]).output().await.expect("c360");
    assert!(!output.status.success(), "a runtime without threads is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--worker-threads"));
}

#[tokio::test]
async fn seed_is_deterministic_and_bench_loads_a_running_server() {
    let (first, second) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
    let mut truths = Vec::new();
    for dir in [&first, &second] {
        let data_dir = dir.path().to_str().expect("utf-8 path");
        let truth = dir.path().join("truth.csv");
        let truth_path = truth.to_str().expect("utf-8 path");
        let args = [
            "seed",
            "--data-dir",
            data_dir,
            "--profiles",
            "1500",
            "--events",
            "3000",
            "--seed",
            "42",
            "--truth",
            truth_path,
        ];
        let output = c360(&args).output().await.expect("c360 seed");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("seeded 1500 profiles") && stdout.contains("then 3000 events"), "{stdout}");
        truths.push(std::fs::read_to_string(truth).expect("truth file"));
    }
    assert_eq!(truths[0], truths[1], "the same seed writes the same data");
    let pairs = truths[0].lines().count() - 1;
    assert!((100..250).contains(&pairs), "about 10% near-duplicates, got {pairs}");

    let data_dir = first.path().to_str().expect("utf-8 path");
    let (server, grpc_addr) = serve(data_dir).await;
    let target = format!("http://{grpc_addr}");
    let bench = async |load: &[&str]| -> serde_json::Value {
        let mut args = vec!["bench", "--worker-threads", "1", "--data-dir", data_dir, "--target", &target];
        args.extend_from_slice(load);
        args.extend(["--warmup", "0s", "--json"]);
        let output = c360(&args).output().await.expect("c360 bench");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("JSON report")
    };
    let closed = ["--scenario", "mixed", "--concurrency", "4", "--duration", "20s", "--max-requests", "200"];
    let report = bench(&closed).await;
    assert_eq!(report["requests_ok"], 200, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert!(report["latency_ms"]["p99"].as_f64().is_some_and(|p99| p99 > 0.0), "{report}");

    // The open loop offers its rate whatever the answers: 50/s for 2 s.
    let report = bench(&["--scenario", "get-profile", "--rate", "50", "--duration", "2s"]).await;
    assert_eq!(report["offered_per_s"], 50, "{report}");
    assert_eq!(report["not_sent"], 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    let ok = report["requests_ok"].as_u64().expect("count");
    // Loose below: on a loaded machine the last answers may miss the end.
    assert!((60..=110).contains(&ok), "about 100 requests in 2 s at 50/s, got {ok}: {report}");
    terminate(server).await;
}

/// A password in a URL flag or a token as a flag is refused before anything
/// runs: `ps` shows every process's arguments to every user. The error names
/// the flag and the variable to use, never the secret.
#[tokio::test]
async fn secrets_in_flags_are_refused_without_being_echoed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let url = "postgres://c360:hunter2@127.0.0.1:5432/c360";
    let output =
        c360(&["migrate", "--data-dir", data_dir, "--database-url", url]).output().await.expect("c360 migrate");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--database-url") && stderr.contains("C360_DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// Found on a fresh machine: the banner said `c360 token …` to a user who had
/// started `cargo run -- serve` and had no `c360` on the PATH. It prints the
/// command that works for how the server was started, and that command works.
#[tokio::test]
async fn the_banner_prints_a_token_command_that_works_as_the_server_was_started() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let (server, grpc_addr, banner) = serve_with(data_dir, &[]).await;
    let line = banner.iter().find_map(|l| l.strip_prefix("get a token:")).expect("a token line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let started = std::path::Path::new(BIN).canonicalize().expect("binary path");
    assert_eq!(std::path::Path::new(words[0]).canonicalize().ok(), Some(started), "not on the PATH: its own path");
    let output = Command::new(words[0]).args(&words[1..]).output().await.expect("run the printed command");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
    let mut client = profiles_as(&grpc_addr, &token).await;
    client.list_profiles(pb::ListProfilesRequest::default()).await.expect("the printed command's token is accepted");
    terminate(server).await;

    let other = tempfile::tempdir().expect("temp dir");
    let cargo_env = [("CARGO", "cargo"), ("CARGO_PKG_NAME", "c360-server")];
    let (server, _, banner) = serve_with(other.path().to_str().expect("utf-8"), &cargo_env).await;
    let line = banner.iter().find_map(|l| l.strip_prefix("get a token:")).expect("a token line");
    assert!(line.trim_start().starts_with("cargo run -- token --data-dir "), "under cargo run: {line}");
    terminate(server).await;
}

/// `c360 dedupe` over seeded data: a dry run scores and exports and writes
/// nothing; the real run merges each cluster it found, and nothing else.
#[tokio::test]
async fn dedupe_finds_seeded_duplicates_and_a_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8 path").to_owned();
    let (truth, pairs, clusters) = (path("truth.csv"), path("pairs.csv"), path("clusters.csv"));
    let run = async |args: &[&str]| -> String {
        let output = c360(args).output().await.expect("c360");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(&["seed", "--data-dir", data_dir, "--profiles", "1500", "--events", "0", "--seed", "7", "--truth", &truth])
        .await;
    let export = async || run(&["export", "--data-dir", data_dir, "--tenant", "demo", "--format", "jsonl"]).await;
    let before = export().await;

    let dedupe = ["dedupe", "--data-dir", data_dir, "--tenant", "demo"];
    let exports = ["--export-pairs", &pairs, "--export-clusters", &clusters];
    let summary = run(&[&dedupe[..], &["--dry-run"], &exports[..]].concat()).await;
    assert!(summary.contains("dry run: nothing merged"), "{summary}");
    assert_eq!(export().await, before, "a dry run writes nothing");
    let show = ["model", "show", "--data-dir", data_dir, "--tenant", "demo"];
    assert!(run(&show).await.contains("no trained model yet"), "a dry run keeps no model");

    // Every pair exported is at or above the review threshold, decided by
    // the thresholds, and names two different profiles of the tenant.
    let ids: std::collections::HashSet<String> = before
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("json")["id"]
                .to_string()
                .trim_matches('"')
                .to_owned()
        })
        .collect();
    let mut reader = csv::Reader::from_path(&pairs).expect("pairs");
    let mut matched = 0;
    for record in reader.records() {
        let record = record.expect("row");
        let probability: f64 = record[4].parse().expect("probability");
        let decision = if probability >= 0.999 { "MATCH" } else { "REVIEW" };
        assert!(probability >= 0.9 && &record[5] == decision, "{record:?}");
        assert!(record[2] != record[3] && ids.contains(&record[2]) && ids.contains(&record[3]), "{record:?}");
        matched += usize::from(decision == "MATCH");
    }
    assert!(matched > 0, "seeded near-duplicates are found");

    // The pairs found at the auto threshold are true duplicates: the seed's
    // true pairs, closed under their clusters (two duplicates of one person
    // are a true pair too).
    let mut parent: std::collections::HashMap<String, String> = Default::default();
    fn root(parent: &std::collections::HashMap<String, String>, id: &str) -> String {
        let mut at = id.to_owned();
        while let Some(up) = parent.get(&at).filter(|up| **up != at) {
            at = up.clone();
        }
        at
    }
    for line in std::fs::read_to_string(&truth).expect("truth").lines().skip(1) {
        let ids: Vec<&str> = line.split(',').take(2).collect();
        let (a, b) = (root(&parent, ids[0]), root(&parent, ids[1]));
        parent.insert(a, b);
    }
    let (mut found, mut right) = (0, 0);
    for record in csv::Reader::from_path(&pairs).expect("pairs").records() {
        let record = record.expect("row");
        if &record[5] == "MATCH" {
            found += 1;
            right += usize::from(root(&parent, &record[2]) == root(&parent, &record[3]));
        }
    }
    assert!(right * 100 >= found * 99, "{right} of {found} pairs found at the auto threshold are true");
    // A duplicate loaded without the email or phone its original holds
    // still carries it as evidence (held identifiers): nearly all such
    // pairs reach the review threshold, whatever else differs.
    let scored: std::collections::HashSet<(String, String)> = csv::Reader::from_path(&pairs)
        .expect("pairs")
        .records()
        .map(|r| r.expect("row"))
        .map(|r| {
            let (a, b) = (r[2].to_owned(), r[3].to_owned());
            if a < b { (a, b) } else { (b, a) }
        })
        .collect();
    let (mut shared, mut shared_found) = (0, 0);
    for line in std::fs::read_to_string(&truth).expect("truth").lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        if cells[4].contains("shared_") {
            shared += 1;
            let (a, b) = (cells[0].to_owned(), cells[1].to_owned());
            let pair = if a < b { (a, b) } else { (b, a) };
            shared_found += usize::from(scored.contains(&pair));
        }
    }
    assert!(shared > 10 && shared_found * 10 >= shared * 9, "{shared_found} of {shared} sharing an identifier");
    let members = csv::Reader::from_path(&clusters).expect("clusters").records().count();
    let clusters_found = csv::Reader::from_path(&clusters)
        .expect("clusters")
        .records()
        .map(|r| r.expect("row")[0].to_owned())
        .collect::<std::collections::HashSet<_>>()
        .len();

    let summary = run(&dedupe).await;
    assert!(summary.contains(&format!("merged {clusters_found} clusters (0 refused")), "{summary}");
    assert!(summary.contains("model version 1 in force"), "{summary}");
    let model = run(&show).await;
    assert!(model.starts_with("model version 1:") && model.contains("given_name"), "{model}");
    let after = export().await;
    assert_eq!(before.lines().count() - after.lines().count(), members - clusters_found, "{summary}");
}

/// `c360 import` as a user runs it with its output piped: progress as log
/// lines on stderr, a summary on stdout that counts what happened, the
/// rejected rows' file named; a second run of the same file changes nothing.
#[tokio::test]
async fn import_prints_its_progress_and_a_summary_of_what_it_did() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let file = dir.path().join("customers.csv");
    let mut csv = String::from("id,given name,surname,email,date of birth\n");
    for i in 0..40 {
        csv += &format!("{i},Ada{i},Byron,ada{i}@example.com,1980-01-{:02}\n", i % 28 + 1);
    }
    csv += "40,Bad,Date,bad@example.com,1980-02-31\n41,Bad,Email,not-an-email,\n";
    std::fs::write(&file, csv).expect("write");
    let import = || {
        let args =
            ["import", "--data-dir", data_dir, "--tenant", "demo", "--source", "legacy", "--batch-size", "5", "--file"];
        c360(&args).arg(&file).output()
    };
    let output = import().await.expect("c360 import");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("read 42, created 40, updated 0, unchanged 0, rejected 2"),
        "the summary counts each outcome: {stdout}"
    );
    let errors = format!("{}.errors.csv", file.display());
    assert!(stdout.contains(&format!("rejected rows, with line and reason: {errors}")), "{stdout}");
    let rejected = std::fs::read_to_string(&errors).expect("errors file");
    assert!(rejected.contains("42,date of birth") && rejected.contains("43,emails[0].address"), "{rejected}");
    let progress = stderr.lines().filter(|line| line.contains(" of 42 rows (")).count();
    assert!(progress >= 3, "progress as log lines when not on a terminal: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "no terminal colours in a piped log: {stderr}");

    let again = import().await.expect("c360 import");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("read 42, created 0, updated 0, unchanged 40, rejected 2"), "{stdout}");
}
