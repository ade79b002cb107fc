//! A doctor's weekly availability in the seed's shape: all seven days, each with
//! `enabled`, `start` and `end` as local "HH:MM" in the doctor's timezone, plus the
//! exceptions added to it: breaks inside a day, date overrides (a closed date or other
//! hours on one local date) and the doctor's booking policy. Validation of all of them
//! lives here, as pure functions.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Duration, NaiveDate, NaiveTime, Timelike, Weekday};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::InvalidField;

/// A local wall-clock time of day at minute precision, written "HH:MM" (00:00 ..= 23:59,
/// plus "24:00" as an end meaning midnight at the end of the day).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime(u16);

impl LocalTime {
    /// Minutes in a day; "24:00".
    pub const END_OF_DAY: LocalTime = LocalTime(24 * 60);

    pub fn from_minutes(minutes: u16) -> Option<Self> {
        (minutes <= 24 * 60).then_some(Self(minutes))
    }

    pub fn hm(hour: u16, minute: u16) -> Self {
        Self::from_minutes(hour * 60 + minute).expect("valid time of day")
    }

    /// Minutes since local midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }

    /// The time of `t`, if it lies exactly on a minute.
    pub fn of(t: NaiveTime) -> (Self, bool) {
        let exact = t.second() == 0 && t.nanosecond() == 0;
        (Self((t.hour() * 60 + t.minute()) as u16), exact)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (h, m) = s.split_once(':')?;
        // Two ASCII digits each ("+9" would parse as a number).
        let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || !digits(m) {
            return None;
        }
        let h: u16 = h.parse().ok()?;
        let m: u16 = m.parse().ok()?;
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return None;
        }
        Some(Self(h * 60 + m))
    }

    /// As a `NaiveTime`; "24:00" has none.
    pub fn to_naive(self) -> Option<NaiveTime> {
        NaiveTime::from_hms_opt(u32::from(self.0 / 60), u32::from(self.0 % 60), 0)
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LocalTime::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a time \"HH:MM\"")))
    }
}

/// Most breaks one day (or one date override) may carry.
pub const MAX_BREAKS_PER_DAY: usize = 8;
/// Most date overrides a doctor may have at once.
pub const MAX_DATE_OVERRIDES: usize = 366;
/// How far ahead of today (doctor's local date) an override may lie, in days.
pub const MAX_OVERRIDE_AHEAD_DAYS: i64 = 731;
/// Bounds of [`BookingPolicy`], inclusive.
pub const MAX_MIN_NOTICE_MINUTES: u32 = 43_200;
pub const MIN_BOOKING_WINDOW_DAYS: u16 = 1;
pub const MAX_BOOKING_WINDOW_DAYS: u16 = 730;
pub const MIN_MAX_PER_DAY: u16 = 1;
pub const MAX_MAX_PER_DAY: u16 = 200;

/// A pause inside a day's window, `[start, end)` in local wall-clock time: no slot that
/// overlaps it is offered or bookable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Break {
    pub start: LocalTime,
    pub end: LocalTime,
}

impl Break {
    pub fn new(start: LocalTime, end: LocalTime) -> Self {
        Self { start, end }
    }

    /// Whether `[from, to)` (minutes since local midnight) overlaps this break.
    pub fn overlaps(&self, from: u16, to: u16) -> bool {
        self.start.minutes() < to && from < self.end.minutes()
    }
}

/// At most [`MAX_BREAKS_PER_DAY`] breaks, kept inline so that a day window (and the weekly
/// schedule) stays `Copy`. Serialized as a plain list (`[{start, end}]`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Breaks {
    len: u8,
    /// Unused entries are always `Break::default()`, so derived equality is exact.
    items: [Break; MAX_BREAKS_PER_DAY],
}

impl Breaks {
    /// `None` when there are more than [`MAX_BREAKS_PER_DAY`].
    pub fn from_slice(breaks: &[Break]) -> Option<Self> {
        if breaks.len() > MAX_BREAKS_PER_DAY {
            return None;
        }
        let mut items = [Break::default(); MAX_BREAKS_PER_DAY];
        items[..breaks.len()].copy_from_slice(breaks);
        Some(Self {
            len: breaks.len() as u8,
            items,
        })
    }

    pub fn as_slice(&self) -> &[Break] {
        &self.items[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `[from, to)` (minutes since local midnight) overlaps any break.
    pub fn overlap(&self, from: u16, to: u16) -> bool {
        self.as_slice().iter().any(|b| b.overlaps(from, to))
    }
}

impl fmt::Debug for Breaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl Serialize for Breaks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for Breaks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<Break>::deserialize(d)?;
        Breaks::from_slice(&v).ok_or_else(|| {
            serde::de::Error::custom(format!("at most {MAX_BREAKS_PER_DAY} breaks per day"))
        })
    }
}

/// One weekday's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayWindow {
    pub enabled: bool,
    pub start: LocalTime,
    pub end: LocalTime,
    /// Absent in data written before breaks existed.
    #[serde(default)]
    pub breaks: Breaks,
}

impl DayWindow {
    pub fn open(start: LocalTime, end: LocalTime) -> Self {
        Self {
            enabled: true,
            start,
            end,
            breaks: Breaks::default(),
        }
    }

    pub fn closed() -> Self {
        Self {
            enabled: false,
            start: LocalTime::hm(9, 0),
            end: LocalTime::hm(17, 0),
            breaks: Breaks::default(),
        }
    }

    /// The same window with `breaks`.
    pub fn with_breaks(mut self, breaks: &[Break]) -> Self {
        self.breaks = Breaks::from_slice(breaks).expect("at most MAX_BREAKS_PER_DAY breaks");
        self
    }

    /// Whether a consultation over local minutes `[from, to)` lies inside the window and
    /// outside every break.
    pub fn covers(&self, from: u16, to: u16) -> bool {
        self.enabled
            && from >= self.start.minutes()
            && to <= self.end.minutes()
            && !self.breaks.overlap(from, to)
    }

    /// Every enabled window must have `start < end`, room for one slot, and breaks inside
    /// it that do not overlap each other. `field` names the window in errors.
    pub fn validate(&self, field: &str, slot_minutes: u16) -> Result<(), InvalidField> {
        if !self.enabled {
            return Ok(());
        }
        if self.start >= self.end {
            return Err(InvalidField::new(field, "start must be before end"));
        }
        if self.start == LocalTime::END_OF_DAY {
            return Err(InvalidField::new(
                format!("{field}.start"),
                "start must be before 24:00",
            ));
        }
        if self.end.minutes() - self.start.minutes() < slot_minutes {
            return Err(InvalidField::new(
                field,
                format!("window is shorter than one {slot_minutes}-minute slot"),
            ));
        }
        let mut sorted: Vec<(usize, Break)> =
            self.breaks.as_slice().iter().copied().enumerate().collect();
        for (i, b) in &sorted {
            let at = format!("{field}.breaks[{i}]");
            if b.start >= b.end {
                return Err(InvalidField::new(at, "start must be before end"));
            }
            if b.start < self.start || b.end > self.end {
                return Err(InvalidField::new(at, "must lie inside the day's window"));
            }
        }
        sorted.sort_by_key(|(_, b)| b.start);
        for pair in sorted.windows(2) {
            let ((_, a), (j, b)) = (pair[0], pair[1]);
            if b.start < a.end {
                return Err(InvalidField::new(
                    format!("{field}.breaks[{j}]"),
                    "overlaps another break",
                ));
            }
        }
        Ok(())
    }
}

/// Replaces the weekly window on one local date: closed (`enabled: false`, a day of a
/// vacation) or open with other hours and breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateOverride {
    pub enabled: bool,
    /// Required when `enabled`.
    pub start: Option<LocalTime>,
    pub end: Option<LocalTime>,
    #[serde(default)]
    pub breaks: Breaks,
}

impl DateOverride {
    pub fn closed() -> Self {
        Self {
            enabled: false,
            start: None,
            end: None,
            breaks: Breaks::default(),
        }
    }

    pub fn open(start: LocalTime, end: LocalTime, breaks: &[Break]) -> Self {
        Self {
            enabled: true,
            start: Some(start),
            end: Some(end),
            breaks: Breaks::from_slice(breaks).expect("at most MAX_BREAKS_PER_DAY breaks"),
        }
    }

    /// The window this override gives its date.
    pub fn window(&self) -> DayWindow {
        match (self.enabled, self.start, self.end) {
            (true, Some(start), Some(end)) => DayWindow {
                enabled: true,
                start,
                end,
                breaks: self.breaks,
            },
            _ => DayWindow::closed(),
        }
    }
}

/// Date overrides by local date.
pub type DateOverrides = BTreeMap<NaiveDate, DateOverride>;

/// Validates date overrides against the doctor's local `today`. Dates before `today` no
/// longer matter and are dropped; the rest must lie within [`MAX_OVERRIDE_AHEAD_DAYS`].
pub fn validate_overrides(
    overrides: &DateOverrides,
    today: NaiveDate,
    slot_minutes: u16,
) -> Result<DateOverrides, InvalidField> {
    let kept: DateOverrides = overrides
        .iter()
        .filter(|(d, _)| **d >= today)
        .map(|(d, o)| (*d, *o))
        .collect();
    if kept.len() > MAX_DATE_OVERRIDES {
        return Err(InvalidField::new(
            "date_overrides",
            format!("at most {MAX_DATE_OVERRIDES} dates"),
        ));
    }
    let last = today + Duration::days(MAX_OVERRIDE_AHEAD_DAYS);
    for (date, o) in &kept {
        let field = format!("date_overrides.{date}");
        if *date > last {
            return Err(InvalidField::new(
                field,
                format!("must be within {MAX_OVERRIDE_AHEAD_DAYS} days from today"),
            ));
        }
        if o.enabled {
            for (which, v) in [("start", o.start), ("end", o.end)] {
                if v.is_none() {
                    return Err(InvalidField::new(
                        format!("{field}.{which}"),
                        "is required when enabled",
                    ));
                }
            }
        } else if !o.breaks.is_empty() {
            return Err(InvalidField::new(
                format!("{field}.breaks"),
                "a closed date has no breaks",
            ));
        }
        o.window().validate(&field, slot_minutes)?;
    }
    Ok(kept)
}

/// Per-doctor booking bounds, on top of the engine-wide rules (the engine's minimum notice
/// stays a floor).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct BookingPolicy {
    /// A booking must start more than this many minutes from now.
    pub min_notice_minutes: u32,
    /// A booking must start at most this many days (of 24 h) from now; `None`: no bound.
    pub booking_window_days: Option<u16>,
    /// At most this many active consultations per local date; `None`: no cap.
    pub max_per_day: Option<u16>,
}

impl BookingPolicy {
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.min_notice_minutes > MAX_MIN_NOTICE_MINUTES {
            return Err(InvalidField::new(
                "policy.min_notice_minutes",
                format!("must be between 0 and {MAX_MIN_NOTICE_MINUTES}"),
            ));
        }
        if let Some(d) = self.booking_window_days {
            if !(MIN_BOOKING_WINDOW_DAYS..=MAX_BOOKING_WINDOW_DAYS).contains(&d) {
                return Err(InvalidField::new(
                    "policy.booking_window_days",
                    format!(
                        "must be between {MIN_BOOKING_WINDOW_DAYS} and {MAX_BOOKING_WINDOW_DAYS}"
                    ),
                ));
            }
        }
        if let Some(m) = self.max_per_day {
            if !(MIN_MAX_PER_DAY..=MAX_MAX_PER_DAY).contains(&m) {
                return Err(InvalidField::new(
                    "policy.max_per_day",
                    format!("must be between {MIN_MAX_PER_DAY} and {MAX_MAX_PER_DAY}"),
                ));
            }
        }
        Ok(())
    }
}

/// The seed's `availability_schedule`: all seven days, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklySchedule {
    pub monday: DayWindow,
    pub tuesday: DayWindow,
    pub wednesday: DayWindow,
    pub thursday: DayWindow,
    pub friday: DayWindow,
    pub saturday: DayWindow,
    pub sunday: DayWindow,
}

impl WeeklySchedule {
    /// The same window every day of the week.
    pub fn every_day(window: DayWindow) -> Self {
        Self {
            monday: window,
            tuesday: window,
            wednesday: window,
            thursday: window,
            friday: window,
            saturday: window,
            sunday: window,
        }
    }

    /// Monday to Friday open `start`..`end`, weekend closed.
    pub fn weekdays(start: LocalTime, end: LocalTime) -> Self {
        let mut s = Self::every_day(DayWindow::open(start, end));
        s.saturday = DayWindow::closed();
        s.sunday = DayWindow::closed();
        s
    }

    pub fn day(&self, weekday: Weekday) -> &DayWindow {
        match weekday {
            Weekday::Mon => &self.monday,
            Weekday::Tue => &self.tuesday,
            Weekday::Wed => &self.wednesday,
            Weekday::Thu => &self.thursday,
            Weekday::Fri => &self.friday,
            Weekday::Sat => &self.saturday,
            Weekday::Sun => &self.sunday,
        }
    }

    pub fn day_mut(&mut self, weekday: Weekday) -> &mut DayWindow {
        match weekday {
            Weekday::Mon => &mut self.monday,
            Weekday::Tue => &mut self.tuesday,
            Weekday::Wed => &mut self.wednesday,
            Weekday::Thu => &mut self.thursday,
            Weekday::Fri => &mut self.friday,
            Weekday::Sat => &mut self.saturday,
            Weekday::Sun => &mut self.sunday,
        }
    }

    /// Every enabled window must have `start < end`, at least one slot must fit, and its
    /// breaks must lie inside it without overlapping.
    pub fn validate(&self, slot_minutes: u16) -> Result<(), InvalidField> {
        for wd in ALL_WEEKDAYS {
            let field = format!("availability_schedule.{}", weekday_name(wd));
            self.day(wd).validate(&field, slot_minutes)?;
        }
        Ok(())
    }
}

/// Monday first, as the seed lists them.
pub const ALL_WEEKDAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

pub fn weekday_name(wd: Weekday) -> &'static str {
    match wd {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_round_trips_in_the_seed_shape() {
        let s = WeeklySchedule::weekdays(LocalTime::hm(9, 0), LocalTime::hm(17, 0));
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(
            json["monday"],
            serde_json::json!({"enabled": true, "start": "09:00", "end": "17:00", "breaks": []})
        );
        assert_eq!(json["sunday"]["enabled"], false);
        let back: WeeklySchedule = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn bad_times_are_refused() {
        for bad in [
            "9:00", "25:00", "24:30", "12:60", "ab:cd", "", "12:00:00", "+9:00", "09:+5", "-0:00",
        ] {
            assert_eq!(LocalTime::parse(bad), None, "{bad}");
        }
        assert_eq!(LocalTime::parse("24:00"), Some(LocalTime::END_OF_DAY));
    }

    #[test]
    fn a_day_written_before_breaks_existed_still_parses() {
        let json = serde_json::json!({"enabled": true, "start": "09:00", "end": "17:00"});
        let w: DayWindow = serde_json::from_value(json).unwrap();
        assert_eq!(
            w,
            DayWindow::open(LocalTime::hm(9, 0), LocalTime::hm(17, 0))
        );
    }

    #[test]
    fn breaks_round_trip_as_a_list_and_more_than_eight_are_refused() {
        let w = DayWindow::open(LocalTime::hm(9, 0), LocalTime::hm(17, 0))
            .with_breaks(&[Break::new(LocalTime::hm(12, 0), LocalTime::hm(13, 0))]);
        let json = serde_json::to_value(w).unwrap();
        assert_eq!(
            json["breaks"],
            serde_json::json!([{"start": "12:00", "end": "13:00"}])
        );
        assert_eq!(serde_json::from_value::<DayWindow>(json).unwrap(), w);
        let nine: Vec<_> = (0..9)
            .map(|i| serde_json::json!({"start": format!("1{i}:00"), "end": format!("1{i}:10")}))
            .collect();
        let json =
            serde_json::json!({"enabled": true, "start": "09:00", "end": "20:00", "breaks": nine});
        assert!(serde_json::from_value::<DayWindow>(json).is_err());
    }

    #[test]
    fn breaks_outside_the_window_inverted_or_overlapping_are_invalid() {
        let open = DayWindow::open(LocalTime::hm(9, 0), LocalTime::hm(17, 0));
        let b = |h1, m1, h2, m2| Break::new(LocalTime::hm(h1, m1), LocalTime::hm(h2, m2));
        assert!(open
            .with_breaks(&[b(12, 0, 13, 0), b(13, 0, 13, 30)])
            .validate("d", 30)
            .is_ok());
        for (breaks, field) in [
            (vec![b(8, 0, 9, 30)], "d.breaks[0]"),
            (vec![b(16, 30, 17, 30)], "d.breaks[0]"),
            (vec![b(13, 0, 12, 0)], "d.breaks[0]"),
            (vec![b(12, 0, 13, 0), b(12, 30, 14, 0)], "d.breaks[1]"),
            (vec![b(14, 0, 15, 0), b(12, 0, 14, 30)], "d.breaks[0]"),
        ] {
            let e = open.with_breaks(&breaks).validate("d", 30).unwrap_err();
            assert_eq!(e.field, field, "{breaks:?}");
        }
    }

    #[test]
    fn policy_bounds_are_enforced_field_by_field() {
        let ok = BookingPolicy {
            min_notice_minutes: 43_200,
            booking_window_days: Some(730),
            max_per_day: Some(200),
        };
        assert!(ok.validate().is_ok());
        assert!(BookingPolicy::default().validate().is_ok());
        for (bad, field) in [
            (
                BookingPolicy {
                    min_notice_minutes: 43_201,
                    ..ok
                },
                "policy.min_notice_minutes",
            ),
            (
                BookingPolicy {
                    booking_window_days: Some(0),
                    ..ok
                },
                "policy.booking_window_days",
            ),
            (
                BookingPolicy {
                    booking_window_days: Some(731),
                    ..ok
                },
                "policy.booking_window_days",
            ),
            (
                BookingPolicy {
                    max_per_day: Some(0),
                    ..ok
                },
                "policy.max_per_day",
            ),
            (
                BookingPolicy {
                    max_per_day: Some(201),
                    ..ok
                },
                "policy.max_per_day",
            ),
        ] {
            assert_eq!(bad.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn overrides_are_bounded_and_past_dates_are_dropped() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let d = |n: i64| today + Duration::days(n);
        let mut o = DateOverrides::new();
        o.insert(d(-1), DateOverride::closed());
        o.insert(d(0), DateOverride::closed());
        o.insert(
            d(731),
            DateOverride::open(LocalTime::hm(10, 0), LocalTime::hm(12, 0), &[]),
        );
        let kept = validate_overrides(&o, today, 30).unwrap();
        assert_eq!(kept.keys().copied().collect::<Vec<_>>(), vec![d(0), d(731)]);
        o.insert(d(732), DateOverride::closed());
        assert_eq!(
            validate_overrides(&o, today, 30).unwrap_err().field,
            format!("date_overrides.{}", d(732))
        );
        let mut o = DateOverrides::new();
        o.insert(
            d(3),
            DateOverride {
                enabled: true,
                start: None,
                end: None,
                breaks: Breaks::default(),
            },
        );
        assert_eq!(
            validate_overrides(&o, today, 30).unwrap_err().field,
            format!("date_overrides.{}.start", d(3))
        );
        let many: DateOverrides = (0..367).map(|n| (d(n), DateOverride::closed())).collect();
        assert_eq!(
            validate_overrides(&many, today, 30).unwrap_err().field,
            "date_overrides"
        );
    }

    #[test]
    fn a_missing_day_is_a_deserialization_error() {
        let json =
            serde_json::json!({"monday": {"enabled": true, "start": "09:00", "end": "17:00"}});
        assert!(serde_json::from_value::<WeeklySchedule>(json).is_err());
    }

    #[test]
    fn inverted_or_too_short_windows_are_invalid() {
        let mut s = WeeklySchedule::weekdays(LocalTime::hm(9, 0), LocalTime::hm(17, 0));
        assert!(s.validate(30).is_ok());
        s.tuesday = DayWindow::open(LocalTime::hm(12, 0), LocalTime::hm(11, 0));
        assert!(s.validate(30).is_err());
        s.tuesday = DayWindow::open(LocalTime::hm(12, 0), LocalTime::hm(12, 20));
        assert!(s.validate(30).is_err());
    }
}
