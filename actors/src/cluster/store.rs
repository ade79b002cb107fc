//! The cluster's storage port: membership heartbeats, shard leases and id ranges, kept in
//! the same database as the journal so the epoch that fences a write is checked where the
//! write happens. Only Postgres implements it; a single-instance store (SQLite, memory)
//! answers `None` from [`crate::Store::cluster`] and the engine runs alone.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::model::ConsultationId;

/// A lease shard: `hash(doctor_id) % shard_count` (see [`super::lease_shard`]).
pub type ShardNo = u32;

/// A write is allowed only while its shard's lease still carries this epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fence {
    pub shard: ShardNo,
    pub epoch: u64,
}

/// Who a node is: its advertised base URL is its name (two live processes cannot both
/// listen on it); the incarnation tells one run of it from the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub advertise_url: String,
    pub incarnation: i64,
}

/// One `shard_leases` row as read, with its expiry judged by the database clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub shard: ShardNo,
    /// `None` for a shard nobody has held yet.
    pub owner: Option<NodeIdentity>,
    pub epoch: u64,
    /// `expires_at > now()` by the database clock.
    pub live: bool,
}

/// A consistent read of the membership and lease tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Nodes whose last heartbeat is younger than the TTL (database clock), by URL.
    pub live_nodes: Vec<NodeIdentity>,
    /// Every shard's lease, by shard number (`shard_count` rows).
    pub leases: Vec<LeaseRow>,
    pub db_now: DateTime<Utc>,
}

#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// Creates the lease rows `0..shard_count` if missing (expired, epoch 0, no owner) and
    /// records the shard count; refuses with `Unavailable` if the database was set up with
    /// another shard count (instances must agree on it).
    async fn prepare_shards(&self, shard_count: u32) -> Result<(), StoreError>;

    /// Upserts this node's `cluster_nodes` row (incarnation, URL, `heartbeat_at = now()`).
    async fn heartbeat(&self, node: &NodeIdentity) -> Result<(), StoreError>;

    /// Deletes this incarnation's `cluster_nodes` row (graceful leave).
    async fn leave(&self, node: &NodeIdentity) -> Result<(), StoreError>;

    /// Live nodes (heartbeat within `ttl`) and every lease.
    async fn cluster_view(&self, ttl: Duration) -> Result<ClusterView, StoreError>;

    /// Takes each of `shards` whose lease is expired (database clock), or held by an older
    /// (lower) incarnation of this same node: owner := `node`, `epoch := epoch + 1`,
    /// `expires_at := now() + ttl`. Returns the shards taken, with their new epochs; a
    /// shard another live lease holds is left alone.
    async fn acquire_leases(
        &self,
        node: &NodeIdentity,
        shards: &[ShardNo],
        ttl: Duration,
    ) -> Result<Vec<Fence>, StoreError>;

    /// Extends every lease `node` (this incarnation) holds by `ttl` from `now()`, epoch
    /// unchanged; returns the leases it still holds (a lease taken over is not among them).
    async fn renew_leases(
        &self,
        node: &NodeIdentity,
        ttl: Duration,
    ) -> Result<Vec<Fence>, StoreError>;

    /// Graceful handoff: `expires_at := now()` for these shards if `node` holds them, epoch
    /// kept, so another node may take them at once.
    async fn release_leases(
        &self,
        node: &NodeIdentity,
        shards: &[ShardNo],
    ) -> Result<(), StoreError>;

    /// Reserves `count` consultation ids no other instance will use: returns the first
    /// (the range is `first .. first + count`), above every id already stored.
    async fn allocate_consultation_ids(&self, count: u32) -> Result<ConsultationId, StoreError>;
}
