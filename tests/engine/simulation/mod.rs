//! A deterministic simulation of the engine, after TigerBeetle's VOPR and FoundationDB's
//! simulation testing (see `docs/SIMULATION.md`). Each seed builds a world (an engine on
//! the in-memory store behind a seeded fault plan, in tokio's paused time) and runs rounds
//! of concurrent random operations (book, multi-book, cancel, reschedule, check and hold,
//! availability, schedule and status changes, actor panics) separated by time passing and
//! restarts; after every round it checks the invariants of `check` and the model of
//! `oracle`. Everything random comes from the seed, and time only moves when the runtime
//! is idle, so a seed runs the same way every time: a failure prints the command that
//! reruns exactly that seed.
//!
//! Budget: `SIM_SECONDS` of wall time (default 60 under `CI=true`, else 5), at most
//! `SIM_SEEDS` seeds, `SIM_ROUNDS` rounds each (default 80); `SIM_SEED` runs one seed,
//! and `SIM_TRACE=1` prints each seed's trace.

mod check;
mod ops;
mod oracle;
mod run;
mod world;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use ops::{Pause, Scene};
use oracle::Model;
use world::{Tally, World};

const DEFAULT_ROUNDS: usize = 80;

/// The message of the engine's injected actor panics (`Engine::inject_panic`).
const INJECTED_PANIC: &str = "injected fault in doctor actor";

/// Keeps the injected actor panics (thousands per run) out of the output; every other
/// panic is reported as before.
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INJECTED_PANIC) {
                report(info);
            }
        }));
    });
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// What one seed did: its trace (one line per operation and pause: the same seed must
/// give the same lines) and what its engines counted.
struct Run {
    trace: Vec<String>,
    tally: Tally,
}

/// A seed's trace; printed as it grows under `SIM_TRACE`, so a failing seed shows what
/// led to its failure.
#[derive(Default)]
struct Trace {
    lines: Vec<String>,
}

impl Trace {
    fn push(&mut self, line: String) {
        if std::env::var_os("SIM_TRACE").is_some() {
            println!("  {line}");
        }
        self.lines.push(line);
    }
}

/// Runs one seed in its own current-thread runtime with paused time; answers what it did,
/// or the first broken invariant.
fn run_seed(seed: u64, rounds: usize) -> Result<Run, String> {
    quiet_injected_panics();
    if std::env::var_os("SIM_TRACE").is_some() {
        println!("seed {seed}:");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(simulate(seed, rounds))
}

async fn simulate(seed: u64, rounds: usize) -> Result<Run, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut world = World::build(seed, &mut rng).await;
    let mut model = Model::default();
    let mut trace = Trace::default();
    trace.push(format!("faults {:?}", world.rates));
    model.reconcile(world.store.as_ref()).await?;
    for round in 0..rounds {
        let fail = |e: String| format!("round {round}: {e}");
        match ops::pause(&mut rng) {
            Pause::None => {}
            Pause::Tick(d) => {
                tokio::time::sleep(d).await;
                trace.push(format!("tick {d:?}"));
            }
            Pause::Restart => {
                world.restart().await;
                trace.push("restart".to_string());
            }
        }
        let profiles = world
            .engine
            .list_doctors()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let active = model.active();
        let scene = Scene {
            now: world.now(),
            profiles: &profiles,
            active: &active,
        };
        let round_ops = ops::round(&mut rng, &scene);
        let mut durable = check::before_round(&world).await;
        let began = world.now();
        let mut tasks = Vec::with_capacity(round_ops.len());
        for op in round_ops {
            tasks.push(tokio::spawn(run::perform(world.engine.clone(), op)));
            // Let the operations started so far run a little before the next one starts.
            for _ in 0..rng.random_range(0..4) {
                tokio::task::yield_now().await;
            }
        }
        let mut answers = Vec::with_capacity(tasks.len());
        for task in tasks {
            answers.push(
                task.await
                    .map_err(|e| fail(format!("operation panicked: {e}")))?,
            );
        }
        check::after_round(&world, &mut durable).await;
        let lines: Vec<String> = answers.iter().map(run::Answer::trace).collect();
        // From here on a broken invariant also shows the round's answers.
        let fail = |e: String| {
            format!(
                "round {round}: {e}\nthe round's answers:\n  {}",
                lines.join("\n  ")
            )
        };
        for a in &answers {
            model.record(a);
        }
        check::answers_rest_on_durable_state(&answers, &durable, &model.holds, began)
            .map_err(fail)?;
        model.reconcile(world.store.as_ref()).await.map_err(fail)?;
        check::no_overlaps_and_views_match(&world)
            .await
            .map_err(fail)?;
        check::availability_is_derived_from_the_store(&world)
            .await
            .map_err(fail)?;
        lines.into_iter().for_each(|l| trace.push(l));
    }
    Ok(Run {
        trace: trace.lines,
        tally: world.stop().await,
    })
}

fn rerun(seed: u64, rounds: usize) -> String {
    format!(
        "SIM_SEED={seed} SIM_ROUNDS={rounds} cargo test --test engine simulation -- --nocapture"
    )
}

#[test]
fn random_interleavings_with_faults_keep_every_invariant() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let seconds = env_u64("SIM_SECONDS").unwrap_or(if ci { 60 } else { 5 });
    let rounds = env_u64("SIM_ROUNDS").map_or(DEFAULT_ROUNDS, |r| r as usize);
    let (first, max_seeds) = match env_u64("SIM_SEED") {
        Some(seed) => (seed, 1),
        None => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64;
            (
                nanos % 1_000_000_000,
                env_u64("SIM_SEEDS").unwrap_or(u64::MAX),
            )
        }
    };
    let started = Instant::now();
    let (mut seeds, mut operations, mut errors) = (0u64, 0usize, 0usize);
    let mut tally = Tally::default();
    for seed in first..first.saturating_add(max_seeds) {
        if seeds > 0 && started.elapsed().as_secs() >= seconds {
            break;
        }
        match run_seed(seed, rounds) {
            Ok(run) => {
                operations += run.trace.iter().filter(|l| l.contains(" -> ")).count();
                errors += run.trace.iter().filter(|l| l.contains(" -> err ")).count();
                tally.add(run.tally);
            }
            Err(e) => panic!(
                "simulation seed {seed} broke an invariant: {e}\nrerun exactly this seed with:\n  {}",
                rerun(seed, rounds)
            ),
        }
        seeds += 1;
    }
    println!(
        "simulation: {seeds} seeds from {first} ({rounds} rounds each), {operations} operations \
         ({errors} answered with an error) in {:.1} s; {tally:?}",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_seed_runs_the_same_way_every_time() {
    let seed = env_u64("SIM_SEED").unwrap_or(7);
    let first = run_seed(seed, 40).expect("seed passes").trace;
    let second = run_seed(seed, 40).expect("seed passes").trace;
    let diverged = first.iter().zip(&second).position(|(a, b)| a != b);
    assert!(
        diverged.is_none() && first.len() == second.len(),
        "seed {seed} ran differently the second time, from line {diverged:?}:\n{:?}\n{:?}",
        diverged.map(|i| &first[i]),
        diverged.map(|i| &second[i]),
    );
}
