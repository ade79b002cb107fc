//! Several instances of the release binary on one Postgres database (issue 13): what a
//! second and a third instance change for durable bookings, what forwarding a request to
//! a doctor's owner costs, and how long the survivors take to serve the doctors of an
//! instance that was killed (`kill -9`) or stopped (SIGTERM). Prints markdown tables.
//!
//! Real processes on one fresh Postgres database (dropped at the end), driven with the
//! harness of the process tests (`tests/process/cluster_support.rs`, included below): the
//! instances (each on its own loopback port, JSON logs in a temp directory), bookings with
//! their retries (a 503 is retried on the next instance after its `Retry-After`, capped at
//! 2 s; a refused connection goes on to the next instance), and the store checks. Every
//! instance runs with 32 lease shards (so that a doctor of each shard is cheap to make) and
//! a 3 s lease TTL (so a `kill -9` is over in seconds; the lease is renewed every second,
//! one small transaction per instance), Vonage sessions off, the per-user rate limit off.
//!
//! One cluster grows and shrinks, in this order:
//! 1. **Scale-out**, with 1, then 2, then 3 instances (each joins under no load and the
//!    shards spread before measuring), 64 clients, requests spread round-robin over the
//!    running instances:
//!    - `uniform`: each booking takes the next slot of a shuffled pool of the free 15-minute
//!      slots of 200 doctors over 14 days (so nearly every answer is a 201);
//!    - `hot`: 4 doctors made for the stage; each booking picks a random one of them and a
//!      random slot of its current window of 16 free slots (the window moves on once 16 of
//!      its slots are taken), so 64 clients race for 64 slots at any time (201s and 409s).
//! 2. **Forwarding**, with 2 instances: the uniform load sent only to each doctor's owner
//!    (by the lease table), then only to the other instance (one forwarding hop), in four
//!    segments owner, other, other, owner so that drift on the machine hits both alike.
//! 3. **`kill -9`** of one of 3 instances under the uniform load (round-robin over all 3):
//!    the time from the kill until the lease table gives every shard it held to a survivor,
//!    and until a booking for a doctor of every such shard, sent to the survivors from the
//!    moment of the kill and repeated every 50 ms, is answered 201 or 409 (served); the 5xx
//!    answers clients saw meanwhile (503 included, retried). Then the killed instance is
//!    started again and the cluster rebalances.
//! 4. **SIGTERM** of one of 3 instances under the same load: the handoff as its own log
//!    reports it (`shards_handed_off` events: shards, ms from stopping admission to the
//!    released leases), the time to process exit, to every one of its shards leased
//!    elsewhere and to every one served through the others (probes as above), and the 5xx
//!    answers seen.
//!
//! Latency is per HTTP request (every answered attempt, retries included), in ms; durable
//! bookings/s counts 201s over the run's time (closed loop: a client sends its next
//! booking when the last one ended). After each measurement the store is checked with SQL
//! (`check_store`): every 201 stored as acknowledged, no slot held twice, no two active
//! consultations of a doctor overlapping, none that no client asked for; a failed check
//! panics and the bench exits non-zero. Every instance is killed if anything panics (the
//! harness's `Server` kills its process on drop) and the whole bench is bounded in time.
//!
//! ```text
//! cargo bench --bench cluster -- [--seconds N] [--quick]
//! ```
//!
//! - `--seconds N`: seconds per measurement (default 10); `--quick`: 1 s per measurement
//!   and fewer doctors (CI; the whole bench in about 25 s once the release binary is built).
//!
//! Postgres comes from `CONSULT_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! The release binary is built (`cargo build --release --bin consult-scheduler`) if it is
//! out of date, as the process tests do.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::task::JoinHandle;

#[path = "common/mod.rs"]
mod common;
use common::{
    histogram, machine_ticks, per_s, postgres_ticks, process_ticks, HIST_MAX_US, TICKS_PER_S,
};

#[path = "../tests/process/support.rs"]
#[allow(dead_code)]
mod support;

#[path = "../tests/process/cluster_support.rs"]
#[allow(dead_code)]
mod cluster_support;

use cluster_support::{
    book, check_store, set_probe_slots_apart, with_test_db, ClusterSpec, Final, Ledger, Outcome,
    Retry, Slot, Summary, TestCluster,
};

/// Lease shards of every instance: few, so that a doctor of each is cheap to make.
const SHARDS: u32 = 32;
/// Lease TTL of every instance: short, so that a `kill -9` is over in seconds.
const LEASE_TTL_MS: u64 = 3_000;
/// Concurrent clients of every load (each one booking at a time).
const CLIENTS: usize = 64;
const DEFAULT_SECONDS: u64 = 10;
const QUICK_SECONDS: u64 = 1;
/// Doctors and days of free slots of the uniform load (and the probes), full and quick.
const DOCTORS: usize = 200;
const QUICK_DOCTORS: usize = 48;
const DAYS: u32 = 14;
const QUICK_DAYS: u32 = 7;
/// Doctors of one hot stage, slots raced at a time per doctor, days of their free slots.
const HOT_DOCTORS: usize = 4;
const HOT_WINDOW: usize = 16;
const HOT_DAYS: u32 = 14;
/// Patients of the loads (random), and the first probe patient (one per shard).
const UNIFORM_PATIENTS: Range<i64> = 100_000..1_000_000;
const HOT_PATIENTS: Range<i64> = 1_000_000..1_001_000;
const PROBE_PATIENTS: i64 = 2_000_000;
/// How often a probe is repeated until its shard is served.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// A failover or handoff not over by TTL + this fails the bench.
const FAULT_SLACK: Duration = Duration::from_secs(12);
/// The longest a node may take to join or leave and the cluster to rebalance.
const BALANCE_DEADLINE: Duration = Duration::from_secs(30);

/// Retries of the loads' bookings: as in the tests, with a shorter deadline so that a run
/// ends soon after it is stopped.
const LOAD_RETRY: Retry = Retry {
    max_answered_attempts: 6,
    deadline: Duration::from_secs(20),
    request_timeout: Duration::from_secs(12),
};

/// The command line (`cargo bench --bench cluster -- [flags]`).
#[derive(Debug, clap::Parser)]
#[command(about = "Several instances of the release binary on one Postgres database")]
struct Cli {
    /// Seconds per measurement (default 10; 1 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: Option<u64>,
    /// Short measurements and fewer doctors, for CI.
    #[arg(long)]
    quick: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// A benchmark-name filter `cargo bench` may pass; ignored.
    #[arg(hide = true)]
    filter: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Args {
    run_for: Duration,
    doctors: usize,
    days: u32,
    quick: bool,
}

impl Args {
    fn parse() -> Self {
        let cli = <Cli as clap::Parser>::parse();
        let seconds = cli.seconds.unwrap_or(if cli.quick {
            QUICK_SECONDS
        } else {
            DEFAULT_SECONDS
        });
        Self {
            run_for: Duration::from_secs(seconds),
            doctors: if cli.quick { QUICK_DOCTORS } else { DOCTORS },
            days: if cli.quick { QUICK_DAYS } else { DAYS },
            quick: cli.quick,
        }
    }

    /// Unmeasured load before a measurement (new owners load their doctors).
    fn warm_up(&self) -> Duration {
        (self.run_for / 4).min(Duration::from_secs(1))
    }

    /// The whole bench, setup included, must end within this.
    fn budget(&self) -> Duration {
        Duration::from_secs(240) + self.run_for * 16
    }
}

// ---------------------------------------------------------------------------------------
// The load
// ---------------------------------------------------------------------------------------

/// A shuffled pool of free slots; each booking takes the next one.
struct SlotPool {
    slots: Vec<Slot>,
    next: AtomicUsize,
}

impl SlotPool {
    fn take(&self) -> Option<Slot> {
        self.slots.get(self.next.fetch_add(1, Relaxed)).copied()
    }

    fn left(&self) -> usize {
        self.slots.len().saturating_sub(self.next.load(Relaxed))
    }
}

/// The hot doctors of a stage: each doctor's free slots in time order, raced a window of
/// [`HOT_WINDOW`] at a time.
struct HotDoctors {
    slots: Vec<Vec<Slot>>,
    index: HashMap<i64, usize>,
    /// Slots of each doctor taken so far (acknowledged, or asked for by an attempt whose
    /// answer was lost): the window is `taken / HOT_WINDOW`.
    taken: Vec<AtomicUsize>,
}

impl HotDoctors {
    fn new(slots: Vec<Slot>) -> Self {
        let mut by_doctor: BTreeMap<i64, Vec<Slot>> = BTreeMap::new();
        for slot in slots {
            by_doctor.entry(slot.doctor_id).or_default().push(slot);
        }
        let index = by_doctor.keys().enumerate().map(|(i, &d)| (d, i)).collect();
        let slots: Vec<Vec<Slot>> = by_doctor
            .into_values()
            .map(|mut v| {
                v.sort();
                v
            })
            .collect();
        let taken = slots.iter().map(|_| AtomicUsize::new(0)).collect();
        Self {
            slots,
            index,
            taken,
        }
    }

    /// A random slot of a random doctor's current window; `None` when every doctor's slots
    /// are used up.
    fn pick(&self, rng: &mut impl Rng) -> Option<Slot> {
        let n = self.slots.len();
        let first = rng.random_range(0..n);
        (0..n).find_map(|k| {
            let d = (first + k) % n;
            let lo = self.taken[d].load(Relaxed) / HOT_WINDOW * HOT_WINDOW;
            let slots = &self.slots[d];
            (lo < slots.len())
                .then(|| slots[rng.random_range(lo..(lo + HOT_WINDOW).min(slots.len()))])
        })
    }

    fn observe(&self, outcome: &Outcome) {
        if outcome.ack().is_some() || !outcome.ambiguous.is_empty() {
            if let Some(&d) = self.index.get(&outcome.slot.doctor_id) {
                self.taken[d].fetch_add(1, Relaxed);
            }
        }
    }
}

/// What the clients of a load book.
enum Pick {
    Uniform(Arc<SlotPool>),
    Hot(HotDoctors),
}

impl Pick {
    fn next(&self, rng: &mut impl Rng) -> Option<Slot> {
        match self {
            Pick::Uniform(pool) => pool.take(),
            Pick::Hot(hot) => hot.pick(rng),
        }
    }

    fn observe(&self, outcome: &Outcome) {
        if let Pick::Hot(hot) = self {
            hot.observe(outcome);
        }
    }
}

/// Where the requests of a load go.
enum Route {
    /// Every instance in turn, one booking after the other (retries go on to the next).
    RoundRobin {
        targets: Vec<String>,
        next: AtomicUsize,
    },
    /// Only to the instance chosen for the slot's doctor (its owner, or another).
    ByDoctor(HashMap<i64, [String; 1]>),
}

impl Route {
    fn round_robin(targets: Vec<String>) -> Self {
        Route::RoundRobin {
            targets,
            next: AtomicUsize::new(0),
        }
    }

    /// The targets of a booking of `doctor` and the first to try.
    fn targets(&self, doctor: i64) -> (&[String], usize) {
        match self {
            Route::RoundRobin { targets, next } => (targets, next.fetch_add(1, Relaxed)),
            Route::ByDoctor(by_doctor) => (&by_doctor[&doctor][..], 0),
        }
    }
}

/// A running load of [`CLIENTS`] clients; its outcomes go to its own ledger.
struct Generator {
    stop: Arc<AtomicBool>,
    exhausted: Arc<AtomicBool>,
    ledger: Arc<Ledger>,
    started: Instant,
    tasks: Vec<JoinHandle<()>>,
}

/// What a load did: its outcomes, and over how long.
#[derive(Default)]
struct Run {
    elapsed: Duration,
    outcomes: Vec<Outcome>,
    /// The slots ran out before the load was stopped.
    exhausted: bool,
    /// The CPU used meanwhile (zeros where not measured).
    cpu: CpuTicks,
    /// Journal records written and batches (transactions) they took meanwhile, by the
    /// instances' metrics (zeros where not measured).
    journal: (f64, f64),
}

/// Journal records and batches so far, summed over the running instances
/// (`journal_batch_size_records` histogram: its sum and count).
async fn journal_totals(cluster: &TestCluster) -> (f64, f64) {
    let mut totals = (0.0, 0.0);
    for i in (0..cluster.nodes.len()).filter(|&i| cluster.nodes[i].is_running()) {
        if let Some(m) = cluster.metrics(i).await {
            totals.0 += m.get("journal_batch_size_records_sum");
            totals.1 += m.get("journal_batch_size_records_count");
        }
    }
    totals
}

/// CPU clock ticks (from `/proc`) of what a run uses.
#[derive(Debug, Default, Clone, Copy)]
struct CpuTicks {
    /// The instances (processes of the release binary).
    instances: u64,
    /// Every `postgres` process of the server.
    postgres: u64,
    /// This process: the load generator (and the bench's own polling).
    generator: u64,
    /// The whole machine, busy; what is not in the three above is other work on it.
    machine: u64,
}

impl CpuTicks {
    /// Ticks so far, with the instances' process ids.
    fn now(instances: &[u32]) -> Self {
        Self {
            instances: instances.iter().map(|&pid| process_ticks(pid)).sum(),
            postgres: postgres_ticks(),
            generator: process_ticks(std::process::id()),
            machine: machine_ticks().busy,
        }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            instances: self.instances.saturating_sub(earlier.instances),
            postgres: self.postgres.saturating_sub(earlier.postgres),
            generator: self.generator.saturating_sub(earlier.generator),
            machine: self.machine.saturating_sub(earlier.machine),
        }
    }

    fn add(&mut self, other: Self) {
        self.instances += other.instances;
        self.postgres += other.postgres;
        self.generator += other.generator;
        self.machine += other.machine;
    }

    /// Busy ticks of the machine outside the instances, Postgres and the generator.
    fn other(self) -> u64 {
        self.machine
            .saturating_sub(self.instances + self.postgres + self.generator)
    }
}

/// The process ids of the running instances.
fn instance_pids(cluster: &TestCluster) -> Vec<u32> {
    cluster
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(|n| n.server().pid())
        .collect()
}

impl Generator {
    fn start(
        client: &reqwest::Client,
        pick: Pick,
        route: Route,
        patients: Range<i64>,
    ) -> Generator {
        let (pick, route) = (Arc::new(pick), Arc::new(route));
        let stop = Arc::new(AtomicBool::new(false));
        let exhausted = Arc::new(AtomicBool::new(false));
        let ledger = Ledger::new();
        let tasks = (0..CLIENTS)
            .map(|_| {
                let (client, pick, route, stop, exhausted, ledger, patients) = (
                    client.clone(),
                    Arc::clone(&pick),
                    Arc::clone(&route),
                    Arc::clone(&stop),
                    Arc::clone(&exhausted),
                    Arc::clone(&ledger),
                    patients.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Relaxed) {
                        let (slot, patient) = {
                            let mut rng = rand::rng();
                            (pick.next(&mut rng), rng.random_range(patients.clone()))
                        };
                        let Some(slot) = slot else {
                            exhausted.store(true, Relaxed);
                            return;
                        };
                        let (targets, first) = route.targets(slot.doctor_id);
                        let outcome =
                            book(&client, targets, first, patient, slot, LOAD_RETRY).await;
                        pick.observe(&outcome);
                        ledger.record(outcome);
                    }
                })
            })
            .collect();
        Generator {
            stop,
            exhausted,
            ledger,
            started: Instant::now(),
            tasks,
        }
    }

    /// Runs a load for `run_for`, then stops it.
    /// Runs a load through `cluster` for `run_for`, then stops it; with the CPU used.
    async fn run_for(
        cluster: &TestCluster,
        pick: Pick,
        route: Route,
        patients: Range<i64>,
        run_for: Duration,
    ) -> Run {
        let pids = instance_pids(cluster);
        let journal = journal_totals(cluster).await;
        let before = CpuTicks::now(&pids);
        let load = Generator::start(&cluster.client, pick, route, patients);
        tokio::time::sleep(run_for).await;
        let mut run = load.stop().await;
        run.cpu = CpuTicks::now(&pids).since(before);
        let after = journal_totals(cluster).await;
        run.journal = (after.0 - journal.0, after.1 - journal.1);
        run
    }

    /// Stops issuing bookings and waits for those under way (each ends within its retry
    /// deadline and one request timeout).
    async fn stop(mut self) -> Run {
        self.stop.store(true, Relaxed);
        let until = tokio::time::Instant::now()
            + LOAD_RETRY.deadline
            + LOAD_RETRY.request_timeout
            + Duration::from_secs(5);
        for task in std::mem::take(&mut self.tasks) {
            tokio::time::timeout_at(until, task)
                .await
                .expect("a load did not stop in time")
                .expect("a booking client panicked");
        }
        Run {
            elapsed: self.started.elapsed(),
            outcomes: self.ledger.outcomes(),
            exhausted: self.exhausted.load(Relaxed),
            cpu: CpuTicks::default(),
            journal: (0.0, 0.0),
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// When each shard of a fault was first seen leased to another instance.
type Moves = Arc<Mutex<HashMap<u32, Instant>>>;

/// Books one probe slot per shard through `via` until each is served elsewhere: a 201 or a
/// 409 (the shard's owner decided) to a request sent after the shard was seen leased to
/// another instance (`moved`; before that, a leaving instance may still serve it through
/// a forward). Repeated every [`PROBE_EVERY`]; for each shard the time from `since` to
/// that answer. Panics at the deadline with the shards not served.
async fn probe_until_served(
    client: &reqwest::Client,
    via: Vec<String>,
    probes: BTreeMap<u32, Slot>,
    moved: &Moves,
    since: Instant,
    deadline: Duration,
    ledger: &Arc<Ledger>,
) -> BTreeMap<u32, Duration> {
    let via = Arc::new(via);
    let tasks: Vec<_> = probes
        .into_iter()
        .enumerate()
        .map(|(k, (shard, slot))| {
            let (client, via, ledger, moved) = (
                client.clone(),
                Arc::clone(&via),
                Arc::clone(ledger),
                Arc::clone(moved),
            );
            tokio::spawn(async move {
                for n in k.. {
                    let left = deadline.saturating_sub(since.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    let retry = Retry {
                        max_answered_attempts: 1,
                        deadline: left,
                        request_timeout: left.min(Duration::from_secs(8)),
                    };
                    let patient = PROBE_PATIENTS + i64::from(shard);
                    let outcome = book(&client, &via, n, patient, slot, retry).await;
                    let served = matches!(outcome.last, Final::Booked(_) | Final::Conflict);
                    let last = outcome.attempts.last().map(|a| (a.sent, a.answered));
                    ledger.record(outcome);
                    let moved_at = moved.lock().unwrap().get(&shard).copied();
                    if let (true, Some((sent, answered)), Some(moved_at)) = (served, last, moved_at)
                    {
                        if sent >= moved_at {
                            return (shard, Some(answered.duration_since(since)));
                        }
                    }
                    tokio::time::sleep(PROBE_EVERY).await;
                }
                (shard, None)
            })
        })
        .collect();
    let mut served = BTreeMap::new();
    let mut not_served = Vec::new();
    for task in tasks {
        match task.await.expect("a probe panicked") {
            (shard, Some(after)) => {
                served.insert(shard, after);
            }
            (shard, None) => not_served.push(shard),
        }
    }
    assert!(
        not_served.is_empty(),
        "shards {not_served:?} were not served through {via:?} within {deadline:?}; probe answers:\n{}",
        Summary::failures(&ledger.outcomes(), 8)
    );
    served
}

// ---------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------

/// Throughput, latency and answers of a run (or of several runs of one kind, merged).
struct Figures {
    elapsed: Duration,
    summary: Summary,
    /// Answered requests (every attempt with a status).
    requests: u64,
    latency_us: Histogram<u64>,
    exhausted: bool,
    cpu: CpuTicks,
    journal: (f64, f64),
    /// Examples of the bookings that ended neither in 201 nor in 409.
    other_ends: Vec<String>,
    /// The 5xx answers by status and message, with their counts.
    five_xx: BTreeMap<String, usize>,
}

impl Figures {
    fn new() -> Self {
        Self {
            elapsed: Duration::ZERO,
            summary: Summary::default(),
            requests: 0,
            latency_us: histogram(),
            exhausted: false,
            cpu: CpuTicks::default(),
            journal: (0.0, 0.0),
            other_ends: Vec::new(),
            five_xx: BTreeMap::new(),
        }
    }

    fn of(run: &Run) -> Self {
        let mut f = Self::new();
        f.add(run);
        f
    }

    fn add(&mut self, run: &Run) {
        self.elapsed += run.elapsed;
        self.exhausted |= run.exhausted;
        self.cpu.add(run.cpu);
        self.journal.0 += run.journal.0;
        self.journal.1 += run.journal.1;
        for o in &run.outcomes {
            if self.other_ends.len() < 5 && !matches!(o.last, Final::Booked(_) | Final::Conflict) {
                let answers: Vec<String> = o
                    .attempts
                    .iter()
                    .map(|a| a.status.map_or("lost".to_owned(), |s| s.to_string()))
                    .collect();
                self.other_ends.push(format!(
                    "{} (answers: {}; {} refused connections)",
                    o.last.describe(),
                    answers.join(", "),
                    o.refused
                ));
            }
        }
        let s = Summary::of(&run.outcomes);
        let t = &mut self.summary;
        t.bookings += s.bookings;
        t.booked += s.booked;
        t.conflicts += s.conflicts;
        t.rejected += s.rejected;
        t.server_errors += s.server_errors;
        t.gave_up += s.gave_up;
        t.ambiguous += s.ambiguous;
        t.answers_503 += s.answers_503;
        t.answers_5xx += s.answers_5xx;
        t.refused += s.refused;
        for a in run.outcomes.iter().flat_map(|o| &o.attempts) {
            if let Some(status) = a.status.filter(|s| *s >= 500) {
                let message: String = serde_json::from_str::<serde_json::Value>(&a.note)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| a.note.chars().take(100).collect());
                *self
                    .five_xx
                    .entry(format!("{status} {message}"))
                    .or_default() += 1;
            }
            if a.status.is_some() {
                self.requests += 1;
                let us = (a.answered - a.sent).as_micros() as u64;
                self.latency_us.saturating_record(us.clamp(1, HIST_MAX_US));
            }
        }
    }

    fn booked_per_s(&self) -> f64 {
        per_s(self.summary.booked as u64, self.elapsed)
    }

    fn requests_per_s(&self) -> f64 {
        per_s(self.requests, self.elapsed)
    }

    fn q_ms(&self, q: f64) -> f64 {
        if self.latency_us.is_empty() {
            0.0
        } else {
            self.latency_us.value_at_quantile(q) as f64 / 1e3
        }
    }

    /// CPU ms per answered request of the instances, Postgres and the generator, and the
    /// cores busy with other work on the machine meanwhile.
    fn cpu_cells(&self) -> String {
        let per_request = |ticks: u64| {
            if self.requests == 0 {
                0.0
            } else {
                ticks as f64 * 1e3 / TICKS_PER_S / self.requests as f64
            }
        };
        let c = self.cpu;
        format!(
            "{:.2} | {:.2} | {:.2} | {:.2} | {}",
            per_request(c.instances),
            per_request(c.postgres),
            per_request(c.generator),
            if self.elapsed.is_zero() {
                0.0
            } else {
                c.other() as f64 / TICKS_PER_S / self.elapsed.as_secs_f64()
            },
            if self.journal.1 > 0.0 {
                format!("{:.1}", self.journal.0 / self.journal.1)
            } else {
                "-".to_owned()
            }
        )
    }

    /// Outcomes that ended neither in 201 nor in 409.
    fn other(&self) -> usize {
        self.summary.rejected + self.summary.server_errors + self.summary.gave_up
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn change(new: f64, old: f64) -> String {
    if old > 0.0 {
        format!("{:+.0}%", (new / old - 1.0) * 100.0)
    } else {
        "-".to_owned()
    }
}

struct ScaleRow {
    workload: &'static str,
    instances: usize,
    figures: Figures,
}

struct FailoverRow {
    shards: usize,
    takeover: Duration,
    served: Duration,
    /// The load's bookings (the probes apart).
    figures: Figures,
    probes: Figures,
    rejoined: Duration,
}

struct HandoffRow {
    shards: usize,
    /// `(shards, ms)` of each `shards_handed_off` event of its log after the SIGTERM.
    handoffs: Vec<(u64, u64)>,
    exit: Duration,
    exit_status: std::process::ExitStatus,
    released: Duration,
    takeover: Duration,
    served: Duration,
    /// The load's bookings (the probes apart).
    figures: Figures,
    probes: Figures,
    rebalanced: Duration,
}

#[derive(Default)]
struct Report {
    joins: Vec<(usize, Duration, Duration)>,
    scale: Vec<ScaleRow>,
    forwarding: Option<(Figures, Figures, f64, f64)>,
    failover: Option<FailoverRow>,
    handoff: Option<HandoffRow>,
    store_checks: Vec<String>,
}

/// The 5xx answers of a phase, by message, and the bookings that ended otherwise than in
/// 201 or 409.
fn print_five_xx(f: &Figures) {
    if !f.five_xx.is_empty() {
        println!("\n5xx answers seen, by message:\n");
        for (message, n) in &f.five_xx {
            println!("- {n} x {message}");
        }
    }
    if !f.other_ends.is_empty() {
        println!("\nBookings that ended neither in 201 nor in 409 (at most 5):\n");
        for end in &f.other_ends {
            println!("- {end}");
        }
    }
}

/// The probes' 5xx answers by message (a probe that is not served is simply repeated).
fn print_probe_five_xx(f: &Figures) {
    if !f.five_xx.is_empty() {
        println!("\n5xx answers to the probes, by message:\n");
        for (message, n) in &f.five_xx {
            println!("- {n} x {message}");
        }
    }
}

fn print_report(r: &Report, args: &Args) {
    println!("\n# Several instances on one Postgres (issue 13)\n");
    println!(
        "{} s per measurement, {CLIENTS} clients, {} CPUs shared by the generator, every instance and Postgres; \
         {SHARDS} lease shards, lease TTL {LEASE_TTL_MS} ms; uniform: {} doctors x {} days of 15-minute slots.",
        args.run_for.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.doctors,
        args.days
    );
    for (n, ready, balanced) in &r.joins {
        println!(
            "- instance {n} joined: ready {} after its start, shards spread {} later",
            secs(*ready),
            secs(*balanced)
        );
    }

    println!("\n## Durable bookings with 1, 2 and 3 instances (requests round-robin over the instances)\n");
    println!("| workload | instances | durable bookings/s | vs 1 instance | requests/s | p50 ms | p99 ms | 201 | 409 | 5xx answers (503) | other ends | CPU ms/request: instances | Postgres | generator | other work (cores) | journal records per batch |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &r.scale {
        let f = &row.figures;
        let base = r
            .scale
            .iter()
            .find(|b| b.workload == row.workload && b.instances == 1)
            .map_or(0.0, |b| b.figures.booked_per_s());
        println!(
            "| {} | {} | {:.0} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} ({}) | {}{} | {} |",
            row.workload,
            row.instances,
            f.booked_per_s(),
            if row.instances == 1 {
                "1.00x".to_owned()
            } else if base > 0.0 {
                format!("{:.2}x", f.booked_per_s() / base)
            } else {
                "-".to_owned()
            },
            f.requests_per_s(),
            f.q_ms(0.50),
            f.q_ms(0.99),
            f.summary.booked,
            f.summary.conflicts,
            f.summary.answers_5xx,
            f.summary.answers_503,
            f.other(),
            if f.exhausted { " (slots ran out)" } else { "" },
            f.cpu_cells()
        );
    }

    for row in r
        .scale
        .iter()
        .filter(|row| !row.figures.other_ends.is_empty())
    {
        println!("\n{}, {} instances:", row.workload, row.instances);
        print_five_xx(&row.figures);
    }

    if let Some((owner, other, fwd_owner, fwd_other)) = &r.forwarding {
        println!("\n## Forwarded-request overhead (2 instances, uniform)\n");
        println!("| requests go to | durable bookings/s | requests/s | p50 ms | p99 ms | forwarded by the instances | 5xx answers | CPU ms/request: instances | Postgres | generator | other work (cores) | journal records per batch |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (name, f, fwd) in [
            ("each doctor's owner", owner, fwd_owner),
            ("the other instance (one hop)", other, fwd_other),
        ] {
            println!(
                "| {name} | {:.0}{} | {:.0} | {:.2} | {:.2} | {fwd:.0} | {} | {} |",
                f.booked_per_s(),
                if f.exhausted { " (slots ran out)" } else { "" },
                f.requests_per_s(),
                f.q_ms(0.50),
                f.q_ms(0.99),
                f.summary.answers_5xx,
                f.cpu_cells()
            );
        }
        println!(
            "| difference (forwarded vs owner) | {} | {} | {:+.2} | {:+.2} | | | | | | | |",
            change(other.booked_per_s(), owner.booked_per_s()),
            change(other.requests_per_s(), owner.requests_per_s()),
            other.q_ms(0.50) - owner.q_ms(0.50),
            other.q_ms(0.99) - owner.q_ms(0.99)
        );
    }

    if let Some(f) = &r.failover {
        println!("\n## Failover after `kill -9` of one of 3 instances under load\n");
        println!("| shards it held | leases taken over after | every one of them booked through the survivors after | 5xx answers seen by the load (503) | by the probes | load bookings in the phase: 201 / 409 / other | refused connections | restarted: rebalanced after |");
        println!("|---:|---:|---:|---:|---:|---|---:|---:|");
        println!(
            "| {} | {} | {} | {} ({}) | {} | {} / {} / {} | {} | {} |",
            f.shards,
            secs(f.takeover),
            secs(f.served),
            f.figures.summary.answers_5xx,
            f.figures.summary.answers_503,
            f.probes.summary.answers_5xx,
            f.figures.summary.booked,
            f.figures.summary.conflicts,
            f.figures.other(),
            f.figures.summary.refused,
            secs(f.rejoined)
        );
        print_five_xx(&f.figures);
        print_probe_five_xx(&f.probes);
    }

    if let Some(h) = &r.handoff {
        println!("\n## Handoff on SIGTERM of one of 3 instances under load\n");
        println!("| shards it held | handoff in its log (shards, ms) | SIGTERM to exit (status) | leases released after | leased elsewhere after | every one booked through the others after | 5xx answers seen by the load (503) | by the probes | load bookings in the phase: 201 / 409 / other | 2 left: rebalanced after |");
        println!("|---:|---|---:|---:|---:|---:|---:|---:|---|---:|");
        println!(
            "| {} | {} | {} ({}) | {} | {} | {} | {} ({}) | {} | {} / {} / {} | {} |",
            h.shards,
            h.handoffs
                .iter()
                .map(|(n, ms)| format!("{n} in {ms} ms"))
                .collect::<Vec<_>>()
                .join(", "),
            secs(h.exit),
            h.exit_status
                .code()
                .map_or("signal".to_owned(), |c| c.to_string()),
            secs(h.released),
            secs(h.takeover),
            secs(h.served),
            h.figures.summary.answers_5xx,
            h.figures.summary.answers_503,
            h.probes.summary.answers_5xx,
            h.figures.summary.booked,
            h.figures.summary.conflicts,
            h.figures.other(),
            secs(h.rebalanced)
        );
        print_five_xx(&h.figures);
        print_probe_five_xx(&h.probes);
    }

    println!("\nStore checks after each measurement (no double booking, every 201 stored):\n");
    for line in &r.store_checks {
        println!("- {line}");
    }
}

// ---------------------------------------------------------------------------------------
// The measurements
// ---------------------------------------------------------------------------------------

/// Everything clients were told since the database was made, and the store checks.
struct Books {
    all: Vec<Outcome>,
}

impl Books {
    /// Adds `outcomes` and checks the store against everything so far (panics on a lost,
    /// doubled, overlapping or invented booking).
    async fn check(&mut self, cluster: &TestCluster, what: &str, outcomes: &[Outcome]) -> String {
        self.all.extend_from_slice(outcomes);
        let check = check_store(&cluster.db.pool, &self.all).await;
        let line = format!("after {what}: {check}");
        eprintln!("{line}");
        line
    }
}

/// The doctors of every shard and their free slots: the uniform pool, and two probe slots
/// per shard set apart (one for the failover, one for the handoff).
async fn uniform_doctors(
    cluster: &TestCluster,
    args: &Args,
) -> (Vec<i64>, BTreeMap<u32, Vec<Slot>>, Vec<Slot>) {
    let mut doctors = cluster.create_doctors(args.doctors).await;
    let mut by_shard: BTreeMap<u32, i64> = BTreeMap::new();
    for &d in &doctors {
        by_shard.entry(cluster.shard_of(d)).or_insert(d);
    }
    while by_shard.len() < SHARDS as usize {
        assert!(
            doctors.len() < 40 * SHARDS as usize,
            "{} doctors cover only {} of {SHARDS} shards",
            doctors.len(),
            by_shard.len()
        );
        let d = cluster.create_doctors(1).await[0];
        by_shard.entry(cluster.shard_of(d)).or_insert(d);
        doctors.push(d);
    }
    let slots = cluster.free_slots(&doctors, args.days).await;
    let (probes, mut rest) = set_probe_slots_apart(slots, &by_shard, 2);
    rest.shuffle(&mut rand::rng());
    (doctors, probes, rest)
}

/// The probe slot `k` of each of `shards`.
fn probe_slots(
    probes: &BTreeMap<u32, Vec<Slot>>,
    shards: &BTreeSet<u32>,
    k: usize,
) -> BTreeMap<u32, Slot> {
    shards.iter().map(|s| (*s, probes[s][k])).collect()
}

/// Requests forwarded so far by the running instances (`cluster_forwarded_requests`).
async fn forwarded(cluster: &TestCluster) -> f64 {
    let mut total = 0.0;
    for i in (0..cluster.nodes.len()).filter(|&i| cluster.nodes[i].is_running()) {
        total += cluster
            .metrics(i)
            .await
            .map_or(0.0, |m| m.get("cluster_forwarded_requests"));
    }
    total
}

/// Polls the lease table (every 20 ms) until every one of `shards` is leased to an
/// instance other than `from`, noting in `moved` when each was first seen so. Returns the
/// times since `since` until none was held by `from` any more (released or expired) and
/// until all were leased elsewhere. Panics at the deadline.
async fn watch_leases(
    cluster: &TestCluster,
    shards: &BTreeSet<u32>,
    from: &str,
    moved: &Moves,
    since: Instant,
    deadline: Duration,
) -> (Duration, Duration) {
    let mut released = None;
    loop {
        let owners = cluster.live_owners().await;
        let now = Instant::now();
        if released.is_none() && shards.iter().all(|s| owners[s].as_deref() != Some(from)) {
            released = Some(now - since);
        }
        let all_moved = {
            let mut moved = moved.lock().unwrap();
            for s in shards {
                if owners[s].as_deref().is_some_and(|o| o != from) {
                    moved.entry(*s).or_insert(now);
                }
            }
            (moved.len() == shards.len()).then(|| moved.values().max().copied())
        };
        if let Some(last) = all_moved {
            let last = last.map_or(Duration::ZERO, |t| t.duration_since(since));
            return (released.unwrap_or(last), last);
        }
        assert!(
            since.elapsed() < deadline,
            "shards {shards:?} of {from} not leased elsewhere within {deadline:?}: {}",
            cluster.ownership_line().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn hot_pick(cluster: &TestCluster) -> Pick {
    let doctors = cluster.create_doctors(HOT_DOCTORS).await;
    Pick::Hot(HotDoctors::new(
        cluster.free_slots(&doctors, HOT_DAYS).await,
    ))
}

async fn bench(cluster: &mut TestCluster, args: Args) -> Report {
    let mut report = Report::default();
    let mut books = Books { all: Vec::new() };
    let started = Instant::now();
    let (doctors, probes, pool) = uniform_doctors(cluster, &args).await;
    let pool = Arc::new(SlotPool {
        slots: pool,
        next: AtomicUsize::new(0),
    });
    eprintln!(
        "{} doctors covering all {SHARDS} shards, {} free slots, in {}",
        doctors.len(),
        pool.left(),
        secs(started.elapsed())
    );

    // 1 and 2: one, two, three instances.
    for instances in 1..=3 {
        if instances > 1 {
            let at = Instant::now();
            cluster.add_node().await;
            let ready = at.elapsed();
            let balanced = cluster.wait_balanced(BALANCE_DEADLINE).await;
            eprintln!(
                "instance {instances} joined: ready after {}, balanced {} later ({})",
                secs(ready),
                secs(balanced),
                cluster.ownership_line().await
            );
            report.joins.push((instances, ready, balanced));
        }
        let urls = cluster.urls();
        let warm = Generator::run_for(
            cluster,
            Pick::Uniform(Arc::clone(&pool)),
            Route::round_robin(urls.clone()),
            UNIFORM_PATIENTS,
            args.warm_up(),
        )
        .await;
        let uniform = Generator::run_for(
            cluster,
            Pick::Uniform(Arc::clone(&pool)),
            Route::round_robin(urls.clone()),
            UNIFORM_PATIENTS,
            args.run_for,
        )
        .await;
        let outcomes: Vec<Outcome> = warm
            .outcomes
            .iter()
            .chain(&uniform.outcomes)
            .cloned()
            .collect();
        let what = format!("uniform, {instances} instances");
        report
            .store_checks
            .push(books.check(cluster, &what, &outcomes).await);
        report.scale.push(ScaleRow {
            workload: "uniform",
            instances,
            figures: Figures::of(&uniform),
        });

        let hot = Generator::run_for(
            cluster,
            hot_pick(cluster).await,
            Route::round_robin(urls.clone()),
            HOT_PATIENTS,
            args.run_for,
        )
        .await;
        let what = format!("hot, {instances} instances");
        report
            .store_checks
            .push(books.check(cluster, &what, &hot.outcomes).await);
        report.scale.push(ScaleRow {
            workload: "hot",
            instances,
            figures: Figures::of(&hot),
        });

        if instances == 2 {
            report.forwarding = Some(
                forwarding(
                    cluster,
                    &args,
                    &doctors,
                    &pool,
                    &mut books,
                    &mut report.store_checks,
                )
                .await,
            );
        }
    }

    // 3: kill -9 of one of three under load.
    report.failover = Some(
        failover(
            cluster,
            &args,
            &probes,
            &pool,
            &mut books,
            &mut report.store_checks,
        )
        .await,
    );
    // 4: SIGTERM of one of three under load.
    report.handoff = Some(
        handoff(
            cluster,
            &args,
            &probes,
            &pool,
            &mut books,
            &mut report.store_checks,
        )
        .await,
    );
    report
}

/// The uniform load only to each doctor's owner, then only to the other instance, in
/// segments owner, other, other, owner. Returns the figures of both and the requests the
/// instances forwarded meanwhile.
async fn forwarding(
    cluster: &TestCluster,
    args: &Args,
    doctors: &[i64],
    pool: &Arc<SlotPool>,
    books: &mut Books,
    checks: &mut Vec<String>,
) -> (Figures, Figures, f64, f64) {
    let urls = cluster.urls();
    assert_eq!(urls.len(), 2, "forwarding is measured with 2 instances");
    let segment = (args.run_for / 2).max(Duration::from_millis(500));
    let (mut owner, mut other) = (Figures::new(), Figures::new());
    let (mut fwd_owner, mut fwd_other) = (0.0, 0.0);
    let mut outcomes = Vec::new();
    for to_owner in [true, false, false, true] {
        let owners = cluster.live_owners().await;
        let route: HashMap<i64, [String; 1]> = doctors
            .iter()
            .map(|&d| {
                let owner_url = owners[&cluster.shard_of(d)]
                    .clone()
                    .unwrap_or_else(|| panic!("doctor {d}'s shard has no live owner"));
                let target = if to_owner {
                    owner_url
                } else {
                    urls.iter()
                        .find(|u| **u != owner_url)
                        .expect("two instances")
                        .clone()
                };
                (d, [target])
            })
            .collect();
        let before = forwarded(cluster).await;
        let run = Generator::run_for(
            cluster,
            Pick::Uniform(Arc::clone(pool)),
            Route::ByDoctor(route),
            UNIFORM_PATIENTS,
            segment,
        )
        .await;
        let fwd = forwarded(cluster).await - before;
        if to_owner {
            owner.add(&run);
            fwd_owner += fwd;
        } else {
            other.add(&run);
            fwd_other += fwd;
        }
        outcomes.extend(run.outcomes);
    }
    checks.push(
        books
            .check(cluster, "forwarding, 2 instances", &outcomes)
            .await,
    );
    (owner, other, fwd_owner, fwd_other)
}

/// `kill -9` of instance 1 of 3 under the uniform load; then it is started again.
async fn failover(
    cluster: &mut TestCluster,
    args: &Args,
    probes: &BTreeMap<u32, Vec<Slot>>,
    pool: &Arc<SlotPool>,
    books: &mut Books,
    checks: &mut Vec<String>,
) -> FailoverRow {
    let victim = 1;
    let victim_url = cluster.nodes[victim].base();
    let shards = cluster.shards_of(victim).await;
    assert!(!shards.is_empty(), "n{victim} holds no shard");
    let survivors: Vec<String> = cluster
        .urls()
        .into_iter()
        .filter(|u| *u != victim_url)
        .collect();
    let load = Generator::start(
        &cluster.client,
        Pick::Uniform(Arc::clone(pool)),
        Route::round_robin(cluster.urls()),
        UNIFORM_PATIENTS,
    );
    tokio::time::sleep(args.warm_up().max(Duration::from_millis(500))).await;
    let probe_ledger = Ledger::new();
    let killed_at = Instant::now();
    cluster.nodes[victim].kill_hard();
    let deadline = Duration::from_millis(LEASE_TTL_MS) + FAULT_SLACK;
    let moved = Moves::default();
    let ((_, takeover), served) = tokio::join!(
        watch_leases(cluster, &shards, &victim_url, &moved, killed_at, deadline),
        probe_until_served(
            &cluster.client,
            survivors,
            probe_slots(probes, &shards, 0),
            &moved,
            killed_at,
            deadline,
            &probe_ledger,
        )
    );
    let served = served.values().max().copied().unwrap_or_default();
    eprintln!(
        "kill -9 of n{victim} ({} shards): leases taken over after {}, every shard served after {}",
        shards.len(),
        secs(takeover),
        secs(served)
    );
    // The load goes on a little after the last shard is served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut run = load.stop().await;
    let figures = Figures::of(&run);
    let probes = Run {
        outcomes: probe_ledger.outcomes(),
        ..Run::default()
    };
    let probe_figures = Figures::of(&probes);
    run.outcomes.extend(probes.outcomes);
    checks.push(books.check(cluster, "kill -9", &run.outcomes).await);

    let at = Instant::now();
    cluster
        .start_node(victim)
        .await
        .unwrap_or_else(|e| panic!("restarting n{victim}: {e}"));
    cluster.wait_balanced(BALANCE_DEADLINE).await;
    let rejoined = at.elapsed();
    eprintln!(
        "n{victim} restarted and the cluster rebalanced after {} ({})",
        secs(rejoined),
        cluster.ownership_line().await
    );
    FailoverRow {
        shards: shards.len(),
        takeover,
        served,
        figures,
        probes: probe_figures,
        rejoined,
    }
}

/// SIGTERM of instance 2 of 3 under the uniform load.
async fn handoff(
    cluster: &mut TestCluster,
    args: &Args,
    probes: &BTreeMap<u32, Vec<Slot>>,
    pool: &Arc<SlotPool>,
    books: &mut Books,
    checks: &mut Vec<String>,
) -> HandoffRow {
    let leaver = 2;
    let leaver_url = cluster.nodes[leaver].base();
    let shards = cluster.shards_of(leaver).await;
    assert!(!shards.is_empty(), "n{leaver} holds no shard");
    let handoffs_before = cluster.nodes[leaver].handoffs().len();
    let others: Vec<String> = cluster
        .urls()
        .into_iter()
        .filter(|u| *u != leaver_url)
        .collect();
    let load = Generator::start(
        &cluster.client,
        Pick::Uniform(Arc::clone(pool)),
        Route::round_robin(cluster.urls()),
        UNIFORM_PATIENTS,
    );
    tokio::time::sleep(args.warm_up().max(Duration::from_millis(500))).await;
    let mut server = cluster.nodes[leaver]
        .take_server()
        .expect("the leaving instance runs");
    let probe_ledger = Ledger::new();
    let signalled_at = Instant::now();
    server.terminate();
    let deadline = Duration::from_millis(LEASE_TTL_MS) + FAULT_SLACK;
    let moved = Moves::default();
    let (exit, (released, takeover), served) = tokio::join!(
        async {
            let status = server.wait_exit(deadline).await;
            (status, signalled_at.elapsed())
        },
        watch_leases(
            cluster,
            &shards,
            &leaver_url,
            &moved,
            signalled_at,
            deadline
        ),
        probe_until_served(
            &cluster.client,
            others,
            probe_slots(probes, &shards, 1),
            &moved,
            signalled_at,
            deadline,
            &probe_ledger,
        )
    );
    let (Some(exit_status), exit) = exit else {
        panic!("n{leaver} still runs {deadline:?} after SIGTERM")
    };
    drop(server);
    let served = served.values().max().copied().unwrap_or_default();
    let handoffs = cluster.nodes[leaver].handoffs()[handoffs_before..].to_vec();
    eprintln!(
        "SIGTERM of n{leaver} ({} shards): handoffs {handoffs:?} (shards, ms), exit after {} ({exit_status}), \
         leases released after {}, leased elsewhere after {}, every shard served after {}",
        shards.len(),
        secs(exit),
        secs(released),
        secs(takeover),
        secs(served)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut run = load.stop().await;
    let figures = Figures::of(&run);
    let probes = Run {
        outcomes: probe_ledger.outcomes(),
        ..Run::default()
    };
    let probe_figures = Figures::of(&probes);
    run.outcomes.extend(probes.outcomes);
    checks.push(books.check(cluster, "SIGTERM", &run.outcomes).await);
    let rebalanced = cluster.wait_balanced(BALANCE_DEADLINE).await;
    HandoffRow {
        shards: shards.len(),
        handoffs,
        exit,
        exit_status,
        released,
        takeover,
        served,
        figures,
        probes: probe_figures,
        rebalanced,
    }
}

fn main() {
    let args = Args::parse();
    // Built (or found up to date) before the clock of the time bound starts.
    let bin = support::release_binary();
    eprintln!("release binary: {}", bin.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(with_test_db("cluster bench", move |db| async move {
        let spec = ClusterSpec {
            instances: 1,
            lease_ttl_ms: Some(LEASE_TTL_MS),
            shard_count: Some(SHARDS),
            role_per_instance: false,
        };
        let budget = args.budget();
        let outcome = tokio::time::timeout(budget, async {
            let mut cluster = TestCluster::start(db, "cs_bench_cluster", spec).await;
            let report = bench(&mut cluster, args).await;
            cluster.stop_all();
            eprintln!("logs: {}", cluster.log_report());
            report
        })
        .await;
        let report = outcome
            .unwrap_or_else(|_| panic!("the cluster bench did not finish within {budget:?}"));
        print_report(&report, &args);
        if args.quick {
            println!("\n(--quick: 1 s measurements; for the figures run `--seconds 8` or more)");
        }
    }));
}
