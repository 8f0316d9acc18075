//! `c360 bench`: a load generator for the gRPC API.
//!
//! It lists profile ids first (ListProfiles), then runs `concurrency` workers
//! over `connections` HTTP/2 connections for a warm-up and a measured period.
//! Profile and consent scenarios share the connections.
//! Each worker keeps its own HDR histogram (microseconds), merged at the end,
//! so recording costs no coordination. The load is bounded by `--duration`
//! and, optionally, `--max-requests`.

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
    transport::{Channel, Endpoint},
};

use crate::{
    auth::{JwtKeys, Role},
    config::{AuthArgs, DataDirArgs},
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
}

/// Arguments of `c360 bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// gRPC endpoint of the server to load.
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

/// What one worker measured.
struct Tally {
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
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
                &args.auth.key_source(&args.data.data_dir),
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
        let channel = Endpoint::from_shared(args.target.clone())?.tcp_nodelay(true).connect().await?;
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
        eprintln!(
            "{:?} on {} profiles, {} workers over {} connections: {:?} warm-up, {:?} measured",
            args.scenario,
            ids.len(),
            args.concurrency,
            connections,
            args.warmup,
            args.duration
        );
    }

    let ids = std::sync::Arc::new(ids);
    let started = Instant::now();
    let measure_from = started + args.warmup;
    let deadline = measure_from + args.duration;
    let per_worker =
        if args.max_requests == 0 { u64::MAX } else { args.max_requests.div_ceil(args.concurrency as u64) };
    let mut workers = Vec::with_capacity(args.concurrency);
    for n in 0..args.concurrency {
        let (client, ids) = (clients[n % connections].clone(), std::sync::Arc::clone(&ids));
        let (scenario, batch_size) = (args.scenario, args.batch_size);
        workers.push(tokio::spawn(async move {
            worker(n as u64, client, &ids, scenario, batch_size, measure_from, deadline, per_worker).await
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for worker in workers {
        let tally = worker.await??;
        latency.add(&tally.latency)?;
        for (code, count) in tally.errors {
            *errors.entry(code).or_default() += count;
        }
    }
    let measured = Instant::now().min(deadline).saturating_duration_since(measure_from).max(Duration::from_millis(1));
    report(&args, &latency, &errors, measured, ids.len());
    Ok(())
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

#[expect(clippy::too_many_arguments, reason = "one worker's whole configuration, passed once")]
async fn worker(
    n: u64,
    (mut client, mut consents): (Client, ConsentClient),
    ids: &[String],
    scenario: Scenario,
    batch_size: usize,
    measure_from: Instant,
    deadline: Instant,
    max_requests: u64,
) -> anyhow::Result<Tally> {
    let mut rng = ChaCha8Rng::seed_from_u64(n);
    let mut tally = Tally { latency: Histogram::new_with_bounds(1, 60_000_000, 3)?, errors: BTreeMap::new() };
    let mut measured = 0u64;
    loop {
        let sent = Instant::now();
        if sent >= deadline || measured >= max_requests {
            return Ok(tally);
        }
        let kind = match scenario {
            Scenario::Mixed => match rng.random_range(0..100) {
                0..90 => Scenario::GetProfile,
                90..95 => Scenario::BatchGet,
                _ => Scenario::Update,
            },
            other => other,
        };
        let coin = rng.random_bool(0.5);
        let mut pick = || ids[rng.random_range(0..ids.len())].clone();
        let result = match kind {
            Scenario::BatchGet => {
                let batch = (0..batch_size).map(|_| pick()).collect();
                client.batch_get_profiles(pb::BatchGetProfilesRequest { ids: batch }).await.map(drop)
            }
            Scenario::Update => {
                let profile = pb::Profile {
                    id: pick(),
                    segment: format!("B{}", sent.elapsed().as_nanos() % 7),
                    ..Default::default()
                };
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
            Scenario::BatchCheckConsent => {
                let subjects =
                    (0..batch_size).map(|_| pb::ConsentSubject { subject: Some(Subject::ProfileId(pick())) }).collect();
                let purpose = pb::ConsentPurpose::EmailMarketing as i32;
                consents.batch_check_consent(pb::BatchCheckConsentRequest { purpose, subjects }).await.map(drop)
            }
            _ => client.get_profile(pb::GetProfileRequest { id: pick() }).await.map(drop),
        };
        if sent < measure_from {
            continue;
        }
        measured += 1;
        match result {
            Ok(()) => {
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                tally.latency.saturating_record(micros);
            }
            Err(status) => *tally.errors.entry(format!("{:?}", status.code())).or_default() += 1,
        }
    }
}

fn report(args: &BenchArgs, latency: &Histogram<u64>, errors: &BTreeMap<String, u64>, measured: Duration, ids: usize) {
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let ok = latency.len();
    let throughput = ok as f64 / measured.as_secs_f64();
    if args.json {
        let report = json!({
            "scenario": format!("{:?}", args.scenario),
            "profiles": ids,
            "concurrency": args.concurrency,
            "seconds": measured.as_secs_f64(),
            "requests_ok": ok,
            "throughput_per_s": throughput,
            "latency_ms": {
                "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p99_9": ms(0.999),
                "max": latency.max() as f64 / 1000.0,
            },
            "errors": errors,
        });
        println!("{report}");
        return;
    }
    println!("requests   {ok} ok in {:.1}s: {throughput:.0}/s", measured.as_secs_f64());
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
    }
}
