//! Live slot changes per doctor, for the availability stream: the doctor actor publishes
//! what changed (a booking, cancellation or reschedule once durable, a hold when placed,
//! released or expired, a schedule change once durable) and any number of bounded
//! subscribers read it.
//!
//! Each change has a [`Position`] `(seq, n)`: `seq` is the doctor's journal sequence the
//! change belongs to (holds are not journalled and take the latest one), `n` counts changes
//! within it, so positions only grow. A subscriber that comes back with the last position
//! it saw gets what it missed from a short per-doctor buffer, or [`ChangeKind::Resync`]
//! when the buffer no longer reaches back that far (or the process restarted): it must
//! then reload availability. Only doctors someone subscribed to keep a feed; publishing to
//! any other doctor costs one map lookup.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio::sync::broadcast;

use crate::error::EngineError;
use crate::model::DoctorId;

/// Where a change sits in one doctor's feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub seq: u64,
    pub n: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.seq, self.n)
    }
}

impl FromStr for Position {
    type Err = ();
    /// `"<seq>.<n>"`, or a bare `"<seq>"` (as `n = 0`).
    fn from_str(s: &str) -> Result<Self, ()> {
        let (seq, n) = s.trim().split_once('.').unwrap_or((s.trim(), "0"));
        Ok(Self {
            seq: seq.parse().map_err(|_| ())?,
            n: n.parse().map_err(|_| ())?,
        })
    }
}

/// What happened to a slot (or to the whole calendar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A consultation now holds the slot (durable).
    Booked,
    /// A patient holds the slot for a few minutes.
    Held,
    /// A hold ended (released, consumed elsewhere, or expired): the slot is free again.
    Released,
    /// A consultation was cancelled (durable): the slot is free again.
    Cancelled,
    /// A consultation moved to another start (durable). Published twice for one journal
    /// record, so a watcher that applies statuses by start gets both sides: the start it
    /// left (`booked: false`, now available), then the start it took (`booked: true`).
    Rescheduled { booked: bool },
    /// The schedule, slot length, timezone or bookability changed: reload availability.
    ScheduleChanged,
    /// The subscriber missed changes or the doctor was reloaded: reload availability.
    Resync,
}

impl ChangeKind {
    /// The stream's event name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Held => "held",
            Self::Released => "released",
            Self::Cancelled => "cancelled",
            Self::Rescheduled { .. } => "rescheduled",
            Self::ScheduleChanged => "schedule_changed",
            Self::Resync => "resync",
        }
    }

    /// The slot's status after the change, for slot changes.
    pub fn slot_status(self) -> Option<&'static str> {
        match self {
            Self::Booked | Self::Rescheduled { booked: true } => Some("booked"),
            Self::Held => Some("held"),
            Self::Released | Self::Cancelled | Self::Rescheduled { booked: false } => {
                Some("available")
            }
            Self::ScheduleChanged | Self::Resync => None,
        }
    }
}

/// One change of one doctor's slots. Carries no patient and no medical text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotChange {
    pub doctor_id: DoctorId,
    pub position: Position,
    pub kind: ChangeKind,
    /// The slot's start, for slot changes.
    pub start: Option<DateTime<Utc>>,
}

/// Bounds of the feeds.
#[derive(Debug, Clone, Copy)]
pub struct FeedLimits {
    pub max_subscribers_per_doctor: usize,
    pub max_subscribers: usize,
    /// Changes kept per doctor for subscribers that reconnect.
    pub buffer_len: usize,
}

struct DoctorFeed {
    sender: broadcast::Sender<SlotChange>,
    /// Recent changes, oldest first, and the last position handed out.
    recent: Mutex<(VecDeque<SlotChange>, Position)>,
    subscribers: AtomicUsize,
}

/// Every doctor's feed.
pub(crate) struct Feeds {
    doctors: DashMap<DoctorId, Arc<DoctorFeed>>,
    subscribers: Arc<AtomicUsize>,
    limits: FeedLimits,
}

/// A live subscription: the changes it missed, then the live ones. Dropping it frees its
/// place under the bounds.
pub struct Subscription {
    /// The position the subscriber is now at (send it as the first event's id).
    pub position: Position,
    /// Changes after the subscriber's last position, or one `Resync`.
    pub backlog: Vec<SlotChange>,
    pub receiver: broadcast::Receiver<SlotChange>,
    _place: Place,
}

struct Place {
    feed: Arc<DoctorFeed>,
    total: Arc<AtomicUsize>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.feed.subscribers.fetch_sub(1, Ordering::Relaxed);
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Feeds {
    pub fn new(limits: FeedLimits) -> Self {
        Self {
            doctors: DashMap::new(),
            subscribers: Arc::new(AtomicUsize::new(0)),
            limits,
        }
    }

    /// Subscribers across every doctor.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Publishes a change of `doctor_id` belonging to journal sequence `seq`, if anyone
    /// subscribed to that doctor.
    pub fn publish(
        &self,
        doctor_id: DoctorId,
        seq: u64,
        kind: ChangeKind,
        start: Option<DateTime<Utc>>,
    ) {
        let Some(feed) = self.doctors.get(&doctor_id).map(|f| Arc::clone(&f)) else {
            return;
        };
        let mut recent = feed.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let last = recent.1;
        let position = if seq > last.seq {
            Position { seq, n: 0 }
        } else {
            Position {
                seq: last.seq,
                n: last.n + 1,
            }
        };
        let change = SlotChange {
            doctor_id,
            position,
            kind,
            start,
        };
        recent.1 = position;
        recent.0.push_back(change);
        while recent.0.len() > self.limits.buffer_len {
            recent.0.pop_front();
        }
        // Sent under the lock, so a subscriber joining meanwhile sees each change once:
        // either in its backlog or live. No receiver is not an error.
        let _ = feed.sender.send(change);
    }

    /// Subscribes to `doctor_id`'s changes (the caller checked the doctor exists), resuming
    /// after `last` when given. `current_seq` is the doctor's journal sequence now, the
    /// start of a feed that did not exist yet.
    pub fn subscribe(
        &self,
        doctor_id: DoctorId,
        current_seq: u64,
        last: Option<Position>,
    ) -> Result<Subscription, EngineError> {
        let total = self.subscribers.fetch_add(1, Ordering::Relaxed);
        if total >= self.limits.max_subscribers {
            self.subscribers.fetch_sub(1, Ordering::Relaxed);
            return Err(EngineError::Overloaded);
        }
        if self.doctors.len() >= self.limits.max_subscribers {
            // Forget feeds nobody reads, so the map is bounded by the subscriber bound.
            self.doctors
                .retain(|_, f| f.subscribers.load(Ordering::Relaxed) > 0);
        }
        let feed = Arc::clone(&self.doctors.entry(doctor_id).or_insert_with(|| {
            Arc::new(DoctorFeed {
                sender: broadcast::channel(self.limits.buffer_len.max(1)).0,
                recent: Mutex::new((
                    VecDeque::new(),
                    Position {
                        seq: current_seq,
                        n: 0,
                    },
                )),
                subscribers: AtomicUsize::new(0),
            })
        }));
        if feed.subscribers.fetch_add(1, Ordering::Relaxed)
            >= self.limits.max_subscribers_per_doctor
        {
            feed.subscribers.fetch_sub(1, Ordering::Relaxed);
            self.subscribers.fetch_sub(1, Ordering::Relaxed);
            return Err(EngineError::Overloaded);
        }
        let place = Place {
            feed: Arc::clone(&feed),
            total: Arc::clone(&self.subscribers),
        };
        let recent = feed.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let (buffer, now) = (&recent.0, recent.1);
        let backlog = match last {
            None => Vec::new(),
            Some(last) if last == now => Vec::new(),
            Some(last) => match buffer.iter().position(|c| c.position == last) {
                Some(i) => buffer.iter().skip(i + 1).copied().collect(),
                None => vec![SlotChange {
                    doctor_id,
                    position: now,
                    kind: ChangeKind::Resync,
                    start: None,
                }],
            },
        };
        let receiver = feed.sender.subscribe();
        drop(recent);
        Ok(Subscription {
            position: now,
            backlog,
            receiver,
            _place: place,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feeds(buffer_len: usize) -> Feeds {
        Feeds::new(FeedLimits {
            max_subscribers_per_doctor: 2,
            max_subscribers: 3,
            buffer_len,
        })
    }

    fn at(minute: i64) -> Option<DateTime<Utc>> {
        Some(DateTime::UNIX_EPOCH + chrono::Duration::minutes(minute))
    }

    #[test]
    fn positions_print_and_parse_and_only_grow() {
        assert_eq!("12.3".parse::<Position>(), Ok(Position { seq: 12, n: 3 }));
        assert_eq!("12".parse::<Position>(), Ok(Position { seq: 12, n: 0 }));
        assert!("x.1".parse::<Position>().is_err());
        assert_eq!(Position { seq: 4, n: 1 }.to_string(), "4.1");

        let f = feeds(16);
        let mut sub = f.subscribe(1, 5, None).unwrap();
        assert_eq!(sub.position, Position { seq: 5, n: 0 });
        f.publish(1, 5, ChangeKind::Held, at(0));
        f.publish(1, 6, ChangeKind::Booked, at(0));
        f.publish(1, 6, ChangeKind::Released, at(30));
        // A journal event whose batch was slower than a later hold still moves forward.
        f.publish(1, 6, ChangeKind::Cancelled, at(0));
        let seen: Vec<Position> = (0..4)
            .map(|_| sub.receiver.try_recv().unwrap().position)
            .collect();
        assert_eq!(
            seen,
            vec![
                Position { seq: 5, n: 1 },
                Position { seq: 6, n: 0 },
                Position { seq: 6, n: 1 },
                Position { seq: 6, n: 2 },
            ]
        );
    }

    #[test]
    fn a_subscriber_resumes_after_its_last_position_or_is_told_to_resync() {
        let f = feeds(2);
        let first = f.subscribe(1, 1, None).unwrap();
        f.publish(1, 2, ChangeKind::Booked, at(0));
        f.publish(1, 3, ChangeKind::Booked, at(30));
        f.publish(1, 4, ChangeKind::Booked, at(60));
        drop(first);

        let resumed = f.subscribe(1, 4, Some(Position { seq: 3, n: 0 })).unwrap();
        assert_eq!(resumed.backlog.len(), 1);
        assert_eq!(resumed.backlog[0].start, at(60));
        drop(resumed);

        let up_to_date = f.subscribe(1, 4, Some(Position { seq: 4, n: 0 })).unwrap();
        assert!(up_to_date.backlog.is_empty());
        drop(up_to_date);

        // Seq 2 fell out of the two-change buffer; a position from before a restart too.
        for gone in [Position { seq: 2, n: 0 }, Position { seq: 90, n: 7 }] {
            let sub = f.subscribe(1, 4, Some(gone)).unwrap();
            assert_eq!(sub.backlog.len(), 1);
            assert_eq!(sub.backlog[0].kind, ChangeKind::Resync);
        }
    }

    #[test]
    fn subscribers_are_bounded_per_doctor_and_in_all_and_free_their_place_on_drop() {
        let f = feeds(4);
        let a = f.subscribe(1, 1, None).unwrap();
        let _b = f.subscribe(1, 1, None).unwrap();
        assert_eq!(f.subscribe(1, 1, None).err(), Some(EngineError::Overloaded));
        let _c = f.subscribe(2, 1, None).unwrap();
        assert_eq!(f.subscribe(3, 1, None).err(), Some(EngineError::Overloaded));
        assert_eq!(f.subscribers(), 3);
        drop(a);
        assert_eq!(f.subscribers(), 2);
        assert!(f.subscribe(1, 1, None).is_ok());
    }

    #[test]
    fn a_reschedule_is_one_event_name_with_the_status_of_each_side() {
        let left = ChangeKind::Rescheduled { booked: false };
        let taken = ChangeKind::Rescheduled { booked: true };
        assert_eq!(
            (left.as_str(), taken.as_str()),
            ("rescheduled", "rescheduled")
        );
        assert_eq!(left.slot_status(), Some("available"));
        assert_eq!(taken.slot_status(), Some("booked"));
        let f = feeds(4);
        let mut sub = f.subscribe(1, 3, None).unwrap();
        f.publish(1, 4, left, at(0));
        f.publish(1, 4, taken, at(60));
        let first = sub.receiver.try_recv().unwrap();
        let second = sub.receiver.try_recv().unwrap();
        assert_eq!(
            (first.position, first.start),
            (Position { seq: 4, n: 0 }, at(0))
        );
        assert_eq!(
            (second.position, second.start),
            (Position { seq: 4, n: 1 }, at(60))
        );
    }

    #[test]
    fn publishing_to_a_doctor_nobody_watches_keeps_nothing() {
        let f = feeds(4);
        f.publish(9, 2, ChangeKind::Booked, at(0));
        assert!(f.doctors.is_empty());
    }
}
