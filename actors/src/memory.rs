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
    PatientId, SessionStatus,
};
use crate::store::{DoctorHistory, Store, StoredSnapshot};

#[derive(Default)]
struct Tables {
    doctors: BTreeMap<DoctorId, DoctorProfile>,
    journal: BTreeMap<(DoctorId, u64), DoctorEvent>,
    consultations: BTreeMap<ConsultationId, Consultation>,
    /// (doctor, start) of every active consultation: the unique guard.
    active_slots: HashSet<(DoctorId, DateTime<Utc>)>,
    snapshots: HashMap<DoctorId, StoredSnapshot>,
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
/// follow a cancellation of the same slot in one batch), so applying it cannot fail.
fn validate(t: &Tables, batch: &[JournalRecord]) -> Result<(), StoreError> {
    let mut journal_keys = HashSet::new();
    let mut freed = HashSet::new();
    let mut taken = HashSet::new();
    let mut new_ids = HashMap::new();
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
        match &r.event {
            DoctorEvent::Booked { slot } => {
                let key = (r.doctor_id, micros(slot.start));
                let busy = (t.active_slots.contains(&key) && !freed.contains(&key))
                    || taken.contains(&key);
                if busy || t.consultations.contains_key(&slot.id) || new_ids.contains_key(&slot.id)
                {
                    return Err(StoreError::Constraint(format!(
                        "consultation {} duplicates an active slot or id",
                        slot.id
                    )));
                }
                taken.insert(key);
                new_ids.insert(slot.id, key);
            }
            DoctorEvent::Cancelled {
                consultation_id, ..
            } => {
                let key = match t.consultations.get(consultation_id) {
                    Some(c) if c.status.is_active() => Some((c.doctor_id, c.scheduled_at)),
                    _ => new_ids.get(consultation_id).copied(),
                };
                if let Some(key) = key {
                    taken.remove(&key);
                    freed.insert(key);
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
            t.consultations.insert(
                slot.id,
                Consultation {
                    id: slot.id,
                    reference: slot.reference.clone(),
                    doctor_id: r.doctor_id,
                    patient_id: slot.patient_id,
                    scheduled_at: micros(slot.start),
                    duration_minutes: slot.duration_minutes,
                    status: slot.status,
                    consultation_mode: slot.mode,
                    consult_mode: slot.mode,
                    session_status: SessionStatus::initial_for(slot.mode),
                    medical: r.medical.clone(),
                    created_at: micros(slot.created_at),
                    cancelled_at: None,
                },
            );
        }
        DoctorEvent::Cancelled {
            consultation_id,
            at,
        } => {
            if let Some(c) = t.consultations.get_mut(consultation_id) {
                if c.status.is_active() {
                    t.active_slots.remove(&(c.doctor_id, c.scheduled_at));
                }
                c.status = ConsultationStatus::Cancelled;
                c.cancelled_at = Some(micros(*at));
            }
        }
        DoctorEvent::ScheduleUpdated { .. } | DoctorEvent::StatusChanged { .. } => {
            if let Some(d) = t.doctors.get_mut(&r.doctor_id) {
                r.event.apply_to_profile(d);
            }
        }
    }
    t.journal.insert((r.doctor_id, r.seq), r.event.clone());
}

#[async_trait]
impl Store for MemoryStore {
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
            DoctorEvent::Registered {
                profile: profile.clone(),
            },
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
            .map(|(&(_, seq), e)| (seq, e.clone()))
            .collect();
        Ok(Some(DoctorHistory { snapshot, events }))
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

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
