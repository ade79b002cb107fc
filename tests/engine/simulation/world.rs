//! The simulated world: an engine on the in-memory store behind a seeded fault plan, a
//! clock that follows tokio's paused time, and the doctors the operations use.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use consult_actors::memory::MemoryStore;
use consult_actors::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::helpers::{open_doctor, AppendFault, AppendOutcome, FaultPlan, FaultyStore};

/// Timezones the doctors are drawn from: whole, half-hour and far-east offsets, and both
/// hemispheres' daylight saving.
pub const TIMEZONES: [Tz; 5] = [
    chrono_tz::Europe::London,
    chrono_tz::Pacific::Auckland,
    chrono_tz::America::Los_Angeles,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Pacific::Kiritimati,
];

/// Doctors per world.
pub const DOCTORS: usize = 3;

/// Domain time that moves with tokio's (paused) time, so that a seed's clock reads the same
/// on every run and hold expiry, passivation and the rules all see one time.
pub struct SimClock {
    base: DateTime<Utc>,
    origin: tokio::time::Instant,
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.origin.elapsed().as_micros() as i64;
        self.base + chrono::Duration::microseconds(elapsed)
    }
}

/// Engine settings for the simulation: short idle and tick periods so that passivation,
/// hold expiry and snapshots happen within a few simulated minutes; two journal writers.
pub fn settings() -> EngineSettings {
    EngineSettings {
        shards: 4,
        call_timeout_ms: 5_000,
        hold_ttl_s: 300,
        passivate_after_idle_ms: 60_000,
        tick_interval_ms: 10_000,
        snapshot_interval_ms: 30_000,
        journal_writers: 2,
        ..Default::default()
    }
}

/// How often the store misbehaves in one seed, in percent of appends (a slow append may
/// also fail).
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    pub fail_before: u32,
    pub fail_after: u32,
    pub slow: u32,
}

impl FaultRates {
    /// From none at all to a store that fails one append in four.
    pub fn draw(rng: &mut StdRng) -> Self {
        match rng.random_range(0..4) {
            0 => Self {
                fail_before: 0,
                fail_after: 0,
                slow: 10,
            },
            1 => Self {
                fail_before: 3,
                fail_after: 2,
                slow: 20,
            },
            2 => Self {
                fail_before: 8,
                fail_after: 5,
                slow: 30,
            },
            _ => Self {
                fail_before: 15,
                fail_after: 10,
                slow: 40,
            },
        }
    }

    /// The store's fault plan, from its own generator so that the operations drawn do not
    /// depend on how many appends there were.
    fn plan(self, seed: u64) -> FaultPlan {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
        Box::new(move || {
            let roll = rng.random_range(0..100);
            let outcome = if roll < self.fail_before {
                AppendOutcome::FailBefore
            } else if roll < self.fail_before + self.fail_after {
                AppendOutcome::FailAfter
            } else {
                AppendOutcome::Written
            };
            let delay = (rng.random_range(0..100) < self.slow)
                .then(|| StdDuration::from_millis(rng.random_range(1..50)));
            AppendFault { delay, outcome }
        })
    }
}

/// What the engines of one seed did, summed over restarts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub restarts: u64,
    pub passivations: u64,
    pub actor_failures: u64,
    pub failed_batches: u64,
    pub snapshots: u64,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.restarts += other.restarts;
        self.passivations += other.passivations;
        self.actor_failures += other.actor_failures;
        self.failed_batches += other.failed_batches;
        self.snapshots += other.snapshots;
    }

    fn count(&mut self, engine: &Engine) {
        let s = engine.stats();
        self.passivations += s.passivations;
        self.actor_failures += s.actor_failures;
        self.failed_batches += s.journal_failed_batches;
        self.snapshots += s.snapshots_written;
    }
}

pub struct World {
    pub store: Arc<FaultyStore>,
    pub clock: Arc<SimClock>,
    pub engine: Engine,
    pub doctors: Vec<DoctorId>,
    pub rates: FaultRates,
    /// What the engines stopped so far did.
    tally: Tally,
}

impl World {
    /// Must run inside the seed's paused runtime. The start instant is drawn within a few
    /// days of a daylight-saving change (late March: Europe and Auckland both change).
    pub async fn build(seed: u64, rng: &mut StdRng) -> Self {
        let rates = FaultRates::draw(rng);
        let store = FaultyStore::with_plan(Arc::new(MemoryStore::default()), rates.plan(seed));
        let base = Utc.with_ymd_and_hms(2026, 3, 26, 0, 0, 0).unwrap()
            + chrono::Duration::minutes(rng.random_range(0..6 * 24 * 60));
        let clock = Arc::new(SimClock {
            base,
            origin: tokio::time::Instant::now(),
        });
        let engine = start(&store, &clock).await;
        let mut doctors = Vec::with_capacity(DOCTORS);
        for i in 0..DOCTORS {
            let tz = TIMEZONES[rng.random_range(0..TIMEZONES.len())];
            let doctor = engine
                .create_doctor(open_doctor(&format!("Dr. Sim {i}"), tz))
                .await
                .expect("create doctor");
            doctors.push(doctor.id);
        }
        Self {
            store,
            clock,
            engine,
            doctors,
            rates,
            tally: Tally::default(),
        }
    }

    /// Stops the engine as a process would on its way down, and starts a new one on the
    /// same store: everything acknowledged must be there.
    pub async fn restart(&mut self) {
        self.engine.shutdown().await;
        self.tally.count(&self.engine);
        self.tally.restarts += 1;
        self.engine = start(&self.store, &self.clock).await;
    }

    /// Stops the engine; answers what the seed's engines did.
    pub async fn stop(mut self) -> Tally {
        self.engine.shutdown().await;
        self.tally.count(&self.engine);
        self.tally
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

async fn start(store: &Arc<FaultyStore>, clock: &Arc<SimClock>) -> Engine {
    let store: Arc<dyn Store> = store.clone();
    let clock: Arc<dyn Clock> = clock.clone();
    Engine::builder(store)
        .settings(settings())
        .clock(clock)
        .start()
        .await
        .expect("engine starts")
}
