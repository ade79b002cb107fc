//! Consult Scheduler's engine: one actor per doctor owns that doctor's slot calendar and
//! decides every booking for that doctor, one message at a time; a group-commit journal
//! makes each decision durable before it is acknowledged.

pub mod calendar;
pub mod clock;
pub mod error;
pub mod model;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{EngineError, InvalidField, Rejection, StoreError};
pub use model::*;
pub use store::{DoctorHistory, Store, StoredSnapshot};
