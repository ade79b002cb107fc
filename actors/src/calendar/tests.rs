//! Tests of the pure booking rules: one unit test per rule and edge (seed check order,
//! holds, cancellation, reschedule, schedule and status changes, DST, snapshots, replay, pruning,
//! availability), then property tests that drive a [`Calendar`] the way a doctor actor does
//! and check it against a naive model after every step.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::*;
use crate::error::{EngineError, InvalidField, Rejection, StoreError};
use crate::model::{
    BookingRequest, ConsultMode, ConsultationId, DoctorId, DoctorProfile, MedicalInfo, PatientId,
    Requester, ScheduleUpdate, StatusUpdate,
};
use crate::store::{DoctorHistory, JournalEntry, StoredSnapshot};

const DOCTOR: DoctorId = 7;
const LONDON: Tz = Tz::Europe__London;
const NEW_YORK: Tz = Tz::America__New_York;
const KOLKATA: Tz = Tz::Asia__Kolkata;
const KATHMANDU: Tz = Tz::Asia__Kathmandu;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// The instant of an unambiguous local wall-clock time.
fn local(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("unambiguous local time")
        .with_timezone(&Utc)
}

fn date(y: i32, mo: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, mo, d).unwrap()
}

fn hm(h: u16, m: u16) -> LocalTime {
    LocalTime::hm(h, m)
}

/// Monday 2026-06-01 00:00 UTC: the fixed `now` of most tests.
fn fixed_now() -> DateTime<Utc> {
    utc(2026, 6, 1, 0, 0)
}

/// London wall-clock time on Wednesday 2026-06-03 (BST, UTC+1), two days after `now`.
fn wed(h: u32, m: u32) -> DateTime<Utc> {
    local(LONDON, 2026, 6, 3, h, m)
}

/// An approved, available doctor: 30-minute slots, Monday to Friday 09:00-17:00 in `tz`.
fn doctor(tz: Tz) -> DoctorProfile {
    DoctorProfile {
        id: DOCTOR,
        name: "Dr Ada Lovelace".into(),
        specialty: "general practice".into(),
        timezone: tz,
        slot_minutes: 30,
        schedule: WeeklySchedule::weekdays(hm(9, 0), hm(17, 0)),
        is_available: true,
        is_approved: true,
        created_at: utc(2026, 1, 1, 0, 0),
        date_overrides: DateOverrides::new(),
        policy: BookingPolicy::default(),
    }
}

fn request(patient: PatientId, at: DateTime<Utc>) -> BookingRequest {
    BookingRequest {
        doctor_id: DOCTOR,
        patient_id: patient,
        scheduled_at: at,
        mode: ConsultMode::Video,
        medical: MedicalInfo::default(),
    }
}

fn durable(cal: &Calendar) -> (DoctorProfile, u64, Vec<BookedSlot>) {
    (
        cal.profile().clone(),
        cal.seq(),
        cal.active().cloned().collect(),
    )
}

/// Drives a calendar the way the doctor actor does: decide against the state, then apply
/// the event with the next sequence number, and keep the journal it would have written.
struct Harness {
    cal: Calendar,
    journal: Vec<(u64, DoctorEvent)>,
    next_id: ConsultationId,
    now: DateTime<Utc>,
    rules: Rules,
}

impl Harness {
    fn new(profile: DoctorProfile) -> Self {
        Self {
            journal: vec![(
                1,
                DoctorEvent::Registered {
                    profile: profile.clone(),
                },
            )],
            cal: Calendar::new(profile),
            next_id: 1,
            now: fixed_now(),
            rules: Rules::default(),
        }
    }

    fn london() -> Self {
        Self::new(doctor(LONDON))
    }

    fn commit(&mut self, event: DoctorEvent) {
        let seq = self.cal.seq() + 1;
        self.cal.apply(seq, &event);
        self.journal.push((seq, event));
    }

    fn check(&self, patient: PatientId, at: DateTime<Utc>) -> Result<(), Rejection> {
        self.cal
            .check_slot(Some(patient), at, self.now, &self.rules)
    }

    fn book(&mut self, patient: PatientId, at: DateTime<Utc>) -> Result<ConsultationId, Rejection> {
        let id = self.next_id;
        let event = self
            .cal
            .decide_book(&request(patient, at), id, self.now, &self.rules)?;
        self.next_id += 1;
        self.commit(event);
        Ok(id)
    }

    fn cancel(&mut self, id: ConsultationId, by: Requester) -> Result<(), EngineError> {
        let event = self.cal.decide_cancel(id, by, self.now)?;
        self.commit(event);
        Ok(())
    }

    fn reschedule(
        &mut self,
        id: ConsultationId,
        by: Requester,
        to: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let event = self
            .cal
            .decide_reschedule(id, by, to, self.now, &self.rules)?;
        self.commit(event);
        Ok(())
    }

    fn hold(&mut self, patient: PatientId, at: DateTime<Utc>) -> Result<DateTime<Utc>, Rejection> {
        self.cal.place_hold(patient, at, self.now, &self.rules)
    }

    fn set_schedule(&mut self, update: ScheduleUpdate) {
        let event = self
            .cal
            .decide_schedule(&update, self.now)
            .expect("valid schedule");
        self.commit(event);
    }

    fn set_status(&mut self, update: StatusUpdate) {
        let event = self
            .cal
            .decide_status(update, ActedBy::Doctor)
            .expect("a change");
        self.commit(event);
    }

    fn history(&self) -> DoctorHistory {
        DoctorHistory {
            snapshot: None,
            events: self.journal.clone(),
        }
    }

    fn statuses(&self, day: NaiveDate) -> Vec<(String, SlotStatus)> {
        self.cal.availability(day, 1, self.now, &self.rules).days[0]
            .slots
            .iter()
            .map(|s| (s.local_time.clone(), s.status))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Each rejection, in the seed's order
// ---------------------------------------------------------------------------------------

#[test]
fn a_slot_on_the_grid_inside_the_window_in_the_future_is_accepted() {
    let mut h = Harness::london();
    assert_eq!(h.check(1, wed(9, 0)), Ok(()));
    assert_eq!(h.check(1, wed(16, 30)), Ok(()));
    let id = h.book(1, wed(10, 0)).unwrap();
    let slot = h.cal.slot(id).unwrap();
    assert_eq!(slot.start, wed(10, 0));
    assert_eq!(slot.duration_minutes, 30);
    assert_eq!(slot.patient_id, 1);
    assert_eq!(slot.reference(), crate::model::reference_for(id));
    assert_eq!(slot.created_at, h.now);
    assert_eq!(h.cal.seq(), 2);
}

#[test]
fn a_booking_with_an_unapproved_doctor_is_rejected_as_doctor_unavailable() {
    let mut profile = doctor(LONDON);
    profile.is_approved = false;
    let h = Harness::new(profile);
    assert_eq!(h.check(1, wed(10, 0)), Err(Rejection::DoctorUnavailable));
}

#[test]
fn a_booking_with_a_doctor_who_switched_off_is_rejected_as_doctor_unavailable() {
    let mut h = Harness::london();
    h.set_status(StatusUpdate {
        is_available: Some(false),
        is_approved: None,
    });
    assert_eq!(h.check(1, wed(10, 0)), Err(Rejection::DoctorUnavailable));
    assert_eq!(h.book(1, wed(10, 0)), Err(Rejection::DoctorUnavailable));
    h.set_status(StatusUpdate {
        is_available: Some(true),
        is_approved: None,
    });
    assert_eq!(h.check(1, wed(10, 0)), Ok(()));
}

#[test]
fn a_booking_on_a_disabled_day_is_rejected_as_day_unavailable() {
    let h = Harness::london();
    // Saturday and Sunday are closed.
    assert_eq!(
        h.check(1, local(LONDON, 2026, 6, 6, 10, 0)),
        Err(Rejection::DayUnavailable)
    );
    assert_eq!(
        h.check(1, local(LONDON, 2026, 6, 7, 10, 0)),
        Err(Rejection::DayUnavailable)
    );
}

#[test]
fn the_day_is_the_doctors_local_day_not_the_utc_day() {
    // 23:30 Friday in New York is 03:30 Saturday UTC; a 24h Friday window accepts it.
    let mut profile = doctor(NEW_YORK);
    profile.schedule = WeeklySchedule::weekdays(hm(0, 0), LocalTime::END_OF_DAY);
    let h = Harness::new(profile);
    let friday_late = local(NEW_YORK, 2026, 6, 5, 23, 30);
    assert_eq!(friday_late.weekday(), chrono::Weekday::Sat);
    assert_eq!(h.check(1, friday_late), Ok(()));
    // 00:00 Saturday local is Saturday in both, and closed.
    assert_eq!(
        h.check(1, local(NEW_YORK, 2026, 6, 6, 0, 0)),
        Err(Rejection::DayUnavailable)
    );
}

#[test]
fn a_booking_before_the_window_opens_is_rejected_as_outside_availability() {
    let h = Harness::london();
    assert_eq!(h.check(1, wed(8, 30)), Err(Rejection::OutsideAvailability));
    assert_eq!(h.check(1, wed(8, 59)), Err(Rejection::OutsideAvailability));
    assert_eq!(h.check(1, wed(0, 0)), Err(Rejection::OutsideAvailability));
}

#[test]
fn a_booking_at_or_after_the_window_end_is_rejected_as_outside_availability() {
    let h = Harness::london();
    assert_eq!(h.check(1, wed(17, 0)), Err(Rejection::OutsideAvailability));
    assert_eq!(h.check(1, wed(17, 30)), Err(Rejection::OutsideAvailability));
    assert_eq!(h.check(1, wed(23, 30)), Err(Rejection::OutsideAvailability));
}

#[test]
fn a_booking_whose_end_would_pass_the_window_end_is_rejected_as_outside_availability() {
    let mut h = Harness::london();
    // 16:45 is also off the grid, but the window rule comes first: it would end at 17:15.
    assert_eq!(h.check(1, wed(16, 45)), Err(Rejection::OutsideAvailability));
    assert_eq!(h.check(1, wed(16, 59)), Err(Rejection::OutsideAvailability));
    // A ragged window end: 16:30 is on the grid but would end at 17:00, after 16:50.
    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: None,
        schedule: WeeklySchedule::weekdays(hm(9, 0), hm(16, 50)),
    });
    assert_eq!(h.check(1, wed(16, 30)), Err(Rejection::OutsideAvailability));
    assert_eq!(h.check(1, wed(16, 0)), Ok(()));
}

#[test]
fn the_last_slot_that_ends_exactly_at_the_window_end_is_accepted() {
    let mut h = Harness::london();
    assert_eq!(h.book(1, wed(16, 30)).map(|_| ()), Ok(()));
    // A window to midnight ("24:00") offers its last slot at 23:30.
    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: None,
        schedule: WeeklySchedule::weekdays(hm(22, 0), LocalTime::END_OF_DAY),
    });
    assert_eq!(h.check(1, wed(23, 30)), Ok(()));
    assert_eq!(
        h.statuses(date(2026, 6, 3))
            .into_iter()
            .map(|(t, _)| t)
            .collect::<Vec<_>>(),
        ["22:00", "22:30", "23:00", "23:30"]
    );
}

#[test]
fn a_booking_between_grid_points_is_rejected_as_off_slot_grid() {
    let h = Harness::london();
    for (hh, mm) in [(9, 15), (9, 1), (9, 29), (12, 10), (16, 29)] {
        assert_eq!(
            h.check(1, wed(hh, mm)),
            Err(Rejection::OffSlotGrid),
            "{hh}:{mm}"
        );
    }
}

#[test]
fn a_booking_with_seconds_or_sub_seconds_is_rejected_as_off_slot_grid() {
    let h = Harness::london();
    assert_eq!(
        h.check(1, wed(9, 0) + Duration::seconds(30)),
        Err(Rejection::OffSlotGrid)
    );
    assert_eq!(
        h.check(1, wed(9, 0) + Duration::seconds(1)),
        Err(Rejection::OffSlotGrid)
    );
    assert_eq!(
        h.check(1, wed(9, 0) + Duration::milliseconds(1)),
        Err(Rejection::OffSlotGrid)
    );
    assert_eq!(
        h.check(1, wed(9, 0) + Duration::nanoseconds(1)),
        Err(Rejection::OffSlotGrid)
    );
}

#[test]
fn the_grid_starts_at_the_window_start_not_at_the_hour() {
    let mut h = Harness::london();
    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: Some(20),
        schedule: WeeklySchedule::weekdays(hm(9, 10), hm(17, 0)),
    });
    assert_eq!(h.check(1, wed(9, 10)), Ok(()));
    assert_eq!(h.check(1, wed(9, 30)), Ok(()));
    assert_eq!(h.check(1, wed(16, 30)), Ok(()));
    assert_eq!(h.check(1, wed(10, 0)), Err(Rejection::OffSlotGrid));
    assert_eq!(h.check(1, wed(9, 0)), Err(Rejection::OutsideAvailability));
}

#[test]
fn a_doctor_in_kathmandu_has_slots_at_quarter_past_in_utc() {
    let h = Harness::new(doctor(KATHMANDU));
    let nine = local(KATHMANDU, 2026, 6, 3, 9, 0);
    assert_eq!(nine, utc(2026, 6, 3, 3, 15));
    assert_eq!(h.check(1, nine), Ok(()));
    // 09:00 UTC is 14:45 local: inside the window, off the grid.
    assert_eq!(
        h.check(1, utc(2026, 6, 3, 9, 0)),
        Err(Rejection::OffSlotGrid)
    );
}

#[test]
fn a_booking_in_the_past_is_rejected_as_in_past() {
    let mut h = Harness::london();
    h.now = wed(12, 0);
    assert_eq!(h.check(1, wed(9, 0)), Err(Rejection::InPast));
    assert_eq!(h.check(1, wed(11, 30)), Err(Rejection::InPast));
    assert_eq!(h.check(1, wed(12, 30)), Ok(()));
}

#[test]
fn a_booking_exactly_at_now_is_rejected_as_in_past() {
    let mut h = Harness::london();
    h.now = wed(12, 0);
    assert_eq!(h.check(1, wed(12, 0)), Err(Rejection::InPast));
    h.now = wed(12, 0) - Duration::nanoseconds(1);
    assert_eq!(h.check(1, wed(12, 0)), Ok(()));
}

#[test]
fn a_booking_inside_the_minimum_notice_is_rejected_as_in_past() {
    let mut h = Harness::london();
    h.rules.min_notice_minutes = 120;
    h.now = wed(10, 0);
    assert_eq!(h.check(1, wed(10, 30)), Err(Rejection::InPast));
    assert_eq!(h.check(1, wed(11, 30)), Err(Rejection::InPast));
    // Exactly at the end of the notice is still inside it.
    assert_eq!(h.check(1, wed(12, 0)), Err(Rejection::InPast));
    assert_eq!(h.check(1, wed(12, 30)), Ok(()));
    assert_eq!(h.book(1, wed(11, 0)), Err(Rejection::InPast));
}

#[test]
fn a_booking_of_an_already_booked_slot_is_rejected_as_conflict() {
    let mut h = Harness::london();
    h.book(1, wed(10, 0)).unwrap();
    assert_eq!(h.check(2, wed(10, 0)), Err(Rejection::Conflict));
    assert_eq!(h.book(2, wed(10, 0)), Err(Rejection::Conflict));
    // The same patient cannot double-book the slot either.
    assert_eq!(h.book(1, wed(10, 0)), Err(Rejection::Conflict));
    assert_eq!(h.cal.active_len(), 1);
}

#[test]
fn a_consultation_conflicts_with_starts_within_29_minutes_either_side() {
    let mut h = Harness::london();
    h.book(1, wed(10, 0)).unwrap();
    for offset in -30i64..=30 {
        let at = wed(10, 0) + Duration::minutes(offset);
        let found = h.cal.conflicting_booking(at, 30).map(|s| s.start);
        if offset.abs() <= 29 {
            assert_eq!(found, Some(wed(10, 0)), "offset {offset}");
        } else {
            assert_eq!(found, None, "offset {offset}");
        }
    }
}

#[test]
fn a_booking_29_minutes_either_side_of_a_consultation_on_an_older_grid_is_a_conflict() {
    // Existing consultations are kept when the grid moves; the new grid's slots that
    // overlap them conflict, those 30 minutes away do not.
    let mut h = Harness::london();
    h.book(1, wed(10, 0)).unwrap();
    assert_eq!(h.check(2, wed(9, 30)), Ok(()));
    assert_eq!(h.check(2, wed(10, 30)), Ok(()));

    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: None,
        schedule: WeeklySchedule::weekdays(hm(9, 29), hm(17, 0)),
    });
    assert_eq!(h.check(2, wed(10, 29)), Err(Rejection::Conflict)); // 29 after
    assert_eq!(h.check(2, wed(9, 59)), Err(Rejection::Conflict)); // 1 before
    assert_eq!(h.check(2, wed(9, 29)), Ok(())); // ends 09:59
    assert_eq!(h.check(2, wed(10, 59)), Ok(()));

    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: None,
        schedule: WeeklySchedule::weekdays(hm(9, 31), hm(17, 0)),
    });
    assert_eq!(h.check(2, wed(9, 31)), Err(Rejection::Conflict)); // 29 before
    assert_eq!(h.check(2, wed(10, 1)), Err(Rejection::Conflict)); // 1 after
    assert_eq!(h.check(2, wed(10, 31)), Ok(())); // 31 after
}

#[test]
fn a_booking_30_minutes_away_from_a_consultation_is_accepted() {
    let mut h = Harness::london();
    h.book(1, wed(10, 0)).unwrap();
    assert!(h.book(2, wed(9, 30)).is_ok());
    assert!(h.book(3, wed(10, 30)).is_ok());
    assert_eq!(h.cal.active_len(), 3);
}

#[test]
fn a_longer_consultation_blocks_every_shorter_slot_it_covers() {
    let mut h = Harness::london();
    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: Some(60),
        schedule: WeeklySchedule::weekdays(hm(9, 0), hm(17, 0)),
    });
    h.book(1, wed(10, 0)).unwrap();
    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: Some(15),
        schedule: WeeklySchedule::weekdays(hm(9, 0), hm(17, 0)),
    });
    assert_eq!(h.check(2, wed(9, 45)), Ok(()));
    for m in [0, 15, 30, 45] {
        assert_eq!(h.check(2, wed(10, m)), Err(Rejection::Conflict), "10:{m}");
    }
    assert_eq!(h.check(2, wed(11, 0)), Ok(()));
}

#[test]
fn the_earliest_failing_rule_in_seed_order_wins() {
    let saturday_past_off_grid = local(LONDON, 2026, 6, 6, 8, 10);
    let weekday_past_before_window = wed(8, 10);
    let weekday_past_off_grid = wed(9, 10);
    let weekday_past_booked = wed(9, 0);

    let mut h = Harness::london();
    h.book(1, weekday_past_booked).unwrap();
    h.now = utc(2026, 6, 10, 0, 0);

    assert_eq!(
        h.check(2, saturday_past_off_grid),
        Err(Rejection::DayUnavailable)
    );
    assert_eq!(
        h.check(2, weekday_past_before_window),
        Err(Rejection::OutsideAvailability)
    );
    assert_eq!(
        h.check(2, weekday_past_off_grid),
        Err(Rejection::OffSlotGrid)
    );
    assert_eq!(h.check(2, weekday_past_booked), Err(Rejection::InPast));

    h.set_status(StatusUpdate {
        is_available: None,
        is_approved: Some(false),
    });
    for at in [
        saturday_past_off_grid,
        weekday_past_before_window,
        weekday_past_off_grid,
        weekday_past_booked,
    ] {
        assert_eq!(h.check(2, at), Err(Rejection::DoctorUnavailable));
    }
}

#[test]
fn rejections_carry_the_api_codes() {
    let codes: Vec<_> = [
        Rejection::DoctorUnavailable,
        Rejection::DayUnavailable,
        Rejection::OutsideAvailability,
        Rejection::OffSlotGrid,
        Rejection::InPast,
        Rejection::Conflict,
    ]
    .iter()
    .map(|r| r.code())
    .collect();
    assert_eq!(
        codes,
        [
            "doctor_unavailable",
            "day_unavailable",
            "outside_availability",
            "off_slot_grid",
            "in_past",
            "time_slot_conflict"
        ]
    );
    assert_eq!(
        Rejection::Conflict.to_string(),
        "This time slot was just booked by another patient. Please select a different time."
    );
}

// ---------------------------------------------------------------------------------------
// Holds
// ---------------------------------------------------------------------------------------

#[test]
fn a_hold_lasts_the_configured_ttl() {
    let mut h = Harness::london();
    h.rules.hold_ttl_s = 300;
    assert_eq!(h.hold(1, wed(10, 0)), Ok(h.now + Duration::seconds(300)));
    let holds: Vec<_> = h.cal.live_holds(h.now).cloned().collect();
    assert_eq!(
        holds,
        [Hold {
            patient_id: 1,
            start: wed(10, 0),
            duration_minutes: 30,
            expires_at: h.now + Duration::seconds(300),
        }]
    );
}

#[test]
fn a_slot_held_by_one_patient_is_a_conflict_for_another() {
    let mut h = Harness::london();
    h.hold(1, wed(10, 0)).unwrap();
    assert_eq!(h.check(2, wed(10, 0)), Err(Rejection::Conflict));
    assert_eq!(h.book(2, wed(10, 0)), Err(Rejection::Conflict));
    assert_eq!(
        h.cal.check_slot(None, wed(10, 0), h.now, &h.rules),
        Err(Rejection::Conflict)
    );
    assert_eq!(h.hold(2, wed(10, 0)), Err(Rejection::Conflict));
    // The neighbours are free.
    assert_eq!(h.check(2, wed(9, 30)), Ok(()));
    assert_eq!(h.check(2, wed(10, 30)), Ok(()));
}

#[test]
fn the_holder_passes_the_check_for_their_own_held_slot() {
    let mut h = Harness::london();
    h.hold(1, wed(10, 0)).unwrap();
    assert_eq!(h.check(1, wed(10, 0)), Ok(()));
}

#[test]
fn an_expired_hold_frees_the_slot() {
    let mut h = Harness::london();
    let until = h.hold(1, wed(10, 0)).unwrap();
    h.now = until - Duration::seconds(1);
    assert_eq!(h.check(2, wed(10, 0)), Err(Rejection::Conflict));
    h.now = until;
    assert_eq!(h.check(2, wed(10, 0)), Ok(()));
    assert_eq!(h.cal.live_holds(h.now).count(), 0);
    assert!(h.book(2, wed(10, 0)).is_ok());
}

#[test]
fn a_booking_over_an_expired_hold_drops_it_so_its_expiry_is_never_announced() {
    // The expired hold is still stored until the tick prunes it; the booking (of another
    // patient, and a reschedule onto another expired hold) must take it away, or the tick
    // would report the booked start as released (the live stream's "available").
    let mut h = Harness::london();
    let until = h.hold(1, wed(10, 0)).unwrap();
    h.hold(3, wed(11, 0)).unwrap();
    h.now = until;
    assert_eq!(h.cal.expired_holds(h.now), [wed(10, 0), wed(11, 0)]);
    let id = h.book(2, wed(10, 0)).unwrap();
    assert_eq!(h.cal.expired_holds(h.now), [wed(11, 0)]);
    h.reschedule(id, Requester::Patient(2), wed(11, 0)).unwrap();
    assert!(h.cal.expired_holds(h.now).is_empty());
    // The holders own nothing any more: their next holds are their only ones.
    assert_eq!(h.cal.release_hold(1), None);
    assert_eq!(h.cal.release_hold(3), None);
}

#[test]
fn an_expired_hold_of_another_patient_gives_way_to_a_new_hold() {
    let mut h = Harness::london();
    let until = h.hold(1, wed(10, 0)).unwrap();
    h.now = until;
    h.hold(2, wed(10, 0)).unwrap();
    let live: Vec<_> = h.cal.live_holds(h.now).map(|x| x.patient_id).collect();
    assert_eq!(live, [2]);
    // Patient 1 no longer owns anything: a new hold of theirs leaves patient 2's alone.
    h.hold(1, wed(11, 0)).unwrap();
    assert_eq!(h.check(3, wed(10, 0)), Err(Rejection::Conflict));
    assert_eq!(h.check(3, wed(11, 0)), Err(Rejection::Conflict));
    assert_eq!(h.cal.release_hold(1), Some(wed(11, 0)));
    assert_eq!(h.cal.release_hold(2), Some(wed(10, 0)));
    assert_eq!(h.cal.live_holds(DateTime::<Utc>::MIN_UTC).count(), 0);
}

#[test]
fn booking_by_the_holder_consumes_the_hold() {
    let mut h = Harness::london();
    h.hold(1, wed(10, 0)).unwrap();
    h.book(1, wed(10, 0)).unwrap();
    assert_eq!(h.cal.live_holds(DateTime::<Utc>::MIN_UTC).count(), 0);
    assert_eq!(h.cal.release_hold(1), None);
    assert_eq!(h.check(2, wed(10, 0)), Err(Rejection::Conflict));
}

#[test]
fn a_booking_elsewhere_by_the_holder_also_releases_the_hold() {
    let mut h = Harness::london();
    h.hold(1, wed(10, 0)).unwrap();
    h.book(1, wed(11, 0)).unwrap();
    assert_eq!(h.cal.live_holds(h.now).count(), 0);
    assert_eq!(h.check(2, wed(10, 0)), Ok(()));
}

#[test]
fn a_new_hold_by_the_same_patient_replaces_the_old_one() {
    let mut h = Harness::london();
    h.hold(1, wed(10, 0)).unwrap();
    h.now += Duration::seconds(10);
    let until = h.hold(1, wed(11, 0)).unwrap();
    assert_eq!(until, h.now + Duration::seconds(300));
    let holds: Vec<_> = h.cal.live_holds(h.now).map(|x| x.start).collect();
    assert_eq!(holds, [wed(11, 0)]);
    assert_eq!(h.check(2, wed(10, 0)), Ok(()));
    assert_eq!(h.check(2, wed(11, 0)), Err(Rejection::Conflict));
    // Holding the same slot again refreshes it.
    h.now += Duration::seconds(100);
    assert_eq!(h.hold(1, wed(11, 0)), Ok(h.now + Duration::seconds(300)));
    assert_eq!(h.cal.live_holds(h.now).count(), 1);
}

#[test]
fn a_hold_on_a_booked_slot_fails_with_conflict() {
    let mut h = Harness::london();
    h.book(1, wed(10, 0)).unwrap();
    assert_eq!(h.hold(2, wed(10, 0)), Err(Rejection::Conflict));
    assert_eq!(h.hold(1, wed(10, 0)), Err(Rejection::Conflict));
    assert_eq!(h.cal.live_holds(h.now).count(), 0);
}

#[test]
fn a_failed_hold_keeps_the_patients_previous_hold() {
    let mut h = Harness::london();
    h.book(1, wed(10, 0)).unwrap();
    h.hold(2, wed(11, 0)).unwrap();
    assert_eq!(h.hold(2, wed(10, 0)), Err(Rejection::Conflict));
    assert_eq!(h.hold(2, wed(8, 0)), Err(Rejection::OutsideAvailability));
    let holds: Vec<_> = h.cal.live_holds(h.now).map(|x| x.start).collect();
    assert_eq!(holds, [wed(11, 0)]);
}

#[test]
fn a_hold_runs_every_booking_rule() {
    let mut h = Harness::london();
    assert_eq!(
        h.hold(1, local(LONDON, 2026, 6, 6, 10, 0)),
        Err(Rejection::DayUnavailable)
    );
    assert_eq!(h.hold(1, wed(9, 15)), Err(Rejection::OffSlotGrid));
    h.now = wed(12, 0);
    assert_eq!(h.hold(1, wed(12, 0)), Err(Rejection::InPast));
}

// ---------------------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------------------

#[test]
fn a_patient_can_cancel_their_own_consultation() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    let event = h
        .cal
        .decide_cancel(id, Requester::Patient(1), h.now)
        .unwrap();
    assert_eq!(
        event,
        DoctorEvent::Cancelled {
            consultation_id: id,
            at: h.now,
            by: Some(ActedBy::Patient),
        }
    );
    h.commit(event);
    assert_eq!(h.cal.slot(id), None);
    assert_eq!(h.cal.active_len(), 0);
}

#[test]
fn a_patient_cannot_cancel_another_patients_consultation() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    assert_eq!(
        h.cancel(id, Requester::Patient(2)),
        Err(EngineError::Forbidden)
    );
    assert!(h.cal.slot(id).is_some());
}

#[test]
fn the_doctor_can_cancel_their_consultation_but_another_doctor_cannot() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    assert_eq!(
        h.cancel(id, Requester::Doctor(DOCTOR + 1)),
        Err(EngineError::Forbidden)
    );
    assert_eq!(h.cancel(id, Requester::Doctor(DOCTOR)), Ok(()));
    assert_eq!(h.cal.slot(id), None);
}

#[test]
fn an_admin_can_cancel_any_consultation() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    assert_eq!(h.cancel(id, Requester::Admin), Ok(()));
    assert_eq!(h.cal.slot(id), None);
}

#[test]
fn a_consultation_that_has_started_is_not_cancellable() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    h.now = wed(10, 0);
    assert!(matches!(
        h.cancel(id, Requester::Patient(1)),
        Err(EngineError::NotCancellable(_))
    ));
    h.now = wed(10, 15);
    assert!(matches!(
        h.cancel(id, Requester::Admin),
        Err(EngineError::NotCancellable(_))
    ));
    // Just before the start it still can be.
    h.now = wed(10, 0) - Duration::seconds(1);
    assert_eq!(h.cancel(id, Requester::Patient(1)), Ok(()));
}

#[test]
fn an_unknown_or_already_cancelled_consultation_is_not_cancellable() {
    let mut h = Harness::london();
    assert!(matches!(
        h.cancel(99, Requester::Admin),
        Err(EngineError::NotCancellable(_))
    ));
    let id = h.book(1, wed(10, 0)).unwrap();
    h.cancel(id, Requester::Patient(1)).unwrap();
    assert!(matches!(
        h.cancel(id, Requester::Patient(1)),
        Err(EngineError::NotCancellable(_))
    ));
    // A stranger learns nothing more than the owner about an inactive consultation.
    assert!(matches!(
        h.cancel(id, Requester::Patient(2)),
        Err(EngineError::NotCancellable(_))
    ));
}

#[test]
fn after_a_cancellation_the_slot_is_bookable_again() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    assert_eq!(h.check(2, wed(10, 0)), Err(Rejection::Conflict));
    h.cancel(id, Requester::Patient(1)).unwrap();
    assert_eq!(h.check(2, wed(10, 0)), Ok(()));
    let again = h.book(2, wed(10, 0)).unwrap();
    assert_ne!(again, id);
    assert_eq!(h.cal.slot(again).unwrap().patient_id, 2);
}

#[test]
fn cancelling_an_unknown_id_in_replay_changes_nothing_but_the_sequence() {
    let mut h = Harness::london();
    h.book(1, wed(10, 0)).unwrap();
    let before = durable(&h.cal);
    h.commit(DoctorEvent::Cancelled {
        consultation_id: 424_242,
        at: h.now,
        by: None,
    });
    let after = durable(&h.cal);
    assert_eq!((before.0, before.2), (after.0, after.2));
    assert_eq!(after.1, before.1 + 1);
}

// ---------------------------------------------------------------------------------------
// Reschedule
// ---------------------------------------------------------------------------------------

#[test]
fn a_patient_can_move_their_consultation_in_one_event_that_frees_the_old_slot() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    let before = h.cal.slot(id).cloned().unwrap();
    let event = h
        .cal
        .decide_reschedule(id, Requester::Patient(1), wed(14, 0), h.now, &h.rules)
        .unwrap();
    assert_eq!(
        event,
        DoctorEvent::Rescheduled {
            consultation_id: id,
            from: wed(10, 0),
            to: wed(14, 0),
            at: h.now,
        }
    );
    assert_eq!(event.kind(), "rescheduled");
    h.commit(event);
    let after = h.cal.slot(id).cloned().unwrap();
    assert_eq!(
        after,
        BookedSlot {
            start: wed(14, 0),
            ..before
        },
        "same id, reference, patient, mode, duration and creation time"
    );
    assert_eq!(h.cal.active_len(), 1);
    assert_eq!(h.check(2, wed(10, 0)), Ok(()), "the old slot is free");
    assert_eq!(h.check(2, wed(14, 0)), Err(Rejection::Conflict));
}

#[test]
fn a_consultation_moved_by_part_of_its_own_length_does_not_conflict_with_itself() {
    let mut h = Harness::london();
    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: Some(60),
        schedule: WeeklySchedule::weekdays(hm(9, 0), hm(17, 0)),
    });
    let id = h.book(1, wed(10, 0)).unwrap();
    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: Some(30),
        schedule: WeeklySchedule::weekdays(hm(9, 0), hm(17, 0)),
    });
    // 10:00-11:00 -> 10:30-11:30: the overlap is with itself only.
    assert_eq!(h.reschedule(id, Requester::Patient(1), wed(10, 30)), Ok(()));
    let slot = h.cal.slot(id).unwrap();
    assert_eq!((slot.start, slot.duration_minutes), (wed(10, 30), 60));
    assert_eq!(h.check(2, wed(10, 0)), Ok(()));
    for (hh, mm) in [(10, 30), (11, 0)] {
        assert_eq!(
            h.check(2, wed(hh, mm)),
            Err(Rejection::Conflict),
            "{hh}:{mm}"
        );
    }
    assert_eq!(h.check(2, wed(11, 30)), Ok(()));
    // And back by half an hour.
    assert_eq!(h.reschedule(id, Requester::Patient(1), wed(10, 0)), Ok(()));
    assert_eq!(h.check(2, wed(11, 0)), Ok(()));
    // It keeps its own length: the last 30-minute slot of the day cannot hold it.
    assert_eq!(
        h.reschedule(id, Requester::Patient(1), wed(16, 30)),
        Err(EngineError::Rejected(Rejection::OutsideAvailability))
    );
    assert_eq!(h.reschedule(id, Requester::Patient(1), wed(16, 0)), Ok(()));
}

#[test]
fn a_reschedule_onto_another_consultation_or_another_patients_hold_is_a_conflict_and_moves_nothing()
{
    let mut h = Harness::london();
    let mine = h.book(1, wed(10, 0)).unwrap();
    h.book(2, wed(11, 0)).unwrap();
    h.hold(3, wed(12, 0)).unwrap();
    let before = h.cal.clone();
    for (to, what) in [
        (wed(11, 0), "another consultation"),
        (wed(12, 0), "another patient's hold"),
    ] {
        assert_eq!(
            h.cal
                .decide_reschedule(mine, Requester::Patient(1), to, h.now, &h.rules),
            Err(EngineError::Rejected(Rejection::Conflict)),
            "{what}"
        );
    }
    assert_eq!(h.cal, before, "a refusal changes nothing");
    // The patient's own hold is no conflict, and the move uses it up.
    h.hold(1, wed(15, 0)).unwrap();
    assert_eq!(
        h.reschedule(mine, Requester::Patient(1), wed(15, 0)),
        Ok(())
    );
    assert_eq!(h.cal.hold_of(1), None);
    assert_eq!(
        h.cal
            .live_holds(h.now)
            .map(|x| x.patient_id)
            .collect::<Vec<_>>(),
        [3]
    );
}

#[test]
fn a_reschedule_elsewhere_also_releases_the_patients_hold_like_a_booking() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    h.hold(1, wed(12, 0)).unwrap();
    h.reschedule(id, Requester::Patient(1), wed(14, 0)).unwrap();
    assert_eq!(h.cal.hold_of(1), None);
    assert_eq!(h.check(2, wed(12, 0)), Ok(()));
}

#[test]
fn a_reschedule_runs_every_booking_rule_for_the_new_time() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    let saturday = local(LONDON, 2026, 6, 6, 10, 0);
    let cases = [
        (saturday, Rejection::DayUnavailable),
        (wed(8, 30), Rejection::OutsideAvailability),
        (wed(17, 0), Rejection::OutsideAvailability),
        (wed(10, 15), Rejection::OffSlotGrid),
        (wed(10, 30) + Duration::seconds(1), Rejection::OffSlotGrid),
    ];
    for (to, rejection) in cases {
        assert_eq!(
            h.reschedule(id, Requester::Patient(1), to),
            Err(EngineError::Rejected(rejection)),
            "{to}"
        );
    }
    h.now = local(LONDON, 2026, 6, 2, 9, 0);
    assert_eq!(
        h.reschedule(id, Requester::Patient(1), local(LONDON, 2026, 6, 2, 9, 0)),
        Err(EngineError::Rejected(Rejection::InPast))
    );
    h.rules.min_notice_minutes = 60;
    assert_eq!(
        h.reschedule(id, Requester::Patient(1), local(LONDON, 2026, 6, 2, 10, 0)),
        Err(EngineError::Rejected(Rejection::InPast))
    );
    h.set_status(StatusUpdate {
        is_available: Some(false),
        is_approved: None,
    });
    assert_eq!(
        h.reschedule(id, Requester::Patient(1), wed(14, 0)),
        Err(EngineError::Rejected(Rejection::DoctorUnavailable))
    );
    assert_eq!(
        h.cal.slot(id).unwrap().start,
        wed(10, 0),
        "still where it was"
    );
}

#[test]
fn only_the_consultations_own_patient_may_reschedule_it() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    for by in [
        Requester::Patient(2),
        Requester::Doctor(DOCTOR),
        Requester::Doctor(DOCTOR + 1),
        Requester::Admin,
    ] {
        assert_eq!(
            h.reschedule(id, by, wed(14, 0)),
            Err(EngineError::Forbidden),
            "{by:?}"
        );
    }
    assert_eq!(h.cal.slot(id).unwrap().start, wed(10, 0));
}

#[test]
fn an_unknown_cancelled_or_started_consultation_is_not_reschedulable() {
    let mut h = Harness::london();
    assert!(matches!(
        h.reschedule(99, Requester::Patient(1), wed(14, 0)),
        Err(EngineError::NotReschedulable(_))
    ));
    let cancelled = h.book(1, wed(9, 0)).unwrap();
    h.cancel(cancelled, Requester::Patient(1)).unwrap();
    // A stranger learns nothing more than the owner about an inactive consultation.
    for by in [Requester::Patient(1), Requester::Patient(2)] {
        assert!(matches!(
            h.reschedule(cancelled, by, wed(14, 0)),
            Err(EngineError::NotReschedulable(_))
        ));
    }
    let started = h.book(1, wed(10, 0)).unwrap();
    h.now = wed(10, 0);
    assert!(matches!(
        h.reschedule(started, Requester::Patient(1), wed(14, 0)),
        Err(EngineError::NotReschedulable(_))
    ));
    h.now = wed(10, 0) - Duration::seconds(1);
    assert_eq!(
        h.reschedule(started, Requester::Patient(1), wed(14, 0)),
        Ok(())
    );
}

#[test]
fn rescheduling_to_the_current_time_is_invalid_on_scheduled_at() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    assert_eq!(
        h.reschedule(id, Requester::Patient(1), wed(10, 0)),
        Err(EngineError::Invalid(InvalidField::new(
            "scheduled_at",
            "is the consultation's current time"
        )))
    );
}

#[test]
fn rescheduling_an_unknown_id_in_replay_changes_nothing_but_the_sequence() {
    let mut h = Harness::london();
    h.book(1, wed(10, 0)).unwrap();
    let before = durable(&h.cal);
    h.commit(DoctorEvent::Rescheduled {
        consultation_id: 424_242,
        from: wed(10, 0),
        to: wed(11, 0),
        at: h.now,
    });
    let after = durable(&h.cal);
    assert_eq!((before.0, before.2), (after.0, after.2));
    assert_eq!(after.1, before.1 + 1);
}

#[test]
fn two_consultations_can_swap_through_a_free_slot() {
    let mut h = Harness::london();
    let a = h.book(1, wed(10, 0)).unwrap();
    let b = h.book(2, wed(11, 0)).unwrap();
    h.reschedule(a, Requester::Patient(1), wed(12, 0)).unwrap();
    h.reschedule(b, Requester::Patient(2), wed(10, 0)).unwrap();
    h.reschedule(a, Requester::Patient(1), wed(11, 0)).unwrap();
    assert_eq!(h.cal.slot(a).unwrap().start, wed(11, 0));
    assert_eq!(h.cal.slot(b).unwrap().start, wed(10, 0));
    assert_eq!(h.check(3, wed(12, 0)), Ok(()));
    let rebuilt = Calendar::rebuild(h.history()).unwrap();
    assert_eq!(durable(&rebuilt), durable(&h.cal));
}

// ---------------------------------------------------------------------------------------
// Schedule and status changes
// ---------------------------------------------------------------------------------------

#[test]
fn slot_minutes_outside_the_bounds_are_invalid() {
    let h = Harness::london();
    let update = |slot_minutes| ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: Some(slot_minutes),
        schedule: WeeklySchedule::weekdays(hm(8, 0), hm(18, 0)),
    };
    for bad in [0, 1, 4, 241, 1440] {
        let err = h.cal.decide_schedule(&update(bad), h.now).unwrap_err();
        assert_eq!(err.field, "slot_minutes", "{bad}");
    }
    for good in [5, 15, 30, 240] {
        assert!(
            h.cal.decide_schedule(&update(good), h.now).is_ok(),
            "{good}"
        );
    }
    assert!(validate_slot_minutes(crate::model::MIN_SLOT_MINUTES).is_ok());
    assert!(validate_slot_minutes(crate::model::MAX_SLOT_MINUTES).is_ok());
}

#[test]
fn a_window_whose_start_is_not_before_its_end_is_invalid() {
    let h = Harness::london();
    let mut schedule = WeeklySchedule::weekdays(hm(9, 0), hm(17, 0));
    schedule.tuesday = DayWindow::open(hm(12, 0), hm(12, 0));
    let err = h
        .cal
        .decide_schedule(
            &ScheduleUpdate {
                date_overrides: None,
                policy: None,
                timezone: None,
                slot_minutes: None,
                schedule,
            },
            h.now,
        )
        .unwrap_err();
    assert_eq!(err.field, "availability_schedule.tuesday");
    schedule.tuesday = DayWindow::open(hm(13, 0), hm(12, 0));
    assert!(h
        .cal
        .decide_schedule(
            &ScheduleUpdate {
                date_overrides: None,
                policy: None,
                timezone: None,
                slot_minutes: None,
                schedule,
            },
            h.now
        )
        .is_err());
    // A disabled day's times are not checked.
    schedule.tuesday.enabled = false;
    assert!(h
        .cal
        .decide_schedule(
            &ScheduleUpdate {
                date_overrides: None,
                policy: None,
                timezone: None,
                slot_minutes: None,
                schedule,
            },
            h.now
        )
        .is_ok());
}

#[test]
fn a_window_shorter_than_the_slot_is_invalid_with_the_current_or_new_slot_length() {
    let h = Harness::london();
    let schedule = WeeklySchedule::weekdays(hm(9, 0), hm(9, 45));
    let with = |slot_minutes| ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes,
        schedule,
    };
    assert!(h.cal.decide_schedule(&with(None), h.now).is_ok()); // 30 fits in 45
    assert!(h.cal.decide_schedule(&with(Some(45)), h.now).is_ok());
    assert!(h.cal.decide_schedule(&with(Some(60)), h.now).is_err());
}

#[test]
fn a_schedule_update_keeps_unset_fields_and_changes_check_results() {
    let mut h = Harness::london();
    let id = h.book(1, wed(10, 0)).unwrap();
    let event = h
        .cal
        .decide_schedule(
            &ScheduleUpdate {
                date_overrides: None,
                policy: None,
                timezone: Some(NEW_YORK),
                slot_minutes: Some(60),
                schedule: WeeklySchedule::every_day(DayWindow::open(hm(8, 0), hm(12, 0))),
            },
            h.now,
        )
        .unwrap();
    assert_eq!(
        event,
        DoctorEvent::ScheduleUpdated {
            timezone: NEW_YORK,
            slot_minutes: 60,
            schedule: WeeklySchedule::every_day(DayWindow::open(hm(8, 0), hm(12, 0))),
            date_overrides: DateOverrides::new(),
            policy: BookingPolicy::default(),
        }
    );
    h.commit(event);
    let sat = |hh, mm| local(NEW_YORK, 2026, 6, 6, hh, mm);
    assert_eq!(h.check(2, sat(8, 0)), Ok(()));
    assert_eq!(h.check(2, sat(11, 0)), Ok(()));
    assert_eq!(h.check(2, sat(8, 30)), Err(Rejection::OffSlotGrid));
    assert_eq!(h.check(2, sat(11, 30)), Err(Rejection::OutsideAvailability));
    assert_eq!(h.check(2, sat(12, 0)), Err(Rejection::OutsideAvailability));
    // The existing 30-minute consultation is kept, with its own length.
    let slot = h.cal.slot(id).unwrap();
    assert_eq!((slot.start, slot.duration_minutes), (wed(10, 0), 30));
    // Only the schedule changes when the timezone and slot length are left out.
    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: None,
        schedule: WeeklySchedule::weekdays(hm(9, 0), hm(17, 0)),
    });
    assert_eq!(h.cal.profile().timezone, NEW_YORK);
    assert_eq!(h.cal.profile().slot_minutes, 60);
}

#[test]
fn decide_status_returns_none_when_nothing_changes() {
    let mut h = Harness::london();
    assert_eq!(
        h.cal
            .decide_status(StatusUpdate::default(), ActedBy::Doctor),
        None
    );
    assert_eq!(
        h.cal.decide_status(
            StatusUpdate {
                is_available: Some(true),
                is_approved: Some(true),
            },
            ActedBy::Doctor
        ),
        None
    );
    let off = h.cal.decide_status(
        StatusUpdate {
            is_available: Some(false),
            is_approved: None,
        },
        ActedBy::Doctor,
    );
    assert_eq!(
        off,
        Some(DoctorEvent::StatusChanged {
            is_available: false,
            is_approved: true,
            by: Some(ActedBy::Doctor),
        })
    );
    h.commit(off.unwrap());
    assert_eq!(
        h.cal.decide_status(
            StatusUpdate {
                is_available: Some(false),
                is_approved: None,
            },
            ActedBy::Doctor
        ),
        None
    );
    assert_eq!(
        h.cal.decide_status(
            StatusUpdate {
                is_available: None,
                is_approved: Some(false),
            },
            ActedBy::Admin
        ),
        Some(DoctorEvent::StatusChanged {
            is_available: false,
            is_approved: false,
            by: Some(ActedBy::Admin),
        })
    );
}

// ---------------------------------------------------------------------------------------
// Daylight saving time
// ---------------------------------------------------------------------------------------

/// A doctor open 00:00-04:00 every day with 30-minute slots, `now` well before `day`.
fn night_doctor(tz: Tz, now: DateTime<Utc>) -> Harness {
    let mut profile = doctor(tz);
    profile.schedule = WeeklySchedule::every_day(DayWindow::open(hm(0, 0), hm(4, 0)));
    let mut h = Harness::new(profile);
    h.now = now;
    h
}

fn slots_of(h: &Harness, day: NaiveDate) -> Vec<(String, DateTime<Utc>)> {
    h.cal.availability(day, 1, h.now, &h.rules).days[0]
        .slots
        .iter()
        .map(|s| (s.local_time.clone(), s.start))
        .collect()
}

fn owned(slots: &[(&str, DateTime<Utc>)]) -> Vec<(String, DateTime<Utc>)> {
    slots.iter().map(|(t, s)| (t.to_string(), *s)).collect()
}

#[test]
fn london_spring_forward_day_has_no_slots_in_the_gap() {
    let h = night_doctor(LONDON, utc(2026, 3, 1, 0, 0));
    let day = date(2026, 3, 29);
    assert_eq!(
        slots_of(&h, day),
        owned(&[
            ("00:00", utc(2026, 3, 29, 0, 0)),
            ("00:30", utc(2026, 3, 29, 0, 30)),
            ("02:00", utc(2026, 3, 29, 1, 0)),
            ("02:30", utc(2026, 3, 29, 1, 30)),
            ("03:00", utc(2026, 3, 29, 2, 0)),
            ("03:30", utc(2026, 3, 29, 2, 30)),
        ])
    );
    // Every instant around the gap resolves to an existing local time; the rules accept
    // exactly the listed ones.
    for m in (0..180).step_by(30) {
        let at = utc(2026, 3, 29, 0, 0) + Duration::minutes(m);
        assert_eq!(h.check(1, at), Ok(()), "{at}");
    }
}

#[test]
fn london_fall_back_day_has_two_slots_for_each_repeated_time() {
    let h = night_doctor(LONDON, utc(2026, 10, 1, 0, 0));
    let day = date(2026, 10, 25);
    assert_eq!(
        slots_of(&h, day),
        owned(&[
            ("00:00", utc(2026, 10, 24, 23, 0)),
            ("00:30", utc(2026, 10, 24, 23, 30)),
            ("01:00", utc(2026, 10, 25, 0, 0)),
            ("01:30", utc(2026, 10, 25, 0, 30)),
            ("01:00", utc(2026, 10, 25, 1, 0)),
            ("01:30", utc(2026, 10, 25, 1, 30)),
            ("02:00", utc(2026, 10, 25, 2, 0)),
            ("02:30", utc(2026, 10, 25, 2, 30)),
            ("03:00", utc(2026, 10, 25, 3, 0)),
            ("03:30", utc(2026, 10, 25, 3, 30)),
        ])
    );
}

#[test]
fn both_instants_of_a_repeated_local_time_can_be_booked_independently() {
    let mut h = night_doctor(LONDON, utc(2026, 10, 1, 0, 0));
    let first = utc(2026, 10, 25, 0, 0); // 01:00 BST
    let second = utc(2026, 10, 25, 1, 0); // 01:00 GMT
    let a = h.book(1, first).unwrap();
    assert_eq!(h.check(2, second), Ok(()));
    let b = h.book(2, second).unwrap();
    assert_ne!(a, b);
    let av = h.cal.availability(date(2026, 10, 25), 1, h.now, &h.rules);
    assert_eq!(av.booked_slots, [first, second]);
    let booked: Vec<_> = av.days[0]
        .slots
        .iter()
        .filter(|s| s.status == SlotStatus::Booked)
        .map(|s| (s.local_time.as_str(), s.start))
        .collect();
    assert_eq!(booked, [("01:00", first), ("01:00", second)]);
    // The neighbours in between stay free.
    assert_eq!(h.check(3, utc(2026, 10, 25, 0, 30)), Ok(()));
    assert_eq!(h.check(3, utc(2026, 10, 25, 1, 30)), Ok(()));
}

#[test]
fn new_york_spring_forward_day_has_no_slots_in_the_gap() {
    let h = night_doctor(NEW_YORK, utc(2026, 3, 1, 0, 0));
    assert_eq!(
        slots_of(&h, date(2026, 3, 8)),
        owned(&[
            ("00:00", utc(2026, 3, 8, 5, 0)),
            ("00:30", utc(2026, 3, 8, 5, 30)),
            ("01:00", utc(2026, 3, 8, 6, 0)),
            ("01:30", utc(2026, 3, 8, 6, 30)),
            ("03:00", utc(2026, 3, 8, 7, 0)),
            ("03:30", utc(2026, 3, 8, 7, 30)),
        ])
    );
}

#[test]
fn new_york_fall_back_day_has_two_slots_for_each_repeated_time() {
    let mut h = night_doctor(NEW_YORK, utc(2026, 10, 1, 0, 0));
    assert_eq!(
        slots_of(&h, date(2026, 11, 1)),
        owned(&[
            ("00:00", utc(2026, 11, 1, 4, 0)),
            ("00:30", utc(2026, 11, 1, 4, 30)),
            ("01:00", utc(2026, 11, 1, 5, 0)),
            ("01:30", utc(2026, 11, 1, 5, 30)),
            ("01:00", utc(2026, 11, 1, 6, 0)),
            ("01:30", utc(2026, 11, 1, 6, 30)),
            ("02:00", utc(2026, 11, 1, 7, 0)),
            ("02:30", utc(2026, 11, 1, 7, 30)),
            ("03:00", utc(2026, 11, 1, 8, 0)),
            ("03:30", utc(2026, 11, 1, 8, 30)),
        ])
    );
    h.book(1, utc(2026, 11, 1, 5, 30)).unwrap(); // 01:30 EDT
    h.book(2, utc(2026, 11, 1, 6, 30)).unwrap(); // 01:30 EST
    assert_eq!(h.cal.active_len(), 2);
}

#[test]
fn a_slot_ending_across_the_gap_uses_real_minutes_for_conflicts() {
    // 00:30 GMT on the spring-forward day lasts until 01:00 UTC, which is 02:00 BST: the
    // 02:00 slot starts exactly when it ends and does not conflict.
    let mut h = night_doctor(LONDON, utc(2026, 3, 1, 0, 0));
    h.book(1, utc(2026, 3, 29, 0, 30)).unwrap();
    assert_eq!(h.check(2, utc(2026, 3, 29, 1, 0)), Ok(()));
}

#[test]
fn a_45_minute_grid_across_the_spring_gap_can_list_overlapping_slots_but_never_double_books() {
    // 00:45 GMT lasts until 01:30 UTC (02:30 BST) while the next grid point, 02:15 BST, is
    // 01:15 UTC: both are listed as available, and booking one makes the other a conflict.
    let mut h = night_doctor(LONDON, utc(2026, 3, 1, 0, 0));
    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: Some(45),
        schedule: WeeklySchedule::every_day(DayWindow::open(hm(0, 0), hm(4, 0))),
    });
    let day = date(2026, 3, 29);
    assert_eq!(
        slots_of(&h, day),
        owned(&[
            ("00:00", utc(2026, 3, 29, 0, 0)),
            ("00:45", utc(2026, 3, 29, 0, 45)),
            ("02:15", utc(2026, 3, 29, 1, 15)),
            ("03:00", utc(2026, 3, 29, 2, 0)),
        ])
    );
    h.book(1, utc(2026, 3, 29, 0, 45)).unwrap();
    assert_eq!(h.book(2, utc(2026, 3, 29, 1, 15)), Err(Rejection::Conflict));
    let statuses: Vec<_> = h.statuses(day).into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        statuses,
        [
            SlotStatus::Available,
            SlotStatus::Booked,
            SlotStatus::Booked,
            SlotStatus::Available
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Snapshots, replay and pruning
// ---------------------------------------------------------------------------------------

/// A calendar with a little of everything: bookings, a cancellation, a reschedule into the
/// freed slot, a schedule and a status change, and a live hold.
fn busy_harness() -> Harness {
    let mut h = Harness::london();
    let a = h.book(1, wed(9, 0)).unwrap();
    let b = h.book(2, wed(10, 0)).unwrap();
    h.book(3, wed(11, 30)).unwrap();
    h.cancel(a, Requester::Patient(1)).unwrap();
    h.reschedule(b, Requester::Patient(2), wed(9, 0)).unwrap();
    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: None,
        slot_minutes: Some(20),
        schedule: WeeklySchedule::every_day(DayWindow::open(hm(8, 0), hm(20, 0))),
    });
    h.book(4, wed(13, 20)).unwrap();
    h.set_status(StatusUpdate {
        is_available: Some(false),
        is_approved: None,
    });
    h.set_status(StatusUpdate {
        is_available: Some(true),
        is_approved: None,
    });
    h.hold(5, wed(14, 0)).unwrap();
    h
}

#[test]
fn a_snapshot_round_trips_the_durable_state_without_holds() {
    let h = busy_harness();
    let blob = h.cal.encode_snapshot();
    assert_eq!(blob[0], SNAPSHOT_FORMAT_VERSION);
    let back = Calendar::decode_snapshot(&blob).unwrap();
    assert_eq!(durable(&back), durable(&h.cal));
    assert_eq!(back.live_holds(DateTime::<Utc>::MIN_UTC).count(), 0);
    assert_eq!(h.cal.live_holds(h.now).count(), 1);
    // Lookups by id work on the decoded calendar too.
    for slot in h.cal.active() {
        assert_eq!(back.slot(slot.id), Some(slot));
    }
    // Once the hold is gone the two are the same calendar.
    let mut live = h.cal.clone();
    live.release_hold(5);
    assert_eq!(back, live);
}

#[test]
fn a_snapshot_with_an_unknown_version_byte_is_corrupt() {
    let h = busy_harness();
    for version in [0u8, SNAPSHOT_FORMAT_VERSION + 1, 0xff] {
        let mut blob = h.cal.encode_snapshot();
        blob[0] = version;
        assert!(
            matches!(
                Calendar::decode_snapshot(&blob),
                Err(StoreError::Corrupt(_))
            ),
            "version {version}"
        );
    }
}

#[test]
fn an_empty_truncated_or_garbage_snapshot_is_corrupt() {
    let blob = busy_harness().cal.encode_snapshot();
    let bad: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![SNAPSHOT_FORMAT_VERSION],
        blob[..blob.len() / 2].to_vec(),
        blob[..blob.len() - 1].to_vec(),
        vec![SNAPSHOT_FORMAT_VERSION, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        b"\x01{\"profile\": \"not bincode\"}".to_vec(),
        [blob.clone(), vec![0]].concat(),
    ];
    for b in bad {
        assert!(
            matches!(Calendar::decode_snapshot(&b), Err(StoreError::Corrupt(_))),
            "{b:?}"
        );
    }
}

#[test]
fn a_snapshot_stored_under_another_seq_is_corrupt() {
    let cal = busy_harness().cal;
    let history = DoctorHistory {
        snapshot: Some(StoredSnapshot {
            seq: cal.seq() - 1,
            blob: cal.encode_snapshot(),
        }),
        events: Vec::new(),
    };
    assert!(matches!(
        Calendar::rebuild(history),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn journal_payloads_round_trip_and_refuse_unknown_versions_and_garbage() {
    let h = busy_harness();
    for (_, event) in &h.journal {
        let bytes = event.encode();
        assert_eq!(bytes[0], EVENT_FORMAT_VERSION);
        assert_eq!(DoctorEvent::decode(&bytes).as_ref(), Ok(event));
        let mut wrong = bytes.clone();
        wrong[0] = EVENT_FORMAT_VERSION + 1;
        assert!(matches!(
            DoctorEvent::decode(&wrong),
            Err(StoreError::Corrupt(_))
        ));
    }
    let kinds: Vec<_> = h.journal.iter().map(|(_, e)| e.kind()).collect();
    assert_eq!(
        kinds,
        [
            "registered",
            "booked",
            "booked",
            "booked",
            "cancelled",
            "rescheduled",
            "schedule_updated",
            "booked",
            "status_changed",
            "status_changed"
        ]
    );
    for bad in [
        &b""[..],
        &b"\x01"[..],
        &b"\x01{\"type\":\"booked\"}"[..],
        &b"\x01nope"[..],
    ] {
        assert!(matches!(
            DoctorEvent::decode(bad),
            Err(StoreError::Corrupt(_))
        ));
    }
}

#[test]
fn payloads_written_before_the_journal_kept_who_acted_still_decode() {
    let old = |json: &str| {
        let mut bytes = vec![EVENT_FORMAT_VERSION];
        bytes.extend_from_slice(json.as_bytes());
        DoctorEvent::decode(&bytes).expect("an old payload decodes")
    };
    assert_eq!(
        old(r#"{"type":"cancelled","consultation_id":3,"at":"2026-06-01T00:00:00Z"}"#),
        DoctorEvent::Cancelled {
            consultation_id: 3,
            at: fixed_now(),
            by: None,
        }
    );
    assert_eq!(
        old(r#"{"type":"status_changed","is_available":false,"is_approved":true}"#),
        DoctorEvent::StatusChanged {
            is_available: false,
            is_approved: true,
            by: None,
        }
    );
    // An event without `by` is written exactly as before.
    let unknown = DoctorEvent::Cancelled {
        consultation_id: 3,
        at: fixed_now(),
        by: None,
    };
    assert!(!String::from_utf8_lossy(&unknown.encode()).contains("by"));
    let known = DoctorEvent::Cancelled {
        consultation_id: 3,
        at: fixed_now(),
        by: Some(ActedBy::Doctor),
    };
    assert!(String::from_utf8_lossy(&known.encode()).contains(r#""by":"doctor""#));
}

#[test]
fn a_slots_history_shows_the_events_that_touched_it_in_order_with_who_acted() {
    let mut h = Harness::london();
    let at = wed(10, 0);
    let first = h.book(1, at).unwrap();
    h.book(2, wed(11, 0)).unwrap();
    h.cancel(first, Requester::Doctor(DOCTOR)).unwrap();
    let second = h.book(3, at).unwrap();
    h.reschedule(second, Requester::Patient(3), wed(12, 0))
        .unwrap();
    let moved_in = h.book(4, wed(13, 0)).unwrap();
    h.reschedule(moved_in, Requester::Patient(4), at).unwrap();
    h.set_status(StatusUpdate {
        is_available: Some(false),
        is_approved: None,
    });
    let entries: Vec<JournalEntry> = h
        .journal
        .iter()
        .map(|(seq, event)| JournalEntry {
            seq: *seq,
            recorded_at: h.now,
            event: event.clone(),
        })
        .collect();
    let events = slot_events(&entries, at, 30, &Default::default());
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.consultation_id, e.by))
        .collect();
    use SlotEventKind::*;
    assert_eq!(
        seen,
        vec![
            (Registered, None, Some(ActedBy::Admin)),
            (Booked, Some(first), Some(ActedBy::Patient)),
            (Cancelled, Some(first), Some(ActedBy::Doctor)),
            (Booked, Some(second), Some(ActedBy::Patient)),
            (RescheduledOut, Some(second), Some(ActedBy::Patient)),
            (RescheduledIn, Some(moved_in), Some(ActedBy::Patient)),
            (StatusChanged, None, Some(ActedBy::Doctor)),
        ]
    );
    assert_eq!(events[4].to, Some(wed(12, 0)));
    assert_eq!(events[5].patient_id, Some(4));

    // A cancellation whose booking was not read is placed by where its consultation is.
    let tail: Vec<JournalEntry> = entries
        .iter()
        .filter(|e| matches!(e.event, DoctorEvent::Cancelled { .. }))
        .cloned()
        .collect();
    assert!(slot_events(&tail, at, 30, &Default::default()).is_empty());
    let placements = [(
        first,
        Placement {
            start: at,
            duration_minutes: 30,
            patient_id: 1,
        },
    )]
    .into_iter()
    .collect();
    let placed = slot_events(&tail, at, 30, &placements);
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].kind, Cancelled);
}

#[test]
fn a_slots_state_names_the_first_rule_that_refuses_it() {
    let mut h = Harness::london();
    let state = |h: &Harness, at| h.cal.slot_state(at, h.now, &h.rules);
    let free = state(&h, wed(10, 0));
    assert_eq!((free.status, free.rule), (SlotNow::Available, None));
    let past = state(&h, h.now - Duration::days(2));
    assert_eq!(past.status, SlotNow::Past);
    assert_eq!(
        state(&h, wed(10, 0) - Duration::days(7)).rule,
        Some(Rejection::InPast)
    );
    let saturday = local(LONDON, 2026, 6, 6, 10, 0);
    assert_eq!(
        (state(&h, saturday).status, state(&h, saturday).rule),
        (SlotNow::Unavailable, Some(Rejection::DayUnavailable))
    );
    assert_eq!(
        state(&h, wed(8, 0)).rule,
        Some(Rejection::OutsideAvailability)
    );
    assert_eq!(state(&h, wed(10, 10)).rule, Some(Rejection::OffSlotGrid));
    let id = h.book(1, wed(10, 0)).unwrap();
    let booked = state(&h, wed(10, 0));
    assert_eq!(
        (booked.status, booked.rule, booked.consultation_id),
        (SlotNow::Booked, Some(Rejection::Conflict), Some(id))
    );
    let until = h.hold(2, wed(11, 0)).unwrap();
    let held = state(&h, wed(11, 0));
    assert_eq!(
        (held.status, held.rule, held.held_until),
        (SlotNow::Held, Some(Rejection::Conflict), Some(until))
    );
    h.set_status(StatusUpdate {
        is_available: Some(false),
        is_approved: None,
    });
    assert_eq!(
        state(&h, wed(14, 0)).rule,
        Some(Rejection::DoctorUnavailable)
    );
}

#[test]
fn rebuilding_from_the_journal_alone_gives_the_live_durable_state() {
    let h = busy_harness();
    let rebuilt = Calendar::rebuild(h.history()).unwrap();
    assert_eq!(durable(&rebuilt), durable(&h.cal));
    assert_eq!(rebuilt.seq(), h.journal.len() as u64);
}

#[test]
fn rebuilding_from_a_snapshot_and_later_events_gives_the_live_durable_state() {
    let mut h = Harness::london();
    let a = h.book(1, wed(9, 0)).unwrap();
    h.book(2, wed(10, 0)).unwrap();
    let snapshot = StoredSnapshot {
        seq: h.cal.seq(),
        blob: h.cal.encode_snapshot(),
    };
    let covered = h.journal.len();
    h.cancel(a, Requester::Admin).unwrap();
    h.book(3, wed(11, 0)).unwrap();
    h.set_schedule(ScheduleUpdate {
        date_overrides: None,
        policy: None,
        timezone: Some(KOLKATA),
        slot_minutes: None,
        schedule: WeeklySchedule::weekdays(hm(9, 0), hm(17, 0)),
    });
    let rebuilt = Calendar::rebuild(DoctorHistory {
        snapshot: Some(snapshot.clone()),
        events: h.journal[covered..].to_vec(),
    })
    .unwrap();
    assert_eq!(durable(&rebuilt), durable(&h.cal));
    // A snapshot with no later events is the snapshot.
    let only = Calendar::rebuild(DoctorHistory {
        snapshot: Some(snapshot),
        events: Vec::new(),
    })
    .unwrap();
    assert_eq!(only.seq(), covered as u64);
    assert_eq!(only.active_len(), 2);
}

#[test]
fn rebuilding_rejects_a_gap_in_sequence_numbers() {
    let h = busy_harness();
    let mut events = h.journal.clone();
    events.remove(3);
    assert!(matches!(
        Calendar::rebuild(DoctorHistory {
            snapshot: None,
            events,
        }),
        Err(StoreError::Corrupt(_))
    ));
    // A repeated sequence number is no better.
    let mut events = h.journal.clone();
    let dup = events[2].clone();
    events.insert(3, dup);
    assert!(matches!(
        Calendar::rebuild(DoctorHistory {
            snapshot: None,
            events,
        }),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn rebuilding_rejects_a_gap_after_the_snapshot() {
    let mut h = Harness::london();
    h.book(1, wed(9, 0)).unwrap();
    let snapshot = StoredSnapshot {
        seq: h.cal.seq(),
        blob: h.cal.encode_snapshot(),
    };
    let covered = h.journal.len();
    h.book(2, wed(10, 0)).unwrap();
    h.book(3, wed(11, 0)).unwrap();
    assert!(matches!(
        Calendar::rebuild(DoctorHistory {
            snapshot: Some(snapshot),
            events: h.journal[covered + 1..].to_vec(),
        }),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn rebuilding_rejects_an_empty_journal_or_one_not_starting_with_registered() {
    assert!(matches!(
        Calendar::rebuild(DoctorHistory {
            snapshot: None,
            events: Vec::new(),
        }),
        Err(StoreError::Corrupt(_))
    ));
    let h = busy_harness();
    assert!(matches!(
        Calendar::rebuild(DoctorHistory {
            snapshot: None,
            events: h.journal[1..].to_vec(),
        }),
        Err(StoreError::Corrupt(_))
    ));
    // Registered, but not at seq 1.
    let mut events = h.journal.clone();
    events[0].0 = 2;
    assert!(matches!(
        Calendar::rebuild(DoctorHistory {
            snapshot: None,
            events,
        }),
        Err(StoreError::Corrupt(_))
    ));
    // A corrupt snapshot is reported, not ignored.
    assert!(matches!(
        Calendar::rebuild(DoctorHistory {
            snapshot: Some(StoredSnapshot {
                seq: 3,
                blob: vec![9, 9, 9],
            }),
            events: Vec::new(),
        }),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn prune_drops_long_ended_consultations_and_expired_holds_but_keeps_the_rest() {
    let mut h = Harness::london();
    h.rules.hold_ttl_s = 300;
    let long_ago = h.book(1, wed(10, 0)).unwrap();
    let friday = |hh, mm| local(LONDON, 2026, 6, 5, hh, mm);
    let recent = h.book(2, friday(10, 0)).unwrap();
    let future = h.book(3, local(LONDON, 2026, 6, 10, 10, 0)).unwrap();
    h.hold(4, local(LONDON, 2026, 6, 10, 11, 0)).unwrap(); // expires long before prune

    h.now = friday(11, 30); // `recent` ended an hour ago, `long_ago` two days ago
    h.hold(5, local(LONDON, 2026, 6, 10, 11, 30)).unwrap();
    let before = h.cal.seq();
    h.cal.prune(h.now);

    assert_eq!(h.cal.slot(long_ago), None);
    assert!(h.cal.slot(recent).is_some());
    assert!(h.cal.slot(future).is_some());
    let ids: Vec<_> = h.cal.active().map(|s| s.id).collect();
    assert_eq!(ids, [recent, future]);
    let holds: Vec<_> = h
        .cal
        .live_holds(DateTime::<Utc>::MIN_UTC)
        .map(|x| x.patient_id)
        .collect();
    assert_eq!(holds, [5]);
    assert_eq!(h.cal.seq(), before, "pruning is not an event");
    // Patient 4 lost their hold; a new one of theirs is independent of the old one.
    h.hold(4, local(LONDON, 2026, 6, 10, 12, 0)).unwrap();
    assert_eq!(h.cal.live_holds(h.now).count(), 2);
    // A pruned consultation is simply no longer cancellable.
    assert!(matches!(
        h.cancel(long_ago, Requester::Admin),
        Err(EngineError::NotCancellable(_))
    ));
}

#[test]
fn prune_keeps_everything_that_can_still_matter() {
    let mut h = busy_harness();
    let before = h.cal.clone();
    h.cal.prune(h.now);
    assert_eq!(h.cal, before);
}

// ---------------------------------------------------------------------------------------
// Availability
// ---------------------------------------------------------------------------------------

#[test]
fn availability_lists_the_days_and_grid_slots_in_order() {
    let h = Harness::london();
    let av = h.cal.availability(date(2026, 6, 1), 7, h.now, &h.rules);
    assert_eq!(av.doctor_id, DOCTOR);
    assert_eq!(av.timezone, LONDON);
    assert_eq!(av.slot_minutes, 30);
    assert_eq!(av.schedule, h.cal.profile().schedule);
    assert_eq!(av.days.len(), 7);
    let expected_times: Vec<String> = (0..16)
        .map(|i| format!("{:02}:{:02}", 9 + i / 2, (i % 2) * 30))
        .collect();
    for (i, day) in av.days.iter().enumerate() {
        assert_eq!(day.date, date(2026, 6, 1 + i as u32));
        if i < 5 {
            assert!(day.enabled);
            let times: Vec<_> = day.slots.iter().map(|s| s.local_time.clone()).collect();
            assert_eq!(times, expected_times);
            assert_eq!(
                day.slots[0].start,
                local(LONDON, 2026, 6, 1 + i as u32, 9, 0)
            );
            assert!(day.slots.windows(2).all(|w| w[0].start < w[1].start));
            assert!(day.slots.iter().all(|s| s.status == SlotStatus::Available));
        }
    }
}

#[test]
fn disabled_days_are_listed_as_disabled_with_no_slots() {
    let h = Harness::london();
    let av = h.cal.availability(date(2026, 6, 6), 2, h.now, &h.rules);
    assert_eq!(av.days.len(), 2);
    for day in &av.days {
        assert!(!day.enabled, "{}", day.date);
        assert!(day.slots.is_empty());
    }
    assert!(h
        .cal
        .availability(date(2026, 6, 6), 0, h.now, &h.rules)
        .days
        .is_empty());
}

#[test]
fn slot_statuses_are_past_booked_held_or_available() {
    use SlotStatus::*;
    let mut h = Harness::london();
    h.rules.min_notice_minutes = 30;
    h.book(1, wed(11, 0)).unwrap();
    h.book(1, wed(9, 30)).unwrap();
    h.now = wed(10, 10); // the notice runs to 10:40
    h.hold(2, wed(11, 30)).unwrap();
    let statuses = h.statuses(date(2026, 6, 3));
    let expected: Vec<_> = [
        ("09:00", Past),
        ("09:30", Past), // booked, but past wins
        ("10:00", Past),
        ("10:30", Past), // inside the notice
        ("11:00", Booked),
        ("11:30", Held),
        ("12:00", Available),
    ]
    .iter()
    .map(|(t, s)| (t.to_string(), *s))
    .collect();
    assert_eq!(statuses[..7], expected[..]);
    assert!(statuses[7..].iter().all(|(_, s)| *s == Available));
    // A booked slot turns past once it is inside the notice.
    h.now = wed(10, 50);
    assert_eq!(h.statuses(date(2026, 6, 3))[4], ("11:00".to_string(), Past));
}

#[test]
fn an_expired_hold_shows_as_available() {
    let mut h = Harness::london();
    let until = h.hold(2, wed(11, 30)).unwrap();
    assert_eq!(h.statuses(date(2026, 6, 3))[5].1, SlotStatus::Held);
    h.now = until;
    assert_eq!(h.statuses(date(2026, 6, 3))[5].1, SlotStatus::Available);
}

#[test]
fn booked_slots_lists_exactly_the_active_starts_on_the_requested_local_dates() {
    for tz in [
        KOLKATA,
        NEW_YORK,
        KATHMANDU,
        Tz::Pacific__Kiritimati,
        Tz::Etc__GMTPlus12,
    ] {
        let mut profile = doctor(tz);
        profile.schedule =
            WeeklySchedule::every_day(DayWindow::open(hm(0, 0), LocalTime::END_OF_DAY));
        let mut h = Harness::new(profile);
        let at = |d, hh, mm| local(tz, 2026, 6, d, hh, mm);
        h.book(1, at(9, 23, 30)).unwrap(); // the day before: out
        let first = at(10, 0, 0);
        h.book(1, first).unwrap();
        let cancelled = h.book(2, at(10, 12, 0)).unwrap();
        h.cancel(cancelled, Requester::Patient(2)).unwrap();
        let middle = at(11, 12, 0);
        h.book(3, middle).unwrap();
        let last = at(12, 23, 30);
        h.book(4, last).unwrap();
        h.book(5, at(13, 0, 0)).unwrap(); // the day after: out
        let av = h.cal.availability(date(2026, 6, 10), 3, h.now, &h.rules);
        assert_eq!(av.booked_slots, [first, middle, last], "{tz}");
        assert!(h
            .cal
            .availability(date(2026, 6, 14), 3, h.now, &h.rules)
            .booked_slots
            .is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Property tests: random doctors and command sequences, checked against a naive model
// ---------------------------------------------------------------------------------------

mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Timezones with and without DST, with half- and quarter-hour offsets, one with a
    /// 30-minute DST shift (Lord Howe) and one that changes at midnight (Santiago).
    const ZONES: [Tz; 8] = [
        Tz::Europe__London,
        Tz::America__New_York,
        Tz::Asia__Kolkata,
        Tz::Asia__Kathmandu,
        Tz::Australia__Lord_Howe,
        Tz::America__Santiago,
        Tz::Pacific__Chatham,
        Tz::UTC,
    ];
    const SLOT_CHOICES: [u16; 5] = [15, 20, 30, 45, 60];
    const PATIENTS: i64 = 5;
    /// A patient who never books or holds anything.
    const FRESH_PATIENT: PatientId = 1_000;
    /// Local days listed (from `now`'s local date) and checked after every step.
    const LISTED_DAYS: u16 = 2;

    #[derive(Debug, Clone)]
    struct Scenario {
        profile: DoctorProfile,
        /// The schedule `SwitchSchedule` swaps in (and back out).
        alternate: (u16, WeeklySchedule),
        rules: Rules,
        start: DateTime<Utc>,
        /// After which step to take the snapshot that the second rebuild starts from.
        snapshot_after: usize,
        ops: Vec<Op>,
    }

    #[derive(Debug, Clone, Copy)]
    enum Pick {
        /// The n-th slot (modulo) listed in availability for the next few local days.
        Listed(usize),
        /// Any instant: minutes (and seconds) from the quarter hour at or before `now`,
        /// which is a quarter hour in every zone of [`ZONES`].
        Random { minutes: i64, second: i64 },
    }

    #[derive(Debug, Clone, Copy)]
    enum Who {
        Owner,
        OtherPatient,
        Doctor,
        OtherDoctor,
        Admin,
    }

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Book {
            patient: PatientId,
            at: Pick,
        },
        Hold {
            patient: PatientId,
            at: Pick,
        },
        /// Cancel the n-th (modulo) consultation ever booked, or an unknown one.
        Cancel {
            which: usize,
            who: Who,
        },
        /// Move the n-th (modulo) consultation ever booked, or an unknown one.
        Reschedule {
            which: usize,
            who: Who,
            to: Pick,
        },
        Advance {
            minutes: i64,
        },
        SwitchSchedule,
        /// The doctor's own availability switch.
        SetAvailable(bool),
    }

    /// A window on the slot grid of `slot` minutes: the whole day, or one that starts on a
    /// quarter hour, holds at least one slot, and sometimes has a ragged end that no slot
    /// reaches. Disabled a quarter of the time.
    fn window(slot: u16) -> impl Strategy<Value = DayWindow> {
        (
            prop::bool::weighted(0.75),
            prop::bool::weighted(0.25),
            0u16..96,
            1u16..64,
            0u16..120,
        )
            .prop_map(move |(enabled, whole_day, quarter, n, extra)| {
                if whole_day {
                    // Every generated slot length divides a day.
                    return DayWindow {
                        enabled,
                        ..DayWindow::open(hm(0, 0), LocalTime::END_OF_DAY)
                    };
                }
                let start = (quarter * 15).min((1440 - slot) / 15 * 15);
                let n = 1 + (n - 1) % ((1440 - start) / slot);
                let mut end = start + n * slot;
                if extra < slot && end + extra <= 1440 {
                    end += extra;
                }
                DayWindow {
                    enabled,
                    start: LocalTime::from_minutes(start).unwrap(),
                    end: LocalTime::from_minutes(end).unwrap(),
                    breaks: Breaks::default(),
                }
            })
    }

    fn schedule_config() -> impl Strategy<Value = (u16, WeeklySchedule)> {
        prop::sample::select(SLOT_CHOICES.to_vec()).prop_flat_map(|slot| {
            (
                Just(slot),
                prop::array::uniform7(window(slot)).prop_map(|w| {
                    let mut s = WeeklySchedule {
                        monday: w[0],
                        tuesday: w[1],
                        wednesday: w[2],
                        thursday: w[3],
                        friday: w[4],
                        saturday: w[5],
                        sunday: w[6],
                    };
                    if !ALL_WEEKDAYS.iter().any(|d| s.day(*d).enabled) {
                        s.monday.enabled = true;
                    }
                    s
                }),
            )
        })
    }

    /// The UTC dates in 2026 on which `tz` changes its offset.
    fn transitions(tz: Tz) -> Vec<NaiveDate> {
        use chrono::Offset;
        let offset = |d: NaiveDate| {
            let at = d.and_hms_opt(0, 0, 0).unwrap().and_utc();
            at.with_timezone(&tz).offset().fix()
        };
        date(2026, 1, 1)
            .iter_days()
            .take(365)
            .filter(|d| offset(*d) != offset(*d + Duration::days(1)))
            .collect()
    }

    /// A start on a quarter hour, often a few days before one of `tz`'s DST changes so
    /// the first listing and the run cross it.
    fn start_instant(tz: Tz) -> BoxedStrategy<DateTime<Utc>> {
        let random_day = (0i64..365).prop_map(|d| date(2026, 1, 1) + Duration::days(d));
        let changes = transitions(tz);
        let day = if changes.is_empty() {
            random_day.boxed()
        } else {
            prop_oneof![
                3 => (prop::sample::select(changes), 0i64..2)
                    .prop_map(|(change, before)| change - Duration::days(before)),
                1 => random_day,
            ]
            .boxed()
        };
        (day, 0i64..24 * 4)
            .prop_map(|(day, quarter)| {
                day.and_hms_opt(0, 0, 0).unwrap().and_utc() + Duration::minutes(quarter * 15)
            })
            .boxed()
    }

    fn pick() -> impl Strategy<Value = Pick> {
        let offset = prop_oneof![
            3 => (-8i64..14 * 24 * 4).prop_map(|quarter| quarter * 15),
            1 => -120i64..14 * 24 * 60,
        ];
        prop_oneof![
            4 => any::<usize>().prop_map(Pick::Listed),
            1 => (offset, prop_oneof![3 => Just(0i64), 1 => 1i64..60])
                .prop_map(|(minutes, second)| Pick::Random { minutes, second }),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let who = prop_oneof![
            4 => Just(Who::Owner),
            2 => Just(Who::OtherPatient),
            1 => Just(Who::Doctor),
            1 => Just(Who::OtherDoctor),
            1 => Just(Who::Admin),
        ];
        prop_oneof![
            6 => (1..=PATIENTS, pick()).prop_map(|(patient, at)| Op::Book { patient, at }),
            2 => (1..=PATIENTS, pick()).prop_map(|(patient, at)| Op::Hold { patient, at }),
            2 => (any::<usize>(), who.clone()).prop_map(|(which, who)| Op::Cancel { which, who }),
            3 => (any::<usize>(), prop_oneof![6 => Just(Who::Owner), 1 => who], pick())
                .prop_map(|(which, who, to)| Op::Reschedule { which, who, to }),
            2 => prop_oneof![1i64..=15, 1i64..=720].prop_map(|minutes| Op::Advance { minutes }),
            1 => Just(Op::SwitchSchedule),
            1 => prop::bool::weighted(0.6).prop_map(Op::SetAvailable),
        ]
    }

    fn scenario() -> impl Strategy<Value = Scenario> {
        prop::sample::select(ZONES.to_vec())
            .prop_flat_map(|tz| (Just(tz), start_instant(tz)))
            .prop_flat_map(|(tz, start)| {
                (
                    Just(tz),
                    schedule_config(),
                    schedule_config(),
                    prop::sample::select(vec![0u32, 30, 120]),
                    prop::sample::select(vec![60u32, 300, 900]),
                    Just(start),
                    any::<usize>(),
                    prop::collection::vec(op(), 1..200),
                )
            })
            .prop_map(
                |(tz, (slot, schedule), alternate, notice, ttl, start, snap, ops)| {
                    let mut profile = doctor(tz);
                    profile.slot_minutes = slot;
                    profile.schedule = schedule;
                    Scenario {
                        profile,
                        alternate,
                        rules: Rules {
                            min_notice_minutes: notice,
                            hold_ttl_s: ttl,
                        },
                        start,
                        snapshot_after: snap % (ops.len() + 1),
                        ops,
                    }
                },
            )
    }

    fn overlaps(a: DateTime<Utc>, a_min: u16, b: DateTime<Utc>, b_min: u16) -> bool {
        a < b + Duration::minutes(i64::from(b_min)) && b < a + Duration::minutes(i64::from(a_min))
    }

    /// The window and grid rules cannot be told apart by listing membership alone.
    fn coarse(r: Result<(), Rejection>) -> Result<(), Rejection> {
        r.map_err(|e| match e {
            Rejection::OffSlotGrid => Rejection::OutsideAvailability,
            e => e,
        })
    }

    /// The calendar driven like an actor, next to a naive model of what it should hold.
    struct Run {
        h: Harness,
        alternate: (u16, WeeklySchedule),
        /// Active consultations by id, kept independently of the calendar.
        model: BTreeMap<ConsultationId, BookedSlot>,
        /// Every consultation ever booked, with its patient, for cancel picks.
        booked: Vec<(ConsultationId, PatientId)>,
        /// Holds by patient, kept independently of the calendar.
        holds: BTreeMap<PatientId, Hold>,
    }

    impl Run {
        fn live_model_holds(&self) -> impl Iterator<Item = &Hold> {
            let now = self.h.now;
            self.holds.values().filter(move |h| h.expires_at > now)
        }

        /// What `check_slot` should answer, computed the slow, obvious way: the first four
        /// rules by membership in the local date's slot list, conflicts by a linear scan.
        fn expected_check(
            &self,
            patient: Option<PatientId>,
            at: DateTime<Utc>,
        ) -> Result<(), Rejection> {
            let p = self.h.cal.profile();
            if !(p.is_approved && p.is_available) {
                return Err(Rejection::DoctorUnavailable);
            }
            let day = at.with_timezone(&p.timezone).date_naive();
            let window = p.schedule.day(day.weekday());
            if !window.enabled {
                return Err(Rejection::DayUnavailable);
            }
            if !local_slots(day, window, p.slot_minutes, p.timezone)
                .iter()
                .any(|(s, _)| *s == at)
            {
                return Err(Rejection::OutsideAvailability);
            }
            let notice = Duration::minutes(i64::from(self.h.rules.min_notice_minutes));
            if at <= self.h.now + notice {
                return Err(Rejection::InPast);
            }
            let d = p.slot_minutes;
            let booked = self
                .model
                .values()
                .any(|b| overlaps(at, d, b.start, b.duration_minutes));
            let held = self.live_model_holds().any(|x| {
                Some(x.patient_id) != patient && overlaps(at, d, x.start, x.duration_minutes)
            });
            if booked || held {
                return Err(Rejection::Conflict);
            }
            Ok(())
        }

        /// What a reschedule of `moving` (of `duration` minutes) to `at` should meet, the
        /// slow way: the API's wording of rules 3 and 4 on the local wall-clock time (the
        /// whole consultation inside the window, a whole number of slots after its start, no
        /// seconds), and conflicts with everything but the consultation itself.
        fn expected_move(
            &self,
            patient: PatientId,
            moving: ConsultationId,
            duration: u16,
            at: DateTime<Utc>,
        ) -> Result<(), Rejection> {
            use chrono::Timelike;
            let p = self.h.cal.profile();
            if !(p.is_approved && p.is_available) {
                return Err(Rejection::DoctorUnavailable);
            }
            let local = at.with_timezone(&p.timezone);
            let window = p.schedule.day(local.weekday());
            if !window.enabled {
                return Err(Rejection::DayUnavailable);
            }
            let m = (local.hour() * 60 + local.minute()) as u16;
            let (start, end) = (window.start.minutes(), window.end.minutes());
            let exact = local.second() == 0 && local.nanosecond() == 0;
            if !(exact
                && m >= start
                && (m - start).is_multiple_of(p.slot_minutes)
                && m + duration <= end)
            {
                return Err(Rejection::OutsideAvailability);
            }
            let notice = Duration::minutes(i64::from(self.h.rules.min_notice_minutes));
            if at <= self.h.now + notice {
                return Err(Rejection::InPast);
            }
            let booked = self
                .model
                .values()
                .any(|b| b.id != moving && overlaps(at, duration, b.start, b.duration_minutes));
            let held = self.live_model_holds().any(|x| {
                x.patient_id != patient && overlaps(at, duration, x.start, x.duration_minutes)
            });
            if booked || held {
                return Err(Rejection::Conflict);
            }
            Ok(())
        }

        fn expected_status(&self, start: DateTime<Utc>) -> SlotStatus {
            let d = self.h.cal.profile().slot_minutes;
            let notice = Duration::minutes(i64::from(self.h.rules.min_notice_minutes));
            if start <= self.h.now + notice {
                SlotStatus::Past
            } else if self
                .model
                .values()
                .any(|b| overlaps(start, d, b.start, b.duration_minutes))
            {
                SlotStatus::Booked
            } else if self
                .live_model_holds()
                .any(|x| overlaps(start, d, x.start, x.duration_minutes))
            {
                SlotStatus::Held
            } else {
                SlotStatus::Available
            }
        }

        fn listing_from(&self) -> NaiveDate {
            self.h
                .now
                .with_timezone(&self.h.cal.profile().timezone)
                .date_naive()
        }

        fn resolve(&self, pick: Pick, listing: &Availability) -> DateTime<Utc> {
            match pick {
                Pick::Listed(i) => {
                    let starts: Vec<_> = listing
                        .days
                        .iter()
                        .flat_map(|d| d.slots.iter().map(|s| s.start))
                        .collect();
                    if starts.is_empty() {
                        self.h.now + Duration::hours(1)
                    } else {
                        starts[i % starts.len()]
                    }
                }
                Pick::Random { minutes, second } => {
                    let quarter = Duration::minutes(15);
                    let since_epoch = self.h.now - DateTime::<Utc>::UNIX_EPOCH;
                    let floor = self.h.now
                        - Duration::seconds(
                            since_epoch.num_seconds().rem_euclid(quarter.num_seconds()),
                        );
                    floor + Duration::minutes(minutes) + Duration::seconds(second)
                }
            }
        }

        fn step(&mut self, op: Op, listing: &Availability) -> Result<(), TestCaseError> {
            match op {
                Op::Book { patient, at } => {
                    let at = self.resolve(at, listing);
                    let expected = self.expected_check(Some(patient), at);
                    let got = self.h.book(patient, at);
                    prop_assert_eq!(
                        coarse(got.map(|_| ())),
                        coarse(expected),
                        "book by {} at {}",
                        patient,
                        at
                    );
                    if let Ok(id) = got {
                        let slot = self.h.cal.slot(id).cloned();
                        prop_assert!(slot.is_some());
                        let slot = slot.unwrap();
                        prop_assert_eq!(slot.start, at);
                        prop_assert_eq!(slot.patient_id, patient);
                        prop_assert_eq!(slot.duration_minutes, self.h.cal.profile().slot_minutes);
                        self.model.insert(id, slot);
                        self.booked.push((id, patient));
                        self.holds.remove(&patient);
                        self.prop_accepted_booking_is_listed_as_booked(at)?;
                    }
                }
                Op::Hold { patient, at } => {
                    let at = self.resolve(at, listing);
                    let expected = self.expected_check(Some(patient), at);
                    let got = self.h.hold(patient, at);
                    prop_assert_eq!(
                        coarse(got.map(|_| ())),
                        coarse(expected),
                        "hold by {} at {}",
                        patient,
                        at
                    );
                    if let Ok(until) = got {
                        prop_assert_eq!(
                            until,
                            self.h.now + Duration::seconds(i64::from(self.h.rules.hold_ttl_s))
                        );
                        self.holds.insert(
                            patient,
                            Hold {
                                patient_id: patient,
                                start: at,
                                duration_minutes: self.h.cal.profile().slot_minutes,
                                expires_at: until,
                            },
                        );
                        let day = at
                            .with_timezone(&self.h.cal.profile().timezone)
                            .date_naive();
                        let av = self.h.cal.availability(day, 1, self.h.now, &self.h.rules);
                        let status = av.days[0]
                            .slots
                            .iter()
                            .find(|s| s.start == at)
                            .map(|s| s.status);
                        prop_assert_eq!(status, Some(SlotStatus::Held));
                    }
                }
                Op::Cancel { which, who } => {
                    let (id, owner) = if self.booked.is_empty() {
                        (424_242, 1)
                    } else {
                        self.booked[which % self.booked.len()]
                    };
                    let by = match who {
                        Who::Owner => Requester::Patient(owner),
                        Who::OtherPatient => Requester::Patient(owner + 1),
                        Who::Doctor => Requester::Doctor(DOCTOR),
                        Who::OtherDoctor => Requester::Doctor(DOCTOR + 1),
                        Who::Admin => Requester::Admin,
                    };
                    let expected = match self.model.get(&id) {
                        None => Err("not active"),
                        Some(_) if matches!(who, Who::OtherPatient | Who::OtherDoctor) => {
                            Err("forbidden")
                        }
                        Some(s) if s.start <= self.h.now => Err("not active"),
                        Some(_) => Ok(()),
                    };
                    let got = self.h.cancel(id, by).map_err(|e| match e {
                        EngineError::Forbidden => "forbidden",
                        EngineError::NotCancellable(_) => "not active",
                        _ => "other",
                    });
                    prop_assert_eq!(got, expected, "cancel {} by {:?}", id, by);
                    if got.is_ok() {
                        self.model.remove(&id);
                        prop_assert_eq!(self.h.cal.slot(id), None);
                    }
                }
                Op::Reschedule { which, who, to } => {
                    let to = self.resolve(to, listing);
                    let (id, owner) = if self.booked.is_empty() {
                        (424_242, 1)
                    } else {
                        self.booked[which % self.booked.len()]
                    };
                    let by = match who {
                        Who::Owner => Requester::Patient(owner),
                        Who::OtherPatient => Requester::Patient(owner + 1),
                        Who::Doctor => Requester::Doctor(DOCTOR),
                        Who::OtherDoctor => Requester::Doctor(DOCTOR + 1),
                        Who::Admin => Requester::Admin,
                    };
                    let expected = match self.model.get(&id) {
                        None => Err("not reschedulable".to_owned()),
                        Some(_) if !matches!(who, Who::Owner) => Err("forbidden".to_owned()),
                        Some(s) if s.start <= self.h.now => Err("not reschedulable".to_owned()),
                        Some(s) if s.start == to => Err("invalid".to_owned()),
                        Some(s) => coarse(self.expected_move(owner, id, s.duration_minutes, to))
                            .map_err(|r| r.code().to_owned()),
                    };
                    let got = self.h.reschedule(id, by, to).map_err(|e| match e {
                        EngineError::Forbidden => "forbidden".to_owned(),
                        EngineError::NotReschedulable(_) => "not reschedulable".to_owned(),
                        EngineError::Invalid(_) => "invalid".to_owned(),
                        EngineError::Rejected(r) => coarse(Err(r)).unwrap_err().code().to_owned(),
                        e => e.to_string(),
                    });
                    prop_assert_eq!(&got, &expected, "reschedule {} by {:?} to {}", id, by, to);
                    if got.is_ok() {
                        let before = self.model[&id].clone();
                        let after = self.h.cal.slot(id).cloned();
                        prop_assert_eq!(
                            after.as_ref(),
                            Some(&BookedSlot {
                                start: to,
                                ..before.clone()
                            })
                        );
                        self.model.insert(id, after.unwrap());
                        self.holds.remove(&owner);
                    }
                }
                Op::Advance { minutes } => self.h.now += Duration::minutes(minutes),
                Op::SwitchSchedule => {
                    let (slot, schedule) = self.alternate;
                    let p = self.h.cal.profile();
                    self.alternate = (p.slot_minutes, p.schedule);
                    self.h.set_schedule(ScheduleUpdate {
                        date_overrides: None,
                        policy: None,
                        timezone: None,
                        slot_minutes: Some(slot),
                        schedule,
                    });
                }
                Op::SetAvailable(on) => {
                    let update = StatusUpdate {
                        is_available: Some(on),
                        is_approved: None,
                    };
                    match self.h.cal.decide_status(update, ActedBy::Doctor) {
                        Some(event) => {
                            prop_assert_ne!(self.h.cal.profile().is_available, on);
                            self.h.commit(event);
                            prop_assert_eq!(self.h.cal.profile().is_available, on);
                        }
                        None => prop_assert_eq!(self.h.cal.profile().is_available, on),
                    }
                }
            }
            Ok(())
        }

        /// Property 2: an accepted booking shows as booked for its local date.
        fn prop_accepted_booking_is_listed_as_booked(
            &self,
            at: DateTime<Utc>,
        ) -> Result<(), TestCaseError> {
            let day = at
                .with_timezone(&self.h.cal.profile().timezone)
                .date_naive();
            let av = self.h.cal.availability(day, 1, self.h.now, &self.h.rules);
            let status = av.days[0]
                .slots
                .iter()
                .find(|s| s.start == at)
                .map(|s| s.status);
            prop_assert_eq!(status, Some(SlotStatus::Booked), "booking at {}", at);
            prop_assert!(av.booked_slots.contains(&at));
            Ok(())
        }

        /// Properties 1, 3 and 4, and agreement with the model, on the current state.
        fn check_state(&self, listing: &Availability) -> Result<(), TestCaseError> {
            let cal = &self.h.cal;
            // 1: no two active consultations overlap (sorted by start, so neighbours suffice).
            let active: Vec<&BookedSlot> = cal.active().collect();
            for w in active.windows(2) {
                prop_assert!(
                    w[0].end() <= w[1].start,
                    "{} ({} min) overlaps {}",
                    w[0].start,
                    w[0].duration_minutes,
                    w[1].start
                );
            }
            // The calendar holds exactly the model's consultations and live holds.
            let mut model: Vec<&BookedSlot> = self.model.values().collect();
            model.sort_by_key(|s| s.start);
            prop_assert_eq!(&active, &model);
            for s in &active {
                prop_assert_eq!(cal.slot(s.id), Some(*s));
            }
            let mut live: Vec<&Hold> = cal.live_holds(self.h.now).collect();
            live.sort_by_key(|x| x.patient_id);
            prop_assert_eq!(live, self.live_model_holds().collect::<Vec<_>>());

            // 3 and 4: every listed slot is a schedule slot, and its status is what the
            // check answers for a patient who holds nothing. Availability does not look at
            // the doctor's switch: while it is off every listed slot is refused as
            // doctor_unavailable.
            let p = cal.profile();
            let bookable = p.is_approved && p.is_available;
            let mut open = p.clone();
            open.is_approved = true;
            open.is_available = true;
            let fresh = Calendar::new(open);
            let long_ago = self.h.now - Duration::days(365);
            let from = self.listing_from();
            prop_assert_eq!(listing.days.len(), usize::from(LISTED_DAYS));
            for (i, day) in listing.days.iter().enumerate() {
                prop_assert_eq!(day.date, from + Duration::days(i as i64));
                prop_assert_eq!(day.enabled, p.schedule.day(day.date.weekday()).enabled);
                prop_assert!(day.slots.windows(2).all(|w| w[0].start < w[1].start));
                for s in &day.slots {
                    prop_assert_eq!(
                        fresh.check_slot(None, s.start, long_ago, &self.h.rules),
                        Ok(()),
                        "listed slot {} ({} on {})",
                        s.start,
                        &s.local_time,
                        day.date
                    );
                    let local = s.start.with_timezone(&p.timezone);
                    prop_assert_eq!(local.date_naive(), day.date);
                    prop_assert_eq!(&s.local_time, &local.format("%H:%M").to_string());
                    prop_assert_eq!(s.status, self.expected_status(s.start), "slot {}", s.start);
                    let check =
                        cal.check_slot(Some(FRESH_PATIENT), s.start, self.h.now, &self.h.rules);
                    let expected = match s.status {
                        _ if !bookable => Err(Rejection::DoctorUnavailable),
                        SlotStatus::Available => Ok(()),
                        SlotStatus::Booked | SlotStatus::Held => Err(Rejection::Conflict),
                        SlotStatus::Past => Err(Rejection::InPast),
                        SlotStatus::OutsideBookingWindow => Err(Rejection::OutsideBookingWindow),
                        SlotStatus::Full => Err(Rejection::DayFull),
                    };
                    prop_assert_eq!(check, expected, "slot {} listed {:?}", s.start, s.status);
                }
            }
            let last = from + Duration::days(i64::from(LISTED_DAYS));
            let expected_booked: Vec<_> = active
                .iter()
                .map(|s| s.start)
                .filter(|s| {
                    let d = s.with_timezone(&p.timezone).date_naive();
                    d >= from && d < last
                })
                .collect();
            prop_assert_eq!(&listing.booked_slots, &expected_booked);
            Ok(())
        }
    }

    impl Run {
        /// The converse of property 3: every instant the rules accept on a listed day is
        /// listed. Grid points are whole multiples of 5 minutes in UTC for every zone and
        /// slot length generated, so scanning those instants is exhaustive.
        fn check_listing_is_complete(&self, listing: &Availability) -> Result<(), TestCaseError> {
            let p = self.h.cal.profile();
            let mut open = p.clone();
            open.is_approved = true;
            open.is_available = true;
            let fresh = Calendar::new(open);
            let long_ago = self.h.now - Duration::days(365);
            let listed: Vec<DateTime<Utc>> = listing
                .days
                .iter()
                .flat_map(|d| d.slots.iter().map(|s| s.start))
                .collect();
            let first =
                listing.days[0].date.and_hms_opt(0, 0, 0).unwrap().and_utc() - Duration::days(1);
            let mut accepted = Vec::new();
            let mut at = first;
            while at < first + Duration::days(i64::from(LISTED_DAYS) + 2) {
                let day = at.with_timezone(&p.timezone).date_naive();
                if listing.days.iter().any(|d| d.date == day)
                    && fresh.check_slot(None, at, long_ago, &self.h.rules).is_ok()
                {
                    accepted.push(at);
                }
                at += Duration::minutes(5);
            }
            prop_assert_eq!(listed, accepted);
            Ok(())
        }

        /// `booked_slots` over single days around the run, against the model.
        fn check_booked_slots_by_day(&self, around: NaiveDate) -> Result<(), TestCaseError> {
            let tz = self.h.cal.profile().timezone;
            for k in -2i64..20 {
                let day = around + Duration::days(k);
                let av = self.h.cal.availability(day, 1, self.h.now, &self.h.rules);
                let mut expected: Vec<_> = self
                    .model
                    .values()
                    .map(|s| s.start)
                    .filter(|s| s.with_timezone(&tz).date_naive() == day)
                    .collect();
                expected.sort();
                prop_assert_eq!(av.booked_slots, expected, "booked_slots on {}", day);
            }
            Ok(())
        }
    }

    /// Drives one scenario and checks properties 1-5 along the way.
    fn run_scenario(s: Scenario) -> Result<(), TestCaseError> {
        prop_assert!(s.profile.schedule.validate(s.profile.slot_minutes).is_ok());
        prop_assert!(s.alternate.1.validate(s.alternate.0).is_ok());
        let mut h = Harness::new(s.profile.clone());
        h.now = s.start;
        h.rules = s.rules;
        let mut run = Run {
            h,
            alternate: s.alternate,
            model: BTreeMap::new(),
            booked: Vec::new(),
            holds: BTreeMap::new(),
        };
        let first_day = run.listing_from();
        let mut snapshot = None;
        // The exhaustive listing check is slow: run it first and after schedule changes.
        let mut check_complete = true;
        for (i, op) in s.ops.iter().enumerate() {
            if i == s.snapshot_after {
                snapshot = Some((
                    run.h.cal.seq(),
                    run.h.cal.encode_snapshot(),
                    run.h.journal.len(),
                ));
            }
            let listing =
                run.h
                    .cal
                    .availability(run.listing_from(), LISTED_DAYS, run.h.now, &run.h.rules);
            run.check_state(&listing)?;
            if check_complete {
                run.check_listing_is_complete(&listing)?;
            }
            run.step(*op, &listing)?;
            check_complete = matches!(op, Op::SwitchSchedule);
        }
        let listing =
            run.h
                .cal
                .availability(run.listing_from(), LISTED_DAYS, run.h.now, &run.h.rules);
        run.check_state(&listing)?;
        run.check_listing_is_complete(&listing)?;
        run.check_booked_slots_by_day(first_day)?;
        let (seq, blob, covered) = snapshot.unwrap_or_else(|| {
            (
                run.h.cal.seq(),
                run.h.cal.encode_snapshot(),
                run.h.journal.len(),
            )
        });

        // 5: replaying the journal, with or without a snapshot, and a snapshot round trip
        // all give the live durable state.
        let live = durable(&run.h.cal);
        let replayed =
            Calendar::rebuild(run.h.history()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&durable(&replayed), &live);
        let resumed = Calendar::rebuild(DoctorHistory {
            snapshot: Some(StoredSnapshot { seq, blob }),
            events: run.h.journal[covered..].to_vec(),
        })
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&durable(&resumed), &live);
        let decoded = Calendar::decode_snapshot(&run.h.cal.encode_snapshot())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&durable(&decoded), &live);
        // Same indexes too, not only the same consultations.
        prop_assert_eq!(&decoded, &replayed);
        prop_assert_eq!(&resumed, &replayed);
        // Every journal payload decodes to the event it encodes.
        for (_, event) in &run.h.journal {
            prop_assert_eq!(&DoctorEvent::decode(&event.encode()), &Ok(event.clone()));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn random_bookings_holds_cancellations_and_reschedules_keep_every_rule(s in scenario()) {
            run_scenario(s)?;
        }
    }
}
