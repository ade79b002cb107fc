//! One doctor's calendar and the rules that decide against it. Everything here is a pure
//! function of the calendar, the command and `now`: no clock, no I/O, no randomness.
//!
//! Checks run in the seed's order: doctor approved and available -> day enabled (the date's
//! override, else its weekday) -> inside the day's window and outside its breaks -> on the
//! slot grid -> in the future (past the minimum notice, the engine's or the doctor's,
//! whichever is longer) -> within the doctor's booking window -> the day not yet at the
//! doctor's daily cap -> no overlapping active consultation and no other patient's live
//! hold. A reschedule runs the
//! same checks for the consultation's new start, with its own duration, and its own
//! current slot does not count as a conflict (it is freed by the same event).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::event::{ActedBy, BookedSlot, DoctorEvent};
use super::legacy::CalendarSnapshotV1;
use super::schedule::{
    validate_overrides, BookingPolicy, Breaks, DateOverrides, DayWindow, LocalTime,
};
use crate::error::{EngineError, InvalidField, Rejection, StoreError};
use crate::model::{
    BookingRequest, ConsultationId, ConsultationStatus, DoctorProfile, PatientId, Requester,
    ScheduleUpdate, StatusUpdate, MAX_SLOT_MINUTES, MIN_SLOT_MINUTES,
};
use crate::store::DoctorHistory;

/// Tunable rule parameters (from the engine settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// A booking must start more than this many minutes after `now`.
    pub min_notice_minutes: u32,
    /// How long a hold reserves a slot for its patient.
    pub hold_ttl_s: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            min_notice_minutes: 0,
            hold_ttl_s: 300,
        }
    }
}

/// A patient's short reservation of a slot; not journaled (a crash simply frees it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub patient_id: PatientId,
    pub start: DateTime<Utc>,
    pub duration_minutes: u16,
    pub expires_at: DateTime<Utc>,
}

impl Hold {
    fn end(&self) -> DateTime<Utc> {
        self.start + minutes(self.duration_minutes)
    }
}

/// What a slot looks like to a patient browsing availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotStatus {
    Available,
    Booked,
    Held,
    Past,
    /// Further ahead than the doctor's booking window.
    OutsideBookingWindow,
    /// Free, but the doctor's daily cap is reached on its date.
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotView {
    pub start: DateTime<Utc>,
    /// Wall-clock "HH:MM" in the doctor's timezone (repeated in a DST overlap).
    pub local_time: String,
    pub status: SlotStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayView {
    /// The local date in the doctor's timezone.
    pub date: NaiveDate,
    pub enabled: bool,
    pub slots: Vec<SlotView>,
    /// Whether a date override replaces the weekly window on this date.
    pub overridden: bool,
    /// The breaks that apply on this date.
    pub breaks: Breaks,
    /// Active consultations on this local date.
    pub booked: u32,
    /// Whether the doctor's daily cap is reached on this date.
    pub full: bool,
}

/// A doctor's slots over a range of local dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    pub doctor_id: i64,
    pub timezone: Tz,
    pub slot_minutes: u16,
    pub schedule: super::WeeklySchedule,
    /// The date overrides that fall in the range.
    pub date_overrides: DateOverrides,
    pub policy: BookingPolicy,
    /// Whether patients may book this doctor at all (approved and switched on).
    pub bookable: bool,
    /// Starts of active consultations whose local date lies in the range.
    pub booked_slots: Vec<DateTime<Utc>>,
    pub days: Vec<DayView>,
}

/// What a slot is now, for a slot's history: more than a patient's [`SlotStatus`], since
/// any instant may be asked about, not only the schedule's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotNow {
    Available,
    Booked,
    Held,
    Past,
    /// Not bookable for a rule of the schedule or the doctor's status (see the rule).
    Unavailable,
}

impl SlotNow {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Booked => "booked",
            Self::Held => "held",
            Self::Past => "past",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A slot as it stands now, and the first booking rule (in the seed's order) that refuses
/// it to a patient, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    pub status: SlotNow,
    pub rule: Option<Rejection>,
    /// When the live hold on the slot ends (whose it is is not said).
    pub held_until: Option<DateTime<Utc>>,
    /// The active consultation on the slot.
    pub consultation_id: Option<ConsultationId>,
}

/// Encoding version of calendar snapshots (bincode 2 of [`CalendarSnapshot`]). Version 2
/// added breaks, date overrides and the policy to the profile; version 1 snapshots still
/// load (see [`super::legacy`]).
pub const SNAPSHOT_FORMAT_VERSION: u8 = 2;

/// The durable part of a calendar; holds are deliberately left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CalendarSnapshot {
    profile: DoctorProfile,
    seq: u64,
    active: Vec<BookedSlot>,
}

/// One doctor's state: profile, schedule, active consultations by start, and holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    profile: DoctorProfile,
    /// Last journal sequence number applied.
    seq: u64,
    pub(super) active: BTreeMap<DateTime<Utc>, BookedSlot>,
    start_of: HashMap<ConsultationId, DateTime<Utc>>,
    pub(super) holds: BTreeMap<DateTime<Utc>, Hold>,
    hold_of: HashMap<PatientId, DateTime<Utc>>,
}

fn minutes(m: u16) -> Duration {
    Duration::minutes(i64::from(m))
}

/// How far back a range query must look: no consultation is longer than this.
fn max_duration() -> Duration {
    minutes(MAX_SLOT_MINUTES)
}

/// How many local dates [`Calendar::next_free`] looks through, at most.
pub const NEXT_FREE_HORIZON_DAYS: usize = 62;

/// Consultations that ended this long ago are dropped from memory by [`Calendar::prune`].
pub const PRUNE_AFTER_END_HOURS: i64 = 24;

impl Calendar {
    /// A calendar with no consultations, as after the `Registered` event at seq 1.
    pub fn new(profile: DoctorProfile) -> Self {
        Self {
            profile,
            seq: 1,
            active: BTreeMap::new(),
            start_of: HashMap::new(),
            holds: BTreeMap::new(),
            hold_of: HashMap::new(),
        }
    }

    pub fn profile(&self) -> &DoctorProfile {
        &self.profile
    }

    /// Last journal sequence number applied.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Active consultations in start order.
    pub fn active(&self) -> impl Iterator<Item = &BookedSlot> {
        self.active.values()
    }

    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Whether any hold is stored, live or expired and not yet swept.
    pub fn has_holds(&self) -> bool {
        !self.holds.is_empty()
    }

    /// Holds that have not expired at `now`.
    pub fn live_holds(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Hold> {
        self.holds.values().filter(move |h| h.expires_at > now)
    }

    /// Where `patient`'s hold on this doctor is, if any (expired or not).
    pub fn hold_of(&self, patient: PatientId) -> Option<DateTime<Utc>> {
        self.hold_of.get(&patient).copied()
    }

    /// `patient`'s hold on this doctor if it is still live at `now`.
    pub fn live_hold_of(&self, patient: PatientId, now: DateTime<Utc>) -> Option<&Hold> {
        let at = self.hold_of.get(&patient)?;
        self.holds
            .get(at)
            .filter(|h| h.patient_id == patient && h.expires_at > now)
    }

    /// Starts of the holds that have expired at `now` but are not pruned yet.
    pub fn expired_holds(&self, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        self.holds
            .values()
            .filter(|h| h.expires_at <= now)
            .map(|h| h.start)
            .collect()
    }

    pub fn slot(&self, id: ConsultationId) -> Option<&BookedSlot> {
        self.start_of.get(&id).and_then(|s| self.active.get(s))
    }

    /// Rebuilds a calendar from the store: the snapshot if there is one, then every later
    /// event in order. Sequence numbers must be contiguous.
    pub fn rebuild(history: DoctorHistory) -> Result<Self, StoreError> {
        let mut events = history.events.into_iter();
        let mut cal = match history.snapshot {
            Some(snap) => {
                let cal = Self::decode_snapshot(&snap.blob)?;
                if cal.seq != snap.seq {
                    return Err(StoreError::Corrupt(format!(
                        "snapshot of doctor {} says seq {} but is stored as seq {}",
                        cal.profile.id, cal.seq, snap.seq
                    )));
                }
                cal
            }
            None => match events.next() {
                Some((1, DoctorEvent::Registered { profile })) => Self::new(profile),
                Some((seq, e)) => {
                    return Err(StoreError::Corrupt(format!(
                        "journal starts with {} at seq {seq}, expected registered at 1",
                        e.kind()
                    )))
                }
                None => return Err(StoreError::Corrupt("journal is empty".into())),
            },
        };
        for (seq, event) in events {
            if seq != cal.seq + 1 {
                return Err(StoreError::Corrupt(format!(
                    "journal of doctor {} jumps from seq {} to {seq}",
                    cal.profile.id, cal.seq
                )));
            }
            cal.apply(seq, &event);
        }
        Ok(cal)
    }

    /// The snapshot blob: a version byte, then bincode of the durable state.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let snap = CalendarSnapshot {
            profile: self.profile.clone(),
            seq: self.seq,
            active: self.active.values().cloned().collect(),
        };
        let mut out = vec![SNAPSHOT_FORMAT_VERSION];
        bincode::serde::encode_into_std_write(&snap, &mut out, bincode::config::standard())
            .expect("writing to a Vec cannot fail");
        out
    }

    pub fn decode_snapshot(blob: &[u8]) -> Result<Self, StoreError> {
        let snap = match blob.split_first() {
            Some((&SNAPSHOT_FORMAT_VERSION, body)) => decode_exact::<CalendarSnapshot>(body)?,
            Some((1, body)) => {
                let v1 = decode_exact::<CalendarSnapshotV1>(body)?;
                CalendarSnapshot {
                    profile: v1.profile(),
                    seq: v1.seq,
                    active: v1.active,
                }
            }
            Some((v, _)) => {
                return Err(StoreError::Corrupt(format!(
                    "snapshot format version {v} is unknown"
                )))
            }
            None => return Err(StoreError::Corrupt("empty snapshot".into())),
        };
        let mut cal = Self::new(snap.profile);
        cal.seq = snap.seq;
        for slot in snap.active {
            cal.start_of.insert(slot.id, slot.start);
            cal.active.insert(slot.start, slot);
        }
        Ok(cal)
    }

    /// Applies a decided (or replayed) event. Total: never fails, never panics.
    pub fn apply(&mut self, seq: u64, event: &DoctorEvent) {
        self.seq = seq;
        match event {
            DoctorEvent::Registered { profile } => self.profile = profile.clone(),
            DoctorEvent::Booked { slot } => {
                if let Some(held_at) = self.hold_of.remove(&slot.patient_id) {
                    self.holds.remove(&held_at);
                }
                self.drop_hold_at(slot.start);
                self.start_of.insert(slot.id, slot.start);
                if let Some(old) = self.active.insert(slot.start, slot.clone()) {
                    if old.id != slot.id {
                        self.start_of.remove(&old.id);
                    }
                }
            }
            DoctorEvent::Cancelled {
                consultation_id, ..
            } => {
                if let Some(start) = self.start_of.remove(consultation_id) {
                    self.active.remove(&start);
                }
            }
            DoctorEvent::Rescheduled {
                consultation_id,
                to,
                ..
            } => {
                // Unknown ids (pruned, or replayed past) change nothing, as for cancellations.
                let Some(start) = self.start_of.get(consultation_id).copied() else {
                    return;
                };
                let Some(mut slot) = self.active.remove(&start) else {
                    return;
                };
                // Like a booking, the move uses up the patient's hold on this doctor.
                if let Some(held_at) = self.hold_of.remove(&slot.patient_id) {
                    self.holds.remove(&held_at);
                }
                self.drop_hold_at(*to);
                slot.start = *to;
                self.start_of.insert(*consultation_id, *to);
                if let Some(old) = self.active.insert(*to, slot) {
                    if old.id != *consultation_id {
                        self.start_of.remove(&old.id);
                    }
                }
            }
            DoctorEvent::ScheduleUpdated { .. } | DoctorEvent::StatusChanged { .. } => {
                event.apply_to_profile(&mut self.profile);
            }
        }
    }

    /// Active consultations whose start lies on local `date`, except `except`.
    pub fn booked_on(&self, date: NaiveDate, except: Option<ConsultationId>) -> u32 {
        let tz = self.profile.timezone;
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        // Local dates are within a day of UTC dates; filter precisely below.
        let n = self
            .active
            .range(midnight - Duration::days(1)..midnight + Duration::days(2))
            .filter(|(s, slot)| {
                Some(slot.id) != except && s.with_timezone(&tz).date_naive() == date
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether the doctor's daily cap is reached on `date` (not counting `except`).
    fn day_full(&self, date: NaiveDate, except: Option<ConsultationId>) -> bool {
        self.profile
            .policy
            .max_per_day
            .is_some_and(|max| self.booked_on(date, except) >= u32::from(max))
    }

    /// Whether a consultation at `start` of `duration` minutes lies inside the doctor's
    /// current schedule (day enabled, window, breaks, grid). Schedule changes never cancel
    /// consultations; this says which ones they left outside.
    pub fn covers(&self, start: DateTime<Utc>, duration: u16) -> bool {
        schedule_covers(&self.profile, start, duration)
    }

    /// Runs every booking check for `at`, in the seed's order. `patient` is the asker: their
    /// own hold does not conflict with them.
    pub fn check_slot(
        &self,
        patient: Option<PatientId>,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        rules: &Rules,
    ) -> Result<(), Rejection> {
        self.check_span(patient, at, self.profile.slot_minutes, None, now, rules)
    }

    /// The booking checks for a consultation of `duration` minutes starting at `at`.
    /// `moving` is a consultation being rescheduled: its current slot is freed by the same
    /// event, so it is no conflict for its new one (a 60-minute consultation may move by
    /// 30 minutes).
    fn check_span(
        &self,
        patient: Option<PatientId>,
        at: DateTime<Utc>,
        duration: u16,
        moving: Option<ConsultationId>,
        now: DateTime<Utc>,
        rules: &Rules,
    ) -> Result<(), Rejection> {
        let p = &self.profile;
        if !(p.is_approved && p.is_available) {
            return Err(Rejection::DoctorUnavailable);
        }
        let local = at.with_timezone(&p.timezone);
        let date = local.date_naive();
        let window = day_window(p, date);
        if !window.enabled {
            return Err(Rejection::DayUnavailable);
        }
        let (t, on_minute) = LocalTime::of(local.time());
        // A time between whole minutes counts as its minute here, then fails the grid.
        if !window.covers(t.minutes(), t.minutes() + duration) {
            return Err(Rejection::OutsideAvailability);
        }
        if !on_minute || !(t.minutes() - window.start.minutes()).is_multiple_of(p.slot_minutes) {
            return Err(Rejection::OffSlotGrid);
        }
        if at <= notice_end(p, now, rules) {
            return Err(Rejection::InPast);
        }
        if beyond_window(p, at, now) {
            return Err(Rejection::OutsideBookingWindow);
        }
        if self.day_full(date, moving) {
            return Err(Rejection::DayFull);
        }
        if self
            .conflicting_booking_except(at, duration, moving)
            .is_some()
            || self.conflicting_hold(patient, at, duration, now).is_some()
        {
            return Err(Rejection::Conflict);
        }
        Ok(())
    }

    /// What the slot of the doctor's current length at `at` is now: past, booked, held (by
    /// anyone), unavailable by a rule, or available; with the rule that refuses it to any
    /// patient.
    pub fn slot_state(&self, at: DateTime<Utc>, now: DateTime<Utc>, rules: &Rules) -> SlotState {
        let minutes = self.profile.slot_minutes;
        let rule = self.check_span(None, at, minutes, None, now, rules).err();
        let booking = self.conflicting_booking(at, minutes);
        let hold = self.conflicting_hold(None, at, minutes, now);
        let notice_end = now + Duration::minutes(i64::from(rules.min_notice_minutes));
        let status = if at <= notice_end {
            SlotNow::Past
        } else if booking.is_some() {
            SlotNow::Booked
        } else if hold.is_some() {
            SlotNow::Held
        } else if rule.is_some() {
            SlotNow::Unavailable
        } else {
            SlotNow::Available
        };
        SlotState {
            status,
            rule,
            held_until: hold
                .filter(|_| status == SlotNow::Held)
                .map(|h| h.expires_at),
            consultation_id: booking.map(|b| b.id),
        }
    }

    /// The active consultation overlapping `[at, at + duration)`, if any. O(log n).
    pub fn conflicting_booking(&self, at: DateTime<Utc>, duration: u16) -> Option<&BookedSlot> {
        self.conflicting_booking_except(at, duration, None)
    }

    /// Like [`Self::conflicting_booking`], ignoring consultation `except`.
    fn conflicting_booking_except(
        &self,
        at: DateTime<Utc>,
        duration: u16,
        except: Option<ConsultationId>,
    ) -> Option<&BookedSlot> {
        let end = at + minutes(duration);
        self.active
            .range((at - max_duration() + Duration::nanoseconds(1))..end)
            .map(|(_, s)| s)
            .find(|s| s.end() > at && Some(s.id) != except)
    }

    fn conflicting_hold(
        &self,
        patient: Option<PatientId>,
        at: DateTime<Utc>,
        duration: u16,
        now: DateTime<Utc>,
    ) -> Option<&Hold> {
        let end = at + minutes(duration);
        self.holds
            .range((at - max_duration() + Duration::nanoseconds(1))..end)
            .map(|(_, h)| h)
            .find(|h| h.end() > at && h.expires_at > now && Some(h.patient_id) != patient)
    }

    /// Checks the slot and reserves it for `patient` until `now + hold_ttl_s`, replacing
    /// that patient's previous hold on this doctor (one hold per patient per doctor).
    pub fn place_hold(
        &mut self,
        patient: PatientId,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        rules: &Rules,
    ) -> Result<DateTime<Utc>, Rejection> {
        self.check_slot(Some(patient), at, now, rules)?;
        self.release_hold(patient);
        let hold = Hold {
            patient_id: patient,
            start: at,
            duration_minutes: self.profile.slot_minutes,
            expires_at: now + Duration::seconds(i64::from(rules.hold_ttl_s)),
        };
        let until = hold.expires_at;
        // An expired hold of someone else may still sit on this start; it gives way.
        if let Some(old) = self.holds.insert(at, hold) {
            if old.patient_id != patient {
                self.hold_of.remove(&old.patient_id);
            }
        }
        self.hold_of.insert(patient, at);
        Ok(until)
    }

    /// Drops whatever hold sits on `at`: a start just booked can only carry an expired hold
    /// of another patient (a live one refuses the booking), and left in place its expiry
    /// would later be announced as the slot turning free.
    fn drop_hold_at(&mut self, at: DateTime<Utc>) {
        if let Some(old) = self.holds.remove(&at) {
            self.hold_of.remove(&old.patient_id);
        }
    }

    /// Drops `patient`'s hold on this doctor, if any; returns where it was.
    pub fn release_hold(&mut self, patient: PatientId) -> Option<DateTime<Utc>> {
        let at = self.hold_of.remove(&patient)?;
        self.holds.remove(&at);
        Some(at)
    }

    /// Decides a booking: all checks, then the `Booked` event for consultation `id`.
    pub fn decide_book(
        &self,
        req: &BookingRequest,
        id: ConsultationId,
        now: DateTime<Utc>,
        rules: &Rules,
    ) -> Result<DoctorEvent, Rejection> {
        self.check_slot(Some(req.patient_id), req.scheduled_at, now, rules)?;
        Ok(self.booked_event(req, id, now))
    }

    /// The `Booked` event for a request that already passed [`Self::check_slot`].
    pub fn booked_event(
        &self,
        req: &BookingRequest,
        id: ConsultationId,
        now: DateTime<Utc>,
    ) -> DoctorEvent {
        DoctorEvent::Booked {
            slot: BookedSlot {
                id,
                patient_id: req.patient_id,
                start: req.scheduled_at,
                duration_minutes: self.profile.slot_minutes,
                status: ConsultationStatus::Scheduled,
                mode: req.mode,
                created_at: now,
            },
        }
    }

    /// Decides a cancellation by `by`. Only active consultations that have not started can
    /// be cancelled; patients only their own, doctors only theirs.
    pub fn decide_cancel(
        &self,
        id: ConsultationId,
        by: Requester,
        now: DateTime<Utc>,
    ) -> Result<DoctorEvent, EngineError> {
        let slot = self
            .slot(id)
            .ok_or(EngineError::NotCancellable("consultation is not active"))?;
        match by {
            Requester::Patient(p) if p != slot.patient_id => return Err(EngineError::Forbidden),
            Requester::Doctor(d) if d != self.profile.id => return Err(EngineError::Forbidden),
            _ => {}
        }
        if slot.start <= now {
            return Err(EngineError::NotCancellable(
                "consultation has already started",
            ));
        }
        Ok(DoctorEvent::Cancelled {
            consultation_id: id,
            at: now,
            by: Some(by.into()),
        })
    }

    /// Decides moving consultation `id` to `to` for `by`, in one event: only its own
    /// patient may, only while it is active and has not started, only to another start,
    /// and the new start must pass every booking check (with the consultation's own
    /// duration; its current slot is no conflict). A rule refusal leaves it where it is.
    pub fn decide_reschedule(
        &self,
        id: ConsultationId,
        by: Requester,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        rules: &Rules,
    ) -> Result<DoctorEvent, EngineError> {
        let slot = self
            .slot(id)
            .ok_or(EngineError::NotReschedulable("consultation is not active"))?;
        match by {
            Requester::Patient(p) if p == slot.patient_id => {}
            _ => return Err(EngineError::Forbidden),
        }
        if slot.start <= now {
            return Err(EngineError::NotReschedulable(
                "consultation has already started",
            ));
        }
        if to == slot.start {
            return Err(
                InvalidField::new("scheduled_at", "is the consultation's current time").into(),
            );
        }
        self.check_span(
            Some(slot.patient_id),
            to,
            slot.duration_minutes,
            Some(id),
            now,
            rules,
        )?;
        Ok(DoctorEvent::Rescheduled {
            consultation_id: id,
            from: slot.start,
            to,
            at: now,
        })
    }

    /// Validates a schedule change and decides its event, which carries the whole new
    /// schedule (unset parts as they are). Overrides for dates before today (in the new
    /// timezone) are dropped.
    pub fn decide_schedule(
        &self,
        update: &ScheduleUpdate,
        now: DateTime<Utc>,
    ) -> Result<DoctorEvent, InvalidField> {
        let slot_minutes = update.slot_minutes.unwrap_or(self.profile.slot_minutes);
        validate_slot_minutes(slot_minutes)?;
        update.schedule.validate(slot_minutes)?;
        let timezone = update.timezone.unwrap_or(self.profile.timezone);
        let today = now.with_timezone(&timezone).date_naive();
        let overrides = update
            .date_overrides
            .as_ref()
            .unwrap_or(&self.profile.date_overrides);
        let date_overrides = validate_overrides(overrides, today, slot_minutes)?;
        let policy = update.policy.unwrap_or(self.profile.policy);
        policy.validate()?;
        Ok(DoctorEvent::ScheduleUpdated {
            timezone,
            slot_minutes,
            schedule: update.schedule,
            date_overrides,
            policy,
        })
    }

    /// Decides a status change asked for by `by`; `None` when nothing would change.
    pub fn decide_status(&self, update: StatusUpdate, by: ActedBy) -> Option<DoctorEvent> {
        let is_available = update.is_available.unwrap_or(self.profile.is_available);
        let is_approved = update.is_approved.unwrap_or(self.profile.is_approved);
        (is_available != self.profile.is_available || is_approved != self.profile.is_approved)
            .then_some(DoctorEvent::StatusChanged {
                is_available,
                is_approved,
                by: Some(by),
            })
    }

    /// The slots of `days` local dates from `from`, each with its status at `now`.
    pub fn availability(
        &self,
        from: NaiveDate,
        days: u16,
        now: DateTime<Utc>,
        rules: &Rules,
    ) -> Availability {
        let p = &self.profile;
        let notice_end = notice_end(p, now, rules);
        let mut day_views = Vec::with_capacity(usize::from(days));
        for date in from.iter_days().take(usize::from(days)) {
            let window = day_window(p, date);
            let overridden = p.date_overrides.contains_key(&date);
            let booked = self.booked_on(date, None);
            let full = p.policy.max_per_day.is_some_and(|m| booked >= u32::from(m));
            if !window.enabled {
                day_views.push(DayView {
                    date,
                    enabled: false,
                    slots: Vec::new(),
                    overridden,
                    breaks: Breaks::default(),
                    booked,
                    full,
                });
                continue;
            }
            let slots = local_slots(date, &window, p.slot_minutes, p.timezone)
                .into_iter()
                .map(|(start, t)| {
                    let status = if start <= notice_end {
                        SlotStatus::Past
                    } else if beyond_window(p, start, now) {
                        SlotStatus::OutsideBookingWindow
                    } else if self.conflicting_booking(start, p.slot_minutes).is_some() {
                        SlotStatus::Booked
                    } else if self
                        .conflicting_hold(None, start, p.slot_minutes, now)
                        .is_some()
                    {
                        SlotStatus::Held
                    } else if full {
                        SlotStatus::Full
                    } else {
                        SlotStatus::Available
                    };
                    SlotView {
                        start,
                        local_time: t.to_string(),
                        status,
                    }
                })
                .collect();
            day_views.push(DayView {
                date,
                enabled: true,
                slots,
                overridden,
                breaks: window.breaks,
                booked,
                full,
            });
        }
        let last = from + Duration::days(i64::from(days));
        // Local dates are within a day of UTC dates; filter precisely below.
        let lo = from.and_hms_opt(0, 0, 0).expect("midnight").and_utc() - Duration::days(1);
        let hi = last.and_hms_opt(0, 0, 0).expect("midnight").and_utc() + Duration::days(1);
        let booked_slots = self
            .active
            .range(lo..hi)
            .map(|(start, _)| *start)
            .filter(|s| {
                let d = s.with_timezone(&p.timezone).date_naive();
                d >= from && d < last
            })
            .collect();
        Availability {
            doctor_id: p.id,
            timezone: p.timezone,
            slot_minutes: p.slot_minutes,
            schedule: p.schedule,
            date_overrides: p
                .date_overrides
                .range(from..last)
                .map(|(d, o)| (*d, *o))
                .collect(),
            policy: p.policy,
            bookable: p.is_approved && p.is_available,
            booked_slots,
            days: day_views,
        }
    }

    /// Up to `limit` starts after `after` that `patient` could book now, earliest first:
    /// every rule holds for each (schedule, breaks, overrides, notice, window, cap, no
    /// conflict). Looks at most [`NEXT_FREE_HORIZON_DAYS`] local dates ahead and stops at
    /// the booking window.
    pub fn next_free(
        &self,
        patient: Option<PatientId>,
        after: DateTime<Utc>,
        limit: usize,
        now: DateTime<Utc>,
        rules: &Rules,
    ) -> Vec<DateTime<Utc>> {
        let p = &self.profile;
        let mut out = Vec::with_capacity(limit);
        if limit == 0 || !(p.is_approved && p.is_available) {
            return out;
        }
        let first = after.with_timezone(&p.timezone).date_naive();
        for date in first.iter_days().take(NEXT_FREE_HORIZON_DAYS) {
            let window = day_window(p, date);
            for (start, _) in local_slots(date, &window, p.slot_minutes, p.timezone) {
                if start <= after {
                    continue;
                }
                match self.check_slot(patient, start, now, rules) {
                    Ok(()) => {
                        out.push(start);
                        if out.len() == limit {
                            return out;
                        }
                    }
                    // Every later start is beyond the window too.
                    Err(Rejection::OutsideBookingWindow) => return out,
                    Err(_) => {}
                }
            }
        }
        out
    }

    /// Forgets what can no longer matter: expired holds, and consultations that ended more
    /// than [`PRUNE_AFTER_END_HOURS`] ago (bookings must start in the future, so those can
    /// never conflict again; the store keeps them).
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let any_expired = self.holds.values().any(|h| h.expires_at <= now);
        let horizon = now - Duration::hours(PRUNE_AFTER_END_HOURS) - max_duration();
        let any_old = self
            .active
            .first_key_value()
            .is_some_and(|(s, _)| *s < horizon);
        if !any_expired && !any_old {
            return;
        }
        let expired: Vec<PatientId> = self
            .holds
            .values()
            .filter(|h| h.expires_at <= now)
            .map(|h| h.patient_id)
            .collect();
        for p in expired {
            self.release_hold(p);
        }
        let keep = self.active.split_off(&horizon);
        let old = std::mem::replace(&mut self.active, keep);
        for slot in old.values() {
            self.start_of.remove(&slot.id);
        }
    }
}

/// Decodes one bincode value that must fill `body` exactly.
fn decode_exact<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, StoreError> {
    let (value, read): (T, usize) =
        bincode::serde::decode_from_slice(body, bincode::config::standard())
            .map_err(|e| StoreError::Corrupt(format!("snapshot: {e}")))?;
    if read != body.len() {
        return Err(StoreError::Corrupt(format!(
            "snapshot has {} trailing bytes",
            body.len() - read
        )));
    }
    Ok(value)
}

/// Whether a consultation at `start` of `duration` minutes lies inside `profile`'s schedule:
/// its date open, inside the window and outside the breaks, on the slot grid.
pub fn schedule_covers(profile: &DoctorProfile, start: DateTime<Utc>, duration: u16) -> bool {
    let local = start.with_timezone(&profile.timezone);
    let window = day_window(profile, local.date_naive());
    let (t, on_minute) = LocalTime::of(local.time());
    on_minute
        && window.covers(t.minutes(), t.minutes() + duration)
        && (t.minutes() - window.start.minutes()).is_multiple_of(profile.slot_minutes)
}

/// The window that applies on local `date`: the date's override, else its weekday's.
pub fn day_window(profile: &DoctorProfile, date: NaiveDate) -> DayWindow {
    match profile.date_overrides.get(&date) {
        Some(o) => o.window(),
        None => *profile.schedule.day(date.weekday()),
    }
}

/// A booking must start after this instant: the engine's minimum notice or the doctor's,
/// whichever is longer.
pub(super) fn notice_end(
    profile: &DoctorProfile,
    now: DateTime<Utc>,
    rules: &Rules,
) -> DateTime<Utc> {
    let minutes = rules
        .min_notice_minutes
        .max(profile.policy.min_notice_minutes);
    now + Duration::minutes(i64::from(minutes))
}

/// Whether `at` lies further ahead than the doctor's booking window (days of 24 h).
fn beyond_window(profile: &DoctorProfile, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    profile
        .policy
        .booking_window_days
        .is_some_and(|days| at > now + Duration::days(i64::from(days)))
}

/// Slot lengths a doctor may choose.
pub fn validate_slot_minutes(slot_minutes: u16) -> Result<(), InvalidField> {
    if (MIN_SLOT_MINUTES..=MAX_SLOT_MINUTES).contains(&slot_minutes) {
        Ok(())
    } else {
        Err(InvalidField::new(
            "slot_minutes",
            format!("must be between {MIN_SLOT_MINUTES} and {MAX_SLOT_MINUTES}"),
        ))
    }
}

/// The UTC starts of a local date's slots with their wall-clock time, in time order; slots
/// that overlap a break are left out. A local
/// time that does not exist (DST gap) gives no slot; a repeated one (DST overlap) gives one
/// slot for each instant.
pub fn local_slots(
    date: NaiveDate,
    window: &DayWindow,
    slot_minutes: u16,
    tz: Tz,
) -> Vec<(DateTime<Utc>, LocalTime)> {
    let mut out = Vec::new();
    if !window.enabled || slot_minutes == 0 {
        return out;
    }
    let mut m = window.start.minutes();
    while m + slot_minutes <= window.end.minutes() {
        if window.breaks.overlap(m, m + slot_minutes) {
            m += slot_minutes;
            continue;
        }
        let t = LocalTime::from_minutes(m).expect("within a day");
        if let Some(naive) = t.to_naive().map(|nt| date.and_time(nt)) {
            match tz.from_local_datetime(&naive) {
                LocalResult::None => {}
                LocalResult::Single(x) => out.push((x.with_timezone(&Utc), t)),
                LocalResult::Ambiguous(a, b) => {
                    out.push((a.with_timezone(&Utc), t));
                    out.push((b.with_timezone(&Utc), t));
                }
            }
        }
        m += slot_minutes;
    }
    out.sort_by_key(|(s, _)| *s);
    out.dedup_by_key(|(s, _)| *s);
    out
}
