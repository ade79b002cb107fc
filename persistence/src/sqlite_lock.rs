//! One process per SQLite database file. SQLite itself would let a second process open the
//! file and write to it, and then two engines would each believe they own every doctor: a
//! second instance must use Postgres (see `crate::cluster`). So a store opened on a file
//! first takes an exclusive lock on a sidecar file `<database file>.lock` (`flock` through
//! [`std::fs::File::try_lock`]), held until the store is closed or dropped, and a second
//! process is refused at once with a message naming the lock file.
//!
//! Inside one process the lock is shared: stores opened on the same file while another is
//! open (a test reopening the database as a restarted process would) hold the one lock
//! together, and it is released when the last of them closes. The operating system drops
//! the lock when the process dies, so a crash never leaves the database locked. The lock
//! file is never deleted: deleting it could let two processes lock two different files.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use consult_actors::StoreError;

/// The lock on one database file, held while an `Arc` of it lives.
#[derive(Debug)]
pub(crate) struct DatabaseLock {
    /// Closing it releases the `flock`.
    _file: File,
}

/// The locks this process holds, by the lock file's canonical path.
fn held() -> &'static Mutex<HashMap<PathBuf, Weak<DatabaseLock>>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, Weak<DatabaseLock>>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

/// The sidecar lock file of a database file: `<database file>.lock`.
pub(crate) fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Locks the database file `database` for this process (its directory must exist), or
/// shares the lock this process already holds on it. Refuses with `Unavailable` when
/// another process holds it.
pub(crate) fn lock_database(database: &Path) -> Result<Arc<DatabaseLock>, StoreError> {
    let path = lock_path(database);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot open the SQLite lock file {}: {e}",
                path.display()
            ))
        })?;
    let key = path.canonicalize().map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot resolve the SQLite lock file {}: {e}",
            path.display()
        ))
    })?;
    let mut held = held()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    held.retain(|_, lock| lock.strong_count() > 0);
    if let Some(lock) = held.get(&key).and_then(Weak::upgrade) {
        return Ok(lock);
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = read_holder(&mut file)
                .map(|pid| format!(", held by process {pid}"))
                .unwrap_or_default();
            return Err(StoreError::Unavailable(format!(
                "the SQLite database {} is in use by another process (lock file {}{holder}); \
                 SQLite serves one instance: stop the other one, or use Postgres to run \
                 several",
                database.display(),
                path.display()
            )));
        }
        Err(TryLockError::Error(e)) => {
            return Err(StoreError::Unavailable(format!(
                "cannot lock the SQLite lock file {}: {e}",
                path.display()
            )))
        }
    }
    // For whoever is refused next: which process holds it. Best effort.
    let _ = write_holder(&mut file);
    let lock = Arc::new(DatabaseLock { _file: file });
    held.insert(key, Arc::downgrade(&lock));
    Ok(lock)
}

fn write_holder(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_data()
}

fn read_holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
