//! Snapshot encodings of earlier versions, kept so that snapshots written by an older
//! build still load. Bincode is not self-describing: a snapshot decodes only with the
//! exact types it was written with, so those types are frozen here.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::event::BookedSlot;
use super::schedule::{Breaks, DayWindow, LocalTime, WeeklySchedule};
use crate::model::{DoctorId, DoctorProfile};

/// A day window of version 1: no breaks.
#[derive(Deserialize)]
struct DayWindowV1 {
    enabled: bool,
    start: LocalTime,
    end: LocalTime,
}

impl From<DayWindowV1> for DayWindow {
    fn from(w: DayWindowV1) -> Self {
        DayWindow {
            enabled: w.enabled,
            start: w.start,
            end: w.end,
            breaks: Breaks::default(),
        }
    }
}

#[derive(Deserialize)]
struct WeeklyScheduleV1 {
    monday: DayWindowV1,
    tuesday: DayWindowV1,
    wednesday: DayWindowV1,
    thursday: DayWindowV1,
    friday: DayWindowV1,
    saturday: DayWindowV1,
    sunday: DayWindowV1,
}

/// A profile of version 1: no date overrides, no policy.
#[derive(Deserialize)]
struct DoctorProfileV1 {
    id: DoctorId,
    name: String,
    specialty: String,
    timezone: Tz,
    slot_minutes: u16,
    schedule: WeeklyScheduleV1,
    is_available: bool,
    is_approved: bool,
    created_at: DateTime<Utc>,
}

/// The body of a version 1 snapshot (after its version byte).
#[derive(Deserialize)]
pub(super) struct CalendarSnapshotV1 {
    profile: DoctorProfileV1,
    pub seq: u64,
    pub active: Vec<BookedSlot>,
}

impl CalendarSnapshotV1 {
    /// The profile as the current version has it: no breaks, no overrides, no policy.
    pub fn profile(&self) -> DoctorProfile {
        let p = &self.profile;
        let s = &p.schedule;
        let day = |w: &DayWindowV1| {
            DayWindow::from(DayWindowV1 {
                enabled: w.enabled,
                start: w.start,
                end: w.end,
            })
        };
        DoctorProfile {
            id: p.id,
            name: p.name.clone(),
            specialty: p.specialty.clone(),
            timezone: p.timezone,
            slot_minutes: p.slot_minutes,
            schedule: WeeklySchedule {
                monday: day(&s.monday),
                tuesday: day(&s.tuesday),
                wednesday: day(&s.wednesday),
                thursday: day(&s.thursday),
                friday: day(&s.friday),
                saturday: day(&s.saturday),
                sunday: day(&s.sunday),
            },
            is_available: p.is_available,
            is_approved: p.is_approved,
            created_at: p.created_at,
            date_overrides: Default::default(),
            policy: Default::default(),
        }
    }
}
