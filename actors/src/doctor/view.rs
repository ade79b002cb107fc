//! What a doctor actor publishes for readers that need no message: its calendar, how
//! much of it is durable and the encoded answers read from it, and the registry entry
//! that finds them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use ractor::ActorRef;

use super::answers::AnswerCache;
use super::msg::DoctorMsg;
use crate::calendar::Calendar;

/// What a doctor actor publishes so plain reads (check without hold, availability) need no
/// message: its calendar and how much of it is durable. Only the actor writes it.
pub(crate) struct View {
    pub calendar: Calendar,
    /// Last journal sequence number known durable.
    pub durable_seq: u64,
    /// A multi-patient booking's records are out for writing and not in `calendar` yet: a
    /// committed booking is missing until the actor applies it (its booker may already
    /// have the answer), and after an unknown outcome the store may hold more.
    pub preparing: bool,
    /// Set by readers; the actor counts it as activity (so a read-hot doctor is not
    /// passivated) and clears it.
    pub read_since_tick: AtomicBool,
    /// Availability answers already encoded, reused while they would read the same.
    pub answers: AnswerCache,
    /// The actor wants its shard's every tick (a hold to expire, a snapshot to queue);
    /// otherwise it is ticked only now and then. Only the actor writes it.
    pub ticks_wanted: AtomicBool,
}

impl View {
    pub fn new(calendar: Calendar) -> Self {
        Self {
            durable_seq: calendar.seq(),
            preparing: false,
            calendar,
            read_since_tick: AtomicBool::new(false),
            answers: AnswerCache::default(),
            ticks_wanted: AtomicBool::new(true),
        }
    }

    /// Everything decided is durable and applied: an answer from this view cannot be
    /// undone by a failed journal batch, nor miss an acknowledged multi-patient booking.
    pub fn is_quiet(&self) -> bool {
        !self.preparing && self.durable_seq == self.calendar.seq()
    }
}

pub(crate) type SharedView = Arc<RwLock<View>>;

/// A registered doctor: its actor, and its published view.
#[derive(Clone)]
pub(crate) struct DoctorHandle {
    pub actor: ActorRef<DoctorMsg>,
    pub view: SharedView,
}

impl DoctorHandle {
    /// Whether the actor asked for every tick.
    pub fn wants_ticks(&self) -> bool {
        self.view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .ticks_wanted
            .load(Ordering::Relaxed)
    }
}
