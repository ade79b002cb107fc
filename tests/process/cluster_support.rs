//! The harness of the cluster tests (`cluster.rs`): a fresh Postgres database (and, for a
//! partition, one login role per instance), several instances of the release binary on it,
//! a booking load spread over them that records what every client was told, and the
//! checks of that record against the durable store.
//!
//! The record is the test's truth: a booking is acknowledged only by a complete 201
//! answer; an attempt is ambiguous when its answer was lost (transport error after the
//! request was sent, a body cut off) or was a 503 that says the request may have
//! completed. The store must hold every acknowledged booking, and any other active
//! booking only where an ambiguous attempt asked for exactly it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use consult_scheduler::engine::cluster::lease_shard;
use consult_scheduler::http::auth::Role;
use consult_scheduler::persistence::testing::{
    drop_postgres, fresh_postgres, pg_url_for, test_pg_url, unique_name,
};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Connection;
use tokio::task::JoinHandle;

use crate::support::*;

/// A row of `pg_stat_activity` grouped by state and wait event, with its count.
type SessionCount = (Option<String>, Option<String>, Option<String>, i64);
/// A session waiting on a lock: application, state, the pids blocking it, its query.
type LockWait = (Option<String>, Option<String>, Vec<i32>, Option<String>);

/// A client gives up on one request after this long (longer than the server's own
/// `request_timeout_ms` of 10 s, so a live server's 503 arrives first).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(12);
/// Answered attempts per booking (the first and its retries after a 503 or a lost answer).
const MAX_ANSWERED_ATTEMPTS: u32 = 6;
/// A booking stops retrying (refused connections included) after this long.
const BOOKING_DEADLINE: Duration = Duration::from_secs(45);
/// The longest `Retry-After` honoured, whatever the server says.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(2);
/// How often cluster state is polled.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Patients making the admin's doctors bookable: the admin's subject.
const ADMIN_SUB: i64 = 1;

// ---------------------------------------------------------------------------------------
// The database
// ---------------------------------------------------------------------------------------

/// A fresh database for one test, and the login roles made for it (dropped with it).
pub struct TestDb {
    pub url: String,
    /// A superuser pool on the test database: the checks and the partition's SQL.
    pub pool: PgPool,
    roles: Mutex<Vec<String>>,
}

/// Runs `body` with a fresh, migrated database, then drops the database and every role
/// made for it, whatever the body did; a panic in the body is re-raised afterwards. Without
/// a reachable Postgres the test is skipped with a notice (outside CI; under `CI=true`
/// [`fresh_postgres`] fails instead).
pub async fn with_test_db<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((store, name)) = fresh_postgres().await else {
        eprintln!("skipped {test}: no Postgres");
        return;
    };
    store.close().await;
    let url = pg_url_for(&name);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .expect("cannot connect to the test database");
    let db = Arc::new(TestDb {
        url,
        pool,
        roles: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let outcome = tokio::spawn(body(Arc::clone(&db))).await;
    db.pool.close().await;
    drop_postgres(&name).await;
    let roles = std::mem::take(&mut *db.roles.lock().unwrap());
    drop_roles(&roles).await;
    eprintln!("{test}: {:.1} s", started.elapsed().as_secs_f64());
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the test body did not finish: {e}"),
        }
    }
}

/// Best effort, like [`drop_postgres`]: run after the database is gone, so the roles own
/// nothing and hold no privilege any more.
async fn drop_roles(roles: &[String]) {
    if roles.is_empty() {
        return;
    }
    let result = async {
        let mut admin = sqlx::PgConnection::connect(&test_pg_url()).await?;
        for role in roles {
            sqlx::query(&format!("DROP ROLE IF EXISTS \"{role}\""))
                .execute(&mut admin)
                .await?;
        }
        admin.close().await
    }
    .await;
    if let Err(e) = result {
        eprintln!("could not drop the test roles {roles:?}: {e}");
    }
}

impl TestDb {
    /// A new login role with every privilege on the test database's tables, so that an
    /// instance connecting as it can be cut off from Postgres alone.
    pub async fn create_login_role(&self, tag: &str) -> String {
        let role = unique_name(&format!("cs_role_{tag}"));
        self.roles.lock().unwrap().push(role.clone());
        for sql in [
            format!("CREATE ROLE \"{role}\" LOGIN"),
            format!("GRANT ALL ON SCHEMA public TO \"{role}\""),
            format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO \"{role}\""),
            format!("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO \"{role}\""),
        ] {
            sqlx::query(&sql)
                .execute(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        role
    }

    /// The database URL as `user` (or the test server's own user), with the instance's
    /// name as `application_name` so `pg_stat_activity` tells the instances apart.
    pub fn url_for(&self, user: Option<&str>, application_name: &str) -> String {
        let mut url = self.url.clone();
        if let Some(user) = user {
            let start = url.find("://").map_or(0, |i| i + 3);
            let host_end = url[start..].find('/').map_or(url.len(), |i| start + i);
            match url[start..host_end].rfind('@') {
                Some(at) => url.replace_range(start..start + at, user),
                None => url.insert_str(start, &format!("{user}@")),
            }
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}application_name={application_name}")
    }

    /// Partition: `role` may not log in, and its sessions are terminated again and again
    /// for `for_at_least` (a pool reconnecting in between is cut again). Returns how many
    /// sessions were terminated.
    pub async fn cut_off(&self, role: &str, for_at_least: Duration) -> i64 {
        sqlx::query(&format!("ALTER ROLE \"{role}\" NOLOGIN"))
            .execute(&self.pool)
            .await
            .expect("ALTER ROLE NOLOGIN");
        let until = Instant::now() + for_at_least;
        let mut terminated = 0;
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE usename = $1) AS t",
            )
            .bind(role)
            .fetch_one(&self.pool)
            .await
            .expect("pg_terminate_backend");
            terminated += n;
            if Instant::now() >= until {
                return terminated;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Heals a partition made by [`TestDb::cut_off`].
    pub async fn heal(&self, role: &str) {
        sqlx::query(&format!("ALTER ROLE \"{role}\" LOGIN"))
            .execute(&self.pool)
            .await
            .expect("ALTER ROLE LOGIN");
    }

    /// `state (wait_event_type/wait_event): count` of the sessions of an instance, by its
    /// `application_name`.
    pub async fn sessions_of(&self, application_name: &str) -> Vec<String> {
        let rows: Vec<SessionCount> = sqlx::query_as(
            "SELECT state, wait_event_type, wait_event, COUNT(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database() \
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .bind(application_name)
        .fetch_all(&self.pool)
        .await
        .expect("reading pg_stat_activity");
        rows.into_iter()
            .map(|(state, wt, we, n)| {
                format!(
                    "{} ({}/{}): {n}",
                    state.unwrap_or_default(),
                    wt.unwrap_or_default(),
                    we.unwrap_or_default()
                )
            })
            .collect()
    }

    /// Sessions of the test database waiting for a lock, with the query and who blocks
    /// them: the evidence when a takeover does not happen.
    pub async fn lock_waits(&self) -> Vec<String> {
        let rows: Vec<LockWait> = sqlx::query_as(
            "SELECT application_name, state, pg_blocking_pids(pid), left(query, 160) \
                 FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_all(&self.pool)
        .await
        .expect("reading pg_stat_activity");
        let mut out = Vec::new();
        for (app, state, blockers, query) in rows {
            let blocking: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT application_name, state, left(query, 160) FROM pg_stat_activity \
                     WHERE pid = ANY($1)",
            )
            .bind(&blockers)
            .fetch_all(&self.pool)
            .await
            .expect("reading pg_stat_activity");
            out.push(format!(
                "{} [{}] waits on {:?}: {}",
                app.unwrap_or_default(),
                state.unwrap_or_default(),
                blocking,
                query.unwrap_or_default()
            ));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The instances
// ---------------------------------------------------------------------------------------

/// How the instances of a test are configured.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub instances: usize,
    /// `CONSULT__CLUSTER__LEASE_TTL_MS`; `None` keeps the default (10 s).
    pub lease_ttl_ms: Option<u64>,
    /// `CONSULT__CLUSTER__SHARD_COUNT`; `None` keeps the default (256).
    pub shard_count: Option<u32>,
    /// Each instance connects as its own login role (to cut it off alone).
    pub role_per_instance: bool,
}

impl ClusterSpec {
    pub fn shard_count(&self) -> u32 {
        self.shard_count.unwrap_or(256)
    }
}

/// One instance: a fixed port (its name in the cluster) across restarts.
pub struct Node {
    /// `n0`, `n1`, ...: also its `application_name` in Postgres.
    pub name: String,
    pub port: u16,
    /// Its Postgres role, when it has its own.
    pub role: Option<String>,
    env: Vec<(&'static str, String)>,
    runs: usize,
    server: Option<Server>,
    /// The stdout logs of every run, oldest first.
    logs: Vec<PathBuf>,
}

impl Node {
    /// The advertise URL, `http://127.0.0.1:<port>`: the instance's name in the lease table.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn server(&self) -> &Server {
        self.server
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    pub fn server_mut(&mut self) -> &mut Server {
        self.server
            .as_mut()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Every run's stdout, oldest first.
    pub fn log(&self) -> String {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGTERM, then waits for the exit (at most `deadline`); the exit status and how long
    /// it took. The node is down until started again.
    pub async fn terminate(&mut self, deadline: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        self.server().terminate();
        let Some(status) = self.server_mut().wait_exit(deadline).await else {
            panic!(
                "{} still running {deadline:?} after SIGTERM:\n{}",
                self.name,
                tail(&self.log(), 30)
            )
        };
        self.server = None;
        (status, started.elapsed())
    }

    /// The `shards_handed_off` events of the node's logs: (shards, milliseconds) each.
    pub fn handoffs(&self) -> Vec<(u64, u64)> {
        self.log()
            .lines()
            .filter(|l| l.contains("shards_handed_off"))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                (
                    v["count"].as_u64().unwrap_or(0),
                    v["millis"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// The running process, taken out of the node (which is down from now on, until
    /// started again): to signal it and wait for its exit while the cluster is in use.
    pub fn take_server(&mut self) -> Option<Server> {
        self.server.take()
    }

    /// SIGKILL and reap; the node is down until started again.
    pub fn kill_hard(&mut self) {
        if let Some(mut server) = self.take_server() {
            server.kill_hard();
        }
    }
}

/// Several instances of the release binary on one test database.
pub struct TestCluster {
    pub db: Arc<TestDb>,
    pub spec: ClusterSpec,
    pub nodes: Vec<Node>,
    pub client: reqwest::Client,
    bin: PathBuf,
    dir: TempDir,
}

impl TestCluster {
    /// Starts `spec.instances` instances one after the other (each ready before the next)
    /// and waits until the shards are spread over all of them.
    pub async fn start(db: Arc<TestDb>, prefix: &str, spec: ClusterSpec) -> TestCluster {
        let bin = release_binary_async().await;
        let mut cluster = TestCluster {
            db,
            nodes: Vec::new(),
            client: http_client(),
            bin,
            dir: TempDir::new(prefix),
            spec,
        };
        for _ in 0..cluster.spec.instances {
            cluster.add_node().await;
        }
        let took = cluster.wait_balanced(Duration::from_secs(30)).await;
        println!(
            "{} instances ready and balanced {:.1} s after the last start ({})",
            cluster.nodes.len(),
            took.as_secs_f64(),
            cluster.ownership_line().await
        );
        cluster
    }

    /// Starts one more instance (`n<k>`, configured like the others) on a free port and
    /// waits for its `/readyz`, not for the shards to spread (see [`Self::wait_balanced`]).
    /// Returns its index.
    pub async fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let name = format!("n{i}");
        let role = if self.spec.role_per_instance {
            Some(self.db.create_login_role(&name).await)
        } else {
            None
        };
        let mut env = vec![
            (
                "CONSULT__DATABASE__URL",
                self.db.url_for(role.as_deref(), &name),
            ),
            ("CONSULT__DEMO__SEED", "false".to_owned()),
            ("CONSULT__SESSIONS__PROVIDER", "off".to_owned()),
            ("CONSULT__LOG__FORMAT", "json".to_owned()),
            // Hundreds of requests per second from one probe patient are the test's
            // doing, not abuse.
            ("CONSULT__SERVER__RATE_LIMIT_PER_S", "0".to_owned()),
        ];
        if let Some(ttl) = self.spec.lease_ttl_ms {
            env.push(("CONSULT__CLUSTER__LEASE_TTL_MS", ttl.to_string()));
        }
        if let Some(shards) = self.spec.shard_count {
            env.push(("CONSULT__CLUSTER__SHARD_COUNT", shards.to_string()));
        }
        self.nodes.push(Node {
            name,
            port: 0,
            role,
            env,
            runs: 0,
            server: None,
            logs: Vec::new(),
        });
        self.start_node_on_a_free_port(i).await;
        i
    }

    async fn start_node_on_a_free_port(&mut self, i: usize) {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            self.nodes[i].port = free_port();
            match self.start_node(i).await {
                Ok(()) => return,
                Err(why) if why.contains("cannot listen") && attempt < ATTEMPTS => {
                    eprintln!("port {} was taken; retrying on another", self.nodes[i].port)
                }
                Err(why) => panic!("{why}"),
            }
        }
    }

    /// Starts node `i` (again) on its port and waits for `/readyz`.
    pub async fn start_node(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        assert!(node.server.is_none(), "{} is already running", node.name);
        let run = format!("{}-run{}", node.name, node.runs);
        node.runs += 1;
        let result = Server::start_ready_on(
            &self.bin,
            self.dir.path(),
            &run,
            &node.env,
            &self.client,
            node.port,
        )
        .await;
        node.logs
            .push(self.dir.path().join(format!("{run}.stdout.log")));
        node.server = Some(result?);
        Ok(())
    }

    /// The base URLs of every node (running or not), by node index.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::base).collect()
    }

    pub fn shard_of(&self, doctor_id: i64) -> u32 {
        lease_shard(doctor_id, self.spec.shard_count())
    }

    /// The live owner of every shard by the database clock (`None`: expired or never held).
    pub async fn live_owners(&self) -> BTreeMap<u32, Option<String>> {
        let rows: Vec<(i32, Option<String>, bool)> = sqlx::query_as(
            "SELECT shard, owner_url, expires_at > now() FROM shard_leases ORDER BY shard",
        )
        .fetch_all(&self.db.pool)
        .await
        .expect("reading shard_leases");
        rows.into_iter()
            .map(|(shard, owner, live)| (shard as u32, owner.filter(|_| live)))
            .collect()
    }

    /// The shards node `i` holds a live lease on.
    pub async fn shards_of(&self, i: usize) -> BTreeSet<u32> {
        let me = self.nodes[i].base();
        self.live_owners()
            .await
            .into_iter()
            .filter(|(_, owner)| owner.as_deref() == Some(me.as_str()))
            .map(|(shard, _)| shard)
            .collect()
    }

    /// `n0: 85, n1: 90, n2: 81` live leases by node (and `free: k` if any).
    pub async fn ownership_line(&self) -> String {
        let owners = self.live_owners().await;
        let mut parts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                let base = n.base();
                let count = owners
                    .values()
                    .filter(|o| o.as_deref() == Some(base.as_str()))
                    .count();
                format!("{}: {count}", n.name)
            })
            .collect();
        let free = owners.values().filter(|o| o.is_none()).count();
        if free > 0 {
            parts.push(format!("free: {free}"));
        }
        parts.join(", ")
    }

    /// Waits until every shard has a live owner among the running nodes, each running node
    /// owns some and reports all of them routed, and the owned counts add up. Returns how
    /// long it took; panics with the state at the deadline.
    pub async fn wait_balanced(&self, deadline: Duration) -> Duration {
        let started = Instant::now();
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect();
        loop {
            let last = match self.balance_state(&running).await {
                Ok(()) => return started.elapsed(),
                Err(why) => why,
            };
            if started.elapsed() >= deadline {
                panic!(
                    "the cluster did not balance within {deadline:?}: {last}\n{}\n{}",
                    self.leases_against_service().await,
                    self.logs_tail(15)
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// [`Ledger::wait_more`], failing with the lease table against what each instance
    /// serves.
    pub async fn wait_progress(&self, ledger: &Ledger, n: usize, deadline: Duration) {
        if let Err(e) = ledger.wait_more(n, deadline).await {
            panic!(
                "{e}\n{}\n{}",
                self.leases_against_service().await,
                self.logs_tail(8)
            );
        }
    }

    /// Per running node: the live leases the table gives it, what it reports serving, and
    /// which of its leased shards its own log says it handed off (the evidence when the
    /// table and the instances disagree).
    pub async fn leases_against_service(&self) -> String {
        let mut lines = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.is_running() {
                continue;
            }
            let leased = self.shards_of(i).await;
            let m = self.metrics(i).await.unwrap_or_default();
            // Each shard's last event in the node's log: acquired (true) or handed off.
            let mut last_event: HashMap<u32, bool> = HashMap::new();
            for v in node
                .log()
                .lines()
                .filter(|l| l.contains("shards_handed_off") || l.contains("shards_acquired"))
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            {
                let acquired = v["event_type"] == "shards_acquired";
                let list = v["shards"].as_str().unwrap_or_default().to_owned();
                // `[(3, 2), (4, 2)]` (shard, epoch) when acquired, `[3, 4]` when handed off.
                let numbers: Vec<u32> = list
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse().ok())
                    .collect();
                let shards: Vec<u32> = if acquired {
                    numbers.chunks(2).map(|p| p[0]).collect()
                } else {
                    numbers
                };
                for shard in shards {
                    last_event.insert(shard, acquired);
                }
            }
            let handed_off: BTreeSet<u32> = last_event
                .into_iter()
                .filter(|(_, acquired)| !acquired)
                .map(|(shard, _)| shard)
                .collect();
            let still_leased: Vec<u32> = leased.intersection(&handed_off).copied().collect();
            lines.push(format!(
                "{}: {} live leases in the table {leased:?}; serves {} (cluster_owned_shards), {} unrouted; \
                 leased shards it last handed off (its log): {still_leased:?}",
                node.name,
                leased.len(),
                m.get("cluster_owned_shards"),
                m.get("cluster_unrouted_shards"),
            ));
        }
        lines.join("\n")
    }

    async fn balance_state(&self, running: &[usize]) -> Result<(), String> {
        let urls: HashSet<String> = running.iter().map(|&i| self.nodes[i].base()).collect();
        let owners = self.live_owners().await;
        let unowned = owners
            .values()
            .filter(|o| !o.as_ref().is_some_and(|u| urls.contains(u)))
            .count();
        if unowned > 0 {
            return Err(format!("{unowned} shards without a live running owner"));
        }
        let mut total = 0.0;
        let mut counts = Vec::new();
        for &i in running {
            let m = self.metrics(i).await.ok_or("metrics unreachable")?;
            let owned = m.get("cluster_owned_shards");
            let unrouted = m.get("cluster_unrouted_shards");
            if owned < 1.0 || unrouted > 0.0 {
                return Err(format!(
                    "{} owns {owned} shards and has {unrouted} unrouted",
                    self.nodes[i].name
                ));
            }
            total += owned;
            counts.push(owned);
        }
        if total as u32 != self.spec.shard_count() {
            return Err(format!(
                "the running nodes report {total} owned shards of {}",
                self.spec.shard_count()
            ));
        }
        // Spread evenly: the counts differ by at most one.
        let (min, max) = counts
            .iter()
            .fold((f64::MAX, 0.0_f64), |(lo, hi), &n| (lo.min(n), hi.max(n)));
        if max - min > 1.0 {
            return Err(format!("uneven spread: {counts:?} shards"));
        }
        Ok(())
    }

    /// Node `i`'s `/metrics`, `None` when it does not answer.
    pub async fn metrics(&self, i: usize) -> Option<Metrics> {
        let response = self
            .client
            .get(self.nodes[i].url("/metrics"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        Some(Metrics::parse(&response.text().await.ok()?))
    }

    /// Whether node `i`'s `/readyz` answers 200 now.
    pub async fn is_ready(&self, i: usize) -> bool {
        self.client
            .get(self.nodes[i].url("/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    }

    /// Registers and approves `n` doctors (every day 00:00 to 24:00 UTC, 15-minute slots)
    /// through the nodes in turn.
    pub async fn create_doctors(&self, n: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(n);
        for k in 0..n {
            ids.push(self.create_doctor(k).await);
        }
        ids
    }

    /// Doctors until every lease shard has one (at most 40 per shard on average): one
    /// doctor of each shard, by shard.
    pub async fn doctors_covering_every_shard(&self) -> BTreeMap<u32, i64> {
        let shards = self.spec.shard_count();
        let mut by_shard = BTreeMap::new();
        let mut k = 0;
        while by_shard.len() < shards as usize {
            assert!(
                k < 40 * shards as usize,
                "{k} doctors cover only {} of {shards} shards",
                by_shard.len()
            );
            let id = self.create_doctor(k).await;
            by_shard.entry(self.shard_of(id)).or_insert(id);
            k += 1;
        }
        by_shard
    }

    async fn create_doctor(&self, k: usize) -> i64 {
        let running: Vec<&Node> = self.nodes.iter().filter(|n| n.is_running()).collect();
        let node = running[k % running.len()];
        let admin = dev_token(Role::Admin, ADMIN_SUB);
        let all_day = json!({"enabled": true, "start": "00:00", "end": "24:00"});
        let (status, created) = post_json(
            &self.client,
            &node.url("/admin/doctors"),
            &admin,
            &json!({
                "name": format!("Dr. Cluster {k}"),
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
        assert_eq!(
            status,
            StatusCode::CREATED,
            "creating a doctor on {}: {created}",
            node.name
        );
        let id = created["doctor"]["id"].as_i64().expect("doctor id");
        let approver = running[(k + 1) % running.len()];
        let (status, approved) = post_json(
            &self.client,
            &approver.url(&format!("/admin/doctors/{id}/approve")),
            &admin,
            &json!({}),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "approving doctor {id} on {}: {approved}",
            approver.name
        );
        id
    }

    /// The available slots of `doctors` over `days` days from today, at least 30 minutes
    /// ahead (none turns past while the test runs), asked of the running nodes in turn.
    pub async fn free_slots(&self, doctors: &[i64], days: u32) -> Vec<Slot> {
        let running: Vec<&Node> = self.nodes.iter().filter(|n| n.is_running()).collect();
        let mut slots = Vec::new();
        for (k, &doctor_id) in doctors.iter().enumerate() {
            let node = running[k % running.len()];
            let body = self.availability(node, doctor_id, days).await;
            slots.extend(
                available_starts(&body, chrono::Duration::minutes(30))
                    .into_iter()
                    .map(|start| Slot { doctor_id, start }),
            );
        }
        slots
    }

    /// `GET /patient/doctors/{id}/availability?days=N` on `node`, which must answer 200.
    pub async fn availability(&self, node: &Node, doctor_id: i64, days: u32) -> Value {
        let token = dev_token(Role::Patient, PROBE_PATIENT);
        let (status, body) = get_json(
            &self.client,
            &node.url(&format!(
                "/patient/doctors/{doctor_id}/availability?days={days}"
            )),
            &token,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "availability of doctor {doctor_id} on {}: {body}",
            node.name
        );
        body
    }

    /// The last `n` lines of every node's latest log, for a failure message.
    pub fn logs_tail(&self, n: usize) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- {} (tail) ---\n{}", node.name, tail(&node.log(), n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Per node: warnings and errors logged, and whether anything panicked (which fails).
    pub fn log_report(&self) -> String {
        let mut parts = Vec::new();
        for node in &self.nodes {
            let log = node.log();
            let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
            let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
            assert!(
                panics.is_empty(),
                "{} panicked:\n{}",
                node.name,
                panics[..panics.len().min(5)].join("\n")
            );
            parts.push(format!(
                "{}: {} warnings, {} errors",
                node.name,
                count("\"level\":\"WARN\""),
                count("\"level\":\"ERROR\"")
            ));
        }
        parts.join("; ")
    }

    /// The first `n` distinct messages of `level` (`WARN`, `ERROR`) in node `i`'s logs.
    pub fn messages(&self, i: usize, level: &str, n: usize) -> Vec<String> {
        let needle = format!("\"level\":\"{level}\"");
        let mut seen = Vec::new();
        for line in self.nodes[i].log().lines().filter(|l| l.contains(&needle)) {
            let message = serde_json::from_str::<Value>(line)
                .ok()
                .map(|v| {
                    let path = v["span"]["path"].as_str().unwrap_or_default();
                    format!(
                        "{} {}{}",
                        v["message"].as_str().unwrap_or_default(),
                        v["error"].as_str().unwrap_or_default(),
                        v["classification"]
                            .as_str()
                            .map(|c| format!("{c} ({path})"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| line.to_owned());
            if !seen.contains(&message) {
                seen.push(message);
                if seen.len() == n {
                    break;
                }
            }
        }
        seen
    }

    /// Waits until every shard of `shards` has a live lease held by someone other than
    /// `from` (a node's base URL); returns the time since `since`. `Err` with the lease
    /// table and the lock waits in Postgres at the deadline.
    pub async fn wait_owned_elsewhere(
        &self,
        shards: &BTreeSet<u32>,
        from: &str,
        since: Instant,
        deadline: Duration,
    ) -> Result<Duration, String> {
        loop {
            let owners = self.live_owners().await;
            let pending: Vec<u32> = shards
                .iter()
                .copied()
                .filter(|s| owners[s].as_ref().is_none_or(|o| o == from))
                .collect();
            if pending.is_empty() {
                return Ok(since.elapsed());
            }
            if since.elapsed() >= deadline {
                return Err(format!(
                    "shards {pending:?} of {from} not taken over within {deadline:?} ({}); \
                     lock waits in Postgres: {:#?}",
                    self.ownership_line().await,
                    self.db.lock_waits().await
                ));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Polls `check` on node `i`'s metrics until it holds; the time since `since`, or
    /// `None` at the deadline.
    pub async fn wait_metrics(
        &self,
        i: usize,
        since: Instant,
        deadline: Duration,
        check: impl Fn(&Metrics) -> bool,
    ) -> Option<Duration> {
        loop {
            if let Some(m) = self.metrics(i).await {
                if check(&m) {
                    return Some(since.elapsed());
                }
            }
            if since.elapsed() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILLs every running node (the end of a test).
    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            node.kill_hard();
        }
    }
}

/// A `/metrics` scrape: unlabelled samples by name without the `consult_` prefix and the
/// `_total` suffix of counters.
#[derive(Debug, Default, Clone)]
pub struct Metrics(HashMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Self {
        let mut samples = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut parts = line.split_whitespace();
            let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            if name.contains('{') {
                continue;
            }
            let name = name.strip_prefix("consult_").unwrap_or(name);
            let name = name.strip_suffix("_total").unwrap_or(name);
            if let Ok(v) = value.parse::<f64>() {
                samples.insert(name.to_owned(), v);
            }
        }
        Self(samples)
    }

    /// The sample, 0 when absent.
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }
}

// ---------------------------------------------------------------------------------------
// Bookings and the load
// ---------------------------------------------------------------------------------------

/// A patient who only ever probes slots that must be taken (expecting 409).
pub const PROBE_PATIENT: i64 = 999_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    pub doctor_id: i64,
    pub start: DateTime<Utc>,
}

/// A booking a client saw acknowledged with a complete 201.
#[derive(Debug, Clone)]
pub struct Ack {
    pub id: i64,
    pub patient_id: i64,
    pub slot: Slot,
    /// The node (index into the targets) that answered the 201.
    pub via: usize,
}

/// How a booking ended, after its retries.
#[derive(Debug, Clone)]
pub enum Final {
    Booked(Ack),
    Conflict,
    /// Another 4xx (e.g. 400, 421): a status and body.
    Rejected(String),
    /// A 5xx other than 503 (a 500, 502, ...).
    ServerError(String),
    /// Retries exhausted (503s, lost answers) or nobody reachable in time.
    GaveUp(String),
}

impl Final {
    /// The outcome in a few words, for reports.
    pub fn describe(&self) -> String {
        match self {
            Final::Booked(ack) => format!("201 (consultation {} via target {})", ack.id, ack.via),
            Final::Conflict => "409".to_owned(),
            Final::Rejected(why) => format!("rejected: {why}"),
            Final::ServerError(why) => format!("server error: {why}"),
            Final::GaveUp(why) => format!("gave up: {why}"),
        }
    }
}

/// One request of a booking.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub target: usize,
    pub sent: Instant,
    pub answered: Instant,
    /// `None` when no complete answer came back.
    pub status: Option<u16>,
    pub note: String,
}

/// Everything one booking was told.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub patient_id: i64,
    pub slot: Slot,
    /// Answered or lost attempts (refused connections are not attempts).
    pub attempts: Vec<Attempt>,
    /// Connections refused (nobody listening: the request was never sent).
    pub refused: u32,
    /// Why the booking may have been made without a 201 (lost answers, 503 timeouts).
    pub ambiguous: Vec<String>,
    pub last: Final,
}

impl Outcome {
    pub fn ack(&self) -> Option<&Ack> {
        match &self.last {
            Final::Booked(a) => Some(a),
            _ => None,
        }
    }

    /// Every 5xx answer among the attempts, 503 included.
    pub fn server_answers(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.status.is_some_and(|s| s >= 500))
    }
}

/// How a booking retries.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub max_answered_attempts: u32,
    pub deadline: Duration,
    pub request_timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            max_answered_attempts: MAX_ANSWERED_ATTEMPTS,
            deadline: BOOKING_DEADLINE,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

/// Books `slot` for `patient_id` through `targets[first]`. A refused connection moves to
/// the next target (the request was never sent); a 503 is retried on the next target after
/// its `Retry-After` (capped); a lost answer is retried on the next target too and makes
/// the booking ambiguous. Stops at the first 201, 409, other 4xx or 5xx other than 503.
pub async fn book(
    client: &reqwest::Client,
    targets: &[String],
    first: usize,
    patient_id: i64,
    slot: Slot,
    retry: Retry,
) -> Outcome {
    let token = dev_token(Role::Patient, patient_id);
    let body = json!({
        "doctor_id": slot.doctor_id,
        "scheduled_at": slot.start.to_rfc3339(),
        "consult_mode": "chat",
    });
    let mut outcome = Outcome {
        patient_id,
        slot,
        attempts: Vec::new(),
        refused: 0,
        ambiguous: Vec::new(),
        last: Final::GaveUp(String::new()),
    };
    let give_up = Instant::now() + retry.deadline;
    let mut target = first % targets.len();
    let mut refused_in_a_row = 0;
    loop {
        if Instant::now() >= give_up {
            outcome.last = Final::GaveUp(format!(
                "deadline after {} attempts and {} refused connections",
                outcome.attempts.len(),
                outcome.refused
            ));
            return outcome;
        }
        let sent = Instant::now();
        let response = client
            .post(format!("{}/patient/doctors/book", targets[target]))
            .bearer_auth(&token)
            .json(&body)
            .timeout(retry.request_timeout)
            .send()
            .await;
        let response = match response {
            Err(e) if e.is_connect() => {
                outcome.refused += 1;
                refused_in_a_row += 1;
                if refused_in_a_row >= targets.len() {
                    refused_in_a_row = 0;
                    tokio::time::sleep(POLL_EVERY).await;
                }
                target = (target + 1) % targets.len();
                continue;
            }
            Err(e) => Err(format!("request to {} lost: {e}", targets[target])),
            Ok(r) => Ok(r),
        };
        refused_in_a_row = 0;
        let answer = match response {
            Err(e) => Err(e),
            Ok(r) => {
                let status = r.status();
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                match r.json::<Value>().await {
                    Ok(v) => Ok((status, retry_after, v)),
                    Err(e) => Err(format!(
                        "{status} from {} with its body cut off: {e}",
                        targets[target]
                    )),
                }
            }
        };
        let answered = Instant::now();
        let (status, retry_after, value) = match answer {
            Err(why) => {
                outcome.attempts.push(Attempt {
                    target,
                    sent,
                    answered,
                    status: None,
                    note: why.clone(),
                });
                outcome.ambiguous.push(why);
                if outcome.attempts.len() as u32 >= retry.max_answered_attempts {
                    outcome.last = Final::GaveUp("answers lost".into());
                    return outcome;
                }
                target = (target + 1) % targets.len();
                continue;
            }
            Ok(a) => a,
        };
        let note = if status.is_success() {
            String::new()
        } else {
            value.to_string()
        };
        outcome.attempts.push(Attempt {
            target,
            sent,
            answered,
            status: Some(status.as_u16()),
            note,
        });
        match status {
            StatusCode::CREATED => {
                let c = &value["consultation"];
                let ack = Ack {
                    id: c["id"].as_i64().expect("consultation id"),
                    patient_id: c["patient_id"].as_i64().expect("patient_id"),
                    slot: Slot {
                        doctor_id: c["doctor_id"].as_i64().expect("doctor_id"),
                        start: parse_time(&c["scheduled_at"]),
                    },
                    via: target,
                };
                assert_eq!(
                    (ack.patient_id, ack.slot, c["status"].as_str()),
                    (patient_id, slot, Some("scheduled")),
                    "the 201 answer describes another booking: {value}"
                );
                outcome.last = Final::Booked(ack);
                return outcome;
            }
            StatusCode::CONFLICT => {
                assert_eq!(
                    seed_fields(&value),
                    conflict_body(),
                    "409 for {slot:?} from {}",
                    targets[target]
                );
                outcome.last = Final::Conflict;
                return outcome;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                let message = value["message"].as_str().unwrap_or_default();
                if message.contains("may have completed") {
                    outcome
                        .ambiguous
                        .push(format!("503 timeout from {}", targets[target]));
                }
                if outcome.attempts.len() as u32 >= retry.max_answered_attempts {
                    outcome.last = Final::GaveUp(format!("503: {value}"));
                    return outcome;
                }
                let pause = Duration::from_secs(retry_after.unwrap_or(1)).min(RETRY_AFTER_CAP);
                tokio::time::sleep(pause).await;
                target = (target + 1) % targets.len();
            }
            s if s.is_server_error() => {
                outcome.last = Final::ServerError(format!("{s} from {}: {value}", targets[target]));
                return outcome;
            }
            s => {
                outcome.last = Final::Rejected(format!("{s} from {}: {value}", targets[target]));
                return outcome;
            }
        }
    }
}

/// Every booking outcome of a test (load, races and probes alike).
#[derive(Default)]
pub struct Ledger {
    outcomes: Mutex<Vec<Outcome>>,
    booked: AtomicUsize,
}

impl Ledger {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn record(&self, outcome: Outcome) {
        if outcome.ack().is_some() {
            self.booked.fetch_add(1, Ordering::Relaxed);
        }
        self.outcomes.lock().unwrap().push(outcome);
    }

    pub fn booked(&self) -> usize {
        self.booked.load(Ordering::Relaxed)
    }

    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }

    /// Waits until `n` bookings were acknowledged; panics after `deadline`.
    pub async fn wait_booked(&self, n: usize, deadline: Duration) {
        let until = Instant::now() + deadline;
        while self.booked() < n {
            assert!(
                Instant::now() < until,
                "only {} of {n} bookings acknowledged within {deadline:?}: {}",
                self.booked(),
                self.summary()
            );
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// How many bookings ended (any outcome).
    pub fn done(&self) -> usize {
        self.outcomes.lock().unwrap().len()
    }

    /// Waits until `n` more bookings ended (any outcome) than now: the load goes on.
    /// `Err` with the counts at the deadline.
    pub async fn wait_more(&self, n: usize, deadline: Duration) -> Result<(), String> {
        let want = self.done() + n;
        let until = Instant::now() + deadline;
        while self.done() < want {
            if Instant::now() >= until {
                return Err(format!(
                    "the load made no progress: {} of {want} bookings ended within {deadline:?}: {}",
                    self.done(),
                    self.summary()
                ));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        Ok(())
    }

    pub fn summary(&self) -> Summary {
        Summary::of(&self.outcomes.lock().unwrap())
    }
}

/// Counts over outcomes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub bookings: usize,
    pub booked: usize,
    pub conflicts: usize,
    pub rejected: usize,
    pub server_errors: usize,
    pub gave_up: usize,
    /// Bookings with an ambiguous attempt (whatever their end).
    pub ambiguous: usize,
    /// 503 answers (each retried).
    pub answers_503: usize,
    /// 5xx answers of any kind, 503 included.
    pub answers_5xx: usize,
    /// Refused connections (each retried on another node).
    pub refused: usize,
}

impl Summary {
    pub fn of(outcomes: &[Outcome]) -> Self {
        let mut s = Summary {
            bookings: outcomes.len(),
            ..Summary::default()
        };
        for o in outcomes {
            match &o.last {
                Final::Booked(_) => s.booked += 1,
                Final::Conflict => s.conflicts += 1,
                Final::Rejected(_) => s.rejected += 1,
                Final::ServerError(_) => s.server_errors += 1,
                Final::GaveUp(_) => s.gave_up += 1,
            }
            s.ambiguous += usize::from(!o.ambiguous.is_empty());
            s.answers_503 += o.attempts.iter().filter(|a| a.status == Some(503)).count();
            s.answers_5xx += o.server_answers().count();
            s.refused += o.refused as usize;
        }
        s
    }

    /// Examples of the outcomes that ended neither in 201 nor in 409.
    pub fn failures(outcomes: &[Outcome], n: usize) -> String {
        outcomes
            .iter()
            .filter_map(|o| match &o.last {
                Final::Booked(_) | Final::Conflict => None,
                other => Some(format!("{:?} {}", o.slot, other.describe())),
            })
            .take(n)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bookings: {} booked (201), {} conflicts (409), {} rejected, {} server errors, \
             {} gave up, {} ambiguous; {} answers 503 (retried), {} answers 5xx in all, {} refused connections",
            self.bookings,
            self.booked,
            self.conflicts,
            self.rejected,
            self.server_errors,
            self.gave_up,
            self.ambiguous,
            self.answers_503,
            self.answers_5xx,
            self.refused
        )
    }
}

/// What a load books: random slots for random patients through random targets.
#[derive(Clone)]
pub struct LoadSpec {
    pub clients: usize,
    /// Stop after this many bookings; `None`: until stopped.
    pub total: Option<usize>,
    pub slots: Arc<Vec<Slot>>,
    pub patients: Range<i64>,
    pub targets: Vec<String>,
}

/// A running load; its outcomes go to the ledger as they end.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(client: &reqwest::Client, spec: LoadSpec, ledger: &Arc<Ledger>) -> Load {
        assert!(!spec.slots.is_empty(), "a load needs slots");
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let targets = Arc::new(spec.targets);
        let tasks = (0..spec.clients)
            .map(|_| {
                let (client, stop, issued, targets, slots, ledger) = (
                    client.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&issued),
                    Arc::clone(&targets),
                    Arc::clone(&spec.slots),
                    Arc::clone(ledger),
                );
                let (patients, total) = (spec.patients.clone(), spec.total);
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(total) = total {
                            if issued.fetch_add(1, Ordering::Relaxed) >= total {
                                return;
                            }
                        }
                        let (slot, patient, first) = {
                            let mut rng = rand::rng();
                            (
                                slots[rng.random_range(0..slots.len())],
                                rng.random_range(patients.clone()),
                                rng.random_range(0..targets.len()),
                            )
                        };
                        let outcome =
                            book(&client, &targets, first, patient, slot, Retry::default()).await;
                        ledger.record(outcome);
                    }
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops issuing bookings and waits for those under way.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.join(BOOKING_DEADLINE + REQUEST_TIMEOUT).await;
    }

    /// Waits until every client is done (a load with a `total`), at most `deadline`.
    pub async fn join(self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        for task in self.tasks {
            tokio::time::timeout_at(until, task)
                .await
                .unwrap_or_else(|_| panic!("the load did not finish within {deadline:?}"))
                .expect("a booking client panicked");
        }
    }
}

/// Books `slots` (one each, by shard) through `via` in turn until each is served (201 or
/// 409), one attempt at a time with a long timeout; returns when each shard was served,
/// counted from `since`. Panics at `deadline` with the shards still not served.
pub async fn probe_until_served(
    cluster: &TestCluster,
    via: &[usize],
    probes: &BTreeMap<u32, Vec<Slot>>,
    ledger: &Arc<Ledger>,
    since: Instant,
    deadline: Duration,
) -> BTreeMap<u32, Duration> {
    let targets: Vec<String> = via.iter().map(|&i| cluster.nodes[i].base()).collect();
    let tasks: Vec<_> = probes
        .iter()
        .enumerate()
        .map(|(k, (&shard, slots))| {
            let (client, targets, slots, ledger) = (
                cluster.client.clone(),
                targets.clone(),
                slots.clone(),
                Arc::clone(ledger),
            );
            tokio::spawn(async move {
                for (n, slot) in slots.iter().enumerate() {
                    if since.elapsed() >= deadline {
                        break;
                    }
                    let retry = Retry {
                        max_answered_attempts: 1,
                        deadline: deadline.saturating_sub(since.elapsed()),
                        request_timeout: Duration::from_secs(8),
                    };
                    let outcome = book(
                        &client,
                        &targets,
                        k + n,
                        PROBE_PATIENT - 1 - shard as i64,
                        *slot,
                        retry,
                    )
                    .await;
                    let served = matches!(outcome.last, Final::Booked(_) | Final::Conflict);
                    let answered = outcome.attempts.last().map(|a| a.answered);
                    ledger.record(outcome);
                    if served {
                        return (shard, answered.map(|t| t.duration_since(since)));
                    }
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
        "shards {not_served:?} were not served through {via:?} within {deadline:?} ({}); \
         probe answers: {}\n{}",
        cluster.ownership_line().await,
        Summary::failures(&ledger.outcomes(), 8),
        cluster.logs_tail(12)
    );
    served
}

/// Splits `slots` into up to `per_doctor` probe slots for each of `doctors` (by shard) and
/// the rest for a load.
pub fn set_probe_slots_apart(
    slots: Vec<Slot>,
    doctors: &BTreeMap<u32, i64>,
    per_doctor: usize,
) -> (BTreeMap<u32, Vec<Slot>>, Vec<Slot>) {
    let shard_of: HashMap<i64, u32> = doctors.iter().map(|(&s, &d)| (d, s)).collect();
    let mut probes: BTreeMap<u32, Vec<Slot>> = BTreeMap::new();
    let mut rest = Vec::new();
    for slot in slots {
        match shard_of.get(&slot.doctor_id) {
            Some(&shard) if probes.get(&shard).map_or(0, Vec::len) < per_doctor => {
                probes.entry(shard).or_default().push(slot)
            }
            _ => rest.push(slot),
        }
    }
    (probes, rest)
}

// ---------------------------------------------------------------------------------------
// The store checks
// ---------------------------------------------------------------------------------------

/// What the store holds against what clients were told.
#[derive(Debug)]
pub struct StoreCheck {
    pub active: usize,
    pub acked: usize,
    /// Active bookings no client was told of, each asked for by an ambiguous attempt.
    pub stored_after_ambiguous: usize,
    /// Ambiguous bookings that were not made.
    pub ambiguous_not_stored: usize,
}

impl std::fmt::Display for StoreCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "store: {} active consultations = {} acknowledged + {} made by attempts whose answer was lost; \
             {} ambiguous bookings not made; 0 lost, 0 doubled, 0 overlapping",
            self.active, self.acked, self.stored_after_ambiguous, self.ambiguous_not_stored
        )
    }
}

/// Checks the durable store against the outcomes, with SQL on the test database:
/// - every acknowledged booking is stored, scheduled, as acknowledged (none lost);
/// - no slot was acknowledged to two bookings, and no doctor has two active consultations
///   at one start or overlapping (none doubled);
/// - every active consultation was acknowledged, or asked for (same patient, doctor and
///   start) by a booking with an ambiguous attempt (none invented).
pub async fn check_store(db: &PgPool, outcomes: &[Outcome]) -> StoreCheck {
    type Row = (i64, i64, i64, DateTime<Utc>, String);
    let rows: Vec<Row> =
        sqlx::query_as("SELECT id, doctor_id, patient_id, scheduled_at, status FROM consultations")
            .fetch_all(db)
            .await
            .expect("cannot read consultations");
    let by_id: HashMap<i64, &Row> = rows.iter().map(|r| (r.0, r)).collect();
    let acks: Vec<&Ack> = outcomes.iter().filter_map(Outcome::ack).collect();

    let mut lost = Vec::new();
    for ack in &acks {
        match by_id.get(&ack.id) {
            None => lost.push(format!("{ack:?}: not stored")),
            Some((_, doctor, patient, at, status))
                if (*doctor, *patient, *at, status.as_str())
                    != (
                        ack.slot.doctor_id,
                        ack.patient_id,
                        ack.slot.start,
                        "scheduled",
                    ) =>
            {
                lost.push(format!(
                    "{ack:?}: stored as doctor {doctor}, patient {patient}, {at}, {status}"
                ))
            }
            Some(_) => {}
        }
    }

    let mut acked_slots: HashMap<Slot, Vec<i64>> = HashMap::new();
    for ack in &acks {
        acked_slots.entry(ack.slot).or_default().push(ack.id);
    }
    let doubled_acks: Vec<String> = acked_slots
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(slot, ids)| format!("{slot:?} acknowledged as {ids:?}"))
        .collect();

    let active: Vec<&Row> = rows
        .iter()
        .filter(|r| r.4 == "scheduled" || r.4 == "pending")
        .collect();
    let mut stored_slots: HashMap<Slot, Vec<i64>> = HashMap::new();
    for r in &active {
        stored_slots
            .entry(Slot {
                doctor_id: r.1,
                start: r.3,
            })
            .or_default()
            .push(r.0);
    }
    let doubled_rows: Vec<String> = stored_slots
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(slot, ids)| format!("{slot:?} stored as {ids:?}"))
        .collect();

    let acked_ids: HashSet<i64> = acks.iter().map(|a| a.id).collect();
    let ambiguous: HashSet<(i64, Slot)> = outcomes
        .iter()
        .filter(|o| !o.ambiguous.is_empty() && o.ack().is_none())
        .map(|o| (o.patient_id, o.slot))
        .collect();
    let mut stored_after_ambiguous = HashSet::new();
    let mut invented = Vec::new();
    for r in active.iter().filter(|r| !acked_ids.contains(&r.0)) {
        let key = (
            r.2,
            Slot {
                doctor_id: r.1,
                start: r.3,
            },
        );
        if ambiguous.contains(&key) {
            stored_after_ambiguous.insert(key);
        } else {
            invented.push(format!(
                "consultation {} (doctor {}, patient {}, {}, {}): no client was told, and no ambiguous attempt asked for it{}",
                r.0,
                r.1,
                r.2,
                r.3,
                r.4,
                explain(outcomes, key)
            ));
        }
    }

    let overlaps = overlapping_active(db).await;

    let examples = |v: &[String]| v[..v.len().min(10)].join("\n");
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged bookings are lost or wrong in the store, e.g.:\n{}",
        lost.len(),
        acks.len(),
        examples(&lost)
    );
    assert!(
        doubled_acks.is_empty() && doubled_rows.is_empty() && overlaps.is_empty(),
        "double bookings: {} slots acknowledged twice, {} stored twice, overlaps {overlaps:?}:\n{}\n{}",
        doubled_acks.len(),
        doubled_rows.len(),
        examples(&doubled_acks),
        examples(&doubled_rows)
    );
    assert!(
        invented.is_empty(),
        "{} active consultations no client was told of:\n{}",
        invented.len(),
        examples(&invented)
    );
    StoreCheck {
        active: active.len(),
        acked: acks.len(),
        stored_after_ambiguous: stored_after_ambiguous.len(),
        ambiguous_not_stored: ambiguous.len() - stored_after_ambiguous.len(),
    }
}

/// Up to 10 pairs of active consultations of one doctor whose times overlap, as
/// (doctor, id, id): none, if no slot was booked twice.
///
/// Each active consultation is compared with the one before it in its doctor's order of
/// starts: if any two overlap, two neighbours do (the one between them starts before the
/// first ends). One sort, whatever the planner knows of the table; a self-join was planned
/// as a nested loop over every pair when the statistics still counted a few hundred rows.
pub async fn overlapping_active(db: &PgPool) -> Vec<(i64, i64, i64)> {
    sqlx::query_as(
        "SELECT doctor_id, previous_id, id
           FROM (SELECT doctor_id, id, scheduled_at,
                        LAG(id) OVER starts AS previous_id,
                        LAG(scheduled_at + duration_minutes * INTERVAL '1 minute') OVER starts
                          AS previous_end
                   FROM consultations
                  WHERE status IN ('pending', 'scheduled')
                 WINDOW starts AS (PARTITION BY doctor_id ORDER BY scheduled_at, id)) neighbours
          WHERE previous_end > scheduled_at
          LIMIT 10",
    )
    .fetch_all(db)
    .await
    .expect("cannot check for overlaps")
}

/// What the ledger says about a (patient, slot), for a failure message.
fn explain(outcomes: &[Outcome], key: (i64, Slot)) -> String {
    let told: Vec<String> = outcomes
        .iter()
        .filter(|o| (o.patient_id, o.slot) == key)
        .map(|o| {
            format!(
                "{} after {:?}",
                o.last.describe(),
                o.attempts
                    .iter()
                    .map(|a| (
                        a.target,
                        a.status,
                        a.note.chars().take(120).collect::<String>()
                    ))
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    if told.is_empty() {
        String::new()
    } else {
        format!("; the ledger has: {}", told.join(" | "))
    }
}

/// A patient reading one doctor's availability stream (server-sent events) through one
/// instance, past its `ready` event.
pub struct Watcher {
    response: reqwest::Response,
    buffer: String,
}

impl Watcher {
    pub async fn open(client: &reqwest::Client, base: String, doctor_id: i64) -> Watcher {
        let response = client
            .get(format!(
                "{base}/patient/doctors/{doctor_id}/availability/stream"
            ))
            .bearer_auth(dev_token(Role::Patient, PROBE_PATIENT))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("opening the availability stream");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the stream through {base}"
        );
        let mut watcher = Watcher {
            response,
            buffer: String::new(),
        };
        let (name, _) = watcher
            .next_event(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("the stream through {base}: {e}"));
        assert_eq!(name, "ready", "a stream starts with ready");
        watcher
    }

    /// The next event (`event:` name and `data:` JSON), skipping heartbeat comments.
    pub async fn next_event(&mut self, within: Duration) -> Result<(String, Value), String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim().to_owned())
                };
                let (Some(name), Some(data)) = (field("event:"), field("data:")) else {
                    continue; // a heartbeat comment
                };
                let data = serde_json::from_str(&data).map_err(|e| format!("{data}: {e}"))?;
                return Ok((name, data));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .map_err(|_| format!("no event within {within:?}"))?
                .map_err(|e| format!("reading the stream: {e}"))?
                .ok_or("the stream ended")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
