//! Helpers for driving the real `consult-scheduler` binary as a separate OS process:
//! building it, starting it on a free port with its output in log files, waiting for
//! readiness, stopping it (SIGKILL or SIGTERM), minting tokens, and a temp directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use consult_scheduler::http::auth::{now_s, JwtKeys, Role};
use consult_scheduler::settings::DEV_JWT_SECRET;
use serde_json::Value;

/// How long a server may take from spawn to `/readyz` answering 200.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);

/// How often deadlines are polled.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The release binary, built once per test process (`cargo build --release --bin
/// consult-scheduler`; a no-op when up to date). Blocking: call it through
/// [`release_binary_async`] from async code.
pub fn release_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_release_binary).clone()
}

/// [`release_binary`] off the async worker threads.
pub async fn release_binary_async() -> PathBuf {
    tokio::task::spawn_blocking(release_binary)
        .await
        .expect("building the release binary panicked")
}

fn build_release_binary() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = env!("CARGO_MANIFEST_DIR");
    eprintln!("building the release binary (the first build takes a few minutes)...");
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--bin",
            "consult-scheduler",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run cargo to build the release binary");
    assert!(
        output.status.success(),
        "cargo build --release failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The artifact message names the executable, wherever the target directory is.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let executable = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == "consult-scheduler"
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no executable for the consult-scheduler binary");
    assert!(
        executable.is_file(),
        "{} does not exist",
        executable.display()
    );
    executable
}

/// A port that was free a moment ago (bind port 0, read it, release it). Another process
/// may take it in between; [`Server::start_ready`] retries on a bind failure.
pub fn free_port() -> u16 {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind an ephemeral port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// A directory under the system temp dir, removed on drop unless the test is failing or
/// `CONSULT_TEST_KEEP_DIRS` is set (then kept, and its path printed, for the logs in it).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path =
            std::env::temp_dir().join(consult_scheduler::persistence::testing::unique_name(prefix));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: keeping {} for its logs", self.path.display());
        } else if std::env::var_os("CONSULT_TEST_KEEP_DIRS").is_some() {
            eprintln!(
                "CONSULT_TEST_KEEP_DIRS is set: keeping {}",
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The process environment for the binary: the caller's `CONSULT__*` overrides only.
/// Inherited `CONSULT__*` variables and `RUST_LOG` are removed so the tests do not depend
/// on the shell they run in (the log checks need the default `info` level).
fn scrub_environment(cmd: &mut Command, env: &[(&str, String)]) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CONSULT__") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG");
    for (key, value) in env {
        cmd.env(key, value);
    }
}

/// Runs `consult-scheduler token --role ROLE --sub SUB` in `workdir` with `env` and
/// returns the JWT it prints.
pub fn token_from_binary(
    bin: &Path,
    workdir: &Path,
    env: &[(&str, String)],
    role: &str,
    sub: i64,
) -> String {
    let mut cmd = Command::new(bin);
    cmd.current_dir(workdir)
        .args(["token", "--role", role, "--sub", &sub.to_string()])
        .stdin(Stdio::null());
    scrub_environment(&mut cmd, env);
    let output = cmd.output().expect("cannot run consult-scheduler token");
    assert!(
        output.status.success(),
        "consult-scheduler token failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)
        .expect("the token is UTF-8")
        .trim()
        .to_owned();
    assert_eq!(
        token.split('.').count(),
        3,
        "`token` should print one JWT, got {token:?}"
    );
    token
}

/// A token signed with the built-in development secret (what the binary accepts when no
/// `CONSULT__AUTH__JWT_SECRET` is set).
pub fn dev_token(role: Role, sub: i64) -> String {
    JwtKeys::new(DEV_JWT_SECRET.as_bytes(), 30).mint(role, sub, now_s(), 3600)
}

/// An HTTP client for loopback (no proxy from the environment), with a bound on every
/// request so a hung server fails the test instead of hanging it.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("cannot build the HTTP client")
}

/// One running `consult-scheduler` process. Dropping it kills the process (SIGKILL) and
/// reaps it.
pub struct Server {
    child: Child,
    pub port: u16,
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
}

impl Server {
    /// Spawns `bin` in `workdir` with `env` plus `CONSULT__SERVER__BIND=127.0.0.1:<free
    /// port>`, output to `<workdir>/<name>.stdout.log` / `.stderr.log`, and waits until
    /// `/readyz` answers 200. Retries on another port if the chosen one was taken.
    pub async fn start_ready(
        bin: &Path,
        workdir: &Path,
        name: &str,
        env: &[(&str, String)],
        client: &reqwest::Client,
    ) -> Server {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let mut server = Server::spawn(bin, workdir, name, env, free_port());
            match server.wait_ready(client, READY_DEADLINE).await {
                Ok(()) => return server,
                Err(why) => {
                    let stderr = server.stderr();
                    let port_taken = stderr.contains("cannot listen");
                    if port_taken && attempt < ATTEMPTS {
                        eprintln!("port {} was taken; retrying on another", server.port);
                        continue;
                    }
                    panic!(
                        "server `{name}` never became ready: {why}\n--- stderr ---\n{stderr}\n--- stdout (tail) ---\n{}",
                        tail(&server.stdout(), 40)
                    );
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Spawns `bin` listening on `port` (e.g. the port of an instance it replaces) and
    /// waits until `/readyz` answers 200. `Err` with the reason and the tail of the logs if
    /// it exits or is not ready in time; the process is killed then.
    pub async fn start_ready_on(
        bin: &Path,
        workdir: &Path,
        name: &str,
        env: &[(&str, String)],
        client: &reqwest::Client,
        port: u16,
    ) -> Result<Server, String> {
        let mut server = Server::spawn(bin, workdir, name, env, port);
        match server.wait_ready(client, READY_DEADLINE).await {
            Ok(()) => Ok(server),
            Err(why) => Err(format!(
                "server `{name}` on port {port} never became ready: {why}\n--- stderr ---\n{}\n--- stdout (tail) ---\n{}",
                server.stderr(),
                tail(&server.stdout(), 40)
            )),
        }
    }

    fn spawn(bin: &Path, workdir: &Path, name: &str, env: &[(&str, String)], port: u16) -> Server {
        let stdout_log = workdir.join(format!("{name}.stdout.log"));
        let stderr_log = workdir.join(format!("{name}.stderr.log"));
        let stdout = File::create(&stdout_log).expect("cannot create the stdout log");
        let stderr = File::create(&stderr_log).expect("cannot create the stderr log");
        let mut cmd = Command::new(bin);
        cmd.current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut env = env.to_vec();
        env.push(("CONSULT__SERVER__BIND", format!("127.0.0.1:{port}")));
        scrub_environment(&mut cmd, &env);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Server {
            child,
            port,
            stdout_log,
            stderr_log,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/readyz` until it answers 200; `Err` if the process exits or the deadline
    /// passes first.
    pub async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        deadline: Duration,
    ) -> Result<(), String> {
        let until = Instant::now() + deadline;
        let url = self.url("/readyz");
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot poll the child") {
                return Err(format!("the process exited with {status}"));
            }
            if let Ok(response) = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if response.status() == reqwest::StatusCode::OK {
                    let body: Value = response.json().await.map_err(|e| e.to_string())?;
                    if body == serde_json::json!({"status": "ready"}) {
                        return Ok(());
                    }
                    return Err(format!("/readyz answered 200 with {body}"));
                }
            }
            if Instant::now() >= until {
                return Err(format!("/readyz not 200 within {deadline:?}"));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap. No graceful anything.
    pub fn kill_hard(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("cannot reap the killed server")
    }

    /// Sends SIGTERM with `kill -TERM <pid>`.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`) with `kill -<NAME> <pid>`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(
            status.success(),
            "kill -{name} {} failed: {status}",
            self.pid()
        );
    }

    /// Polls until the process exits; `None` if it is still running at the deadline.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot poll the child") {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_log).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `GET` with a bearer token; returns the status and the JSON body (`Null` if none).
pub async fn get_json(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> (reqwest::StatusCode, Value) {
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// `POST` a JSON body with a bearer token; returns the status and the JSON body.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> (reqwest::StatusCode, Value) {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url} failed: {e}"));
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The exact 409 body of a slot taken by another patient.
pub fn conflict_body() -> Value {
    serde_json::json!({
        "success": false,
        "message": "This time slot was just booked by another patient. Please select a different time.",
        "error": "time_slot_conflict"
    })
}

/// The seed's three fields of a 409 (`success`, `message`, `error`), after checking that
/// anything else is the additive `next_available` (at most three UTC starts).
pub fn seed_fields(body: &Value) -> Value {
    let mut seed = serde_json::Map::new();
    for (k, v) in body.as_object().expect("a JSON object") {
        match k.as_str() {
            "success" | "message" | "error" => {
                seed.insert(k.clone(), v.clone());
            }
            "next_available" => {
                let list = v.as_array().expect("next_available is a list");
                assert!(list.len() <= 3, "{body}");
                assert!(
                    list.iter()
                        .all(|s| s.as_str().is_some_and(|s| s.ends_with('Z'))),
                    "{body}"
                );
            }
            other => panic!("unexpected field {other} in {body}"),
        }
    }
    Value::Object(seed)
}

/// The `available` slot starts of a doctor's availability answer, at least `margin` in the
/// future (so none turns `past` while the test runs).
pub fn available_starts(
    availability: &Value,
    margin: chrono::Duration,
) -> Vec<chrono::DateTime<chrono::Utc>> {
    let earliest = chrono::Utc::now() + margin;
    availability["days"]
        .as_array()
        .expect("availability has days[]")
        .iter()
        .flat_map(|day| day["slots"].as_array().cloned().unwrap_or_default())
        .filter(|slot| slot["status"] == "available")
        .map(|slot| parse_time(&slot["start"]))
        .filter(|start| *start > earliest)
        .collect()
}

/// An RFC 3339 JSON string as UTC.
pub fn parse_time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("expected an RFC 3339 string, got {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s} is not RFC 3339: {e}"))
        .with_timezone(&chrono::Utc)
}

/// No line of the server's output is an error-level event or a panic.
pub fn assert_no_errors_logged(server: &Server) {
    let output = format!("{}\n{}", server.stdout(), server.stderr());
    let bad: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("\"level\":\"ERROR\"") || line.contains("panicked"))
        .take(10)
        .collect();
    assert!(
        bad.is_empty(),
        "the server logged errors ({}):\n{}",
        server.stdout_log.display(),
        bad.join("\n")
    );
}
