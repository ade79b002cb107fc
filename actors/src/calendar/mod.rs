//! The booking rules: pure functions over plain data, no async and no I/O.
//! `Calendar` is one doctor's state; commands are decided against it and the resulting
//! events applied to it. Property-tested in `tests` below.

mod event;
mod schedule;

pub use event::{BookedSlot, DoctorEvent, JournalRecord, EVENT_FORMAT_VERSION};
pub use schedule::{weekday_name, DayWindow, LocalTime, WeeklySchedule, ALL_WEEKDAYS};
