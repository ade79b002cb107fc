//! Storage faults under the real release binary, each bounded in time:
//!
//! - Postgres restarted under load (`pg_ctl restart -m fast` and `-m immediate`) and
//!   stopped for seconds then started, on a private server (see `private_postgres`):
//!   every answer meanwhile is 201, 409 or 503 with `Retry-After` (never a dropped
//!   connection, never past the request timeout), `/readyz` answers 503 while the database
//!   is down, the service recovers by itself, and afterwards every 201 is stored, nothing
//!   refused as "nothing was booked" is, no family booking is stored in part and no
//!   doctor's active consultations overlap.
//! - The service's Postgres sessions killed (`pg_terminate_backend`) while their journal
//!   batch waits on a lock the test holds: those callers get 503, nothing of their
//!   bookings is stored, and the same bookings then succeed; then every session killed
//!   while idle: bookings work again within seconds.
//! - SQLite on a full disk (a 64 MiB tmpfs filled by a filler file under load): 503s, no
//!   crash, `PRAGMA integrity_check` ok, recovery by itself once the filler is deleted,
//!   every 201 stored. Skipped with a notice where mounting is impossible (not root),
//!   except under `CI=true`.
//! - A corrupt file, a foreign SQLite database and another application's migrated
//!   database at start: a clear error on stderr, a non-zero exit, the file byte for byte
//!   untouched.
//!
//! Each test prints its figures (the README's "Hardening" table quotes them).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use consult_scheduler::http::auth::Role;
use rand::seq::SliceRandom;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::private_postgres::{is_root, PrivatePostgres};
use crate::support::*;

/// Booking clients under load.
const CLIENTS: usize = 12;
/// The service's request timeout, set explicitly: no answer may take longer (plus
/// [`LATENCY_MARGIN`] for the answer to travel).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const LATENCY_MARGIN: Duration = Duration::from_millis(1500);
/// How long `/readyz` may take to answer, whatever the store does (its probe is bounded
/// by 2 s).
const READYZ_BOUND: Duration = Duration::from_millis(3000);
/// Load before a fault is injected, and after the service has recovered.
const LOAD_BEFORE: Duration = Duration::from_millis(2000);
const LOAD_AFTER: Duration = Duration::from_millis(2000);
/// How long the database stays stopped in the stop/start fault.
const STOPPED_FOR: Duration = Duration::from_secs(5);
/// How long the disk stays full.
const FULL_FOR: Duration = Duration::from_secs(4);
/// Within this after the fault ends, a booking must succeed again.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(20);
/// Every test body, start to end.
const TEST_DEADLINE: Duration = Duration::from_secs(240);
/// Consultations per family booking of the load.
const FAMILY_SIZE: usize = 2;
/// The application name the service gives its Postgres sessions.
const APPLICATION_NAME: &str = "consult-scheduler";

type Slot = (i64, DateTime<Utc>);

// ---------------------------------------------------------------------------------------
// Postgres restarted or stopped under load

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_fast_under_load() {
    bounded(postgres_outage(
        release_binary_async().await,
        "postgres_restart_fast_under_load",
        PgFault::Restart("fast"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_immediate_under_load() {
    bounded(postgres_outage(
        release_binary_async().await,
        "postgres_restart_immediate_under_load",
        PgFault::Restart("immediate"),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_for_seconds_under_load() {
    bounded(postgres_outage(
        release_binary_async().await,
        "postgres_stopped_for_seconds_under_load",
        PgFault::StopStart,
    ))
    .await;
}

#[derive(Debug, Clone, Copy)]
enum PgFault {
    /// `pg_ctl restart -m <mode>`.
    Restart(&'static str),
    /// `pg_ctl stop -m fast`, [`STOPPED_FOR`], `pg_ctl start`.
    StopStart,
}

/// When a fault happened, in seconds since the load started.
#[derive(Debug, Clone, Copy)]
struct FaultTimes {
    /// The fault was injected.
    start: Duration,
    /// The database was certainly down from here (stop returned) ...
    down_from: Option<Duration>,
    /// ... until here (start called).
    down_until: Option<Duration>,
    /// The database accepted connections again (restart or start returned).
    back: Duration,
}

async fn postgres_outage(bin: PathBuf, test: &'static str, fault: PgFault) {
    let Some(pg) = PrivatePostgres::start(test) else {
        return;
    };
    let pg = Arc::new(pg);
    pg.create_database("consult").await;
    let url = pg.url("consult");
    let dir = TempDir::new("cs_storage_faults");
    let client = http_client();
    let env = service_env(url.clone());
    let mut server = Server::start_ready(&bin, dir.path(), "service", &env, &client).await;
    let doctors = create_doctors(&server, &client, 3).await;
    let slots = free_slots(&server, &client, &doctors).await;

    let t0 = Instant::now();
    let load = Load::start(&server, &client, slots, 10_000, t0);
    let readiness = Readiness::start(&server, &client, t0);
    tokio::time::sleep(LOAD_BEFORE).await;
    let times = {
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || {
            let start = t0.elapsed();
            match fault {
                PgFault::Restart(mode) => {
                    pg.restart(mode);
                    FaultTimes {
                        start,
                        down_from: None,
                        down_until: None,
                        back: t0.elapsed(),
                    }
                }
                PgFault::StopStart => {
                    pg.stop("fast");
                    let down_from = t0.elapsed();
                    std::thread::sleep(STOPPED_FOR);
                    let down_until = t0.elapsed();
                    pg.start_again();
                    FaultTimes {
                        start,
                        down_from: Some(down_from),
                        down_until: Some(down_until),
                        back: t0.elapsed(),
                    }
                }
            }
        })
        .await
        .expect("the fault injection panicked")
    };
    let recovered = load.created_after(times.back, RECOVERY_DEADLINE).await;
    tokio::time::sleep(LOAD_AFTER).await;
    let answers = load.finish().await;
    let probes = readiness.finish().await;
    let first_201 = recovered.unwrap_or_else(|| {
        panic!(
            "{test}: no booking succeeded within {RECOVERY_DEADLINE:?} after the database was back\n{}",
            tail(&server.stdout(), 20)
        )
    });

    let outcome = check_answers(test, &answers);
    print_figures(test, &outcome, &probes, &times, first_201);
    // While the database is down a booking is mostly refused by the storage failure itself,
    // within the pool's 2 s wait for a connection, not after waiting out the engine's 5 s
    // call timeout (a caller whose doctor must be reloaded, twice, can still meet it).
    assert!(
        outcome.timed_out * 2 <= outcome.unavailable,
        "{test}: {} of {} 503s waited out the engine's call timeout",
        outcome.timed_out,
        outcome.unavailable
    );
    check_readiness(test, &probes, &times);
    server
        .wait_ready(&client, Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{test}: not ready after the fault: {e}"));

    // A clean stop still works after the outage; then the store holds what was said.
    server.terminate();
    let exit = server
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("{test}: the service did not stop on SIGTERM"));
    assert!(exit.success(), "{test}: the service exited {exit}");
    assert_no_panic(&server);
    let stored = read_postgres(&url).await;
    verify_store(test, &stored, &outcome.acks, &outcome.refused);
}

// ---------------------------------------------------------------------------------------
// Postgres sessions killed mid-batch

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sessions_killed_mid_batch() {
    bounded(sessions_killed_mid_batch(release_binary_async().await)).await;
}

async fn sessions_killed_mid_batch(bin: PathBuf) {
    const TEST: &str = "postgres_sessions_killed_mid_batch";
    let Some(pg) = PrivatePostgres::start(TEST) else {
        return;
    };
    pg.create_database("consult").await;
    let url = pg.url("consult");
    let dir = TempDir::new("cs_storage_faults");
    let client = http_client();
    let env = service_env(url.clone());
    let mut server = Server::start_ready(&bin, dir.path(), "service", &env, &client).await;
    let doctors = create_doctors(&server, &client, 4).await;
    let mut slots = free_slots(&server, &client, &doctors).await;
    slots.shuffle(&mut rand::rng());
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("cannot connect to the private server");

    // Phase 1: the journal's batches block on a lock the test holds; their sessions are
    // terminated while they wait, mid-statement.
    use sqlx::Connection;
    let mut locker = sqlx::PgConnection::connect(&url)
        .await
        .expect("cannot connect to the private server");
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE consultations IN EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let t0 = Instant::now();
    let requests: Vec<Request> = (0..16)
        .map(|i| {
            let items = if i % 3 == 0 { FAMILY_SIZE } else { 1 };
            let picks: Vec<Slot> = slots.drain(..items).collect();
            Request::new(20_000 + i, picks)
        })
        .collect();
    let base = server.url("");
    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|r| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move { r.send(&client, &base, t0).await })
        })
        .collect();
    let waiting = async {
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = $1 AND wait_event_type = 'Lock'",
            )
            .bind(APPLICATION_NAME)
            .fetch_one(&db)
            .await
            .unwrap();
            if n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap_or_else(|_| panic!("{TEST}: no journal batch ever waited on the lock"));
    // Let the other requests reach their batches too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = terminate(&db, "wait_event_type = 'Lock'").await;
    assert!(!killed.is_empty(), "{TEST}: no session was terminated");
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    let _ = locker.close().await;
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("a booking task panicked"));
    }
    let outcome = check_answers(TEST, &answers);
    assert!(
        !outcome.refused.is_empty(),
        "{TEST}: no caller of the terminated batches was answered 503: {:?}",
        answers.iter().map(|a| &a.status).collect::<Vec<_>>()
    );
    // Killed before their COMMIT: certainly not written, and said so.
    assert!(
        outcome.uncertain == 0,
        "{TEST}: a caller of a batch killed before its COMMIT was told it may have completed"
    );
    let stored = read_postgres(&url).await;
    verify_store(TEST, &stored, &outcome.acks, &outcome.refused);

    // The same bookings again: nothing of them was stored, so each now books.
    let mut acks = outcome.acks.clone();
    let mut retries = 0;
    for request in requests.iter().filter(|r| {
        outcome
            .refused
            .iter()
            .any(|(p, s)| *p == r.patient_id && *s == r.slots)
    }) {
        let (answer, tries) = request.until_created(&client, &base, t0).await;
        retries += tries;
        acks.extend(answer_acks(&answer));
    }

    // Phase 2: every session of the service terminated while idle; bookings work again.
    let killed_idle = terminate(&db, "TRUE").await;
    let after_kill = Instant::now();
    let later: Vec<Request> = (0..8)
        .map(|i| Request::new(21_000 + i, slots.drain(..1).collect()))
        .collect();
    let tasks: Vec<_> = later
        .into_iter()
        .map(|r| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move { r.until_created(&client, &base, t0).await })
        })
        .collect();
    let mut unavailable_after_idle_kill = 0;
    for task in tasks {
        let (answer, tries) = task.await.expect("a booking task panicked");
        unavailable_after_idle_kill += tries;
        acks.extend(answer_acks(&answer));
    }
    let working_again = after_kill.elapsed();

    let stored = read_postgres(&url).await;
    verify_store(TEST, &stored, &acks, &[]);
    server
        .wait_ready(&client, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{TEST}: not ready after the kills: {e}"));
    println!(
        "{TEST}: {} batch session(s) terminated mid-statement: {} request(s) answered 503 \
         (nothing stored), {} answered 201 after the lock was released; the refused ones \
         booked on retry ({retries} more 503 first); {} idle sessions terminated: 8 new \
         bookings all 201 within {:.2} s ({unavailable_after_idle_kill} x 503 on the way)",
        killed.len(),
        outcome.refused.len(),
        outcome.created,
        killed_idle.len(),
        working_again.as_secs_f64(),
    );
    db.close().await;
    server.kill_hard();
    assert_no_panic(&server);
}

/// Terminates the service's sessions on this database that match `condition` (over
/// `pg_stat_activity`); returns their pids. Only ever the service's own sessions, found
/// by its application name, on the test's private server.
async fn terminate(db: &sqlx::PgPool, condition: &str) -> Vec<i32> {
    // Chosen first, then terminated: in one WHERE clause Postgres may call
    // pg_terminate_backend before the other conditions.
    let pids: Vec<i32> = sqlx::query_scalar(&format!(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = $1 AND pid <> pg_backend_pid() AND ({condition})"
    ))
    .bind(APPLICATION_NAME)
    .fetch_all(db)
    .await
    .expect("cannot list the service's sessions");
    for pid in &pids {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(db)
            .await
            .expect("cannot terminate a session");
    }
    pids
}

// ---------------------------------------------------------------------------------------
// SQLite on a full disk

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_full_disk_under_load() {
    bounded(full_disk(release_binary_async().await)).await;
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size_mib: u32) -> Result<Self, String> {
        if !is_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a process not reaped yet): detach it now, freed when unused.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Writes zeros to `path` until the file system is full (ENOSPC); returns the bytes
/// written.
fn fill_disk(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 512] {
        let zeros = vec![0u8; chunk];
        loop {
            match file.write(&zeros) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    written
}

async fn full_disk(bin: PathBuf) {
    const TEST: &str = "sqlite_full_disk_under_load";
    let dir = TempDir::new("cs_storage_faults");
    let mount_point = dir.path().join("disk");
    // 64 MiB: room for the service's own WAL, which grows to about 40 MB before it is
    // checkpointed (`wal_autocheckpoint`); the filler takes what is left.
    let tmpfs = match Tmpfs::mount(&mount_point, 64) {
        Ok(t) => t,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{TEST}: cannot mount a tmpfs and CI=true: {why}")
        }
        Err(why) => {
            eprintln!("skipped {TEST}: cannot mount a tmpfs: {why}");
            return;
        }
    };
    let database = tmpfs.path.join("consult.db");
    let filler = tmpfs.path.join("filler");
    let client = http_client();
    let env = service_env(format!("sqlite://{}", database.display()));
    let mut server = Server::start_ready(&bin, dir.path(), "service", &env, &client).await;
    let doctors = create_doctors(&server, &client, 3).await;
    let slots = free_slots(&server, &client, &doctors).await;

    let t0 = Instant::now();
    let load = Load::start(&server, &client, slots.clone(), 10_000, t0);
    let readiness = Readiness::start(&server, &client, t0);
    tokio::time::sleep(LOAD_BEFORE).await;
    let full_at = t0.elapsed();
    let filled = {
        let filler = filler.clone();
        tokio::task::spawn_blocking(move || fill_disk(&filler))
            .await
            .expect("filling the disk panicked")
    };
    let filled_at = t0.elapsed();
    tokio::time::sleep(FULL_FOR).await;
    std::fs::remove_file(&filler).expect("cannot delete the filler");
    let freed_at = t0.elapsed();
    let recovered = load.created_after(freed_at, RECOVERY_DEADLINE).await;
    tokio::time::sleep(LOAD_AFTER).await;
    let answers = load.finish().await;
    let probes = readiness.finish().await;
    let first_201 = recovered.unwrap_or_else(|| {
        panic!(
            "{TEST}: no booking succeeded within {RECOVERY_DEADLINE:?} after the filler was deleted\n{}",
            tail(&server.stdout(), 20)
        )
    });
    let outcome = check_answers(TEST, &answers);
    let while_full: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent > filled_at && a.done < freed_at)
        .collect();
    let unavailable_while_full = while_full
        .iter()
        .filter(|a| a.status == Ok(StatusCode::SERVICE_UNAVAILABLE))
        .count();
    assert!(
        unavailable_while_full > 0,
        "{TEST}: no booking was answered 503 while the disk was full ({} answered)",
        while_full.len()
    );
    let times = FaultTimes {
        start: full_at,
        down_from: None,
        down_until: None,
        back: freed_at,
    };
    println!(
        "{TEST}: filler of {:.1} MiB filled the disk in {:.2} s; {} of {} bookings sent while \
         it was full answered 503",
        filled as f64 / (1 << 20) as f64,
        (filled_at - full_at).as_secs_f64(),
        unavailable_while_full,
        while_full.len(),
    );
    print_figures(TEST, &outcome, &probes, &times, first_201);

    server.terminate();
    let exit = server
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("{TEST}: the service did not stop on SIGTERM"));
    assert!(exit.success(), "{TEST}: the service exited {exit}");
    assert_no_panic(&server);

    let stored = read_sqlite(&database).await;
    verify_store(TEST, &stored, &outcome.acks, &outcome.refused);

    // The file serves again: a restarted service on it books.
    let mut again = Server::start_ready(&bin, dir.path(), "restarted", &env, &client).await;
    let taken: HashSet<Slot> = stored
        .rows
        .iter()
        .map(|r| (r.doctor_id, r.scheduled_at))
        .collect();
    let free: Vec<Slot> = slots
        .iter()
        .filter(|s| !taken.contains(s) && s.1 > Utc::now() + chrono::Duration::minutes(10))
        .take(1)
        .copied()
        .collect();
    let answer = Request::new(30_000, free)
        .send(&client, &again.url(""), t0)
        .await;
    assert_eq!(
        answer.status,
        Ok(StatusCode::CREATED),
        "{TEST}: booking after a restart on the same file: {}",
        answer.body
    );
    again.kill_hard();
    drop(again);
    drop(server);
    drop(tmpfs);
}

// ---------------------------------------------------------------------------------------
// A corrupt or foreign SQLite file at start

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_corrupt_or_foreign_file_at_start() {
    bounded(corrupt_or_foreign(release_binary_async().await)).await;
}

async fn corrupt_or_foreign(bin: PathBuf) {
    const TEST: &str = "sqlite_corrupt_or_foreign_file_at_start";
    let dir = TempDir::new("cs_storage_faults");

    let corrupt = dir.path().join("corrupt.db");
    let mut noise = vec![0u8; 64 * 1024];
    rand::rng().fill(&mut noise[..]);
    std::fs::write(&corrupt, &noise).unwrap();

    let foreign = dir.path().join("foreign.db");
    sqlite_file(
        &foreign,
        &[
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL)",
            "INSERT INTO customers (name) VALUES ('Ada'), ('Grace')",
            "INSERT INTO orders (customer_id, total) VALUES (1, 9.5)",
        ],
    )
    .await;

    // Another application that also uses sqlx migrations.
    let other_app = dir.path().join("other-app.db");
    sqlite_file(
        &other_app,
        &[
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
             checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (20240101000000, 'widgets', TRUE, X'00112233', 1)",
            "CREATE TABLE widgets (id INTEGER PRIMARY KEY, label TEXT)",
            "INSERT INTO widgets (label) VALUES ('gear')",
        ],
    )
    .await;

    let cases: [(&Path, &str); 3] = [
        (&corrupt, "is not a SQLite database"),
        (&foreign, "is not a Consult Scheduler database"),
        (&other_app, "was migrated by another application"),
    ];
    for (file, expected) in cases {
        let before = std::fs::read(file).unwrap();
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let started = Instant::now();
        let (status, stderr) = run_to_exit(
            &bin,
            dir.path(),
            &name,
            &service_env(format!("sqlite://{}", file.display())),
            Duration::from_secs(30),
        )
        .await;
        let took = started.elapsed();
        assert!(
            !status.success(),
            "{TEST}: {name}: the service exited {status}"
        );
        assert!(
            stderr.contains(expected) && stderr.contains(&file.display().to_string()),
            "{TEST}: {name}: stderr should say `{expected}` and name the file:\n{stderr}"
        );
        let after = std::fs::read(file).unwrap();
        assert!(
            before == after,
            "{TEST}: {name}: the file was changed ({} bytes before, {} after)",
            before.len(),
            after.len()
        );
        println!(
            "{TEST}: {name}: exit {status} after {:.2} s, file unchanged; stderr: {}",
            took.as_secs_f64(),
            stderr.trim()
        );
    }
}

/// A SQLite file (rollback journal, as most applications leave theirs) made by `sql`.
async fn sqlite_file(path: &Path, sql: &[&str]) {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    use sqlx::{ConnectOptions, Connection};
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Delete)
        .connect()
        .await
        .unwrap();
    for statement in sql {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

/// Runs the service (expected not to come up) until it exits; kills it and fails at the
/// deadline. Returns its exit status and stderr.
async fn run_to_exit(
    bin: &Path,
    workdir: &Path,
    name: &str,
    env: &[(&str, String)],
    deadline: Duration,
) -> (std::process::ExitStatus, String) {
    let stderr_path = workdir.join(format!("{name}.stderr.log"));
    let mut cmd = Command::new(bin);
    cmd.current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(workdir.join(format!("{name}.stdout.log"))).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CONSULT__") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.env(
        "CONSULT__SERVER__BIND",
        format!("127.0.0.1:{}", free_port()),
    );
    let mut child = cmd.spawn().expect("cannot start the service");
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name}: the service was still running after {deadline:?}:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (
        status,
        std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------------------
// The harness: the service's settings, doctors, load, readiness probes, checks.

/// Runs a test body within [`TEST_DEADLINE`] (the release binary is built before); a body that panics fails the test with its
/// own message.
async fn bounded(body: impl std::future::Future<Output = ()> + Send + 'static) {
    let task = tokio::spawn(body);
    match tokio::time::timeout(TEST_DEADLINE, task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the test body did not finish: {e}"),
        },
        Err(_) => panic!("the test did not finish within {TEST_DEADLINE:?}"),
    }
}

fn service_env(database_url: String) -> Vec<(&'static str, String)> {
    vec![
        ("CONSULT__DATABASE__URL", database_url),
        ("CONSULT__DEMO__SEED", "false".to_owned()),
        ("CONSULT__LOG__FORMAT", "json".to_owned()),
        (
            "CONSULT__SERVER__REQUEST_TIMEOUT_MS",
            REQUEST_TIMEOUT.as_millis().to_string(),
        ),
    ]
}

/// `n` approved doctors taking bookings around the clock, every day, in 15-minute slots.
async fn create_doctors(server: &Server, client: &reqwest::Client, n: usize) -> Vec<i64> {
    let admin = dev_token(Role::Admin, 1);
    let all_day = json!({"enabled": true, "start": "00:00", "end": "24:00"});
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, created) = post_json(
            client,
            &server.url("/admin/doctors"),
            &admin,
            &json!({
                "name": format!("Dr. Fault {i}"),
                "specialty": "General Practice",
                "timezone": "UTC",
                "slot_minutes": 15,
                "availability_schedule": {
                    "monday": all_day, "tuesday": all_day, "wednesday": all_day,
                    "thursday": all_day, "friday": all_day, "saturday": all_day,
                    "sunday": all_day,
                },
            }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "creating a doctor: {created}");
        let id = created["doctor"]["id"].as_i64().expect("doctor id");
        let (status, body) = post_json(
            client,
            &server.url(&format!("/admin/doctors/{id}/approve")),
            &admin,
            &json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "approving doctor {id}: {body}");
        ids.push(id);
    }
    ids
}

/// The doctors' free slots over the next 60 days, at least 10 minutes ahead.
async fn free_slots(server: &Server, client: &reqwest::Client, doctors: &[i64]) -> Vec<Slot> {
    let token = dev_token(Role::Patient, 1);
    let mut slots = Vec::new();
    for &doctor in doctors {
        let (status, body) = get_json(
            client,
            &server.url(&format!("/patient/doctors/{doctor}/availability?days=60")),
            &token,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "availability of {doctor}: {body}");
        slots.extend(
            available_starts(&body, chrono::Duration::minutes(10))
                .into_iter()
                .map(|start| (doctor, start)),
        );
    }
    assert!(slots.len() > 1000, "too few free slots: {}", slots.len());
    slots
}

/// One booking request: a single booking, or a family booking of several slots.
#[derive(Debug, Clone)]
struct Request {
    patient_id: i64,
    slots: Vec<Slot>,
}

/// One answer, with when it was sent and came back (since the load started).
#[derive(Debug, Clone)]
struct Answer {
    request: Request,
    sent: Duration,
    done: Duration,
    /// `Err` with the transport error when no answer came.
    status: Result<StatusCode, String>,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    fn latency(&self) -> Duration {
        self.done.saturating_sub(self.sent)
    }
}

impl Request {
    fn new(patient_id: i64, slots: Vec<Slot>) -> Self {
        assert!(!slots.is_empty());
        Self { patient_id, slots }
    }

    async fn send(&self, client: &reqwest::Client, base: &str, t0: Instant) -> Answer {
        let token = dev_token(Role::Patient, self.patient_id);
        let (url, body) = if self.slots.len() == 1 {
            let (doctor, start) = self.slots[0];
            (
                format!("{base}/patient/doctors/book"),
                json!({
                    "doctor_id": doctor,
                    "scheduled_at": start.to_rfc3339(),
                    "consult_mode": "chat",
                }),
            )
        } else {
            (
                format!("{base}/patient/bookings"),
                json!({"items": self.slots.iter().enumerate().map(|(i, (doctor, start))| json!({
                    "doctor_id": doctor,
                    "scheduled_at": start.to_rfc3339(),
                    "consult_mode": "chat",
                    "patient_name": format!("Family member {i}"),
                })).collect::<Vec<_>>()}),
            )
        };
        let sent = t0.elapsed();
        let result = client
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        let (status, retry_after, body) = match result {
            Err(e) => (Err(e.to_string()), None, Value::Null),
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match response.json::<Value>().await {
                    Ok(body) => (Ok(status), retry_after, body),
                    Err(e) => (
                        Err(format!("{status} with a broken body: {e}")),
                        None,
                        Value::Null,
                    ),
                }
            }
        };
        Answer {
            request: self.clone(),
            sent,
            done: t0.elapsed(),
            status,
            retry_after,
            body,
        }
    }

    /// Sends until 201, waiting `Retry-After` between 503s (at most 15 tries); returns
    /// the 201 and how many 503s came first.
    async fn until_created(
        &self,
        client: &reqwest::Client,
        base: &str,
        t0: Instant,
    ) -> (Answer, usize) {
        let mut unavailable = 0;
        loop {
            let answer = self.send(client, base, t0).await;
            match answer.status {
                Ok(StatusCode::CREATED) => return (answer, unavailable),
                Ok(StatusCode::SERVICE_UNAVAILABLE) if unavailable < 15 => {
                    unavailable += 1;
                    let wait: u64 = answer
                        .retry_after
                        .as_deref()
                        .and_then(|s| s.parse().ok())
                        .expect("a 503 carries Retry-After in seconds");
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
                _ => panic!(
                    "booking {:?} for patient {} answered {:?}: {}",
                    self.slots, self.patient_id, answer.status, answer.body
                ),
            }
        }
    }
}

/// Clients booking random free slots until stopped (every fourth books for a family).
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Answer>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(
        server: &Server,
        client: &reqwest::Client,
        slots: Vec<Slot>,
        patient_base: i64,
        t0: Instant,
    ) -> Self {
        let slots = Arc::new(slots);
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let base = server.url("");
        let tasks = (0..CLIENTS)
            .map(|n| {
                let (client, base, slots, stop, answers) = (
                    client.clone(),
                    base.clone(),
                    slots.clone(),
                    stop.clone(),
                    answers.clone(),
                );
                let patient_id = patient_base + n as i64;
                let family = n % 4 == 0;
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let picks: Vec<Slot> = {
                            let mut rng = rand::rng();
                            let want = if family { FAMILY_SIZE } else { 1 };
                            let mut picks: Vec<Slot> = Vec::new();
                            while picks.len() < want {
                                let slot = slots[rng.random_range(0..slots.len())];
                                if !picks.contains(&slot) {
                                    picks.push(slot);
                                }
                            }
                            picks
                        };
                        let answer = Request::new(patient_id, picks)
                            .send(&client, &base, t0)
                            .await;
                        let pause = answer.status != Ok(StatusCode::CREATED)
                            && answer.status != Ok(StatusCode::CONFLICT);
                        answers.lock().unwrap().push(answer);
                        if pause {
                            // Not Retry-After's full second: the test wants to see the
                            // service's answers while the fault lasts.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            answers,
            tasks,
        }
    }

    /// When the first 201 answered after `after` came (polled), within `deadline`.
    async fn created_after(&self, after: Duration, deadline: Duration) -> Option<Duration> {
        let until = Instant::now() + deadline;
        loop {
            let first = self
                .answers
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.status == Ok(StatusCode::CREATED) && a.sent >= after)
                .map(|a| a.done)
                .min();
            if first.is_some() {
                return first;
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a booking client panicked");
        }
        let mut answers = std::mem::take(&mut *self.answers.lock().unwrap());
        answers.sort_by_key(|a| a.done);
        answers
    }
}

/// One `/readyz` answer.
#[derive(Debug, Clone)]
struct Probe {
    sent: Duration,
    done: Duration,
    status: Result<StatusCode, String>,
}

/// `/readyz` polled every 100 ms until finished.
struct Readiness {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Probe>>,
}

impl Readiness {
    fn start(server: &Server, client: &reqwest::Client, t0: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (url, client, flag) = (server.url("/readyz"), client.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut probes = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let sent = t0.elapsed();
                let status = match client.get(&url).send().await {
                    Ok(r) => Ok(r.status()),
                    Err(e) => Err(e.to_string()),
                };
                probes.push(Probe {
                    sent,
                    done: t0.elapsed(),
                    status,
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            probes
        });
        Self { stop, task }
    }

    async fn finish(self) -> Vec<Probe> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the readiness probe panicked")
    }
}

/// A booking acknowledged with 201.
#[derive(Debug, Clone)]
struct Ack {
    id: i64,
    doctor_id: i64,
    patient_id: i64,
    scheduled_at: DateTime<Utc>,
}

/// The consultations a 201 answer acknowledges.
fn answer_acks(answer: &Answer) -> Vec<Ack> {
    let consultations: Vec<Value> = if answer.request.slots.len() == 1 {
        vec![answer.body["consultation"].clone()]
    } else {
        answer.body["booking"]["consultations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        consultations.len(),
        answer.request.slots.len(),
        "{}",
        answer.body
    );
    consultations
        .iter()
        .zip(&answer.request.slots)
        .map(|(c, (doctor, start))| {
            let ack = Ack {
                id: c["id"].as_i64().expect("consultation id"),
                doctor_id: c["doctor_id"].as_i64().expect("doctor_id"),
                patient_id: c["patient_id"].as_i64().expect("patient_id"),
                scheduled_at: parse_time(&c["scheduled_at"]),
            };
            assert_eq!(c["status"], "scheduled", "{}", answer.body);
            assert_eq!(
                (ack.doctor_id, ack.patient_id, ack.scheduled_at),
                (*doctor, answer.request.patient_id, *start),
                "the 201 describes another booking: {}",
                answer.body
            );
            ack
        })
        .collect()
}

/// What a run's answers said.
#[derive(Debug, Default)]
struct Outcome {
    acks: Vec<Ack>,
    /// Requests answered 503 "nothing was booked": (patient, slots).
    refused: Vec<(i64, Vec<Slot>)>,
    created: usize,
    conflicts: usize,
    unavailable: usize,
    /// 503s that say the booking "may have completed" (the engine's call timeout, or the
    /// connection to storage lost during a COMMIT).
    uncertain: usize,
    /// Of those, the engine's call timeout: a caller waited it out.
    timed_out: usize,
    /// Completion times of the 503s.
    unavailable_at: Vec<Duration>,
    slowest: Duration,
}

/// Every answer is a 201, a 409 with the seed's body, or a 503 `unavailable` with
/// `Retry-After`; none took longer than the request timeout; no request went unanswered.
fn check_answers(test: &str, answers: &[Answer]) -> Outcome {
    let mut outcome = Outcome::default();
    let mut wrong = Vec::new();
    for answer in answers {
        outcome.slowest = outcome.slowest.max(answer.latency());
        if answer.latency() > REQUEST_TIMEOUT + LATENCY_MARGIN {
            wrong.push(format!(
                "answered after {:?}: {:?} {}",
                answer.latency(),
                answer.status,
                answer.body
            ));
        }
        match &answer.status {
            Ok(StatusCode::CREATED) => {
                outcome.created += 1;
                outcome.acks.extend(answer_acks(answer));
            }
            Ok(StatusCode::CONFLICT) if answer.body["error"] == "time_slot_conflict" => {
                outcome.conflicts += 1;
            }
            Ok(StatusCode::SERVICE_UNAVAILABLE)
                if answer.body["error"] == "unavailable" && answer.retry_after.is_some() =>
            {
                outcome.unavailable += 1;
                outcome.unavailable_at.push(answer.done);
                let message = answer.body["message"].as_str().unwrap_or_default();
                if message.contains("nothing was booked") {
                    outcome
                        .refused
                        .push((answer.request.patient_id, answer.request.slots.clone()));
                } else if message.contains("may have completed") {
                    outcome.uncertain += 1;
                    if message.contains("timed out") {
                        outcome.timed_out += 1;
                    }
                }
            }
            other => wrong.push(format!(
                "{other:?} (Retry-After {:?}) after {:?}: {}",
                answer.retry_after,
                answer.latency(),
                answer.body
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "{test}: {} of {} answers were not 201 / 409 / 503 with Retry-After in time, e.g.:\n{}",
        wrong.len(),
        answers.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
    assert!(outcome.created > 0, "{test}: nothing was booked at all");
    outcome
}

/// Every `/readyz` answer came within [`READYZ_BOUND`] as 200 or 503, and while the
/// database was certainly down every one was 503 (and there was at least one).
fn check_readiness(test: &str, probes: &[Probe], times: &FaultTimes) {
    for probe in probes {
        let latency = probe.done.saturating_sub(probe.sent);
        assert!(
            latency <= READYZ_BOUND,
            "{test}: /readyz took {latency:?} (sent at {:?}): {:?}",
            probe.sent,
            probe.status
        );
        assert!(
            matches!(
                probe.status,
                Ok(StatusCode::OK) | Ok(StatusCode::SERVICE_UNAVAILABLE)
            ),
            "{test}: /readyz answered {:?}",
            probe.status
        );
    }
    if let (Some(from), Some(until)) = (times.down_from, times.down_until) {
        let during: Vec<&Probe> = probes
            .iter()
            .filter(|p| p.sent >= from && p.done <= until)
            .collect();
        assert!(
            !during.is_empty(),
            "{test}: /readyz was not asked while the database was down"
        );
        let ready: Vec<&&Probe> = during
            .iter()
            .filter(|p| p.status == Ok(StatusCode::OK))
            .collect();
        assert!(
            ready.is_empty(),
            "{test}: /readyz said ready while the database was down: {ready:?}"
        );
    }
}

/// The figures of a run, on one line.
fn print_figures(
    test: &str,
    outcome: &Outcome,
    probes: &[Probe],
    times: &FaultTimes,
    first_201: Duration,
) {
    let rel = |t: Duration| t.as_secs_f64() - times.start.as_secs_f64();
    let window = match (
        outcome.unavailable_at.iter().min(),
        outcome.unavailable_at.iter().max(),
    ) {
        (Some(first), Some(last)) => format!(
            "from {:+.2} s to {:+.2} s after the fault ({:.2} s)",
            rel(*first),
            rel(*last),
            (*last - *first).as_secs_f64()
        ),
        _ => "none".to_owned(),
    };
    let not_ready: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.status != Ok(StatusCode::OK))
        .collect();
    let not_ready_window = match (not_ready.first(), not_ready.last()) {
        (Some(first), Some(last)) => format!(
            "{} x 503 from {:+.2} s to {:+.2} s",
            not_ready.len(),
            rel(first.done),
            rel(last.done)
        ),
        _ => "never not ready".to_owned(),
    };
    let slowest_probe = probes
        .iter()
        .map(|p| p.done.saturating_sub(p.sent))
        .max()
        .unwrap_or_default();
    println!(
        "{test}: {} x 201, {} x 409, {} x 503 with Retry-After ({} of them \"may have \
         completed\", {} timed out) {window}; slowest answer {:.2} s; /readyz {not_ready_window}, slowest {:.2} s; \
         fault over after {:.2} s; first 201 {:.2} s after that",
        outcome.created,
        outcome.conflicts,
        outcome.unavailable,
        outcome.uncertain,
        outcome.timed_out,
        outcome.slowest.as_secs_f64(),
        slowest_probe.as_secs_f64(),
        rel(times.back),
        (first_201.saturating_sub(times.back)).as_secs_f64(),
    );
}

/// A stored consultation.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    doctor_id: i64,
    patient_id: i64,
    scheduled_at: DateTime<Utc>,
    duration_minutes: i64,
    status: String,
}

/// The consultations and booking members of a store.
struct Stored {
    rows: Vec<Row>,
    members: Vec<(i64, i64)>,
}

async fn read_postgres(url: &str) -> Stored {
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("cannot connect to the database to check it");
    let rows: Vec<(i64, i64, i64, DateTime<Utc>, i64, String)> = sqlx::query_as(
        "SELECT id, doctor_id, patient_id, scheduled_at, duration_minutes::bigint, status \
         FROM consultations",
    )
    .fetch_all(&db)
    .await
    .expect("cannot read consultations");
    let members = sqlx::query_as("SELECT booking_id, consultation_id FROM booking_members")
        .fetch_all(&db)
        .await
        .expect("cannot read booking members");
    db.close().await;
    Stored {
        rows: rows
            .into_iter()
            .map(
                |(id, doctor_id, patient_id, scheduled_at, duration_minutes, status)| Row {
                    id,
                    doctor_id,
                    patient_id,
                    scheduled_at,
                    duration_minutes,
                    status,
                },
            )
            .collect(),
        members,
    }
}

/// Reads a SQLite store after `PRAGMA integrity_check` says `ok`.
async fn read_sqlite(path: &Path) -> Stored {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .expect("cannot open the SQLite store to check it");
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("cannot run PRAGMA integrity_check");
    assert_eq!(
        integrity,
        vec!["ok".to_owned()],
        "the SQLite file is damaged"
    );
    let rows: Vec<(i64, i64, i64, String, i64, String)> = sqlx::query_as(
        "SELECT id, doctor_id, patient_id, scheduled_at, duration_minutes, status \
         FROM consultations",
    )
    .fetch_all(&mut conn)
    .await
    .expect("cannot read consultations");
    let members = sqlx::query_as("SELECT booking_id, consultation_id FROM booking_members")
        .fetch_all(&mut conn)
        .await
        .expect("cannot read booking members");
    conn.close().await.unwrap();
    Stored {
        rows: rows
            .into_iter()
            .map(
                |(id, doctor_id, patient_id, at, duration_minutes, status)| Row {
                    id,
                    doctor_id,
                    patient_id,
                    scheduled_at: parse_time(&Value::String(at)),
                    duration_minutes,
                    status,
                },
            )
            .collect(),
        members,
    }
}

/// Every acknowledged booking is stored as acknowledged; nothing answered "nothing was
/// booked" is stored (unless the same patient booked that slot later); every family
/// booking is whole; no doctor's active consultations overlap.
fn verify_store(test: &str, stored: &Stored, acks: &[Ack], refused: &[(i64, Vec<Slot>)]) {
    let by_id: HashMap<i64, &Row> = stored.rows.iter().map(|r| (r.id, r)).collect();
    let wrong: Vec<String> = acks
        .iter()
        .filter_map(|ack| match by_id.get(&ack.id) {
            None => Some(format!("{ack:?}: not stored")),
            Some(r)
                if (r.doctor_id, r.patient_id, r.scheduled_at, r.status.as_str())
                    != (ack.doctor_id, ack.patient_id, ack.scheduled_at, "scheduled") =>
            {
                Some(format!("{ack:?}: stored as {r:?}"))
            }
            Some(_) => None,
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{test}: {} of {} acknowledged bookings are missing or wrong, e.g.:\n{}",
        wrong.len(),
        acks.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );

    let active = |r: &&Row| r.status == "scheduled" || r.status == "pending";
    let acked: HashSet<(i64, i64, DateTime<Utc>)> = acks
        .iter()
        .map(|a| (a.patient_id, a.doctor_id, a.scheduled_at))
        .collect();
    let stored_active: HashSet<(i64, i64, DateTime<Utc>)> = stored
        .rows
        .iter()
        .filter(active)
        .map(|r| (r.patient_id, r.doctor_id, r.scheduled_at))
        .collect();
    let lies: Vec<String> = refused
        .iter()
        .flat_map(|(patient, slots)| slots.iter().map(move |s| (*patient, s.0, s.1)))
        .filter(|key| stored_active.contains(key) && !acked.contains(key))
        .map(|key| format!("{key:?}"))
        .collect();
    assert!(
        lies.is_empty(),
        "{test}: answered 503 \"nothing was booked\" but stored (patient, doctor, start): {}",
        lies.join(", ")
    );

    let mut bookings: HashMap<i64, Vec<i64>> = HashMap::new();
    for (booking, consultation) in &stored.members {
        bookings.entry(*booking).or_default().push(*consultation);
    }
    let partial: Vec<String> = bookings
        .iter()
        .filter(|(_, members)| {
            members.len() != FAMILY_SIZE
                || members
                    .iter()
                    .any(|id| by_id.get(id).is_none_or(|r| r.status != "scheduled"))
        })
        .map(|(booking, members)| format!("booking {booking}: {members:?}"))
        .collect();
    assert!(
        partial.is_empty(),
        "{test}: family bookings stored in part: {}",
        partial.join(", ")
    );

    let mut by_doctor: HashMap<i64, Vec<&Row>> = HashMap::new();
    for row in stored.rows.iter().filter(active) {
        by_doctor.entry(row.doctor_id).or_default().push(row);
    }
    for (doctor, mut rows) in by_doctor {
        rows.sort_by_key(|r| r.scheduled_at);
        for pair in rows.windows(2) {
            let end = pair[0].scheduled_at + chrono::Duration::minutes(pair[0].duration_minutes);
            assert!(
                pair[1].scheduled_at >= end,
                "{test}: doctor {doctor} has overlapping active consultations: {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
    }
}

/// The service's output has no panic.
fn assert_no_panic(server: &Server) {
    let output = format!("{}\n{}", server.stdout(), server.stderr());
    assert!(
        !output.contains("panicked"),
        "the service panicked:\n{}",
        tail(&output, 20)
    );
}
