//! When an availability answer may be served again instead of rebuilt: what of the
//! calendar it was built from, and until when the clock alone leaves it unchanged. A cache
//! of encoded answers (beside the doctor's published view) keeps these with each answer.

use std::ops::Range;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::rules::{notice_end, Availability, Calendar, Rules, SlotStatus};

/// How far outside the asked dates a consultation or hold may still change the answer:
/// local dates lie within a day of UTC dates (a day's count, `booked_slots`), and one that
/// starts up to `MAX_SLOT_MINUTES` before a slot overlaps it; two days cover both.
const MARGIN_DAYS: i64 = 2;

/// What of the calendar, besides the profile, an availability answer over some dates was
/// built from: the consultations and holds near those dates, as far as the answer reads
/// them. Equal inputs, an equal profile and a clock inside [`Calendar::stable_until`] give
/// a byte-identical answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AvailabilityInputs {
    /// Active consultations: start and minutes.
    bookings: Vec<(DateTime<Utc>, u16)>,
    /// Holds: start, minutes and expiry.
    holds: Vec<(DateTime<Utc>, u16, DateTime<Utc>)>,
}

/// The instants whose consultations and holds an answer over `days` dates from `from` reads.
fn input_range(from: NaiveDate, days: u16) -> Range<DateTime<Utc>> {
    let midnight = from.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let start = midnight - Duration::days(MARGIN_DAYS);
    let end = midnight + Duration::days(i64::from(days) + MARGIN_DAYS);
    start..end
}

impl Calendar {
    /// What [`Calendar::availability`] over these dates reads besides the profile and `now`.
    pub fn availability_inputs(&self, from: NaiveDate, days: u16) -> AvailabilityInputs {
        let range = input_range(from, days);
        AvailabilityInputs {
            bookings: self.booking_inputs(range.clone()).collect(),
            holds: self.hold_inputs(range).collect(),
        }
    }

    /// Whether the calendar still holds exactly `inputs` for these dates (allocates nothing).
    pub fn has_inputs(&self, from: NaiveDate, days: u16, inputs: &AvailabilityInputs) -> bool {
        let range = input_range(from, days);
        self.booking_inputs(range.clone())
            .eq(inputs.bookings.iter().copied())
            && self.hold_inputs(range).eq(inputs.holds.iter().copied())
    }

    fn booking_inputs(
        &self,
        range: Range<DateTime<Utc>>,
    ) -> impl Iterator<Item = (DateTime<Utc>, u16)> + '_ {
        self.active
            .range(range)
            .map(|(start, slot)| (*start, slot.duration_minutes))
    }

    fn hold_inputs(
        &self,
        range: Range<DateTime<Utc>>,
    ) -> impl Iterator<Item = (DateTime<Utc>, u16, DateTime<Utc>)> + '_ {
        self.holds
            .range(range)
            .map(|(start, h)| (*start, h.duration_minutes, h.expires_at))
    }

    /// The first instant after `now` at which `answer`, built by this calendar at `now`
    /// from `inputs`, could read differently with nothing else changed: a slot turning
    /// past (the notice), a slot entering the booking window, or a hold expiring. Each of
    /// these only ever flips one way as time goes forward, so the answer is the same for
    /// every clock in `[now, stable_until)`.
    pub fn stable_until(
        &self,
        answer: &Availability,
        inputs: &AvailabilityInputs,
        now: DateTime<Utc>,
        rules: &Rules,
    ) -> DateTime<Utc> {
        let notice = notice_end(self.profile(), now, rules) - now;
        let window = answer
            .policy
            .booking_window_days
            .map(|d| Duration::days(i64::from(d)));
        let mut until = DateTime::<Utc>::MAX_UTC;
        for slot in answer.days.iter().flat_map(|d| &d.slots) {
            if slot.status == SlotStatus::Past {
                continue;
            }
            until = until.min(slot.start - notice);
            if let (SlotStatus::OutsideBookingWindow, Some(window)) = (slot.status, window) {
                until = until.min(slot.start - window);
            }
        }
        inputs
            .holds
            .iter()
            .map(|&(_, _, expires_at)| expires_at)
            .filter(|&expires_at| expires_at > now)
            .fold(until, DateTime::min)
    }
}
