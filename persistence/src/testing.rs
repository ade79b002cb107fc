//! Throwaway databases for tests of this crate and of the crates above it: a fresh SQLite
//! file, or a fresh Postgres database created on the test server and dropped afterwards.
//! These helpers panic on failure (they are test fixtures), except that an unreachable
//! Postgres is a skip outside CI.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::Connection;

use crate::{PgStore, SqliteStore};

/// The test server used when `CONSULT_TEST_PG_URL` is not set.
pub const DEFAULT_TEST_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long to wait for the test Postgres server before calling it unreachable.
const PG_CONNECT_TIMEOUT_S: u64 = 5;

/// The Postgres server tests create their databases on: `CONSULT_TEST_PG_URL`, or
/// [`DEFAULT_TEST_PG_URL`]. It must allow `CREATE DATABASE`.
pub fn test_pg_url() -> String {
    std::env::var("CONSULT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_TEST_PG_URL.to_owned())
}

/// A name no other test in any process is using: pid, wall clock and a counter.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

/// A migrated store on a new SQLite file in the system temp directory, and the file's
/// path (remove it with [`remove_sqlite`]).
pub async fn fresh_sqlite() -> (SqliteStore, PathBuf) {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name("consult_test")));
    let store = SqliteStore::connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap_or_else(|e| panic!("cannot create a test SQLite database: {e}"));
    (store, path)
}

/// Removes a database file made by [`fresh_sqlite`] and its WAL, shared-memory and lock
/// files. Close the store first.
pub fn remove_sqlite(path: &Path) {
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        // Best effort: a leftover temp file is harmless.
        let _ = std::fs::remove_file(file);
    }
}

/// A migrated store on a new database `cs_test_...` on the test server, and the
/// database's name (drop it with [`drop_postgres`]). `None` when the server is unreachable
/// and `CI` is not `true`, after printing a skip notice; with `CI=true` it panics instead,
/// so CI cannot silently skip the Postgres half of a suite.
pub async fn fresh_postgres() -> Option<(PgStore, String)> {
    let mut admin = match admin_connection().await {
        Ok(conn) => conn,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("Postgres test server is unreachable and CI=true ({e}); start Postgres or set CONSULT_TEST_PG_URL")
        }
        Err(e) => {
            eprintln!(
                "skipping Postgres test: test server is unreachable ({e}); start Postgres or set CONSULT_TEST_PG_URL"
            );
            return None;
        }
    };
    let name = unique_name("cs_test");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = admin.close().await;
    let options = PgConnectOptions::from_str(&test_pg_url())
        .unwrap_or_else(|e| panic!("CONSULT_TEST_PG_URL is not a Postgres URL: {e}"))
        .database(&name);
    let store = PgStore::connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("cannot open test database {name}: {e}"));
    Some((store, name))
}

/// The URL of database `name` on the test server (e.g. one made by [`fresh_postgres`]).
pub fn pg_url_for(name: &str) -> String {
    let base = test_pg_url();
    let (base, query) = match base.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (base, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => &base,
    };
    format!("{root}/{name}{query}")
}

/// Drops a database made by [`fresh_postgres`], disconnecting anyone still on it. Best
/// effort: failures are printed, not raised, so cleanup never masks a test's own result.
pub async fn drop_postgres(name: &str) {
    let result = async {
        let mut admin = admin_connection().await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
        let _ = admin.close().await;
        Ok::<(), String>(())
    }
    .await;
    if let Err(e) = result {
        eprintln!("could not drop test database {name}: {e}");
    }
}

async fn admin_connection() -> Result<PgConnection, String> {
    let options = PgConnectOptions::from_str(&test_pg_url()).map_err(|e| e.to_string())?;
    match tokio::time::timeout(
        Duration::from_secs(PG_CONNECT_TIMEOUT_S),
        PgConnection::connect_with(&options),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PG_CONNECT_TIMEOUT_S} s")),
    }
}
