//! Tests of the schedule exceptions and the per-doctor policy: breaks, date overrides
//! (closed dates, other hours), minimum notice, booking window and daily cap, across DST
//! changes; snapshot and journal compatibility with data written before they existed; and
//! property tests that availability never offers what the checks refuse.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::*;
use crate::error::{InvalidField, Rejection};
use crate::model::{
    BookingRequest, ConsultMode, ConsultationId, DoctorProfile, MedicalInfo, PatientId, Requester,
    ScheduleUpdate,
};

const BERLIN: Tz = Tz::Europe__Berlin;
const NEW_YORK: Tz = Tz::America__New_York;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

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

fn brk(h1: u16, m1: u16, h2: u16, m2: u16) -> Break {
    Break::new(hm(h1, m1), hm(h2, m2))
}

/// Monday to Friday 09:00-17:00, 30-minute slots, approved and available.
fn profile(tz: Tz) -> DoctorProfile {
    DoctorProfile {
        id: 9,
        name: "Dr Grace Hopper".into(),
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

/// Decides and applies like the doctor actor.
struct Doc {
    cal: Calendar,
    now: DateTime<Utc>,
    rules: Rules,
    next_id: ConsultationId,
}

impl Doc {
    fn new(profile: DoctorProfile, now: DateTime<Utc>) -> Self {
        Self {
            cal: Calendar::new(profile),
            now,
            rules: Rules::default(),
            next_id: 1,
        }
    }

    /// Berlin, `now` Monday 2026-06-01 00:00 UTC.
    fn berlin() -> Self {
        Self::new(profile(BERLIN), utc(2026, 6, 1, 0, 0))
    }

    fn apply(&mut self, event: DoctorEvent) {
        let seq = self.cal.seq() + 1;
        self.cal.apply(seq, &event);
    }

    fn update(&mut self, f: impl FnOnce(&mut ScheduleUpdate)) -> Result<(), InvalidField> {
        let p = self.cal.profile();
        let mut update = ScheduleUpdate {
            timezone: None,
            slot_minutes: None,
            schedule: p.schedule,
            date_overrides: None,
            policy: None,
        };
        f(&mut update);
        let event = self.cal.decide_schedule(&update, self.now)?;
        self.apply(event);
        Ok(())
    }

    fn set_overrides(&mut self, list: &[(NaiveDate, DateOverride)]) {
        let o: DateOverrides = list.iter().copied().collect();
        self.update(|u| u.date_overrides = Some(o)).unwrap();
    }

    fn set_policy(&mut self, policy: BookingPolicy) {
        self.update(|u| u.policy = Some(policy)).unwrap();
    }

    fn check(&self, patient: PatientId, at: DateTime<Utc>) -> Result<(), Rejection> {
        self.cal
            .check_slot(Some(patient), at, self.now, &self.rules)
    }

    fn book(&mut self, patient: PatientId, at: DateTime<Utc>) -> Result<ConsultationId, Rejection> {
        let req = BookingRequest {
            doctor_id: self.cal.profile().id,
            patient_id: patient,
            scheduled_at: at,
            mode: ConsultMode::Video,
            medical: MedicalInfo::default(),
        };
        let id = self.next_id;
        let event = self.cal.decide_book(&req, id, self.now, &self.rules)?;
        self.next_id += 1;
        self.apply(event);
        Ok(id)
    }

    fn day(&self, d: NaiveDate) -> DayView {
        self.cal
            .availability(d, 1, self.now, &self.rules)
            .days
            .remove(0)
    }

    /// `(local_time, status)` of a date's slots.
    fn slots(&self, d: NaiveDate) -> Vec<(String, SlotStatus)> {
        self.day(d)
            .slots
            .into_iter()
            .map(|s| (s.local_time, s.status))
            .collect()
    }

    fn times(&self, d: NaiveDate) -> Vec<String> {
        self.slots(d).into_iter().map(|(t, _)| t).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Breaks and date overrides
// ---------------------------------------------------------------------------------------

#[test]
fn a_break_removes_the_slots_it_overlaps_and_booking_inside_it_is_outside_availability() {
    let mut d = Doc::berlin();
    d.update(|u| {
        u.schedule.wednesday = u
            .schedule
            .wednesday
            .with_breaks(&[brk(12, 0, 13, 0), brk(15, 15, 15, 45)])
    })
    .unwrap();
    let times = d.times(date(2026, 6, 3));
    for gone in ["12:00", "12:30", "15:00", "15:30"] {
        assert!(!times.contains(&gone.to_owned()), "{gone} in {times:?}");
    }
    for kept in ["11:30", "13:00", "14:30", "16:00", "16:30"] {
        assert!(times.contains(&kept.to_owned()), "{kept} missing");
    }
    let at = |h, m| local(BERLIN, 2026, 6, 3, h, m);
    assert_eq!(d.check(1, at(12, 0)), Err(Rejection::OutsideAvailability));
    assert_eq!(d.check(1, at(15, 30)), Err(Rejection::OutsideAvailability));
    // Off the grid inside a break: the break is found first, as the window would be.
    assert_eq!(d.check(1, at(12, 10)), Err(Rejection::OutsideAvailability));
    assert_eq!(d.check(1, at(13, 0)), Ok(()));
    assert_eq!(
        d.day(date(2026, 6, 3)).breaks.as_slice(),
        &[brk(12, 0, 13, 0), brk(15, 15, 15, 45)]
    );
    // Breaks are per weekday.
    assert_eq!(d.check(1, local(BERLIN, 2026, 6, 4, 12, 0)), Ok(()));
}

#[test]
fn a_closed_date_override_closes_that_date_only() {
    let mut d = Doc::berlin();
    d.set_overrides(&[(date(2026, 6, 3), DateOverride::closed())]);
    let day = d.day(date(2026, 6, 3));
    assert!(!day.enabled && day.overridden && day.slots.is_empty());
    assert_eq!(
        d.check(1, local(BERLIN, 2026, 6, 3, 10, 0)),
        Err(Rejection::DayUnavailable)
    );
    assert_eq!(d.check(1, local(BERLIN, 2026, 6, 4, 10, 0)), Ok(()));
}

#[test]
fn a_vacation_is_a_run_of_closed_dates() {
    let mut d = Doc::berlin();
    let days: Vec<_> = (8..=12)
        .map(|n| (date(2026, 6, n), DateOverride::closed()))
        .collect();
    d.set_overrides(&days);
    let a = d.cal.availability(date(2026, 6, 7), 7, d.now, &d.rules);
    let open: Vec<_> = a
        .days
        .iter()
        .filter(|x| x.enabled)
        .map(|x| x.date)
        .collect();
    // Sunday the 7th and Saturday the 13th are closed weekly; the week between by override.
    assert!(open.is_empty(), "{open:?}");
    assert_eq!(d.check(1, local(BERLIN, 2026, 6, 15, 9, 0)), Ok(()));
    assert_eq!(a.date_overrides.len(), 5);
}

#[test]
fn an_open_override_gives_other_hours_even_on_a_closed_weekday() {
    let mut d = Doc::berlin();
    // Saturday 2026-06-06 is closed weekly; open it 10:00-12:00 with a break.
    d.set_overrides(&[(
        date(2026, 6, 6),
        DateOverride::open(hm(10, 0), hm(12, 0), &[brk(11, 0, 11, 30)]),
    )]);
    assert_eq!(d.times(date(2026, 6, 6)), vec!["10:00", "10:30", "11:30"]);
    assert_eq!(d.check(1, local(BERLIN, 2026, 6, 6, 10, 30)), Ok(()));
    assert_eq!(
        d.check(1, local(BERLIN, 2026, 6, 6, 9, 0)),
        Err(Rejection::OutsideAvailability)
    );
    // On a weekday the override replaces the weekly window.
    d.set_overrides(&[(
        date(2026, 6, 3),
        DateOverride::open(hm(14, 0), hm(15, 0), &[]),
    )]);
    assert_eq!(d.times(date(2026, 6, 3)), vec!["14:00", "14:30"]);
    assert_eq!(
        d.check(1, local(BERLIN, 2026, 6, 3, 10, 0)),
        Err(Rejection::OutsideAvailability)
    );
    // The Saturday override was replaced, not merged.
    assert!(!d.day(date(2026, 6, 6)).enabled);
}

#[test]
fn an_update_without_overrides_or_policy_keeps_them_and_past_overrides_are_dropped() {
    let mut d = Doc::berlin();
    d.set_overrides(&[
        (date(2026, 5, 31), DateOverride::closed()),
        (date(2026, 6, 3), DateOverride::closed()),
    ]);
    let policy = BookingPolicy {
        min_notice_minutes: 60,
        booking_window_days: Some(14),
        max_per_day: Some(3),
    };
    d.set_policy(policy);
    d.update(|u| u.slot_minutes = Some(60)).unwrap();
    let p = d.cal.profile();
    assert_eq!(
        p.date_overrides.keys().copied().collect::<Vec<_>>(),
        vec![date(2026, 6, 3)]
    );
    assert_eq!(p.policy, policy);
    assert_eq!(p.slot_minutes, 60);
}

#[test]
fn invalid_overrides_and_policies_are_refused_with_their_field() {
    let mut d = Doc::berlin();
    let bad = d
        .update(|u| {
            u.date_overrides = Some(
                [(
                    date(2026, 6, 3),
                    DateOverride::open(hm(10, 0), hm(10, 20), &[]),
                )]
                .into_iter()
                .collect(),
            )
        })
        .unwrap_err();
    assert_eq!(bad.field, "date_overrides.2026-06-03");
    let bad = d
        .update(|u| {
            u.date_overrides = Some(
                [(
                    date(2026, 6, 3),
                    DateOverride::open(hm(10, 0), hm(12, 0), &[brk(9, 0, 10, 30)]),
                )]
                .into_iter()
                .collect(),
            )
        })
        .unwrap_err();
    assert_eq!(bad.field, "date_overrides.2026-06-03.breaks[0]");
    let bad = d
        .update(|u| {
            u.policy = Some(BookingPolicy {
                max_per_day: Some(0),
                ..BookingPolicy::default()
            })
        })
        .unwrap_err();
    assert_eq!(bad.field, "policy.max_per_day");
    let bad = d
        .update(|u| {
            u.schedule.monday = u.schedule.monday.with_breaks(&[brk(8, 0, 9, 30)]);
        })
        .unwrap_err();
    assert_eq!(bad.field, "availability_schedule.monday.breaks[0]");
}

// ---------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------

#[test]
fn the_doctors_min_notice_adds_to_the_engine_floor_whichever_is_longer() {
    let mut d = Doc::new(profile(BERLIN), local(BERLIN, 2026, 6, 3, 9, 0));
    d.rules.min_notice_minutes = 60;
    let at = |h, m| local(BERLIN, 2026, 6, 3, h, m);
    assert_eq!(d.check(1, at(10, 0)), Err(Rejection::InPast));
    assert_eq!(d.check(1, at(10, 30)), Ok(()));
    d.set_policy(BookingPolicy {
        min_notice_minutes: 180,
        ..BookingPolicy::default()
    });
    assert_eq!(d.check(1, at(12, 0)), Err(Rejection::InPast));
    assert_eq!(d.check(1, at(12, 30)), Ok(()));
    let s = d.slots(date(2026, 6, 3));
    assert!(s
        .iter()
        .any(|(t, st)| t == "12:00" && *st == SlotStatus::Past));
    assert!(s
        .iter()
        .any(|(t, st)| t == "12:30" && *st == SlotStatus::Available));
    // A shorter doctor's notice never lowers the engine's.
    d.set_policy(BookingPolicy {
        min_notice_minutes: 0,
        ..BookingPolicy::default()
    });
    assert_eq!(d.check(1, at(10, 0)), Err(Rejection::InPast));
}

#[test]
fn a_slot_past_the_booking_window_is_listed_so_and_refused() {
    let mut d = Doc::berlin(); // now: 2026-06-01 00:00 UTC = 02:00 Berlin
    d.set_policy(BookingPolicy {
        booking_window_days: Some(3),
        ..BookingPolicy::default()
    });
    // The window ends 2026-06-04 00:00 UTC = 02:00 Berlin: Thursday the 4th is beyond.
    assert_eq!(d.check(1, local(BERLIN, 2026, 6, 3, 16, 30)), Ok(()));
    assert_eq!(
        d.check(1, local(BERLIN, 2026, 6, 4, 9, 0)),
        Err(Rejection::OutsideBookingWindow)
    );
    assert!(d
        .slots(date(2026, 6, 4))
        .iter()
        .all(|(_, s)| *s == SlotStatus::OutsideBookingWindow));
    // The seed's checks come first: a closed day is still day_unavailable.
    assert_eq!(
        d.check(1, local(BERLIN, 2026, 6, 6, 9, 0)),
        Err(Rejection::DayUnavailable)
    );
}

#[test]
fn the_daily_cap_counts_active_consultations_of_the_local_date() {
    let mut d = Doc::berlin();
    d.set_policy(BookingPolicy {
        max_per_day: Some(2),
        ..BookingPolicy::default()
    });
    let at = |h, m| local(BERLIN, 2026, 6, 3, h, m);
    let first = d.book(1, at(9, 0)).unwrap();
    d.book(2, at(10, 0)).unwrap();
    assert_eq!(d.book(3, at(11, 0)), Err(Rejection::DayFull));
    // A hold is refused as well.
    assert_eq!(
        d.cal.place_hold(3, at(11, 0), d.now, &d.rules),
        Err(Rejection::DayFull)
    );
    let day = d.day(date(2026, 6, 3));
    assert!(day.full);
    assert_eq!(day.booked, 2);
    assert!(day
        .slots
        .iter()
        .all(|s| matches!(s.status, SlotStatus::Full | SlotStatus::Booked)));
    // Other dates are unaffected.
    assert_eq!(d.check(3, local(BERLIN, 2026, 6, 4, 11, 0)), Ok(()));
    // Moving a consultation within the full day is allowed: it does not count twice.
    let event = d
        .cal
        .decide_reschedule(first, Requester::Patient(1), at(15, 0), d.now, &d.rules)
        .unwrap();
    d.apply(event);
    // Moving one into a full day is not.
    let other = d.book(3, local(BERLIN, 2026, 6, 4, 9, 0)).unwrap();
    assert_eq!(
        d.cal
            .decide_reschedule(other, Requester::Patient(3), at(16, 0), d.now, &d.rules),
        Err(Rejection::DayFull.into())
    );
    // A cancellation frees a place.
    let event = d
        .cal
        .decide_cancel(first, Requester::Patient(1), d.now)
        .unwrap();
    d.apply(event);
    assert_eq!(d.book(4, at(11, 0)).map(|_| ()), Ok(()));
}

#[test]
fn a_full_day_is_refused_before_a_conflict_and_after_the_window() {
    let mut d = Doc::berlin();
    d.set_policy(BookingPolicy {
        max_per_day: Some(1),
        booking_window_days: Some(5),
        ..BookingPolicy::default()
    });
    let at = local(BERLIN, 2026, 6, 3, 9, 0);
    d.book(1, at).unwrap();
    assert_eq!(d.check(2, at), Err(Rejection::DayFull));
    assert_eq!(
        d.check(2, local(BERLIN, 2026, 6, 10, 9, 0)),
        Err(Rejection::OutsideBookingWindow)
    );
}

#[test]
fn a_schedule_change_keeps_consultations_and_covers_says_which_are_outside() {
    let mut d = Doc::berlin();
    let at = local(BERLIN, 2026, 6, 3, 12, 0);
    d.book(1, at).unwrap();
    assert!(d.cal.covers(at, 30));
    d.update(|u| u.schedule.wednesday = u.schedule.wednesday.with_breaks(&[brk(12, 0, 13, 0)]))
        .unwrap();
    assert_eq!(d.cal.active_len(), 1);
    assert!(!d.cal.covers(at, 30));
    d.set_overrides(&[(date(2026, 6, 3), DateOverride::closed())]);
    assert!(!schedule_covers(d.cal.profile(), at, 30));
    assert!(schedule_covers(
        d.cal.profile(),
        local(BERLIN, 2026, 6, 4, 12, 0),
        30
    ));
}

// ---------------------------------------------------------------------------------------
// DST
// ---------------------------------------------------------------------------------------

/// Open 00:00-05:00 every day, `now` long before.
fn night(tz: Tz) -> Doc {
    let mut p = profile(tz);
    p.schedule = WeeklySchedule::every_day(DayWindow::open(hm(0, 0), hm(5, 0)));
    Doc::new(p, utc(2026, 1, 1, 0, 0))
}

#[test]
fn a_break_across_the_spring_gap_in_berlin_gives_no_slot_for_missing_or_broken_times() {
    // 2026-03-29: 02:00 -> 03:00 in Berlin.
    let mut d = night(BERLIN);
    d.set_overrides(&[(
        date(2026, 3, 29),
        DateOverride::open(hm(1, 0), hm(5, 0), &[brk(3, 0, 3, 30)]),
    )]);
    assert_eq!(
        d.times(date(2026, 3, 29)),
        vec!["01:00", "01:30", "03:30", "04:00", "04:30"]
    );
    // The instant after 01:30 local is 03:00 local, inside the break.
    assert_eq!(
        d.check(1, utc(2026, 3, 29, 1, 0)),
        Err(Rejection::OutsideAvailability)
    );
    assert_eq!(d.check(1, local(BERLIN, 2026, 3, 29, 3, 30)), Ok(()));
    // Every listed slot passes the check.
    for s in d.day(date(2026, 3, 29)).slots {
        assert_eq!(d.check(1, s.start), Ok(()), "{}", s.local_time);
    }
}

#[test]
fn a_closed_override_on_the_autumn_change_in_berlin_closes_both_repeated_hours() {
    // 2026-10-25: 03:00 -> 02:00 in Berlin; 02:00 and 02:30 happen twice.
    let mut d = night(BERLIN);
    assert_eq!(d.times(date(2026, 10, 25)).len(), 12);
    d.set_overrides(&[(date(2026, 10, 25), DateOverride::closed())]);
    assert!(d.times(date(2026, 10, 25)).is_empty());
    for h in 0..2 {
        // 00:00 and 00:30 UTC are 02:00 and 02:30 CEST; 01:00/01:30 UTC are the CET repeat.
        for m in [0, 30] {
            assert_eq!(
                d.check(1, utc(2026, 10, 25, h, m)),
                Err(Rejection::DayUnavailable)
            );
        }
    }
    // The day after is open as usual.
    assert_eq!(d.check(1, local(BERLIN, 2026, 10, 26, 2, 0)), Ok(()));
}

#[test]
fn a_break_on_the_repeated_hour_in_new_york_removes_both_instants() {
    // 2026-11-01: 02:00 -> 01:00 in New York; 01:00 and 01:30 happen twice.
    let mut d = night(NEW_YORK);
    d.update(|u| u.schedule.sunday = u.schedule.sunday.with_breaks(&[brk(1, 0, 1, 30)]))
        .unwrap();
    let times = d.times(date(2026, 11, 1));
    assert_eq!(
        times,
        vec![
            "00:00", "00:30", "01:30", "01:30", "02:00", "02:30", "03:00", "03:30", "04:00",
            "04:30"
        ]
    );
    // 01:00 EDT = 05:00 UTC, 01:00 EST = 06:00 UTC: both inside the break.
    for at in [utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 6, 0)] {
        assert_eq!(d.check(1, at), Err(Rejection::OutsideAvailability));
    }
    // 01:30 EDT and 01:30 EST are both bookable, one slot each.
    for at in [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)] {
        assert_eq!(d.check(1, at), Ok(()));
    }
}

#[test]
fn an_override_in_the_spring_gap_in_new_york_gives_no_slot_for_the_missing_hour() {
    // 2026-03-08: 02:00 -> 03:00 in New York.
    let mut d = night(NEW_YORK);
    d.set_overrides(&[(
        date(2026, 3, 8),
        DateOverride::open(hm(1, 30), hm(4, 0), &[brk(3, 30, 4, 0)]),
    )]);
    assert_eq!(d.times(date(2026, 3, 8)), vec!["01:30", "03:00"]);
    // The daily cap counts by local date across the change.
    d.set_policy(BookingPolicy {
        max_per_day: Some(1),
        ..BookingPolicy::default()
    });
    d.book(1, local(NEW_YORK, 2026, 3, 8, 1, 30)).unwrap();
    assert_eq!(
        d.check(2, local(NEW_YORK, 2026, 3, 8, 3, 0)),
        Err(Rejection::DayFull)
    );
    assert_eq!(d.check(2, local(NEW_YORK, 2026, 3, 9, 3, 0)), Ok(()));
}

// ---------------------------------------------------------------------------------------
// Compatibility
// ---------------------------------------------------------------------------------------

/// A version 1 snapshot written by the build before breaks, overrides and policies: Dr Ada
/// Lovelace in London, weekdays 09:00-17:00, seq 3, two consultations on 2026-06-03.
const V1_SNAPSHOT_HEX: &str = "010e0f447220416461204c6f76656c6163651067656e6572616c2070726163746963650d4575726f70652f4c6f6e646f6e1e010530393a30300531373a3030010530393a30300531373a3030010530393a30300531373a3030010530393a30300531373a3030010530393a30300531373a3030000530393a30300531373a3030000530393a30300531373a3030010114323032362d30312d30315430303a30303a30305a0302020b434f4e532d4b56375234388614323032362d30362d30335430393a30303a30305a1e010114323032362d30362d30315430303a30303a30305a040b434f4e532d3244514336438814323032362d30362d30335431303a33303a30305a1e010114323032362d30362d30315430303a30303a30305a";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_version_1_snapshot_still_loads_with_no_breaks_overrides_or_policy() {
    let cal = Calendar::decode_snapshot(&unhex(V1_SNAPSHOT_HEX)).unwrap();
    let p = cal.profile();
    assert_eq!(p.id, 7);
    assert_eq!(p.name, "Dr Ada Lovelace");
    assert_eq!(p.timezone, Tz::Europe__London);
    assert_eq!(p.schedule, WeeklySchedule::weekdays(hm(9, 0), hm(17, 0)));
    assert!(p.date_overrides.is_empty());
    assert_eq!(p.policy, BookingPolicy::default());
    assert_eq!(cal.seq(), 3);
    let starts: Vec<_> = cal.active().map(|s| (s.id, s.start)).collect();
    assert_eq!(
        starts,
        vec![(1, utc(2026, 6, 3, 9, 0)), (2, utc(2026, 6, 3, 10, 30))]
    );
    // Written again, it is the current version and round-trips.
    let blob = cal.encode_snapshot();
    assert_eq!(blob[0], SNAPSHOT_FORMAT_VERSION);
    assert_eq!(SNAPSHOT_FORMAT_VERSION, 2);
    assert_eq!(Calendar::decode_snapshot(&blob).unwrap(), cal);
}

/// A version 2 snapshot written by the build whose calendar still held each booking's
/// reference: Dr Grace Hopper in Berlin, two video consultations on 2026-06-04 (ids 1 and
/// 2, `CONS-KV7R48` and `CONS-2DQC6C`).
const V2_SNAPSHOT_WITH_HELD_REFERENCES_HEX: &str = "02120f447220477261636520486f707065721067656e6572616c2070726163746963650d4575726f70652f4265726c696e1e010530393a30300531373a303000010530393a30300531373a303000010530393a30300531373a303000010530393a30300531373a303000010530393a30300531373a303000000530393a30300531373a303000000530393a30300531373a303000010114323032362d30312d30315430303a30303a30305a000000000302020b434f4e532d4b56375234380214323032362d30362d30345430373a30303a30305a1e010114323032362d30362d30315430303a30303a30305a040b434f4e532d3244514336430414323032362d30362d30345430383a30303a30305a1e010114323032362d30362d30315430303a30303a30305a";

#[test]
fn a_snapshot_reads_and_writes_the_same_bytes_now_that_references_are_derived() {
    let blob = unhex(V2_SNAPSHOT_WITH_HELD_REFERENCES_HEX);
    let cal = Calendar::decode_snapshot(&blob).unwrap();
    let slots: Vec<_> = cal
        .active()
        .map(|s| (s.id, s.reference(), s.start))
        .collect();
    assert_eq!(
        slots,
        vec![
            (1, "CONS-KV7R48".to_string(), utc(2026, 6, 4, 7, 0)),
            (2, "CONS-2DQC6C".to_string(), utc(2026, 6, 4, 8, 0)),
        ]
    );
    assert_eq!(
        cal.encode_snapshot(),
        blob,
        "the reference is still written where it was"
    );
}

#[test]
fn a_booked_event_is_journaled_with_its_reference_as_before() {
    let mut d = Doc::berlin();
    d.book(5, local(BERLIN, 2026, 6, 4, 9, 0)).unwrap();
    let slot = d.cal.active().next().unwrap().clone();
    let event = DoctorEvent::Booked { slot: slot.clone() };
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(
        json["slot"]["reference"],
        crate::model::reference_for(slot.id)
    );
    let keys: Vec<_> = json["slot"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "id",
            "reference",
            "patient_id",
            "start",
            "duration_minutes",
            "status",
            "mode",
            "created_at"
        ]
    );
    let back: DoctorEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back, event);
}

#[test]
fn a_snapshot_with_breaks_overrides_and_policy_round_trips() {
    let mut d = Doc::berlin();
    d.update(|u| u.schedule.monday = u.schedule.monday.with_breaks(&[brk(12, 0, 13, 0)]))
        .unwrap();
    d.set_overrides(&[
        (date(2026, 6, 3), DateOverride::closed()),
        (
            date(2026, 6, 6),
            DateOverride::open(hm(10, 0), hm(12, 0), &[brk(11, 0, 11, 30)]),
        ),
    ]);
    d.set_policy(BookingPolicy {
        min_notice_minutes: 90,
        booking_window_days: Some(60),
        max_per_day: Some(8),
    });
    d.book(1, local(BERLIN, 2026, 6, 4, 9, 0)).unwrap();
    let back = Calendar::decode_snapshot(&d.cal.encode_snapshot()).unwrap();
    assert_eq!(back, d.cal);
}

#[test]
fn journal_events_written_before_overrides_and_policies_still_decode() {
    let old_schedule = serde_json::json!({
        "type": "schedule_updated",
        "timezone": "Europe/Berlin",
        "slot_minutes": 30,
        "schedule": {
            "monday": {"enabled": true, "start": "09:00", "end": "17:00"},
            "tuesday": {"enabled": true, "start": "09:00", "end": "17:00"},
            "wednesday": {"enabled": true, "start": "09:00", "end": "17:00"},
            "thursday": {"enabled": true, "start": "09:00", "end": "17:00"},
            "friday": {"enabled": true, "start": "09:00", "end": "17:00"},
            "saturday": {"enabled": false, "start": "09:00", "end": "17:00"},
            "sunday": {"enabled": false, "start": "09:00", "end": "17:00"}
        }
    });
    let mut bytes = vec![EVENT_FORMAT_VERSION];
    bytes.extend(serde_json::to_vec(&old_schedule).unwrap());
    let event = DoctorEvent::decode(&bytes).unwrap();
    assert_eq!(
        event,
        DoctorEvent::ScheduleUpdated {
            timezone: BERLIN,
            slot_minutes: 30,
            schedule: WeeklySchedule::weekdays(hm(9, 0), hm(17, 0)),
            date_overrides: DateOverrides::new(),
            policy: BookingPolicy::default(),
        }
    );
    let mut registered = serde_json::json!({"type": "registered", "profile": {
        "id": 9, "name": "Dr Old", "specialty": "gp", "timezone": "Europe/Berlin",
        "slot_minutes": 30, "is_available": true, "is_approved": true,
        "created_at": "2026-01-01T00:00:00Z"
    }});
    registered["profile"]["schedule"] = old_schedule["schedule"].clone();
    let mut bytes = vec![EVENT_FORMAT_VERSION];
    bytes.extend(serde_json::to_vec(&registered).unwrap());
    match DoctorEvent::decode(&bytes).unwrap() {
        DoctorEvent::Registered { profile } => {
            assert!(profile.date_overrides.is_empty());
            assert_eq!(profile.policy, BookingPolicy::default());
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

mod properties {
    use super::*;
    use proptest::prelude::*;

    const FROM: (i32, u32, u32) = (2026, 3, 2);
    const DAYS: u16 = 14;

    fn first_day() -> NaiveDate {
        date(FROM.0, FROM.1, FROM.2)
    }

    fn zones() -> impl Strategy<Value = Tz> {
        prop_oneof![
            Just(BERLIN),
            Just(NEW_YORK),
            Just(Tz::Asia__Kolkata),
            Just(Tz::Australia__Lord_Howe)
        ]
    }

    /// A window on the quarter-hour grid with up to three breaks (possibly invalid ones are
    /// filtered by validation before use).
    fn window() -> impl Strategy<Value = DayWindow> {
        (
            any::<bool>(),
            0u16..60,
            8u16..97,
            proptest::collection::vec((0u16..96, 1u16..9), 0..4),
        )
            .prop_map(|(enabled, s, len, breaks)| {
                let start = s * 15;
                let end = (start + len * 15).min(1440);
                let mut list: Vec<Break> = Vec::new();
                for (bs, bl) in breaks {
                    let from = (start + bs * 15).min(end);
                    let to = (from + bl * 15).min(end);
                    let b = Break::new(
                        LocalTime::from_minutes(from).unwrap(),
                        LocalTime::from_minutes(to).unwrap(),
                    );
                    if from < to && list.iter().all(|o| !o.overlaps(from, to)) {
                        list.push(b);
                    }
                }
                DayWindow {
                    enabled,
                    start: LocalTime::from_minutes(start).unwrap(),
                    end: LocalTime::from_minutes(end).unwrap(),
                    breaks: Breaks::from_slice(&list).unwrap(),
                }
            })
    }

    fn overrides() -> impl Strategy<Value = Vec<(u16, DayWindow)>> {
        proptest::collection::vec((0u16..DAYS, window()), 0..6)
    }

    fn policy() -> impl Strategy<Value = BookingPolicy> {
        (
            prop_oneof![Just(0u32), 0u32..3000],
            proptest::option::of(1u16..12),
            proptest::option::of(1u16..6),
        )
            .prop_map(|(n, w, m)| BookingPolicy {
                min_notice_minutes: n,
                booking_window_days: w,
                max_per_day: m,
            })
    }

    #[derive(Debug, Clone)]
    struct Case {
        tz: Tz,
        slot: u16,
        week: [DayWindow; 7],
        overrides: Vec<(u16, DayWindow)>,
        policy: BookingPolicy,
        /// Attempts: (day offset, slot index, patient).
        bookings: Vec<(u16, u16, PatientId)>,
        now_offset_h: u16,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            zones(),
            prop_oneof![Just(15u16), Just(30), Just(45), Just(60)],
            proptest::array::uniform7(window()),
            overrides(),
            policy(),
            proptest::collection::vec((0u16..DAYS, 0u16..64, 1i64..6), 0..40),
            0u16..72,
        )
            .prop_map(
                |(tz, slot, week, overrides, policy, bookings, now_offset_h)| Case {
                    tz,
                    slot,
                    week,
                    overrides,
                    policy,
                    bookings,
                    now_offset_h,
                },
            )
    }

    /// The doctor of `case`, with the windows that are not valid for its slot closed.
    fn build(c: &Case) -> Doc {
        let valid = |w: DayWindow, slot| {
            if w.validate("w", slot).is_ok() {
                w
            } else {
                DayWindow::closed()
            }
        };
        let mut p = profile(c.tz);
        p.slot_minutes = c.slot;
        let [mo, tu, we, th, fr, sa, su] = c.week.map(|w| valid(w, c.slot));
        p.schedule = WeeklySchedule {
            monday: mo,
            tuesday: tu,
            wednesday: we,
            thursday: th,
            friday: fr,
            saturday: sa,
            sunday: su,
        };
        for (offset, w) in &c.overrides {
            let w = valid(*w, c.slot);
            let o = if w.enabled {
                DateOverride {
                    enabled: true,
                    start: Some(w.start),
                    end: Some(w.end),
                    breaks: w.breaks,
                }
            } else {
                DateOverride::closed()
            };
            p.date_overrides
                .insert(first_day() + Duration::days(i64::from(*offset)), o);
        }
        p.policy = c.policy;
        let now = first_day().and_hms_opt(0, 0, 0).unwrap().and_utc()
            + Duration::hours(i64::from(c.now_offset_h))
            - Duration::days(1);
        let mut d = Doc::new(p, now);
        d.rules.min_notice_minutes = 30;
        for (offset, idx, patient) in &c.bookings {
            let day = d.day(first_day() + Duration::days(i64::from(*offset)));
            if let Some(s) = day.slots.get(usize::from(*idx) % day.slots.len().max(1)) {
                let _ = d.book(*patient, s.start);
            }
        }
        d
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        /// Availability never offers a slot inside a break, on a closed date, past the
        /// booking window, inside the notice or on a day at its cap; the cap is never
        /// exceeded; and check_slot agrees with every listed status.
        #[test]
        fn availability_respects_every_exception_and_agrees_with_check_slot(c in case()) {
            let d = build(&c);
            let p = d.cal.profile().clone();
            let a = d.cal.availability(first_day(), DAYS, d.now, &d.rules);
            let notice = Duration::minutes(i64::from(
                d.rules.min_notice_minutes.max(p.policy.min_notice_minutes),
            ));
            for day in &a.days {
                let window = day_window(&p, day.date);
                prop_assert_eq!(day.enabled, window.enabled);
                prop_assert_eq!(day.overridden, p.date_overrides.contains_key(&day.date));
                let booked = d.cal.booked_on(day.date, None);
                if let Some(max) = p.policy.max_per_day {
                    prop_assert!(booked <= u32::from(max), "{} has {}", day.date, booked);
                    prop_assert_eq!(day.full, booked >= u32::from(max));
                }
                if !window.enabled {
                    prop_assert!(day.slots.is_empty());
                }
                for s in &day.slots {
                    let t = LocalTime::parse(&s.local_time).unwrap();
                    let local = s.start.with_timezone(&p.timezone);
                    prop_assert_eq!(local.date_naive(), day.date);
                    prop_assert!(!window.breaks.overlap(t.minutes(), t.minutes() + p.slot_minutes),
                        "slot {} inside a break {:?}", s.local_time, window.breaks);
                    prop_assert!(window.covers(t.minutes(), t.minutes() + p.slot_minutes));
                    if s.status == SlotStatus::Available {
                        prop_assert!(s.start > d.now + notice);
                        if let Some(w) = p.policy.booking_window_days {
                            prop_assert!(s.start <= d.now + Duration::days(i64::from(w)));
                        }
                        prop_assert!(!day.full);
                    }
                    let check = d.check(99, s.start);
                    let expected = match s.status {
                        SlotStatus::Available => Ok(()),
                        SlotStatus::Past => Err(Rejection::InPast),
                        SlotStatus::OutsideBookingWindow => Err(Rejection::OutsideBookingWindow),
                        SlotStatus::Full => Err(Rejection::DayFull),
                        SlotStatus::Booked | SlotStatus::Held => {
                            if day.full { Err(Rejection::DayFull) } else { Err(Rejection::Conflict) }
                        }
                    };
                    prop_assert_eq!(check, expected, "{} {}", s.start, s.local_time);
                }
            }
        }

        /// next_free offers exactly the earliest available slots after the time asked (as
        /// far as the listed range shows them), each of them bookable.
        #[test]
        fn next_free_is_the_earliest_available_slots_after_the_time_asked(
            c in case(),
            pick in 0usize..400,
        ) {
            let d = build(&c);
            let tz = d.cal.profile().timezone;
            let a = d.cal.availability(first_day(), DAYS, d.now, &d.rules);
            let starts: Vec<_> = a.days.iter().flat_map(|x| x.slots.iter()).map(|s| s.start).collect();
            let after = starts.get(pick % starts.len().max(1)).copied().unwrap_or(d.now);
            let next = d.cal.next_free(Some(99), after, 3, d.now, &d.rules);
            let last = first_day() + Duration::days(i64::from(DAYS));
            let listed: Vec<_> = a
                .days
                .iter()
                .flat_map(|x| x.slots.iter())
                .filter(|s| s.status == SlotStatus::Available && s.start > after)
                .map(|s| s.start)
                .collect();
            let in_range: Vec<_> = next
                .iter()
                .copied()
                .filter(|s| s.with_timezone(&tz).date_naive() < last)
                .collect();
            // Those in the listed range are its earliest available ones after `after`...
            prop_assert_eq!(&in_range[..], &listed[..in_range.len().min(listed.len())]);
            // ...and none of the listed ones was skipped.
            if in_range.len() < 3 {
                prop_assert_eq!(in_range.len(), listed.len(), "{:?} vs {:?}", next, listed);
            }
            for s in &next {
                prop_assert!(*s > after);
                prop_assert_eq!(d.check(99, *s), Ok(()));
            }
        }

        /// Every instant on a 15-minute grid that check_slot accepts is a listed available
        /// slot: the checks accept nothing availability hides.
        #[test]
        fn check_slot_accepts_only_listed_available_slots(c in case()) {
            let d = build(&c);
            let a = d.cal.availability(first_day(), DAYS, d.now, &d.rules);
            let available: std::collections::HashSet<_> = a
                .days
                .iter()
                .flat_map(|x| x.slots.iter())
                .filter(|s| s.status == SlotStatus::Available)
                .map(|s| s.start)
                .collect();
            let tz = d.cal.profile().timezone;
            let lo = first_day().and_hms_opt(0, 0, 0).unwrap().and_utc() - Duration::days(1);
            let last = first_day() + Duration::days(i64::from(DAYS));
            for i in 0..(4 * 24 * (i64::from(DAYS) + 2)) {
                let at = lo + Duration::minutes(15 * i);
                let local_date = at.with_timezone(&tz).date_naive();
                if local_date < first_day() || local_date >= last {
                    continue;
                }
                if d.check(99, at).is_ok() {
                    prop_assert!(available.contains(&at), "{} accepted but not offered", at);
                }
            }
        }
    }
}

#[test]
fn next_free_offers_only_bookable_starts_after_the_time_asked() {
    let mut d = Doc::berlin();
    d.update(|u| u.schedule.wednesday = u.schedule.wednesday.with_breaks(&[brk(10, 0, 11, 0)]))
        .unwrap();
    d.set_overrides(&[(date(2026, 6, 4), DateOverride::closed())]);
    d.set_policy(BookingPolicy {
        max_per_day: Some(3),
        booking_window_days: Some(6),
        ..BookingPolicy::default()
    });
    let at = |day, h, m| local(BERLIN, 2026, 6, day, h, m);
    d.book(1, at(3, 9, 0)).unwrap();
    d.book(2, at(3, 11, 0)).unwrap();
    assert_eq!(
        d.cal.next_free(Some(9), at(3, 9, 0), 3, d.now, &d.rules),
        vec![at(3, 9, 30), at(3, 11, 30), at(3, 12, 0)]
    );
    // A third booking fills Wednesday; Thursday is closed; Friday comes next.
    d.book(3, at(3, 16, 30)).unwrap();
    assert_eq!(
        d.cal.next_free(Some(9), at(3, 9, 0), 2, d.now, &d.rules),
        vec![at(5, 9, 0), at(5, 9, 30)]
    );
    // Nothing past the booking window (2026-06-07 00:00 UTC): the weekend is closed anyway,
    // and Monday the 8th is beyond it.
    assert_eq!(
        d.cal.next_free(Some(9), at(5, 16, 30), 3, d.now, &d.rules),
        Vec::<DateTime<Utc>>::new()
    );
    for start in d.cal.next_free(Some(9), at(3, 9, 0), 3, d.now, &d.rules) {
        assert_eq!(d.check(9, start), Ok(()));
    }
}
