//! A shard supervisor owns the doctor actors whose id hashes to it (Orleans-style virtual
//! actors). It activates a doctor on first use, exactly once however many first messages
//! race: the first request starts one load, later ones wait on it. Loading happens in a
//! task (fence the journal, read snapshot + later events, rebuild), so the shard keeps
//! serving while a doctor loads. An actor that is still stopping (passivation, failure) is
//! waited for before its successor loads, so two actors never own one doctor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent,
};
use tokio::time::Instant;
use tracing::{error, info};

use crate::calendar::Calendar;
use crate::cluster::Fence;
use crate::context::EngineContext;
use crate::doctor::{load_calendar, DoctorActor, DoctorArgs, DoctorHandle, DoctorMsg, View};
use crate::error::EngineError;
use crate::model::DoctorId;
use crate::stats::EngineStats;
use crate::store::SnapshotWrite;

type ActivateReply = RpcReplyPort<Result<ActorRef<DoctorMsg>, EngineError>>;

pub enum ShardMsg {
    /// The actor of `doctor_id`, activated from the store if needed.
    Activate {
        doctor_id: DoctorId,
        reply: ActivateReply,
    },
    /// A load task finished: the rebuilt calendar and the seq its snapshot covered, loaded
    /// under `fence` (the lease held when the load began, in a cluster).
    Loaded {
        doctor_id: DoctorId,
        fence: Option<Fence>,
        result: Result<(Box<Calendar>, u64), EngineError>,
    },
    Tick,
    /// Final snapshots, then stop every child and the shard.
    Shutdown {
        reply: RpcReplyPort<()>,
    },
}

pub struct ShardActor {
    pub(crate) ctx: Arc<EngineContext>,
}

pub struct ShardState {
    children: HashMap<DoctorId, DoctorHandle>,
    doctor_of: HashMap<ActorId, DoctorId>,
    /// Callers waiting for an activation (load in progress, or old actor still stopping).
    pending: HashMap<DoctorId, Vec<ActivateReply>>,
    ticker: Option<JoinHandle<()>>,
    last_snapshot_round: Instant,
    /// Tick rounds so far (see `ShardMsg::Tick`).
    ticks: u64,
    stopping: bool,
}

fn is_alive(actor: &ActorRef<DoctorMsg>) -> bool {
    matches!(
        actor.get_status(),
        ActorStatus::Running | ActorStatus::Starting | ActorStatus::Unstarted
    )
}

impl Actor for ShardActor {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let every = Duration::from_millis(self.ctx.settings.tick_interval_ms);
        Ok(ShardState {
            children: HashMap::new(),
            doctor_of: HashMap::new(),
            pending: HashMap::new(),
            ticker: Some(myself.send_interval(every, || ShardMsg::Tick)),
            last_snapshot_round: Instant::now(),
            ticks: 0,
            stopping: false,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.ticker.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ShardMsg::Activate { doctor_id, reply } => {
                if state.stopping {
                    let _ = reply.send(Err(EngineError::Unavailable("engine is stopping".into())));
                } else if let Err(not_owner) = self.ctx.fence_for(doctor_id) {
                    let _ = reply.send(Err(not_owner));
                } else if let Some(waiters) = state.pending.get_mut(&doctor_id) {
                    waiters.push(reply);
                } else {
                    match state.children.get(&doctor_id) {
                        Some(child) if is_alive(&child.actor) => {
                            let _ = reply.send(Ok(child.actor.clone()));
                        }
                        // Still stopping: its termination event starts the load.
                        Some(_) => {
                            state.pending.insert(doctor_id, vec![reply]);
                        }
                        None => {
                            state.pending.insert(doctor_id, vec![reply]);
                            self.start_load(&myself, doctor_id);
                        }
                    }
                }
            }
            ShardMsg::Loaded {
                doctor_id,
                fence,
                result,
            } => {
                let waiters = state.pending.remove(&doctor_id).unwrap_or_default();
                let answer = match (result, self.ctx.fence_for(doctor_id)) {
                    _ if state.stopping => {
                        Err(EngineError::Unavailable("engine is stopping".into()))
                    }
                    // The lease changed while loading: what was read may be stale.
                    (Ok(_), Ok(now)) if now != fence => Err(EngineError::NotOwner { owner: None }),
                    (Ok(_), Err(not_owner)) => Err(not_owner),
                    (Ok((calendar, snapshot_seq)), Ok(_)) => {
                        self.spawn_doctor(&myself, state, doctor_id, *calendar, snapshot_seq, fence)
                            .await
                    }
                    (Err(e), _) => Err(e),
                };
                for w in waiters {
                    let _ = w.send(answer.clone());
                }
            }
            ShardMsg::Tick => {
                let interval = Duration::from_millis(self.ctx.settings.snapshot_interval_ms);
                let snapshot_due = state.last_snapshot_round.elapsed() >= interval;
                if snapshot_due {
                    state.last_snapshot_round = Instant::now();
                }
                // Every doctor on snapshot rounds and every `idle_tick_every` ticks (for
                // pruning and passivation); in between only those that asked (a hold to
                // expire, a snapshot to queue). An idle doctor's tick costs a message.
                state.ticks = state.ticks.wrapping_add(1);
                let all = snapshot_due || state.ticks % self.ctx.settings.idle_tick_every() == 0;
                let mut sent = 0;
                for child in state.children.values() {
                    if all || child.wants_ticks() {
                        let _ = child.actor.cast(DoctorMsg::Tick { snapshot_due });
                        sent += 1;
                    }
                }
                EngineStats::add(&self.ctx.stats.doctor_ticks, sent);
            }
            ShardMsg::Shutdown { reply } => {
                self.shutdown(&myself, state).await;
                let _ = reply.send(());
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err)),
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let Some(doctor_id) = state.doctor_of.remove(&id) else {
            return Ok(());
        };
        state.children.remove(&doctor_id);
        self.ctx
            .registry
            .remove_if(&doctor_id, |_, h| h.actor.get_id() == id);
        if let Some(err) = failure {
            EngineStats::bump(&self.ctx.stats.actor_failures);
            error!(
                doctor_id,
                error = %err,
                "doctor actor failed; it restarts from the store on next use"
            );
        }
        if state.pending.contains_key(&doctor_id) && !state.stopping {
            self.start_load(&myself, doctor_id);
        }
        Ok(())
    }
}

impl ShardActor {
    /// Loads a doctor in the background (see [`load_calendar`]).
    fn start_load(&self, myself: &ActorRef<ShardMsg>, doctor_id: DoctorId) {
        let ctx = Arc::clone(&self.ctx);
        let myself = myself.clone();
        tokio::spawn(async move {
            // The lease is read before the store: a load that began under one epoch and
            // finished under another is discarded (see `Loaded`).
            let (fence, result) = match ctx.fence_for(doctor_id) {
                Ok(fence) => (
                    fence,
                    load_calendar(&ctx, doctor_id)
                        .await
                        .map(|(calendar, snapshot_seq)| (Box::new(calendar), snapshot_seq)),
                ),
                Err(e) => (None, Err(e)),
            };
            let _ = myself.cast(ShardMsg::Loaded {
                doctor_id,
                fence,
                result,
            });
        });
    }

    async fn spawn_doctor(
        &self,
        myself: &ActorRef<ShardMsg>,
        state: &mut ShardState,
        doctor_id: DoctorId,
        calendar: Calendar,
        snapshot_seq: u64,
        fence: Option<Fence>,
    ) -> Result<ActorRef<DoctorMsg>, EngineError> {
        let view = Arc::new(std::sync::RwLock::new(View::new(calendar)));
        let args = DoctorArgs {
            view: Arc::clone(&view),
            generation: self.ctx.next_generation(),
            snapshot_seq,
            fence,
        };
        let handler = DoctorActor {
            ctx: Arc::clone(&self.ctx),
        };
        let (actor, _) = Actor::spawn_linked(None, handler, args, myself.get_cell())
            .await
            .map_err(|e| EngineError::Unavailable(format!("doctor actor did not start: {e}")))?;
        let handle = DoctorHandle {
            actor: actor.clone(),
            view,
        };
        state.children.insert(doctor_id, handle.clone());
        state.doctor_of.insert(actor.get_id(), doctor_id);
        self.ctx.registry.insert(doctor_id, handle);
        EngineStats::bump(&self.ctx.stats.activations);
        Ok(actor)
    }

    /// Writes every dirty child's final snapshot, then stops the children.
    async fn shutdown(&self, myself: &ActorRef<ShardMsg>, state: &mut ShardState) {
        state.stopping = true;
        for (_, waiters) in state.pending.drain() {
            for w in waiters {
                let _ = w.send(Err(EngineError::Unavailable("engine is stopping".into())));
            }
        }
        let timeout = Duration::from_millis(self.ctx.settings.call_timeout_ms);
        // Written in batches as they come, at most a queue's worth encoded at once.
        let mut writes = tokio::task::JoinSet::new();
        for (&doctor_id, child) in &state.children {
            let Ok(fence) = self.ctx.fence_for(doctor_id) else {
                continue;
            };
            let place = self.ctx.snapshots.reserve().await;
            let snap = child
                .actor
                .call(|reply| DoctorMsg::FinalSnapshot { reply }, Some(timeout))
                .await;
            if let Ok(ractor::rpc::CallResult::Success(Some((seq, blob)))) = snap {
                let snapshots = Arc::clone(&self.ctx.snapshots);
                let snapshot = SnapshotWrite {
                    doctor_id,
                    seq,
                    blob,
                    fence,
                };
                writes.spawn(async move {
                    let result = snapshots.write(snapshot).await;
                    drop(place);
                    (doctor_id, result)
                });
            }
        }
        let mut written = 0u64;
        while let Some(done) = writes.join_next().await {
            match done {
                Ok((_, Ok(true))) => written += 1,
                Ok((doctor_id, Ok(false))) => error!(doctor_id, "final snapshot fenced"),
                Ok((doctor_id, Err(e))) => error!(doctor_id, error = %e, "final snapshot failed"),
                Err(e) => error!(error = %e, "final snapshot task failed"),
            }
        }
        EngineStats::add(&self.ctx.stats.snapshots_written, written);
        myself
            .stop_children_and_wait(Some("engine shutdown".into()), Some(timeout))
            .await;
        for (doctor_id, child) in state.children.drain() {
            let id = child.actor.get_id();
            self.ctx
                .registry
                .remove_if(&doctor_id, |_, h| h.actor.get_id() == id);
        }
        info!(final_snapshots = written, "shard stopped");
    }
}
