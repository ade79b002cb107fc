//! The booking rules: pure functions over plain data, no async and no I/O.
//! [`Calendar`] is one doctor's state; commands are decided against it and the resulting
//! events applied to it (`decide_*` then [`Calendar::apply`]).

mod event;
mod history;
mod legacy;
#[cfg(test)]
mod policy_tests;
mod reuse;
mod rules;
mod schedule;
#[cfg(test)]
mod tests;

pub use event::{ActedBy, BookedSlot, DoctorEvent, JournalRecord, EVENT_FORMAT_VERSION};
pub use history::{
    slot_events, Placement, SlotEvent, SlotEventKind, SlotHistory, SLOT_HISTORY_MAX_EVENTS,
    SLOT_HISTORY_SCAN_EVENTS,
};
pub use reuse::AvailabilityInputs;
pub use rules::{
    day_window, local_slots, schedule_covers, validate_slot_minutes, Availability, Calendar,
    DayView, Hold, Rules, SlotNow, SlotState, SlotStatus, SlotView, NEXT_FREE_HORIZON_DAYS,
    PRUNE_AFTER_END_HOURS, SNAPSHOT_FORMAT_VERSION,
};
pub use schedule::{
    validate_overrides, weekday_name, BookingPolicy, Break, Breaks, DateOverride, DateOverrides,
    DayWindow, LocalTime, WeeklySchedule, ALL_WEEKDAYS, MAX_BOOKING_WINDOW_DAYS,
    MAX_BREAKS_PER_DAY, MAX_DATE_OVERRIDES, MAX_MAX_PER_DAY, MAX_MIN_NOTICE_MINUTES,
    MAX_OVERRIDE_AHEAD_DAYS, MIN_BOOKING_WINDOW_DAYS, MIN_MAX_PER_DAY,
};
