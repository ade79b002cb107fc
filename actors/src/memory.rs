//! An in-memory [`Store`]: a real implementation of the port, with the same atomicity and
//! uniqueness guards as the SQL adapters, for embedding without a database, examples and
//! benchmarks. Nothing survives the process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::calendar::{DoctorEvent, JournalRecord};
use crate::error::StoreError;
use crate::model::{
    Consultation, ConsultationId, ConsultationStatus, DoctorId, DoctorProfile, NewDoctor,
    PatientId, SessionStatus, StoredIdempotency,
};
use crate::outbox::{
    ConsultationSummary, InboxQuery, JoinSide, Notification, NotificationKind, Recipient,
    SessionOutcome, SessionRecord, SessionTask, WebhookUpdate,
};
use crate::store::{DoctorHistory, JournalEntry, Store, StoredSnapshot};

#[derive(Default)]
struct Tables {
    doctors: BTreeMap<DoctorId, DoctorProfile>,
    /// (doctor, seq) -> when it was recorded, and the event.
    journal: BTreeMap<(DoctorId, u64), (DateTime<Utc>, DoctorEvent)>,
    consultations: BTreeMap<ConsultationId, Consultation>,
    /// (doctor, start) of every active consultation: the unique guard.
    active_slots: HashSet<(DoctorId, DateTime<Utc>)>,
    snapshots: HashMap<DoctorId, StoredSnapshot>,
    sessions: BTreeMap<ConsultationId, SessionRecord>,
    notifications: BTreeMap<i64, StoredNotification>,
    /// (patient, key) -> the stored key: unique, like the SQL stores' primary key.
    idempotency: HashMap<(PatientId, String), StoredIdempotency>,
    /// Notifications are written with no webhook due (see [`Store::queue_webhooks`]).
    webhooks_off: bool,
}

/// A notification as kept; its consultation is joined when read, as in the SQL stores.
struct StoredNotification {
    recipient: Recipient,
    kind: NotificationKind,
    consultation_id: ConsultationId,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
    /// `None` once delivered or given up.
    webhook_next_at: Option<DateTime<Utc>>,
    webhook_attempts: u32,
}

impl Tables {
    /// Settles one pending session (see [`Store::settle_sessions`]).
    fn settle(&mut self, outcome: &SessionOutcome, now: DateTime<Utc>) -> bool {
        let id = outcome.consultation_id();
        let Some(s) = self.sessions.get_mut(&id) else {
            return false;
        };
        if s.status != SessionStatus::Pending {
            return false;
        }
        s.status = outcome.status();
        s.updated_at = micros(now);
        match outcome {
            SessionOutcome::Ready {
                provider,
                provider_session_id,
                expires_at,
                ..
            } => {
                s.provider = Some(provider.clone());
                s.provider_session_id = Some(provider_session_id.clone());
                s.expires_at = Some(micros(*expires_at));
                s.last_error = None;
            }
            SessionOutcome::Failed { error, .. } => s.last_error = Some(error.clone()),
            SessionOutcome::NotRequired { .. } => {}
        }
        if let Some(c) = self.consultations.get_mut(&id) {
            c.session_status = outcome.status();
        }
        if let Some(kind) = outcome.notification() {
            self.notify(kind, id, now);
        }
        true
    }

    fn notify(
        &mut self,
        kind: NotificationKind,
        consultation_id: ConsultationId,
        at: DateTime<Utc>,
    ) {
        let Some(c) = self.consultations.get(&consultation_id) else {
            return;
        };
        let recipients = [
            Recipient::patient(c.patient_id),
            Recipient::doctor(c.doctor_id),
        ];
        for recipient in recipients {
            let id = self.notifications.keys().next_back().map_or(1, |id| id + 1);
            self.notifications.insert(
                id,
                StoredNotification {
                    recipient,
                    kind,
                    consultation_id,
                    created_at: micros(at),
                    read_at: None,
                    webhook_next_at: (!self.webhooks_off).then(|| micros(at)),
                    webhook_attempts: 0,
                },
            );
        }
    }

    fn notification(&self, id: i64, n: &StoredNotification) -> Option<Notification> {
        let c = self.consultations.get(&n.consultation_id)?;
        Some(Notification {
            id,
            recipient: n.recipient,
            kind: n.kind,
            consultation: ConsultationSummary {
                id: c.id,
                reference: c.reference.clone(),
                doctor_id: c.doctor_id,
                patient_id: c.patient_id,
                scheduled_at: c.scheduled_at,
                duration_minutes: c.duration_minutes,
                status: c.status,
                consult_mode: c.consultation_mode,
                session_status: c.session_status,
            },
            created_at: n.created_at,
            read_at: n.read_at,
            webhook_attempts: n.webhook_attempts,
        })
    }

    fn session_task(&self, s: &SessionRecord) -> Option<SessionTask> {
        let c = self.consultations.get(&s.consultation_id)?;
        Some(SessionTask {
            consultation_id: c.id,
            reference: c.reference.clone(),
            doctor_id: c.doctor_id,
            patient_id: c.patient_id,
            mode: c.consultation_mode,
            scheduled_at: c.scheduled_at,
            duration_minutes: c.duration_minutes,
            consultation_status: c.status,
            attempts: s.attempts,
        })
    }
}

/// See the module docs.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the SQL stores keep of a timestamp: microseconds.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Checks a batch against the tables without changing them, in order (a booking may
/// follow a cancellation of the same slot in one batch, a reschedule may move into a slot
/// freed earlier in it), so applying it cannot fail.
fn validate(t: &Tables, batch: &[JournalRecord]) -> Result<(), StoreError> {
    type Key = (DoctorId, DateTime<Utc>);
    let mut journal_keys = HashSet::new();
    let mut freed: HashSet<Key> = HashSet::new();
    let mut taken: HashSet<Key> = HashSet::new();
    // Where each consultation touched by the batch is now (`None`: no longer active).
    let mut moved: HashMap<ConsultationId, Option<Key>> = HashMap::new();
    let mut new_ids = HashSet::new();
    let mut new_keys: HashSet<(PatientId, &str)> = HashSet::new();
    let busy = |key: &Key, freed: &HashSet<Key>, taken: &HashSet<Key>| {
        (t.active_slots.contains(key) && !freed.contains(key)) || taken.contains(key)
    };
    for r in batch {
        if t.journal.contains_key(&(r.doctor_id, r.seq))
            || !journal_keys.insert((r.doctor_id, r.seq))
        {
            return Err(StoreError::Constraint(format!(
                "journal already has doctor {} seq {}",
                r.doctor_id, r.seq
            )));
        }
        if !t.doctors.contains_key(&r.doctor_id) {
            return Err(StoreError::Constraint(format!("no doctor {}", r.doctor_id)));
        }
        if r.member.is_some() && !matches!(r.event, DoctorEvent::Booked { .. }) {
            return Err(StoreError::Constraint(format!(
                "a booking member on a {} record belongs to no new consultation",
                r.event.kind()
            )));
        }
        if let Some(claim) = &r.idempotency {
            if t.idempotency
                .contains_key(&(claim.patient_id, claim.key.clone()))
                || !new_keys.insert((claim.patient_id, claim.key.as_str()))
            {
                return Err(StoreError::Constraint(format!(
                    "idempotency key of patient {} is already stored",
                    claim.patient_id
                )));
            }
        }
        // The active slot of consultation `id` of this doctor at this point of the batch.
        let current =
            |id: &ConsultationId, moved: &HashMap<ConsultationId, Option<Key>>| match moved.get(id)
            {
                Some(key) => *key,
                None => t
                    .consultations
                    .get(id)
                    .filter(|c| c.status.is_active() && c.doctor_id == r.doctor_id)
                    .map(|c| (c.doctor_id, c.scheduled_at)),
            };
        match &r.event {
            DoctorEvent::Booked { slot } => {
                let key = (r.doctor_id, micros(slot.start));
                if busy(&key, &freed, &taken)
                    || t.consultations.contains_key(&slot.id)
                    || !new_ids.insert(slot.id)
                {
                    return Err(StoreError::Constraint(format!(
                        "consultation {} duplicates an active slot or id",
                        slot.id
                    )));
                }
                taken.insert(key);
                moved.insert(slot.id, Some(key));
            }
            DoctorEvent::Cancelled {
                consultation_id, ..
            } => {
                if let Some(key) = current(consultation_id, &moved) {
                    taken.remove(&key);
                    freed.insert(key);
                    moved.insert(*consultation_id, None);
                }
            }
            DoctorEvent::Rescheduled {
                consultation_id,
                to,
                ..
            } => {
                // Like the SQL stores' UPDATE, a move of no active consultation does nothing.
                if let Some(old) = current(consultation_id, &moved) {
                    taken.remove(&old);
                    freed.insert(old);
                    let key = (r.doctor_id, micros(*to));
                    if busy(&key, &freed, &taken) {
                        return Err(StoreError::Constraint(format!(
                            "consultation {consultation_id} moves onto an active slot"
                        )));
                    }
                    taken.insert(key);
                    moved.insert(*consultation_id, Some(key));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn apply_projection(t: &mut Tables, r: &JournalRecord) {
    match &r.event {
        DoctorEvent::Registered { profile } => {
            t.doctors.insert(profile.id, profile.clone());
        }
        DoctorEvent::Booked { slot } => {
            t.active_slots.insert((r.doctor_id, micros(slot.start)));
            if let Some(mut c) = r.booked_consultation() {
                // As the SQL stores keep it: microsecond precision.
                c.scheduled_at = micros(c.scheduled_at);
                c.created_at = micros(c.created_at);
                t.consultations.insert(slot.id, c);
            }
            if slot.mode.needs_session() {
                t.sessions.insert(
                    slot.id,
                    SessionRecord {
                        consultation_id: slot.id,
                        status: SessionStatus::Pending,
                        attempts: 0,
                        next_attempt_at: micros(slot.created_at),
                        last_error: None,
                        provider: None,
                        provider_session_id: None,
                        doctor_join: None,
                        patient_join: None,
                        expires_at: None,
                        updated_at: micros(slot.created_at),
                    },
                );
            }
            t.notify(
                NotificationKind::ConsultationScheduled,
                slot.id,
                r.recorded_at,
            );
        }
        DoctorEvent::Cancelled {
            consultation_id,
            at,
            ..
        } => {
            if let Some(c) = t.consultations.get_mut(consultation_id) {
                if c.status.is_active() {
                    t.active_slots.remove(&(c.doctor_id, c.scheduled_at));
                }
                c.status = ConsultationStatus::Cancelled;
                c.cancelled_at = Some(micros(*at));
                t.notify(
                    NotificationKind::ConsultationCancelled,
                    *consultation_id,
                    *at,
                );
            }
        }
        DoctorEvent::Rescheduled {
            consultation_id,
            to,
            at,
            ..
        } => {
            if let Some(c) = t
                .consultations
                .get_mut(consultation_id)
                .filter(|c| c.doctor_id == r.doctor_id)
            {
                if c.status.is_active() {
                    t.active_slots.remove(&(c.doctor_id, c.scheduled_at));
                    t.active_slots.insert((c.doctor_id, micros(*to)));
                }
                c.scheduled_at = micros(*to);
                t.notify(
                    NotificationKind::ConsultationRescheduled,
                    *consultation_id,
                    *at,
                );
            }
        }
        DoctorEvent::ScheduleUpdated { .. } | DoctorEvent::StatusChanged { .. } => {
            if let Some(d) = t.doctors.get_mut(&r.doctor_id) {
                r.event.apply_to_profile(d);
            }
        }
    }
    if let Some(claim) = &r.idempotency {
        let consultation_id = match &r.event {
            DoctorEvent::Booked { slot } => Some(slot.id),
            DoctorEvent::Rescheduled {
                consultation_id, ..
            } => Some(*consultation_id),
            _ => None,
        };
        if let Some(consultation_id) = consultation_id {
            t.idempotency.insert(
                (claim.patient_id, claim.key.clone()),
                StoredIdempotency {
                    fingerprint: claim.fingerprint.clone(),
                    consultation_id,
                    expires_at: micros(claim.expires_at),
                },
            );
        }
    }
    t.journal.insert(
        (r.doctor_id, r.seq),
        (micros(r.recorded_at), r.event.clone()),
    );
}

#[async_trait]
impl Store for MemoryStore {
    async fn find_idempotency(
        &self,
        patient_id: PatientId,
        key: &str,
    ) -> Result<Option<StoredIdempotency>, StoreError> {
        Ok(self
            .tables()
            .idempotency
            .get(&(patient_id, key.to_owned()))
            .cloned())
    }

    async fn unexpired_idempotency_keys(
        &self,
        now: DateTime<Utc>,
        after: (PatientId, &str),
        limit: u32,
    ) -> Result<Vec<(PatientId, String, DateTime<Utc>)>, StoreError> {
        let t = self.tables();
        let mut keys: Vec<_> = t
            .idempotency
            .iter()
            .filter(|((p, k), s)| s.expires_at > now && (*p, k.as_str()) > after)
            .map(|((p, k), s)| (*p, k.clone(), s.expires_at))
            .collect();
        keys.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        keys.truncate(limit as usize);
        Ok(keys)
    }

    async fn forget_expired_idempotency(
        &self,
        patient_id: PatientId,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut t = self.tables();
        let k = (patient_id, key.to_owned());
        if t.idempotency.get(&k).is_some_and(|s| s.expires_at <= now) {
            t.idempotency.remove(&k);
            return Ok(true);
        }
        Ok(false)
    }

    async fn purge_idempotency(&self, now: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let mut t = self.tables();
        let expired: Vec<_> = t
            .idempotency
            .iter()
            .filter(|(_, s)| s.expires_at <= now)
            .map(|(k, _)| k.clone())
            .take(limit as usize)
            .collect();
        for k in &expired {
            t.idempotency.remove(k);
        }
        Ok(expired.len() as u64)
    }

    async fn create_doctor(
        &self,
        doctor: &NewDoctor,
        now: DateTime<Utc>,
    ) -> Result<DoctorProfile, StoreError> {
        let mut t = self.tables();
        let id = t.doctors.keys().next_back().map_or(1, |id| id + 1);
        let profile = doctor.profile(id, micros(now));
        t.doctors.insert(id, profile.clone());
        t.journal.insert(
            (id, 1),
            (
                micros(now),
                DoctorEvent::Registered {
                    profile: profile.clone(),
                },
            ),
        );
        Ok(profile)
    }

    async fn load_doctor(&self, id: DoctorId) -> Result<Option<DoctorHistory>, StoreError> {
        let t = self.tables();
        if !t.doctors.contains_key(&id) {
            return Ok(None);
        }
        let snapshot = t.snapshots.get(&id).cloned();
        let after = snapshot.as_ref().map_or(0, |s| s.seq);
        let events = t
            .journal
            .range((id, after + 1)..=(id, u64::MAX))
            .map(|(&(_, seq), (_, e))| (seq, e.clone()))
            .collect();
        Ok(Some(DoctorHistory { snapshot, events }))
    }

    async fn doctor_journal(
        &self,
        doctor_id: DoctorId,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        Ok(self
            .tables()
            .journal
            .range((doctor_id, 0)..=(doctor_id, u64::MAX))
            .rev()
            .take(limit as usize)
            .map(|(&(_, seq), (recorded_at, event))| JournalEntry {
                seq,
                recorded_at: *recorded_at,
                event: event.clone(),
            })
            .collect())
    }

    async fn append(&self, batch: &[JournalRecord]) -> Result<(), StoreError> {
        let mut t = self.tables();
        validate(&t, batch)?;
        for r in batch {
            apply_projection(&mut t, r);
        }
        Ok(())
    }

    async fn save_snapshot(
        &self,
        doctor_id: DoctorId,
        seq: u64,
        blob: &[u8],
    ) -> Result<(), StoreError> {
        self.tables().snapshots.insert(
            doctor_id,
            StoredSnapshot {
                seq,
                blob: blob.to_vec(),
            },
        );
        Ok(())
    }

    async fn delete_snapshots(&self) -> Result<u64, StoreError> {
        let mut t = self.tables();
        let n = t.snapshots.len() as u64;
        t.snapshots.clear();
        Ok(n)
    }

    async fn max_consultation_id(&self) -> Result<ConsultationId, StoreError> {
        Ok(self
            .tables()
            .consultations
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0))
    }

    async fn list_doctors(&self) -> Result<Vec<DoctorProfile>, StoreError> {
        Ok(self.tables().doctors.values().cloned().collect())
    }

    async fn get_consultation(
        &self,
        id: ConsultationId,
    ) -> Result<Option<Consultation>, StoreError> {
        Ok(self.tables().consultations.get(&id).cloned())
    }

    async fn booking_consultations(
        &self,
        booking_id: i64,
    ) -> Result<Vec<Consultation>, StoreError> {
        Ok(self
            .tables()
            .consultations
            .values()
            .filter(|c| {
                c.member
                    .as_ref()
                    .is_some_and(|m| m.booking_id == booking_id)
            })
            .take(crate::model::MAX_BOOKING_ITEMS)
            .cloned()
            .collect())
    }

    async fn patient_consultations(
        &self,
        patient_id: PatientId,
        limit: u32,
    ) -> Result<Vec<Consultation>, StoreError> {
        let mut v: Vec<_> = self
            .tables()
            .consultations
            .values()
            .filter(|c| c.patient_id == patient_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.scheduled_at.cmp(&a.scheduled_at).then(b.id.cmp(&a.id)));
        v.truncate(limit as usize);
        Ok(v)
    }

    async fn doctor_consultations(
        &self,
        doctor_id: DoctorId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Consultation>, StoreError> {
        let mut v: Vec<_> = self
            .tables()
            .consultations
            .values()
            .filter(|c| c.doctor_id == doctor_id && c.scheduled_at >= from && c.scheduled_at < to)
            .cloned()
            .collect();
        v.sort_by_key(|c| (c.scheduled_at, c.id));
        v.truncate(limit as usize);
        Ok(v)
    }

    async fn active_consultations(
        &self,
        doctor_id: Option<DoctorId>,
    ) -> Result<Vec<Consultation>, StoreError> {
        let mut v: Vec<_> = self
            .tables()
            .consultations
            .values()
            .filter(|c| c.status.is_active() && doctor_id.is_none_or(|d| c.doctor_id == d))
            .cloned()
            .collect();
        v.sort_by_key(|c| (c.doctor_id, c.scheduled_at));
        Ok(v)
    }

    async fn due_sessions(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SessionTask>, StoreError> {
        let t = self.tables();
        let mut due: Vec<&SessionRecord> = t
            .sessions
            .values()
            .filter(|s| s.status == SessionStatus::Pending && s.next_attempt_at <= now)
            .collect();
        due.sort_by_key(|s| (s.next_attempt_at, s.consultation_id));
        Ok(due
            .into_iter()
            .filter_map(|s| t.session_task(s))
            .take(limit as usize)
            .collect())
    }

    async fn pending_sessions(
        &self,
        consultation_ids: &[ConsultationId],
    ) -> Result<Vec<SessionTask>, StoreError> {
        let t = self.tables();
        Ok(consultation_ids
            .iter()
            .filter_map(|id| t.sessions.get(id))
            .filter(|s| s.status == SessionStatus::Pending)
            .filter_map(|s| t.session_task(s))
            .collect())
    }

    async fn session(
        &self,
        consultation_id: ConsultationId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.tables().sessions.get(&consultation_id).cloned())
    }

    async fn retry_session(
        &self,
        consultation_id: ConsultationId,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        if let Some(s) = self.tables().sessions.get_mut(&consultation_id) {
            if s.status == SessionStatus::Pending {
                s.attempts = attempts;
                s.next_attempt_at = micros(next_attempt_at);
                s.last_error = Some(error.to_owned());
                s.updated_at = micros(Utc::now());
            }
        }
        Ok(())
    }

    async fn settle_sessions(
        &self,
        outcomes: &[SessionOutcome],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut t = self.tables();
        Ok(outcomes.iter().map(|o| t.settle(o, now)).collect())
    }

    async fn save_join(
        &self,
        consultation_id: ConsultationId,
        side: JoinSide,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        let mut t = self.tables();
        if let Some(s) = t.sessions.get_mut(&consultation_id) {
            if s.status == SessionStatus::Ready {
                let column = match side {
                    JoinSide::Doctor => &mut s.doctor_join,
                    JoinSide::Patient => &mut s.patient_join,
                };
                *column = Some(sealed.to_vec());
            }
        }
        Ok(())
    }

    async fn notifications(&self, query: &InboxQuery) -> Result<Vec<Notification>, StoreError> {
        let t = self.tables();
        let upper = query.before_id.unwrap_or(i64::MAX);
        Ok(t.notifications
            .range(..upper)
            .rev()
            .filter(|(_, n)| {
                n.recipient == query.recipient && (!query.unread_only || n.read_at.is_none())
            })
            .filter_map(|(&id, n)| t.notification(id, n))
            .take(query.limit as usize)
            .collect())
    }

    async fn mark_notifications_read(
        &self,
        recipient: Recipient,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut t = self.tables();
        let mut changed = 0;
        for id in ids.iter().collect::<HashSet<_>>() {
            if let Some(n) = t.notifications.get_mut(id) {
                if n.recipient == recipient && n.read_at.is_none() {
                    n.read_at = Some(micros(now));
                    changed += 1;
                }
            }
        }
        Ok(changed)
    }

    fn queue_webhooks(&self, queued: bool) {
        self.tables().webhooks_off = !queued;
    }

    async fn due_webhooks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        let t = self.tables();
        let mut due: Vec<(DateTime<Utc>, i64)> = t
            .notifications
            .iter()
            .filter_map(|(&id, n)| n.webhook_next_at.filter(|at| *at <= now).map(|at| (at, id)))
            .collect();
        due.sort();
        Ok(due
            .into_iter()
            .filter_map(|(_, id)| t.notification(id, &t.notifications[&id]))
            .take(limit as usize)
            .collect())
    }

    async fn update_webhook(&self, id: i64, update: WebhookUpdate) -> Result<(), StoreError> {
        if let Some(n) = self.tables().notifications.get_mut(&id) {
            match update {
                WebhookUpdate::Delivered => {
                    n.webhook_attempts += 1;
                    n.webhook_next_at = None;
                }
                WebhookUpdate::Retry { attempts, next_at } => {
                    n.webhook_attempts = attempts;
                    n.webhook_next_at = Some(micros(next_at));
                }
                WebhookUpdate::GaveUp { attempts } => {
                    n.webhook_attempts = attempts;
                    n.webhook_next_at = None;
                }
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
