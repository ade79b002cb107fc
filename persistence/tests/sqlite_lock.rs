//! One process per SQLite database file: a store holds an exclusive `flock` on
//! `<file>.lock` while it is open. Another process is played by a shell with util-linux
//! `flock(1)`, which takes the same kind of lock: it cannot take the lock while a store is
//! open, and while it holds the lock a store cannot open the database. Every wait is
//! bounded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use consult_actors::{Store, StoreError};
use consult_persistence::{testing, SqliteStore};

const WAIT: Duration = Duration::from_secs(10);

/// A database path in a new temp directory (removed by [`Dir::drop`]).
struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(testing::unique_name("consult_test_lock"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn database(&self) -> PathBuf {
        self.0.join("consult.db")
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.database().display())
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lock_file(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Exit code `flock(1)` is told to use when the lock is taken.
const CONFLICT: i32 = 75;

/// Whether another process could take the lock right now (it takes it and lets it go).
fn another_process_can_lock(lock: &Path) -> bool {
    let status = Command::new("flock")
        .args(["--nonblock", "--conflict-exit-code", &CONFLICT.to_string()])
        .arg(lock)
        .arg("true")
        .status()
        .expect("util-linux flock(1) runs");
    match status.code() {
        Some(0) => true,
        Some(CONFLICT) => false,
        _ => panic!("flock(1) failed: {status}"),
    }
}

/// Another process holding the lock until it is killed (on drop at the latest).
struct Holder(Child);

impl Holder {
    fn start(lock: &Path) -> Self {
        // The shell opens the lock file, `flock(1)` locks that descriptor, and the shell
        // becomes `sleep` (same process, same descriptor): killing the child ends the lock,
        // with no grandchild left holding it.
        let child = Command::new("sh")
            .args(["-c", "exec 9>>\"$0\" && flock 9 && exec sleep 60"])
            .arg(lock)
            .stdin(Stdio::null())
            .spawn()
            .expect("sh and util-linux flock(1) start");
        let holder = Self(child);
        let until = Instant::now() + WAIT;
        while another_process_can_lock(lock) {
            assert!(Instant::now() < until, "flock(1) did not take the lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        holder
    }

    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn an_open_store_keeps_other_processes_off_its_database_until_it_is_closed_or_dropped() {
    let dir = Dir::new();
    let lock = lock_file(&dir.database());
    let store = SqliteStore::connect(&dir.url()).await.expect("connect");
    assert!(lock.is_file(), "{} was not created", lock.display());
    assert!(!another_process_can_lock(&lock));
    // The lock file names the holder, for whoever is refused.
    assert_eq!(
        std::fs::read_to_string(&lock).expect("lock file").trim(),
        std::process::id().to_string()
    );
    store.close().await;
    assert!(another_process_can_lock(&lock), "close gives the lock up");

    let store = SqliteStore::connect(&dir.url()).await.expect("reopen");
    let clone = store.clone();
    drop(store);
    assert!(!another_process_can_lock(&lock), "a clone still holds it");
    drop(clone);
    assert!(
        another_process_can_lock(&lock),
        "dropping the store gives it up"
    );
}

#[tokio::test]
async fn a_store_cannot_open_a_database_another_process_holds_and_can_once_it_is_gone() {
    let dir = Dir::new();
    // Created and migrated first, then given up.
    SqliteStore::connect(&dir.url())
        .await
        .expect("create")
        .close()
        .await;
    let lock = lock_file(&dir.database());
    let holder = Holder::start(&lock);
    match SqliteStore::connect(&dir.url()).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(
                message.contains("in use by another process")
                    && message.contains(&lock.display().to_string()),
                "{message}"
            );
        }
        Ok(_) => panic!("a second process's store must not open the database"),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
    }
    holder.stop();
    let store = SqliteStore::connect(&dir.url())
        .await
        .expect("the database is free again");
    store.ping().await.expect("ping");
    store.close().await;
}

#[tokio::test]
async fn stores_of_one_process_share_its_lock_until_the_last_one_closes() {
    let dir = Dir::new();
    let lock = lock_file(&dir.database());
    let first = SqliteStore::connect(&dir.url()).await.expect("first");
    // As a test reopening the database "as a restarted process would" does.
    let second = SqliteStore::connect(&dir.url()).await.expect("second");
    first.close().await;
    assert!(
        !another_process_can_lock(&lock),
        "the second still holds it"
    );
    second.ping().await.expect("the second still works");
    second.close().await;
    assert!(another_process_can_lock(&lock));
}

#[tokio::test]
async fn an_in_memory_database_takes_no_lock() {
    let a = SqliteStore::connect("sqlite::memory:").await.expect("a");
    let b = SqliteStore::connect("sqlite::memory:").await.expect("b");
    a.ping().await.expect("a");
    b.ping().await.expect("b");
    assert!(!Path::new(":memory:.lock").exists());
    a.close().await;
    b.close().await;
}
