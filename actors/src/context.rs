//! What every actor of one engine shares: the store, the journal, the registry of live
//! doctor actors, and (in a cluster) the shard leases that say which doctors this
//! instance serves. Doctor actors, shard supervisors and the engine handle all read it;
//! it depends on none of them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use ractor::ActorRef;

use crate::calendar::Rules;
use crate::clock::Clock;
use crate::cluster::{Cluster, Fence, Route, ShardHost, ShardNo};
use crate::doctor::msg::DoctorMsg;
use crate::doctor::view::DoctorHandle;
use crate::error::EngineError;
use crate::feed::Feeds;
use crate::journal::JournalHandle;
use crate::model::{ConsultationId, DoctorId};
use crate::settings::EngineSettings;
use crate::snapshots::SnapshotWriter;
use crate::stats::EngineStats;
use crate::store::{SnapshotWrite, Store};

/// What every actor of one engine shares.
pub(crate) struct EngineContext {
    pub store: Arc<dyn Store>,
    pub journal: JournalHandle,
    pub clock: Arc<dyn Clock>,
    pub settings: EngineSettings,
    pub rules: Rules,
    pub stats: Arc<EngineStats>,
    /// Doctor id -> its live actor and published view; lets callers skip the shard, and
    /// plain reads skip the actor.
    pub registry: DashMap<DoctorId, DoctorHandle>,
    /// Writes snapshots in batches, from a bounded queue.
    pub snapshots: Arc<SnapshotWriter>,
    /// Live slot changes of watched doctors, for the availability stream.
    pub feeds: Feeds,
    /// Leases and routing when several instances share the store; `None` alone.
    pub cluster: Option<Arc<Cluster>>,
    pub(crate) next_consultation_id: AtomicI64,
    pub(crate) next_generation: AtomicU64,
}

impl EngineContext {
    /// A new consultation id: from this instance's reserved range in a cluster, else the
    /// next after the highest stored at start.
    pub fn allocate_consultation_id(&self) -> Result<ConsultationId, EngineError> {
        match &self.cluster {
            Some(c) => c.next_consultation_id(),
            None => Ok(self.next_consultation_id.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// The fence this instance writes the doctor's records under: `None` alone, the
    /// shard's lease when it holds it, `NotOwner` when another instance (or nobody, right
    /// now) serves the doctor.
    pub fn fence_for(&self, doctor_id: DoctorId) -> Result<Option<Fence>, EngineError> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        match cluster.route(doctor_id) {
            Route::Local(fence) => Ok(Some(fence)),
            Route::Remote(url) => Err(EngineError::NotOwner {
                owner: Some(url.to_string()),
            }),
            Route::Unknown => {
                cluster.poke();
                Err(EngineError::NotOwner { owner: None })
            }
        }
    }

    /// Whether this instance serves the doctor now (always, alone).
    pub fn serves(&self, doctor_id: DoctorId) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|c| matches!(c.route(doctor_id), Route::Local(_)))
    }

    pub fn next_generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl ShardHost for EngineContext {
    async fn stop_serving(&self, shards: &std::collections::BTreeSet<ShardNo>, handoff: &[Fence]) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let actors: Vec<(DoctorId, ActorRef<DoctorMsg>)> = self
            .registry
            .iter()
            .filter(|e| shards.contains(&cluster.shard_of(*e.key())))
            .map(|e| (*e.key(), e.value().actor.clone()))
            .collect();
        let wait = Duration::from_millis(self.settings.call_timeout_ms);
        let mut drains = tokio::task::JoinSet::new();
        for (doctor_id, actor) in actors {
            let fence = handoff
                .iter()
                .find(|f| f.shard == cluster.shard_of(doctor_id))
                .copied();
            let snapshots = Arc::clone(&self.snapshots);
            drains.spawn(async move {
                if let Some(fence) = fence {
                    let _place = snapshots.reserve().await;
                    let snap = actor
                        .call(|reply| DoctorMsg::FinalSnapshot { reply }, Some(wait))
                        .await;
                    if let Ok(ractor::rpc::CallResult::Success(Some((seq, blob)))) = snap {
                        let snapshot = SnapshotWrite {
                            doctor_id,
                            seq,
                            blob,
                            fence: Some(fence),
                        };
                        match snapshots.write(snapshot).await {
                            Ok(true) => {}
                            Ok(false) => tracing::warn!(doctor_id, "handoff snapshot fenced"),
                            Err(e) => {
                                tracing::warn!(doctor_id, error = %e, "handoff snapshot failed")
                            }
                        }
                    }
                }
                if actor.drain_and_wait(Some(wait)).await.is_err() {
                    actor.stop(Some("shard handed off".into()));
                }
            });
        }
        drains.join_all().await;
        let _ = self.journal.fence_all().await;
    }
}
