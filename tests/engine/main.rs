//! Integration tests of the engine through its public API, on SQLite and on Postgres.

pub mod helpers;

mod concurrency;
mod durability;
mod policy;
mod reschedule;
mod rules;
