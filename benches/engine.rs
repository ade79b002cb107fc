//! In-process load benchmark of the [`Engine`]: durable bookings per second and their
//! latency over 1,000 doctors on each storage backend, check-slot calls per second from
//! memory, and 200 clients racing for one doctor's next 16 slots. Prints markdown tables.
//!
//! It measures, it does not judge speed; but every run ends with a correctness check on
//! the store (active rows == acknowledged bookings, no overlapping active rows of one
//! doctor), and the process exits non-zero if any check fails.
//!
//! ```text
//! cargo bench --bench engine -- [--backend sqlite|postgres|memory|all] [--seconds N]
//!                               [--clients N] [--requests N] [--flush-ms N] [--quick]
//! ```
//!
//! `--flush-ms` overrides `journal_flush_interval_ms` (0..=2), to compare group-commit waits.
//!
//! Postgres comes from `CONSULT_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! every run gets a throwaway database or file, removed afterwards.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use consult_scheduler::engine::{
    BookingRequest, ConsultMode, DoctorId, Engine, EngineError, EngineSettings, MedicalInfo,
    NewDoctor, Rejection, StatsSnapshot, Store,
};
use consult_scheduler::persistence::testing::{
    drop_postgres, fresh_postgres, fresh_sqlite, remove_sqlite,
};
use consult_scheduler::persistence::{PgStore, SqliteStore};

#[path = "common/mod.rs"]
mod common;
use common::{
    activate_doctors, create_doctors, histogram, micros, ms, open_doctor, per_s, SlotGrid,
};

/// Doctors in the load and check-slot runs.
const DOCTORS: usize = 1_000;
/// Bookings go to slots within this many days from now.
const BOOKING_HORIZON_DAYS: i64 = 30;
/// Clients and slots of the hot-doctor race.
const HOT_CLIENTS: usize = 200;
const HOT_SLOTS: usize = 16;
/// Concurrency of doctor creation and activation (setup, not measured as load).
const SETUP_CONCURRENCY: usize = 32;
const DEFAULT_SECONDS: u64 = 10;
const QUICK_SECONDS: u64 = 3;
const DEFAULT_CLIENTS: [usize; 2] = [256, 64];
/// Distinct "other" error messages kept for the report.
const MAX_ERROR_SAMPLES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The command line (`cargo bench --bench engine -- [flags]`).
#[derive(Debug, clap::Parser)]
#[command(about = "In-process engine load benchmark: durable bookings/s on each store")]
struct Cli {
    /// Stores to run on.
    #[arg(long, value_enum, default_value = "all")]
    backend: BackendChoice,
    /// Seconds per load run (default 8; 2 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,
    /// Short runs, for CI.
    #[arg(long)]
    quick: bool,
    /// Stop each load run after this many booking attempts (besides the time bound).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    /// Client tasks (default: each of 64 and 256).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    clients: Option<u64>,
    /// The engine's journal_flush_interval_ms.
    #[arg(long = "flush-ms")]
    flush_ms: Option<u64>,
    /// Only measure resident memory with this many active doctor actors.
    #[arg(long = "memory-doctors", value_parser = clap::value_parser!(u64).range(1..))]
    memory_doctors: Option<u64>,
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
    Memory,
    Sqlite,
    Postgres,
}

/// What the runs need, from [`Cli`].
#[derive(Debug)]
struct Args {
    backends: Vec<Backend>,
    run_for: Duration,
    /// Stop each load run after this many booking attempts (in addition to the time bound).
    max_requests: Option<u64>,
    clients: Vec<usize>,
    settings: EngineSettings,
    /// `--memory-doctors N`: only measure resident memory per active doctor actor.
    memory_doctors: Option<u64>,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let cli = <Cli as clap::Parser>::parse();
        let backends = match cli.backend {
            BackendChoice::All => vec![Backend::Memory, Backend::Sqlite, Backend::Postgres],
            BackendChoice::Memory => vec![Backend::Memory],
            BackendChoice::Sqlite => vec![Backend::Sqlite],
            BackendChoice::Postgres => vec![Backend::Postgres],
        };
        let mut settings = bench_settings();
        if let Some(ms) = cli.flush_ms {
            settings.journal_flush_interval_ms = ms;
        }
        settings.validate().map_err(|e| e.to_string())?;
        let seconds = cli.seconds.unwrap_or(if cli.quick {
            QUICK_SECONDS
        } else {
            DEFAULT_SECONDS
        });
        Ok(Self {
            backends,
            run_for: Duration::from_secs(seconds),
            max_requests: cli.requests,
            clients: cli
                .clients
                .map_or_else(|| DEFAULT_CLIENTS.to_vec(), |c| vec![c as usize]),
            settings,
            memory_doctors: cli.memory_doctors,
        })
    }
}

/// Defaults, except that admission must never refuse the benchmark's own clients and a
/// slow backend should show up as latency, not as ambiguous timeouts.
fn bench_settings() -> EngineSettings {
    EngineSettings {
        max_in_flight_per_shard: 65_536,
        call_timeout_ms: 30_000,
        ..EngineSettings::default()
    }
}

/// A throwaway store and what removing it takes.
struct Fixture {
    store: Arc<dyn Store>,
    cleanup: Cleanup,
}

enum Cleanup {
    Nothing,
    Sqlite(SqliteStore, PathBuf),
    Postgres(PgStore, String),
}

impl Fixture {
    /// `None` when the backend is unreachable (Postgres), after a notice.
    async fn fresh(backend: Backend) -> Option<Self> {
        Some(match backend {
            Backend::Memory => Self {
                store: Arc::new(consult_scheduler::engine::memory::MemoryStore::default()),
                cleanup: Cleanup::Nothing,
            },
            Backend::Sqlite => {
                let (store, path) = fresh_sqlite().await;
                Self {
                    store: Arc::new(store.clone()),
                    cleanup: Cleanup::Sqlite(store, path),
                }
            }
            Backend::Postgres => {
                let (store, name) = fresh_postgres().await?;
                Self {
                    store: Arc::new(store.clone()),
                    cleanup: Cleanup::Postgres(store, name),
                }
            }
        })
    }

    async fn remove(self) {
        match self.cleanup {
            Cleanup::Nothing => {}
            Cleanup::Sqlite(store, path) => {
                store.close().await;
                remove_sqlite(&path);
            }
            Cleanup::Postgres(store, name) => {
                store.close().await;
                drop_postgres(&name).await;
            }
        }
    }
}

/// An engine on a fresh store with `doctors` activated doctors.
struct Bed {
    fixture: Fixture,
    engine: Engine,
    doctors: Arc<Vec<DoctorId>>,
    create: Duration,
    activate: Duration,
}

impl Bed {
    async fn new(backend: Backend, doctors: usize, settings: &EngineSettings) -> Option<Self> {
        let fixture = Fixture::fresh(backend).await?;
        let engine = Engine::start(settings.clone(), Arc::clone(&fixture.store))
            .await
            .unwrap_or_else(|e| panic!("engine did not start on {}: {e}", backend.name()));

        let started = Instant::now();
        let names = (0..doctors).map(|i| format!("Dr. Bench {i:04}"));
        let ids = create_doctors(&engine, names, SETUP_CONCURRENCY)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let create = started.elapsed();

        let started = Instant::now();
        activate_doctors(&engine, &ids, SETUP_CONCURRENCY)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let activate = started.elapsed();
        assert_eq!(engine.stats().active_actors, doctors as u64);

        Some(Self {
            fixture,
            engine,
            doctors: Arc::new(ids),
            create,
            activate,
        })
    }

    /// Stops the engine (final snapshots, journal flushed), checks the store, removes it.
    async fn finish(self, acknowledged: u64) -> (Verdict, Duration) {
        let started = Instant::now();
        self.engine.shutdown().await;
        let shutdown = started.elapsed();
        let verdict = verify(self.fixture.store.as_ref(), acknowledged).await;
        drop(self.engine);
        self.fixture.remove().await;
        (verdict, shutdown)
    }
}

/// Open 00:00-24:00 every day in UTC on a 30-minute grid, approved and available.
fn bench_doctor(i: usize) -> NewDoctor {
    open_doctor(format!("Dr. Bench {i:04}"))
}

/// The future slot grid, `count` slots long.
#[derive(Clone, Copy)]
struct Grid {
    slots: SlotGrid,
    count: u32,
}

impl Grid {
    fn from_now(now: DateTime<Utc>, count: u32) -> Self {
        Self {
            slots: SlotGrid::from_now(now),
            count,
        }
    }

    fn slot(self, index: u32) -> DateTime<Utc> {
        self.slots.slot(index)
    }

    fn random(self, rng: &mut impl Rng) -> DateTime<Utc> {
        self.slot(rng.random_range(0..self.count))
    }
}

/// What the clients of one run saw, summed.
struct Tally {
    attempts: u64,
    acked: u64,
    conflicts: u64,
    overloaded: u64,
    other: u64,
    /// Latency of acknowledged (durable) bookings.
    acked_us: Histogram<u64>,
    /// Latency of conflicts (answered from memory, no journal wait).
    conflict_us: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            attempts: 0,
            acked: 0,
            conflicts: 0,
            overloaded: 0,
            other: 0,
            acked_us: histogram(),
            conflict_us: histogram(),
            errors: BTreeMap::new(),
        }
    }

    fn record(&mut self, result: Result<(), EngineError>, took: Duration) {
        self.attempts += 1;
        match result {
            Ok(()) => {
                self.acked += 1;
                self.acked_us.saturating_record(micros(took));
            }
            Err(EngineError::Rejected(Rejection::Conflict)) => {
                self.conflicts += 1;
                self.conflict_us.saturating_record(micros(took));
            }
            Err(EngineError::Overloaded) => self.overloaded += 1,
            Err(e) => {
                self.other += 1;
                if self.errors.len() < MAX_ERROR_SAMPLES || self.errors.contains_key(&e.to_string())
                {
                    *self.errors.entry(e.to_string()).or_default() += 1;
                }
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.attempts += other.attempts;
        self.acked += other.acked;
        self.conflicts += other.conflicts;
        self.overloaded += other.overloaded;
        self.other += other.other;
        self.acked_us.add(&other.acked_us).expect("same bounds");
        self.conflict_us
            .add(&other.conflict_us)
            .expect("same bounds");
        for (e, n) in other.errors {
            *self.errors.entry(e).or_default() += n;
        }
    }
}

/// The store's view after a run.
struct Verdict {
    active_rows: u64,
    acknowledged: u64,
    double_bookings: u64,
}

impl Verdict {
    fn ok(&self) -> bool {
        self.active_rows == self.acknowledged && self.double_bookings == 0
    }
}

/// Counts the active consultations and the overlapping pairs among one doctor's active
/// rows (they come ordered by doctor, then start).
async fn verify(store: &dyn Store, acknowledged: u64) -> Verdict {
    let rows = store
        .active_consultations(None)
        .await
        .unwrap_or_else(|e| panic!("cannot read active consultations: {e}"));
    let double_bookings = rows
        .windows(2)
        .filter(|w| {
            let (a, b) = (&w[0], &w[1]);
            a.doctor_id == b.doctor_id
                && a.scheduled_at + chrono::Duration::minutes(i64::from(a.duration_minutes))
                    > b.scheduled_at
        })
        .count() as u64;
    Verdict {
        active_rows: rows.len() as u64,
        acknowledged,
        double_bookings,
    }
}

/// `clients` tasks booking random future slots of random doctors until `run_for` passes
/// or `max_requests` attempts were made.
async fn load(
    engine: &Engine,
    doctors: &Arc<Vec<DoctorId>>,
    clients: usize,
    run_for: Duration,
    max_requests: Option<u64>,
) -> (Tally, Duration) {
    let grid = Grid::from_now(engine.now(), (BOOKING_HORIZON_DAYS * 48) as u32);
    let budget = Arc::new(AtomicU64::new(max_requests.unwrap_or(u64::MAX)));
    let started = Instant::now();
    let deadline = started + run_for;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let engine = engine.clone();
            let doctors = Arc::clone(doctors);
            let budget = Arc::clone(&budget);
            tokio::spawn(async move {
                let mut rng = SmallRng::seed_from_u64(c as u64);
                let mut tally = Tally::new();
                while Instant::now() < deadline
                    && budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                {
                    let request = BookingRequest {
                        doctor_id: doctors[rng.random_range(0..doctors.len())],
                        patient_id: 100_000 + c as i64,
                        scheduled_at: grid.random(&mut rng),
                        mode: ConsultMode::Video,
                        medical: MedicalInfo::default(),
                    };
                    let t = Instant::now();
                    let result = engine.book(request).await.map(drop);
                    tally.record(result, t.elapsed());
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::new();
    for t in tasks {
        total.merge(t.await.expect("client task panicked"));
    }
    (total, started.elapsed())
}

/// One row of the durable-booking table.
struct LoadRow {
    backend: Backend,
    clients: usize,
    tally: Tally,
    elapsed: Duration,
    create: Duration,
    activate: Duration,
    shutdown: Duration,
    journal: StatsDelta,
    verdict: Verdict,
}

/// Journal counters over one run.
struct StatsDelta {
    batches: u64,
    records: u64,
    failed_batches: u64,
    flush_us: u64,
    overloaded: u64,
}

impl StatsDelta {
    fn between(a: StatsSnapshot, b: StatsSnapshot) -> Self {
        Self {
            batches: b.journal_batches - a.journal_batches,
            records: b.journal_records - a.journal_records,
            failed_batches: b.journal_failed_batches - a.journal_failed_batches,
            flush_us: b.journal_flush_micros - a.journal_flush_micros,
            overloaded: b.overloaded - a.overloaded,
        }
    }
}

async fn load_run(backend: Backend, clients: usize, args: &Args) -> Option<LoadRow> {
    let run_for = args.run_for;
    eprintln!(
        "[{}] {clients} clients: setting up {DOCTORS} doctors",
        backend.name()
    );
    let bed = Bed::new(backend, DOCTORS, &args.settings).await?;
    eprintln!(
        "[{}] {clients} clients: created in {:.2?}, activated in {:.2?}; booking for {run_for:?}",
        backend.name(),
        bed.create,
        bed.activate
    );
    let before = bed.engine.stats();
    let (tally, elapsed) = load(
        &bed.engine,
        &bed.doctors,
        clients,
        run_for,
        args.max_requests,
    )
    .await;
    let journal = StatsDelta::between(before, bed.engine.stats());
    let (create, activate) = (bed.create, bed.activate);
    let (verdict, shutdown) = bed.finish(tally.acked).await;
    Some(LoadRow {
        backend,
        clients,
        tally,
        elapsed,
        create,
        activate,
        shutdown,
        journal,
        verdict,
    })
}

/// Check-slot calls per second on activated doctors: no storage on this path.
struct CheckRow {
    clients: usize,
    calls: u64,
    available: u64,
    refused: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

async fn check_slot_run(clients: usize, args: &Args) -> CheckRow {
    let run_for = args.run_for;
    eprintln!("[memory] check-slot: setting up {DOCTORS} doctors");
    let bed = Bed::new(Backend::Memory, DOCTORS, &args.settings)
        .await
        .expect("the memory store is always there");
    let grid = Grid::from_now(bed.engine.now(), (BOOKING_HORIZON_DAYS * 48) as u32);
    eprintln!("[memory] check-slot: {clients} clients for {run_for:?}");
    let started = Instant::now();
    let deadline = started + run_for;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let engine = bed.engine.clone();
            let doctors = Arc::clone(&bed.doctors);
            tokio::spawn(async move {
                let mut rng = SmallRng::seed_from_u64(1_000 + c as u64);
                let mut hist = histogram();
                let (mut available, mut refused) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let doctor = doctors[rng.random_range(0..doctors.len())];
                    let at = grid.random(&mut rng);
                    let t = Instant::now();
                    let result = engine
                        .check_slot(doctor, 100_000 + c as i64, at, false)
                        .await;
                    hist.saturating_record(micros(t.elapsed()));
                    match result {
                        Ok(_) => available += 1,
                        Err(_) => refused += 1,
                    }
                }
                (hist, available, refused)
            })
        })
        .collect();
    let mut row = CheckRow {
        clients,
        calls: 0,
        available: 0,
        refused: 0,
        elapsed: Duration::ZERO,
        latency_us: histogram(),
    };
    for t in tasks {
        let (hist, available, refused) = t.await.expect("client task panicked");
        row.latency_us.add(&hist).expect("same bounds");
        row.available += available;
        row.refused += refused;
    }
    row.elapsed = started.elapsed();
    row.calls = row.available + row.refused;
    let (verdict, _) = bed.finish(0).await;
    assert!(verdict.ok(), "check-slot must not book anything");
    row
}

/// 200 clients released together, each trying all 16 next slots of one doctor in its own
/// random order.
struct HotRow {
    backend: Backend,
    tally: Tally,
    elapsed: Duration,
    /// Slots with exactly one acknowledged booking.
    slots_taken: usize,
    verdict: Verdict,
}

async fn hot_run(backend: Backend, args: &Args) -> Option<HotRow> {
    eprintln!(
        "[{}] hot doctor: {HOT_CLIENTS} clients, {HOT_SLOTS} slots",
        backend.name()
    );
    let bed = Bed::new(backend, 1, &args.settings).await?;
    let doctor = bed.doctors[0];
    let grid = Grid::from_now(bed.engine.now(), HOT_SLOTS as u32);
    let gate = Arc::new(tokio::sync::Barrier::new(HOT_CLIENTS + 1));
    let tasks: Vec<_> = (0..HOT_CLIENTS)
        .map(|c| {
            let engine = bed.engine.clone();
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let mut order: Vec<u32> = (0..HOT_SLOTS as u32).collect();
                order.shuffle(&mut SmallRng::seed_from_u64(2_000 + c as u64));
                let mut tally = Tally::new();
                let mut won = Vec::new();
                gate.wait().await;
                for i in order {
                    let request = BookingRequest {
                        doctor_id: doctor,
                        patient_id: 200_000 + c as i64,
                        scheduled_at: grid.slot(i),
                        mode: ConsultMode::Video,
                        medical: MedicalInfo::default(),
                    };
                    let t = Instant::now();
                    let result = engine.book(request).await.map(drop);
                    if result.is_ok() {
                        won.push(i);
                    }
                    tally.record(result, t.elapsed());
                }
                (tally, won)
            })
        })
        .collect();
    gate.wait().await;
    let started = Instant::now();
    let mut tally = Tally::new();
    let mut wins = [0usize; HOT_SLOTS];
    for t in tasks {
        let (t, won) = t.await.expect("client task panicked");
        tally.merge(t);
        for i in won {
            wins[i as usize] += 1;
        }
    }
    let elapsed = started.elapsed();
    let slots_taken = wins.iter().filter(|&&n| n == 1).count();
    let (verdict, _) = bed.finish(tally.acked).await;
    Some(HotRow {
        backend,
        tally,
        elapsed,
        slots_taken,
        verdict,
    })
}

fn print_load(rows: &[LoadRow]) {
    println!("\n## Durable bookings ({DOCTORS} doctors, random slots over {BOOKING_HORIZON_DAYS} days)\n");
    println!("Latency in microseconds, of acknowledged (durable) bookings; conflicts are answered from memory.\n");
    println!("| backend | clients | secs | attempts | acked | conflicts | overloaded | other errors | requests/s | durable bookings/s | p50 | p99 | p99.9 | max | conflict p50 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let t = &r.tally;
        let h = &t.acked_us;
        println!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            r.backend.name(),
            r.clients,
            r.elapsed.as_secs_f64(),
            t.attempts,
            t.acked,
            t.conflicts,
            t.overloaded,
            t.other,
            per_s(t.attempts, r.elapsed),
            per_s(t.acked, r.elapsed),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            t.conflict_us.value_at_quantile(0.5),
        );
    }
    println!("\n### Setup and journal\n");
    println!("Activation (one availability call per doctor) is excluded from the timing above. Writer busy = time inside `Store::append` / run time: near 100 % means the single journal writer is the bottleneck.\n");
    println!("| backend | clients | create doctors (ms) | activate (ms) | shutdown (ms) | journal batches | records/batch | mean append (ms) | writer busy | failed batches | engine overloaded |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let j = &r.journal;
        let per_batch = |x: f64| {
            if j.batches == 0 {
                0.0
            } else {
                x / j.batches as f64
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.2} | {:.0} % | {} | {} |",
            r.backend.name(),
            r.clients,
            ms(r.create),
            ms(r.activate),
            ms(r.shutdown),
            j.batches,
            per_batch(j.records as f64),
            per_batch(j.flush_us as f64 / 1e3),
            100.0 * j.flush_us as f64 / 1e6 / r.elapsed.as_secs_f64(),
            j.failed_batches,
            j.overloaded,
        );
    }
    print_errors(rows.iter().map(|r| (r.backend, r.clients, &r.tally)));
}

fn print_errors<'a>(rows: impl Iterator<Item = (Backend, usize, &'a Tally)>) {
    for (backend, clients, tally) in rows {
        for (e, n) in &tally.errors {
            println!("- {} / {clients} clients: {n} x `{e}`", backend.name());
        }
    }
}

fn print_check(r: &CheckRow) {
    println!("\n## check-slot from memory ({DOCTORS} activated doctors, memory store)\n");
    println!("| clients | secs | calls | available | refused | calls/s | p50 (us) | p99 (us) | p99.9 (us) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.1} | {} | {} | {} | {:.0} | {} | {} | {} |",
        r.clients,
        r.elapsed.as_secs_f64(),
        r.calls,
        r.available,
        r.refused,
        per_s(r.calls, r.elapsed),
        r.latency_us.value_at_quantile(0.5),
        r.latency_us.value_at_quantile(0.99),
        r.latency_us.value_at_quantile(0.999),
    );
}

fn print_hot(rows: &[HotRow]) {
    println!(
        "\n## Hot doctor ({HOT_CLIENTS} clients racing for one doctor's next {HOT_SLOTS} slots)\n"
    );
    println!("| backend | attempts | acks | conflicts | overloaded | other errors | slots taken once | time (ms) | ack p50 (us) | ack max (us) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let t = &r.tally;
        println!(
            "| {} | {} | {} | {} | {} | {} | {}/{HOT_SLOTS} | {} | {} | {} |",
            r.backend.name(),
            t.attempts,
            t.acked,
            t.conflicts,
            t.overloaded,
            t.other,
            r.slots_taken,
            ms(r.elapsed),
            t.acked_us.value_at_quantile(0.5),
            t.acked_us.max(),
        );
    }
    print_errors(rows.iter().map(|r| (r.backend, HOT_CLIENTS, &r.tally)));
}

/// Prints the correctness table; answers whether every run passed.
fn print_verdicts(load: &[LoadRow], hot: &[HotRow]) -> bool {
    println!("\n## Correctness (from the store after shutdown)\n");
    println!("| run | acknowledged | active rows | double bookings | result |");
    println!("|---|---:|---:|---:|---|");
    let mut all_ok = true;
    let runs = load
        .iter()
        .map(|r| {
            (
                format!("{} / {} clients", r.backend.name(), r.clients),
                &r.verdict,
                true,
            )
        })
        .chain(hot.iter().map(|r| {
            let full = r.tally.acked == HOT_SLOTS as u64 && r.slots_taken == HOT_SLOTS;
            (
                format!("{} / hot doctor", r.backend.name()),
                &r.verdict,
                full,
            )
        }));
    for (name, v, extra_ok) in runs {
        let ok = v.ok() && extra_ok;
        all_ok &= ok;
        println!(
            "| {name} | {} | {} | {} | {} |",
            v.acknowledged,
            v.active_rows,
            v.double_bookings,
            if ok { "ok" } else { "FAILED" }
        );
    }
    let doubles: u64 = load
        .iter()
        .map(|r| &r.verdict)
        .chain(hot.iter().map(|r| &r.verdict))
        .map(|v| v.double_bookings)
        .sum();
    println!("\ndouble bookings: {doubles}");
    all_ok
}

/// Resident memory of this process, from `/proc/self/statm` (Linux), in bytes.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Resident memory per active doctor actor: N doctors on the in-memory store, all activated.
async fn memory_run(doctors: u64, settings: &EngineSettings) {
    let store = Arc::new(consult_scheduler::engine::memory::MemoryStore::default());
    let engine = Engine::start(settings.clone(), store)
        .await
        .expect("engine starts");
    let mut ids = Vec::with_capacity(doctors as usize);
    for i in 0..doctors as usize {
        ids.push(
            engine
                .create_doctor(bench_doctor(i))
                .await
                .expect("create")
                .id,
        );
    }
    let before = resident_bytes();
    let started = Instant::now();
    for chunk in ids.chunks(SETUP_CONCURRENCY * 8) {
        let calls = chunk.iter().map(|&id| engine.doctor(id));
        for r in futures::future::join_all(calls).await {
            r.expect("activate");
        }
    }
    let took = started.elapsed();
    let after = resident_bytes();
    let active = engine.stats().active_actors;
    println!("| active doctors | activation time | resident before | resident after | per active doctor |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {active} | {:.1} s | {:.1} MiB | {:.1} MiB | {:.0} bytes |",
        took.as_secs_f64(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / active.max(1) as f64
    );
    engine.shutdown().await;
}

fn main() {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("engine bench: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Some(doctors) = args.memory_doctors {
        runtime.block_on(memory_run(doctors, &args.settings));
        return;
    }
    let s = &args.settings;
    println!("# Engine load benchmark\n");
    println!(
        "{} s per run, {} CPUs; engine: shards={}, max_in_flight_per_shard={}, call_timeout_ms={}, journal_max_batch={}, journal_flush_interval_ms={}",
        args.run_for.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        s.shards,
        s.max_in_flight_per_shard,
        s.call_timeout_ms,
        s.journal_max_batch,
        s.journal_flush_interval_ms,
    );
    let ok = runtime.block_on(async {
        let mut load_rows = Vec::new();
        let mut hot_rows = Vec::new();
        'backends: for &backend in &args.backends {
            for &clients in &args.clients {
                match load_run(backend, clients, &args).await {
                    Some(row) => load_rows.push(row),
                    None => {
                        println!("\n> {} skipped: server unreachable", backend.name());
                        continue 'backends;
                    }
                }
            }
            if let Some(row) = hot_run(backend, &args).await {
                hot_rows.push(row);
            }
        }
        print_load(&load_rows);
        let check = check_slot_run(args.clients[0], &args).await;
        print_check(&check);
        print_hot(&hot_rows);
        print_verdicts(&load_rows, &hot_rows)
    });
    if !ok {
        std::process::exit(1);
    }
}
