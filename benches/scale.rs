//! Scale benchmark of the engine: resident memory with many doctor actors active and a
//! million bookings made, and the time from a cold start to the first booking with that
//! data in the store. Prints markdown tables.
//!
//! 1. **Memory**: an in-process [`Engine`] on a fresh store creates `--doctors` doctors
//!    (open 00:00-24:00 UTC every day, 30-minute slots, approved, available) plus one that
//!    is never used, activates each (one `availability` call makes its actor live), then
//!    books `--bookings` consultations (booking `i` goes to doctor `d = i % doctors`, on
//!    slot `(i / doctors) * spacing + d % spacing` of the next 30 days, so none conflict)
//!    from `--clients` concurrent tasks. `VmRSS` / `VmHWM` (from `/proc/self/status`) and the live heap (a
//!    counting global allocator) are read at each step, and again once the engine's
//!    background snapshot writes have gone idle (snapshots are taken in the background,
//!    one task per dirty doctor, so right after a burst of bookings they are in flight).
//! 2. **Restart**: the engine shuts down gracefully (journal flushed, final snapshots), the
//!    heap is left to settle (background tasks the shutdown does not wait for finish), freed
//!    pages are handed back to the OS (`mi_collect`), and the real [`Application`]
//!    starts on the same Postgres database (`Settings::load` + `Application::build` +
//!    `run_until_stopped`, demo seeding off). Timed from before `Settings::load`: the build
//!    (store connect, migrations, engine start, bind), the first `201` of
//!    `POST /patient/doctors/book` over HTTP (reqwest, a patient token minted with the dev
//!    secret) on the never-activated doctor, then the first `201` on an already-used doctor
//!    (its actor recovered from snapshot + journal). With `--backend memory` the restart is
//!    a new `Engine` on the same in-memory store, booked through the engine API (the
//!    application has no in-memory store URL).
//! 3. **Checks**: after a graceful stop, the store must hold exactly the acknowledged
//!    bookings as active rows, and no two active rows of one doctor may overlap (SQL window
//!    scan on Postgres, an ordered scan on the memory store). The process exits non-zero
//!    if either check fails. The goals (100,000 active doctors in < 1 GiB, first booking
//!    < 2 s after start) are reported, not enforced.
//!
//! ```text
//! cargo bench --bench scale -- [--doctors N] [--bookings N] [--backend postgres|memory]
//!                              [--clients N] [--quick] [--alloc-sizes] [--log LEVEL]
//! ```
//!
//! `--alloc-sizes` also counts live allocations by size (8-byte classes) and prints which
//! sizes activation and booking added per doctor: where the memory goes. `--log LEVEL`
//! prints the engine's logs at LEVEL (a `tracing` filter) on stderr; default none.
//!
//! Defaults: 100,000 doctors, 1,000,000 bookings, Postgres, 256 booking tasks; `--quick`:
//! 10,000 doctors and 100,000 bookings. Bookings use the `whatsapp` mode: the in-process
//! engine runs no session worker, so in-app modes would leave a million pending session
//! rows for the restarted application's worker to start on, which is not the state a live
//! system is in. The counting allocator costs one relaxed atomic add per allocation.
//!
//! Postgres comes from `CONSULT_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! every run gets a throwaway database, dropped afterwards.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use sqlx::Connection;

use consult_scheduler::engine::{
    BookingRequest, ConsultMode, DoctorId, Engine, EngineError, EngineSettings, MedicalInfo,
    Rejection, StatsSnapshot, Store,
};
use consult_scheduler::http::auth::{now_s, JwtKeys, Role};
use consult_scheduler::persistence::testing::{drop_postgres, fresh_postgres, pg_url_for};
use consult_scheduler::persistence::PgStore;
use consult_scheduler::{Application, Settings};

#[path = "common/mod.rs"]
mod common;
use common::{activate_doctors, histogram, micros, ms, per_s, SlotGrid};

const DEFAULT_DOCTORS: u64 = 100_000;
const DEFAULT_BOOKINGS: u64 = 1_000_000;
const QUICK_DOCTORS: u64 = 10_000;
const QUICK_BOOKINGS: u64 = 100_000;
const MAX_DOCTORS: u64 = 1_000_000;
const MAX_BOOKINGS: u64 = 20_000_000;
/// Concurrent booking tasks (the journal batches what they send).
const DEFAULT_CLIENTS: u64 = 256;
const MAX_CLIENTS: u64 = 4_096;
/// Bookings go to slots within this many days from now.
const HORIZON_DAYS: u32 = 30;
const SLOTS_PER_DAY: u32 = 48;
/// Concurrency of doctor creation and activation.
const SETUP_CONCURRENCY: usize = 64;
/// Upper bound on any one phase (creation, activation, bookings, shutdown, restart).
const PHASE_TIMEOUT_S: u64 = 900;
/// How long the snapshot writes must pause before the engine counts as settled after the
/// bookings, and the longest wait for that.
const SNAPSHOTS_IDLE: Duration = Duration::from_secs(2);
const SNAPSHOTS_IDLE_MAX: Duration = Duration::from_secs(180);
/// After the shutdown, the heap counts as settled once it shrank by less than
/// `HEAP_SETTLE_SLACK_BYTES` for `HEAP_SETTLE_QUIET`; the longest wait for that.
const HEAP_SETTLE_QUIET: Duration = Duration::from_secs(1);
const HEAP_SETTLE_MAX: Duration = Duration::from_secs(60);
const HEAP_SETTLE_SLACK_BYTES: u64 = 1 << 20;
/// Timeout of one HTTP request of the restart.
const HTTP_TIMEOUT_S: u64 = 30;
/// Distinct error messages kept for the report.
const MAX_ERROR_SAMPLES: usize = 5;
/// The goals this benchmark reports against.
const GOAL_DOCTORS: u64 = 100_000;
const GOAL_RSS_BYTES: u64 = 1 << 30;
const GOAL_FIRST_BOOKING: Duration = Duration::from_secs(2);
const MIB: f64 = 1_048_576.0;
/// How long the idle engine's CPU is measured, once the snapshot writes are idle.
const IDLE_CPU_WINDOW: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Memory readings.

/// The allocator the binary ships with (see `src/main.rs`).
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// [`INNER`], counting the bytes currently allocated (live heap).
struct CountingAlloc;

static LIVE_HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Live allocations by size class (`--alloc-sizes`), on from process start when asked.
static COUNT_SIZES: AtomicBool = AtomicBool::new(false);
/// Size classes of 8 bytes; the last one takes everything larger.
const SIZE_CLASSES: usize = 4096;
static LIVE_BY_SIZE: [AtomicI64; SIZE_CLASSES] = [const { AtomicI64::new(0) }; SIZE_CLASSES];

fn count_size(size: usize, delta: i64) {
    if COUNT_SIZES.load(Ordering::Relaxed) {
        LIVE_BY_SIZE[(size / 8).min(SIZE_CLASSES - 1)].fetch_add(delta, Ordering::Relaxed);
    }
}

fn count_alloc(size: usize) {
    LIVE_HEAP_BYTES.fetch_add(size, Ordering::Relaxed);
    count_size(size, 1);
}

fn count_free(size: usize) {
    LIVE_HEAP_BYTES.fetch_sub(size, Ordering::Relaxed);
    count_size(size, -1);
}

/// Live allocations per size class right now.
fn live_by_size() -> Vec<i64> {
    LIVE_BY_SIZE
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect()
}

// SAFETY: every call is forwarded to mimalloc unchanged; only a counter is added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = INNER.alloc(layout);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = INNER.alloc_zeroed(layout);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        INNER.dealloc(ptr, layout);
        count_free(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = INNER.realloc(ptr, layout, new_size);
        if !p.is_null() {
            count_alloc(new_size);
            count_free(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// One reading of this process's memory, in bytes.
#[derive(Debug, Clone, Copy)]
struct Mem {
    rss: u64,
    /// Peak resident set so far.
    hwm: u64,
    heap: u64,
}

impl Mem {
    fn now() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |k| k * 1024)
        };
        Self {
            rss: kib("VmRSS:"),
            hwm: kib("VmHWM:"),
            heap: LIVE_HEAP_BYTES.load(Ordering::Relaxed) as u64,
        }
    }
}

/// Hands freed heap pages back to the OS, so RSS after a teardown reflects what is live.
fn trim_heap() {
    extern "C" {
        fn mi_collect(force: bool);
    }
    // SAFETY: mimalloc's mi_collect takes no pointers; it frees this thread's unused
    // pages (and, forced, the abandoned ones of other threads).
    unsafe {
        mi_collect(true);
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / MIB)
}

/// Signed growth from `a` to `b` per item, in bytes.
fn per_item(a: u64, b: u64, items: u64) -> String {
    if items == 0 {
        return "-".into();
    }
    format!("{:.0}", (b as f64 - a as f64) / items as f64)
}

/// Bare actors spawned for [`bare_actor_heap`].
const BARE_ACTORS: usize = 1_000;

/// An actor with no state that handles nothing: what ractor itself costs per actor.
struct BareActor;

impl ractor::Actor for BareActor {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<()>,
        _args: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

/// Live heap per actor of [`BARE_ACTORS`] bare actors, each linked to one supervisor as a
/// shard links its doctors: ractor's own cost per doctor actor, before any doctor state.
async fn bare_actor_heap() -> Result<f64, String> {
    let spawn_err = |e: ractor::SpawnErr| format!("a bare actor did not start: {e}");
    let (parent, parent_done) = ractor::Actor::spawn(None, BareActor, ())
        .await
        .map_err(spawn_err)?;
    let before = LIVE_HEAP_BYTES.load(Ordering::Relaxed);
    let mut children = Vec::with_capacity(BARE_ACTORS);
    for _ in 0..BARE_ACTORS {
        children.push(
            ractor::Actor::spawn_linked(None, BareActor, (), parent.get_cell())
                .await
                .map_err(spawn_err)?,
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = LIVE_HEAP_BYTES.load(Ordering::Relaxed);
    // The handles held in `children` are part of what a supervisor keeps per child.
    let per_actor = (after as f64 - before as f64) / BARE_ACTORS as f64;
    for (child, done) in children {
        child.stop(None);
        let _ = done.await;
    }
    parent.stop(None);
    let _ = parent_done.await;
    Ok(per_actor)
}

// ---------------------------------------------------------------------------------------
// The command line.

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Postgres,
    Memory,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Memory => "memory",
        }
    }
}

/// The command line (`cargo bench --bench scale -- [flags]`).
#[derive(Debug, clap::Parser)]
#[command(about = "Scale benchmark: memory with many active doctors, restart time")]
struct Cli {
    /// Doctors to create and activate (default 100,000; 10,000 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_DOCTORS))]
    doctors: Option<u64>,
    /// Bookings to make (default 1,000,000; 100,000 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=MAX_BOOKINGS))]
    bookings: Option<u64>,
    #[arg(long, value_enum, default_value = "postgres")]
    backend: Backend,
    /// Concurrent booking tasks.
    #[arg(long, default_value_t = DEFAULT_CLIENTS, value_parser = clap::value_parser!(u64).range(1..=MAX_CLIENTS))]
    clients: u64,
    /// 10,000 doctors and 100,000 bookings.
    #[arg(long)]
    quick: bool,
    /// Also count live allocations by size and print what activation and booking added.
    #[arg(long = "alloc-sizes")]
    alloc_sizes: bool,
    /// Print the engine's logs at this level (a tracing filter, e.g. `warn`) on stderr.
    #[arg(long)]
    log: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// A benchmark-name filter `cargo bench` may pass; ignored.
    #[arg(hide = true)]
    filter: Vec<String>,
}

/// What the run needs, from [`Cli`].
#[derive(Debug)]
struct Args {
    backend: Backend,
    doctors: u64,
    bookings: u64,
    clients: usize,
    alloc_sizes: bool,
    log: Option<String>,
    /// Slots between a doctor's consecutive bookings.
    spacing: u32,
    settings: EngineSettings,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let cli = <Cli as clap::Parser>::parse();
        let (doctors, bookings) = if cli.quick {
            (QUICK_DOCTORS, QUICK_BOOKINGS)
        } else {
            (DEFAULT_DOCTORS, DEFAULT_BOOKINGS)
        };
        let doctors = cli.doctors.unwrap_or(doctors);
        let bookings = cli.bookings.unwrap_or(bookings);
        // Each doctor's bookings sit `spacing` slots apart; at least 2, so the slot after a
        // doctor's first booking stays free for the restart's booking.
        let per_doctor = bookings.div_ceil(doctors).max(1);
        let spacing = (u64::from(HORIZON_DAYS * SLOTS_PER_DAY) / per_doctor) as u32;
        if spacing < 2 {
            return Err(format!(
                "{bookings} bookings over {doctors} doctors is {per_doctor} per doctor; at most {} fit in {HORIZON_DAYS} days",
                HORIZON_DAYS * SLOTS_PER_DAY / 2
            ));
        }
        let settings = EngineSettings {
            // Admission must not refuse the benchmark's own tasks, and a slow store should
            // show as latency, not as timeouts.
            max_in_flight_per_shard: 65_536,
            call_timeout_ms: 60_000,
            ..EngineSettings::default()
        };
        settings.validate().map_err(|e| e.to_string())?;
        Ok(Self {
            backend: cli.backend,
            doctors,
            bookings,
            clients: cli.clients as usize,
            alloc_sizes: cli.alloc_sizes,
            log: cli.log,
            spacing,
            settings,
        })
    }

    /// Bookings the doctor at `index` gets.
    fn bookings_of(&self, index: u64) -> u64 {
        self.bookings / self.doctors + u64::from(index < self.bookings % self.doctors)
    }
}

/// The grid slot of the `k`-th booking of the doctor at `index`: `spacing` slots apart,
/// starting at `index % spacing`.
fn slot_index(spacing: u32, index: u64, k: u64) -> u32 {
    k as u32 * spacing + (index % u64::from(spacing)) as u32
}

/// Runs `phase`, failing it after [`PHASE_TIMEOUT_S`].
async fn bounded<T>(name: &str, phase: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(Duration::from_secs(PHASE_TIMEOUT_S), phase)
        .await
        .map_err(|_| format!("{name} did not finish within {PHASE_TIMEOUT_S} s"))
}

// ---------------------------------------------------------------------------------------
// Step 1: doctors, activation, bookings.

/// The store of the run: the engine's handle, and the Postgres database's name.
struct Fixture {
    store: Arc<dyn Store>,
    pg: Option<(PgStore, String)>,
}

impl Fixture {
    async fn fresh(backend: Backend) -> Result<Self, String> {
        match backend {
            Backend::Memory => Ok(Self {
                store: Arc::new(consult_scheduler::engine::memory::MemoryStore::default()),
                pg: None,
            }),
            Backend::Postgres => {
                let (store, name) = fresh_postgres()
                    .await
                    .ok_or("the Postgres server is unreachable")?;
                Ok(Self {
                    store: Arc::new(store.clone()),
                    pg: Some((store, name)),
                })
            }
        }
    }

    fn pg_name(&self) -> Option<&str> {
        self.pg.as_ref().map(|(_, name)| name.as_str())
    }
}

/// A timed phase: how many items, how long.
struct Phase {
    name: &'static str,
    items: u64,
    took: Duration,
    note: String,
}

/// What the booking tasks saw, summed.
struct Tally {
    acked: u64,
    conflicts: u64,
    other: u64,
    errors: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
}

/// Step 1's results (the engine is returned beside them).
struct Loaded {
    doctors: Vec<DoctorId>,
    /// Created, never activated.
    cold: DoctorId,
    grid: SlotGrid,
    phases: Vec<Phase>,
    mem: Vec<(&'static str, Mem, u64)>,
    /// Live allocations by size class at each point of `mem` (`--alloc-sizes`).
    sizes: Vec<Vec<i64>>,
    tally: Tally,
    /// At the end of the bookings.
    stats: StatsSnapshot,
    /// Once the background snapshot writes went idle after the bookings.
    settled: StatsSnapshot,
    /// How long that took.
    settle_wait: Duration,
    /// This process's CPU (cores) over [`IDLE_CPU_WINDOW`] right after, nothing asked.
    idle_cores: f64,
}

async fn create_doctors(engine: &Engine, from: u64, n: u64) -> Result<Vec<DoctorId>, String> {
    let names = (from..from + n).map(|i| format!("Dr. Scale {i:06}"));
    common::create_doctors(engine, names, SETUP_CONCURRENCY).await
}

async fn activate(engine: &Engine, ids: &[DoctorId]) -> Result<(), String> {
    activate_doctors(engine, ids, SETUP_CONCURRENCY).await
}

/// `clients` tasks taking booking numbers from a shared counter until all are made.
async fn book_all(
    engine: &Engine,
    doctors: &Arc<Vec<DoctorId>>,
    args: &Args,
    grid: SlotGrid,
) -> Tally {
    let next = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(histogram()));
    let (n_doctors, n_bookings, spacing) = (args.doctors, args.bookings, args.spacing);
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let engine = engine.clone();
            let doctors = Arc::clone(doctors);
            let next = Arc::clone(&next);
            let latency = Arc::clone(&latency);
            tokio::spawn(async move {
                let (mut acked, mut conflicts, mut other) = (0u64, 0u64, 0u64);
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n_bookings {
                        break;
                    }
                    let (index, k) = (i % n_doctors, i / n_doctors);
                    let request = BookingRequest {
                        doctor_id: doctors[index as usize],
                        patient_id: 1_000_000 + (i % 100_000) as i64,
                        scheduled_at: grid.slot(slot_index(spacing, index, k)),
                        mode: ConsultMode::Whatsapp,
                        medical: MedicalInfo::default(),
                    };
                    let t = Instant::now();
                    let result = engine.book(request).await;
                    let took = micros(t.elapsed());
                    match result {
                        Ok(_) => {
                            acked += 1;
                            latency
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .saturating_record(took);
                        }
                        Err(EngineError::Rejected(Rejection::Conflict)) => conflicts += 1,
                        Err(e) => {
                            other += 1;
                            let e = e.to_string();
                            if errors.len() < MAX_ERROR_SAMPLES || errors.contains_key(&e) {
                                *errors.entry(e).or_default() += 1;
                            }
                        }
                    }
                }
                (acked, conflicts, other, errors)
            })
        })
        .collect();
    let mut tally = Tally {
        acked: 0,
        conflicts: 0,
        other: 0,
        errors: BTreeMap::new(),
        latency_us: histogram(),
    };
    for t in tasks {
        let (acked, conflicts, other, errors) = t.await.expect("booking task panicked");
        tally.acked += acked;
        tally.conflicts += conflicts;
        tally.other += other;
        for (e, n) in errors {
            *tally.errors.entry(e).or_default() += n;
        }
    }
    tally.latency_us = Arc::try_unwrap(latency)
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
        .unwrap_or_else(|shared| {
            shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        });
    tally
}

async fn load(fixture: &Fixture, args: &Args, start: Mem) -> Result<(Engine, Loaded), String> {
    let mut mem = vec![("process start", start, 0)];
    let mut sizes = vec![live_by_size()];
    let mut phases = Vec::new();
    let tag = args.backend.name();

    let t = Instant::now();
    let engine = Engine::start(args.settings.clone(), Arc::clone(&fixture.store))
        .await
        .map_err(|e| format!("the engine did not start: {e}"))?;
    phases.push(Phase {
        name: "engine start",
        items: 1,
        took: t.elapsed(),
        note: String::new(),
    });
    mem.push(("engine started", Mem::now(), 0));
    sizes.push(live_by_size());

    eprintln!("[{tag}] creating {} doctors (+1 never used)", args.doctors);
    let t = Instant::now();
    let doctors = bounded("doctor creation", create_doctors(&engine, 0, args.doctors)).await??;
    let cold = bounded("doctor creation", create_doctors(&engine, args.doctors, 1)).await??[0];
    phases.push(Phase {
        name: "create doctors",
        items: args.doctors + 1,
        took: t.elapsed(),
        note: format!("{SETUP_CONCURRENCY} at a time"),
    });
    mem.push(("doctors created", Mem::now(), engine.stats().active_actors));
    sizes.push(live_by_size());

    eprintln!("[{tag}] activating {} doctors", args.doctors);
    let t = Instant::now();
    bounded("activation", activate(&engine, &doctors)).await??;
    phases.push(Phase {
        name: "activate doctors",
        items: args.doctors,
        took: t.elapsed(),
        note: "one availability call each".into(),
    });
    let active = engine.stats().active_actors;
    if active != args.doctors {
        return Err(format!(
            "{active} doctor actors active after activating {}",
            args.doctors
        ));
    }
    mem.push(("doctors activated", Mem::now(), active));
    sizes.push(live_by_size());

    eprintln!(
        "[{tag}] booking {} consultations from {} tasks",
        args.bookings, args.clients
    );
    let grid = SlotGrid::from_now(engine.now());
    let ids = Arc::new(doctors);
    let t = Instant::now();
    let tally = bounded("bookings", book_all(&engine, &ids, args, grid)).await?;
    let took = t.elapsed();
    phases.push(Phase {
        name: "book (durable)",
        items: tally.acked,
        took,
        note: format!(
            "{} tasks; p50 {} us, p99 {} us, max {} us; {} conflicts, {} other errors",
            args.clients,
            tally.latency_us.value_at_quantile(0.5),
            tally.latency_us.value_at_quantile(0.99),
            tally.latency_us.max(),
            tally.conflicts,
            tally.other
        ),
    });
    let stats = engine.stats();
    mem.push(("bookings acknowledged", Mem::now(), stats.active_actors));
    sizes.push(live_by_size());
    let settle_wait = snapshot_writes_idle(&engine).await;
    let settled = engine.stats();
    mem.push(("snapshot writes idle", Mem::now(), settled.active_actors));
    sizes.push(live_by_size());
    // Nothing asked of the engine now: what its actors cost at rest (their ticks).
    let ticks = common::process_ticks(std::process::id());
    tokio::time::sleep(IDLE_CPU_WINDOW).await;
    let idle_cores = (common::process_ticks(std::process::id()) - ticks) as f64
        / common::TICKS_PER_S
        / IDLE_CPU_WINDOW.as_secs_f64();
    let doctors = Arc::try_unwrap(ids).unwrap_or_else(|shared| shared.as_ref().clone());
    Ok((
        engine,
        Loaded {
            doctors,
            cold,
            grid,
            phases,
            mem,
            sizes,
            tally,
            stats,
            settled,
            settle_wait,
            idle_cores,
        },
    ))
}

/// Waits until the engine's background snapshot writes pause for [`SNAPSHOTS_IDLE`]
/// (at most [`SNAPSHOTS_IDLE_MAX`]); returns how long it waited.
async fn snapshot_writes_idle(engine: &Engine) -> Duration {
    let started = Instant::now();
    let mut written = engine.stats().snapshots_written;
    let mut quiet_since = Instant::now();
    while started.elapsed() < SNAPSHOTS_IDLE_MAX && quiet_since.elapsed() < SNAPSHOTS_IDLE {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = engine.stats().snapshots_written;
        if now != written {
            written = now;
            quiet_since = Instant::now();
        }
    }
    started.elapsed()
}

/// Waits until the live heap stops shrinking (at most [`HEAP_SETTLE_MAX`]); returns how
/// long it waited.
async fn heap_settled() -> Duration {
    let heap = || LIVE_HEAP_BYTES.load(Ordering::Relaxed) as u64;
    let started = Instant::now();
    let mut last = heap();
    let mut quiet_since = Instant::now();
    while started.elapsed() < HEAP_SETTLE_MAX && quiet_since.elapsed() < HEAP_SETTLE_QUIET {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = heap();
        if last.saturating_sub(now) > HEAP_SETTLE_SLACK_BYTES {
            quiet_since = Instant::now();
        }
        last = last.min(now);
    }
    started.elapsed()
}

// ---------------------------------------------------------------------------------------
// Step 2: restart and first bookings.

/// Memory after step 1's engine is gone.
struct Teardown {
    /// Right after the shutdown returned and the engine was dropped.
    dropped: Mem,
    /// How long the heap took to stop shrinking.
    waited: Duration,
    /// After that, and `malloc_trim`.
    trimmed: Mem,
}

/// One timed point of the restart.
struct RestartRow {
    step: String,
    /// Since the start call.
    since_start: Duration,
    /// Of this step alone.
    took: Duration,
    mem: Mem,
    active: u64,
}

struct Restart {
    rows: Vec<RestartRow>,
    /// Bookings acknowledged during the restart.
    acked: u64,
    /// Where the used doctor's actor was recovered from: snapshot seq and later events.
    used_history: String,
    /// Time from the start call to the first 201 on the never-activated doctor.
    first_booking: Option<Duration>,
    errors: Vec<String>,
}

/// The two bookings of the restart: on the never-activated doctor, then on a used one
/// (the slot after its first booking, which is free).
fn restart_bookings(loaded: &Loaded, args: &Args) -> [(&'static str, DoctorId, DateTime<Utc>); 2] {
    [
        (
            "first booking on a never-activated doctor",
            loaded.cold,
            loaded.grid.slot(slot_index(args.spacing, 0, 0)),
        ),
        (
            "first booking on a used doctor",
            loaded.doctors[0],
            loaded.grid.slot(slot_index(args.spacing, 0, 0) + 1),
        ),
    ]
}

async fn used_history(store: &dyn Store, doctor: DoctorId, bookings: u64) -> String {
    match store.load_doctor(doctor).await {
        Ok(Some(h)) => format!(
            "{bookings} bookings; snapshot {}, then {} journal events",
            h.snapshot
                .as_ref()
                .map_or("none".to_owned(), |s| format!("at seq {}", s.seq)),
            h.events.len()
        ),
        Ok(None) => "doctor not found".into(),
        Err(e) => format!("cannot read history: {e}"),
    }
}

/// The real application on the same Postgres database, booked over HTTP.
async fn restart_application(url: &str, loaded: &Loaded, args: &Args) -> Restart {
    let keys = JwtKeys::new(consult_scheduler::settings::DEV_JWT_SECRET.as_bytes(), 30);
    let token = keys.mint(Role::Patient, 2_000_001, now_s(), 3600);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(HTTP_TIMEOUT_S))
        .build()
        .expect("a reqwest client");
    let env = vec![
        ("CONSULT__SERVER__BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("CONSULT__DATABASE__URL".to_owned(), url.to_owned()),
        ("CONSULT__DEMO__SEED".to_owned(), "false".to_owned()),
        ("CONSULT__LOG__LEVEL".to_owned(), "warn".to_owned()),
    ];
    let mut out = Restart {
        rows: Vec::new(),
        acked: 0,
        used_history: String::new(),
        first_booking: None,
        errors: Vec::new(),
    };
    out.rows.push(RestartRow {
        step: "before start".into(),
        since_start: Duration::ZERO,
        took: Duration::ZERO,
        mem: Mem::now(),
        active: 0,
    });

    let started = Instant::now();
    let built = async {
        let settings = Settings::load(None, env).map_err(|e| e.to_string())?;
        Application::build(settings)
            .await
            .map_err(|e| e.to_string())
    };
    let app = match bounded("application build", built).await {
        Ok(Ok(app)) => app,
        Ok(Err(e)) | Err(e) => {
            out.errors
                .push(format!("the application did not start: {e}"));
            return out;
        }
    };
    let addr = app.local_addr();
    let engine = app.engine().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let built_at = started.elapsed();
    out.rows.push(RestartRow {
        step: "build (connect, migrations, engine start, bind)".into(),
        since_start: built_at,
        took: built_at,
        mem: Mem::now(),
        active: engine.stats().active_actors,
    });

    let url = format!("http://{addr}/patient/doctors/book");
    for (step, doctor, at) in restart_bookings(loaded, args) {
        let body = serde_json::json!({
            "doctor_id": doctor,
            "scheduled_at": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "consult_mode": "video",
        });
        let t = Instant::now();
        let sent = client
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        let took = t.elapsed();
        let since_start = started.elapsed();
        match sent {
            Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                out.acked += 1;
                out.first_booking.get_or_insert(since_start);
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                out.errors.push(format!("{step}: HTTP {status}: {text}"));
            }
            Err(e) => out.errors.push(format!("{step}: {e}")),
        }
        out.rows.push(RestartRow {
            step: step.into(),
            since_start,
            took,
            mem: Mem::now(),
            active: engine.stats().active_actors,
        });
    }

    let t = Instant::now();
    let _ = stop.send(());
    match bounded("application stop", running).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => out
            .errors
            .push(format!("server stopped with an error: {e}")),
        Ok(Err(e)) => out.errors.push(format!("server task failed: {e}")),
        Err(e) => out.errors.push(e),
    }
    out.rows.push(RestartRow {
        step: "graceful stop".into(),
        since_start: started.elapsed(),
        took: t.elapsed(),
        mem: Mem::now(),
        active: engine.stats().active_actors,
    });
    out
}

/// A new engine on the same in-memory store, booked through the engine API.
async fn restart_engine(store: Arc<dyn Store>, loaded: &Loaded, args: &Args) -> Restart {
    let mut out = Restart {
        rows: Vec::new(),
        acked: 0,
        used_history: String::new(),
        first_booking: None,
        errors: Vec::new(),
    };
    out.rows.push(RestartRow {
        step: "before start".into(),
        since_start: Duration::ZERO,
        took: Duration::ZERO,
        mem: Mem::now(),
        active: 0,
    });
    let started = Instant::now();
    let engine = match Engine::start(args.settings.clone(), store).await {
        Ok(e) => e,
        Err(e) => {
            out.errors.push(format!("the engine did not start: {e}"));
            return out;
        }
    };
    let built_at = started.elapsed();
    out.rows.push(RestartRow {
        step: "engine start (in-memory store)".into(),
        since_start: built_at,
        took: built_at,
        mem: Mem::now(),
        active: engine.stats().active_actors,
    });
    for (step, doctor, at) in restart_bookings(loaded, args) {
        let t = Instant::now();
        let result = engine
            .book(BookingRequest {
                doctor_id: doctor,
                patient_id: 2_000_001,
                scheduled_at: at,
                mode: ConsultMode::Video,
                medical: MedicalInfo::default(),
            })
            .await;
        let took = t.elapsed();
        let since_start = started.elapsed();
        match result {
            Ok(_) => {
                out.acked += 1;
                out.first_booking.get_or_insert(since_start);
            }
            Err(e) => out.errors.push(format!("{step}: {e}")),
        }
        out.rows.push(RestartRow {
            step: format!("{step} (engine API)"),
            since_start,
            took,
            mem: Mem::now(),
            active: engine.stats().active_actors,
        });
    }
    let t = Instant::now();
    engine.shutdown().await;
    out.rows.push(RestartRow {
        step: "engine shutdown".into(),
        since_start: started.elapsed(),
        took: t.elapsed(),
        mem: Mem::now(),
        active: engine.stats().active_actors,
    });
    out
}

// ---------------------------------------------------------------------------------------
// Checks.

/// The store's view at the end, against what callers were told.
struct Verdict {
    acknowledged: u64,
    active_rows: u64,
    double_bookings: u64,
    error: Option<String>,
}

impl Verdict {
    fn ok(&self) -> bool {
        self.error.is_none() && self.active_rows == self.acknowledged && self.double_bookings == 0
    }
}

/// Active rows, and active rows starting before the latest end of an earlier active row
/// of the same doctor, counted by Postgres.
async fn verify_postgres(url: &str) -> Result<(u64, u64), String> {
    const ACTIVE: &str =
        "SELECT COUNT(*) FROM consultations WHERE status IN ('pending', 'scheduled')";
    const OVERLAPS: &str = "SELECT COUNT(*) FROM ( \
         SELECT scheduled_at, MAX(scheduled_at + duration_minutes * INTERVAL '1 minute') \
           OVER (PARTITION BY doctor_id ORDER BY scheduled_at, id \
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS latest_end \
         FROM consultations WHERE status IN ('pending', 'scheduled')) t \
         WHERE scheduled_at < latest_end";
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let (active,): (i64,) = sqlx::query_as(ACTIVE)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let (overlaps,): (i64,) = sqlx::query_as(OVERLAPS)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.close().await;
    Ok((active as u64, overlaps as u64))
}

/// The same counts from the store's ordered list of active consultations.
async fn verify_store(store: &dyn Store) -> Result<(u64, u64), String> {
    let rows = store
        .active_consultations(None)
        .await
        .map_err(|e| e.to_string())?;
    let mut overlaps = 0;
    let mut current: Option<(DoctorId, DateTime<Utc>)> = None; // (doctor, latest end)
    for c in &rows {
        let end = c.scheduled_at + chrono::Duration::minutes(i64::from(c.duration_minutes));
        match &mut current {
            Some((d, latest)) if *d == c.doctor_id => {
                if c.scheduled_at < *latest {
                    overlaps += 1;
                }
                *latest = (*latest).max(end);
            }
            _ => current = Some((c.doctor_id, end)),
        }
    }
    Ok((rows.len() as u64, overlaps))
}

// ---------------------------------------------------------------------------------------
// The report.

fn print_header(args: &Args) {
    let s = &args.settings;
    println!("# Scale benchmark\n");
    println!(
        "backend {}, {} doctors (+1 never used), {} bookings ({} apart per doctor, 30-minute slots over {HORIZON_DAYS} days), {} booking tasks, {} CPUs; engine: shards={}, journal_max_batch={}, journal_flush_interval_ms={}, snapshot_interval_ms={}, passivate_after_idle_ms={}",
        args.backend.name(),
        args.doctors,
        args.bookings,
        args.spacing,
        args.clients,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        s.shards,
        s.journal_max_batch,
        s.journal_flush_interval_ms,
        s.snapshot_interval_ms,
        s.passivate_after_idle_ms,
    );
}

fn print_setup(phases: &[Phase]) {
    println!("\n## Setup throughput\n");
    println!("| phase | items | time (s) | items/s | notes |");
    println!("|---|---:|---:|---:|---|");
    for p in phases {
        println!(
            "| {} | {} | {:.2} | {:.0} | {} |",
            p.name,
            p.items,
            p.took.as_secs_f64(),
            per_s(p.items, p.took),
            p.note
        );
    }
}

fn print_memory(loaded: &Loaded, args: &Args, teardown: &Teardown, bare_actor: f64) {
    println!("\n## Resident memory (step 1, in-process engine)\n");
    println!("Heap = bytes the program holds allocated (counting allocator); RSS also has allocator overhead, freed-but-kept pages, stacks and code.\n");
    println!("| point | VmRSS (MiB) | VmHWM (MiB) | heap live (MiB) | active actors |");
    println!("|---|---:|---:|---:|---:|");
    for (point, m, active) in &loaded.mem {
        println!(
            "| {point} | {} | {} | {} | {active} |",
            mib(m.rss),
            mib(m.hwm),
            mib(m.heap)
        );
    }
    println!(
        "| engine shut down and dropped | {} | {} | {} | 0 |",
        mib(teardown.dropped.rss),
        mib(teardown.dropped.hwm),
        mib(teardown.dropped.heap)
    );
    println!(
        "| heap settled ({} ms later), trimmed | {} | {} | {} | 0 |",
        teardown.waited.as_millis(),
        mib(teardown.trimmed.rss),
        mib(teardown.trimmed.hwm),
        mib(teardown.trimmed.heap)
    );
    println!(
        "\n`snapshot writes idle` came {} ms after the last booking.",
        loaded.settle_wait.as_millis()
    );
    println!(
        "\nAt rest ({} active doctor actors, no requests, {} s right after that): this process used {:.3} cores.",
        loaded.settled.active_actors,
        IDLE_CPU_WINDOW.as_secs(),
        loaded.idle_cores
    );

    let at = |name: &str| {
        loaded
            .mem
            .iter()
            .find(|(p, _, _)| *p == name)
            .map(|(_, m, _)| *m)
            .expect("every point is measured")
    };
    // Per-booking figures use the settled point: in-flight snapshot work is not state.
    let (started, created, active, booked) = (
        at("engine started"),
        at("doctors created"),
        at("doctors activated"),
        at("snapshot writes idle"),
    );
    let d = args.doctors;
    let b = loaded.tally.acked;
    println!("\n| measure | RSS (bytes) | heap (bytes) |");
    println!("|---|---:|---:|");
    println!(
        "| per active doctor, activation only | {} | {} |",
        per_item(created.rss, active.rss, d),
        per_item(created.heap, active.heap, d)
    );
    println!(
        "| of which ractor's own per actor ({BARE_ACTORS} bare actors linked to one supervisor) | - | {bare_actor:.0} |"
    );
    println!(
        "| per acknowledged booking | {} | {} |",
        per_item(active.rss, booked.rss, b),
        per_item(active.heap, booked.heap, b)
    );
    println!(
        "| per active doctor with its bookings (since engine start) | {} | {} |",
        per_item(started.rss, booked.rss, d),
        per_item(started.heap, booked.heap, d)
    );
    let projected = if d == GOAL_DOCTORS {
        booked.rss
    } else {
        // Base of the process plus the measured per-doctor growth, at the goal's size.
        let per_doctor = (booked.rss as f64 - started.rss as f64) / d as f64;
        (started.rss as f64 + per_doctor * GOAL_DOCTORS as f64).max(0.0) as u64
    };
    println!(
        "\nGoal: {GOAL_DOCTORS} active doctors in < 1 GiB RSS: {} MiB{} with {:.0} bookings per doctor, snapshot writes idle -> {}",
        mib(projected),
        if d == GOAL_DOCTORS {
            " measured"
        } else {
            " projected from this run"
        },
        b as f64 / d as f64,
        if projected < GOAL_RSS_BYTES {
            "met"
        } else {
            "NOT met"
        },
    );
    if args.backend == Backend::Memory {
        println!("(memory backend: the store's own tables, 1 row per booking plus journal and notifications, are in this process too)");
    }
}

/// Where activation's and booking's memory went: the size classes whose live allocations
/// grew most, per doctor.
fn print_alloc_sizes(loaded: &Loaded, doctors: u64) {
    let point = |name: &str| {
        loaded
            .mem
            .iter()
            .position(|(p, _, _)| *p == name)
            .expect("every point is measured")
    };
    let steps = [
        (
            "activation",
            point("doctors created"),
            point("doctors activated"),
        ),
        (
            "bookings",
            point("doctors activated"),
            point("snapshot writes idle"),
        ),
        (
            "the snapshot backlog right after the bookings",
            point("snapshot writes idle"),
            point("bookings acknowledged"),
        ),
    ];
    for (step, from, to) in steps {
        let (a, b) = (&loaded.sizes[from], &loaded.sizes[to]);
        let mut grown: Vec<(usize, i64)> = a
            .iter()
            .zip(b)
            .enumerate()
            .map(|(class, (x, y))| (class, y - x))
            .filter(|&(_, n)| n > 0)
            .collect();
        // Approximate bytes: the middle of the class.
        let bytes = |class: usize, n: i64| n as f64 * (class * 8 + 4) as f64;
        grown.sort_by(|x, y| bytes(y.0, y.1).total_cmp(&bytes(x.0, x.1)));
        let total: f64 = grown.iter().map(|&(c, n)| bytes(c, n)).sum();
        println!(
            "\n### Live allocations added by {step}, by size (top 12 of {:.0} bytes per doctor)\n",
            total / doctors as f64
        );
        println!("| size (bytes) | allocations per doctor | bytes per doctor |");
        println!("|---|---:|---:|");
        for &(class, n) in grown.iter().take(12) {
            let size = if class == SIZE_CLASSES - 1 {
                format!(">= {}", class * 8)
            } else {
                format!("{}..{}", class * 8, class * 8 + 7)
            };
            println!(
                "| {size} | {:.2} | {:.0} |",
                n as f64 / doctors as f64,
                bytes(class, n) / doctors as f64
            );
        }
    }
}

fn print_stats(loaded: &Loaded, shutdown: Duration, final_stats: &StatsSnapshot) {
    let stats = &loaded.stats;
    println!("\n## Engine after the bookings\n");
    println!("| activations | passivations | actor failures | overloaded | journal batches | records/batch | mean append (ms) | snapshots written (during bookings / until idle / incl. shutdown) | snapshot store calls (same) | shutdown (ms) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---|---|---:|");
    let batches = stats.journal_batches.max(1) as f64;
    println!(
        "| {} | {} | {} | {} | {} | {:.1} | {:.2} | {} / {} / {} | {} / {} / {} | {} |",
        stats.activations,
        stats.passivations,
        stats.actor_failures,
        stats.overloaded,
        stats.journal_batches,
        stats.journal_records as f64 / batches,
        stats.journal_flush_micros as f64 / 1e3 / batches,
        stats.snapshots_written,
        loaded.settled.snapshots_written,
        final_stats.snapshots_written,
        stats.snapshot_batches,
        loaded.settled.snapshot_batches,
        final_stats.snapshot_batches,
        ms(shutdown),
    );
    for (e, n) in &loaded.tally.errors {
        println!("- booking error: {n} x `{e}`");
    }
}

fn print_restart(r: &Restart, backend: Backend, bookings: u64) {
    println!("\n## Restart with {bookings} bookings in the store (step 2)\n");
    match backend {
        Backend::Postgres => println!("The real `Application` (Settings::load + Application::build + run_until_stopped) on the same database; bookings are `POST /patient/doctors/book` over HTTP (reqwest, new connection), done when the 201 arrives. Times from before `Settings::load`. Used doctor: {}.\n", r.used_history),
        Backend::Memory => println!("A new `Engine` on the same in-memory store (the application has no in-memory store URL); bookings through the engine API. Used doctor: {}.\n", r.used_history),
    }
    println!("| step | since start (ms) | step took (ms) | VmRSS (MiB) | heap live (MiB) | active actors |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &r.rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.step,
            ms(row.since_start),
            ms(row.took),
            mib(row.mem.rss),
            mib(row.mem.heap),
            row.active
        );
    }
    for e in &r.errors {
        println!("- error: {e}");
    }
    match r.first_booking {
        Some(t) => println!(
            "\nGoal: first booking < {} s after start: {:.0} ms -> {}",
            GOAL_FIRST_BOOKING.as_secs(),
            t.as_secs_f64() * 1e3,
            if t < GOAL_FIRST_BOOKING {
                "met"
            } else {
                "NOT met"
            }
        ),
        None => println!("\nGoal: first booking < 2 s after start: no booking succeeded"),
    }
}

fn print_verdict(v: &Verdict) {
    println!("\n## Correctness (from the store after the final stop)\n");
    println!("| acknowledged | active rows | double bookings | result |");
    println!("|---:|---:|---:|---|");
    println!(
        "| {} | {} | {} | {} |",
        v.acknowledged,
        v.active_rows,
        v.double_bookings,
        if v.ok() { "ok" } else { "FAILED" }
    );
    if let Some(e) = &v.error {
        println!("- error: {e}");
    }
    println!("\ndouble bookings: {}", v.double_bookings);
}

// ---------------------------------------------------------------------------------------

async fn run(args: &Args, start: Mem) -> Result<bool, String> {
    let fixture = Fixture::fresh(args.backend).await?;
    let result = run_on(&fixture, args, start).await;
    if let Some((store, name)) = &fixture.pg {
        store.close().await;
        drop_postgres(name).await;
    }
    result
}

async fn run_on(fixture: &Fixture, args: &Args, start: Mem) -> Result<bool, String> {
    let (engine, loaded) = load(fixture, args, start).await?;

    eprintln!("[{}] shutting the engine down", args.backend.name());
    let t = Instant::now();
    bounded("engine shutdown", engine.shutdown()).await?;
    let shutdown = t.elapsed();
    let final_stats = engine.stats();
    let used = used_history(
        fixture.store.as_ref(),
        loaded.doctors[0],
        args.bookings_of(0),
    )
    .await;
    // Step 2 starts from a process holding no engine: drop it, close the benchmark's own
    // connections, let what the shutdown left running finish, hand freed pages back.
    drop(engine);
    if let Some((store, _)) = &fixture.pg {
        store.close().await;
    }
    let dropped = Mem::now();
    let waited = heap_settled().await;
    trim_heap();
    let teardown = Teardown {
        dropped,
        waited,
        trimmed: Mem::now(),
    };
    // With the engine gone, ractor's own cost per actor, for the memory table.
    let bare_actor = bounded("bare actors", bare_actor_heap()).await??;

    print_header(args);
    print_setup(&loaded.phases);
    print_memory(&loaded, args, &teardown, bare_actor);
    if args.alloc_sizes {
        print_alloc_sizes(&loaded, args.doctors);
    }
    print_stats(&loaded, shutdown, &final_stats);

    eprintln!("[{}] restarting", args.backend.name());
    let mut restart = match fixture.pg_name() {
        Some(name) => restart_application(&pg_url_for(name), &loaded, args).await,
        None => restart_engine(Arc::clone(&fixture.store), &loaded, args).await,
    };
    restart.used_history = used;
    print_restart(&restart, args.backend, loaded.tally.acked);

    eprintln!("[{}] checking the store", args.backend.name());
    let counted = match fixture.pg_name() {
        Some(name) => bounded("check", verify_postgres(&pg_url_for(name))).await?,
        None => bounded("check", verify_store(fixture.store.as_ref())).await?,
    };
    let acknowledged = loaded.tally.acked + restart.acked;
    let verdict = match counted {
        Ok((active_rows, double_bookings)) => Verdict {
            acknowledged,
            active_rows,
            double_bookings,
            error: None,
        },
        Err(e) => Verdict {
            acknowledged,
            active_rows: 0,
            double_bookings: 0,
            error: Some(e),
        },
    };
    print_verdict(&verdict);
    Ok(verdict.ok() && restart.errors.is_empty())
}

fn main() {
    let start = Mem::now();
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("scale bench: {e}");
            std::process::exit(2);
        }
    };
    COUNT_SIZES.store(args.alloc_sizes, Ordering::Relaxed);
    if let Some(level) = &args.log {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ok = runtime.block_on(run(&args, start));
    match ok {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("scale bench: {e}");
            std::process::exit(1);
        }
    }
}
