//! Several instances of the release binary on one Postgres database, Jepsen style: races,
//! random load spread over every instance, and faults (SIGKILL of an owner, SIGSTOP of an
//! owner for longer than its lease, an instance cut off from Postgres, a rolling restart).
//! Each test ends by checking, with SQL on the database, that the store holds exactly what
//! clients were told: no acknowledged booking lost, none doubled, none invented.
//!
//! The harness (instances, load, store checks) is in `cluster_support.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::cluster_support::*;
use crate::support::parse_time;

/// Lease TTL of the fault tests: short, so a takeover happens within seconds.
const FAULT_TTL_MS: u64 = 2_000;
/// Lease shards of the fault tests: few enough that a doctor of each is cheap to make.
const FAULT_SHARDS: u32 = 32;
/// Probe slots set apart per doctor, for checking that a shard is served.
const PROBES_PER_DOCTOR: usize = 8;

fn fault_spec(role_per_instance: bool) -> ClusterSpec {
    ClusterSpec {
        instances: 3,
        lease_ttl_ms: Some(FAULT_TTL_MS),
        shard_count: Some(FAULT_SHARDS),
        role_per_instance,
    }
}

fn ttl() -> Duration {
    Duration::from_millis(FAULT_TTL_MS)
}

/// A doctor of every shard, their free slots over two days, probe slots set apart.
async fn doctors_and_slots(
    cluster: &TestCluster,
) -> (BTreeMap<u32, i64>, BTreeMap<u32, Vec<Slot>>, Vec<Slot>) {
    let doctors = cluster.doctors_covering_every_shard().await;
    let ids: Vec<i64> = doctors.values().copied().collect();
    let slots = cluster.free_slots(&ids, 2).await;
    let (probes, rest) = set_probe_slots_apart(slots, &doctors, PROBES_PER_DOCTOR);
    println!(
        "a doctor for each of the {FAULT_SHARDS} shards (doctor ids up to {}); {} load slots",
        ids.iter().max().unwrap_or(&0),
        rest.len()
    );
    (doctors, probes, rest)
}

fn only<T: Clone>(map: &BTreeMap<u32, T>, shards: &BTreeSet<u32>) -> BTreeMap<u32, T> {
    map.iter()
        .filter(|(s, _)| shards.contains(s))
        .map(|(s, v)| (*s, v.clone()))
        .collect()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------

/// Patients racing for one slot, through all three instances.
const RACERS: usize = 300;
/// Random bookings by random patients through random instances.
const RANDOM_BOOKINGS: usize = 10_000;
const RANDOM_CLIENTS: usize = 32;
const VIEW_DOCTORS: usize = 6;
const VIEW_DAYS: u32 = 7;
/// Acknowledged bookings asked again through every other instance (expecting 409).
const REBOOK_SAMPLE: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_one_winner_per_slot_and_consistent_views() {
    with_test_db(
        "three_instances_one_winner_per_slot_and_consistent_views",
        |db| async move {
            let spec = ClusterSpec {
                instances: 3,
                lease_ttl_ms: None,
                shard_count: None,
                role_per_instance: false,
            };
            let mut cluster = TestCluster::start(Arc::clone(&db), "cs_cluster_views", spec).await;
            let doctors = cluster.create_doctors(VIEW_DOCTORS).await;
            let mut slots = cluster.free_slots(&doctors, VIEW_DAYS).await;
            let ledger = Ledger::new();
            let targets = cluster.urls();

            // One slot, 300 patients at once, spread over the three instances, watched
            // through the availability stream of every instance (two of them forward it).
            let contested = slots.remove(0);
            let mut watchers = Vec::new();
            for node in &cluster.nodes {
                watchers.push(
                    Watcher::open(&cluster.client, node.base(), contested.doctor_id).await,
                );
            }
            let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
            let racers: Vec<_> = (0..RACERS)
                .map(|i| {
                    let (client, targets, barrier) =
                        (cluster.client.clone(), targets.clone(), Arc::clone(&barrier));
                    tokio::spawn(async move {
                        barrier.wait().await;
                        book(
                            &client,
                            &targets,
                            i,
                            20_000 + i as i64,
                            contested,
                            Retry::default(),
                        )
                        .await
                    })
                })
                .collect();
            let mut race = Vec::new();
            for r in racers {
                race.push(r.await.expect("a racer panicked"));
            }
            let race_summary = Summary::of(&race);
            println!("one slot, {RACERS} patients: {race_summary}");
            assert_eq!(
                (race_summary.booked, race_summary.conflicts),
                (1, RACERS - 1),
                "exactly one 201 and {} 409s for one slot; others:\n{}",
                RACERS - 1,
                Summary::failures(&race, 10)
            );
            let winner_via = race.iter().find_map(Outcome::ack).map(|a| a.via);
            println!("the winner booked through n{}", winner_via.unwrap_or(99));
            let owner = cluster.live_owners().await[&cluster.shard_of(contested.doctor_id)].clone();
            for (node, watcher) in cluster.nodes.iter().zip(&mut watchers) {
                let event = watcher
                    .next_event(Duration::from_secs(10))
                    .await
                    .unwrap_or_else(|e| panic!("the stream through {}: {e}", node.name));
                assert_eq!(
                    (event.0.as_str(), parse_time(&event.1["start"])),
                    ("booked", contested.start),
                    "the first change seen through {} is the booking of the contested slot: {event:?}",
                    node.name
                );
            }
            println!(
                "the booking arrived on the availability stream through all three instances \
                 (owner {})",
                owner.unwrap_or_default()
            );
            for o in race {
                ledger.record(o);
            }

            // Thousands of random bookings through random instances, concurrently.
            let started = Instant::now();
            Load::start(
                &cluster.client,
                LoadSpec {
                    clients: RANDOM_CLIENTS,
                    total: Some(RANDOM_BOOKINGS),
                    slots: Arc::new(slots),
                    patients: 10_000..11_000,
                    targets: targets.clone(),
                },
                &ledger,
            )
            .join(Duration::from_secs(150))
            .await;
            let took = started.elapsed();
            let outcomes = ledger.outcomes();
            let load = Summary::of(&outcomes[RACERS..]);
            println!(
                "random load ({RANDOM_CLIENTS} clients) in {}: {load}",
                secs(took)
            );
            assert_eq!(
                (load.server_errors, load.gave_up, load.rejected),
                (0, 0, 0),
                "every booking ends in 201 or 409 (503s retried):\n{}",
                Summary::failures(&outcomes, 10)
            );

            // What any instance booked, every instance shows as booked...
            let stored: Vec<(i64, DateTime<Utc>)> = sqlx::query_as(
                "SELECT doctor_id, scheduled_at FROM consultations \
                 WHERE status IN ('pending', 'scheduled')",
            )
            .fetch_all(&db.pool)
            .await
            .expect("reading consultations");
            let mut stored_by_doctor: HashMap<i64, BTreeSet<DateTime<Utc>>> = HashMap::new();
            for (doctor, at) in stored {
                stored_by_doctor.entry(doctor).or_default().insert(at);
            }
            let acks: Vec<Ack> = outcomes.iter().filter_map(Outcome::ack).cloned().collect();
            for node in &cluster.nodes {
                for &doctor in &doctors {
                    let body = cluster.availability(node, doctor, VIEW_DAYS).await;
                    let shown: BTreeSet<DateTime<Utc>> = body["booked_slots"]
                        .as_array()
                        .expect("booked_slots[]")
                        .iter()
                        .map(parse_time)
                        .collect();
                    let missing: Vec<&Ack> = acks
                        .iter()
                        .filter(|a| a.slot.doctor_id == doctor && !shown.contains(&a.slot.start))
                        .collect();
                    assert!(
                        missing.is_empty(),
                        "{} does not show {} acknowledged bookings of doctor {doctor} as booked, e.g. {:?}",
                        node.name,
                        missing.len(),
                        &missing[..missing.len().min(5)]
                    );
                    assert_eq!(
                        &shown,
                        stored_by_doctor.get(&doctor).unwrap_or(&BTreeSet::new()),
                        "{} shows doctor {doctor}'s booked slots unlike the store",
                        node.name
                    );
                }
            }
            // ...and refuses with 409.
            let step = (acks.len() / REBOOK_SAMPLE).max(1);
            let mut probes = Vec::new();
            for ack in acks.iter().step_by(step).take(REBOOK_SAMPLE) {
                for (i, target) in targets.iter().enumerate().filter(|(i, _)| *i != ack.via) {
                    let outcome = book(
                        &cluster.client,
                        std::slice::from_ref(target),
                        0,
                        PROBE_PATIENT,
                        ack.slot,
                        Retry::default(),
                    )
                    .await;
                    assert!(
                        matches!(outcome.last, Final::Conflict),
                        "n{i} answered {} for {ack:?}, booked through n{}",
                        outcome.last.describe(),
                        ack.via
                    );
                    probes.push(outcome);
                }
            }
            println!(
                "{} acknowledged slots asked again through the other two instances: all 409",
                probes.len() / 2
            );
            for o in probes {
                ledger.record(o);
            }

            let check = check_store(&db.pool, &ledger.outcomes()).await;
            println!("{check}");
            let mut forwarded = Vec::new();
            for (i, node) in cluster.nodes.iter().enumerate() {
                let m = cluster.metrics(i).await.expect("metrics");
                forwarded.push(format!(
                    "{}: owns {}, forwarded {}, fenced {}",
                    node.name,
                    m.get("cluster_owned_shards"),
                    m.get("cluster_forwarded_requests"),
                    m.get("cluster_fenced_transactions")
                ));
            }
            println!("{}", forwarded.join("; "));
            cluster.stop_all();
            println!("logs: {}", cluster.log_report());
            for i in 0..cluster.nodes.len() {
                // tower-http logs every 5xx answer at ERROR, among them the 503 of
                // `/readyz` while an instance is joining; the clients' 5xx are counted above.
                let errors: Vec<String> = cluster
                    .messages(i, "ERROR", 5)
                    .into_iter()
                    .filter(|m| !m.ends_with("503 Service Unavailable (/readyz)"))
                    .collect();
                assert!(
                    errors.is_empty(),
                    "n{i} logged errors without any fault: {errors:#?}"
                );
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_an_owner_under_load() {
    with_test_db("kill_9_of_an_owner_under_load", |db| async move {
        let mut cluster = TestCluster::start(Arc::clone(&db), "cs_cluster_kill", fault_spec(false)).await;
        let (_doctors, probes, load_slots) = doctors_and_slots(&cluster).await;
        let ledger = Ledger::new();
        let load = Load::start(
            &cluster.client,
            LoadSpec {
                clients: 24,
                total: None,
                slots: Arc::new(load_slots),
                patients: 10_000..11_000,
                targets: cluster.urls(),
            },
            &ledger,
        );
        ledger.wait_booked(200, Duration::from_secs(30)).await;

        let victim = 1;
        let victim_url = cluster.nodes[victim].base();
        let victim_shards = cluster.shards_of(victim).await;
        assert!(!victim_shards.is_empty(), "n{victim} owns no shard");
        let before = ledger.summary();
        let killed_at = Instant::now();
        cluster.nodes[victim].kill_hard();
        let deadline = ttl() + Duration::from_secs(5);
        let takeover = cluster
            .wait_owned_elsewhere(&victim_shards, &victim_url, killed_at, deadline)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let served = probe_until_served(
            &cluster,
            &[0, 2],
            &only(&probes, &victim_shards),
            &ledger,
            killed_at,
            deadline,
        )
        .await;
        let slowest = served.values().max().copied().unwrap_or_default();
        let ready = (
            cluster.is_ready(0).await,
            cluster.is_ready(2).await,
        );
        println!(
            "SIGKILL of n{victim} ({} shards): leases taken over after {}, every shard booked through the survivors after {} (TTL {FAULT_TTL_MS} ms); survivors ready: {ready:?}",
            victim_shards.len(),
            secs(takeover),
            secs(slowest)
        );
        assert!(slowest <= deadline);

        cluster.wait_progress(&ledger, 200, Duration::from_secs(30)).await;
        load.stop().await;
        let outcomes = ledger.outcomes();
        let summary = Summary::of(&outcomes);
        println!("load: {summary} (before the kill: {} booked)", before.booked);
        assert_eq!(
            (summary.server_errors, summary.gave_up, summary.rejected),
            (0, 0, 0),
            "every booking ends in 201 or 409 after retries:\n{}",
            Summary::failures(&outcomes, 10)
        );
        let check = check_store(&db.pool, &outcomes).await;
        println!("{check}");
        cluster.wait_balanced(Duration::from_secs(20)).await;
        let m0 = cluster.metrics(0).await.expect("metrics");
        let m2 = cluster.metrics(2).await.expect("metrics");
        println!(
            "survivors: n0 owns {} (acquired {}, forwarded {}), n2 owns {} (acquired {}, forwarded {})",
            m0.get("cluster_owned_shards"),
            m0.get("cluster_shards_acquired"),
            m0.get("cluster_forwarded_requests"),
            m2.get("cluster_owned_shards"),
            m2.get("cluster_shards_acquired"),
            m2.get("cluster_forwarded_requests")
        );
        cluster.stop_all();
        println!("logs: {}", cluster.log_report());
    })
    .await;
}

// ---------------------------------------------------------------------------------------

/// SIGSTOP/SIGCONT rounds at most, until a late write of the zombie is seen refused.
const ZOMBIE_ROUNDS: usize = 3;

/// The answers to requests the zombie held while stopped (sent before SIGSTOP, answered
/// after SIGCONT), by status (`lost` when no answer came).
fn held_while_stopped(
    outcomes: &[Outcome],
    stopped_at: Instant,
    resumed_at: Instant,
) -> BTreeMap<String, usize> {
    let mut held = BTreeMap::new();
    for a in outcomes.iter().flat_map(|o| &o.attempts) {
        if a.sent < stopped_at && a.answered > resumed_at {
            let key = a.status.map_or("lost".to_owned(), |s| s.to_string());
            *held.entry(key).or_default() += 1;
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zombie_owner_is_fenced() {
    with_test_db("zombie_owner_is_fenced", |db| async move {
        let mut cluster = TestCluster::start(Arc::clone(&db), "cs_cluster_zombie", fault_spec(false)).await;
        let (doctors, probes, load_slots) = doctors_and_slots(&cluster).await;
        let zombie = 2;
        let zombie_url = cluster.nodes[zombie].base();
        let zombie_shards = cluster.shards_of(zombie).await;
        assert!(!zombie_shards.is_empty(), "n{zombie} owns no shard");
        let zombie_doctors: BTreeSet<i64> = only(&doctors, &zombie_shards).into_values().collect();
        let zombie_slots: Vec<Slot> = load_slots
            .iter()
            .filter(|s| zombie_doctors.contains(&s.doctor_id))
            .copied()
            .collect();

        // Load A: straight at the zombie, for the doctors it serves itself, so its journal
        // has work in flight when it is stopped. Load B: everything, through the others.
        let ledger_a = Ledger::new();
        let ledger_b = Ledger::new();
        let load_a = Load::start(
            &cluster.client,
            LoadSpec {
                clients: 24,
                total: None,
                slots: Arc::new(zombie_slots),
                patients: 40_000..41_000,
                targets: vec![zombie_url.clone()],
            },
            &ledger_a,
        );
        let load_b = Load::start(
            &cluster.client,
            LoadSpec {
                clients: 8,
                total: None,
                slots: Arc::new(load_slots),
                patients: 41_000..42_000,
                targets: vec![cluster.nodes[0].base(), cluster.nodes[1].base()],
            },
            &ledger_b,
        );
        ledger_a.wait_booked(200, Duration::from_secs(30)).await;

        // Whether a stop catches a write of the zombie between its decision and its commit
        // is luck: stop it again (after it serves its shards again) until one is refused.
        let mut stops = Vec::new();
        for round in 1..=ZOMBIE_ROUNDS {
            let shards = cluster.shards_of(zombie).await;
            cluster.nodes[zombie].server().signal("STOP");
            let stopped_at = Instant::now();
            let sessions = db.sessions_of(&cluster.nodes[zombie].name).await;
            let takeover = cluster
                .wait_owned_elsewhere(&shards, &zombie_url, stopped_at, ttl() + Duration::from_secs(5))
                .await;
            let takeover = match takeover {
                Ok(t) => t,
                Err(e) => panic!(
                    "round {round}, while n{zombie} is stopped: {e}\nits Postgres sessions when stopped: {sessions:#?}\nnow: {:#?}",
                    db.sessions_of(&cluster.nodes[zombie].name).await
                ),
            };
            let served = probe_until_served(
                &cluster,
                &[0, 1],
                &only(&probes, &shards),
                &ledger_b,
                stopped_at,
                ttl() + Duration::from_secs(8),
            )
            .await;
            let slowest = served.values().max().copied().unwrap_or_default();
            // The deliberate pause: the zombie stays stopped well past its lease.
            let stop_for = (2 * ttl()).max(slowest + Duration::from_secs(1));
            tokio::time::sleep(stop_for.saturating_sub(stopped_at.elapsed())).await;
            cluster.nodes[zombie].server().signal("CONT");
            let resumed_at = Instant::now();
            stops.push((stopped_at, resumed_at));
            cluster.wait_progress(&ledger_a, 100, Duration::from_secs(30)).await;
            let m = cluster.metrics(zombie).await.expect("the zombie's metrics");
            let fenced = m.get("cluster_fenced_transactions");
            let in_flight = held_while_stopped(&ledger_a.outcomes(), stopped_at, resumed_at);
            println!(
                "round {round}: SIGSTOP of n{zombie} ({} shards) for {}: its Postgres sessions when stopped {sessions:?}; \
                 leases taken over after {}, every shard booked through the others after {}; \
                 after SIGCONT it has fenced {fenced} transactions in all, and answered the requests it held {in_flight:?}",
                shards.len(),
                secs(resumed_at - stopped_at),
                secs(takeover),
                secs(slowest)
            );
            if fenced > 0.0 || in_flight.contains_key("503") || round == ZOMBIE_ROUNDS {
                break;
            }
            let back = cluster.wait_balanced(Duration::from_secs(20)).await;
            println!("round {round}: balanced again after {}", secs(back));
        }
        load_a.stop().await;
        load_b.stop().await;

        let m = cluster.metrics(zombie).await.expect("the zombie's metrics");
        let fenced = m.get("cluster_fenced_transactions");
        let outcomes_a = ledger_a.outcomes();
        let mut in_flight_503 = 0;
        for &(stopped_at, resumed_at) in &stops {
            in_flight_503 += held_while_stopped(&outcomes_a, stopped_at, resumed_at)
                .get("503")
                .copied()
                .unwrap_or(0);
        }
        println!(
            "n{zombie}: fenced {fenced} transactions, lost {} shards; {in_flight_503} requests it held answered 503; its warnings: {:?}",
            m.get("cluster_shards_lost"),
            cluster.messages(zombie, "WARN", 6)
        );
        let all: Vec<Outcome> = outcomes_a.into_iter().chain(ledger_b.outcomes()).collect();
        let summary = Summary::of(&all);
        println!("load: {summary}");
        assert_eq!(
            (summary.server_errors, summary.rejected),
            (0, 0),
            "no 5xx other than 503 and no 4xx other than 409:\n{}",
            Summary::failures(&all, 10)
        );
        let check = check_store(&db.pool, &all).await;
        println!("{check}");
        assert!(
            fenced > 0.0 || in_flight_503 > 0,
            "in {} stops the zombie's late writes were never seen refused: fenced {fenced}, \
             none of the requests it held answered 503",
            stops.len()
        );
        let resumed_at = stops.last().expect("one stop at least").1;
        cluster.wait_balanced(Duration::from_secs(20)).await;
        println!(
            "balanced again {} after the last SIGCONT ({})",
            secs(resumed_at.elapsed()),
            cluster.ownership_line().await
        );
        cluster.stop_all();
        println!("logs: {}", cluster.log_report());
    })
    .await;
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_from_postgres_and_heal() {
    with_test_db("partition_from_postgres_and_heal", |db| async move {
        let mut cluster = TestCluster::start(Arc::clone(&db), "cs_cluster_partition", fault_spec(true)).await;
        let (_doctors, probes, load_slots) = doctors_and_slots(&cluster).await;
        let ledger = Ledger::new();
        let load = Load::start(
            &cluster.client,
            LoadSpec {
                clients: 16,
                total: None,
                slots: Arc::new(load_slots),
                patients: 10_000..11_000,
                targets: cluster.urls(),
            },
            &ledger,
        );
        ledger.wait_booked(200, Duration::from_secs(30)).await;

        let victim = 0;
        let victim_url = cluster.nodes[victim].base();
        let role = cluster.nodes[victim].role.clone().expect("a role per instance");
        let victim_shards = cluster.shards_of(victim).await;
        assert!(!victim_shards.is_empty(), "n{victim} owns no shard");
        let cut_at = Instant::now();
        let (terminated, stopped_serving) = tokio::join!(
            db.cut_off(&role, Duration::from_secs(2)),
            cluster.wait_metrics(victim, cut_at, ttl() + Duration::from_millis(500), |m| {
                m.get("cluster_owned_shards") == 0.0
            })
        );
        let ready_while_cut = cluster.is_ready(victim).await;
        let stopped_serving = stopped_serving.unwrap_or_else(|| {
            panic!(
                "n{victim} still serves shards {:?} after it was cut off from Postgres: {:?}",
                ttl() + Duration::from_millis(500),
                cluster.messages(victim, "WARN", 6)
            )
        });
        let takeover = cluster
            .wait_owned_elsewhere(&victim_shards, &victim_url, cut_at, ttl() + Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let served = probe_until_served(
            &cluster,
            &[1, 2],
            &only(&probes, &victim_shards),
            &ledger,
            cut_at,
            ttl() + Duration::from_secs(5),
        )
        .await;
        let slowest = served.values().max().copied().unwrap_or_default();
        println!(
            "n{victim} cut off from Postgres ({terminated} sessions terminated): it stopped serving after {}, \
             /readyz then {}; its {} shards were taken over after {} and booked through the others after {}",
            secs(stopped_serving),
            if ready_while_cut { "200" } else { "503" },
            victim_shards.len(),
            secs(takeover),
            secs(slowest)
        );
        assert!(!ready_while_cut, "n{victim} is ready while cut off from Postgres");

        db.heal(&role).await;
        let healed_at = Instant::now();
        let rejoined = cluster
            .wait_metrics(victim, healed_at, Duration::from_secs(20), |m| {
                m.get("cluster_owned_shards") > 0.0 && m.get("cluster_unrouted_shards") == 0.0
            })
            .await;
        let Some(rejoined) = rejoined else {
            panic!(
                "n{victim} owns no shard 20 s after the heal: {:?}\n{}\n{}",
                cluster.messages(victim, "WARN", 8),
                cluster.leases_against_service().await,
                cluster.logs_tail(10)
            )
        };
        let balanced = cluster.wait_balanced(Duration::from_secs(20)).await;
        println!(
            "healed: n{victim} owns shards again after {}, the cluster is balanced after {} more ({})",
            secs(rejoined),
            secs(balanced),
            cluster.ownership_line().await
        );

        cluster.wait_progress(&ledger, 200, Duration::from_secs(30)).await;
        load.stop().await;
        let outcomes = ledger.outcomes();
        let summary = Summary::of(&outcomes);
        println!("load: {summary}");
        assert_eq!(
            (summary.server_errors, summary.gave_up, summary.rejected),
            (0, 0, 0),
            "every booking ends in 201 or 409 after retries:\n{}",
            Summary::failures(&outcomes, 10)
        );
        let check = check_store(&db.pool, &outcomes).await;
        println!("{check}");
        cluster.stop_all();
        println!("logs: {}", cluster.log_report());
    })
    .await;
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_under_load() {
    with_test_db("rolling_restart_under_load", |db| async move {
        let spec = ClusterSpec {
            instances: 3,
            lease_ttl_ms: Some(3_000),
            shard_count: Some(FAULT_SHARDS),
            role_per_instance: false,
        };
        let mut cluster = TestCluster::start(Arc::clone(&db), "cs_cluster_rolling", spec).await;
        let doctors = cluster.create_doctors(24).await;
        let slots = cluster.free_slots(&doctors, 7).await;
        let ledger = Ledger::new();
        let load = Load::start(
            &cluster.client,
            LoadSpec {
                clients: 8,
                total: None,
                slots: Arc::new(slots),
                patients: 50_000..51_000,
                targets: cluster.urls(),
            },
            &ledger,
        );
        ledger.wait_booked(100, Duration::from_secs(30)).await;

        for i in 0..cluster.nodes.len() {
            let health = cluster.nodes[i].url("/healthz");
            assert!(
                !closes_connection(&health).await.expect("n{i} answers"),
                "n{i} closes connections before it is told to stop"
            );
            let leaving = tokio::spawn(answers_closing_until_refused(health));
            let (status, exit) = cluster.nodes[i].terminate(Duration::from_secs(30)).await;
            assert!(status.success(), "n{i} exited with {status} after SIGTERM");
            let (answered, closing) = leaving.await.unwrap();
            assert!(
                answered > 0 && closing == answered,
                "n{i} answered {answered} requests while leaving, {closing} of them with \
                 `Connection: close` (a kept-alive connection would race its close)"
            );
            let handoffs = cluster.nodes[i].handoffs();
            let restarted_at = Instant::now();
            cluster
                .start_node(i)
                .await
                .unwrap_or_else(|e| panic!("restarting n{i}: {e}"));
            let ready = restarted_at.elapsed();
            let balanced = cluster.wait_balanced(Duration::from_secs(30)).await;
            println!(
                "n{i}: SIGTERM to exit {} (handoffs: {handoffs:?} as (shards, ms)); restarted, ready after {}, balanced {} later ({})",
                secs(exit),
                secs(ready),
                secs(balanced),
                cluster.ownership_line().await
            );
            cluster.wait_progress(&ledger, 50, Duration::from_secs(30)).await;
        }
        load.stop().await;
        let outcomes = ledger.outcomes();
        let summary = Summary::of(&outcomes);
        println!("load: {summary}");
        let five_xx: Vec<String> = outcomes
            .iter()
            .flat_map(|o| o.server_answers().map(move |a| format!("{:?}: {} {}", o.slot, a.status.unwrap_or(0), a.note)))
            .take(10)
            .collect();
        assert!(
            five_xx.is_empty(),
            "{} answers 5xx during the rolling restart, e.g.:\n{}",
            summary.answers_5xx,
            five_xx.join("\n")
        );
        assert_eq!(
            (summary.server_errors, summary.gave_up, summary.rejected),
            (0, 0, 0),
            "{}",
            Summary::failures(&outcomes, 10)
        );
        let check = check_store(&db.pool, &outcomes).await;
        println!("{check}");
        cluster.stop_all();
        println!("logs: {}", cluster.log_report());
    })
    .await;
}

/// Whether an answer to GET `url` (on a new connection) says `Connection: close`; `None`
/// when nothing answers.
async fn closes_connection(url: &str) -> Option<bool> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let answer = client.get(url).send().await.ok()?;
    Some(
        answer
            .headers()
            .get(reqwest::header::CONNECTION)
            .is_some_and(|v| v == "close"),
    )
}

/// Asks `url` every 20 ms until nothing answers (for at most 30 s), from the moment the
/// instance starts leaving: how many answers came, and how many said `Connection: close`.
/// The first answers may still come before the signal lands; those are not counted.
async fn answers_closing_until_refused(url: String) -> (u32, u32) {
    let until = Instant::now() + Duration::from_secs(30);
    let (mut answered, mut closing) = (0, 0);
    while Instant::now() < until {
        match closes_connection(&url).await {
            Some(true) => {
                answered += 1;
                closing += 1;
            }
            // Not leaving yet (the signal is sent right after this task starts), or an
            // answer that kept its connection while leaving: counted against `closing`.
            Some(false) if closing > 0 => answered += 1,
            Some(false) => {}
            None => break,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (answered, closing)
}
