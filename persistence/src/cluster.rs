//! The cluster port ([`ClusterStore`]) on Postgres: membership heartbeats, shard leases and
//! consultation id ranges, in the tables of `migrations/postgres/0006_cluster.sql`. Every
//! expiry is judged and set by the database clock (`now()`), never an instance's.
//!
//! Lease rows are only ever locked in ascending shard order (`ORDER BY shard FOR UPDATE`
//! in every statement that changes several, `ORDER BY shard FOR SHARE` in the fence check
//! of a journal transaction, see [`check_fences`]), so a takeover, a renewal and the
//! journal transactions of several shards can wait for each other but never deadlock.
//! Under READ COMMITTED a statement that waited for a row lock re-checks its conditions on
//! the row as committed by the other transaction, so of several nodes taking one expired
//! lease at once exactly one gets it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use consult_actors::cluster::{ClusterStore, ClusterView, Fence, LeaseRow, NodeIdentity, ShardNo};
use consult_actors::{ConsultationId, StoreError};
use sqlx::{PgConnection, Row};

use crate::error::db_error;
use crate::PgStore;

/// The most lease shards a database is set up with (a row each).
pub const MAX_SHARD_COUNT: u32 = 65_536;

/// Shard numbers as stored (`INTEGER`); a number no row can have is left out.
fn shard_keys(shards: &[ShardNo]) -> Vec<i32> {
    shards
        .iter()
        .filter_map(|&s| i32::try_from(s).ok())
        .collect()
}

/// A `(shard, epoch)` row as returned by the lease statements, by shard.
fn fence_rows(rows: Vec<(i32, i64)>) -> Result<Vec<Fence>, StoreError> {
    let mut fences = rows
        .into_iter()
        .map(|(shard, epoch)| {
            Ok(Fence {
                shard: shard_no(shard)?,
                epoch: epoch_no(epoch)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    fences.sort_unstable();
    Ok(fences)
}

fn shard_no(shard: i32) -> Result<ShardNo, StoreError> {
    ShardNo::try_from(shard)
        .map_err(|_| StoreError::Corrupt("shard_leases.shard is negative".into()))
}

fn epoch_no(epoch: i64) -> Result<u64, StoreError> {
    u64::try_from(epoch).map_err(|_| StoreError::Corrupt("shard_leases.epoch is negative".into()))
}

/// Checks, inside the caller's transaction, that every fence still holds: each shard's
/// lease row carries the fence's epoch. The rows are read `FOR SHARE`, which conflicts
/// with the row lock of a takeover (`FOR UPDATE`, then the epoch-bumping update) but not
/// with other journal transactions: a takeover waits for this transaction to end, or this
/// read waits for the takeover and then finds the new epoch. (`FOR KEY SHARE` would not
/// conflict with an update that leaves the key alone.) A fence that no longer holds is
/// `Fenced`; the caller must then roll back without writing. No fences, no statement.
pub(crate) async fn check_fences(
    conn: &mut PgConnection,
    fences: &[Fence],
) -> Result<(), StoreError> {
    let wanted = FenceCheck::new(fences);
    if wanted.is_empty() {
        return Ok(());
    }
    let held: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT shard, epoch FROM shard_leases \
         WHERE (shard, epoch) IN (SELECT * FROM UNNEST($1::bigint[], $2::bigint[])) \
         ORDER BY shard FOR SHARE",
    )
    .bind(wanted.shards())
    .bind(wanted.epochs())
    .fetch_all(conn)
    .await
    .map_err(db_error)?;
    wanted.verdict(held)
}

/// The distinct fences a transaction must hold, as the fence statements bind them, and the
/// verdict on the `(shard, epoch)` rows such a statement locked: every fence has its row,
/// or the (first) one without is `Fenced`.
pub(crate) struct FenceCheck(Vec<Fence>);

/// An epoch as the fence statements bind it: one past `i64` matches no row, so it is
/// reported stale rather than lost in a conversion.
pub(crate) fn bound_epoch(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

impl FenceCheck {
    pub fn new(fences: &[Fence]) -> Self {
        let mut wanted = fences.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        Self(wanted)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn count(&self) -> i64 {
        self.0.len() as i64
    }

    /// Shards and epochs go in as bigint so that no fence is lost in a conversion: a value
    /// no row can have simply matches nothing and is reported stale.
    pub fn shards(&self) -> Vec<i64> {
        self.0.iter().map(|f| i64::from(f.shard)).collect()
    }

    pub fn epochs(&self) -> Vec<i64> {
        self.0.iter().map(|f| bound_epoch(f.epoch)).collect()
    }

    pub fn verdict(&self, held: Vec<(i32, i64)>) -> Result<(), StoreError> {
        if held.len() == self.0.len() {
            return Ok(());
        }
        // Each row matched one fence and shards are unique, so some fence has no row.
        let held = fence_rows(held)?;
        let stale = self
            .0
            .iter()
            .find(|f| !held.contains(f))
            .unwrap_or(&self.0[0]);
        Err(StoreError::Fenced {
            shard: stale.shard,
            epoch: stale.epoch,
        })
    }
}

#[async_trait]
impl ClusterStore for PgStore {
    /// One transaction: the config row is inserted unless present (a concurrent first
    /// insert makes this one wait for it, then do nothing), the stored count compared, and
    /// the missing lease rows inserted expired, unowned, at epoch 0.
    async fn prepare_shards(&self, shard_count: u32) -> Result<(), StoreError> {
        if !(1..=MAX_SHARD_COUNT).contains(&shard_count) {
            return Err(StoreError::Unavailable(format!(
                "cluster shard count {shard_count} is out of range (1..={MAX_SHARD_COUNT})"
            )));
        }
        let count = shard_count as i32;
        let mut tx = self.pool().begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO cluster_config (shard_count) VALUES ($1) \
             ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(count)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let stored: i32 = sqlx::query_scalar("SELECT shard_count FROM cluster_config")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        if stored != count {
            let _ = tx.rollback().await;
            return Err(StoreError::Unavailable(format!(
                "the database is set up for {stored} lease shards but this instance was \
                 started with {shard_count}; every instance on one database must use the \
                 same shard count"
            )));
        }
        sqlx::query(
            "INSERT INTO shard_leases (shard, epoch, expires_at) \
             SELECT s, 0, now() FROM generate_series(0, $1 - 1) AS s \
             ON CONFLICT (shard) DO NOTHING",
        )
        .bind(count)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    /// An upsert; a new incarnation of the URL restarts `started_at`.
    async fn heartbeat(&self, node: &NodeIdentity) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cluster_nodes (advertise_url, incarnation, heartbeat_at, started_at) \
             VALUES ($1, $2, now(), now()) \
             ON CONFLICT (advertise_url) DO UPDATE SET \
             incarnation = excluded.incarnation, heartbeat_at = excluded.heartbeat_at, \
             started_at = CASE WHEN cluster_nodes.incarnation = excluded.incarnation \
             THEN cluster_nodes.started_at ELSE excluded.started_at END",
        )
        .bind(&node.advertise_url)
        .bind(node.incarnation)
        .execute(self.pool())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn leave(&self, node: &NodeIdentity) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cluster_nodes WHERE advertise_url = $1 AND incarnation = $2")
            .bind(&node.advertise_url)
            .bind(node.incarnation)
            .execute(self.pool())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// One REPEATABLE READ snapshot, in which `now()` is one instant too.
    async fn cluster_view(&self, ttl: Duration) -> Result<ClusterView, StoreError> {
        let mut tx = self.pool().begin().await.map_err(db_error)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let db_now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let live_nodes = sqlx::query_as::<_, (String, i64)>(
            "SELECT advertise_url, incarnation FROM cluster_nodes \
             WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY advertise_url",
        )
        .bind(ttl.as_secs_f64())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|(advertise_url, incarnation)| NodeIdentity {
            advertise_url,
            incarnation,
        })
        .collect();
        let leases = sqlx::query(
            "SELECT shard, owner_url, owner_incarnation, epoch, expires_at > now() AS live \
             FROM shard_leases ORDER BY shard",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| {
            let url: Option<String> = row.try_get("owner_url").map_err(db_error)?;
            let incarnation: Option<i64> = row.try_get("owner_incarnation").map_err(db_error)?;
            Ok(LeaseRow {
                shard: shard_no(row.try_get("shard").map_err(db_error)?)?,
                owner: url
                    .zip(incarnation)
                    .map(|(advertise_url, incarnation)| NodeIdentity {
                        advertise_url,
                        incarnation,
                    }),
                epoch: epoch_no(row.try_get("epoch").map_err(db_error)?)?,
                live: row.try_get("live").map_err(db_error)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit().await.map_err(db_error)?;
        Ok(ClusterView {
            live_nodes,
            leases,
            db_now,
        })
    }

    /// One statement: lock the takeable rows in shard order, then take them with the next
    /// epoch. A row locked by a write in flight (its owner's fenced transaction holds it
    /// `FOR SHARE`) is skipped this time rather than waited for: the caller's lease loop
    /// must never stall behind a paused owner. This node's own lease (this or an older
    /// incarnation) is taken again with a new epoch, which fences its earlier writes.
    async fn acquire_leases(
        &self,
        node: &NodeIdentity,
        shards: &[ShardNo],
        ttl: Duration,
    ) -> Result<Vec<Fence>, StoreError> {
        let shards = shard_keys(shards);
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let taken = sqlx::query_as(
            "UPDATE shard_leases AS l SET owner_url = $2, owner_incarnation = $3, \
             epoch = l.epoch + 1, expires_at = now() + make_interval(secs => $4) \
             WHERE l.shard IN (SELECT shard FROM shard_leases \
             WHERE shard = ANY($1::int[]) \
             AND (expires_at <= now() OR (owner_url = $2 AND owner_incarnation <= $3)) \
             ORDER BY shard FOR UPDATE SKIP LOCKED) \
             RETURNING l.shard, l.epoch",
        )
        .bind(shards)
        .bind(&node.advertise_url)
        .bind(node.incarnation)
        .bind(ttl.as_secs_f64())
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        fence_rows(taken)
    }

    /// Every row this incarnation owns, expired or not (an expired lease nobody took still
    /// has this node's epoch, so nobody else wrote under it).
    async fn renew_leases(
        &self,
        node: &NodeIdentity,
        ttl: Duration,
    ) -> Result<Vec<Fence>, StoreError> {
        let held = sqlx::query_as(
            "UPDATE shard_leases AS l SET expires_at = now() + make_interval(secs => $3) \
             WHERE l.shard IN (SELECT shard FROM shard_leases \
             WHERE owner_url = $1 AND owner_incarnation = $2 ORDER BY shard FOR UPDATE) \
             RETURNING l.shard, l.epoch",
        )
        .bind(&node.advertise_url)
        .bind(node.incarnation)
        .bind(ttl.as_secs_f64())
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        fence_rows(held)
    }

    /// The epoch stays; the expiry moves to now (never later than it was) and the owner is
    /// cleared, so a later renewal of this node cannot take the lease back.
    async fn release_leases(
        &self,
        node: &NodeIdentity,
        shards: &[ShardNo],
    ) -> Result<(), StoreError> {
        let shards = shard_keys(shards);
        if shards.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE shard_leases AS l SET expires_at = LEAST(l.expires_at, now()), \
             owner_url = NULL, owner_incarnation = NULL \
             WHERE l.shard IN (SELECT shard FROM shard_leases \
             WHERE shard = ANY($1::int[]) AND owner_url = $2 AND owner_incarnation = $3 \
             ORDER BY shard FOR UPDATE)",
        )
        .bind(shards)
        .bind(&node.advertise_url)
        .bind(node.incarnation)
        .execute(self.pool())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// One update of the allocator row: concurrent callers queue on its row lock and each
    /// re-reads the value the previous one committed, so ranges never overlap; the range
    /// starts above `max(consultations.id)` as well.
    async fn allocate_consultation_ids(&self, count: u32) -> Result<ConsultationId, StoreError> {
        sqlx::query_scalar(
            "UPDATE consultation_id_allocator SET next_id = \
             GREATEST(next_id, (SELECT COALESCE(MAX(id), 0) + 1 FROM consultations)) + $1 \
             RETURNING next_id - $1",
        )
        .bind(i64::from(count))
        .fetch_one(self.pool())
        .await
        .map_err(db_error)
    }
}
