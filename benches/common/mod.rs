//! Helpers shared by the benches, each of which includes this file with `#[path]` and uses
//! part of it: the bench doctor and its slot grid, latency histograms and rates, and where
//! the CPU went, from Linux `/proc` (zeros elsewhere). Clock ticks are USER_HZ, 100 per
//! second on Linux.

#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use consult_scheduler::engine::calendar::{DayWindow, LocalTime, WeeklySchedule};
use consult_scheduler::engine::{DoctorId, Engine, NewDoctor};
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;

/// Every bench doctor's slot length.
pub const SLOT_MINUTES: u16 = 30;

/// Latencies are recorded in microseconds up to a minute.
pub const HIST_MAX_US: u64 = 60_000_000;

/// An approved, available doctor open 00:00-24:00 every day in UTC, 30-minute slots.
pub fn open_doctor(name: String) -> NewDoctor {
    NewDoctor {
        name,
        specialty: "General practice".into(),
        timezone: chrono_tz::UTC,
        slot_minutes: SLOT_MINUTES,
        schedule: WeeklySchedule::every_day(DayWindow::open(
            LocalTime::hm(0, 0),
            LocalTime::END_OF_DAY,
        )),
        is_available: true,
        is_approved: true,
    }
}

/// Creates [`open_doctor`]s of these names through the engine, `concurrency` at a time;
/// their ids, sorted.
pub async fn create_doctors(
    engine: &Engine,
    names: impl Iterator<Item = String>,
    concurrency: usize,
) -> Result<Vec<DoctorId>, String> {
    let created: Vec<_> = stream::iter(names)
        .map(|name| {
            let engine = engine.clone();
            async move { engine.create_doctor(open_doctor(name)).await.map(|d| d.id) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut ids = created
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot create a doctor: {e}"))?;
    ids.sort_unstable();
    Ok(ids)
}

/// Makes each doctor's actor live (one day of its availability read), `concurrency` at a
/// time.
pub async fn activate_doctors(
    engine: &Engine,
    ids: &[DoctorId],
    concurrency: usize,
) -> Result<(), String> {
    let today = engine.now().date_naive();
    let activated: Vec<_> = stream::iter(ids.iter().copied())
        .map(|id| {
            let engine = engine.clone();
            async move { engine.availability(id, today, 1).await.map(drop) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    activated
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(drop)
        .map_err(|e| format!("cannot activate a doctor: {e}"))
}

/// The future slot grid: starts of 30-minute slots, the first at least 30 minutes from now.
#[derive(Debug, Clone, Copy)]
pub struct SlotGrid {
    pub first: DateTime<Utc>,
}

impl SlotGrid {
    pub fn from_now(now: DateTime<Utc>) -> Self {
        let step = chrono::Duration::minutes(i64::from(SLOT_MINUTES));
        let first = now.duration_trunc(step).expect("30 minutes divides a day") + step * 2;
        Self { first }
    }

    pub fn slot(self, index: u32) -> DateTime<Utc> {
        self.first + chrono::Duration::minutes(i64::from(SLOT_MINUTES) * i64::from(index))
    }
}

/// A latency histogram in microseconds, 1 us to [`HIST_MAX_US`], 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// A latency as a histogram value.
pub fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, HIST_MAX_US)
}

/// `n` per second over `d` (0 over no time).
pub fn per_s(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// Milliseconds, whole.
pub fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

/// Clock ticks per second in `/proc` (USER_HZ).
pub const TICKS_PER_S: f64 = 100.0;

/// utime + stime of a `/proc/.../stat` line, and the name between the parentheses.
pub fn stat_ticks(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = &stat[open + 1..close];
    let mut fields = stat[close + 1..].split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
}

/// Ticks spent so far by process `pid` (all its threads), 0 when it is gone.
pub fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat_ticks(&stat).map_or(0, |(_, ticks)| ticks)
}

/// Ticks spent so far by the processes named `postgres` (every backend of the server, not
/// only a bench's own).
pub fn postgres_ticks() -> u64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut ticks = 0;
    for p in procs.flatten() {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        if let Some(("postgres", t)) = stat_ticks(&stat) {
            ticks += t;
        }
    }
    ticks
}

/// The whole machine so far, from `/proc/stat`.
#[derive(Debug, Default, Clone, Copy)]
pub struct MachineTicks {
    /// Busy, softirq included.
    pub busy: u64,
    pub softirq: u64,
    /// Idle and I/O wait.
    pub idle: u64,
}

pub fn machine_ticks() -> MachineTicks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next().filter(|l| l.starts_with("cpu ")) else {
        return MachineTicks::default();
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    if v.len() < 8 {
        return MachineTicks::default();
    }
    MachineTicks {
        busy: v[0] + v[1] + v[2] + v[5] + v[6] + v[7],
        softirq: v[6],
        idle: v[3] + v[4],
    }
}
