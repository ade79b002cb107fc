//! A doctor's weekly availability in the seed's shape: all seven days, each with
//! `enabled`, `start` and `end` as local "HH:MM" in the doctor's timezone.

use std::fmt;

use chrono::{NaiveTime, Timelike, Weekday};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::InvalidField;

/// A local wall-clock time of day at minute precision, written "HH:MM" (00:00 ..= 23:59,
/// plus "24:00" as an end meaning midnight at the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
        if h.len() != 2 || m.len() != 2 {
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

/// One weekday's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayWindow {
    pub enabled: bool,
    pub start: LocalTime,
    pub end: LocalTime,
}

impl DayWindow {
    pub fn open(start: LocalTime, end: LocalTime) -> Self {
        Self {
            enabled: true,
            start,
            end,
        }
    }

    pub fn closed() -> Self {
        Self {
            enabled: false,
            start: LocalTime::hm(9, 0),
            end: LocalTime::hm(17, 0),
        }
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

    /// Every enabled window must have `start < end`, and at least one slot must fit.
    pub fn validate(&self, slot_minutes: u16) -> Result<(), InvalidField> {
        for wd in ALL_WEEKDAYS {
            let w = self.day(wd);
            if !w.enabled {
                continue;
            }
            let name = weekday_name(wd);
            if w.start >= w.end {
                return Err(InvalidField::new(
                    format!("availability_schedule.{name}"),
                    "start must be before end",
                ));
            }
            if w.start == LocalTime::END_OF_DAY {
                return Err(InvalidField::new(
                    format!("availability_schedule.{name}.start"),
                    "start must be before 24:00",
                ));
            }
            if w.end.minutes() - w.start.minutes() < slot_minutes {
                return Err(InvalidField::new(
                    format!("availability_schedule.{name}"),
                    format!("window is shorter than one {slot_minutes}-minute slot"),
                ));
            }
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
            serde_json::json!({"enabled": true, "start": "09:00", "end": "17:00"})
        );
        assert_eq!(json["sunday"]["enabled"], false);
        let back: WeeklySchedule = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn bad_times_are_refused() {
        for bad in ["9:00", "25:00", "24:30", "12:60", "ab:cd", "", "12:00:00"] {
            assert_eq!(LocalTime::parse(bad), None, "{bad}");
        }
        assert_eq!(LocalTime::parse("24:00"), Some(LocalTime::END_OF_DAY));
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
