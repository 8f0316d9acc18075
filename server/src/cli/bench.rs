//! `c360 bench`: a load generator for the gRPC API.
//!
//! It lists profile ids first (ListProfiles), then runs `concurrency` workers
//! over `connections` HTTP/2 connections for a warm-up and a measured period.
//! Profile and consent scenarios share the connections.
//! Each worker keeps its own HDR histogram (microseconds), merged at the end,
//! so recording costs no coordination. The load is bounded by `--duration`
//! and, optionally, `--max-requests`.
//!
//! With `--rate N` it runs an open loop instead: N requests a second on a
//! fixed schedule whatever the answers, the way users arrive, so a server can
//! be offered more than it can take and its shedding observed; latency is
//! timed from when each request was due.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use c360_proto::v1::{
    self as pb, consent_service_client::ConsentServiceClient, consent_subject::Subject,
    profile_service_client::ProfileServiceClient,
};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use crate::{
    auth::{JwtKeys, Role},
    config::{AuthArgs, ClientTlsArgs, DataDirArgs},
    domain::TenantId,
};

/// What the workers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// GetProfile of a random profile.
    GetProfile,
    /// BatchGetProfiles of `--batch-size` random profiles.
    BatchGet,
    /// UpdateProfile (segment) of a random profile, without etag.
    Update,
    /// 90% GetProfile, 5% BatchGetProfiles, 5% UpdateProfile.
    Mixed,
    /// SetConsent (EMAIL_MARKETING, granted or denied, captured now, a fresh
    /// request id) for a random profile.
    SetConsent,
    /// BatchCheckConsent (EMAIL_MARKETING) of `--batch-size` random profiles.
    BatchCheckConsent,
    /// CreateProfile of a new person with a common name (so a tenant with a
    /// matching model has namesakes to match it against), a birth date and
    /// an email of its own.
    Create,
}

/// Arguments of `c360 bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// gRPC endpoint of the server to load (https:// for TLS).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// Request mix.
    #[arg(long, value_enum, default_value = "get-profile")]
    scenario: Scenario,
    /// Requests in flight at once (one worker each).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Measured period.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured period before it.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Use only the first K listed profiles (a hot set); default: all of them.
    #[arg(long)]
    hot_set: Option<usize>,
    /// Most profile ids to list.
    #[arg(long, default_value_t = 1_000_000)]
    max_ids: usize,
    /// HTTP/2 connections to spread the workers over (default: one per 8 workers, at least 1).
    #[arg(long)]
    connections: Option<usize>,
    /// Ids per BatchGetProfiles or BatchCheckConsent.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Open loop: offer this many requests per second on a fixed schedule, whatever the answers
    /// (overload can be offered at all); `--concurrency` is then unused.
    #[arg(long)]
    rate: Option<u64>,
    /// Open loop: most requests waiting for an answer at once; a request due beyond it is
    /// reported as not sent.
    #[arg(long, default_value_t = 20_000)]
    max_outstanding: usize,
    /// Stop the measured period after this many requests (0: only the duration bounds it).
    #[arg(long, default_value_t = 0)]
    max_requests: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Bearer token; default: one minted for `--tenant` from the local or configured secret.
    #[arg(long, env = "C360_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Tenant of the minted token.
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Role of the minted token (what the server masks and audits follows it).
    #[arg(long, default_value = "service", value_parser = parse_role)]
    role: Role,
    #[command(flatten)]
    tls: ClientTlsArgs,
    #[command(flatten)]
    data: DataDirArgs,
    #[command(flatten)]
    auth: AuthArgs,
}

#[derive(Clone)]
struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Client = ProfileServiceClient<InterceptedService<Channel, Bearer>>;
type ConsentClient = ConsentServiceClient<InterceptedService<Channel, Bearer>>;

/// A histogram of durations in microseconds, from 1 µs to a minute.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// `took` in whole microseconds, at least 1 (the histogram's floor).
fn micros(took: Duration) -> u64 {
    u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// What one worker measured.
struct Tally {
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    /// The first message seen per status code, to tell one cause from another.
    samples: BTreeMap<String, String>,
}

fn parse_role(raw: &str) -> Result<Role, String> {
    Role::parse(raw).ok_or_else(|| format!("unknown role '{raw}': admin, steward, agent, marketer, analyst or service"))
}

/// Runs `c360 bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let token = match &args.token {
        Some(token) => token.clone(),
        None => {
            let keys = JwtKeys::load(
                &args.auth.key_source(&args.data.data_dir)?,
                &args.auth.jwt_issuer,
                &args.auth.jwt_audience,
            )?;
            let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("--tenant {e}"))?;
            keys.mint("c360-bench", &tenant, &[args.role], args.warmup + args.duration + Duration::from_secs(600))?
        }
    };
    let bearer = Bearer(format!("Bearer {token}").parse()?);
    let connections = args.connections.unwrap_or(args.concurrency.div_ceil(8)).max(1);
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = args.tls.endpoint(&args.target)?.tcp_nodelay(true).connect().await?;
        let profiles =
            ProfileServiceClient::with_interceptor(channel.clone(), bearer.clone()).max_decoding_message_size(64 << 20);
        let consents =
            ConsentServiceClient::with_interceptor(channel, bearer.clone()).max_decoding_message_size(64 << 20);
        clients.push((profiles, consents));
    }

    let limit = args.hot_set.unwrap_or(args.max_ids).min(args.max_ids);
    let ids = list_ids(&mut clients[0].0.clone(), limit).await?;
    anyhow::ensure!(!ids.is_empty(), "the tenant has no profiles: run `c360 seed` first");
    if !args.json {
        let load = match args.rate {
            Some(rate) => format!("{rate}/s offered (open loop)"),
            None => format!("{} workers", args.concurrency),
        };
        eprintln!(
            "{:?} on {} profiles, {load} over {connections} connections: {:?} warm-up, {:?} measured",
            args.scenario,
            ids.len(),
            args.warmup,
            args.duration
        );
    }

    let load = Load { ids: std::sync::Arc::new(ids), scenario: args.scenario, batch_size: args.batch_size };
    let started = Instant::now();
    let measure_from = started + args.warmup;
    let deadline = measure_from + args.duration;
    let (tally, open) = match args.rate {
        Some(rate) => {
            anyhow::ensure!(rate > 0, "--rate must be at least 1");
            open_loop(clients, load.clone(), rate, measure_from, deadline, args.max_outstanding.max(1)).await?
        }
        None => (closed_loop(&args, clients, load.clone(), measure_from, deadline).await?, OpenLoop::default()),
    };
    let measured = Instant::now().min(deadline).saturating_duration_since(measure_from).max(Duration::from_millis(1));
    report(&args, &tally, &open, measured, load.ids.len());
    Ok(())
}

/// Runs `--concurrency` closed-loop workers and merges what they measured.
async fn closed_loop(
    args: &BenchArgs,
    clients: Vec<(Client, ConsentClient)>,
    load: Load,
    measure_from: Instant,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let per_worker =
        if args.max_requests == 0 { u64::MAX } else { args.max_requests.div_ceil(args.concurrency as u64) };
    let mut workers = Vec::with_capacity(args.concurrency);
    for n in 0..args.concurrency {
        let (client, load) = (clients[n % clients.len()].clone(), load.clone());
        workers.push(tokio::spawn(worker(n as u64, client, load, measure_from, deadline, per_worker)));
    }
    let mut all = Tally::new()?;
    for worker in workers {
        let tally = worker.await??;
        all.latency.add(&tally.latency)?;
        for (code, count) in tally.errors {
            *all.errors.entry(code).or_default() += count;
        }
        for (code, message) in tally.samples {
            all.samples.entry(code).or_insert(message);
        }
    }
    Ok(all)
}

async fn list_ids(client: &mut Client, limit: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    while ids.len() < limit {
        let page_size = (limit - ids.len()).min(1000) as i32;
        let page = client
            .list_profiles(pb::ListProfilesRequest { page_size, page_token, show_deleted: false })
            .await?
            .into_inner();
        ids.extend(page.profiles.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(ids)
}

/// What one request of the scenario sends.
#[derive(Clone)]
struct Load {
    ids: std::sync::Arc<Vec<String>>,
    scenario: Scenario,
    batch_size: usize,
}

impl Load {
    /// Sends one request of the scenario, picking profiles with `rng`.
    async fn send(&self, (client, consents): &mut (Client, ConsentClient), rng: &mut ChaCha8Rng) -> Result<(), Status> {
        let kind = match self.scenario {
            Scenario::Mixed => match rng.random_range(0..100) {
                0..90 => Scenario::GetProfile,
                90..95 => Scenario::BatchGet,
                _ => Scenario::Update,
            },
            other => other,
        };
        let coin = rng.random_bool(0.5);
        let segment = rng.random_range(0..7u8);
        let ids = &self.ids;
        let mut pick = || ids[rng.random_range(0..ids.len())].clone();
        match kind {
            Scenario::BatchGet => {
                let batch = (0..self.batch_size).map(|_| pick()).collect();
                client.batch_get_profiles(pb::BatchGetProfilesRequest { ids: batch }).await.map(drop)
            }
            Scenario::Update => {
                let profile = pb::Profile { id: pick(), segment: format!("B{segment}"), ..Default::default() };
                let mask = prost_types::FieldMask { paths: vec!["segment".into()] };
                let request =
                    pb::UpdateProfileRequest { profile: Some(profile), update_mask: Some(mask), ..Default::default() };
                client.update_profile(request).await.map(drop)
            }
            Scenario::SetConsent => {
                let status = if coin { pb::ConsentStatus::Granted } else { pb::ConsentStatus::Denied };
                let request = pb::SetConsentRequest {
                    profile_id: pick(),
                    purpose: pb::ConsentPurpose::EmailMarketing as i32,
                    status: status as i32,
                    source: "c360-bench".into(),
                    evidence: "benchmark".into(),
                    request_id: format!("bench-{}", uuid::Uuid::now_v7().simple()),
                    ..Default::default()
                };
                consents.set_consent(request).await.map(drop)
            }
            Scenario::Create => {
                const GIVEN: [&str; 10] =
                    ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Susan"];
                const FAMILY: [&str; 10] =
                    ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson", "Moore"];
                let (given, family) = (GIVEN[rng.random_range(0..10)], FAMILY[rng.random_range(0..10)]);
                // Birth dates over sixty years: few creates are one person.
                let born = format!(
                    "19{:02}-{:02}-{:02}",
                    rng.random_range(40..100),
                    rng.random_range(1..13),
                    rng.random_range(1..29)
                );
                let email = format!("bench-{}@example.com", uuid::Uuid::now_v7().simple());
                let profile = pb::Profile {
                    kind: pb::ProfileKind::Person as i32,
                    given_name: given.into(),
                    family_name: family.into(),
                    birth_date: born,
                    emails: vec![pb::EmailAddress { address: email, primary: true, ..Default::default() }],
                    ..Default::default()
                };
                let request = pb::CreateProfileRequest {
                    profile: Some(profile),
                    source: "c360-bench".into(),
                    ..Default::default()
                };
                client.create_profile(request).await.map(drop)
            }
            Scenario::BatchCheckConsent => {
                let subjects = (0..self.batch_size)
                    .map(|_| pb::ConsentSubject { subject: Some(Subject::ProfileId(pick())) })
                    .collect();
                let purpose = pb::ConsentPurpose::EmailMarketing as i32;
                consents.batch_check_consent(pb::BatchCheckConsentRequest { purpose, subjects }).await.map(drop)
            }
            _ => client.get_profile(pb::GetProfileRequest { id: pick() }).await.map(drop),
        }
    }
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self { latency: histogram()?, errors: BTreeMap::new(), samples: BTreeMap::new() })
    }

    /// Counts one answer that took `took`.
    fn record(&mut self, result: Result<(), Status>, took: Duration) {
        match result {
            Ok(()) => {
                self.latency.saturating_record(micros(took));
            }
            Err(status) => {
                let code = format!("{:?}", status.code());
                self.samples.entry(code.clone()).or_insert_with(|| status.message().chars().take(200).collect());
                *self.errors.entry(code).or_default() += 1;
            }
        }
    }
}

/// Closed loop: one request after another, as fast as the answers come.
async fn worker(
    n: u64,
    mut clients: (Client, ConsentClient),
    load: Load,
    measure_from: Instant,
    deadline: Instant,
    max_requests: u64,
) -> anyhow::Result<Tally> {
    let mut rng = ChaCha8Rng::seed_from_u64(n);
    let mut tally = Tally::new()?;
    let mut measured = 0u64;
    loop {
        let sent = Instant::now();
        if sent >= deadline || measured >= max_requests {
            return Ok(tally);
        }
        let result = load.send(&mut clients, &mut rng).await;
        if sent < measure_from {
            continue;
        }
        measured += 1;
        tally.record(result, sent.elapsed());
    }
}

/// How often the open loop wakes to send what fell due.
const TICK: Duration = Duration::from_millis(1);

/// Open loop: `rate` requests a second on a fixed schedule, whatever the
/// answers, each timed from when it was due (so a late send counts against
/// the latency, as a user would see it). At most `max_outstanding` wait for
/// an answer at once; a request due beyond that is counted as not sent.
async fn open_loop(
    clients: Vec<(Client, ConsentClient)>,
    load: Load,
    rate: u64,
    measure_from: Instant,
    deadline: Instant,
    max_outstanding: usize,
) -> anyhow::Result<(Tally, OpenLoop)> {
    let (answers, mut received) = tokio::sync::mpsc::unbounded_channel::<(Result<(), Status>, Duration, Duration)>();
    let outstanding = std::sync::Arc::new(tokio::sync::Semaphore::new(max_outstanding));
    let started = Instant::now();
    let mut due_sent = 0u64;
    let mut not_sent = 0u64;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let collector = tokio::spawn(async move {
        let mut tally = Tally::new()?;
        let mut lag = histogram()?;
        while let Some((result, took, late)) = received.recv().await {
            tally.record(result, took);
            lag.saturating_record(micros(late));
        }
        anyhow::Ok((tally, lag.value_at_quantile(0.99) as f64 / 1000.0))
    });
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due = (now - started).as_secs_f64() * rate as f64;
        while (due_sent as f64) < due {
            let at = started + Duration::from_secs_f64(due_sent as f64 / rate as f64);
            due_sent += 1;
            let Ok(permit) = std::sync::Arc::clone(&outstanding).try_acquire_owned() else {
                if at >= measure_from {
                    not_sent += 1;
                }
                continue;
            };
            let mut client = clients[due_sent as usize % clients.len()].clone();
            let (load, answers) = (load.clone(), answers.clone());
            let mut request_rng = ChaCha8Rng::seed_from_u64(rng.random());
            tokio::spawn(async move {
                // How late the client itself sent it: a load generator that
                // cannot keep its schedule measures itself, not the server.
                let late = at.elapsed();
                let result = load.send(&mut client, &mut request_rng).await;
                if at >= measure_from && at < deadline {
                    let _ = answers.send((result, at.elapsed(), late));
                }
                drop(permit);
            });
        }
    }
    drop(answers);
    let (tally, lag_p99_ms) = collector.await??;
    Ok((tally, OpenLoop { not_sent, lag_p99_ms }))
}

/// What only the open loop measures.
#[derive(Default)]
struct OpenLoop {
    /// Requests due while `--max-outstanding` waited for answers.
    not_sent: u64,
    /// 99th percentile of how late requests were sent after they were due.
    lag_p99_ms: f64,
}

fn report(args: &BenchArgs, tally: &Tally, open: &OpenLoop, measured: Duration, ids: usize) {
    let not_sent = open.not_sent;
    let (latency, errors) = (&tally.latency, &tally.errors);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let ok = latency.len();
    let seconds = measured.as_secs_f64();
    let throughput = ok as f64 / seconds;
    let refused: u64 = errors.values().sum();
    if args.json {
        let report = json!({
            "scenario": format!("{:?}", args.scenario),
            "profiles": ids,
            "concurrency": args.concurrency,
            "offered_per_s": args.rate,
            "not_sent": not_sent,
            "answered_per_s": (ok + refused) as f64 / seconds,
            "send_lag_p99_ms": open.lag_p99_ms,
            "seconds": seconds,
            "requests_ok": ok,
            "throughput_per_s": throughput,
            "latency_ms": {
                "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p99_9": ms(0.999),
                "max": latency.max() as f64 / 1000.0,
            },
            "errors": errors,
            "error_samples": tally.samples,
        });
        println!("{report}");
        return;
    }
    if let Some(rate) = args.rate {
        println!(
            "offered    {rate}/s: {:.0}/s answered ({:.0}/s refused), {not_sent} not sent (client limit), \
             sends late by up to {:.1} ms (p99)",
            (ok + refused) as f64 / seconds,
            refused as f64 / seconds,
            open.lag_p99_ms
        );
    }
    println!("requests   {ok} ok in {seconds:.1}s: {throughput:.0}/s");
    println!(
        "latency ms p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        latency.max() as f64 / 1000.0
    );
    if errors.is_empty() {
        println!("errors     none");
    } else {
        let list: Vec<String> = errors.iter().map(|(code, n)| format!("{code} {n}")).collect();
        println!("errors     {}", list.join(", "));
        for (code, message) in &tally.samples {
            println!("  e.g. {code}: {message}");
        }
    }
}
