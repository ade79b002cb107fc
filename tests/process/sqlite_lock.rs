//! Two release binaries on one SQLite file: the second is refused at start (non-zero exit,
//! its stderr naming the lock file) while the first keeps serving; once the first has
//! stopped, the file can be opened again.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::*;

/// How long the refused second process may take to exit.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(30);

/// How long a SIGTERM'd server may take to drain and exit (its own grace is 10 s).
const EXIT_DEADLINE: Duration = Duration::from_secs(20);

/// Starts `bin` in `workdir` with only `env` for `CONSULT__*` (and no `RUST_LOG`), its
/// output in `<name>.stdout.log` / `.stderr.log`; for a process expected not to come up.
fn spawn_unready(bin: &Path, workdir: &Path, name: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(bin);
    cmd.current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(File::create(workdir.join(format!("{name}.stdout.log"))).expect("stdout log"))
        .stderr(File::create(workdir.join(format!("{name}.stderr.log"))).expect("stderr log"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CONSULT__") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

/// Polls until `child` exits; kills it (and fails) at the deadline.
async fn exit_within(child: &mut Child, deadline: Duration) -> ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("cannot poll the child") {
            return status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second process was still running after {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_sqlite_file_is_refused_and_the_first_keeps_serving() {
    let bin = release_binary_async().await;
    let dir = TempDir::new("cs_sqlite_lock");
    let client = http_client();
    let database = dir.path().join("db").join("consult.db");
    let lock = dir.path().join("db").join("consult.db.lock");
    let env: Vec<(&str, String)> = vec![(
        "CONSULT__DATABASE__URL",
        format!("sqlite://{}", database.display()),
    )];

    let mut first = Server::start_ready(&bin, dir.path(), "first", &env, &client).await;

    let mut second_env = env.clone();
    second_env.push((
        "CONSULT__SERVER__BIND",
        format!("127.0.0.1:{}", free_port()),
    ));
    let mut second = spawn_unready(&bin, dir.path(), "second", &second_env);
    let status = exit_within(&mut second, REFUSAL_DEADLINE).await;
    let stderr = std::fs::read_to_string(dir.path().join("second.stderr.log")).unwrap_or_default();
    assert!(!status.success(), "the second process exited {status}");
    assert!(
        stderr.contains("in use by another process")
            && stderr.contains(&lock.display().to_string())
            && stderr.contains(&format!("held by process {}", first.pid())),
        "the second process's stderr should name the lock file and its holder:\n{stderr}"
    );

    let health = client
        .get(first.url("/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = client
        .get(first.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), StatusCode::OK);

    // Once the first has stopped, the file is free: the lock died with its holder.
    first.terminate();
    let exit = first
        .wait_exit(EXIT_DEADLINE)
        .await
        .unwrap_or_else(|| panic!("the first server did not exit within {EXIT_DEADLINE:?}"));
    assert!(exit.success(), "the first server exited {exit}");
    let mut third = Server::start_ready(&bin, dir.path(), "third", &env, &client).await;
    let health = client
        .get(third.url("/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), StatusCode::OK);
    third.kill_hard();
}
