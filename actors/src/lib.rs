//! Consult Scheduler's engine: one actor per doctor owns that doctor's slot calendar and
//! decides every booking for that doctor, one message at a time; a group-commit journal
//! makes each decision durable before it is acknowledged.
//!
//! - [`calendar`]: the pure booking rules (no async, no I/O).
//! - [`Engine`]: the handle to embed; see its docs for a runnable example.
//! - [`Store`]: the storage port; `consult-persistence` implements it for SQLite and
//!   Postgres, [`memory::MemoryStore`] in memory.

mod batch;
pub mod calendar;
pub mod clock;
pub mod cluster;
mod context;
mod doctor;
mod engine;
pub mod error;
pub mod feed;
mod journal;
mod known_keys;
pub mod memory;
pub mod model;
pub mod notifier;
pub mod outbox;
pub mod seal;
pub mod sessions;
mod settings;
mod shard;
mod snapshots;
mod stats;
pub mod store;
pub mod vonage;

pub use clock::{Clock, ManualClock, SystemClock};
pub use cluster::shard_index;
pub use doctor::{DoctorSnapshot, EncodedAvailability, SlotCheck};
pub use engine::{Engine, EngineBuilder, MAX_LIST_LIMIT};
pub use error::{EngineError, InvalidField, Rejection, StoreError};
pub use model::*;
pub use settings::EngineSettings;
pub use stats::{HistogramSnapshot, StatsSnapshot};
pub use store::{DoctorHistory, JournalEntry, SnapshotWrite, Store, StoredSnapshot};
