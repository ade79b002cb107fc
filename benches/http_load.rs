//! HTTP load benchmark: the engine beside the Postgres designs a user would pick instead.
//!
//! Systems (`--system`, default all), each behind an axum HTTP server on a loopback port
//! of this process, each on a fresh database of the same Postgres:
//! - `engine`: the real [`Application`] (its whole middleware stack, per-doctor actors,
//!   batched journal); doctors are created through the engine;
//! - `pg-exclusion`, `pg-row-lock`, `pg-seed-literal`: the peers of `benches/peers`
//!   (exclusion constraint; doctor row `FOR UPDATE`; the seed's `FOR UPDATE` over the
//!   29-minute window, which under READ COMMITTED locks nothing when the window is empty).
//!   Same endpoints, same JWT check, same bodies.
//!
//! The generator drives them over HTTP/1.1 keep-alive connections (one per client task) and
//! prints markdown tables: requests/s, durable bookings/s (201s per second), p50 / p99 /
//! p99.9 latency, 409s, errors, the double bookings found in the store afterwards, and the
//! engine's ratio to each peer.
//!
//! Workloads, each run at every `--clients` count on a fresh database:
//! - `uniform`: every request books a random (doctor, slot) over 1,000 doctors x 30 days
//!   of 30-minute slots starting tomorrow 00:00 UTC.
//! - `hot`: rounds of a race: 200 patients (each with its own token) try all of one doctor's
//!   next 16 free slots, each patient in its own random order; the 3,200 attempts of a round
//!   are dealt round-robin over the connections and released together. Every round must end
//!   with exactly 16 acknowledged bookings, one per slot (the seed's literal design excepted:
//!   its extra acknowledgements are its double bookings); then the next 16 slots are raced
//!   (up to a year of slots from tomorrow).
//! - `read-heavy`: as uniform, but 9 requests in 10 (at random) read one random day of a
//!   random doctor's availability (`GET /patient/doctors/{id}/availability?from=..&days=1`).
//! - `family` (engine only: the peers have no multi-patient endpoint and are skipped, with a
//!   note in the output): as uniform, but every request is one 3-item multi-patient booking
//!   (`POST /patient/bookings`) of 3 random distinct (doctor, slot) pairs of the same grid
//!   (distinct pairs never overlap: slots are grid starts), for 3 named patients. Its table
//!   counts durable bookings/s both in bookings (201s) and in consultations (3 per 201), and
//!   when `uniform` ran at the same connection count a "family vs single" table follows.
//!
//! All connections are opened before the clock starts. Every run is time-bounded
//! (`--seconds`) and request-bounded (`--requests`), and ends with checks, after a graceful
//! stop of the server, on the `consultations` table read back with SQL: no two active
//! (`pending`/`scheduled`) rows of one doctor overlap, and the active rows match the 201s one
//! to one by (doctor, start, patient) (`family`: each of the 3 consultations of every 201).
//! `family` also checks that no booking is stored in part: every `booking_id` of
//! `booking_members` has exactly 3 active consultations, the store holds as many bookings as
//! 201s were answered, and no active consultation is outside a booking. Every 16th request
//! of a connection has its 201 or 200 body checked field by field (`family`: the booking id
//! and all 3 consultations); every 409 body must be exactly the API's conflict body
//! (`family`: the seed's three fields exactly, plus `item` naming one of the 3 items and
//! `errors` naming it), else it counts as a wrong body. Answers kept under an
//! `Idempotency-Key` come back with their JSON keys in alphabetical order, so bodies are
//! compared as JSON values, not bytes, when the bytes differ. The process exits non-zero if any
//! check fails (double bookings of the seed's literal design are reported, not failed).
//!
//! Besides the summary and ratio tables, each workload gets a details table (201 / 409
//! latency, store reconciliation), a CPU table (generator threads, the rest of this process,
//! `postgres` processes, softirq, other users, idle, from `/proc`) and the engine's journal
//! counters.
//!
//! The engine runs with `sessions.provider = off`: each in-app booking still writes its
//! session and notification outbox rows in the booking's transaction, but no Vonage
//! session is made during the run (the peers have no counterpart; `--set
//! CONSULT__SESSIONS__PROVIDER=fake` measures it).
//!
//! ```text
//! cargo bench --bench http_load -- [--system engine,pg-exclusion,pg-row-lock,pg-seed-literal|all]
//!     [--backend postgres|sqlite|all] [--seconds N] [--clients 64,256] [--quick]
//!     [--requests N] [--workload uniform,hot,read-heavy,family|all] [--idempotency]
//!     [--client raw|reqwest|reqwest-shared] [--gen-threads N] [--server-threads N]
//!     [--set CONSULT__ENGINE__KEY=VALUE]... [--rate R|Nx,...] [--read-days N]
//!     [--keep-rate-limit] [--log LEVEL]
//! ```
//!
//! - `--quick`: 1 s per run, every system, workload and connection count (CI).
//! - `--workload`: comma-separated; `all` (default) is uniform, hot, read-heavy and family.
//! - `--idempotency`: every booking request to the engine (single or multi-patient) carries
//!   a fresh `Idempotency-Key` (unique per request, so never a repeat): the cost of durable
//!   idempotency keys, measured as an A/B of the same workload with and without the flag.
//!   The peers have no idempotency keys; they get none.
//! - `--backend`: the engine's store (the peers are Postgres designs).
//! - `--client raw` (default): a minimal HTTP/1.1 client on a `TcpStream` (pre-built request
//!   head, body written into a reused buffer, response parsed by `Content-Length`);
//!   `reqwest`: one `reqwest::Client` per connection (`pool_max_idle_per_host(1)`);
//!   `reqwest-shared`: one client for all connections.
//! - `--gen-threads N`: the generator runs on its own N-worker runtime (default 1);
//!   0 = on the server's runtime. `--server-threads N`: server runtime workers (default: CPUs).
//! - `--set`: extra `CONSULT__...` settings for the application (e.g. engine tuning).
//! - `--rate R,...`: after the closed-loop runs, each system runs each workload but `hot`
//!   in open loop at each rate (see "Open loop" below). A rate is requests/s (`20000`) or a
//!   multiple of the best peer's closed-loop requests/s of the same workload in this
//!   invocation (`4x`). Without it: closed loop only (each connection sends its next
//!   request when the answer comes, so mean latency = connections / throughput, and a slow
//!   answer delays the requests behind it: closed-loop percentiles hide queueing).
//!
//! Open loop (as wrk2): request i is due at t0 + i / R, whatever the answers so far. A
//! dispatcher queues each request when due; the connections (the largest `--clients`
//! count: the bound on requests in flight) take them in order. Latency runs from the due
//! time to the answer, so time spent waiting for a free connection is counted. The queue
//! holds at most one request per connection: a request due when it is full is dropped and
//! counted, never silently delayed; one sent more than 1 ms after its due time is counted
//! as late. Each open-loop run is its own run (fresh database, same store checks).
//! - `--read-days N`: `read-heavy` reads ask for one of the first N days of the horizon
//!   (default all 30): fewer distinct (doctor, day) pairs, each read more often.
//! - `--keep-rate-limit`: leave the per-user rate limit at its default (200/s per patient);
//!   otherwise it is raised to 1,000,000/s so it stays in the path but never trips, since
//!   each connection is one patient sending far faster than a person would. 429s are errors.
//! - `--log LEVEL`: install the application's log subscriber at LEVEL, JSON lines to stdout
//!   as the binary writes them when stdout is not a terminal (default: none, so logging
//!   costs nothing).
//!
//! Postgres comes from `CONSULT_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! each run gets a throwaway database (SQLite: a temp file), removed afterwards. The
//! application has no in-memory store URL, so `memory` is skipped (see `benches/engine.rs`).

/// The allocator the application binary ships with (`src/main.rs`), so the engine is
/// measured as it runs; the peers in this process get it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, Utc};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;

use consult_scheduler::engine::{DoctorId, Engine, StatsSnapshot};
use consult_scheduler::http::auth::{now_s, JwtKeys, Role};
use consult_scheduler::persistence::testing::{
    drop_postgres, fresh_postgres, fresh_sqlite, pg_url_for, remove_sqlite, test_pg_url,
    unique_name,
};
use consult_scheduler::{Application, Settings};

#[path = "common/mod.rs"]
mod common;
#[path = "peers/mod.rs"]
mod peers;
use common::{
    activate_doctors, histogram, machine_ticks, per_s, postgres_ticks, stat_ticks, HIST_MAX_US,
    SLOT_MINUTES, TICKS_PER_S,
};
use peers::{PeerKind, PeerServer};

/// Doctors of the uniform workload.
const DOCTORS: usize = 1_000;
/// Slots per day and days of the booking horizon.
const SLOTS_PER_DAY: usize = 48;
const HORIZON_DAYS: usize = 30;
/// Days of slots the hot doctor's rounds may use (one round takes 16 slots), so that a run
/// ends by its time bound, not by running out of slots.
const HOT_HORIZON_DAYS: usize = 365;
/// Patients and slots of one hot-doctor round.
const HOT_PATIENTS: usize = 200;
const HOT_SLOTS: usize = 16;
const DEFAULT_SECONDS: u64 = 10;
const QUICK_SECONDS: u64 = 1;
const DEFAULT_CLIENTS: [usize; 2] = [64, 256];
/// Request cap of one run, on top of the time bound.
const DEFAULT_MAX_REQUESTS: i64 = 2_000_000;
/// Concurrency of doctor creation and activation (setup, not measured).
const SETUP_CONCURRENCY: usize = 32;
/// Every this many requests of a connection (a power of two), a 201's body is checked in full.
const CHECK_EVERY: u64 = 16;
/// Distinct error descriptions kept per run.
const MAX_ERROR_SAMPLES: usize = 8;
const PATH: &str = "/patient/doctors/book";
/// The multi-patient booking endpoint (`family`).
const FAMILY_PATH: &str = "/patient/bookings";
/// Items of one `family` booking, and who each is for (`patient_name`, `relation`).
const FAMILY_ITEMS: usize = 3;
const FAMILY_MEMBERS: [(&str, &str); FAMILY_ITEMS] = [
    ("Ada Bench", "self"),
    ("Ben Bench", "child"),
    ("Cy Bench", "partner"),
];
/// The seed's 409 message (the `family` 409 carries it, plus `item` and `errors`).
const CONFLICT_MESSAGE: &str =
    "This time slot was just booked by another patient. Please select a different time.";
/// The longest the generator waits for one answer (then: an error, a new connection), so a
/// run stays bounded in time whatever the server does.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Postgres connections of a peer's pool: enough to keep 2 cores busy at 64 and 256 HTTP
/// connections; more only adds context switches (Postgres allows 100 in all).
const PEER_POOL: u32 = 64;
/// The exact 409 body of the API.
const CONFLICT_BODY: &[u8] = br#"{"success":false,"message":"This time slot was just booked by another patient. Please select a different time.","error":"time_slot_conflict"}"#;
const CREATED_PREFIX: &[u8] = br#"{"success":true"#;
/// The end of a 201 answered under an `Idempotency-Key`: the kept answer is a JSON value
/// whose keys come out in alphabetical order, so `success` comes last.
const CREATED_SUFFIX: &[u8] = br#""success":true}"#;

/// A 201 body's cheap check (every answer; a sample is checked in full).
fn created_shape(body: &[u8]) -> bool {
    body.starts_with(CREATED_PREFIX) || body.ends_with(CREATED_SUFFIX)
}

/// The API's conflict body: these bytes, or (answers kept under an `Idempotency-Key`, whose
/// keys come out in alphabetical order) the same three fields and values in another order.
fn is_conflict_body(body: &[u8]) -> bool {
    // The seed's three fields byte for byte, then (the engine) the additive `next_available`.
    body.starts_with(&CONFLICT_BODY[..CONFLICT_BODY.len() - 1])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
    Memory,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
            Self::Memory => "memory",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Uniform,
    Hot,
    ReadHeavy,
    /// 3-item multi-patient bookings (engine only).
    Family,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Hot => "hot",
            Self::ReadHeavy => "read-heavy",
            Self::Family => "family",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClientKind {
    Raw,
    Reqwest,
    ReqwestShared,
}

impl ClientKind {
    fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Reqwest => "reqwest",
            Self::ReqwestShared => "reqwest-shared",
        }
    }
}

/// The command line (`cargo bench --bench http_load -- [flags]`).
#[derive(Debug, clap::Parser)]
#[command(about = "HTTP load generator: bookings through the real application on loopback")]
struct Cli {
    /// Databases to run on (`memory` has no URL for the application and is skipped).
    #[arg(long, value_enum, default_value = "postgres")]
    backend: BackendChoice,
    /// Workloads, comma-separated (default all: uniform, hot, read-heavy, family).
    #[arg(long, value_enum, value_delimiter = ',')]
    workload: Vec<WorkloadChoice>,
    /// Send a fresh `Idempotency-Key` with every booking to the engine.
    #[arg(long)]
    idempotency: bool,
    /// Systems to run, comma-separated (default all: the engine and the three Postgres peers).
    #[arg(long, value_enum, value_delimiter = ',')]
    system: Vec<SystemChoice>,
    /// Seconds per run (default 10; 1 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,
    /// Short runs (1 s each) of every system, workload and connection count, for CI.
    #[arg(long)]
    quick: bool,
    /// Most requests per run (besides the time bound).
    #[arg(long, default_value_t = DEFAULT_MAX_REQUESTS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// Connections, comma-separated (default 64,256).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
    clients: Option<Vec<u64>>,
    /// The HTTP client of the generator.
    #[arg(long, value_enum, default_value = "raw")]
    client: ClientKind,
    /// Generator threads; 0 = share the server's runtime.
    #[arg(long = "gen-threads", default_value_t = 1)]
    gen_threads: usize,
    /// Server runtime threads (default: the machine's cores).
    #[arg(long = "server-threads", value_parser = clap::value_parser!(u64).range(1..))]
    server_threads: Option<u64>,
    /// Extra application settings, `CONSULT__SECTION__KEY=VALUE` (repeatable).
    #[arg(long = "set", value_parser = parse_setting)]
    set: Vec<(String, String)>,
    /// Open-loop rates, comma-separated: requests/s (`20000`) or a multiple of the best
    /// peer's closed-loop requests/s of the same workload in this invocation (`4x`).
    #[arg(long, value_delimiter = ',', value_parser = parse_rate)]
    rate: Vec<Rate>,
    /// `read-heavy` reads ask for one of the first this many days of the 30-day horizon.
    #[arg(long = "read-days", default_value_t = HORIZON_DAYS as u64, value_parser = clap::value_parser!(u64).range(1..=HORIZON_DAYS as u64))]
    read_days: u64,
    /// Leave the per-user rate limit at the application's default.
    #[arg(long = "keep-rate-limit")]
    keep_rate_limit: bool,
    /// Install a log subscriber at this level (default: none).
    #[arg(long)]
    log: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// A benchmark-name filter `cargo bench` may pass; ignored.
    #[arg(hide = true)]
    filter: Vec<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BackendChoice {
    All,
    Postgres,
    Sqlite,
    Memory,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WorkloadChoice {
    All,
    Uniform,
    Hot,
    ReadHeavy,
    Family,
}

/// What serves the requests: the engine (the real application) or one of the Postgres
/// designs it is compared with (`benches/peers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SystemChoice {
    All,
    Engine,
    PgExclusion,
    PgRowLock,
    PgSeedLiteral,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    /// The application on this backend.
    Engine(Backend),
    Peer(PeerKind),
}

impl System {
    fn name(self) -> String {
        match self {
            Self::Engine(Backend::Postgres) => "engine".to_owned(),
            Self::Engine(b) => format!("engine ({})", b.name()),
            Self::Peer(kind) => kind.name().to_owned(),
        }
    }

    /// The seed's literal design is expected to let double bookings through: they are
    /// reported, not a failed check.
    fn may_double_book(self) -> bool {
        self == Self::Peer(PeerKind::SeedLiteral)
    }
}

/// An offered rate of an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rate {
    PerS(f64),
    /// This many times the best peer's closed-loop requests/s of the same workload.
    PeerMultiple(f64),
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PerS(r) => write!(f, "{r:.0}/s"),
            Self::PeerMultiple(m) => write!(f, "{m}x the best peer's closed loop"),
        }
    }
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    let (number, make): (&str, fn(f64) -> Rate) = match text.strip_suffix('x') {
        Some(n) => (n, Rate::PeerMultiple),
        None => (text, Rate::PerS),
    };
    match number.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(make(r)),
        _ => Err(format!(
            "wants requests/s or a peer multiple like 4x, got {text:?}"
        )),
    }
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(k, _)| k.starts_with("CONSULT__"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("wants CONSULT__KEY=VALUE, got {text:?}"))
}

/// What the runs need, from [`Cli`].
#[derive(Debug)]
struct Args {
    systems: Vec<System>,
    workloads: Vec<Workload>,
    run_for: Duration,
    max_requests: i64,
    clients: Vec<usize>,
    client: ClientKind,
    gen_threads: usize,
    server_threads: usize,
    extra_settings: Vec<(String, String)>,
    /// Open-loop rates (after the closed-loop runs).
    rates: Vec<Rate>,
    /// `read-heavy` reads ask for one of the horizon's first this many days.
    read_days: usize,
    /// Leave the per-user rate limit at the application's default.
    keep_rate_limit: bool,
    log: Option<String>,
    /// A fresh `Idempotency-Key` with every booking to the engine.
    idempotency: bool,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let cli = <Cli as clap::Parser>::parse();
        let backends = match cli.backend {
            BackendChoice::All => vec![Backend::Postgres, Backend::Sqlite, Backend::Memory],
            BackendChoice::Postgres => vec![Backend::Postgres],
            BackendChoice::Sqlite => vec![Backend::Sqlite],
            BackendChoice::Memory => vec![Backend::Memory],
        };
        let all = [
            Workload::Uniform,
            Workload::Hot,
            Workload::ReadHeavy,
            Workload::Family,
        ];
        let mut workloads = Vec::new();
        if cli.workload.is_empty() {
            workloads.extend(all);
        }
        for choice in &cli.workload {
            let chosen: &[Workload] = match choice {
                WorkloadChoice::All => &all,
                WorkloadChoice::Uniform => &[Workload::Uniform],
                WorkloadChoice::Hot => &[Workload::Hot],
                WorkloadChoice::ReadHeavy => &[Workload::ReadHeavy],
                WorkloadChoice::Family => &[Workload::Family],
            };
            for &w in chosen {
                if !workloads.contains(&w) {
                    workloads.push(w);
                }
            }
        }
        let choices = if cli.system.is_empty() || cli.system.contains(&SystemChoice::All) {
            vec![
                SystemChoice::Engine,
                SystemChoice::PgExclusion,
                SystemChoice::PgRowLock,
                SystemChoice::PgSeedLiteral,
            ]
        } else {
            cli.system.clone()
        };
        let mut systems = Vec::new();
        for choice in choices {
            match choice {
                SystemChoice::Engine => systems.extend(
                    backends
                        .iter()
                        .filter(|&&b| b != Backend::Memory)
                        .map(|&b| System::Engine(b)),
                ),
                SystemChoice::PgExclusion => systems.push(System::Peer(PeerKind::Exclusion)),
                SystemChoice::PgRowLock => systems.push(System::Peer(PeerKind::RowLock)),
                SystemChoice::PgSeedLiteral => systems.push(System::Peer(PeerKind::SeedLiteral)),
                SystemChoice::All => {}
            }
        }
        systems.dedup();
        let seconds = cli.seconds.unwrap_or(if cli.quick {
            QUICK_SECONDS
        } else {
            DEFAULT_SECONDS
        });
        let clients = match cli.clients {
            Some(c) => c.into_iter().map(|n| n as usize).collect(),
            None => DEFAULT_CLIENTS.to_vec(),
        };
        Ok(Self {
            systems,
            workloads,
            run_for: Duration::from_secs(seconds),
            max_requests: cli.requests as i64,
            clients,
            client: cli.client,
            gen_threads: cli.gen_threads,
            server_threads: cli.server_threads.map_or_else(
                || std::thread::available_parallelism().map_or(2, |n| n.get()),
                |n| n as usize,
            ),
            extra_settings: cli.set,
            rates: cli.rate,
            read_days: cli.read_days as usize,
            keep_rate_limit: cli.keep_rate_limit,
            log: cli.log,
            idempotency: cli.idempotency,
        })
    }
}

// ---------------------------------------------------------------------------------------
// The store under the application.

/// A throwaway database and what removing it takes.
enum Database {
    Postgres { name: String, url: String },
    Sqlite { path: PathBuf, url: String },
}

impl Database {
    /// `None` when Postgres is unreachable (after a notice from `fresh_postgres`).
    async fn fresh(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Postgres => {
                let (store, name) = fresh_postgres().await?;
                store.close().await;
                let url = pg_url_for(&name);
                Some(Self::Postgres { name, url })
            }
            Backend::Sqlite => {
                let (store, path) = fresh_sqlite().await;
                store.close().await;
                let url = format!("sqlite://{}", path.display());
                Some(Self::Sqlite { path, url })
            }
            Backend::Memory => None,
        }
    }

    /// An empty Postgres database, for a peer to create its own schema in; `None` when
    /// Postgres is unreachable.
    async fn empty_postgres() -> Option<Self> {
        let admin_url = test_pg_url();
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("Postgres unreachable at {admin_url}: {e}");
                return None;
            }
        };
        let name = unique_name("cs_peer");
        if let Err(e) = sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
        {
            eprintln!("cannot create database {name}: {e}");
            return None;
        }
        let _ = admin.close().await;
        let url = pg_url_for(&name);
        Some(Self::Postgres { name, url })
    }

    fn url(&self) -> &str {
        match self {
            Self::Postgres { url, .. } | Self::Sqlite { url, .. } => url,
        }
    }

    /// Active consultations as (doctor, start, end, patient), times in epoch seconds,
    /// ordered by doctor and start; and the number of rows of any status.
    async fn consultations(&self) -> Result<(Vec<ActiveRow>, i64), String> {
        const ACTIVE: &str = "SELECT doctor_id, scheduled_at, duration_minutes, patient_id \
             FROM consultations WHERE status IN ('pending', 'scheduled') \
             ORDER BY doctor_id, scheduled_at";
        const ALL: &str = "SELECT COUNT(*) FROM consultations";
        let span = |start: i64, minutes: i64| (start, start + minutes * 60);
        match self {
            Self::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url)
                    .await
                    .map_err(|e| e.to_string())?;
                let rows: Vec<(i64, DateTime<Utc>, i32, i64)> = sqlx::query_as(ACTIVE)
                    .fetch_all(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let (all,): (i64,) = sqlx::query_as(ALL)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok((
                    rows.into_iter()
                        .map(|(d, at, m, p)| {
                            let (s, e) = span(at.timestamp(), i64::from(m));
                            (d, s, e, p)
                        })
                        .collect(),
                    all,
                ))
            }
            Self::Sqlite { url, .. } => {
                let mut conn = sqlx::SqliteConnection::connect(url)
                    .await
                    .map_err(|e| e.to_string())?;
                let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(ACTIVE)
                    .fetch_all(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let (all,): (i64,) = sqlx::query_as(ALL)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                let mut out = Vec::with_capacity(rows.len());
                for (d, at, m, p) in rows {
                    let at = DateTime::parse_from_rfc3339(&at)
                        .map_err(|e| format!("scheduled_at {at:?}: {e}"))?;
                    let (s, e) = span(at.timestamp(), m);
                    out.push((d, s, e, p));
                }
                // Text order is time order only for one fixed format; sort to be sure.
                out.sort_unstable();
                Ok((out, all))
            }
        }
    }

    /// The multi-patient bookings as stored (see [`BookingVerdict`]).
    async fn bookings(&self) -> Result<BookingVerdict, String> {
        // Per booking id, its member rows whose consultation is active.
        let per_booking = format!(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN n = {FAMILY_ITEMS} THEN 0 ELSE 1 END), 0) \
             FROM (SELECT m.booking_id, COUNT(c.id) AS n FROM booking_members m \
                   LEFT JOIN consultations c ON c.id = m.consultation_id \
                        AND c.status IN ('pending', 'scheduled') \
                   GROUP BY m.booking_id) AS b"
        );
        const OUTSIDE: &str = "SELECT COUNT(*) FROM consultations c \
             WHERE c.status IN ('pending', 'scheduled') AND NOT EXISTS \
             (SELECT 1 FROM booking_members m WHERE m.consultation_id = c.id)";
        let ((stored, partial), (outside,)): ((i64, i64), (i64,)) = match self {
            Self::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url)
                    .await
                    .map_err(|e| e.to_string())?;
                let a = sqlx::query_as(&per_booking)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let b = sqlx::query_as(OUTSIDE)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                (a, b)
            }
            Self::Sqlite { url, .. } => {
                let mut conn = sqlx::SqliteConnection::connect(url)
                    .await
                    .map_err(|e| e.to_string())?;
                let a = sqlx::query_as(&per_booking)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let b = sqlx::query_as(OUTSIDE)
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                (a, b)
            }
        };
        Ok(BookingVerdict {
            stored: stored as u64,
            partial: partial as u64,
            outside: outside as u64,
        })
    }

    async fn remove(self) {
        match self {
            Self::Postgres { name, .. } => drop_postgres(&name).await,
            Self::Sqlite { path, .. } => remove_sqlite(&path),
        }
    }
}

/// An active consultation: doctor, start and end (epoch seconds), patient.
type ActiveRow = (i64, i64, i64, i64);

/// The store's view after a run, against what the clients were told.
#[derive(Debug, Default)]
struct Verdict {
    active_rows: u64,
    all_rows: u64,
    acknowledged: u64,
    /// Active rows that overlap an earlier active row of the same doctor.
    double_bookings: u64,
    /// Acknowledged (201) bookings with no active row of that doctor, start and patient.
    lost: u64,
    /// Active rows no 201 acknowledged.
    unacknowledged: u64,
    /// `family`: the multi-patient bookings as stored.
    bookings: Option<BookingVerdict>,
    error: Option<String>,
}

/// The multi-patient bookings in the store after a `family` run.
#[derive(Debug, Default, Clone, Copy)]
struct BookingVerdict {
    /// Distinct booking ids of `booking_members`.
    stored: u64,
    /// Bookings without exactly `FAMILY_ITEMS` active consultations (stored in part).
    partial: u64,
    /// Active consultations with no `booking_members` row (not part of any booking).
    outside: u64,
}

/// Reads the store back: overlaps among one doctor's active rows, and the active rows
/// matched one to one with the acknowledged bookings `acked` (doctor, start, patient; sorted).
async fn verify(db: &Database, acked: &[(i64, i64, i64)]) -> Verdict {
    let (rows, all) = match db.consultations().await {
        Ok(found) => found,
        Err(e) => {
            return Verdict {
                acknowledged: acked.len() as u64,
                error: Some(e),
                ..Verdict::default()
            }
        }
    };
    let mut double_bookings = 0;
    let mut current: Option<(i64, i64)> = None; // (doctor, latest end so far)
    for &(doctor, start, end, _) in &rows {
        match &mut current {
            Some((d, latest)) if *d == doctor => {
                if start < *latest {
                    double_bookings += 1;
                }
                *latest = (*latest).max(end);
            }
            _ => current = Some((doctor, end)),
        }
    }
    let mut stored: Vec<(i64, i64, i64)> = rows.iter().map(|&(d, s, _, p)| (d, s, p)).collect();
    stored.sort_unstable();
    let (mut lost, mut unacknowledged) = (0, 0);
    let (mut i, mut j) = (0, 0);
    while i < acked.len() || j < stored.len() {
        match (acked.get(i), stored.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                lost += 1;
                i += 1;
            }
            (Some(_), None) => {
                lost += 1;
                i += 1;
            }
            _ => {
                unacknowledged += 1;
                j += 1;
            }
        }
    }
    Verdict {
        active_rows: rows.len() as u64,
        all_rows: all as u64,
        acknowledged: acked.len() as u64,
        double_bookings,
        lost,
        unacknowledged,
        bookings: None,
        error: None,
    }
}

// ---------------------------------------------------------------------------------------
// The application under test.

struct Server {
    addr: SocketAddr,
    engine: Engine,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(
        url: &str,
        extra: &[(String, String)],
        keep_rate_limit: bool,
    ) -> Result<Self, String> {
        let mut env = vec![
            ("CONSULT__SERVER__BIND".to_owned(), "127.0.0.1:0".to_owned()),
            ("CONSULT__DATABASE__URL".to_owned(), url.to_owned()),
            ("CONSULT__DEMO__SEED".to_owned(), "false".to_owned()),
            ("CONSULT__LOG__LEVEL".to_owned(), "warn".to_owned()),
            (
                "CONSULT__SERVER__MAX_CONCURRENT_REQUESTS".to_owned(),
                "65536".to_owned(),
            ),
            // The booking still writes its session outbox row in its transaction; making
            // the Vonage session (an outside service the peers have no counterpart of) is
            // off unless `--set CONSULT__SESSIONS__PROVIDER=fake`.
            ("CONSULT__SESSIONS__PROVIDER".to_owned(), "off".to_owned()),
        ];
        if !keep_rate_limit {
            // One patient per connection sends far more than a person would: keep the
            // per-user limiter in the path (its cost is measured) but never tripping.
            env.push((
                "CONSULT__SERVER__RATE_LIMIT_PER_S".to_owned(),
                "1000000".to_owned(),
            ));
            env.push((
                "CONSULT__SERVER__RATE_LIMIT_BURST".to_owned(),
                "10000000".to_owned(),
            ));
        }
        env.extend(extra.iter().cloned());
        let settings = Settings::load(None, env).map_err(|e| e.to_string())?;
        let app = Application::build(settings)
            .await
            .map_err(|e| e.to_string())?;
        let addr = app.local_addr();
        let engine = app.engine().clone();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        Ok(Self {
            addr,
            engine,
            stop,
            running,
        })
    }

    /// Graceful stop: in-flight requests finish, the journal is flushed, snapshots written.
    async fn stop(self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.send(());
        match self.running.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("server stopped with an error: {e}"),
            Err(e) => eprintln!("server task failed: {e}"),
        }
        started.elapsed()
    }
}

/// Creates and activates `n` doctors through the engine; their ids, sorted.
async fn create_doctors(engine: &Engine, n: usize) -> Result<Vec<DoctorId>, String> {
    let names = (0..n).map(|i| format!("Dr. Http {i:04}"));
    let ids = common::create_doctors(engine, names, SETUP_CONCURRENCY).await?;
    activate_doctors(engine, &ids, SETUP_CONCURRENCY).await?;
    Ok(ids)
}

/// `count` slot starts, 30 minutes apart from tomorrow 00:00 UTC: in epoch seconds, and
/// as RFC 3339 text.
fn slot_grid(now: DateTime<Utc>, count: usize) -> (Vec<i64>, Vec<String>) {
    let first = (now.date_naive() + Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    (0..count)
        .map(|i| {
            let at = first + chrono::Duration::minutes(i64::from(SLOT_MINUTES) * i as i64);
            (at.timestamp(), at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        })
        .unzip()
}

// ---------------------------------------------------------------------------------------
// The clients.

/// What one request came back with.
enum Outcome {
    Created,
    /// A 201 whose body does not describe the booking asked for (sampled check).
    CreatedWrong(String),
    Conflict,
    /// A 409 whose body is not the API's conflict body.
    ConflictWrong(String),
    /// A 200 availability answer.
    Read,
    /// A 200 availability answer that does not describe the day asked for (sampled check).
    ReadWrong(String),
    Overloaded,
    /// Anything else: the status and body, or the transport failure.
    Error(String),
}

/// What a sampled availability answer must say.
#[derive(Debug, Clone, Copy)]
struct ExpectedDay<'a> {
    doctor_id: i64,
    date: &'a str,
}

/// The full check of an availability body: the doctor and day asked for, one slot per
/// 30 minutes of the day, each with a known status.
fn check_day(body: &[u8], want: ExpectedDay<'_>) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("200 body is not JSON: {e}"))?;
    let day = &v["days"][0];
    let slots = day["slots"].as_array().map_or(&[][..], Vec::as_slice);
    let statuses_known = slots.iter().all(|slot| {
        matches!(
            slot["status"].as_str(),
            Some("available" | "booked" | "held" | "past")
        )
    });
    let got = (v["doctor_id"].as_i64(), day["date"].as_str(), slots.len());
    let expected = (Some(want.doctor_id), Some(want.date), SLOTS_PER_DAY);
    if got == expected && statuses_known {
        Ok(())
    } else {
        Err(format!(
            "availability says (doctor, date, slots) = {got:?} (statuses known: {statuses_known}), expected {expected:?}"
        ))
    }
}

/// Classifies a complete availability response; `check`: also verify the body in full.
fn classify_read(status: u16, body: &[u8], check: Option<ExpectedDay<'_>>) -> Outcome {
    match status {
        200 if body.starts_with(CREATED_PREFIX) => match check.map(|e| check_day(body, e)) {
            Some(Err(e)) => Outcome::ReadWrong(e),
            _ => Outcome::Read,
        },
        503 => Outcome::Overloaded,
        _ => Outcome::Error(format!(
            "{status} {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )),
    }
}

/// `/patient/doctors/{doctor}/availability?from={date}&days=1`.
fn availability_path(doctor: &str, date: &str) -> String {
    format!("/patient/doctors/{doctor}/availability?from={date}&days=1")
}

/// What a 201 must say; checked in full on a sample of the answers.
#[derive(Debug, Clone, Copy)]
struct Expected {
    doctor_id: i64,
    patient_id: i64,
    /// The slot start, in seconds since the epoch.
    at: i64,
}

/// The full check of a 201 body against the request.
fn check_created(body: &[u8], want: Expected) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("201 body is not JSON: {e}"))?;
    let c = &v["consultation"];
    let at = c["scheduled_at"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp());
    let got = (
        c["doctor_id"].as_i64(),
        c["patient_id"].as_i64(),
        at,
        c["duration_minutes"].as_i64(),
        c["status"].as_str(),
        c["consult_mode"].as_str(),
    );
    let expected = (
        Some(want.doctor_id),
        Some(want.patient_id),
        Some(want.at),
        Some(i64::from(SLOT_MINUTES)),
        Some("scheduled"),
        Some("video"),
    );
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "201 body says (doctor, patient, at, minutes, status, mode) = {got:?}, expected {expected:?}"
        ))
    }
}

/// Classifies a complete response; `check`: also verify a 201's body in full.
fn classify(status: u16, body: &[u8], check: Option<Expected>) -> Outcome {
    match status {
        201 if created_shape(body) => match check.map(|e| check_created(body, e)) {
            Some(Err(e)) => Outcome::CreatedWrong(e),
            _ => Outcome::Created,
        },
        409 if is_conflict_body(body) => Outcome::Conflict,
        409 => Outcome::ConflictWrong(format!(
            "409 body is not the conflict body: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )),
        503 => Outcome::Overloaded,
        _ => Outcome::Error(format!(
            "{status} {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )),
    }
}

/// `{"doctor_id":D,"scheduled_at":"...","consult_mode":"video"}` into `out`.
fn write_body(out: &mut Vec<u8>, doctor: &str, slot: &str) {
    out.extend_from_slice(br#"{"doctor_id":"#);
    out.extend_from_slice(doctor.as_bytes());
    out.extend_from_slice(br#","scheduled_at":""#);
    out.extend_from_slice(slot.as_bytes());
    out.extend_from_slice(br#"","consult_mode":"video"}"#);
}

/// `{"items":[{"doctor_id":D,"scheduled_at":"...","consult_mode":"video","patient_name":
/// "...","relation":"..."},...]}` into `out`: item i is for `FAMILY_MEMBERS[i]`.
fn write_family_body(out: &mut Vec<u8>, items: &[(&str, &str)]) {
    out.extend_from_slice(br#"{"items":["#);
    for (i, &(doctor, slot)) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"doctor_id":"#);
        out.extend_from_slice(doctor.as_bytes());
        out.extend_from_slice(br#","scheduled_at":""#);
        out.extend_from_slice(slot.as_bytes());
        out.extend_from_slice(br#"","consult_mode":"video","patient_name":""#);
        let (name, relation) = FAMILY_MEMBERS[i % FAMILY_ITEMS];
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(br#"","relation":""#);
        out.extend_from_slice(relation.as_bytes());
        out.extend_from_slice(br#""}"#);
    }
    out.extend_from_slice(b"]}");
}

/// What a `family` 201 must say; checked in full on a sample of the answers.
#[derive(Debug, Clone, Copy)]
struct ExpectedFamily {
    patient_id: i64,
    /// Per item: the doctor and the slot start (epoch seconds).
    items: [(i64, i64); FAMILY_ITEMS],
}

/// The full check of a `family` 201 body: the booking's id is its first consultation's,
/// and each consultation, in item order, is the item asked for, of this booking, for its
/// named patient.
fn check_family_created(body: &[u8], want: ExpectedFamily) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("201 body is not JSON: {e}"))?;
    let booking = &v["booking"];
    let cs = booking["consultations"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let id = booking["id"].as_i64();
    if v["success"] != true
        || cs.len() != FAMILY_ITEMS
        || id.is_none()
        || id != cs[0]["id"].as_i64()
    {
        return Err(format!(
            "201 body: success {}, booking id {id:?}, {} consultations (first id {:?}), expected {FAMILY_ITEMS} with the booking's id first",
            v["success"],
            cs.len(),
            cs.first().and_then(|c| c["id"].as_i64()),
        ));
    }
    for (i, (c, &(doctor, at))) in cs.iter().zip(&want.items).enumerate() {
        let start = c["scheduled_at"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp());
        let got = (
            c["doctor_id"].as_i64(),
            c["patient_id"].as_i64(),
            start,
            c["duration_minutes"].as_i64(),
            c["status"].as_str(),
            c["consult_mode"].as_str(),
            c["booking_id"].as_i64(),
            c["patient_name"].as_str(),
            c["relation"].as_str(),
        );
        let expected = (
            Some(doctor),
            Some(want.patient_id),
            Some(at),
            Some(i64::from(SLOT_MINUTES)),
            Some("scheduled"),
            Some("video"),
            id,
            Some(FAMILY_MEMBERS[i].0),
            Some(FAMILY_MEMBERS[i].1),
        );
        if got != expected {
            return Err(format!(
                "201 consultation {i} says (doctor, patient, at, minutes, status, mode, booking, name, relation) = {got:?}, expected {expected:?}"
            ));
        }
    }
    Ok(())
}

/// A `family` 409 must carry the seed's three fields exactly, plus `item` (one of the
/// booking's items) and `errors` naming that item with the seed's message; nothing else.
fn check_family_conflict(body: &[u8]) -> Result<(), String> {
    let wrong = || {
        format!(
            "409 body is not the multi-patient conflict body: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )
    };
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| wrong())?;
    let fields = v.as_object().ok_or_else(wrong)?;
    let item = v["item"]
        .as_u64()
        .filter(|&i| (i as usize) < FAMILY_ITEMS)
        .ok_or_else(wrong)?;
    let errors = serde_json::json!({ format!("items[{item}]"): [CONFLICT_MESSAGE] });
    let ok = fields.len() == 5
        && v["success"] == false
        && v["message"] == CONFLICT_MESSAGE
        && v["error"] == "time_slot_conflict"
        && v["errors"] == errors;
    if ok {
        Ok(())
    } else {
        Err(wrong())
    }
}

/// Classifies a complete `family` response; `check`: also verify a 201's body in full.
/// Every 409 body is checked.
fn classify_family(status: u16, body: &[u8], check: Option<ExpectedFamily>) -> Outcome {
    match status {
        201 if created_shape(body) => match check.map(|e| check_family_created(body, e)) {
            Some(Err(e)) => Outcome::CreatedWrong(e),
            _ => Outcome::Created,
        },
        409 => match check_family_conflict(body) {
            Ok(()) => Outcome::Conflict,
            Err(e) => Outcome::ConflictWrong(e),
        },
        503 => Outcome::Overloaded,
        _ => Outcome::Error(format!(
            "{status} {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )),
    }
}

/// `Idempotency-Key: b{connection}-{n}\r\n` into `out`: unique per request of a run
/// (each connection numbers its requests), so never a repeat.
fn push_idempotency_line(out: &mut Vec<u8>, (connection, n): (usize, u64)) {
    out.extend_from_slice(b"Idempotency-Key: b");
    push_decimal(out, connection);
    out.push(b'-');
    push_decimal(out, n as usize);
    out.extend_from_slice(b"\r\n");
}

fn idempotency_value((connection, n): (usize, u64)) -> reqwest::header::HeaderValue {
    reqwest::header::HeaderValue::from_str(&format!("b{connection}-{n}"))
        .expect("an ASCII header value")
}

/// A minimal HTTP/1.1 keep-alive client for one connection: one request in flight, the
/// request head up to the optional `Idempotency-Key` and `Content-Length` pre-built per
/// patient and endpoint, the body written into a reused buffer, the response read by
/// `Content-Length` (the server never chunks these).
struct RawConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    out: Vec<u8>,
    body: Vec<u8>,
    input: Vec<u8>,
}

impl RawConn {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            out: Vec::with_capacity(1024),
            body: Vec::with_capacity(128),
            input: Vec::with_capacity(4096),
        }
    }

    /// The head of a POST to `path` before the idempotency key and the content length,
    /// for one patient's token.
    fn head(addr: SocketAddr, token: &str, path: &str) -> Vec<u8> {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        )
        .into_bytes()
    }

    /// The header lines every request of one patient carries (host and token).
    fn auth_lines(addr: SocketAddr, token: &str) -> Vec<u8> {
        format!("Host: {addr}\r\nAuthorization: Bearer {token}\r\n").into_bytes()
    }

    async fn read(&mut self, auth: &[u8], path: &str, check: Option<ExpectedDay<'_>>) -> Outcome {
        self.out.clear();
        self.out.extend_from_slice(b"GET ");
        self.out.extend_from_slice(path.as_bytes());
        self.out.extend_from_slice(b" HTTP/1.1\r\n");
        self.out.extend_from_slice(auth);
        self.out.extend_from_slice(b"\r\n");
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange())
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("no answer within 30 s")))
        {
            Ok((status, body_start, close)) => {
                let outcome = classify_read(status, &self.input[body_start..], check);
                if close {
                    self.stream = None;
                }
                outcome
            }
            Err(e) => {
                self.stream = None;
                Outcome::Error(format!("transport: {e}"))
            }
        }
    }

    async fn book(
        &mut self,
        head: &[u8],
        key: Option<(usize, u64)>,
        doctor: &str,
        slot: &str,
        check: Option<Expected>,
    ) -> Outcome {
        self.body.clear();
        write_body(&mut self.body, doctor, slot);
        match self.post(head, key).await {
            Ok((status, body_start)) => classify(status, &self.input[body_start..], check),
            Err(e) => Outcome::Error(e),
        }
    }

    async fn book_family(
        &mut self,
        head: &[u8],
        key: Option<(usize, u64)>,
        items: &[(&str, &str)],
        check: Option<ExpectedFamily>,
    ) -> Outcome {
        self.body.clear();
        write_family_body(&mut self.body, items);
        match self.post(head, key).await {
            Ok((status, body_start)) => classify_family(status, &self.input[body_start..], check),
            Err(e) => Outcome::Error(e),
        }
    }

    /// Sends `head`, the idempotency key if any, the content length and `body`; answers
    /// the status and the body's offset in `input`, or the transport failure.
    async fn post(
        &mut self,
        head: &[u8],
        key: Option<(usize, u64)>,
    ) -> Result<(u16, usize), String> {
        self.out.clear();
        self.out.extend_from_slice(head);
        if let Some(key) = key {
            push_idempotency_line(&mut self.out, key);
        }
        self.out.extend_from_slice(b"Content-Length: ");
        push_decimal(&mut self.out, self.body.len());
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(&self.body);
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange())
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("no answer within 30 s")))
        {
            Ok((status, body_start, close)) => {
                if close {
                    self.stream = None;
                }
                Ok((status, body_start))
            }
            Err(e) => {
                self.stream = None;
                Err(format!("transport: {e}"))
            }
        }
    }

    /// Writes `out`, reads one response into `input`: (status, body offset, server closes).
    async fn exchange(&mut self) -> std::io::Result<(u16, usize, bool)> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(&self.out).await?;
        self.input.clear();
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let head_end = loop {
            if let Some(i) = find(&self.input, b"\r\n\r\n") {
                break i + 4;
            }
            if stream.read_buf(&mut self.input).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before a response",
                ));
            }
        };
        let head = &self.input[..head_end];
        if head.len() < 12 || !head.starts_with(b"HTTP/1.1 ") {
            return Err(bad("not an HTTP/1.1 response"));
        }
        let status = std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut length = None;
        let mut close = false;
        for line in head.split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok());
            } else if name.eq_ignore_ascii_case(b"connection") {
                close = value.eq_ignore_ascii_case(b"close");
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                return Err(bad("chunked responses are not supported"));
            }
        }
        let length = length.ok_or_else(|| bad("no content-length"))?;
        while self.input.len() < head_end + length {
            if stream.read_buf(&mut self.input).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a body",
                ));
            }
        }
        if self.input.len() != head_end + length {
            return Err(bad("more bytes than one response"));
        }
        Ok((status, head_end, close))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// reqwest on one connection (its own client) or on a shared client's pool.
struct ReqwestConn {
    client: reqwest::Client,
    url: reqwest::Url,
    family_url: reqwest::Url,
    body: Vec<u8>,
}

impl ReqwestConn {
    fn client(pool: usize) -> reqwest::Client {
        reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds")
    }

    async fn book(
        &mut self,
        auth: &reqwest::header::HeaderValue,
        key: Option<(usize, u64)>,
        doctor: &str,
        slot: &str,
        check: Option<Expected>,
    ) -> Outcome {
        self.body.clear();
        write_body(&mut self.body, doctor, slot);
        let url = self.url.clone();
        match self.post(url, auth, key).await {
            Ok((status, body)) => classify(status, &body, check),
            Err(e) => Outcome::Error(e),
        }
    }

    async fn book_family(
        &mut self,
        auth: &reqwest::header::HeaderValue,
        key: Option<(usize, u64)>,
        items: &[(&str, &str)],
        check: Option<ExpectedFamily>,
    ) -> Outcome {
        self.body.clear();
        write_family_body(&mut self.body, items);
        let url = self.family_url.clone();
        match self.post(url, auth, key).await {
            Ok((status, body)) => classify_family(status, &body, check),
            Err(e) => Outcome::Error(e),
        }
    }

    /// Posts `body` to `url`: the status and the response body, or the transport failure.
    async fn post(
        &mut self,
        url: reqwest::Url,
        auth: &reqwest::header::HeaderValue,
        key: Option<(usize, u64)>,
    ) -> Result<(u16, axum::body::Bytes), String> {
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::AUTHORIZATION, auth.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(key) = key {
            request = request.header("idempotency-key", idempotency_value(key));
        }
        let response = request
            .body(self.body.clone())
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        Ok((status, body))
    }

    async fn read(
        &mut self,
        auth: &reqwest::header::HeaderValue,
        path: &str,
        check: Option<ExpectedDay<'_>>,
    ) -> Outcome {
        let url = match self.url.join(path) {
            Ok(url) => url,
            Err(e) => return Outcome::Error(format!("bad path {path}: {e}")),
        };
        let sent = self
            .client
            .get(url)
            .header(reqwest::header::AUTHORIZATION, auth.clone())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::Error(format!("transport: {e}")),
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(body) => classify_read(status, &body, check),
            Err(e) => Outcome::Error(format!("transport: {e}")),
        }
    }
}

/// One connection of whichever client kind.
enum Link {
    Raw(RawConn),
    Reqwest(ReqwestConn),
}

/// One connection, and its number when its bookings carry idempotency keys.
struct Conn {
    link: Link,
    key: Option<usize>,
}

/// Pre-built per-patient request parts.
struct Patient {
    id: i64,
    /// Raw client: the booking request head up to the idempotency key and content length.
    head: Vec<u8>,
    /// Raw client: the same for a multi-patient booking.
    family_head: Vec<u8>,
    /// Raw client: the host and authorization header lines.
    auth_lines: Vec<u8>,
    /// reqwest: the `Authorization` value.
    auth: reqwest::header::HeaderValue,
}

impl Patient {
    fn new(addr: SocketAddr, keys: &JwtKeys, id: i64) -> Self {
        let token = keys.mint(Role::Patient, id, now_s(), 3600);
        Self {
            id,
            head: RawConn::head(addr, &token, PATH),
            family_head: RawConn::head(addr, &token, FAMILY_PATH),
            auth_lines: RawConn::auth_lines(addr, &token),
            auth: reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .expect("a JWT is a valid header value"),
        }
    }
}

/// What starts connections for one run.
#[derive(Clone)]
struct Dialer {
    kind: ClientKind,
    addr: SocketAddr,
    shared: Option<reqwest::Client>,
    /// Every booking carries a fresh `Idempotency-Key`.
    idempotency: bool,
}

impl Dialer {
    fn new(kind: ClientKind, addr: SocketAddr, connections: usize, idempotency: bool) -> Self {
        Self {
            kind,
            addr,
            shared: (kind == ClientKind::ReqwestShared).then(|| ReqwestConn::client(connections)),
            idempotency,
        }
    }

    /// Connection number `index` of the run.
    fn conn(&self, index: usize) -> Conn {
        let link = match self.kind {
            ClientKind::Raw => Link::Raw(RawConn::new(self.addr)),
            ClientKind::Reqwest | ClientKind::ReqwestShared => Link::Reqwest(ReqwestConn {
                client: self
                    .shared
                    .clone()
                    .unwrap_or_else(|| ReqwestConn::client(1)),
                url: reqwest::Url::parse(&format!("http://{}{PATH}", self.addr))
                    .expect("a valid URL"),
                family_url: reqwest::Url::parse(&format!("http://{}{FAMILY_PATH}", self.addr))
                    .expect("a valid URL"),
                body: Vec::with_capacity(512),
            }),
        };
        Conn {
            link,
            key: self.idempotency.then_some(index),
        }
    }
}

impl Conn {
    /// Opens the connection before the clock starts (reqwest: by a `GET /healthz`).
    async fn warm_up(&mut self) -> Result<(), String> {
        match &mut self.link {
            Link::Raw(c) => {
                let stream = TcpStream::connect(c.addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                c.stream = Some(stream);
                Ok(())
            }
            Link::Reqwest(c) => {
                let mut url = c.url.clone();
                url.set_path("/healthz");
                let response = c
                    .client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("warm-up: {e}"))?;
                response
                    .bytes()
                    .await
                    .map(drop)
                    .map_err(|e| format!("warm-up: {e}"))
            }
        }
    }

    /// Books slot `slot` of doctor `doctor` (indices into the plan) as `patient`; every
    /// `CHECK_EVERY`th request of a connection (`n`) has its 201 body checked in full.
    async fn book(
        &mut self,
        plan: &Plan,
        patient: usize,
        doctor: usize,
        slot: usize,
        n: u64,
    ) -> Outcome {
        let p = &plan.patients[patient];
        let check = (n & (CHECK_EVERY - 1) == 0).then(|| Expected {
            doctor_id: plan.doctor_ids[doctor],
            patient_id: p.id,
            at: plan.slot_at[slot],
        });
        let (d, s) = (&plan.doctors[doctor], &plan.slots[slot]);
        let key = self.key.map(|c| (c, n));
        match &mut self.link {
            Link::Raw(c) => c.book(&p.head, key, d, s, check).await,
            Link::Reqwest(c) => c.book(&p.auth, key, d, s, check).await,
        }
    }

    /// Books the (doctor, slot) pairs `items` (indices into the plan) as one multi-patient
    /// booking of `patient`; every `CHECK_EVERY`th request of a connection (`n`) has its
    /// 201 body checked in full.
    async fn book_family(
        &mut self,
        plan: &Plan,
        patient: usize,
        items: &[(usize, usize); FAMILY_ITEMS],
        n: u64,
    ) -> Outcome {
        let p = &plan.patients[patient];
        let check = (n & (CHECK_EVERY - 1) == 0).then(|| ExpectedFamily {
            patient_id: p.id,
            items: items.map(|(d, s)| (plan.doctor_ids[d], plan.slot_at[s])),
        });
        let texts = items.map(|(d, s)| (plan.doctors[d].as_str(), plan.slots[s].as_str()));
        let key = self.key.map(|c| (c, n));
        match &mut self.link {
            Link::Raw(c) => c.book_family(&p.family_head, key, &texts, check).await,
            Link::Reqwest(c) => c.book_family(&p.auth, key, &texts, check).await,
        }
    }

    /// Reads one day (`day`: index into the plan's dates) of doctor `doctor`'s availability
    /// as `patient`; every `CHECK_EVERY`th request of a connection is checked in full.
    async fn read(
        &mut self,
        plan: &Plan,
        patient: usize,
        doctor: usize,
        day: usize,
        n: u64,
    ) -> Outcome {
        let p = &plan.patients[patient];
        let date = plan.dates[day].as_str();
        let check = (n & (CHECK_EVERY - 1) == 0).then(|| ExpectedDay {
            doctor_id: plan.doctor_ids[doctor],
            date,
        });
        let path = availability_path(&plan.doctors[doctor], date);
        match &mut self.link {
            Link::Raw(c) => c.read(&p.auth_lines, &path, check).await,
            Link::Reqwest(c) => c.read(&p.auth, &path, check).await,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tallies.

/// What one connection saw; latencies in microseconds, kept raw and histogrammed at the end.
#[derive(Default)]
struct Tally {
    created_us: Vec<u32>,
    conflict_us: Vec<u32>,
    read_us: Vec<u32>,
    overloaded: u64,
    errors: u64,
    /// 201s and 200s whose body did not match the request (of those checked).
    wrong_bodies: u64,
    /// Time to open the connection.
    connect_us: u64,
    /// Open loop: requests sent more than `LATE_AFTER` after their due time.
    late: u64,
    error_samples: BTreeMap<String, u64>,
    /// Every acknowledged consultation: (doctor, slot, patient) indices into the plan.
    booked: Vec<(u32, u32, u32)>,
}

impl Tally {
    /// Records one answer to booking the (doctor, slot) pairs `items` (plan indices; one
    /// for a single booking) as `patient`.
    fn record(
        &mut self,
        outcome: Outcome,
        took: Duration,
        items: &[(usize, usize)],
        patient: usize,
    ) {
        let us = took.as_micros().min(u128::from(u32::MAX)) as u32;
        let created = |t: &mut Self| {
            t.created_us.push(us);
            t.booked.extend(
                items
                    .iter()
                    .map(|&(d, s)| (d as u32, s as u32, patient as u32)),
            );
        };
        match outcome {
            Outcome::Created => created(self),
            Outcome::CreatedWrong(e) => {
                created(self);
                self.wrong_bodies += 1;
                self.sample(e);
            }
            Outcome::Conflict => self.conflict_us.push(us),
            Outcome::ConflictWrong(e) => {
                self.conflict_us.push(us);
                self.wrong_bodies += 1;
                self.sample(e);
            }
            Outcome::Read => self.read_us.push(us),
            Outcome::ReadWrong(e) => {
                self.read_us.push(us);
                self.wrong_bodies += 1;
                self.sample(e);
            }
            Outcome::Overloaded => self.overloaded += 1,
            Outcome::Error(e) => {
                self.errors += 1;
                self.sample(e);
            }
        }
    }

    /// Opens the connection (not timed as a request; the slowest is reported).
    async fn warm_up(&mut self, conn: &mut Conn) {
        let t = Instant::now();
        if let Err(e) = conn.warm_up().await {
            self.errors += 1;
            self.sample(e);
        }
        self.connect_us = t.elapsed().as_micros() as u64;
    }

    fn sample(&mut self, e: String) {
        if self.error_samples.len() < MAX_ERROR_SAMPLES || self.error_samples.contains_key(&e) {
            *self.error_samples.entry(e).or_default() += 1;
        }
    }
}

/// A run's totals.
struct Summary {
    requests: u64,
    created: u64,
    conflicts: u64,
    reads: u64,
    overloaded: u64,
    errors: u64,
    wrong_bodies: u64,
    /// The slowest connection opening.
    connect_max_us: u64,
    /// Open loop: requests sent late (see [`Tally::late`]).
    late: u64,
    all_us: Histogram<u64>,
    created_us: Histogram<u64>,
    conflict_us: Histogram<u64>,
    read_us: Histogram<u64>,
    error_samples: BTreeMap<String, u64>,
    /// Acknowledged consultations as (doctor id, start in epoch seconds, patient id), sorted
    /// (`family`: 3 per 201).
    booked: Vec<(i64, i64, i64)>,
}

impl Summary {
    fn of(tallies: Vec<Tally>, plan: &Plan) -> Self {
        let hist = histogram;
        let mut s = Self {
            requests: 0,
            created: 0,
            conflicts: 0,
            reads: 0,
            overloaded: 0,
            errors: 0,
            wrong_bodies: 0,
            connect_max_us: 0,
            late: 0,
            all_us: hist(),
            created_us: hist(),
            conflict_us: hist(),
            read_us: hist(),
            error_samples: BTreeMap::new(),
            booked: Vec::new(),
        };
        for t in tallies {
            for &us in &t.created_us {
                let us = u64::from(us).clamp(1, HIST_MAX_US);
                s.created_us.saturating_record(us);
                s.all_us.saturating_record(us);
            }
            for &us in &t.conflict_us {
                let us = u64::from(us).clamp(1, HIST_MAX_US);
                s.conflict_us.saturating_record(us);
                s.all_us.saturating_record(us);
            }
            for &us in &t.read_us {
                let us = u64::from(us).clamp(1, HIST_MAX_US);
                s.read_us.saturating_record(us);
                s.all_us.saturating_record(us);
            }
            s.created += t.created_us.len() as u64;
            s.conflicts += t.conflict_us.len() as u64;
            s.reads += t.read_us.len() as u64;
            s.overloaded += t.overloaded;
            s.errors += t.errors;
            s.wrong_bodies += t.wrong_bodies;
            s.connect_max_us = s.connect_max_us.max(t.connect_us);
            s.late += t.late;
            s.booked.extend(t.booked.iter().map(|&(d, at, p)| {
                (
                    plan.doctor_ids[d as usize],
                    plan.slot_at[at as usize],
                    plan.patients[p as usize].id,
                )
            }));
            for (e, n) in t.error_samples {
                if s.error_samples.len() < MAX_ERROR_SAMPLES || s.error_samples.contains_key(&e) {
                    *s.error_samples.entry(e).or_default() += n;
                }
            }
        }
        s.requests = s.created + s.conflicts + s.reads + s.overloaded + s.errors;
        s.booked.sort_unstable();
        s
    }
}

/// Shared start and stop conditions of one run: every connection is opened first, then
/// the clock starts for all at once.
struct Limits {
    run_for: Duration,
    budget: AtomicI64,
    start: std::sync::OnceLock<Instant>,
    connected: tokio::sync::Barrier,
    go: tokio::sync::Barrier,
}

impl Limits {
    /// `waiters`: the tasks that wait for the start (the connections, and an open loop's
    /// dispatcher).
    fn new(waiters: usize, run_for: Duration, max_requests: i64) -> Self {
        Self {
            run_for,
            budget: AtomicI64::new(max_requests),
            start: std::sync::OnceLock::new(),
            connected: tokio::sync::Barrier::new(waiters + 1),
            go: tokio::sync::Barrier::new(waiters + 1),
        }
    }

    /// A waiter is ready; answers the deadline once the run starts.
    async fn ready(&self) -> Instant {
        self.connected.wait().await;
        self.go.wait().await;
        *self.start.get().expect("set before the go") + self.run_for
    }

    /// Waits for every connection, starts the clock: the start.
    async fn start(&self) -> Instant {
        self.connected.wait().await;
        let now = Instant::now();
        self.start.set(now).expect("one start per run");
        self.go.wait().await;
        now
    }

    fn take(&self, deadline: Instant) -> bool {
        Instant::now() < deadline && self.budget.fetch_sub(1, Ordering::Relaxed) > 0
    }
}

// ---------------------------------------------------------------------------------------
// Workloads.

/// Everything a run's connections share.
struct Plan {
    doctor_ids: Vec<i64>,
    /// The doctor ids as request text.
    doctors: Vec<String>,
    /// Slot starts in epoch seconds, and as request text.
    slot_at: Vec<i64>,
    slots: Vec<String>,
    /// The horizon's days (UTC), `YYYY-MM-DD`, for availability reads.
    dates: Vec<String>,
    patients: Vec<Patient>,
}

/// What the requests of the `uniform`-style workloads are.
#[derive(Debug, Clone, Copy)]
struct Mix {
    /// Requests in ten (at random) that read one random day of a random doctor's
    /// availability instead of booking.
    reads_in_10: u32,
    /// Each booking is `FAMILY_ITEMS` random distinct pairs in one multi-patient booking.
    family: bool,
    /// Reads ask for one of the horizon's first this many days.
    read_days: usize,
}

impl Mix {
    fn of(workload: Workload, read_days: usize) -> Self {
        Self {
            read_days,
            reads_in_10: if workload == Workload::ReadHeavy {
                9
            } else {
                0
            },
            family: workload == Workload::Family,
        }
    }
}

/// Draws one request of `mix` and sends it as patient `c` (the connection's own), the
/// `n`th of the connection; records the answer with its latency counted from `since`.
#[allow(clippy::too_many_arguments)]
async fn send_one(
    conn: &mut Conn,
    plan: &Plan,
    rng: &mut SmallRng,
    mix: Mix,
    c: usize,
    n: u64,
    since: Instant,
    tally: &mut Tally,
) {
    let doctor = rng.random_range(0..plan.doctors.len());
    let slot = rng.random_range(0..plan.slots.len());
    if mix.family {
        let mut items = [(doctor, slot); FAMILY_ITEMS];
        for i in 1..FAMILY_ITEMS {
            items[i] = loop {
                let pair = (
                    rng.random_range(0..plan.doctors.len()),
                    rng.random_range(0..plan.slots.len()),
                );
                if !items[..i].contains(&pair) {
                    break pair;
                }
            };
        }
        let outcome = conn.book_family(plan, c, &items, n).await;
        tally.record(outcome, since.elapsed(), &items, c);
        return;
    }
    let read = mix.reads_in_10 > 0 && rng.random_range(0..10) < mix.reads_in_10;
    let outcome = if read {
        let day = rng.random_range(0..mix.read_days);
        conn.read(plan, c, doctor, day, n).await
    } else {
        conn.book(plan, c, doctor, slot, n).await
    };
    tally.record(outcome, since.elapsed(), &[(doctor, slot)], c);
}

/// Closed loop: `connections` tasks on `spawner`, each sending requests of `mix` as its own
/// patient, the next when the answer comes, until the limits say stop.
async fn uniform(
    spawner: &Handle,
    dialer: &Dialer,
    plan: Arc<Plan>,
    connections: usize,
    limits: Arc<Limits>,
    mix: Mix,
) -> (Vec<Tally>, Duration) {
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let plan = Arc::clone(&plan);
            let limits = Arc::clone(&limits);
            let mut conn = dialer.conn(c);
            spawner.spawn(async move {
                let mut rng = SmallRng::seed_from_u64(c as u64);
                let mut tally = Tally::default();
                tally.warm_up(&mut conn).await;
                let deadline = limits.ready().await;
                let mut sent = 0u64;
                while limits.take(deadline) {
                    let since = Instant::now();
                    send_one(&mut conn, &plan, &mut rng, mix, c, sent, since, &mut tally).await;
                    sent += 1;
                }
                tally
            })
        })
        .collect();
    let started = limits.start().await;
    let mut tallies = Vec::with_capacity(connections);
    for t in tasks {
        tallies.push(t.await.expect("client task panicked"));
    }
    (tallies, started.elapsed())
}

/// A request sent this long after its due time counts as late.
const LATE_AFTER: Duration = Duration::from_millis(1);

/// Open loop at `rate` requests/s (see the module docs): a dispatcher queues request i at
/// its due time t0 + i / rate; `connections` tasks take them in order, each as its own
/// patient. Answers the tallies, the elapsed time and the requests dropped because the
/// queue (one per connection) was full when they were due.
async fn open_loop(
    spawner: &Handle,
    dialer: &Dialer,
    plan: Arc<Plan>,
    connections: usize,
    limits: Arc<Limits>,
    mix: Mix,
    rate: f64,
) -> (Vec<Tally>, Duration, u64) {
    let (queue, due) = tokio::sync::mpsc::channel::<Instant>(connections);
    let due = Arc::new(tokio::sync::Mutex::new(due));
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let plan = Arc::clone(&plan);
            let limits = Arc::clone(&limits);
            let due = Arc::clone(&due);
            let mut conn = dialer.conn(c);
            spawner.spawn(async move {
                let mut rng = SmallRng::seed_from_u64(c as u64);
                let mut tally = Tally::default();
                tally.warm_up(&mut conn).await;
                limits.ready().await;
                let mut sent = 0u64;
                loop {
                    let next = due.lock().await.recv().await;
                    let Some(at) = next else { break };
                    if at.elapsed() > LATE_AFTER {
                        tally.late += 1;
                    }
                    send_one(&mut conn, &plan, &mut rng, mix, c, sent, at, &mut tally).await;
                    sent += 1;
                }
                tally
            })
        })
        .collect();
    let dispatcher = {
        let limits = Arc::clone(&limits);
        spawner.spawn(async move {
            let deadline = limits.ready().await;
            let started = deadline - limits.run_for;
            let mut dropped = 0u64;
            for i in 0u64.. {
                let at = started + Duration::from_secs_f64(i as f64 / rate);
                if at >= deadline || limits.budget.fetch_sub(1, Ordering::Relaxed) <= 0 {
                    break;
                }
                if at > Instant::now() {
                    tokio::time::sleep_until(at.into()).await;
                }
                if queue.try_send(at).is_err() {
                    dropped += 1;
                }
            }
            dropped
        })
    };
    let started = limits.start().await;
    let dropped = dispatcher.await.expect("dispatcher panicked");
    let mut tallies = Vec::with_capacity(connections);
    for t in tasks {
        tallies.push(t.await.expect("client task panicked"));
    }
    (tallies, started.elapsed(), dropped)
}

/// The hot-doctor race, in rounds (see the module docs). Answers the tallies, the elapsed
/// time, the rounds run and the acknowledgements per slot index (all rounds).
async fn hot(
    spawner: &Handle,
    dialer: &Dialer,
    plan: Arc<Plan>,
    connections: usize,
    limits: Arc<Limits>,
) -> (Vec<Tally>, Duration, usize, Vec<u32>) {
    let max_rounds = plan.slots.len() / HOT_SLOTS;
    // Attempt n of a round: patient n % 200 at position n / 200 of its own order.
    let orders: Arc<Vec<Vec<Vec<u8>>>> = Arc::new(
        (0..max_rounds)
            .map(|r| {
                (0..HOT_PATIENTS)
                    .map(|p| {
                        let mut order: Vec<u8> = (0..HOT_SLOTS as u8).collect();
                        order.shuffle(&mut SmallRng::seed_from_u64((r * 1_000 + p) as u64));
                        order
                    })
                    .collect()
            })
            .collect(),
    );
    let gate = Arc::new(tokio::sync::Barrier::new(connections));
    let go = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicI64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let plan = Arc::clone(&plan);
            let limits = Arc::clone(&limits);
            let orders = Arc::clone(&orders);
            let gate = Arc::clone(&gate);
            let go = Arc::clone(&go);
            let rounds = Arc::clone(&rounds);
            let mut conn = dialer.conn(c);
            spawner.spawn(async move {
                let mut tally = Tally::default();
                let mut sent = 0u64;
                tally.warm_up(&mut conn).await;
                let deadline = limits.ready().await;
                for round in 0..max_rounds {
                    // Everyone arrives; the leader decides whether the round runs.
                    if gate.wait().await.is_leader() {
                        let more =
                            Instant::now() < deadline && limits.budget.load(Ordering::Relaxed) > 0;
                        go.store(more, Ordering::Relaxed);
                        if more {
                            rounds.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    gate.wait().await;
                    if !go.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut n = c;
                    while n < HOT_PATIENTS * HOT_SLOTS {
                        let (p, k) = (n % HOT_PATIENTS, n / HOT_PATIENTS);
                        let index = round * HOT_SLOTS + orders[round][p][k] as usize;
                        limits.budget.fetch_sub(1, Ordering::Relaxed);
                        let t = Instant::now();
                        let outcome = conn.book(&plan, p, 0, index, sent).await;
                        sent += 1;
                        tally.record(outcome, t.elapsed(), &[(0, index)], p);
                        n += connections;
                    }
                }
                tally
            })
        })
        .collect();
    let started = limits.start().await;
    let mut tallies = Vec::with_capacity(connections);
    let mut acks = vec![0u32; plan.slots.len()];
    for t in tasks {
        let tally = t.await.expect("client task panicked");
        for &(_, slot, _) in &tally.booked {
            acks[slot as usize] += 1;
        }
        tallies.push(tally);
    }
    let elapsed = started.elapsed();
    let rounds = rounds.load(Ordering::Relaxed) as usize;
    acks.truncate(rounds * HOT_SLOTS);
    (tallies, elapsed, rounds, acks)
}

// ---------------------------------------------------------------------------------------
// Where the CPU went (Linux /proc; zeros elsewhere).

/// Clock ticks (USER_HZ, 100 on Linux) spent so far.
#[derive(Debug, Default, Clone, Copy)]
struct CpuSample {
    /// Threads of this process named `loadgen` (the generator's runtime).
    loadgen: u64,
    /// Every other thread of this process: the application (server runtime, SQLite workers).
    app: u64,
    /// Processes named `postgres` (all of the server's backends, not only ours).
    postgres: u64,
    /// The whole machine: busy (softirq included), softirq, idle.
    busy: u64,
    softirq: u64,
    idle: u64,
}

impl CpuSample {
    fn now() -> Self {
        let mut s = Self::default();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                if let Some((name, ticks)) = stat_ticks(&stat) {
                    if name.starts_with("loadgen") {
                        s.loadgen += ticks;
                    } else {
                        s.app += ticks;
                    }
                }
            }
        }
        s.postgres = postgres_ticks();
        let machine = machine_ticks();
        s.busy = machine.busy;
        s.softirq = machine.softirq;
        s.idle = machine.idle;
        s
    }

    /// Cores used per category between `self` and `later`, over `over`.
    fn cores(self, later: Self, over: Duration) -> CpuCores {
        let c = |a: u64, b: u64| b.saturating_sub(a) as f64 / TICKS_PER_S / over.as_secs_f64();
        let loadgen = c(self.loadgen, later.loadgen);
        let app = c(self.app, later.app);
        let postgres = c(self.postgres, later.postgres);
        let busy = c(self.busy, later.busy);
        let softirq = c(self.softirq, later.softirq);
        CpuCores {
            loadgen,
            app,
            postgres,
            softirq,
            rest: (busy - loadgen - app - postgres - softirq).max(0.0),
            idle: c(self.idle, later.idle),
        }
    }
}

/// Average cores busy over a run, by category.
#[derive(Debug, Default, Clone, Copy)]
struct CpuCores {
    loadgen: f64,
    app: f64,
    postgres: f64,
    /// Kernel softirq time (loopback TCP delivery is mostly here, not in any task's time).
    softirq: f64,
    /// Everything else on the machine (other users' work).
    rest: f64,
    idle: f64,
}

// ---------------------------------------------------------------------------------------
// Runs and reports.

struct Row {
    system: System,
    workload: Workload,
    connections: usize,
    summary: Summary,
    elapsed: Duration,
    setup: Duration,
    shutdown: Duration,
    verdict: Verdict,
    /// Hot: rounds run, and rounds with exactly one acknowledgement per slot.
    rounds: Option<(usize, usize)>,
    cpu: CpuCores,
    journal: JournalDelta,
    /// An open-loop run's offered rate and dropped requests; `None`: closed loop.
    open: Option<OpenLoop>,
}

/// What an open-loop run offered and could not send.
#[derive(Debug, Clone, Copy)]
struct OpenLoop {
    /// Requests/s offered.
    rate: f64,
    /// Requests due while the queue was full (never sent).
    dropped: u64,
}

/// The engine's journal counters over one run.
#[derive(Debug, Default, Clone, Copy)]
struct JournalDelta {
    batches: u64,
    records: u64,
    failed_batches: u64,
    flush_us: u64,
    overloaded: u64,
}

impl JournalDelta {
    fn between(a: &StatsSnapshot, b: &StatsSnapshot) -> Self {
        Self {
            batches: b.journal_batches - a.journal_batches,
            records: b.journal_records - a.journal_records,
            failed_batches: b.journal_failed_batches - a.journal_failed_batches,
            flush_us: b.journal_flush_micros - a.journal_flush_micros,
            overloaded: b.overloaded - a.overloaded,
        }
    }
}

impl Row {
    /// The system, and the offered rate of an open-loop run.
    fn label(&self) -> String {
        match self.open {
            Some(open) => format!("{} (open loop {:.0}/s)", self.system.name(), open.rate),
            None => self.system.name(),
        }
    }

    /// The run's checks passed. Double bookings (and so hot rounds with more than one
    /// acknowledgement for a slot) fail every system but the seed's literal design, whose
    /// double bookings are what the benchmark reports about it.
    fn ok(&self) -> bool {
        let v = &self.verdict;
        let doubles_allowed = self.system.may_double_book();
        v.error.is_none()
            && v.lost == 0
            && v.unacknowledged == 0
            && v.active_rows == v.acknowledged
            && (v.double_bookings == 0 || doubles_allowed)
            && self.summary.wrong_bodies == 0
            && v.bookings.is_none_or(|b| {
                b.partial == 0 && b.outside == 0 && b.stored == self.summary.created
            })
            && self
                .rounds
                .is_none_or(|(run, good)| run == good || doubles_allowed)
    }
}

/// What serves one run: the application, or a peer.
enum Target {
    App(Server),
    Peer(PeerServer),
}

impl Target {
    async fn start(system: System, db: &Database, args: &Args) -> Result<Self, String> {
        match system {
            System::Engine(_) => {
                Server::start(db.url(), &args.extra_settings, args.keep_rate_limit)
                    .await
                    .map(Self::App)
            }
            System::Peer(kind) => PeerServer::start(
                kind,
                db.url(),
                PEER_POOL,
                consult_scheduler::settings::DEV_JWT_SECRET.as_bytes(),
            )
            .await
            .map(Self::Peer),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Self::App(s) => s.addr,
            Self::Peer(p) => p.addr,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        match self {
            Self::App(s) => s.engine.now(),
            Self::Peer(_) => Utc::now(),
        }
    }

    async fn create_doctors(&self, n: usize) -> Result<Vec<i64>, String> {
        match self {
            Self::App(s) => create_doctors(&s.engine, n).await,
            Self::Peer(p) => p.create_doctors(n).await,
        }
    }

    fn stats(&self) -> Option<StatsSnapshot> {
        match self {
            Self::App(s) => Some(s.engine.stats()),
            Self::Peer(_) => None,
        }
    }

    async fn stop(self) -> Duration {
        match self {
            Self::App(s) => s.stop().await,
            Self::Peer(p) => {
                let started = Instant::now();
                p.stop().await;
                started.elapsed()
            }
        }
    }
}

/// One run on a fresh database: closed loop, or open loop at `rate` requests/s.
async fn run(
    system: System,
    workload: Workload,
    connections: usize,
    args: &Args,
    spawner: &Handle,
    rate: Option<f64>,
) -> Result<Option<Row>, String> {
    let label = match rate {
        Some(r) => format!(
            "[{} {} {connections} open loop {r:.0}/s]",
            system.name(),
            workload.name()
        ),
        None => format!("[{} {} {connections}]", system.name(), workload.name()),
    };
    let db = match system {
        System::Engine(backend) => Database::fresh(backend).await,
        System::Peer(_) => Database::empty_postgres().await,
    };
    let Some(db) = db else {
        return Ok(None);
    };
    let setup_started = Instant::now();
    let target = match Target::start(system, &db, args).await {
        Ok(t) => t,
        Err(e) => {
            db.remove().await;
            return Err(format!("{label} did not start: {e}"));
        }
    };
    let doctors = match workload {
        Workload::Uniform | Workload::ReadHeavy | Workload::Family => DOCTORS,
        Workload::Hot => 1,
    };
    let ids = match target.create_doctors(doctors).await {
        Ok(ids) => ids,
        Err(e) => {
            target.stop().await;
            db.remove().await;
            return Err(format!("{label} {e}"));
        }
    };
    let addr = target.addr();
    let keys = JwtKeys::new(consult_scheduler::settings::DEV_JWT_SECRET.as_bytes(), 30);
    let patients = match workload {
        Workload::Uniform | Workload::ReadHeavy | Workload::Family => (0..connections)
            .map(|c| Patient::new(addr, &keys, 100_000 + c as i64))
            .collect(),
        Workload::Hot => (0..HOT_PATIENTS)
            .map(|p| Patient::new(addr, &keys, 200_000 + p as i64))
            .collect(),
    };
    let days = match workload {
        Workload::Uniform | Workload::ReadHeavy | Workload::Family => HORIZON_DAYS,
        Workload::Hot => HOT_HORIZON_DAYS,
    };
    let (slot_at, slots) = slot_grid(target.now(), days * SLOTS_PER_DAY);
    let dates = slots
        .iter()
        .step_by(SLOTS_PER_DAY)
        .map(|s| s[..10].to_owned())
        .collect();
    let plan = Arc::new(Plan {
        doctors: ids.iter().map(|id| id.to_string()).collect(),
        doctor_ids: ids,
        slot_at,
        slots,
        dates,
        patients,
    });
    let setup = setup_started.elapsed();
    eprintln!(
        "{label} {doctors} doctors ready in {setup:.2?} at http://{addr}; running for {:?}",
        args.run_for
    );
    // Idempotency keys go to the engine only (the peers have none).
    let idempotency = args.idempotency && matches!(system, System::Engine(_));
    let dialer = Dialer::new(args.client, addr, connections, idempotency);
    // Open loop: the dispatcher waits for the start beside the connections.
    let waiting = connections + usize::from(rate.is_some());
    let limits = Arc::new(Limits::new(waiting, args.run_for, args.max_requests));
    let cpu_before = CpuSample::now();
    let stats_before = target.stats();
    let mut open = None;
    let (tallies, elapsed, rounds) = match workload {
        Workload::Uniform | Workload::ReadHeavy | Workload::Family => {
            let mix = Mix::of(workload, args.read_days);
            let plan = Arc::clone(&plan);
            let (t, e) = match rate {
                Some(rate) => {
                    let (t, e, dropped) =
                        open_loop(spawner, &dialer, plan, connections, limits, mix, rate).await;
                    open = Some(OpenLoop { rate, dropped });
                    (t, e)
                }
                None => uniform(spawner, &dialer, plan, connections, limits, mix).await,
            };
            (t, e, None)
        }
        Workload::Hot => {
            let (t, e, rounds, acks) =
                hot(spawner, &dialer, Arc::clone(&plan), connections, limits).await;
            let good = acks
                .chunks(HOT_SLOTS)
                .filter(|round| round.iter().all(|&n| n == 1))
                .count();
            (t, e, Some((rounds, good)))
        }
    };
    let cpu = cpu_before.cores(CpuSample::now(), elapsed);
    let journal = match (&stats_before, target.stats()) {
        (Some(before), Some(after)) => JournalDelta::between(before, &after),
        _ => JournalDelta::default(),
    };
    drop(dialer);
    let summary = Summary::of(tallies, &plan);
    let shutdown = target.stop().await;
    let mut verdict = verify(&db, &summary.booked).await;
    if workload == Workload::Family && verdict.error.is_none() {
        match db.bookings().await {
            Ok(b) => verdict.bookings = Some(b),
            Err(e) => verdict.error = Some(format!("booking check: {e}")),
        }
    }
    db.remove().await;
    eprintln!(
        "{label} slowest connect {:.1} ms; {} requests in {elapsed:.2?}: {} x 201, {} x 409, {} x 200, {} x 503, {} errors; store: {} active rows, {} double bookings, {} acknowledged but missing, {} not acknowledged{}{}",
        summary.connect_max_us as f64 / 1e3,
        summary.requests,
        summary.created,
        summary.conflicts,
        summary.reads,
        summary.overloaded,
        summary.errors,
        verdict.active_rows,
        verdict.double_bookings,
        verdict.lost,
        verdict.unacknowledged,
        verdict.bookings.map_or(String::new(), |b| format!(
            "; {} bookings stored, {} stored in part, {} active rows outside a booking",
            b.stored, b.partial, b.outside
        )),
        open.map_or(String::new(), |o| format!(
            "; open loop: {} sent late, {} dropped",
            summary.late, o.dropped
        )),
    );
    Ok(Some(Row {
        system,
        workload,
        connections,
        summary,
        elapsed,
        setup,
        shutdown,
        verdict,
        rounds,
        cpu,
        journal,
        open,
    }))
}

/// A latency quantile in milliseconds, or "-" for an empty histogram.
fn q_ms(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "-".into()
    } else {
        format!("{:.2}", h.value_at_quantile(q) as f64 / 1e3)
    }
}

/// The engine beside each peer at the same connection count: durable bookings/s and
/// requests/s as engine / peer, p99 as peer / engine (above 1: the engine answers faster).
fn print_ratios(rows: &[&Row]) {
    let engines: Vec<&&Row> = rows
        .iter()
        .filter(|r| matches!(r.system, System::Engine(_)))
        .collect();
    let peers: Vec<&&Row> = rows
        .iter()
        .filter(|r| matches!(r.system, System::Peer(_)))
        .collect();
    if engines.is_empty() || peers.is_empty() {
        return;
    }
    println!("\nEngine beside each peer: throughput as engine / peer, p99 latency as peer / engine (above 1: the engine is faster).\n");
    println!("| engine | peer | connections | durable bookings/s | requests/s | p99 |");
    println!("|---|---|---:|---:|---:|---:|");
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.1}x", a / b)
        } else {
            "-".to_owned()
        }
    };
    for e in &engines {
        for p in peers.iter().filter(|p| p.connections == e.connections) {
            let p99 = |r: &Row| {
                if r.summary.all_us.is_empty() {
                    0.0
                } else {
                    r.summary.all_us.value_at_quantile(0.99) as f64
                }
            };
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                e.system.name(),
                p.system.name(),
                e.connections,
                ratio(
                    per_s(e.summary.created, e.elapsed),
                    per_s(p.summary.created, p.elapsed)
                ),
                ratio(
                    per_s(e.summary.requests, e.elapsed),
                    per_s(p.summary.requests, p.elapsed)
                ),
                ratio(p99(p), p99(e)),
            );
        }
    }
}

fn print_tables(all_rows: &[Row], args: &Args) {
    for &workload in &args.workloads {
        let rows: Vec<&Row> = all_rows.iter().filter(|r| r.workload == workload).collect();
        let skipped: Vec<String> = args
            .systems
            .iter()
            .filter(|s| workload == Workload::Family && matches!(s, System::Peer(_)))
            .map(|s| s.name())
            .collect();
        if rows.is_empty() {
            if !skipped.is_empty() {
                println!(
                    "\n## family: skipped for {} (no multi-patient endpoint; engine only)",
                    skipped.join(", ")
                );
            }
            continue;
        }
        match workload {
            Workload::Uniform => println!(
                "\n## uniform: random (doctor, slot) over {DOCTORS} doctors x {HORIZON_DAYS} days of {SLOT_MINUTES}-minute slots\n"
            ),
            Workload::Hot => println!(
                "\n## hot: rounds of {HOT_PATIENTS} patients racing for one doctor's next {HOT_SLOTS} slots\n"
            ),
            Workload::ReadHeavy => println!(
                "\n## read-heavy: 90% availability reads (one day of a random doctor), 10% random bookings, {DOCTORS} doctors x {HORIZON_DAYS} days\n"
            ),
            Workload::Family => println!(
                "\n## family: {FAMILY_ITEMS}-item multi-patient bookings (`POST {FAMILY_PATH}`) of random distinct (doctor, slot) pairs over {DOCTORS} doctors x {HORIZON_DAYS} days of {SLOT_MINUTES}-minute slots\n"
            ),
        }
        if !skipped.is_empty() {
            println!(
                "> Skipped for {}: the peers have no multi-patient endpoint (engine only).\n",
                skipped.join(", ")
            );
        }
        let (open, closed): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| r.open.is_some());
        match (workload, closed.is_empty()) {
            (_, true) => {}
            (Workload::Family, false) => print_family(&closed, all_rows),
            _ => print_summary(&closed),
        }
        print_open(workload, &open);
        print_details(workload, &rows);
    }
}

/// The open-loop table of one workload (nothing without `--rate`).
fn print_open(workload: Workload, rows: &[&Row]) {
    if rows.is_empty() {
        return;
    }
    println!("\n### {} in open loop\n", workload.name());
    println!("Each system offered each rate whatever its answers (wrk2's way). Latency in ms from each request's due time to its answer, over all answered requests (errors are not timed); late: sent more than 1 ms after its due time, for want of a free connection; dropped: due while as many requests as connections were already waiting, never sent; errors include 503s.\n");
    println!("| system | offered/s | connections | answered/s | p50 | p99 | p99.9 | max | late | dropped | errors | check |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let (s, open) = (&r.summary, r.open.expect("an open-loop row"));
        let max = if s.all_us.is_empty() {
            "-".into()
        } else {
            format!("{:.2}", s.all_us.max() as f64 / 1e3)
        };
        println!(
            "| {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.system.name(),
            open.rate,
            r.connections,
            per_s(s.requests - s.overloaded - s.errors, r.elapsed),
            q_ms(&s.all_us, 0.5),
            q_ms(&s.all_us, 0.99),
            q_ms(&s.all_us, 0.999),
            max,
            s.late,
            open.dropped,
            s.overloaded + s.errors,
            if r.ok() { "ok" } else { "FAILED" },
        );
    }
}

/// The `family` summary: durable bookings/s in bookings (201s) and in consultations, and
/// the "family vs single" table against `uniform` rows of the same run.
fn print_family(rows: &[&Row], all_rows: &[Row]) {
    println!("Latency in ms over all answered requests (201, 409; errors are not timed); errors include 503s; one booking = {FAMILY_ITEMS} consultations, all or none; double bookings and bookings stored in part are counted in the store afterwards.\n");
    println!("| system | connections | requests/s | durable bookings/s | durable consultations/s | p50 | p99 | p99.9 | 409s | errors | double bookings | bookings stored in part |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let s = &r.summary;
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            r.system.name(),
            r.connections,
            per_s(s.requests, r.elapsed),
            per_s(s.created, r.elapsed),
            per_s(s.booked.len() as u64, r.elapsed),
            q_ms(&s.all_us, 0.5),
            q_ms(&s.all_us, 0.99),
            q_ms(&s.all_us, 0.999),
            s.conflicts,
            s.overloaded + s.errors,
            r.verdict.double_bookings,
            r.verdict
                .bookings
                .map_or("-".to_owned(), |b| b.partial.to_string()),
        );
    }
    let p99 = |r: &Row| {
        if r.summary.all_us.is_empty() {
            0.0
        } else {
            r.summary.all_us.value_at_quantile(0.99) as f64
        }
    };
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "-".to_owned()
        }
    };
    let pairs: Vec<(&Row, &Row)> = rows
        .iter()
        .filter_map(|f| {
            all_rows
                .iter()
                .find(|u| {
                    u.workload == Workload::Uniform
                        && u.open.is_none()
                        && u.system == f.system
                        && u.connections == f.connections
                })
                .map(|u| (*f, u))
        })
        .collect();
    if pairs.is_empty() {
        println!("\n(family vs single: run `uniform` in the same invocation for the comparison.)");
        return;
    }
    println!("\n### family vs single\n");
    println!("Against `uniform` (single bookings) of this run, same system and connections: family / single. Bookings/s counts requests answered 201 (a family booking is {FAMILY_ITEMS} consultations); consultations/s counts consultations made durable; p99 over all answered requests (above 1: family is slower).\n");
    println!("| system | connections | single bookings/s | family bookings/s | family consultations/s | bookings/s ratio | consultations/s ratio | single p99 (ms) | family p99 (ms) | p99 ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (f, u) in pairs {
        let single = per_s(u.summary.created, u.elapsed);
        let bookings = per_s(f.summary.created, f.elapsed);
        let consultations = per_s(f.summary.booked.len() as u64, f.elapsed);
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            f.system.name(),
            f.connections,
            single,
            bookings,
            consultations,
            ratio(bookings, single),
            ratio(
                consultations,
                per_s(u.summary.booked.len() as u64, u.elapsed)
            ),
            q_ms(&u.summary.all_us, 0.99),
            q_ms(&f.summary.all_us, 0.99),
            ratio(p99(f), p99(u)),
        );
    }
}

/// The summary table of a single-booking workload, and the engine beside each peer.
fn print_summary(rows: &[&Row]) {
    println!("Latency in ms over all answered requests (201, 409, 200; errors are not timed); errors include 503s; double bookings are counted in the store afterwards.\n");
    println!("| system | connections | requests/s | durable bookings/s | p50 | p99 | p99.9 | 409s | errors | double bookings |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let s = &r.summary;
        println!(
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |",
            r.system.name(),
            r.connections,
            per_s(s.requests, r.elapsed),
            per_s(s.created, r.elapsed),
            q_ms(&s.all_us, 0.5),
            q_ms(&s.all_us, 0.99),
            q_ms(&s.all_us, 0.999),
            s.conflicts,
            s.overloaded + s.errors,
            r.verdict.double_bookings,
        );
    }
    print_ratios(rows);
}

/// The details, CPU and journal tables of one workload, and the error samples.
fn print_details(workload: Workload, rows: &[&Row]) {
    println!("\n### {} details\n", workload.name());
    println!("| system | connections | secs | requests | 201s | 201 p50 | 201 p99 | 201 p99.9 | 201 max | 409 p50 | 409 p99 | 503s | other errors | bodies wrong | active rows | rows (any status) | 201s not in store | rows not acked | rounds ok | setup (s) | shutdown (ms) | check |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let s = &r.summary;
        let max = if s.created_us.is_empty() {
            "-".into()
        } else {
            format!("{:.2}", s.created_us.max() as f64 / 1e3)
        };
        println!(
            "| {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.0} | {} |",
            r.label(),
            r.connections,
            r.elapsed.as_secs_f64(),
            s.requests,
            s.created,
            q_ms(&s.created_us, 0.5),
            q_ms(&s.created_us, 0.99),
            q_ms(&s.created_us, 0.999),
            max,
            q_ms(&s.conflict_us, 0.5),
            q_ms(&s.conflict_us, 0.99),
            s.overloaded,
            s.errors,
            s.wrong_bodies,
            r.verdict.active_rows,
            r.verdict.all_rows,
            r.verdict.lost,
            r.verdict.unacknowledged,
            r.rounds
                .map_or("-".into(), |(run, good)| format!("{good}/{run}")),
            r.setup.as_secs_f64(),
            r.shutdown.as_secs_f64() * 1e3,
            if r.ok() { "ok" } else { "FAILED" },
        );
    }
    println!("\nCPU during the run, in cores (of {}): the generator's threads, the rest of this process (the application), all `postgres` processes, kernel softirq (loopback TCP), everything else on the machine (other users), idle.\n", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("| system | connections | loadgen | app | postgres | softirq | rest | idle | loadgen us/request | app us/request | postgres us/request |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let c = &r.cpu;
        let per_request = |cores: f64| {
            let n = r.summary.requests.max(1) as f64;
            cores * r.elapsed.as_secs_f64() * 1e6 / n
        };
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
            r.label(),
            r.connections,
            c.loadgen,
            c.app,
            c.postgres,
            c.softirq,
            c.rest,
            c.idle,
            per_request(c.loadgen),
            per_request(c.app),
            per_request(c.postgres),
        );
    }
    println!("\nJournal (the engine's counters over the run): transactions, records per transaction, mean transaction time, journal writers busy (summed transaction time / run time, in writers; one writer unless `engine.journal_writers` says more), failed transactions, engine admission refusals.\n");
    if workload == Workload::Family {
        println!("A multi-patient booking commits in its own store transaction beside the journal writers (docs/DESIGN.md, \"Multi-patient bookings\"), which these counters do not count.\n");
    }
    println!("| system | connections | transactions | records/transaction | mean transaction (ms) | writers busy | failed | engine overloaded |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows
        .iter()
        .filter(|r| matches!(r.system, System::Engine(_)))
    {
        let j = &r.journal;
        let per_batch = |x: f64| {
            if j.batches == 0 {
                0.0
            } else {
                x / j.batches as f64
            }
        };
        println!(
            "| {} | {} | {} | {:.1} | {:.2} | {:.2} | {} | {} |",
            r.label(),
            r.connections,
            j.batches,
            per_batch(j.records as f64),
            per_batch(j.flush_us as f64 / 1e3),
            j.flush_us as f64 / 1e6 / r.elapsed.as_secs_f64(),
            j.failed_batches,
            j.overloaded,
        );
    }
    for r in rows {
        if let Some(e) = &r.verdict.error {
            println!(
                "- {} / {} connections: store check failed: {e}",
                r.label(),
                r.connections
            );
        }
        for (e, n) in &r.summary.error_samples {
            println!(
                "- {} / {} connections: {n} x `{e}`",
                r.label(),
                r.connections
            );
        }
    }
}

/// The open-loop runs of `--rate`: every system, every workload but `hot` (its rounds are
/// a closed loop by design), each rate, at the largest `--clients` count.
async fn open_loop_runs(
    args: &Args,
    spawner: &Handle,
    rows: &mut Vec<Row>,
    failures: &mut Vec<String>,
) {
    let Some(&connections) = args.clients.iter().max() else {
        return;
    };
    for &workload in &args.workloads {
        if workload == Workload::Hot {
            if !args.rates.is_empty() {
                eprintln!("[hot] no open loop: its rounds wait for each other by design");
            }
            continue;
        }
        let best_peer = rows
            .iter()
            .filter(|r| r.open.is_none() && r.workload == workload)
            .filter(|r| matches!(r.system, System::Peer(_)))
            .map(|r| per_s(r.summary.requests, r.elapsed))
            .fold(None, |best: Option<f64>, x| {
                Some(best.map_or(x, |b| b.max(x)))
            });
        for &rate in &args.rates {
            let per_s = match (rate, best_peer) {
                (Rate::PerS(r), _) => r,
                (Rate::PeerMultiple(m), Some(best)) => m * best,
                (Rate::PeerMultiple(m), None) => {
                    let e = format!(
                        "[{}] open loop at {m}x skipped: no peer ran it in closed loop",
                        workload.name()
                    );
                    eprintln!("{e}");
                    failures.push(e);
                    continue;
                }
            };
            for &system in &args.systems {
                if workload == Workload::Family && matches!(system, System::Peer(_)) {
                    continue;
                }
                match run(system, workload, connections, args, spawner, Some(per_s)).await {
                    Ok(Some(row)) => rows.push(row),
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("{e}");
                        failures.push(e);
                    }
                }
            }
        }
    }
}

fn main() {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("http_load bench: {e}");
            std::process::exit(2);
        }
    };
    if let Some(level) = &args.log {
        consult_scheduler::telemetry::init(&consult_scheduler::settings::LogSettings {
            format: consult_scheduler::settings::LogFormat::Json,
            level: level.clone(),
        });
    }
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .thread_name("server")
        .enable_all()
        .build()
        .expect("server runtime");
    let gen_rt = (args.gen_threads > 0).then(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.gen_threads)
            .thread_name("loadgen")
            .enable_all()
            .build()
            .expect("generator runtime")
    });
    let spawner = gen_rt
        .as_ref()
        .map_or_else(|| server_rt.handle().clone(), |rt| rt.handle().clone());

    println!("# HTTP load benchmark: the engine beside the Postgres designs\n");
    println!(
        "Systems: {}. Each run: a fresh database on the same Postgres, the system's HTTP server on loopback, the generator in this process.\n",
        args.systems
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
"{} s per run (cap {} requests), {}, {} CPUs; client {}, generator threads {}, server threads {}; per-user rate limit {}; Idempotency-Key: {}; extra settings: {:?}",
        args.run_for.as_secs(),
        args.max_requests,
        if args.rates.is_empty() {
            "closed loop".to_owned()
        } else {
            let rates: Vec<String> = args.rates.iter().map(Rate::to_string).collect();
            format!("closed loop, then open loop at {}", rates.join(", "))
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.client.name(),
        if args.gen_threads == 0 {
            "shared with the server".to_owned()
        } else {
            args.gen_threads.to_string()
        },
        args.server_threads,
        if args.keep_rate_limit {
            "as configured"
        } else {
            "raised to 1000000/s"
        },
        if args.idempotency {
            "a fresh key with every booking (engine runs)"
        } else {
            "none"
        },
        args.extra_settings,
    );
    let (rows, failures) = server_rt.block_on(async {
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        // Each peer answers like the app (bodies, statuses, 409 on a taken slot) before
        // it is measured.
        for &system in &args.systems {
            let System::Peer(kind) = system else { continue };
            let Some(db) = Database::empty_postgres().await else {
                continue;
            };
            match peers::smoke(kind, db.url()).await {
                Ok(summary) => eprintln!("[{}] smoke check: {summary}", kind.name()),
                Err(e) => {
                    eprintln!("[{}] smoke check failed: {e}", kind.name());
                    failures.push(e);
                }
            }
            db.remove().await;
        }
        'systems: for &system in &args.systems {
            for &workload in &args.workloads {
                if workload == Workload::Family && matches!(system, System::Peer(_)) {
                    eprintln!(
                        "[{} family] skipped: the peer has no multi-patient endpoint",
                        system.name()
                    );
                    continue;
                }
                for &connections in &args.clients {
                    match run(system, workload, connections, &args, &spawner, None).await {
                        Ok(Some(row)) => rows.push(row),
                        Ok(None) => {
                            println!("\n> {} skipped: database unreachable", system.name());
                            continue 'systems;
                        }
                        Err(e) => {
                            eprintln!("{e}");
                            failures.push(e);
                        }
                    }
                }
            }
        }
        open_loop_runs(&args, &spawner, &mut rows, &mut failures).await;
        (rows, failures)
    });
    print_tables(&rows, &args);
    let bad: Vec<&Row> = rows.iter().filter(|r| !r.ok()).collect();
    println!(
        "\ndouble bookings: {} in engine runs, {} in peer runs; failed checks: {}; failed runs: {}",
        rows.iter()
            .filter(|r| matches!(r.system, System::Engine(_)))
            .map(|r| r.verdict.double_bookings)
            .sum::<u64>(),
        rows.iter()
            .filter(|r| matches!(r.system, System::Peer(_)))
            .map(|r| r.verdict.double_bookings)
            .sum::<u64>(),
        bad.len(),
        failures.len()
    );
    // Repeated here (they went to stderr as they happened) so the end of the output says
    // what failed, for a CI log that keeps only the tail.
    for failure in &failures {
        println!("failed run: {failure}");
    }
    for row in &bad {
        println!(
            "failed check: [{} {} {}] {}",
            row.system.name(),
            row.workload.name(),
            row.connections,
            row.verdict
                .error
                .as_deref()
                .unwrap_or("see the tables above")
        );
    }
    drop(gen_rt);
    if !bad.is_empty() || !failures.is_empty() {
        std::process::exit(1);
    }
}
