//! A private Postgres server for one test: `initdb` into a temp directory, listening on a
//! free port on 127.0.0.1 with its socket in that directory, so a test may restart, stop
//! or kill it (`pg_ctl restart -m fast|immediate`, `stop`, `start`, the same as
//! `pg_ctlcluster ... restart`) without touching the shared test server other tests use.
//! Stopped (`-m immediate`) and removed when dropped, also when the test fails.
//!
//! The binaries come from `CONSULT_TEST_PG_BIN` or the newest `/usr/lib/postgresql/*/bin`.
//! `initdb` refuses to run as root, so as root every server command runs as the `postgres`
//! user (`runuser -u postgres --`), which then owns the directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{free_port, TempDir};

/// How long `pg_ctl` waits for a start, stop or restart (`-t`).
const PG_CTL_WAIT_S: u32 = 60;

pub struct PrivatePostgres {
    bin: PathBuf,
    /// Removed on drop (kept when the test fails, with the server log in it).
    dir: TempDir,
    as_root: bool,
    pub port: u16,
}

impl PrivatePostgres {
    /// Initializes and starts a server; `None` (after a skip notice) when this machine has
    /// no Postgres binaries or cannot run them, and `CI` is not `true` (then it panics).
    pub fn start(test: &str) -> Option<Self> {
        match Self::try_start() {
            Ok(pg) => Some(pg),
            Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("{test}: cannot start a private Postgres server and CI=true: {why}")
            }
            Err(why) => {
                eprintln!("skipped {test}: cannot start a private Postgres server: {why}");
                None
            }
        }
    }

    fn try_start() -> Result<Self, String> {
        let bin = postgres_bin_dir().ok_or(
            "no Postgres binaries (set CONSULT_TEST_PG_BIN or install postgresql)".to_owned(),
        )?;
        let as_root = is_root();
        let dir = TempDir::new("cs_pg");
        if as_root {
            run(Command::new("chown").args(["postgres:postgres", &path_str(dir.path())]))?;
        }
        let mut pg = PrivatePostgres {
            bin,
            dir,
            as_root,
            port: 0,
        };
        pg.pg(
            "initdb",
            &[
                "-D",
                &path_str(&pg.data()),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        // A port taken between choosing and binding: try another.
        let mut last = String::new();
        for _ in 0..3 {
            pg.port = free_port();
            let conf = format!(
                "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
                 max_connections = 60\nshared_buffers = 32MB\nlog_min_messages = warning\n",
                pg.port,
                path_str(pg.dir.path())
            );
            let conf_path = pg.data().join("postgresql.auto.conf");
            std::fs::write(&conf_path, conf)
                .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))?;
            match pg.start_server() {
                Ok(()) => return Ok(pg),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's own log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates database `name` (as the superuser, over TCP).
    pub async fn create_database(&self, name: &str) {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("cannot connect to the private Postgres server");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = admin.close().await;
    }

    fn start_server(&self) -> Result<(), String> {
        self.pg_ctl(&["start", "-l", &path_str(&self.log_path())])
    }

    /// `pg_ctl restart -m <mode>` (`fast` or `immediate`), waiting until it accepts
    /// connections again.
    pub fn restart(&self, mode: &str) {
        self.pg_ctl(&["restart", "-m", mode, "-l", &path_str(&self.log_path())])
            .unwrap_or_else(|e| panic!("pg_ctl restart -m {mode} failed: {e}"));
    }

    /// `pg_ctl stop -m <mode>`, waiting until the server is down.
    pub fn stop(&self, mode: &str) {
        self.pg_ctl(&["stop", "-m", mode])
            .unwrap_or_else(|e| panic!("pg_ctl stop -m {mode} failed: {e}"));
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub fn start_again(&self) {
        self.start_server()
            .unwrap_or_else(|e| panic!("pg_ctl start failed: {e}"));
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = path_str(&self.data());
        let wait = PG_CTL_WAIT_S.to_string();
        let mut all = vec!["-D", &data, "-w", "-t", &wait];
        all.extend_from_slice(args);
        self.pg("pg_ctl", &all).map(drop)
    }

    /// Runs one of the server binaries, as the `postgres` user when this is root.
    fn pg(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let program = path_str(&self.bin.join(program));
        let mut cmd = if self.as_root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--", &program]);
            cmd
        } else {
            Command::new(&program)
        };
        // Not the caller's PG* settings; a working directory the postgres user may enter.
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST");
        run(&mut cmd)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.port == 0 {
            return;
        }
        // Never left running, whatever the test did; `immediate` needs no clean shutdown.
        let data = path_str(&self.data());
        let _ = self.pg(
            "pg_ctl",
            &["-D", &data, "-w", "-t", "30", "stop", "-m", "immediate"],
        );
    }
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn path_str(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
        .to_owned()
}

/// Whether this process runs as root (`id -u` is 0).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `CONSULT_TEST_PG_BIN`, or the newest `/usr/lib/postgresql/<version>/bin` with `initdb`.
fn postgres_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CONSULT_TEST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
