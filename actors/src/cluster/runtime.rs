//! The lease loop: heartbeats, renewals, takeovers and graceful handoffs, one round at a
//! time, and the [`Cluster`] handle the engine and the HTTP front end read.
//!
//! Each round: renew what this instance holds (every TTL/3) and heartbeat; drop shards
//! whose local deadline passed or whose renewal did not return them; read the membership
//! and lease tables; hand off shards another live instance should own (stop admitting,
//! drain their actors, flush the journal, release the lease) and take the free ones this
//! instance should own. Who should own a shard is decided by rendezvous hashing over the
//! live instances, so every instance computes the same answer and a joining instance
//! takes about `1/n` of the shards.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use super::ids::IdPool;
use super::ownership::{Ownership, Route};
use super::store::{ClusterStore, ClusterView, Fence, NodeIdentity, ShardNo};
use crate::error::{EngineError, StoreError};
use crate::model::{ConsultationId, DoctorId};

/// How an instance joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The base URL other instances reach this one at (its name in the cluster).
    pub advertise_url: String,
    /// Lease shards; every instance of one database must use the same count.
    pub shard_count: u32,
    /// How long a lease lasts without renewal (renewed every third of it).
    pub lease_ttl: Duration,
    /// Consultation ids reserved from the database at a time.
    pub id_block: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            advertise_url: String::new(),
            shard_count: super::DEFAULT_SHARD_COUNT,
            lease_ttl: Duration::from_secs(10),
            id_block: 1000,
        }
    }
}

impl ClusterSettings {
    pub fn validate(&self) -> Result<(), EngineError> {
        use crate::error::InvalidField;
        if !(1..=65_536).contains(&self.shard_count) {
            return Err(InvalidField::new("cluster.shard_count", "must be 1 to 65536").into());
        }
        if self.lease_ttl < Duration::from_millis(300) || self.lease_ttl > Duration::from_secs(600)
        {
            return Err(InvalidField::new("cluster.lease_ttl_ms", "must be 300 to 600000").into());
        }
        if !(10..=1_000_000).contains(&self.id_block) {
            return Err(InvalidField::new("cluster.id_block", "must be 10 to 1000000").into());
        }
        if !(self.advertise_url.starts_with("http://")
            || self.advertise_url.starts_with("https://"))
        {
            return Err(InvalidField::new(
                "cluster.advertise_url",
                "must be an http:// or https:// URL",
            )
            .into());
        }
        Ok(())
    }

    fn renew_every(&self) -> Duration {
        self.lease_ttl / 3
    }

    /// Stop serving this long after the start of the last successful renewal: well before
    /// the database can let the lease expire.
    fn serve_for(&self) -> Duration {
        self.lease_ttl.mul_f64(0.8)
    }

    fn poll_every(&self) -> Duration {
        (self.lease_ttl / 10).clamp(Duration::from_millis(50), Duration::from_millis(500))
    }
}

/// What the lease loop asks of the engine when a shard must stop being served here.
#[async_trait]
pub(crate) trait ShardHost: Send + Sync + 'static {
    /// Stops the doctor actors of these shards (their queued messages are decided first)
    /// and waits until everything they decided is durable or refused. With `handoff`
    /// (the leases, still held), each actor's snapshot is written first under its fence,
    /// so the next owner loads it instead of replaying the journal.
    async fn stop_serving(&self, shards: &BTreeSet<ShardNo>, handoff: &[Fence]);
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct ClusterStats {
    pub renewals: AtomicU64,
    pub renew_failures: AtomicU64,
    pub renew_micros_total: AtomicU64,
    pub last_renew_micros: AtomicU64,
    pub acquired: AtomicU64,
    pub handed_off: AtomicU64,
    pub lost: AtomicU64,
    pub fenced: AtomicU64,
    pub forwarded: AtomicU64,
}

/// The cluster as this instance sees it; shared by the engine and the HTTP front end.
pub struct Cluster {
    me: NodeIdentity,
    settings: ClusterSettings,
    store: Arc<dyn ClusterStore>,
    ownership: Ownership,
    ids: Arc<IdPool>,
    pub stats: ClusterStats,
    /// Wakes the loop early (a request found no owner, or a write was fenced).
    poke: Notify,
    leaving: AtomicBool,
    host: std::sync::OnceLock<Weak<dyn ShardHost>>,
    /// Serializes rounds with [`Cluster::leave`].
    round: tokio::sync::Mutex<()>,
    /// Instances that could not be reached (URL -> when): not forwarded to for a lease
    /// TTL, by which time a dead instance's leases have expired and been taken.
    suspects: std::sync::Mutex<HashMap<String, Instant>>,
}

impl Cluster {
    /// Registers this instance and reserves its first ids; no shard is held yet.
    pub(crate) async fn join(
        store: Arc<dyn ClusterStore>,
        settings: ClusterSettings,
    ) -> Result<Arc<Self>, EngineError> {
        settings.validate()?;
        store.prepare_shards(settings.shard_count).await?;
        let me = NodeIdentity {
            advertise_url: settings.advertise_url.trim_end_matches('/').to_owned(),
            incarnation: incarnation(),
        };
        store.heartbeat(&me).await?;
        let ids = IdPool::start(Arc::clone(&store), settings.id_block).await?;
        info!(
            node = %me.advertise_url,
            incarnation = me.incarnation,
            shards = settings.shard_count,
            lease_ttl_ms = settings.lease_ttl.as_millis() as u64,
            "joined the cluster"
        );
        Ok(Arc::new(Self {
            ownership: Ownership::new(settings.shard_count),
            me,
            settings,
            store,
            ids,
            stats: ClusterStats::default(),
            poke: Notify::new(),
            leaving: AtomicBool::new(false),
            host: std::sync::OnceLock::new(),
            round: tokio::sync::Mutex::new(()),
            suspects: std::sync::Mutex::new(HashMap::new()),
        }))
    }

    pub(crate) fn set_host(&self, host: Weak<dyn ShardHost>) {
        let _ = self.host.set(host);
    }

    pub fn advertise_url(&self) -> &str {
        &self.me.advertise_url
    }

    pub fn shard_count(&self) -> u32 {
        self.settings.shard_count
    }

    pub fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    /// The lease shard of a doctor.
    pub fn shard_of(&self, doctor_id: DoctorId) -> ShardNo {
        super::lease_shard(doctor_id, self.settings.shard_count)
    }

    /// Where the doctor's requests go now.
    pub fn route(&self, doctor_id: DoctorId) -> Route {
        self.ownership.route(self.shard_of(doctor_id))
    }

    pub(crate) fn next_consultation_id(&self) -> Result<ConsultationId, EngineError> {
        self.ids.next()
    }

    /// Another instance could not be reached: its shards are not forwarded to for a
    /// while (they count as unrouted, so `/readyz` says not ready).
    pub fn suspect(&self, url: &str) {
        let fresh = self
            .suspects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_owned(), Instant::now())
            .is_none();
        if fresh {
            warn!(
                node = url,
                "another instance is unreachable; not forwarding to it"
            );
        }
        self.ownership.forget_remote(url);
        self.poke();
    }

    fn is_suspect(&self, url: &str) -> bool {
        let mut suspects = self.suspects.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = self.settings.lease_ttl;
        suspects.retain(|_, since| since.elapsed() < ttl);
        suspects.contains_key(url)
    }

    /// Asks for an early round (someone is waiting for an owner).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// A write of `shard` was refused by its fence: another instance owns it now.
    pub(crate) fn fenced(&self, shard: ShardNo, epoch: u64) {
        self.stats.fenced.fetch_add(1, Relaxed);
        warn!(
            shard,
            epoch, "a write was fenced: another instance took this shard over"
        );
        // Only if still held under that epoch (it may have been taken again since).
        if matches!(self.ownership.route(shard), Route::Local(f) if f.epoch == epoch) {
            self.ownership.set_unknown(shard);
        }
        self.poke();
    }

    /// Runs a first round now, so a lone instance serves as soon as the engine starts,
    /// then rounds in the background until [`Cluster::leave`].
    pub(crate) async fn start_rounds(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mut last_renew: Option<Instant> = None;
        self.round(&mut last_renew).await;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(me.settings.poll_every(), me.poke.notified()).await;
                if !me.round(&mut last_renew).await {
                    return;
                }
            }
        })
    }

    /// One round: renew when due, drop expired shards, rebalance. `false` once leaving.
    pub(crate) async fn round(&self, last_renew: &mut Option<Instant>) -> bool {
        let _round = self.round.lock().await;
        if self.leaving.load(Relaxed) {
            return false;
        }
        if last_renew.is_none_or(|t| t.elapsed() >= self.settings.renew_every()) {
            *last_renew = Some(Instant::now());
            self.renew().await;
        }
        self.drop_expired().await;
        // Forward only to instances that heartbeat on time (every TTL/3): one that missed
        // a heartbeat is probably gone, and its shards wait for their leases to expire.
        match self.store.cluster_view(self.settings.lease_ttl / 2).await {
            Ok(view) => self.rebalance(view).await,
            Err(e) => warn!(error = %e, "cluster: reading the lease table failed"),
        }
        true
    }

    /// Heartbeat, then extend every lease held; shards not returned are lost.
    async fn renew(&self) {
        let started = Instant::now();
        let result = async {
            self.store.heartbeat(&self.me).await?;
            self.store
                .renew_leases(&self.me, self.settings.lease_ttl)
                .await
        }
        .await;
        let micros = started.elapsed().as_micros() as u64;
        match result {
            Ok(kept) => {
                self.stats.renewals.fetch_add(1, Relaxed);
                self.stats.renew_micros_total.fetch_add(micros, Relaxed);
                self.stats.last_renew_micros.store(micros, Relaxed);
                let deadline = started + self.settings.serve_for();
                let kept: HashMap<ShardNo, u64> =
                    kept.into_iter().map(|f| (f.shard, f.epoch)).collect();
                let mut lost = BTreeSet::new();
                for (shard, epoch, _) in self.ownership.held() {
                    if kept.get(&shard) == Some(&epoch) {
                        self.ownership.renew(Fence { shard, epoch }, deadline);
                    } else {
                        lost.insert(shard);
                    }
                }
                if !lost.is_empty() {
                    warn!(shards = ?lost, "leases lost to another instance");
                    self.stop(&lost, "lost").await;
                }
            }
            Err(e) => {
                self.stats.renew_failures.fetch_add(1, Relaxed);
                warn!(error = %e, "cluster: lease renewal failed");
            }
        }
    }

    /// Shards past their local deadline are no longer served (the lease may be taken over).
    async fn drop_expired(&self) {
        let now = Instant::now();
        let expired: BTreeSet<ShardNo> = self
            .ownership
            .held()
            .into_iter()
            .filter(|(_, _, deadline)| now >= *deadline)
            .map(|(shard, _, _)| shard)
            .collect();
        if !expired.is_empty() {
            warn!(
                shards = expired.len(),
                "lease deadline passed without renewal; these shards stop being served here"
            );
            self.stop(&expired, "expired").await;
        }
    }

    async fn rebalance(&self, view: ClusterView) {
        let mut live: Vec<&str> = view
            .live_nodes
            .iter()
            .map(|n| n.advertise_url.as_str())
            .collect();
        if !live.contains(&self.me.advertise_url.as_str()) {
            live.push(&self.me.advertise_url);
        }
        let mut to_take = Vec::new();
        let mut to_hand_off = BTreeSet::new();
        let mut taken_over = BTreeSet::new();
        // Ours in the table but not served here, and another's to serve: give it back.
        let mut to_release = Vec::new();
        let desired_owners = assignment(&live, self.settings.shard_count);
        for lease in &view.leases {
            let shard = lease.shard;
            let desired = desired_owners
                .get(shard as usize)
                .copied()
                .unwrap_or_default();
            let mine = desired == self.me.advertise_url;
            let held_here = matches!(self.ownership.route(shard), Route::Local(_));
            match &lease.owner {
                Some(owner) if owner == &self.me => {
                    if held_here && !mine {
                        to_hand_off.insert(shard);
                    } else if !held_here && mine {
                        // Ours in the table but not served (lost deadline): take it anew.
                        to_take.push(shard);
                    } else if !held_here {
                        to_release.push(shard);
                    }
                }
                // Forward only to an owner that still heartbeats; a dead owner's lease
                // leaves the shard unrouted (not ready) until it expires and is taken.
                Some(owner)
                    if lease.live
                        && owner.advertise_url != self.me.advertise_url
                        && live.contains(&owner.advertise_url.as_str())
                        && !self.is_suspect(&owner.advertise_url) =>
                {
                    if held_here {
                        taken_over.insert(shard);
                    }
                    self.ownership
                        .set_remote(shard, Arc::from(owner.advertise_url.as_str()));
                }
                _ if mine => to_take.push(shard),
                _ => {
                    if !held_here {
                        self.ownership.set_unknown(shard);
                    }
                }
            }
        }
        if !taken_over.is_empty() {
            self.stop_serving(&taken_over, &[]).await;
        }
        if !to_hand_off.is_empty() {
            self.hand_off(&to_hand_off).await;
        }
        if !to_release.is_empty() {
            if let Err(e) = self.store.release_leases(&self.me, &to_release).await {
                warn!(error = %e, "cluster: releasing unserved leases failed");
            }
        }
        if !to_take.is_empty() {
            self.take(&to_take).await;
        }
    }

    async fn take(&self, shards: &[ShardNo]) {
        let started = Instant::now();
        match self
            .store
            .acquire_leases(&self.me, shards, self.settings.lease_ttl)
            .await
        {
            Ok(taken) => {
                let deadline = started + self.settings.serve_for();
                for f in &taken {
                    self.ownership.set_owned(*f, deadline);
                }
                if !taken.is_empty() {
                    self.stats.acquired.fetch_add(taken.len() as u64, Relaxed);
                    info!(
                        event_type = "shards_acquired",
                        count = taken.len(),
                        shards = ?taken.iter().map(|f| (f.shard, f.epoch)).collect::<Vec<_>>(),
                        "now serving these shards"
                    );
                }
            }
            Err(e) => warn!(error = %e, "cluster: taking leases failed"),
        }
    }

    /// Graceful handoff: stop admitting, drain, flush, release (epoch kept).
    async fn hand_off(&self, shards: &BTreeSet<ShardNo>) {
        let started = Instant::now();
        let fences: Vec<Fence> = self
            .ownership
            .held()
            .into_iter()
            .filter(|(shard, _, _)| shards.contains(shard))
            .map(|(shard, epoch, _)| Fence { shard, epoch })
            .collect();
        for &s in shards {
            self.ownership.set_releasing(s);
        }
        self.stop_serving(shards, &fences).await;
        let list: Vec<ShardNo> = shards.iter().copied().collect();
        match self.store.release_leases(&self.me, &list).await {
            Ok(()) => {
                self.stats.handed_off.fetch_add(list.len() as u64, Relaxed);
                info!(
                    event_type = "shards_handed_off",
                    count = list.len(),
                    shards = ?list,
                    millis = started.elapsed().as_millis() as u64,
                    "handed these shards off"
                );
            }
            // Not released: the lease expires by itself; nothing is served here meanwhile.
            Err(e) => warn!(error = %e, "cluster: releasing leases failed; they expire"),
        }
        for &s in shards {
            self.ownership.set_unknown(s);
        }
    }

    /// Stops serving shards this instance no longer holds.
    async fn stop(&self, shards: &BTreeSet<ShardNo>, why: &'static str) {
        for &s in shards {
            self.ownership.set_unknown(s);
        }
        self.stats.lost.fetch_add(shards.len() as u64, Relaxed);
        info!(
            event_type = "shards_lost",
            count = shards.len(),
            reason = why,
            "stopped serving these shards"
        );
        self.stop_serving(shards, &[]).await;
    }

    async fn stop_serving(&self, shards: &BTreeSet<ShardNo>, handoff: &[Fence]) {
        if let Some(host) = self.host.get().and_then(Weak::upgrade) {
            host.stop_serving(shards, handoff).await;
        }
    }

    /// Graceful leave (SIGTERM): leaves the membership table, so the others stop
    /// assigning shards here, and hands every shard off. Idempotent.
    pub async fn leave(&self) {
        let _round = self.round.lock().await;
        if self.leaving.swap(true, Relaxed) {
            return;
        }
        self.poke();
        if let Err(e) = self.store.leave(&self.me).await {
            warn!(error = %e, "cluster: leaving the membership table failed");
        }
        let held: BTreeSet<ShardNo> = self.ownership.held().into_iter().map(|h| h.0).collect();
        if !held.is_empty() {
            self.hand_off(&held).await;
        }
        info!(node = %self.me.advertise_url, "left the cluster");
    }

    /// Re-reads the lease table now, for a request that found no owner.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let view = self.store.cluster_view(self.settings.lease_ttl / 2).await?;
        for lease in view.leases {
            if let (Some(owner), true) = (&lease.owner, lease.live) {
                if owner.advertise_url != self.me.advertise_url
                    && view.live_nodes.iter().any(|n| n == owner)
                    && !self.is_suspect(&owner.advertise_url)
                    && !matches!(self.ownership.route(lease.shard), Route::Local(_))
                {
                    self.ownership
                        .set_remote(lease.shard, Arc::from(owner.advertise_url.as_str()));
                }
            }
        }
        Ok(())
    }
}

/// Which live instance should serve each shard (indexed by shard number): rendezvous
/// (highest random weight) hashing with bounded loads. Each shard goes to the instance
/// that ranks it highest among those with room left (`shards / instances` each, one more
/// for the first `shards % instances` to fill up), taking the shards in order. So every
/// instance computes the same assignment from the same live list (in any order), the
/// counts differ by at most one, and a joining or leaving instance moves few shards.
pub fn assignment<'a>(live: &[&'a str], shard_count: u32) -> Vec<&'a str> {
    if live.is_empty() {
        return vec![""; shard_count as usize];
    }
    // Every instance gets `base` shards, and `extra` of them one more.
    let base = shard_count as usize / live.len();
    let mut extra = shard_count as usize % live.len();
    let mut load: HashMap<&str, usize> = HashMap::with_capacity(live.len());
    (0..shard_count)
        .map(|shard| {
            let room = |url: &&str| {
                let n = load.get(url).copied().unwrap_or(0);
                n < base || (n == base && extra > 0)
            };
            let owner = live
                .iter()
                .copied()
                .filter(room)
                .max_by_key(|url| (weight(url, shard), *url))
                .expect("base times instances plus extra covers every shard");
            let n = load.entry(owner).or_insert(0);
            if *n == base {
                extra -= 1;
            }
            *n += 1;
            owner
        })
        .collect()
}

/// FNV-1a over the URL and shard, finished with splitmix64 (stable across builds, unlike
/// the standard library's hasher).
fn weight(url: &str, shard: ShardNo) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes().chain(shard.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A number that tells this run of the process from every earlier one: the start time in
/// microseconds, so a later run of the same URL has a higher one and takes its leases
/// back at once, while an earlier run (a paused process waking up) cannot.
fn incarnation() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_even_agreed_and_moves_little() {
        let two = ["http://a:1", "http://b:1"];
        let three = ["http://a:1", "http://b:1", "http://c:1"];
        for shards in [7, 32, 256, 1000] {
            let before = assignment(&two, shards);
            let after = assignment(&three, shards);
            let mut counts: HashMap<&str, u32> = HashMap::new();
            for owner in &after {
                *counts.entry(owner).or_insert(0) += 1;
            }
            let (min, max) = (counts.values().min(), counts.values().max());
            assert!(
                counts.len() == 3 && max.unwrap() - min.unwrap() <= 1,
                "{shards} shards over three: {counts:?}"
            );
            // Moves: what the new node takes, plus a few shards pushed by the load bound.
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count() as u32;
            let to_c = counts["http://c:1"];
            assert!(
                moved >= to_c && moved <= to_c + to_c / 2 + 2,
                "{shards} shards: {moved} moved, {to_c} to the new node"
            );
            // Every instance computes the same, whatever the order of its live list.
            let shuffled = ["http://c:1", "http://a:1", "http://b:1"];
            assert_eq!(after, assignment(&shuffled, shards));
        }
        assert_eq!(assignment(&["http://a:1"], 4), vec!["http://a:1"; 4]);
        assert_eq!(assignment(&[], 2), vec![""; 2]);
    }
}
