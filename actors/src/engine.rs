//! The [`Engine`] handle: the public API for embedding, and what the HTTP front end calls.
//! It routes each doctor command to that doctor's actor (through a `DashMap` registry, or
//! the doctor's shard on first use), bounds admission per shard, and puts a timeout on
//! every call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use dashmap::DashMap;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, ActorStatus, RpcReplyPort};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::info;

use crate::calendar::{
    slot_events, validate_slot_minutes, ActedBy, Availability, Calendar, DoctorEvent, Hold,
    JournalRecord, Placement, SlotHistory, SLOT_HISTORY_MAX_EVENTS, SLOT_HISTORY_SCAN_EVENTS,
};
use crate::clock::{Clock, SystemClock};
use crate::cluster::shard_index;
use crate::cluster::{Cluster, ClusterSettings, Route, ShardHost};
use crate::context::EngineContext;
use crate::doctor::{
    log_check, DoctorMsg, DoctorSnapshot, EncodedAvailability, PrepareItem, SlotCheck, Verdict,
    View,
};
use crate::error::{EngineError, InvalidField};
use crate::feed::{Feeds, Position, Subscription};
use crate::journal::{self, DurableHook, JournalConfig};
use crate::known_keys::KnownKeys;
use crate::model::{has_control_chars, TextKind, CONTROL_CHARS_REASON};
use crate::model::{
    BookingItem, BookingMember, BookingRequest, Consultation, ConsultationId, ConsultationStatus,
    DoctorId, DoctorProfile, IdempotencyClaim, MultiBooking, MultiBookingRequest, NewDoctor,
    PatientId, Requester, ScheduleUpdate, StatusUpdate, StoredIdempotency, MAX_BOOKING_ITEMS,
    MAX_PATIENT_NAME_CHARS, MAX_RELATION_CHARS, MAX_SLOT_MINUTES,
};
use crate::notifier::{NotifierHandle, WebhookSettings};
use crate::outbox::{InboxQuery, Notification, Recipient};
use crate::sessions::{SessionConfig, SessionCtx, SessionHandle, SessionView};
use crate::settings::EngineSettings;
use crate::shard::{ShardActor, ShardMsg};
use crate::snapshots::SnapshotWriter;
use crate::stats::{EngineStats, StatsSnapshot};
use crate::store::Store;

/// How often one call re-routes when the doctor's actor stopped before answering (it was
/// passivating or failed; the message had no effect, so a retry is safe).
const MAX_ROUTE_ATTEMPTS: usize = 4;
/// Longest doctor name or specialty, in bytes.
const MAX_NAME_BYTES: usize = 200;
/// Most consultations one listing returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

struct Shard {
    actor: ActorRef<ShardMsg>,
    /// Admission: one permit per request in flight.
    permits: Arc<Semaphore>,
}

struct EngineInner {
    ctx: Arc<EngineContext>,
    shards: Vec<Shard>,
    sessions: Option<Arc<SessionHandle>>,
    notifier: Option<Arc<NotifierHandle>>,
    closing: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The idempotency-key purge loop; aborted at shutdown (a purge cut short loses
    /// nothing: the next round deletes what is left).
    purger: JoinHandle<()>,
    /// Which idempotency keys the store may hold (the others need no look-up).
    known_keys: Arc<KnownKeys>,
}

/// Dropping the last handle without [`Engine::shutdown`] stops the shards and their doctor
/// actors, so the engine's tasks end and release the store; records already queued are
/// still written (the writers drain their queues before exiting). Acknowledged bookings are
/// durable either way; `shutdown` additionally writes final snapshots.
impl Drop for EngineInner {
    fn drop(&mut self) {
        self.purger.abort();
        if self.closing.load(Ordering::SeqCst) {
            return;
        }
        for shard in &self.shards {
            shard.actor.stop_children(Some("engine dropped".into()));
            shard.actor.stop(Some("engine dropped".into()));
        }
    }
}

/// The scheduling engine. Cheap to clone; all clones drive the same engine.
///
/// ```
/// # use std::sync::Arc;
/// # use chrono::{Duration, Utc, Datelike, Weekday};
/// # use consult_actors::{calendar::{LocalTime, WeeklySchedule, DayWindow}, *};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), EngineError> {
/// # let store: Arc<dyn Store> = Arc::new(consult_actors::memory::MemoryStore::default());
/// // `store` is any `Store`: consult_persistence::open_store("sqlite://data/cs.db") in practice.
/// let engine = Engine::start(EngineSettings::default(), store).await?;
/// let doctor = engine
///     .create_doctor(NewDoctor {
///         name: "Dr. Ada Okafor".into(),
///         specialty: "General practice".into(),
///         timezone: chrono_tz::Europe::London,
///         slot_minutes: 30,
///         schedule: WeeklySchedule::every_day(DayWindow::open(LocalTime::hm(0, 0), LocalTime::END_OF_DAY)),
///         is_available: true,
///         is_approved: true,
///     })
///     .await?;
/// let tomorrow = (Utc::now() + Duration::days(1)).date_naive();
/// let at = tomorrow.and_hms_opt(10, 0, 0).unwrap().and_local_timezone(chrono_tz::Europe::London).unwrap().to_utc();
/// let booking = BookingRequest {
///     doctor_id: doctor.id,
///     patient_id: 67,
///     scheduled_at: at,
///     mode: ConsultMode::Video,
///     medical: MedicalInfo::default(),
/// };
/// let consultation = engine.book(booking.clone()).await?; // durable when this returns
/// assert!(consultation.reference.starts_with("CONS-"));
/// // The same slot again: the seed's conflict.
/// let again = engine.book(BookingRequest { patient_id: 68, ..booking }).await;
/// assert_eq!(again.unwrap_err(), EngineError::Rejected(Rejection::Conflict));
/// engine.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

/// Sets up an [`Engine`]; [`Engine::start`] is the short form.
pub struct EngineBuilder {
    store: Arc<dyn Store>,
    settings: EngineSettings,
    clock: Arc<dyn Clock>,
    sessions: Option<SessionConfig>,
    webhooks: Option<WebhookSettings>,
    cluster: Option<ClusterSettings>,
}

impl EngineBuilder {
    /// Shares the store with other instances: this one serves the doctors of the lease
    /// shards it holds and answers `NotOwner` for the others. Needs a store with a
    /// cluster (Postgres); ignored with a warning otherwise (a single-instance store).
    pub fn cluster(mut self, settings: ClusterSettings) -> Self {
        self.cluster = Some(settings);
        self
    }

    pub fn settings(mut self, settings: EngineSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Replaces the wall clock (tests use [`crate::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Starts the session worker: in-app bookings get a Vonage session once durable.
    /// Without it, their sessions stay `pending` in the outbox (for a later worker).
    pub fn sessions(mut self, config: SessionConfig) -> Self {
        self.sessions = Some(config);
        self
    }

    /// Starts the notifier, which delivers notifications to webhook URLs. Without URLs (or
    /// without this call) notifications are kept for the inbox only and never queued for
    /// webhooks (see [`Store::queue_webhooks`]).
    pub fn webhooks(mut self, settings: WebhookSettings) -> Self {
        self.webhooks = Some(settings);
        self
    }

    /// Validates the settings, reads where consultation ids continue, and starts the
    /// journal writer and the shard supervisors (and the session worker and notifier when
    /// configured). Doctors activate lazily.
    pub async fn start(self) -> Result<Engine, EngineError> {
        let settings = self.settings;
        settings.validate()?;
        // Before anything writes a notification (the session worker may settle at once).
        self.store
            .queue_webhooks(matches!(&self.webhooks, Some(w) if !w.webhook_urls.is_empty()));
        let stats = Arc::new(EngineStats::default());
        let busy_above = self
            .sessions
            .as_ref()
            .map_or(u64::MAX, |s| s.settings.busy_journal_records);
        let sessions = match self.sessions {
            Some(config) => Some(Arc::new(
                SessionHandle::start(SessionCtx::new(
                    Arc::clone(&self.store),
                    Arc::clone(&self.clock),
                    config,
                    Arc::clone(&stats),
                ))
                .await?,
            )),
            None => None,
        };
        let notifier = match self.webhooks {
            Some(w) if !w.webhook_urls.is_empty() => Some(Arc::new(NotifierHandle::start(
                Arc::clone(&self.store),
                Arc::clone(&self.clock),
                w,
            )?)),
            Some(w) => {
                w.validate()?;
                None
            }
            None => None,
        };
        let on_durable: Option<DurableHook> = if sessions.is_some() || notifier.is_some() {
            let sessions = sessions.clone();
            let notifier = notifier.clone();
            Some(Arc::new(move |records: &[JournalRecord]| {
                if let Some(s) = &sessions {
                    for r in records {
                        if let DoctorEvent::Booked { slot } = &r.event {
                            if slot.mode.needs_session() {
                                s.ensure(slot.id);
                            }
                        }
                    }
                }
                if let Some(n) = &notifier {
                    n.wake();
                }
            }))
        } else {
            None
        };
        let cluster = match (self.cluster, self.store.cluster()) {
            (Some(settings), Some(store)) => Some(Cluster::join(store, settings).await?),
            (Some(_), None) => {
                tracing::warn!("cluster settings ignored: this store serves one instance");
                None
            }
            (None, _) => None,
        };
        let next_id = self.store.max_consultation_id().await? + 1;
        let known_keys = Arc::new(if cluster.is_some() {
            KnownKeys::shared()
        } else {
            KnownKeys::load(self.store.as_ref(), self.clock.now()).await?
        });
        let writers = match settings.journal_writers {
            0 => self.store.preferred_append_concurrency().clamp(1, 64),
            n => n,
        };
        let (journal, writer_tasks) = journal::spawn(
            Arc::clone(&self.store),
            JournalConfig {
                on_durable,
                writers,
                max_batch: settings.journal_max_batch,
                flush_interval: Duration::from_millis(settings.journal_flush_interval_ms),
                queue_capacity: settings.journal_queue_capacity,
                cluster: cluster.clone(),
                busy_above,
            },
            Arc::clone(&stats),
        );
        let purger = tokio::spawn(purge_idempotency_keys(
            Arc::clone(&self.store),
            Arc::clone(&known_keys),
            Arc::clone(&self.clock),
            Duration::from_millis(settings.idempotency_purge_interval_ms),
            settings.idempotency_purge_batch_rows,
        ));
        let snapshots = Arc::new(SnapshotWriter::start(
            &self.store,
            settings.max_concurrent_snapshot_writes,
            &stats,
        ));
        let ctx = Arc::new(EngineContext {
            store: self.store,
            journal,
            clock: self.clock,
            rules: settings.rules(),
            stats,
            registry: DashMap::new(),
            snapshots,
            feeds: Feeds::new(settings.feed_limits()),
            cluster,
            next_consultation_id: AtomicI64::new(next_id),
            next_generation: AtomicU64::new(1),
            settings,
        });
        let mut tasks = writer_tasks;
        let mut shards = Vec::with_capacity(ctx.settings.shards);
        for _ in 0..ctx.settings.shards {
            let handler = ShardActor {
                ctx: Arc::clone(&ctx),
            };
            let (actor, join) = Actor::spawn(None, handler, ())
                .await
                .map_err(|e| EngineError::Unavailable(format!("shard did not start: {e}")))?;
            tasks.push(join);
            shards.push(Shard {
                actor,
                permits: Arc::new(Semaphore::new(ctx.settings.max_in_flight_per_shard)),
            });
        }
        if let Some(cluster) = &ctx.cluster {
            let host: Arc<dyn ShardHost> = ctx.clone();
            cluster.set_host(Arc::downgrade(&host));
            tasks.push(cluster.start_rounds().await);
        }
        info!(
            shards = ctx.settings.shards,
            journal_writers = writers,
            next_consultation_id = next_id,
            "engine started"
        );
        Ok(Engine {
            inner: Arc::new(EngineInner {
                ctx,
                shards,
                sessions,
                notifier,
                closing: AtomicBool::new(false),
                tasks: Mutex::new(tasks),
                purger,
                known_keys,
            }),
        })
    }
}

/// Most purge statements in one round, so a huge backlog is worked off over several
/// rounds instead of one long burst against the journal's database.
const MAX_PURGE_STATEMENTS_PER_ROUND: u32 = 100;

/// Every `interval`, deletes expired idempotency keys, `batch_rows` per statement, until
/// fewer than that are left (or the round's bound). A failure is logged and retried next
/// round: expired keys are already treated as unknown, purging only frees space.
async fn purge_idempotency_keys(
    store: Arc<dyn Store>,
    known: Arc<KnownKeys>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    batch_rows: u32,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        known.purge(clock.now());
        let mut purged = 0_u64;
        for _ in 0..MAX_PURGE_STATEMENTS_PER_ROUND {
            match store.purge_idempotency(clock.now(), batch_rows).await {
                Ok(n) => {
                    purged += n;
                    if n < u64::from(batch_rows) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "idempotency key purge failed; retried next round");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::debug!(purged, "expired idempotency keys purged");
        }
    }
}

type Reply<T> = RpcReplyPort<Result<T, EngineError>>;

impl Engine {
    pub fn builder(store: Arc<dyn Store>) -> EngineBuilder {
        EngineBuilder {
            store,
            settings: EngineSettings::default(),
            clock: Arc::new(SystemClock),
            sessions: None,
            webhooks: None,
            cluster: None,
        }
    }

    /// Starts an engine on `store` with the wall clock.
    pub async fn start(
        settings: EngineSettings,
        store: Arc<dyn Store>,
    ) -> Result<Engine, EngineError> {
        Self::builder(store).settings(settings).start().await
    }

    fn ctx(&self) -> &EngineContext {
        &self.inner.ctx
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.ctx().settings
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.ctx().store
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.ctx().clock.now()
    }

    /// The engine's counters, and how many doctor actors are active.
    pub fn stats(&self) -> StatsSnapshot {
        self.ctx().stats.snapshot(self.ctx().registry.len() as u64)
    }

    /// Registers a doctor (admin). Written straight to the store; the actor activates on
    /// the doctor's first use.
    pub async fn create_doctor(&self, doctor: NewDoctor) -> Result<DoctorProfile, EngineError> {
        self.ensure_open()?;
        let name = doctor.name.trim();
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(InvalidField::new("name", "must be 1 to 200 bytes").into());
        }
        if doctor.specialty.len() > MAX_NAME_BYTES {
            return Err(InvalidField::new("specialty", "must be at most 200 bytes").into());
        }
        for (field, text) in [("name", name), ("specialty", doctor.specialty.as_str())] {
            if has_control_chars(text, TextKind::Line) {
                return Err(InvalidField::new(field, CONTROL_CHARS_REASON).into());
            }
        }
        validate_slot_minutes(doctor.slot_minutes)?;
        doctor.schedule.validate(doctor.slot_minutes)?;
        let doctor = NewDoctor {
            name: name.to_owned(),
            ..doctor
        };
        Ok(self.ctx().store.create_doctor(&doctor, self.now()).await?)
    }

    /// The doctor's current profile, from its actor.
    pub async fn doctor(&self, doctor_id: DoctorId) -> Result<DoctorProfile, EngineError> {
        self.call(doctor_id, |reply| DoctorMsg::Profile { reply })
            .await
    }

    /// Subscribes to the doctor's live slot changes (for the availability stream), resuming
    /// after `last` if given; `Overloaded` past the subscriber bounds, `DoctorNotFound` for
    /// an unknown doctor. Changes carry no patient and no medical text.
    pub async fn subscribe(
        &self,
        doctor_id: DoctorId,
        last: Option<Position>,
    ) -> Result<Subscription, EngineError> {
        // Activates the doctor (and checks it exists), so its view holds its sequence.
        self.doctor(doctor_id).await?;
        let seq = self.read_view(doctor_id, |c| c.seq()).unwrap_or(0);
        self.ctx().feeds.subscribe(doctor_id, seq, last)
    }

    /// Live availability streams open now, across every doctor.
    pub fn stream_subscribers(&self) -> usize {
        self.ctx().feeds.subscribers()
    }

    /// Every registered doctor, from the store.
    pub async fn list_doctors(&self) -> Result<Vec<DoctorProfile>, EngineError> {
        Ok(self.ctx().store.list_doctors().await?)
    }

    /// The doctor's slots for `days` local dates from `from` (1 ..= `max_availability_days`).
    pub async fn availability(
        &self,
        doctor_id: DoctorId,
        from: NaiveDate,
        days: u16,
    ) -> Result<Availability, EngineError> {
        self.check_days(days)?;
        self.ensure_open()?;
        // Like a plain check: from the published view only when everything the actor
        // decided is durable, else through the actor, which answers once it is (a slot
        // shown booked by a write that then fails would rest on undurable state).
        if let Some(a) = self.read_quiet_view(doctor_id, |cal| {
            cal.availability(from, days, self.now(), &self.ctx().rules)
        }) {
            return Ok(a);
        }
        self.call(doctor_id, |reply| DoctorMsg::Availability {
            from,
            days,
            reply,
        })
        .await
    }

    /// Refuses an availability range outside 1 ..= `max_availability_days`.
    fn check_days(&self, days: u16) -> Result<(), EngineError> {
        let max = self.settings().max_availability_days;
        if days == 0 || days > max {
            return Err(InvalidField::new("days", format!("must be 1 to {max}")).into());
        }
        Ok(())
    }

    /// Like [`Self::availability`], in the caller's encoding (`encode`): from the doctor's
    /// cache of encoded answers when an equal answer is kept (see `doctor::answers`), else
    /// built, encoded and kept. The encoding runs under the view's read lock, so what is
    /// kept is exactly what the calendar shows while it is built.
    pub async fn availability_encoded(
        &self,
        doctor_id: DoctorId,
        from: NaiveDate,
        days: u16,
        encode: impl Fn(&Availability) -> Bytes,
    ) -> Result<EncodedAvailability, EngineError> {
        self.check_days(days)?;
        self.ensure_open()?;
        let encoded = |a: &Availability| EncodedAvailability {
            bookable: a.bookable,
            body: encode(a),
        };
        let capacity = self.settings().availability_cache_entries_per_doctor;
        let serve = |view: &View| {
            let (cal, now, rules) = (&view.calendar, self.now(), &self.ctx().rules);
            if let Some(kept) = view.answers.get(cal, from, days, now) {
                return kept;
            }
            let answer = cal.availability(from, days, now, rules);
            let fresh = encoded(&answer);
            view.answers.put(
                cal,
                (from, days),
                &answer,
                fresh.clone(),
                now,
                rules,
                capacity,
            );
            fresh
        };
        // From the view only when it is quiet, as in `availability`.
        if let Some(served) = self.with_view(doctor_id, Quiet::Required, serve) {
            return Ok(served);
        }
        // Not active, or writes in flight: a profile read activates the doctor and answers
        // once everything it decided is durable (an error if a write failed); then the view.
        self.doctor(doctor_id).await?;
        if let Some(served) = self.with_view(doctor_id, Quiet::Required, serve) {
            return Ok(served);
        }
        // Busy again already: the actor builds it once its writes are durable.
        let answer = self.availability(doctor_id, from, days).await?;
        Ok(encoded(&answer))
    }

    /// Up to `limit` free starts of the doctor after `after` that `patient_id` could book
    /// now, from the doctor's in-memory calendar (every booking rule applied); offered
    /// with a 409. Empty when the doctor is unknown or has none within the horizon.
    pub async fn next_available(
        &self,
        doctor_id: DoctorId,
        patient_id: PatientId,
        after: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DateTime<Utc>>, EngineError> {
        self.ensure_open()?;
        let next = |cal: &Calendar| {
            cal.next_free(
                Some(patient_id),
                after,
                limit,
                self.now(),
                &self.ctx().rules,
            )
        };
        if let Some(found) = self.read_quiet_view(doctor_id, next) {
            return Ok(found);
        }
        // Not active (passivated since the conflict), or writes in flight: a profile read
        // activates it and answers once everything it decided is durable (an error if a
        // write failed), then read the same way.
        self.doctor(doctor_id).await?;
        Ok(self.read_view(doctor_id, next).unwrap_or_default())
    }

    /// Runs the booking checks for `at`; with `hold`, also reserves the slot for the patient.
    pub async fn check_slot(
        &self,
        doctor_id: DoctorId,
        patient_id: PatientId,
        at: DateTime<Utc>,
        hold: bool,
    ) -> Result<SlotCheck, EngineError> {
        self.ensure_open()?;
        if !hold {
            // From the published view when everything the actor decided is durable; else
            // through the actor, which makes the answer wait for the journal.
            let checked = self.read_quiet_view(doctor_id, |cal| {
                cal.check_slot(Some(patient_id), at, self.now(), &self.ctx().rules)
            });
            if let Some(result) = checked {
                log_check(doctor_id, patient_id, at, false, &result);
                return result
                    .map(|()| SlotCheck { held_until: None })
                    .map_err(EngineError::from);
            }
        }
        self.call(doctor_id, |reply| DoctorMsg::CheckSlot {
            patient_id,
            at,
            hold,
            reply,
        })
        .await
    }

    /// The patient's live hold on this doctor, if any. Holds live only in an active actor
    /// (an actor with a live hold is never passivated), so an inactive doctor has none.
    pub fn hold_of(&self, doctor_id: DoctorId, patient_id: PatientId) -> Option<Hold> {
        self.read_view(doctor_id, |cal| {
            cal.live_hold_of(patient_id, self.now()).cloned()
        })
        .flatten()
    }

    /// Drops the patient's hold on this doctor; answers whether there was one.
    pub async fn release_hold(
        &self,
        doctor_id: DoctorId,
        patient_id: PatientId,
    ) -> Result<bool, EngineError> {
        self.call(doctor_id, |reply| DoctorMsg::ReleaseHold {
            patient_id,
            reply,
        })
        .await
    }

    /// Books a slot. Returns only once the booking is durable; any error means it was not
    /// acknowledged (after `Timeout` it may still have been made).
    pub async fn book(&self, request: BookingRequest) -> Result<Consultation, EngineError> {
        self.book_with(request, None).await
    }

    /// Like [`Engine::book`], storing `idempotency` with the booking in its own journal
    /// transaction (the caller has checked that the key is not stored: see
    /// [`Engine::find_idempotency`]; a key stored meanwhile refuses the batch, answered
    /// as a storage error, never a second booking).
    pub async fn book_with(
        &self,
        request: BookingRequest,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<Consultation, EngineError> {
        if let Some((field, reason)) = request.medical.invalid_fields().into_iter().next() {
            return Err(InvalidField::new(field, reason).into());
        }
        if let Some(claim) = &idempotency {
            self.inner.known_keys.record(claim);
        }
        self.call(request.doctor_id, |reply| DoctorMsg::Book {
            request: request.clone(),
            idempotency: idempotency.clone(),
            reply,
        })
        .await
    }

    /// Books several consultations at once (a multi-patient booking: the booker for
    /// themselves and family members, with one or several doctors): every item is booked,
    /// durably and in ONE store transaction, or none is. Returns once durable.
    ///
    /// Two phases: each involved doctor's actor, in ascending doctor id order, checks its
    /// items and answers their records while deciding nothing else (`DoctorMsg::Prepare`);
    /// then the records of every doctor are written in one `Store::append` and the actors
    /// are told the verdict (apply, or nothing happened, or reload when the outcome is
    /// unknown). Any refusal answers [`EngineError::ItemRejected`] with the first refused
    /// item (in doctor order) and nothing is written. The whole booking gets one call
    /// timeout; the coordination runs in its own task, so a caller that goes away cannot
    /// leave actors waiting. `idempotency` is stored with the first item's record.
    pub async fn book_many(
        &self,
        request: MultiBookingRequest,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<MultiBooking, EngineError> {
        self.ensure_open()?;
        validate_items(&request.items)?;
        self.refuse_split_booking(&request.items)?;
        let mut slot_minutes = BTreeMap::new();
        for (index, item) in request.items.iter().enumerate() {
            if let std::collections::btree_map::Entry::Vacant(e) =
                slot_minutes.entry(item.doctor_id)
            {
                let profile = self
                    .doctor(item.doctor_id)
                    .await
                    .map_err(|error| match error {
                        // About the whole booking (where it is decided), not this item.
                        EngineError::NotOwner { .. } => error,
                        _ => EngineError::ItemRejected {
                            item: index,
                            error: Box::new(error),
                        },
                    })?;
                e.insert(profile.slot_minutes);
            }
        }
        refuse_overlapping_items(&request.items, &slot_minutes)?;
        let ids: Vec<ConsultationId> = request
            .items
            .iter()
            .map(|_| self.ctx().allocate_consultation_id())
            .collect::<Result<_, _>>()?;
        let booking_id = ids[0];
        let mut groups: BTreeMap<DoctorId, Vec<PrepareItem>> = BTreeMap::new();
        for (index, (item, id)) in request.items.iter().zip(&ids).enumerate() {
            groups.entry(item.doctor_id).or_default().push(PrepareItem {
                index,
                request: BookingRequest {
                    doctor_id: item.doctor_id,
                    patient_id: request.patient_id,
                    scheduled_at: item.scheduled_at,
                    mode: item.mode,
                    medical: item.medical.clone(),
                },
                id: *id,
                member: BookingMember {
                    booking_id,
                    patient_name: item.patient_name.trim().to_owned(),
                    relation: item.relation.clone(),
                },
            });
        }
        if let Some(claim) = &idempotency {
            self.inner.known_keys.record(claim);
        }
        let engine = self.clone();
        let patient_id = request.patient_id;
        tokio::spawn(async move {
            engine
                .coordinate(patient_id, booking_id, ids, groups, idempotency)
                .await
        })
        .await
        .map_err(|e| EngineError::Unavailable(format!("booking coordinator failed: {e}")))?
    }

    /// In a cluster, a multi-patient booking is decided by the one instance that serves
    /// all its doctors (it is forwarded there); doctors served by different instances
    /// cannot be booked together: refused at once, nothing asked of any doctor.
    fn refuse_split_booking(&self, items: &[BookingItem]) -> Result<(), EngineError> {
        let Some(cluster) = &self.ctx().cluster else {
            return Ok(());
        };
        let mut owners: Vec<Option<Arc<str>>> = Vec::new();
        for item in items {
            let owner = match cluster.route(item.doctor_id) {
                Route::Local(_) => None,
                Route::Remote(url) => Some(url),
                // Waiting for an owner: the first doctor's call answers NotOwner.
                Route::Unknown => return Ok(()),
            };
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        if owners.len() > 1 {
            return Err(EngineError::Unavailable(
                "the doctors of this booking are served by different instances".into(),
            ));
        }
        Ok(())
    }

    /// The two phases of [`Self::book_many`].
    async fn coordinate(
        &self,
        patient_id: PatientId,
        booking_id: i64,
        ids: Vec<ConsultationId>,
        groups: BTreeMap<DoctorId, Vec<PrepareItem>>,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<MultiBooking, EngineError> {
        let (verdict, watching) = watch::channel(None);
        let deadline = self.deadline();
        let mut records = Vec::with_capacity(ids.len());
        let mut fences = Vec::new();
        for (doctor_id, items) in &groups {
            let prepared = self
                .call_until(*doctor_id, deadline, |reply| DoctorMsg::Prepare {
                    items: items.clone(),
                    verdict: watching.clone(),
                    reply,
                })
                .await;
            match prepared {
                Ok((r, fence)) => {
                    records.extend(r);
                    fences.extend(fence);
                }
                Err(e) => {
                    let _ = verdict.send(Some(Verdict::Aborted));
                    return Err(e);
                }
            }
        }
        if let Some(claim) = idempotency {
            if let Some(first) = records
                .iter_mut()
                .find(|r| matches!(&r.event, DoctorEvent::Booked { slot } if slot.id == booking_id))
            {
                first.idempotency = Some(claim);
            }
        }
        // Item order, so the store writes (and readers list) them as asked.
        records.sort_by_key(|r| match &r.event {
            DoctorEvent::Booked { slot } => slot.id,
            _ => 0,
        });
        fences.sort_unstable();
        fences.dedup();
        let written = self.ctx().store.append_fenced(&records, &fences).await;
        if let (Err(crate::error::StoreError::Fenced { shard, epoch }), Some(c)) =
            (&written, &self.ctx().cluster)
        {
            c.fenced(*shard, *epoch);
        }
        let _ = verdict.send(Some(if written.is_ok() {
            Verdict::Committed
        } else {
            Verdict::Unknown
        }));
        if let Err(e) = written {
            tracing::warn!(
                booking_id,
                patient_id,
                error = %e,
                "multi-patient booking not written; nothing of it was acknowledged"
            );
            return Err(e.into());
        }
        let consultations: Vec<Consultation> = records
            .iter()
            .filter_map(JournalRecord::booked_consultation)
            .collect();
        for c in &consultations {
            if c.consultation_mode.needs_session() {
                self.ensure_session(c.id);
            }
        }
        if let Some(n) = &self.inner.notifier {
            n.wake();
        }
        info!(
            event_type = "multi_booking_scheduled",
            booking_id,
            patient_id,
            consultation_ids = ?consultations.iter().map(|c| c.id).collect::<Vec<_>>(),
            doctor_ids = ?groups.keys().collect::<Vec<_>>(),
        );
        Ok(MultiBooking {
            id: booking_id,
            consultations,
        })
    }

    /// A multi-patient booking for its booker (`Forbidden` for anyone else's, not found
    /// when there is none), consultations in item order.
    pub async fn booking(
        &self,
        booking_id: i64,
        patient_id: PatientId,
    ) -> Result<MultiBooking, EngineError> {
        let consultations = self.ctx().store.booking_consultations(booking_id).await?;
        match consultations.first() {
            None => Err(EngineError::BookingNotFound(booking_id)),
            Some(c) if c.patient_id != patient_id => Err(EngineError::Forbidden),
            Some(_) => Ok(MultiBooking {
                id: booking_id,
                consultations,
            }),
        }
    }

    /// The claim to store with a request answered under `key`: expires after
    /// `engine.idempotency_ttl_s`.
    pub fn idempotency_claim(
        &self,
        patient_id: PatientId,
        key: &str,
        fingerprint: String,
    ) -> IdempotencyClaim {
        IdempotencyClaim {
            patient_id,
            key: key.to_owned(),
            fingerprint,
            expires_at: self.now()
                + chrono::Duration::seconds(i64::from(self.settings().idempotency_ttl_s)),
        }
    }

    /// The patient's stored, unexpired idempotency key `key`. An expired one is treated
    /// as unknown and deleted at once, so the key can be stored again with a new booking.
    pub async fn find_idempotency(
        &self,
        patient_id: PatientId,
        key: &str,
    ) -> Result<Option<StoredIdempotency>, EngineError> {
        // Neither stored by an earlier process nor given to this engine: certainly not
        // stored, no round trip.
        if !self.inner.known_keys.may_be_stored(patient_id, key) {
            return Ok(None);
        }
        let store = &self.ctx().store;
        let now = self.now();
        match store.find_idempotency(patient_id, key).await? {
            Some(stored) if stored.expires_at > now => Ok(Some(stored)),
            Some(_) => {
                store
                    .forget_expired_idempotency(patient_id, key, now)
                    .await?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Cancels a consultation on behalf of `by`; patients may cancel their own, doctors
    /// theirs, admins any. Returns the consultation as cancelled.
    pub async fn cancel(
        &self,
        consultation_id: ConsultationId,
        by: Requester,
    ) -> Result<Consultation, EngineError> {
        let c = self.consultation(consultation_id).await?;
        match by {
            Requester::Patient(p) if p != c.patient_id => return Err(EngineError::Forbidden),
            Requester::Doctor(d) if d != c.doctor_id => return Err(EngineError::Forbidden),
            _ => {}
        }
        if !c.status.is_active() {
            return Err(EngineError::NotCancellable("consultation is not active"));
        }
        let at = self
            .call(c.doctor_id, |reply| DoctorMsg::Cancel {
                consultation_id,
                by,
                reply,
            })
            .await?;
        Ok(Consultation {
            status: ConsultationStatus::Cancelled,
            cancelled_at: Some(at),
            ..c
        })
    }

    /// Moves one of a patient's consultations to `to` with the same doctor. The doctor's
    /// actor decides it as one event and the journal makes it durable as one record, so the
    /// new slot is taken and the old one freed together; any refusal (a booking rule, a
    /// conflict, `Forbidden` for anyone but its patient, `NotReschedulable` once it is no
    /// longer active or has started, `Invalid` for its current time) leaves it where it
    /// was. Returns the consultation at its new time, once durable (same id, reference,
    /// mode and session).
    pub async fn reschedule(
        &self,
        consultation_id: ConsultationId,
        by: Requester,
        to: DateTime<Utc>,
    ) -> Result<Consultation, EngineError> {
        self.reschedule_with(consultation_id, by, to, None).await
    }

    /// Like [`Engine::reschedule`], storing `idempotency` with the move in its own journal
    /// transaction (see [`Engine::book_with`]).
    pub async fn reschedule_with(
        &self,
        consultation_id: ConsultationId,
        by: Requester,
        to: DateTime<Utc>,
        idempotency: Option<IdempotencyClaim>,
    ) -> Result<Consultation, EngineError> {
        let c = self.consultation(consultation_id).await?;
        match by {
            Requester::Patient(p) if p == c.patient_id => {}
            _ => return Err(EngineError::Forbidden),
        }
        if !c.status.is_active() {
            return Err(EngineError::NotReschedulable("consultation is not active"));
        }
        if let Some(claim) = &idempotency {
            self.inner.known_keys.record(claim);
        }
        self.call(c.doctor_id, |reply| DoctorMsg::Reschedule {
            consultation_id,
            by,
            to,
            idempotency: idempotency.clone(),
            reply,
        })
        .await?;
        Ok(Consultation {
            scheduled_at: to,
            ..c
        })
    }

    /// Changes the doctor's timezone, slot length and weekly windows.
    pub async fn update_schedule(
        &self,
        doctor_id: DoctorId,
        update: ScheduleUpdate,
    ) -> Result<DoctorProfile, EngineError> {
        self.call(doctor_id, |reply| DoctorMsg::UpdateSchedule {
            update: update.clone(),
            reply,
        })
        .await
    }

    /// Sets the doctor's availability switch and/or approval. The journal records it as
    /// the admin's when it sets the approval, else as the doctor's (the API's two callers);
    /// [`Engine::set_status_by`] names who asked.
    pub async fn set_status(
        &self,
        doctor_id: DoctorId,
        update: StatusUpdate,
    ) -> Result<DoctorProfile, EngineError> {
        let by = match update.is_approved {
            Some(_) => Requester::Admin,
            None => Requester::Doctor(doctor_id),
        };
        self.set_status_by(doctor_id, update, by).await
    }

    /// Like [`Engine::set_status`], recording `by` as who changed it.
    pub async fn set_status_by(
        &self,
        doctor_id: DoctorId,
        update: StatusUpdate,
        by: Requester,
    ) -> Result<DoctorProfile, EngineError> {
        let by = ActedBy::from(by);
        self.call(doctor_id, |reply| DoctorMsg::SetStatus {
            update,
            by,
            reply,
        })
        .await
    }

    /// Why the slot of the doctor's current length at `at` is (un)available: the events of
    /// the doctor's latest [`SLOT_HISTORY_SCAN_EVENTS`] journal rows that touched it (at most
    /// the latest [`SLOT_HISTORY_MAX_EVENTS`], oldest first; `truncated` says when either
    /// bound cut something off), and what it is now, once everything decided is durable.
    /// `DoctorNotFound` for an unknown doctor. A diagnostic read: nothing is written.
    pub async fn slot_history(
        &self,
        doctor_id: DoctorId,
        at: DateTime<Utc>,
    ) -> Result<SlotHistory, EngineError> {
        let profile = self.doctor(doctor_id).await?;
        let now = match self.read_quiet_view(doctor_id, |cal| {
            cal.slot_state(at, self.now(), &self.ctx().rules)
        }) {
            Some(state) => state,
            None => {
                self.call(doctor_id, |reply| DoctorMsg::SlotState { at, reply })
                    .await?
            }
        };
        let store = &self.ctx().store;
        let mut entries = store
            .doctor_journal(doctor_id, SLOT_HISTORY_SCAN_EVENTS)
            .await?;
        // Newest first from the store; the oldest read is seq 1 unless the bound cut it.
        let scan_cut = entries.last().is_some_and(|e| e.seq > 1);
        entries.reverse();
        // Where the consultations that may overlap the slot are now (a cancelled one where
        // it was cancelled): locates cancellations whose booking was not read.
        let minutes = profile.slot_minutes;
        let from = at - chrono::Duration::minutes(i64::from(MAX_SLOT_MINUTES));
        let to = at + chrono::Duration::minutes(i64::from(minutes));
        let placements = store
            .doctor_consultations(doctor_id, from, to, MAX_LIST_LIMIT)
            .await?
            .into_iter()
            .map(|c| {
                (
                    c.id,
                    Placement {
                        start: c.scheduled_at,
                        duration_minutes: c.duration_minutes,
                        patient_id: c.patient_id,
                    },
                )
            })
            .collect();
        let mut events = slot_events(&entries, at, minutes, &placements);
        let answer_cut = events.len() > SLOT_HISTORY_MAX_EVENTS;
        if answer_cut {
            events.drain(..events.len() - SLOT_HISTORY_MAX_EVENTS);
        }
        Ok(SlotHistory {
            doctor_id,
            start: at,
            slot_minutes: minutes,
            events,
            truncated: scan_cut || answer_cut,
            now,
        })
    }

    /// One consultation, from the store.
    pub async fn consultation(&self, id: ConsultationId) -> Result<Consultation, EngineError> {
        self.ctx()
            .store
            .get_consultation(id)
            .await?
            .ok_or(EngineError::ConsultationNotFound(id))
    }

    /// A patient's consultations, newest first (at most [`MAX_LIST_LIMIT`]).
    pub async fn patient_consultations(
        &self,
        patient_id: PatientId,
        limit: u32,
    ) -> Result<Vec<Consultation>, EngineError> {
        Ok(self
            .ctx()
            .store
            .patient_consultations(patient_id, limit.min(MAX_LIST_LIMIT))
            .await?)
    }

    /// A doctor's consultations starting in `[from, to)`, oldest first.
    pub async fn doctor_consultations(
        &self,
        doctor_id: DoctorId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Consultation>, EngineError> {
        Ok(self
            .ctx()
            .store
            .doctor_consultations(doctor_id, from, to, limit.min(MAX_LIST_LIMIT))
            .await?)
    }

    /// The session side of a consultation for its patient or doctor (`Forbidden` for
    /// anyone else): its status and, once ready, the caller's join details. Asking for a
    /// pending session nudges the worker (it never makes a second session).
    pub async fn session_join(
        &self,
        consultation_id: ConsultationId,
        requester: Requester,
    ) -> Result<SessionView, EngineError> {
        self.ensure_open()?;
        match &self.inner.sessions {
            Some(s) => s.view(consultation_id, requester).await,
            None => {
                let c = self.consultation(consultation_id).await?;
                match requester {
                    Requester::Patient(p) if p == c.patient_id => {}
                    Requester::Doctor(d) if d == c.doctor_id => {}
                    _ => return Err(EngineError::Forbidden),
                }
                Ok(SessionView {
                    consultation_id,
                    status: c.session_status,
                    join: None,
                })
            }
        }
    }

    /// Asks the session worker to work on this consultation's pending session now; does
    /// nothing without a worker or for a settled session.
    pub fn ensure_session(&self, consultation_id: ConsultationId) {
        if let Some(s) = &self.inner.sessions {
            s.ensure(consultation_id);
        }
    }

    /// A page of someone's notifications, newest first (at most [`MAX_LIST_LIMIT`]).
    pub async fn notifications(&self, query: InboxQuery) -> Result<Vec<Notification>, EngineError> {
        let query = InboxQuery {
            limit: query.limit.min(MAX_LIST_LIMIT),
            ..query
        };
        Ok(self.ctx().store.notifications(&query).await?)
    }

    /// Marks the recipient's own notifications read; returns how many changed.
    pub async fn mark_notifications_read(
        &self,
        recipient: Recipient,
        ids: &[i64],
    ) -> Result<u64, EngineError> {
        if ids.len() > MAX_LIST_LIMIT as usize {
            return Err(
                InvalidField::new("ids", format!("at most {MAX_LIST_LIMIT} ids at once")).into(),
            );
        }
        Ok(self
            .ctx()
            .store
            .mark_notifications_read(recipient, ids, self.now())
            .await?)
    }

    /// The doctor actor's observable state (activating it if needed).
    pub async fn observe(&self, doctor_id: DoctorId) -> Result<DoctorSnapshot, EngineError> {
        self.call(doctor_id, |reply| DoctorMsg::Observe { reply })
            .await
    }

    /// Whether the doctor's actor is active right now (no activation).
    pub fn is_active(&self, doctor_id: DoctorId) -> bool {
        self.ctx().registry.contains_key(&doctor_id)
    }

    /// Fault injection: the doctor's actor panics on its next message.
    #[cfg(feature = "fault-injection")]
    pub async fn inject_panic(&self, doctor_id: DoctorId) -> Result<(), EngineError> {
        let actor = self.actor_for(doctor_id, self.deadline()).await?;
        actor
            .cast(DoctorMsg::Crash)
            .map_err(|_| EngineError::Unavailable("actor stopped".into()))
    }

    /// The cluster this instance is part of, if its store is shared.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.ctx().cluster.as_ref()
    }

    /// Hands every shard this instance holds to the others and leaves the membership
    /// table (graceful shutdown of one instance of several). The engine keeps answering,
    /// with `NotOwner` for every doctor. Does nothing alone. Idempotent.
    pub async fn leave_cluster(&self) {
        if let Some(c) = &self.ctx().cluster {
            c.leave().await;
        }
    }

    /// Stops taking calls, waits for calls in flight, writes final snapshots, flushes and
    /// stops the journal. Idempotent.
    pub async fn shutdown(&self) {
        self.leave_cluster().await;
        if self.inner.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        let settings = self.settings();
        let wait = Duration::from_millis(settings.call_timeout_ms);
        for shard in &self.inner.shards {
            let all = settings.max_in_flight_per_shard as u32;
            let _ = tokio::time::timeout(wait, shard.permits.acquire_many(all)).await;
        }
        let _ = self.ctx().journal.fence_all().await;
        for shard in &self.inner.shards {
            let _ = shard
                .actor
                .call(|reply| ShardMsg::Shutdown { reply }, Some(wait * 4))
                .await;
        }
        self.ctx().journal.shutdown().await;
        if let Some(s) = &self.inner.sessions {
            s.shutdown().await;
        }
        if let Some(n) = &self.inner.notifier {
            n.shutdown().await;
        }
        self.inner.purger.abort();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks lock"));
        for t in tasks {
            let _ = t.await;
        }
        info!("engine stopped");
    }

    /// Whether the engine takes calls (false once `shutdown` has begun).
    pub fn is_running(&self) -> bool {
        !self.inner.closing.load(Ordering::Relaxed)
    }

    fn ensure_open(&self) -> Result<(), EngineError> {
        if self.inner.closing.load(Ordering::Relaxed) {
            Err(EngineError::Unavailable("engine is stopping".into()))
        } else {
            Ok(())
        }
    }

    /// Runs `read` on the doctor's published calendar, if the doctor is active.
    fn read_view<T>(&self, doctor_id: DoctorId, read: impl FnOnce(&Calendar) -> T) -> Option<T> {
        self.with_view(doctor_id, Quiet::Any, |view| read(&view.calendar))
    }

    /// Like [`Self::read_view`], only when all the actor decided is durable.
    fn read_quiet_view<T>(
        &self,
        doctor_id: DoctorId,
        read: impl FnOnce(&Calendar) -> T,
    ) -> Option<T> {
        self.with_view(doctor_id, Quiet::Required, |view| read(&view.calendar))
    }

    /// Runs `read` on the doctor's published view, if the doctor is active (and, when
    /// `quiet` requires it, everything it decided is durable and applied).
    fn with_view<T>(
        &self,
        doctor_id: DoctorId,
        quiet: Quiet,
        read: impl FnOnce(&View) -> T,
    ) -> Option<T> {
        if !self.ctx().serves(doctor_id) {
            return None;
        }
        let handle = self.ctx().registry.get(&doctor_id)?;
        let view = handle.view.read().ok()?;
        if quiet == Quiet::Required && !view.is_quiet() {
            return None;
        }
        mark_read(&view);
        Some(read(&view))
    }

    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.settings().call_timeout_ms)
    }

    fn shard(&self, doctor_id: DoctorId) -> &Shard {
        &self.inner.shards[shard_index(doctor_id, self.inner.shards.len())]
    }

    /// Admission, routing, timeout and safe re-routing for one doctor command.
    async fn call<T, F>(&self, doctor_id: DoctorId, make: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: Fn(Reply<T>) -> DoctorMsg,
    {
        self.call_until(doctor_id, self.deadline(), make).await
    }

    /// Like [`Self::call`], answering by `deadline`.
    async fn call_until<T, F>(
        &self,
        doctor_id: DoctorId,
        deadline: Instant,
        make: F,
    ) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: Fn(Reply<T>) -> DoctorMsg,
    {
        self.ensure_open()?;
        self.ctx().fence_for(doctor_id)?;
        let _permit = self.shard(doctor_id).permits.try_acquire().map_err(|_| {
            EngineStats::bump(&self.ctx().stats.overloaded);
            EngineError::Overloaded
        })?;
        for _ in 0..MAX_ROUTE_ATTEMPTS {
            let actor = self.actor_for(doctor_id, deadline).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(EngineError::Timeout);
            }
            match actor.call(&make, Some(remaining)).await {
                Ok(CallResult::Success(result)) => return result,
                Ok(CallResult::Timeout) => return Err(EngineError::Timeout),
                // The actor stopped before handling the message: it had no effect.
                Ok(CallResult::SenderError) | Err(_) => tokio::task::yield_now().await,
            }
        }
        Err(EngineError::Unavailable(
            "the doctor's actor keeps stopping; retry later".into(),
        ))
    }

    async fn actor_for(
        &self,
        doctor_id: DoctorId,
        deadline: Instant,
    ) -> Result<ActorRef<DoctorMsg>, EngineError> {
        if let Some(h) = self.ctx().registry.get(&doctor_id) {
            if h.actor.get_status() == ActorStatus::Running {
                return Ok(h.actor.clone());
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match self
            .shard(doctor_id)
            .actor
            .call(
                |reply| ShardMsg::Activate { doctor_id, reply },
                Some(remaining),
            )
            .await
        {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(EngineError::Timeout),
            Ok(CallResult::SenderError) | Err(_) => {
                Err(EngineError::Unavailable("shard supervisor stopped".into()))
            }
        }
    }
}

/// The bounds of a multi-patient booking's items, each failure named by its field
/// (`items[i].patient_name`); the first is answered.
fn validate_items(items: &[BookingItem]) -> Result<(), EngineError> {
    if items.is_empty() || items.len() > MAX_BOOKING_ITEMS {
        return Err(InvalidField::new(
            "items",
            format!("must hold 1 to {MAX_BOOKING_ITEMS} items"),
        )
        .into());
    }
    for (i, item) in items.iter().enumerate() {
        let name = item.patient_name.trim();
        if name.is_empty() || name.chars().count() > MAX_PATIENT_NAME_CHARS {
            return Err(InvalidField::new(
                format!("items[{i}].patient_name"),
                format!("must be 1 to {MAX_PATIENT_NAME_CHARS} characters"),
            )
            .into());
        }
        let lines = [
            ("patient_name", Some(name)),
            ("relation", item.relation.as_deref()),
        ];
        for (field, text) in lines {
            if text.is_some_and(|t| has_control_chars(t, TextKind::Line)) {
                return Err(
                    InvalidField::new(format!("items[{i}].{field}"), CONTROL_CHARS_REASON).into(),
                );
            }
        }
        if item
            .relation
            .as_ref()
            .is_some_and(|r| r.trim().is_empty() || r.chars().count() > MAX_RELATION_CHARS)
        {
            return Err(InvalidField::new(
                format!("items[{i}].relation"),
                format!("must be 1 to {MAX_RELATION_CHARS} characters"),
            )
            .into());
        }
        if let Some((field, reason)) = item.medical.invalid_fields().into_iter().next() {
            return Err(InvalidField::new(format!("items[{i}].{field}"), reason).into());
        }
    }
    Ok(())
}

/// Two items with the same doctor whose times overlap (by that doctor's slot length) can
/// never both be booked: a 400 naming both, before any doctor is asked.
fn refuse_overlapping_items(
    items: &[BookingItem],
    slot_minutes: &BTreeMap<DoctorId, u16>,
) -> Result<(), EngineError> {
    for (i, a) in items.iter().enumerate() {
        for (j, b) in items.iter().enumerate().skip(i + 1) {
            if a.doctor_id != b.doctor_id {
                continue;
            }
            let len = chrono::Duration::minutes(i64::from(slot_minutes[&a.doctor_id]));
            if a.scheduled_at < b.scheduled_at + len && b.scheduled_at < a.scheduled_at + len {
                return Err(InvalidField::new(
                    format!("items[{j}].scheduled_at"),
                    format!("overlaps items[{i}] (same doctor and time)"),
                )
                .into());
            }
        }
    }
    Ok(())
}

/// Whether a read of a doctor's published view needs it quiet (see `View::is_quiet`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quiet {
    Any,
    Required,
}

/// Tells the actor it is being read (only if not told already: no shared-line write per read).
fn mark_read(view: &crate::doctor::View) {
    if !view.read_since_tick.load(Ordering::Relaxed) {
        view.read_since_tick.store(true, Ordering::Relaxed);
    }
}
