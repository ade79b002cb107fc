//! The booking rules: pure functions over plain data, no async and no I/O.
//! [`Calendar`] is one doctor's state; commands are decided against it and the resulting
//! events applied to it (`decide_*` then [`Calendar::apply`]).

mod event;
mod history;
mod rules;
mod schedule;
#[cfg(test)]
mod tests;

pub use event::{ActedBy, BookedSlot, DoctorEvent, JournalRecord, EVENT_FORMAT_VERSION};
pub use history::{
    slot_events, Placement, SlotEvent, SlotEventKind, SlotHistory, SLOT_HISTORY_MAX_EVENTS,
    SLOT_HISTORY_SCAN_EVENTS,
};
pub use rules::{
    local_slots, validate_slot_minutes, Availability, Calendar, DayView, Hold, Rules, SlotNow,
    SlotState, SlotStatus, SlotView, PRUNE_AFTER_END_HOURS, SNAPSHOT_FORMAT_VERSION,
};
pub use schedule::{weekday_name, DayWindow, LocalTime, WeeklySchedule, ALL_WEEKDAYS};
