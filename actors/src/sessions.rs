//! The session worker: after a booking is durable, an in-app consultation (voice, video,
//! chat) gets a Vonage session and a join token for each side. It replaces the seed's
//! 10-second Redis lock with routing: one actor owns the set of consultations being worked
//! on, so however many triggers arrive for one consultation (the journal's durable hook,
//! the outbox poll, a caller asking for the session), at most one attempt runs for it, and
//! the store's "settle only while pending" makes the outcome once-only.
//!
//! The work itself (HTTP to Vonage, sealing, the store) runs in tasks; the actor only
//! routes. The durable outbox is the `sessions` row written in the booking's own
//! transaction, so a crash between booking and session leaves a pending row that the poll
//! finds after restart. Failures never touch the booking: a retryable error (429, 5xx,
//! timeout, connection) backs off exponentially with jitter, honouring `Retry-After`, up
//! to `max_attempts`; any other error, or the last attempt, settles the session `failed`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;
use tracing::{error, info, warn};

use crate::batch::Batcher;
use crate::clock::Clock;
use crate::error::{EngineError, InvalidField};
use crate::model::{ConsultMode, ConsultationId, DoctorId, PatientId, Requester, SessionStatus};
use crate::outbox::{JoinSide, SessionOutcome, SessionTask};
use crate::seal::Sealer;
use crate::stats::EngineStats;
use crate::store::Store;
use crate::vonage::{VideoRole, VonageClient, VonageError};

/// Bounds of the session worker, named with their units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Attempts per session before it is settled `failed` (retryable errors only).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Longest retry delay (a longer `Retry-After` is still honoured).
    pub backoff_max_ms: u64,
    /// How often the outbox is polled for due sessions (after a restart, after backoff).
    pub poll_interval_ms: u64,
    /// Sessions being created at once; more wait in the outbox.
    pub max_in_flight: usize,
    /// Sessions being created at once while bookings queue for the store: bookings go
    /// first, and the outbox is worked off at `max_in_flight` once the burst has passed.
    pub max_in_flight_while_busy: usize,
    /// Bookings queue for the store when a journal batch begins with more than this many
    /// records waiting; the worker counts the engine busy until [`BUSY_FOR`] after the
    /// last such batch.
    pub busy_journal_records: u64,
    /// Join tokens stay valid this long after the consultation ends.
    pub token_grace_s: u64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            backoff_base_ms: 500,
            backoff_max_ms: 60_000,
            poll_interval_ms: 1_000,
            max_in_flight: 32,
            max_in_flight_while_busy: 2,
            busy_journal_records: 8,
            token_grace_s: 3_600,
        }
    }
}

impl SessionSettings {
    pub fn validate(&self) -> Result<(), InvalidField> {
        let check = |ok: bool, field: &str, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(InvalidField::new(
                    format!("sessions.worker.{field}"),
                    reason,
                ))
            }
        };
        check(
            (1..=100).contains(&self.max_attempts),
            "max_attempts",
            "must be 1..=100",
        )?;
        check(
            (1..=60_000).contains(&self.backoff_base_ms),
            "backoff_base_ms",
            "must be 1..=60000",
        )?;
        check(
            self.backoff_max_ms >= self.backoff_base_ms && self.backoff_max_ms <= 3_600_000,
            "backoff_max_ms",
            "must be at least backoff_base_ms and at most 3600000",
        )?;
        check(
            (10..=600_000).contains(&self.poll_interval_ms),
            "poll_interval_ms",
            "must be 10..=600000",
        )?;
        check(
            (1..=4096).contains(&self.max_in_flight),
            "max_in_flight",
            "must be 1..=4096",
        )?;
        check(
            (1..=self.max_in_flight).contains(&self.max_in_flight_while_busy),
            "max_in_flight_while_busy",
            "must be at least 1 and at most max_in_flight",
        )?;
        check(
            self.busy_journal_records <= 1_000_000,
            "busy_journal_records",
            "must be at most 1000000",
        )?;
        check(
            self.token_grace_s <= 7 * 86_400,
            "token_grace_s",
            "must be at most 604800",
        )
    }

    /// Delay before attempt `attempts + 1`: exponential from the base, capped, with jitter
    /// in [half, full], and never shorter than the provider's `Retry-After`.
    pub fn backoff(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        jittered_backoff(
            self.backoff_base_ms,
            self.backoff_max_ms,
            attempts,
            retry_after,
        )
    }
}

/// Delay before retry number `attempts` (1-based): `base_ms` doubled per attempt, capped at
/// `max_ms`, with jitter in [half, full], and never shorter than `retry_after`. Shared by
/// the session worker and the notifier.
pub(crate) fn jittered_backoff(
    base_ms: u64,
    max_ms: u64,
    attempts: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base_ms
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(30))
        .min(max_ms);
    let jittered = exp / 2 + rand::random_range(0..=exp - exp / 2);
    Duration::from_millis(jittered).max(retry_after.unwrap_or_default())
}

/// What the session worker needs to make sessions.
#[derive(Clone)]
pub struct SessionConfig {
    pub client: VonageClient,
    /// Logged and stored with each session: `vonage`, or `fake` for the local fake server.
    pub provider: String,
    /// The Vonage application id, given to video clients with their token.
    pub application_id: String,
    pub sealer: Sealer,
    pub settings: SessionSettings,
}

/// A caller's way into an in-app consultation, answered by [`crate::Engine::session_join`].
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct JoinDetails {
    pub provider: String,
    pub mode: ConsultMode,
    /// Voice is a video session whose clients publish audio only.
    pub audio_only: bool,
    pub application_id: String,
    /// Video session id (voice, video).
    pub session_id: Option<String>,
    /// Conversation id (chat).
    pub conversation_id: Option<String>,
    /// The caller's Vonage user name (chat).
    pub user_name: Option<String>,
    /// `moderator` (doctor) or `publisher` (patient) for video; `member` for chat.
    pub role: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for JoinDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinDetails")
            .field("provider", &self.provider)
            .field("mode", &self.mode)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The session side of a consultation, for its patient or doctor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub consultation_id: ConsultationId,
    pub status: SessionStatus,
    /// Present when `status` is `ready`.
    pub join: Option<JoinDetails>,
}

/// What is sealed per side: the token, who it is for, and until when it is valid.
#[derive(Serialize, Deserialize)]
struct SealedJoin {
    token: String,
    role: String,
    user_name: Option<String>,
    /// Absent in joins sealed before tokens were signed on request (then the session's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
}

/// How long after the journal's last busy batch the worker keeps to
/// `max_in_flight_while_busy`: long enough to span the gaps between a burst's batches.
pub const BUSY_FOR: Duration = Duration::from_secs(1);

pub(crate) struct SessionCtx {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: SessionConfig,
    /// The outbox writes of concurrent attempts, batched (a claim and an outcome per
    /// session would otherwise be two transactions each, more than the booking's share).
    pub outbox: OutboxWrites,
    /// The engine's counters: the worker reads how many records wait for the journal.
    pub stats: Arc<EngineStats>,
}

impl SessionCtx {
    /// Starts the outbox's batch writers (on the current tokio runtime).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: SessionConfig,
        stats: Arc<EngineStats>,
    ) -> Self {
        let outbox = OutboxWrites::start(&store, &clock, config.settings.max_in_flight);
        Self {
            store,
            clock,
            config,
            outbox,
            stats,
        }
    }

    /// Attempts allowed at once now: fewer while bookings queue for the journal, since a
    /// session's CPU and store work would otherwise come out of theirs.
    fn max_in_flight(&self) -> usize {
        let s = &self.config.settings;
        if self.stats.journal_busy_within(BUSY_FOR) {
            s.max_in_flight_while_busy
        } else {
            s.max_in_flight
        }
    }
}

/// Claims and outcomes of the session outbox, each written in batches.
pub(crate) struct OutboxWrites {
    claims: Batcher<ConsultationId, Option<SessionTask>>,
    outcomes: Batcher<SessionOutcome, bool>,
}

impl OutboxWrites {
    fn start(store: &Arc<dyn Store>, clock: &Arc<dyn Clock>, max: usize) -> Self {
        let claimer = Arc::clone(store);
        let claims = Batcher::start(max, move |ids: Vec<ConsultationId>| {
            let store = Arc::clone(&claimer);
            async move {
                let mut claimed: HashMap<ConsultationId, SessionTask> = store
                    .pending_sessions(&ids)
                    .await?
                    .into_iter()
                    .map(|task| (task.consultation_id, task))
                    .collect();
                Ok(ids.iter().map(|id| claimed.remove(id)).collect())
            }
        });
        let (settler, clock) = (Arc::clone(store), Arc::clone(clock));
        let outcomes = Batcher::start(max, move |outcomes: Vec<SessionOutcome>| {
            let (store, now) = (Arc::clone(&settler), clock.now());
            async move { store.settle_sessions(&outcomes, now).await }
        });
        Self { claims, outcomes }
    }
}

pub(crate) enum SessionMsg {
    /// Make sure this consultation's pending session is being worked on.
    Ensure(ConsultationId),
    /// A side asked for this consultation's pending session: like `Ensure`, at the full
    /// `max_in_flight` even while bookings queue, so whoever waits to join is not queued
    /// behind a burst's sessions.
    Asked(ConsultationId),
    /// A backoff elapsed: the consultation may be tried again.
    Retry(ConsultationId),
    /// Look for due sessions in the outbox.
    Poll,
    /// A poll finished (it may start another); `full` when it found as many due sessions
    /// as it had room for, so more may be waiting.
    Polled { full: bool },
    /// An attempt ended; `retry_in` when it should be tried again.
    Finished {
        consultation_id: ConsultationId,
        retry_in: Option<Duration>,
    },
    /// Abort the attempts in flight (they stay pending in the outbox) and stop.
    Shutdown(RpcReplyPort<()>),
}

pub(crate) struct SessionWorker {
    pub ctx: Arc<SessionCtx>,
}

impl SessionWorker {
    /// Starts an attempt for `id` unless one is running or backing off, or `limit`
    /// attempts are in flight: then it stays in the outbox and the poll brings it back.
    fn start(
        &self,
        myself: &ActorRef<SessionMsg>,
        state: &mut WorkerState,
        id: ConsultationId,
        limit: usize,
    ) {
        let full = state.in_flight.len() >= limit;
        state.backlog |= full;
        if state.stopping
            || full
            || state.in_flight.contains_key(&id)
            || state.backing_off.contains(&id)
        {
            return;
        }
        let ctx = Arc::clone(&self.ctx);
        let me = myself.clone();
        let task = tokio::spawn(async move {
            let retry_in = attempt(&ctx, id).await;
            let _ = me.cast(SessionMsg::Finished {
                consultation_id: id,
                retry_in,
            });
        });
        state.in_flight.insert(id, task.abort_handle());
    }
}

pub(crate) struct WorkerState {
    in_flight: HashMap<ConsultationId, AbortHandle>,
    backing_off: HashSet<ConsultationId>,
    polling: bool,
    /// Due sessions may be waiting in the outbox beyond what the worker had room for (an
    /// `Ensure` turned away while full, or a full poll): the next finished attempt polls at
    /// once instead of at the next tick, so a backlog drains at the worker's pace.
    backlog: bool,
    ticker: Option<ractor::concurrency::JoinHandle<()>>,
    stopping: bool,
}

impl Actor for SessionWorker {
    type Msg = SessionMsg;
    type State = WorkerState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let every = Duration::from_millis(self.ctx.config.settings.poll_interval_ms);
        // Recovery: sessions left pending by a crash are due now.
        let _ = myself.cast(SessionMsg::Poll);
        Ok(WorkerState {
            in_flight: HashMap::new(),
            backing_off: HashSet::new(),
            polling: false,
            backlog: false,
            ticker: Some(myself.send_interval(every, || SessionMsg::Poll)),
            stopping: false,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.ticker.take() {
            t.abort();
        }
        for (_, task) in state.in_flight.drain() {
            task.abort();
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
            SessionMsg::Ensure(id) => self.start(&myself, state, id, self.ctx.max_in_flight()),
            SessionMsg::Asked(id) => {
                let limit = self.ctx.config.settings.max_in_flight;
                self.start(&myself, state, id, limit);
            }
            SessionMsg::Retry(id) => {
                state.backing_off.remove(&id);
                let _ = myself.cast(SessionMsg::Ensure(id));
            }
            SessionMsg::Poll => {
                let room = self
                    .ctx
                    .max_in_flight()
                    .saturating_sub(state.in_flight.len());
                if !state.stopping && !state.polling && room > 0 {
                    state.polling = true;
                    state.backlog = false;
                    let ctx = Arc::clone(&self.ctx);
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let mut full = false;
                        match ctx.store.due_sessions(ctx.clock.now(), room as u32).await {
                            Ok(due) => {
                                full = due.len() >= room;
                                for task in due {
                                    let _ = me.cast(SessionMsg::Ensure(task.consultation_id));
                                }
                            }
                            Err(e) => warn!(error = %e, "session outbox poll failed"),
                        }
                        let _ = me.cast(SessionMsg::Polled { full });
                    });
                }
            }
            SessionMsg::Polled { full } => {
                state.polling = false;
                state.backlog |= full;
            }
            SessionMsg::Finished {
                consultation_id,
                retry_in,
            } => {
                state.in_flight.remove(&consultation_id);
                if state.backlog && !state.polling {
                    let _ = myself.cast(SessionMsg::Poll);
                }
                if let Some(delay) = retry_in {
                    if !state.stopping {
                        state.backing_off.insert(consultation_id);
                        myself.send_after(delay, move || SessionMsg::Retry(consultation_id));
                    }
                }
            }
            SessionMsg::Shutdown(reply) => {
                state.stopping = true;
                for (_, task) in state.in_flight.drain() {
                    task.abort();
                }
                let _ = reply.send(());
                myself.stop(None);
            }
        }
        Ok(())
    }
}

/// The handle the engine keeps.
pub(crate) struct SessionHandle {
    pub ctx: Arc<SessionCtx>,
    pub actor: ActorRef<SessionMsg>,
    join: std::sync::Mutex<Option<ractor::concurrency::JoinHandle<()>>>,
}

impl SessionHandle {
    pub async fn start(ctx: SessionCtx) -> Result<Self, EngineError> {
        ctx.config.settings.validate()?;
        let ctx = Arc::new(ctx);
        let (actor, join) = Actor::spawn(
            None,
            SessionWorker {
                ctx: Arc::clone(&ctx),
            },
            (),
        )
        .await
        .map_err(|e| EngineError::Unavailable(format!("session worker did not start: {e}")))?;
        info!(
            provider = %ctx.config.provider,
            "session worker started"
        );
        Ok(Self {
            ctx,
            actor,
            join: std::sync::Mutex::new(Some(join)),
        })
    }

    pub fn ensure(&self, id: ConsultationId) {
        let _ = self.actor.cast(SessionMsg::Ensure(id));
    }

    /// Aborts attempts in flight (they stay pending in the outbox) and stops the worker.
    pub async fn shutdown(&self) {
        let _ = self
            .actor
            .call(SessionMsg::Shutdown, Some(Duration::from_secs(5)))
            .await;
        let join = self.join.lock().expect("join lock").take();
        if let Some(join) = join {
            let _ = join.await;
        }
    }

    /// The requester's join details, if the session is ready. The join token is signed on
    /// the side's first request (locally, no call to Vonage) and kept sealed; one past its
    /// expiry, or signed for the consultation's time before a reschedule, is signed afresh.
    pub async fn view(
        &self,
        id: ConsultationId,
        requester: Requester,
    ) -> Result<SessionView, EngineError> {
        let ctx = &self.ctx;
        let consultation = ctx
            .store
            .get_consultation(id)
            .await?
            .ok_or(EngineError::ConsultationNotFound(id))?;
        let side = match requester {
            Requester::Patient(p) if p == consultation.patient_id => JoinSide::Patient,
            Requester::Doctor(d) if d == consultation.doctor_id => JoinSide::Doctor,
            _ => return Err(EngineError::Forbidden),
        };
        let pending = SessionView {
            consultation_id: id,
            status: consultation.session_status,
            join: None,
        };
        let Some(record) = ctx.store.session(id).await? else {
            return Ok(pending);
        };
        match record.status {
            SessionStatus::Pending => {
                let _ = self.actor.cast(SessionMsg::Asked(id));
                return Ok(SessionView {
                    status: SessionStatus::Pending,
                    ..pending
                });
            }
            SessionStatus::Ready => {}
            status => return Ok(SessionView { status, ..pending }),
        }
        let sealed = match side {
            JoinSide::Doctor => record.doctor_join,
            JoinSide::Patient => record.patient_join,
        };
        let Some(provider_id) = record.provider_session_id else {
            return Err(EngineError::Storage(format!(
                "session of consultation {id} is ready without a provider session"
            )));
        };
        let mode = consultation.consultation_mode;
        let now = ctx.clock.now();
        let end = consultation_end(&consultation);
        let stored = match sealed {
            Some(sealed) => Some(self.open(id, &sealed, record.expires_at)?),
            None => None,
        };
        let (join, expires_at) = match stored {
            Some((join, expires_at))
                if stored_token_fits(&ctx.config.settings, expires_at, &end, now) =>
            {
                (join, expires_at)
            }
            _ => self.mint(&consultation, side, &provider_id, now).await?,
        };
        let chat = mode == ConsultMode::Chat;
        Ok(SessionView {
            consultation_id: id,
            status: SessionStatus::Ready,
            join: Some(JoinDetails {
                provider: record.provider.unwrap_or_default(),
                mode,
                audio_only: mode == ConsultMode::Voice,
                application_id: ctx.config.application_id.clone(),
                session_id: (!chat).then(|| provider_id.clone()),
                conversation_id: chat.then_some(provider_id),
                user_name: join.user_name,
                role: join.role,
                token: join.token,
                expires_at,
            }),
        })
    }

    /// Opens a sealed join: the join and its token's expiry. Joins sealed before tokens
    /// carried their own expiry take the session's.
    fn open(
        &self,
        id: ConsultationId,
        sealed: &[u8],
        session_expiry: Option<DateTime<Utc>>,
    ) -> Result<(SealedJoin, DateTime<Utc>), EngineError> {
        let corrupt =
            |why: &str| EngineError::Storage(format!("session of consultation {id}: {why}"));
        let opened = self
            .ctx
            .config
            .sealer
            .open(sealed)
            .map_err(|e| corrupt(&e.to_string()))?;
        let join: SealedJoin =
            serde_json::from_slice(&opened).map_err(|_| corrupt("join details do not parse"))?;
        let expires_at = join
            .expires_at
            .or(session_expiry)
            .ok_or_else(|| corrupt("join details without an expiry"))?;
        Ok((join, expires_at))
    }

    /// Signs a join token for one side (locally, no call to Vonage), valid for the
    /// consultation's window, and keeps it sealed in the store so the next request gets
    /// the same one. A token that could not be kept is still valid: it is answered, and the
    /// next request signs another.
    async fn mint(
        &self,
        consultation: &crate::model::Consultation,
        side: JoinSide,
        provider_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(SealedJoin, DateTime<Utc>), EngineError> {
        let ctx = &self.ctx;
        let expires_at = token_expiry(&ctx.config.settings, &consultation_end(consultation), now);
        let client = &ctx.config.client;
        let (token, role, user_name) = match consultation.consultation_mode {
            ConsultMode::Chat => {
                let user = chat_user(side, consultation.doctor_id, consultation.patient_id);
                let token = client.chat_token(&user, expires_at);
                (token, "member".to_owned(), Some(user))
            }
            _ => {
                let role = video_role(side);
                let token = client.video_token(provider_id, role, expires_at);
                (token, role.as_str().to_owned(), None)
            }
        };
        let join = SealedJoin {
            token: token.map_err(|e| EngineError::Unavailable(format!("token: {e}")))?,
            role,
            user_name,
            expires_at: Some(expires_at),
        };
        let sealed = ctx
            .config
            .sealer
            .seal(&serde_json::to_vec(&join).expect("join details serialize"));
        if let Err(e) = ctx.store.save_join(consultation.id, side, &sealed).await {
            warn!(consultation_id = consultation.id, error = %e, "join token not kept; answered");
        }
        Ok((join, expires_at))
    }
}

fn video_role(side: JoinSide) -> VideoRole {
    match side {
        JoinSide::Doctor => VideoRole::Moderator,
        JoinSide::Patient => VideoRole::Publisher,
    }
}

/// The Vonage user of one side of a chat consultation (made by [`provision`]).
fn chat_user(side: JoinSide, doctor: DoctorId, patient: PatientId) -> String {
    match side {
        JoinSide::Doctor => format!("doctor-{doctor}"),
        JoinSide::Patient => format!("patient-{patient}"),
    }
}

fn consultation_end(c: &crate::model::Consultation) -> DateTime<Utc> {
    c.scheduled_at + chrono::Duration::minutes(i64::from(c.duration_minutes))
}

/// Tokens last until the consultation ends plus the grace, but Vonage accepts at most 30
/// days; a token that expires before the consultation is re-minted when asked for.
fn token_expiry(
    settings: &SessionSettings,
    end: &DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let wanted = *end + chrono::Duration::seconds(settings.token_grace_s as i64);
    let longest = now + chrono::Duration::days(30);
    wanted.min(longest).max(now + chrono::Duration::minutes(5))
}

/// Whether a stored join token can be handed out as it is to a consultation ending at
/// `end`: it has not expired, and it was minted for this end. A reschedule keeps the session
/// but moves the end, so a token minted for the old time is made afresh (locally, no call to
/// Vonage) when it would expire before the consultation is over and a new one could last
/// that long, or when it would outlive the consultation.
fn stored_token_fits(
    settings: &SessionSettings,
    expires_at: DateTime<Utc>,
    end: &DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    let intended = *end + chrono::Duration::seconds(settings.token_grace_s as i64);
    let too_short = expires_at < intended && intended <= now + chrono::Duration::days(30);
    let too_long = expires_at > intended && expires_at > now + chrono::Duration::minutes(5);
    expires_at > now && !too_short && !too_long
}

/// One attempt for one consultation; `Some(delay)` when it should be tried again.
async fn attempt(ctx: &SessionCtx, id: ConsultationId) -> Option<Duration> {
    let settings = &ctx.config.settings;
    let retry_later = Duration::from_millis(settings.poll_interval_ms);
    let task = match ctx.outbox.claims.run(id).await {
        Ok(Some(task)) => task,
        // Settled already (or never needed one): nothing to do.
        Ok(None) => return None,
        Err(e) => {
            warn!(consultation_id = id, error = %e, "session outbox read failed");
            return Some(retry_later);
        }
    };
    let outcome = if !task.consultation_status.is_active() {
        SessionOutcome::NotRequired {
            consultation_id: id,
        }
    } else {
        match provision(ctx, &task).await {
            Ok(ready) => ready,
            Err(e) => {
                let attempts = task.attempts + 1;
                if e.is_retryable() && attempts < settings.max_attempts {
                    let delay = settings.backoff(attempts, e.retry_after());
                    let next = ctx.clock.now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                    warn!(
                        event_type = "session_attempt_failed",
                        consultation_id = id,
                        attempts,
                        retry_in_ms = delay.as_millis() as u64,
                        error = %e,
                        "session attempt failed; retrying"
                    );
                    if let Err(se) = ctx
                        .store
                        .retry_session(id, attempts, next, &e.to_string())
                        .await
                    {
                        warn!(consultation_id = id, error = %se, "session retry not recorded");
                    }
                    return Some(delay);
                }
                error!(
                    event_type = "session_creation_failed_booking",
                    consultation_id = id,
                    consultation_reference = %task.reference,
                    doctor_id = task.doctor_id,
                    patient_id = task.patient_id,
                    scheduled_at = %task.scheduled_at.to_rfc3339(),
                    consultation_mode = task.mode.as_str(),
                    attempts,
                    error = %e,
                    "session could not be created; the booking stands"
                );
                SessionOutcome::Failed {
                    consultation_id: id,
                    error: e.to_string(),
                }
            }
        }
    };
    let status = outcome.status();
    match ctx.outbox.outcomes.run(outcome).await {
        Ok(settled) => {
            if settled && status == SessionStatus::Ready {
                info!(
                    event_type = "session_ready",
                    consultation_id = id,
                    consultation_reference = %task.reference,
                    doctor_id = task.doctor_id,
                    patient_id = task.patient_id,
                    consultation_mode = task.mode.as_str(),
                    provider = %ctx.config.provider,
                    attempts = task.attempts + 1,
                    "session ready"
                );
            }
            None
        }
        Err(e) => {
            warn!(consultation_id = id, error = %e, "session outcome not stored; retrying");
            Some(retry_later)
        }
    }
}

/// Creates the provider side of a session (a video session; or a conversation with both
/// sides as members). Join tokens are signed later, when each side asks (see `view`): most
/// bookings never need one before the day, and signing is the costly part.
async fn provision(ctx: &SessionCtx, task: &SessionTask) -> Result<SessionOutcome, VonageError> {
    let config = &ctx.config;
    let client = &config.client;
    let now = ctx.clock.now();
    let end = task.scheduled_at + chrono::Duration::minutes(i64::from(task.duration_minutes));
    let expires_at = token_expiry(&config.settings, &end, now);
    let provider_session_id = match task.mode {
        ConsultMode::Voice | ConsultMode::Video => client.create_video_session().await?,
        ConsultMode::Chat => {
            // Unique per consultation: a retry after a lost answer finds the same one.
            let name = format!("consultation-{}", task.consultation_id);
            let ttl_s = (end - now).num_seconds().max(0) as u64 + config.settings.token_grace_s;
            let conversation = client
                .create_conversation(&name, &task.reference, ttl_s)
                .await?;
            for (side, display) in [
                (JoinSide::Doctor, format!("Doctor {}", task.doctor_id)),
                (JoinSide::Patient, format!("Patient {}", task.patient_id)),
            ] {
                let user = chat_user(side, task.doctor_id, task.patient_id);
                client.create_user(&user, &display).await?;
                client.add_member(&conversation, &user).await?;
            }
            conversation
        }
        ConsultMode::Whatsapp => {
            return Ok(SessionOutcome::NotRequired {
                consultation_id: task.consultation_id,
            })
        }
    };
    Ok(SessionOutcome::Ready {
        consultation_id: task.consultation_id,
        provider: config.provider.clone(),
        provider_session_id,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_jitters_and_honours_retry_after() {
        let s = SessionSettings {
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            ..Default::default()
        };
        for _ in 0..100 {
            let first = s.backoff(1, None).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = s.backoff(3, None).as_millis();
            assert!((200..=400).contains(&third), "{third}");
            let capped = s.backoff(20, None).as_millis();
            assert!((500..=1_000).contains(&capped), "{capped}");
        }
        assert_eq!(
            s.backoff(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn a_stored_token_is_reused_only_while_it_fits_the_consultations_current_end() {
        let s = SessionSettings::default();
        let now = Utc::now();
        let end = now + chrono::Duration::hours(2);
        let minted = token_expiry(&s, &end, now);
        assert!(stored_token_fits(&s, minted, &end, now));
        assert!(stored_token_fits(
            &s,
            minted,
            &end,
            now + chrono::Duration::hours(1)
        ));
        // Expired.
        assert!(!stored_token_fits(&s, minted, &end, minted));
        // Rescheduled a day later: the old token would end mid-consultation.
        let later = end + chrono::Duration::days(1);
        assert!(!stored_token_fits(&s, minted, &later, now));
        let fresh = token_expiry(&s, &later, now);
        assert!(stored_token_fits(&s, fresh, &later, now));
        // Rescheduled an hour earlier: the old token would outlive it.
        let earlier = end - chrono::Duration::hours(1);
        assert!(!stored_token_fits(&s, minted, &earlier, now));
        // Capped at 30 days: good until it expires while no token could last longer.
        let far = now + chrono::Duration::days(90);
        let capped = token_expiry(&s, &far, now);
        assert!(stored_token_fits(
            &s,
            capped,
            &far,
            now + chrono::Duration::days(10)
        ));
        // The 5-minute floor for a consultation about to end is not "too long".
        let ending = now + chrono::Duration::seconds(10);
        let s_short = SessionSettings {
            token_grace_s: 0,
            ..SessionSettings::default()
        };
        let floor = token_expiry(&s_short, &ending, now);
        assert_eq!(floor, now + chrono::Duration::minutes(5));
        assert!(stored_token_fits(&s_short, floor, &ending, now));
    }

    #[test]
    fn tokens_expire_after_the_consultation_but_within_thirty_days() {
        let s = SessionSettings::default();
        let now = Utc::now();
        let soon = now + chrono::Duration::hours(2);
        assert_eq!(
            token_expiry(&s, &soon, now),
            soon + chrono::Duration::hours(1)
        );
        let far = now + chrono::Duration::days(90);
        assert_eq!(
            token_expiry(&s, &far, now),
            now + chrono::Duration::days(30)
        );
    }
}
