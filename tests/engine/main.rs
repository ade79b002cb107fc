//! Integration tests of the engine through its public API, on SQLite and on Postgres.

pub mod helpers;

mod answers;
mod cluster;
mod concurrency;
mod durability;
mod multi;
mod policy;
mod reschedule;
mod rules;
mod sessions;
mod simulation;
