//! Process-level tests: the real `consult-scheduler` release binary, started as a separate
//! OS process and driven over real HTTP.
//!
//! - `cluster`: three instances on one Postgres: one winner per slot and the same view
//!   through every instance, then faults under load (SIGKILL of an owner, SIGSTOP of an
//!   owner past its lease, an instance cut off from Postgres, a rolling restart); the store
//!   holds exactly what clients were told. Its harness is `cluster_support`.
//! - `crash`: SIGKILL mid-load on Postgres, three times; no acknowledged booking is lost
//!   and no doctor is ever double booked.
//! - `idempotency_crash`: SIGKILL right after a 201 made with an `Idempotency-Key`; the
//!   restarted process answers the repeat with the first 201, no second booking.
//! - `readme_smoke`: the binary started as the README says (SQLite under the working
//!   directory), booked through, stopped with SIGTERM and restarted.
//! - `session_crash`: SIGKILL between a booking and its Vonage session; the session is
//!   made after restart from the durable outbox.
//! - `storage_faults`: Postgres restarted, stopped and its sessions killed under load (on a
//!   private server, `private_postgres`), SQLite on a full disk, a corrupt or foreign
//!   database file at start; 503 with `Retry-After` meanwhile, recovery by itself, every
//!   201 stored, a refused file untouched.
//! - `sqlite_lock`: a second binary on the same SQLite file is refused at start, naming
//!   the lock file, while the first keeps serving.
//!
//! Run with `cargo test --test process -- --nocapture`; the first run builds the release
//! binary (a few minutes).

mod cluster;
mod cluster_support;
mod crash;
mod idempotency_crash;
mod private_postgres;
mod readme_smoke;
mod session_crash;
mod sqlite_lock;
mod storage_faults;
mod support;
