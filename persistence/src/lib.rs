//! sqlx adapters for the engine's storage port ([`consult_actors::Store`]): [`SqliteStore`]
//! (the embedded default) and [`PgStore`] (production), their embedded migrations, and
//! [`open_store`], which picks one by URL scheme. Both write the same logical schema: the
//! `journal` (the source of truth), the `consultations` and `doctors` projections kept in
//! the same transaction, and `snapshots`. Postgres also implements the cluster port
//! ([`consult_actors::cluster::ClusterStore`]) so that several instances can share it.

mod batch;
mod cluster;
mod error;
mod postgres;
mod rows;
mod sqlite;
mod sqlite_lock;
pub mod testing;

use std::sync::Arc;

use consult_actors::{Store, StoreError};

pub use cluster::MAX_SHARD_COUNT;
pub use postgres::{PgStore, DEFAULT_OUTBOX_CLAIM_S};
pub use sqlite::SqliteStore;

/// Opens the store a URL names and runs its migrations: `sqlite:` (e.g.
/// `sqlite://data/consult-scheduler.db`, `sqlite:///abs/path.db`) or `postgres:` /
/// `postgresql:`. The URL is never echoed in errors (it may carry a password).
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else {
        Err(StoreError::Unavailable(
            "unsupported store URL scheme (expected sqlite:, postgres: or postgresql:)".into(),
        ))
    }
}
