//! Encoded availability answers kept beside a doctor's published view, so that reading the
//! same dates again is a lookup while nothing the answer depends on has changed.
//!
//! An answer is reused only when the profile is equal, the consultations and holds near
//! its dates are equal ([`AvailabilityInputs`]) and the clock is inside the span where time
//! alone changes nothing ([`Calendar::stable_until`]); so a reused answer is byte for byte
//! the one a rebuild would give. Checking costs a walk over the few entries near the
//! dates, not a rebuild; a booking on one date leaves the answers of other dates reusable.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};

use crate::calendar::{Availability, AvailabilityInputs, Calendar, Rules};
use crate::model::DoctorProfile;

/// An availability answer in the caller's encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedAvailability {
    /// Whether patients may book the doctor (the answer says so too; callers refuse it
    /// to patients when false).
    pub bookable: bool,
    pub body: Bytes,
}

/// The cache of one doctor's view. Readers fill it under the view's read lock, so the
/// calendar cannot change while an answer is built and stored.
#[derive(Default)]
pub(crate) struct AnswerCache(Mutex<Option<Box<Answers>>>);

/// Boxed so that a doctor never read costs one pointer, not a map.
struct Answers {
    /// The profile every entry was built with; a different one empties the cache.
    profile: DoctorProfile,
    entries: HashMap<(NaiveDate, u16), Entry>,
}

struct Entry {
    inputs: AvailabilityInputs,
    built_at: DateTime<Utc>,
    stable_until: DateTime<Utc>,
    answer: EncodedAvailability,
}

impl AnswerCache {
    /// The kept answer for these dates, if `calendar` at `now` would build the same.
    pub fn get(
        &self,
        calendar: &Calendar,
        from: NaiveDate,
        days: u16,
        now: DateTime<Utc>,
    ) -> Option<EncodedAvailability> {
        let answers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let answers = answers.as_ref()?;
        if answers.profile != *calendar.profile() {
            return None;
        }
        let entry = answers.entries.get(&(from, days))?;
        (entry.built_at <= now
            && now < entry.stable_until
            && calendar.has_inputs(from, days, &entry.inputs))
        .then(|| entry.answer.clone())
    }

    /// Keeps `encoded`, the encoding of `answer` that `calendar` built at `now`, keeping at
    /// most `capacity` answers (0: none); a full cache first drops the oldest.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        calendar: &Calendar,
        (from, days): (NaiveDate, u16),
        answer: &Availability,
        encoded: EncodedAvailability,
        now: DateTime<Utc>,
        rules: &Rules,
        capacity: usize,
    ) {
        if capacity == 0 {
            return;
        }
        let inputs = calendar.availability_inputs(from, days);
        let stable_until = calendar.stable_until(answer, &inputs, now, rules);
        let mut answers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let answers = match answers.as_mut() {
            Some(a) if a.profile == *calendar.profile() => a,
            _ => answers.insert(Box::new(Answers {
                profile: calendar.profile().clone(),
                entries: HashMap::new(),
            })),
        };
        let entries = &mut answers.entries;
        if entries.len() >= capacity && !entries.contains_key(&(from, days)) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.built_at)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            (from, days),
            Entry {
                inputs,
                built_at: now,
                stable_until,
                answer: encoded,
            },
        );
    }
}
