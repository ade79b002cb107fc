//! The doctor actor: owns one doctor's [`Calendar`] and decides every command for that
//! doctor, one message at a time. Decisions that change the calendar are applied in memory
//! at once (so the next message sees them) and handed to the journal writer; the caller's
//! reply is sent by the writer when the batch is durable (persist, then reply). The actor
//! never waits for the disk.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::calendar::{Calendar, DoctorEvent, JournalRecord};
use crate::cluster::Fence;
use crate::context::EngineContext;
use crate::error::{EngineError, Rejection};
use crate::feed::ChangeKind;
use crate::journal::Entry;
use crate::model::{
    BookingRequest, Consultation, ConsultationId, DoctorProfile, IdempotencyClaim, PatientId,
    Requester, SessionStatus,
};
use crate::stats::EngineStats;
use crate::store::SnapshotWrite;

pub(crate) mod answers;
pub(crate) mod msg;
pub(crate) mod view;

pub use answers::EncodedAvailability;
pub use msg::{DoctorMsg, DoctorSnapshot, SlotCheck};
pub(crate) use msg::{PrepareItem, Reply, Verdict};
pub(crate) use view::{DoctorHandle, SharedView, View};

/// What a handler leaves for its asynchronous part.
enum Next {
    Done,
    /// A journal batch of this generation failed: reload from the store.
    Reload,
    /// A multi-patient booking's phase one.
    Prepare(Box<PrepareWork>),
}

struct PrepareWork {
    items: Vec<PrepareItem>,
    verdict: watch::Receiver<Option<Verdict>>,
    reply: Reply<(Vec<JournalRecord>, Option<Fence>)>,
}

/// Loads a doctor for activation or reload: fence the doctor's journal writer (every record
/// an earlier incarnation queued is then durable or refused), read the latest snapshot and
/// later events, rebuild, prune. Returns the calendar and the seq its snapshot covered.
pub(crate) async fn load_calendar(
    ctx: &EngineContext,
    doctor_id: crate::model::DoctorId,
) -> Result<(Calendar, u64), EngineError> {
    ctx.journal.fence(doctor_id).await?;
    let history = ctx
        .store
        .load_doctor(doctor_id)
        .await?
        .ok_or(EngineError::DoctorNotFound)?;
    let snapshot_seq = history.snapshot.as_ref().map_or(0, |s| s.seq);
    let mut calendar = Calendar::rebuild(history)?;
    calendar.prune(ctx.clock.now());
    Ok((calendar, snapshot_seq))
}

/// The actor; read-only, shared context only. Mutable state is [`DoctorState`].
pub struct DoctorActor {
    pub(crate) ctx: Arc<EngineContext>,
}

pub struct DoctorArgs {
    pub(crate) view: SharedView,
    pub generation: u64,
    pub snapshot_seq: u64,
    /// The lease the state was loaded under (in a cluster): every write is fenced by it.
    pub fence: Option<Fence>,
}

pub struct DoctorState {
    view: SharedView,
    doctor_id: crate::model::DoctorId,
    generation: u64,
    fence: Option<Fence>,
    snapshot_seq: u64,
    snapshot_in_flight: bool,
    /// A snapshot round asked for one; tried on each tick until the queue takes it.
    snapshot_wanted: bool,
    last_activity: Instant,
    passivating: bool,
}

impl DoctorState {
    /// Locks are only ever held in synchronous sections, never across an await.
    fn read(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_quiet(&self) -> bool {
        self.read().is_quiet()
    }

    /// Asks the shard for every tick while a hold is stored (its expiry is announced on a
    /// tick) or a snapshot waits for a place in the queue; else ticks come now and then.
    fn ask_for_ticks(&self) {
        let v = self.read();
        let wanted = self.snapshot_wanted || v.calendar.has_holds();
        v.ticks_wanted.store(wanted, Ordering::Relaxed);
    }

    /// Whether the calendar has changed since its stored snapshot (and no snapshot is being
    /// written). A doctor with only its `Registered` event (seq 1) is not: replaying that
    /// one event costs no more than reading a snapshot.
    fn is_dirty(&self) -> bool {
        self.read().calendar.seq() > self.snapshot_seq.max(1) && !self.snapshot_in_flight
    }
}

/// The seed's `time_slot_conflict_check` log line.
pub(crate) fn log_check<T>(
    doctor_id: crate::model::DoctorId,
    patient_id: PatientId,
    at: DateTime<Utc>,
    hold: bool,
    result: &Result<T, Rejection>,
) {
    info!(
        event_type = "time_slot_conflict_check",
        doctor_id,
        patient_id,
        scheduled_at = %rfc3339(at),
        hold,
        outcome = result.as_ref().err().map_or("available", |r| r.code()),
    );
}

impl Actor for DoctorActor {
    type Msg = DoctorMsg;
    type State = DoctorState;
    type Arguments = DoctorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: DoctorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let doctor_id = args
            .view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .calendar
            .profile()
            .id;
        Ok(DoctorState {
            view: args.view,
            doctor_id,
            generation: args.generation,
            fence: args.fence,
            snapshot_seq: args.snapshot_seq,
            snapshot_in_flight: false,
            snapshot_wanted: false,
            last_activity: Instant::now(),
            passivating: false,
        })
    }

    fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send {
        // Decided before the future exists: ractor keeps the future of the message in hand
        // alive while the actor idles, so one holding the message (176 bytes) or the reload
        // inline cost every active doctor ~2 KB more (measured by `benches/scale.rs`).
        let next = self.decide(&myself, msg, state);
        state.ask_for_ticks();
        async move {
            match next {
                Next::Done => {}
                Next::Reload => Box::pin(self.reload(&myself, state)).await,
                Next::Prepare(work) => Box::pin(self.prepare(&myself, state, *work)).await,
            }
            Ok(())
        }
    }
}

impl DoctorActor {
    /// Decides `msg` synchronously; answers what is left to do asynchronously: a reload
    /// from the store (a journal batch of this generation failed), or a multi-patient
    /// booking's phase one.
    fn decide(
        &self,
        myself: &ActorRef<DoctorMsg>,
        msg: DoctorMsg,
        state: &mut DoctorState,
    ) -> Next {
        let ctx = &self.ctx;
        let now = ctx.clock.now();
        if msg.is_request() {
            state.last_activity = Instant::now();
        }
        match msg {
            DoctorMsg::Availability { from, days, reply } => {
                let availability = state
                    .read()
                    .calendar
                    .availability(from, days, now, &ctx.rules);
                self.reply_when_durable(state, reply, Ok(availability));
            }
            DoctorMsg::CheckSlot {
                patient_id,
                at,
                hold,
                reply,
            } => {
                let result = if hold {
                    let (placed, before, seq) = {
                        let mut v = state.write();
                        let before = v.calendar.hold_of(patient_id);
                        let placed = v.calendar.place_hold(patient_id, at, now, &ctx.rules);
                        (placed, before, v.calendar.seq())
                    };
                    if placed.is_ok() {
                        if let Some(prev) = before.filter(|prev| *prev != at) {
                            self.publish(state, seq, ChangeKind::Released, Some(prev));
                        }
                        self.publish(state, seq, ChangeKind::Held, Some(at));
                    }
                    placed.map(Some)
                } else {
                    let checked =
                        state
                            .read()
                            .calendar
                            .check_slot(Some(patient_id), at, now, &ctx.rules);
                    checked.map(|()| None)
                };
                log_check(state.doctor_id, patient_id, at, hold, &result);
                let answer = result
                    .map(|held_until| SlotCheck { held_until })
                    .map_err(EngineError::from);
                self.reply_when_durable(state, reply, answer);
            }
            DoctorMsg::ReleaseHold { patient_id, reply } => {
                let (released, seq) = {
                    let mut v = state.write();
                    (v.calendar.release_hold(patient_id), v.calendar.seq())
                };
                if let Some(at) = released {
                    self.publish(state, seq, ChangeKind::Released, Some(at));
                }
                let _ = reply.send(Ok(released.is_some()));
            }
            DoctorMsg::Book {
                request,
                idempotency,
                reply,
            } => {
                self.book(myself, state, request, idempotency, reply, now);
            }
            DoctorMsg::Cancel {
                consultation_id,
                by,
                reply,
            } => {
                let (decision, slot) = {
                    let v = state.read();
                    let slot = v.calendar.slot(consultation_id).cloned();
                    (v.calendar.decide_cancel(consultation_id, by, now), slot)
                };
                let doctor_id = state.doctor_id;
                match decision {
                    Ok(event) => self.journal(myself, state, event, Default::default(), None, {
                        move |r| {
                            if let (Ok(()), Some(slot)) = (&r, slot) {
                                info!(
                                    event_type = "consultation_cancelled",
                                    consultation_id,
                                    consultation_reference = %slot.reference(),
                                    doctor_id,
                                    patient_id = slot.patient_id,
                                    scheduled_at = %rfc3339(slot.start),
                                    consultation_mode = slot.mode.as_str(),
                                    cancelled_by = by.kind(),
                                );
                            }
                            let _ = reply.send(r.map(|()| now));
                        }
                    }),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            DoctorMsg::Reschedule {
                consultation_id,
                by,
                to,
                idempotency,
                reply,
            } => self.reschedule(
                myself,
                state,
                consultation_id,
                by,
                to,
                idempotency,
                reply,
                now,
            ),
            DoctorMsg::UpdateSchedule { update, reply } => {
                let decision = state.read().calendar.decide_schedule(&update, now);
                match decision {
                    Ok(event) => self.journal_profile_change(myself, state, event, reply),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            DoctorMsg::SetStatus { update, by, reply } => {
                let decision = state.read().calendar.decide_status(update, by);
                match decision {
                    Some(event) => self.journal_profile_change(myself, state, event, reply),
                    // Nothing to change: the profile as it stands, once it is durable.
                    None => {
                        let profile = state.read().calendar.profile().clone();
                        self.reply_when_durable(state, reply, Ok(profile));
                    }
                }
            }
            // Once durable: a profile change still in flight may yet fail.
            DoctorMsg::Profile { reply } => {
                let profile = state.read().calendar.profile().clone();
                self.reply_when_durable(state, reply, Ok(profile));
            }
            DoctorMsg::SlotState { at, reply } => {
                let slot = state.read().calendar.slot_state(at, now, &ctx.rules);
                self.reply_when_durable(state, reply, Ok(slot));
            }
            DoctorMsg::Observe { reply } => {
                let snapshot = {
                    let v = state.read();
                    DoctorSnapshot {
                        profile: v.calendar.profile().clone(),
                        seq: v.calendar.seq(),
                        durable_seq: v.durable_seq,
                        snapshot_seq: state.snapshot_seq,
                        generation: state.generation,
                        active: v.calendar.active().cloned().collect(),
                        live_holds: v.calendar.live_holds(now).cloned().collect(),
                    }
                };
                let _ = reply.send(Ok(snapshot));
            }
            DoctorMsg::Durable { generation, seq } => {
                if generation == state.generation {
                    let mut v = state.write();
                    v.durable_seq = v.durable_seq.max(seq);
                }
            }
            // What reached the disk is unknown: reload from the store (see `reload`).
            DoctorMsg::JournalFailed { generation } => {
                if generation == state.generation {
                    return Next::Reload;
                }
            }
            DoctorMsg::Prepare {
                items,
                verdict,
                reply,
            } => {
                return Next::Prepare(Box::new(PrepareWork {
                    items,
                    verdict,
                    reply,
                }))
            }
            DoctorMsg::Tick { snapshot_due } => self.tick(myself, state, snapshot_due, now),
            DoctorMsg::SnapshotWritten { seq, ok } => {
                state.snapshot_in_flight = false;
                if ok {
                    state.snapshot_seq = state.snapshot_seq.max(seq);
                }
            }
            DoctorMsg::FinalSnapshot { reply } => {
                let snap = (state.is_quiet() && state.is_dirty()).then(|| {
                    let v = state.read();
                    (v.calendar.seq(), v.calendar.encode_snapshot())
                });
                let _ = reply.send(snap);
            }
            #[cfg(feature = "fault-injection")]
            DoctorMsg::Crash => panic!("injected fault in doctor actor"),
        }
        Next::Done
    }

    /// Phase one of a multi-patient booking for this doctor's items (two-phase, across
    /// doctors; the coordinator is `Engine::book_many`).
    ///
    /// 1. Everything this actor decided before must be durable: the booking's records are
    ///    written by the coordinator in one transaction of their own, beside this doctor's
    ///    journal writer, so no earlier record of this doctor may still be in flight (its
    ///    sequence numbers must stay contiguous whatever fails).
    /// 2. Every item passes the booking rules against the calendar (items of one doctor
    ///    never overlap each other; the coordinator refused that with a 400, and it is
    ///    checked again here with this doctor's own slot length).
    /// 3. The records are answered, not applied, and the actor decides nothing else until
    ///    the verdict: committed (apply them: they are durable), aborted (nothing to undo)
    ///    or unknown (reload from the store, like after a failed batch).
    ///
    /// Deadlock-free: coordinators prepare doctors in ascending id order, and an actor only
    /// ever waits for the journal writers and its coordinator, never for another actor.
    /// Bounded: the coordinator gives every booking one call timeout, then aborts.
    async fn prepare(
        &self,
        myself: &ActorRef<DoctorMsg>,
        state: &mut DoctorState,
        work: PrepareWork,
    ) {
        let PrepareWork {
            items,
            mut verdict,
            reply,
        } = work;
        if let Err(e) = self.settle_in_flight(state).await {
            let _ = reply.send(Err(e));
            return;
        }
        let now = self.ctx.clock.now();
        let doctor_id = state.doctor_id;
        let decided = {
            let v = state.read();
            decide_items(&v.calendar, &items, now, &self.ctx.rules)
        };
        let records = match decided {
            Ok(events) => {
                let base = state.read().calendar.seq();
                items
                    .iter()
                    .zip(events)
                    .zip(1..)
                    .map(|((item, event), k)| JournalRecord {
                        doctor_id,
                        seq: base + k,
                        recorded_at: now,
                        event,
                        medical: item.request.medical.clone(),
                        idempotency: None,
                        member: Some(item.member.clone()),
                    })
                    .collect::<Vec<_>>()
            }
            Err((index, e)) => {
                if e == EngineError::Rejected(Rejection::Conflict) {
                    let r = &items[index].request;
                    info!(
                        event_type = "time_slot_conflict",
                        doctor_id,
                        patient_id = r.patient_id,
                        scheduled_at = %rfc3339(r.scheduled_at),
                        consultation_mode = r.mode.as_str(),
                        booking_item = items[index].index,
                    );
                }
                let _ = reply.send(Err(EngineError::ItemRejected {
                    item: items[index].index,
                    error: Box::new(e),
                }));
                return;
            }
        };
        // Readers of the view go through this actor until the verdict is applied, so
        // none reads a committed booking's slots as free (set before the coordinator can
        // write, answer and be read from another thread).
        state.write().preparing = true;
        if reply.send(Ok((records.clone(), state.fence))).is_err() {
            // The coordinator gave up before this answer: it writes nothing.
            state.write().preparing = false;
            return;
        }
        let outcome = match verdict.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or(Verdict::Unknown),
            // The coordinator vanished: what reached the store is unknown.
            Err(_) => Verdict::Unknown,
        };
        match outcome {
            Verdict::Committed => self.apply_committed(state, records),
            Verdict::Aborted => {}
            Verdict::Unknown => Box::pin(self.reload(myself, state)).await,
        }
        state.write().preparing = false;
    }

    /// Waits until every record this actor decided is durable (or answers why not: the
    /// actor is then told of the failed batch and reloads).
    async fn settle_in_flight(&self, state: &DoctorState) -> Result<(), EngineError> {
        if state.is_quiet() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let done: crate::journal::Completion = Box::new(move |durable| {
            let _ = tx.send(durable);
        });
        if self
            .ctx
            .journal
            .try_after(state.doctor_id, state.generation, done)
            .is_err()
        {
            return Err(EngineError::Overloaded);
        }
        rx.await
            .unwrap_or_else(|_| Err(EngineError::Unavailable("journal writer stopped".into())))?;
        // The writer's `Durable` message is still queued behind this one.
        let mut v = state.write();
        v.durable_seq = v.calendar.seq();
        Ok(())
    }

    /// Applies a committed multi-patient booking's records (durable already) and tells the
    /// watchers.
    fn apply_committed(&self, state: &mut DoctorState, records: Vec<JournalRecord>) {
        let mut changes = Vec::with_capacity(records.len() * 2);
        {
            let mut v = state.write();
            for r in &records {
                if let DoctorEvent::Booked { slot } = &r.event {
                    if let Some(held) = v.calendar.hold_of(slot.patient_id) {
                        if held != slot.start {
                            changes.push((r.seq, ChangeKind::Released, held));
                        }
                    }
                    changes.push((r.seq, ChangeKind::Booked, slot.start));
                }
                v.calendar.apply(r.seq, &r.event);
            }
            v.durable_seq = v.calendar.seq();
        }
        for (seq, kind, start) in changes {
            self.publish(state, seq, kind, Some(start));
        }
        for r in &records {
            if let DoctorEvent::Booked { slot } = &r.event {
                info!(
                    event_type = "consultation_scheduled",
                    consultation_id = slot.id,
                    consultation_reference = %slot.reference(),
                    doctor_id = state.doctor_id,
                    patient_id = slot.patient_id,
                    scheduled_at = %rfc3339(slot.start),
                    consultation_mode = slot.mode.as_str(),
                    booking_id = r.member.as_ref().map(|m| m.booking_id),
                );
            }
        }
    }

    /// Reloads the doctor from the store behind a fence, after a failed journal write.
    /// Messages queued meanwhile wait and are then decided on the reloaded state.
    async fn reload(&self, myself: &ActorRef<DoctorMsg>, state: &mut DoctorState) {
        let ctx = &self.ctx;
        let doctor_id = state.doctor_id;
        // In a cluster the write may have been fenced: reload only while still the owner.
        match ctx.fence_for(doctor_id) {
            Ok(fence) => state.fence = fence,
            Err(_) => {
                info!(doctor_id, "doctor is served elsewhere now; its actor stops");
                myself.stop(Some("shard no longer held".into()));
                return;
            }
        }
        warn!(
            doctor_id,
            "journal write failed; reloading the doctor from the store"
        );
        match load_calendar(ctx, doctor_id).await {
            Ok((calendar, snapshot_seq)) => {
                let seq = calendar.seq();
                *state.write() = View::new(calendar);
                // What watchers were told may not have been written: they reload.
                self.publish(state, seq, ChangeKind::Resync, None);
                state.snapshot_seq = snapshot_seq;
                state.generation = ctx.next_generation();
            }
            Err(e) => {
                warn!(doctor_id, error = %e, "reload failed; doctor actor stops");
                myself.stop(Some("reload after a failed journal write failed".into()));
            }
        }
    }

    fn book(
        &self,
        myself: &ActorRef<DoctorMsg>,
        state: &mut DoctorState,
        req: BookingRequest,
        idempotency: Option<IdempotencyClaim>,
        reply: Reply<Consultation>,
        now: DateTime<Utc>,
    ) {
        let ctx = &self.ctx;
        let doctor_id = state.doctor_id;
        let checked = state.read().calendar.check_slot(
            Some(req.patient_id),
            req.scheduled_at,
            now,
            &ctx.rules,
        );
        if let Err(rejection) = checked {
            if rejection == Rejection::Conflict {
                info!(
                    event_type = "time_slot_conflict",
                    doctor_id,
                    patient_id = req.patient_id,
                    scheduled_at = %rfc3339(req.scheduled_at),
                    consultation_mode = req.mode.as_str(),
                );
            } else {
                debug!(doctor_id, reason = rejection.code(), "booking rejected");
            }
            self.reply_when_durable(state, reply, Err(rejection.into()));
            return;
        }
        let id = match ctx.allocate_consultation_id() {
            Ok(id) => id,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let (event, hold_elsewhere, seq) = {
            let v = state.read();
            let hold = v.calendar.hold_of(req.patient_id);
            let event = v.calendar.booked_event(&req, id, now);
            (
                event,
                hold.filter(|h| *h != req.scheduled_at),
                v.calendar.seq(),
            )
        };
        // The booking drops the patient's hold on another slot of this doctor.
        if let Some(at) = hold_elsewhere {
            self.publish(state, seq, ChangeKind::Released, Some(at));
        }
        let DoctorEvent::Booked { slot } = &event else {
            unreachable!("decide_book decides bookings")
        };
        let consultation = Consultation {
            id,
            reference: slot.reference(),
            doctor_id,
            patient_id: req.patient_id,
            scheduled_at: req.scheduled_at,
            duration_minutes: slot.duration_minutes,
            status: slot.status,
            consultation_mode: req.mode,
            consult_mode: req.mode,
            session_status: SessionStatus::initial_for(req.mode),
            medical: Default::default(),
            created_at: now,
            cancelled_at: None,
            member: None,
        };
        let medical = req.medical;
        self.journal(
            myself,
            state,
            event,
            medical.clone(),
            idempotency,
            move |result| {
                let c = consultation;
                match &result {
                    Ok(()) => info!(
                        event_type = "consultation_scheduled",
                        consultation_id = c.id,
                        consultation_reference = %c.reference,
                        doctor_id = c.doctor_id,
                        patient_id = c.patient_id,
                        scheduled_at = %rfc3339(c.scheduled_at),
                        consultation_mode = c.consultation_mode.as_str(),
                    ),
                    Err(e) => warn!(
                        event_type = "consultation_booking_failed",
                        consultation_id = c.id,
                        doctor_id = c.doctor_id,
                        patient_id = c.patient_id,
                        scheduled_at = %rfc3339(c.scheduled_at),
                        consultation_mode = c.consultation_mode.as_str(),
                        error = %e,
                    ),
                }
                let _ = reply.send(result.map(|()| Consultation { medical, ..c }));
            },
        );
    }

    /// Decides a reschedule and journals it as one record: the new slot is taken and the
    /// old one freed by the same event, so no reader ever sees both or neither. A refusal
    /// (rules, conflict, not the owner, not active) leaves the consultation where it was and
    /// is answered once everything decided before it is durable.
    #[allow(clippy::too_many_arguments)]
    fn reschedule(
        &self,
        myself: &ActorRef<DoctorMsg>,
        state: &mut DoctorState,
        consultation_id: ConsultationId,
        by: Requester,
        to: DateTime<Utc>,
        idempotency: Option<IdempotencyClaim>,
        reply: Reply<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        let doctor_id = state.doctor_id;
        let (decision, slot, hold, seq) = {
            let v = state.read();
            let slot = v.calendar.slot(consultation_id).cloned();
            let hold = slot.as_ref().and_then(|s| v.calendar.hold_of(s.patient_id));
            let decision =
                v.calendar
                    .decide_reschedule(consultation_id, by, to, now, &self.ctx.rules);
            (decision, slot, hold, v.calendar.seq())
        };
        let (event, slot) = match decision {
            // A move is only decided for a consultation the calendar holds.
            Ok(event) => (
                event,
                slot.expect("a decided reschedule has its consultation"),
            ),
            Err(e) => {
                if let (EngineError::Rejected(Rejection::Conflict), Some(slot)) = (&e, &slot) {
                    info!(
                        event_type = "time_slot_conflict",
                        consultation_id,
                        doctor_id,
                        patient_id = slot.patient_id,
                        scheduled_at = %rfc3339(to),
                        consultation_mode = slot.mode.as_str(),
                    );
                } else {
                    debug!(doctor_id, consultation_id, error = %e, "reschedule refused");
                }
                self.reply_when_durable(state, reply, Err(e));
                return;
            }
        };
        // Like a booking, the move drops the patient's hold on another slot of this doctor.
        if let Some(at) = hold.filter(|h| *h != to) {
            self.publish(state, seq, ChangeKind::Released, Some(at));
        }
        let from = slot.start;
        self.journal(
            myself,
            state,
            event,
            Default::default(),
            idempotency,
            move |result| {
                match &result {
                    Ok(()) => info!(
                        event_type = "consultation_rescheduled",
                        consultation_id,
                        consultation_reference = %slot.reference(),
                        doctor_id,
                        patient_id = slot.patient_id,
                        scheduled_at = %rfc3339(to),
                        previous_scheduled_at = %rfc3339(from),
                        consultation_mode = slot.mode.as_str(),
                    ),
                    Err(e) => warn!(
                        consultation_id,
                        doctor_id,
                        error = %e,
                        "reschedule not made durable; the consultation stays where it was"
                    ),
                }
                let _ = reply.send(result.map(|()| from));
            },
        );
    }

    /// Sends `answer` now if everything this actor decided is durable; otherwise once it
    /// is, so an answer never rests on a decision that a failed batch later undoes (then the
    /// caller gets a retryable storage error instead).
    fn reply_when_durable<T: Send + 'static>(
        &self,
        state: &DoctorState,
        reply: Reply<T>,
        answer: Result<T, EngineError>,
    ) {
        if state.is_quiet() {
            let _ = reply.send(answer);
            return;
        }
        let done: crate::journal::Completion = Box::new(move |durable| {
            let _ = reply.send(durable.and(answer));
        });
        if let Err(done) = self
            .ctx
            .journal
            .try_after(state.doctor_id, state.generation, done)
        {
            done(Err(EngineError::Overloaded));
        }
    }

    fn journal_profile_change(
        &self,
        myself: &ActorRef<DoctorMsg>,
        state: &mut DoctorState,
        event: DoctorEvent,
        reply: Reply<DoctorProfile>,
    ) {
        let mut profile = state.read().calendar.profile().clone();
        event.apply_to_profile(&mut profile);
        self.journal(myself, state, event, Default::default(), None, move |r| {
            let _ = reply.send(r.map(|()| profile));
        });
    }

    /// Reserves a journal place, applies `event` in memory, and queues it; `done` runs when
    /// the batch is durable or failed. If the queue is full nothing is applied.
    fn journal(
        &self,
        myself: &ActorRef<DoctorMsg>,
        state: &mut DoctorState,
        event: DoctorEvent,
        medical: crate::model::MedicalInfo,
        idempotency: Option<IdempotencyClaim>,
        done: impl FnOnce(Result<(), EngineError>) + Send + 'static,
    ) {
        let permit = match self.ctx.journal.try_reserve(state.doctor_id) {
            Ok(p) => p,
            Err(e) => {
                if e == EngineError::Overloaded {
                    EngineStats::bump(&self.ctx.stats.overloaded);
                }
                done(Err(e));
                return;
            }
        };
        let (seq, changes) = {
            let mut v = state.write();
            // What watchers are told: at most two slot changes per record (a reschedule's
            // two sides), kept inline so a booking allocates nothing for them.
            let changes: [Option<(ChangeKind, Option<DateTime<Utc>>)>; 2] = match &event {
                DoctorEvent::Booked { slot } => {
                    [Some((ChangeKind::Booked, Some(slot.start))), None]
                }
                DoctorEvent::Cancelled {
                    consultation_id, ..
                } => [
                    Some((
                        ChangeKind::Cancelled,
                        v.calendar.slot(*consultation_id).map(|s| s.start),
                    )),
                    None,
                ],
                DoctorEvent::Rescheduled { from, to, .. } => [
                    Some((ChangeKind::Rescheduled { booked: false }, Some(*from))),
                    Some((ChangeKind::Rescheduled { booked: true }, Some(*to))),
                ],
                DoctorEvent::ScheduleUpdated { .. } | DoctorEvent::StatusChanged { .. } => {
                    [Some((ChangeKind::ScheduleChanged, None)), None]
                }
                DoctorEvent::Registered { .. } => [None, None],
            };
            let seq = v.calendar.seq() + 1;
            v.calendar.apply(seq, &event);
            (seq, changes)
        };
        // Watchers hear of a change once it is durable, just before its caller does.
        let ctx = Arc::clone(&self.ctx);
        let doctor_id = state.doctor_id;
        let done = move |result: Result<(), EngineError>| {
            if result.is_ok() {
                for (kind, start) in changes.into_iter().flatten() {
                    ctx.feeds.publish(doctor_id, seq, kind, start);
                }
            }
            done(result);
        };
        permit.append(Entry {
            record: JournalRecord {
                doctor_id: state.doctor_id,
                seq,
                recorded_at: self.ctx.clock.now(),
                event,
                medical,
                idempotency,
                member: None,
            },
            generation: state.generation,
            fence: state.fence,
            actor: myself.clone(),
            done: Box::new(done),
        });
    }

    fn tick(
        &self,
        myself: &ActorRef<DoctorMsg>,
        state: &mut DoctorState,
        snapshot_due: bool,
        now: DateTime<Utc>,
    ) {
        if state.passivating {
            return;
        }
        let (has_holds, read, expired, seq) = {
            let mut v = state.write();
            let expired = v.calendar.expired_holds(now);
            v.calendar.prune(now);
            let read = v.read_since_tick.swap(false, Ordering::Relaxed);
            let has_holds = v.calendar.live_holds(now).next().is_some();
            (has_holds, read, expired, v.calendar.seq())
        };
        for at in expired {
            self.publish(state, seq, ChangeKind::Released, Some(at));
        }
        if read {
            state.last_activity = Instant::now();
        }
        if snapshot_due {
            state.snapshot_wanted = true;
        }
        let idle_ms = state.last_activity.elapsed().as_millis() as u64;
        if idle_ms >= self.ctx.settings.passivate_after_idle_ms && state.is_quiet() && !has_holds {
            if state.is_dirty() && !self.save_snapshot(myself, state) {
                // The snapshot queue is full: passivate on a later tick, with it written.
                return;
            }
            state.passivating = true;
            EngineStats::bump(&self.ctx.stats.passivations);
            debug!(doctor_id = state.doctor_id, "passivating idle doctor actor");
            // Messages already queued are still handled; later ones are refused and their
            // callers reactivate the doctor through its shard.
            let _ = myself.drain();
        } else if state.snapshot_wanted && state.is_quiet() {
            // Done for this round when there is nothing to write (or a write is in flight)
            // or the queue took it; a full queue is tried again on the next tick.
            let done = !state.is_dirty() || self.save_snapshot(myself, state);
            state.snapshot_wanted = !done;
        }
    }

    /// Tells the doctor's watchers of a change (never called with the view locked).
    fn publish(
        &self,
        state: &DoctorState,
        seq: u64,
        kind: ChangeKind,
        start: Option<DateTime<Utc>>,
    ) {
        self.ctx.feeds.publish(state.doctor_id, seq, kind, start);
    }

    /// Encodes the (durable) state and queues it for the snapshot writers; `false` (and
    /// nothing encoded) when their queue is full, to be tried again on a later tick.
    fn save_snapshot(&self, myself: &ActorRef<DoctorMsg>, state: &mut DoctorState) -> bool {
        let Some(place) = self.ctx.snapshots.try_reserve() else {
            return false;
        };
        let (seq, blob) = {
            let v = state.read();
            (v.calendar.seq(), v.calendar.encode_snapshot())
        };
        let doctor_id = state.doctor_id;
        let snapshot = SnapshotWrite {
            doctor_id,
            seq,
            blob,
            fence: state.fence,
        };
        state.snapshot_in_flight = true;
        let ctx = Arc::clone(&self.ctx);
        let myself = myself.clone();
        tokio::spawn(async move {
            let ok = match ctx.snapshots.write(snapshot).await {
                Ok(true) => {
                    EngineStats::bump(&ctx.stats.snapshots_written);
                    true
                }
                Ok(false) => {
                    debug!(
                        doctor_id,
                        "snapshot fenced: the shard is served elsewhere now"
                    );
                    false
                }
                Err(e) => {
                    warn!(doctor_id, error = %e, "snapshot write failed");
                    false
                }
            };
            drop(place);
            let _ = myself.cast(DoctorMsg::SnapshotWritten { seq, ok });
        });
        true
    }
}

/// Decides the `Booked` events of a multi-patient booking's items for one doctor, in item
/// order; on refusal, the position (in `items`) of the first refused item and why.
fn decide_items(
    calendar: &Calendar,
    items: &[PrepareItem],
    now: DateTime<Utc>,
    rules: &crate::calendar::Rules,
) -> Result<Vec<DoctorEvent>, (usize, EngineError)> {
    let minutes = chrono::Duration::minutes(i64::from(calendar.profile().slot_minutes));
    for (i, a) in items.iter().enumerate() {
        for (j, b) in items.iter().enumerate().skip(i + 1) {
            let (x, y) = (a.request.scheduled_at, b.request.scheduled_at);
            if x < y + minutes && y < x + minutes {
                let field = format!("items[{}].scheduled_at", b.index);
                let reason = format!("overlaps items[{}] (same doctor and time)", a.index);
                return Err((j, crate::error::InvalidField::new(field, reason).into()));
            }
        }
    }
    if let [item] = items {
        return calendar
            .decide_book(&item.request, item.id, now, rules)
            .map(|event| vec![event])
            .map_err(|r| (0, EngineError::from(r)));
    }
    // Each item is decided as if the earlier ones were booked, so rules that count
    // (the doctor's daily cap) see the booking whole.
    let mut scratch = calendar.clone();
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let event = scratch
            .decide_book(&item.request, item.id, now, rules)
            .map_err(|r| (i, EngineError::from(r)))?;
        scratch.apply(scratch.seq() + 1, &event);
        events.push(event);
    }
    Ok(events)
}

/// Log form of an instant: RFC 3339 UTC, as the API answers.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
