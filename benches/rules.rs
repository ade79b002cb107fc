//! Criterion benches of the pure booking rules (`consult_actors::calendar`): what a doctor
//! actor spends per message, without the actor. Availability of a busy month, the
//! conflict check on big calendars, one booking decision, and snapshot encoding.
//!
//! Run with `cargo bench --bench rules` (add `-- --quick` for a fast look).

use std::hint::black_box;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use consult_actors::calendar::{Calendar, DayWindow, LocalTime, Rules, WeeklySchedule};
use consult_actors::{BookingRequest, ConsultMode, DoctorProfile, MedicalInfo, Requester};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

const TZ: Tz = Tz::Europe__London;

/// Before every slot of every calendar below.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap()
}

/// March 2026, 31 days, with London's spring-forward day in it.
fn month_start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
}

/// A doctor open around the clock every day, so a month holds 1,000 bookings.
fn profile(slot_minutes: u16) -> DoctorProfile {
    DoctorProfile {
        id: 1,
        name: "Dr Bench".into(),
        specialty: "general practice".into(),
        timezone: TZ,
        slot_minutes,
        schedule: WeeklySchedule::every_day(DayWindow::open(
            LocalTime::hm(0, 0),
            LocalTime::END_OF_DAY,
        )),
        is_available: true,
        is_approved: true,
        created_at: now(),
        date_overrides: Default::default(),
        policy: Default::default(),
    }
}

fn request(patient_id: i64, at: DateTime<Utc>) -> BookingRequest {
    BookingRequest {
        doctor_id: 1,
        patient_id,
        scheduled_at: at,
        mode: ConsultMode::Video,
        medical: MedicalInfo::default(),
    }
}

/// A calendar with `bookings` consultations spread evenly over the slots of `days` days
/// from `from`, built the way the actor builds it (decide, then apply with seq + 1).
/// Returns it with the booked and the free slot starts.
struct Busy {
    cal: Calendar,
    booked: Vec<DateTime<Utc>>,
    free: Vec<DateTime<Utc>>,
}

fn busy(slot_minutes: u16, from: NaiveDate, days: u16, bookings: usize) -> Busy {
    let rules = Rules::default();
    let mut cal = Calendar::new(profile(slot_minutes));
    let starts: Vec<_> = cal
        .availability(from, days, now(), &rules)
        .days
        .iter()
        .flat_map(|d| d.slots.iter().map(|s| s.start))
        .collect();
    assert!(starts.len() >= bookings, "{} slots", starts.len());
    let mut booked = Vec::with_capacity(bookings);
    let mut picked = vec![false; starts.len()];
    for i in 0..bookings {
        let k = i * starts.len() / bookings;
        let event = cal
            .decide_book(&request(i as i64, starts[k]), i as i64 + 1, now(), &rules)
            .expect("a free slot");
        cal.apply(cal.seq() + 1, &event);
        booked.push(starts[k]);
        picked[k] = true;
    }
    let free = starts
        .iter()
        .zip(&picked)
        .filter(|(_, p)| !**p)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(cal.active_len(), bookings);
    Busy { cal, booked, free }
}

/// 1,000 bookings in a 31-day month of 30-minute slots (1,486 slots: the DST day is short).
fn busy_month() -> Busy {
    busy(30, month_start(), 31, 1_000)
}

/// `bookings` consultations on every other 15-minute slot.
fn busy_every_other(bookings: usize) -> Busy {
    let days = (bookings * 2 / 96 + 2) as u16;
    busy(15, month_start(), days, bookings)
}

fn availability(c: &mut Criterion) {
    let rules = Rules::default();
    let b = busy_month();
    let mut g = c.benchmark_group("availability");
    let slots: usize = b
        .cal
        .availability(month_start(), 31, now(), &rules)
        .days
        .iter()
        .map(|d| d.slots.len())
        .sum();
    g.throughput(Throughput::Elements(slots as u64));
    g.bench_function("31_days_1000_bookings", |bench| {
        bench.iter(|| {
            black_box(
                b.cal
                    .availability(black_box(month_start()), 31, now(), &rules),
            )
        })
    });
    g.bench_function("1_day_1000_bookings", |bench| {
        let day = month_start() + Duration::days(15);
        bench.iter(|| black_box(b.cal.availability(black_box(day), 1, now(), &rules)))
    });
    // A kept answer's miss (build and encode the API's JSON) against its hit (check that
    // the calendar still holds the answer's inputs; see `calendar/reuse.rs`).
    let day = month_start() + Duration::days(15);
    g.bench_function("1_day_build_and_encode_json", |bench| {
        bench.iter(|| {
            let answer = b.cal.availability(black_box(day), 1, now(), &rules);
            black_box(consult_scheduler::http::encoded::encode(&answer))
        })
    });
    let inputs = b.cal.availability_inputs(day, 1);
    g.bench_function("1_day_kept_answer_check", |bench| {
        bench.iter(|| black_box(b.cal.has_inputs(black_box(day), 1, &inputs)))
    });
    g.finish();
}

fn check_slot(c: &mut Criterion) {
    let rules = Rules::default();
    let mut g = c.benchmark_group("check_slot");
    for n in [1_000, 10_000] {
        let b = busy_every_other(n);
        let hit = b.booked[b.booked.len() / 2];
        let miss = b.free[b.free.len() / 2];
        assert!(b.cal.check_slot(Some(-1), hit, now(), &rules).is_err());
        assert!(b.cal.check_slot(Some(-1), miss, now(), &rules).is_ok());
        g.bench_with_input(BenchmarkId::new("hit", n), &hit, |bench, at| {
            bench.iter(|| black_box(b.cal.check_slot(Some(-1), black_box(*at), now(), &rules)))
        });
        g.bench_with_input(BenchmarkId::new("miss", n), &miss, |bench, at| {
            bench.iter(|| black_box(b.cal.check_slot(Some(-1), black_box(*at), now(), &rules)))
        });
    }
    g.finish();
}

fn book(c: &mut Criterion) {
    let rules = Rules::default();
    let mut g = c.benchmark_group("book");
    for n in [1_000, 10_000] {
        let b = busy_every_other(n);
        let at = b.free[b.free.len() / 2];
        let next_id = n as i64 + 1;
        // The decision alone: every check plus building the event.
        g.bench_with_input(BenchmarkId::new("decide", n), &at, |bench, at| {
            bench.iter(|| {
                black_box(
                    b.cal
                        .decide_book(&request(-1, black_box(*at)), next_id, now(), &rules)
                        .unwrap(),
                )
            })
        });
        // The calendar is cloned outside the timed part, one clone per iteration: the
        // booking then lands in a freshly allocated, cache-cold calendar.
        g.bench_with_input(BenchmarkId::new("decide_and_apply", n), &at, |bench, at| {
            bench.iter_batched_ref(
                || b.cal.clone(),
                |cal| {
                    let event = cal
                        .decide_book(&request(-1, *at), next_id, now(), &rules)
                        .unwrap();
                    cal.apply(cal.seq() + 1, &event);
                },
                BatchSize::PerIteration,
            )
        });
        // Book then cancel the same slot: the calendar returns to its size every time.
        g.bench_with_input(BenchmarkId::new("book_then_cancel", n), &at, |bench, at| {
            let mut cal = b.cal.clone();
            let mut id = next_id;
            bench.iter(|| {
                let event = cal
                    .decide_book(&request(-1, *at), id, now(), &rules)
                    .unwrap();
                cal.apply(cal.seq() + 1, &event);
                let event = cal
                    .decide_cancel(id, Requester::Patient(-1), now())
                    .unwrap();
                cal.apply(cal.seq() + 1, &event);
                id += 1;
            })
        });
    }
    g.finish();
}

fn snapshot(c: &mut Criterion) {
    let b = busy_month();
    let blob = b.cal.encode_snapshot();
    let mut g = c.benchmark_group("snapshot_1000_bookings");
    g.throughput(Throughput::Bytes(blob.len() as u64));
    g.bench_function("encode", |bench| {
        bench.iter(|| black_box(black_box(&b.cal).encode_snapshot()))
    });
    g.bench_function("decode", |bench| {
        bench.iter(|| black_box(Calendar::decode_snapshot(black_box(&blob)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, availability, check_slot, book, snapshot);
criterion_main!(benches);
