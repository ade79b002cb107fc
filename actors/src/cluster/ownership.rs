//! Which lease shards this instance serves, and where the others are: the table every
//! request consults before it reaches a doctor's actor. Only the lease loop writes it.

use std::sync::{Arc, RwLock};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::store::{Fence, ShardNo};

/// Where a lease shard's requests go now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This instance holds the lease (until its local deadline): serve, and fence every
    /// write with this epoch.
    Local(Fence),
    /// Another instance holds a live lease: forward to its advertised URL.
    Remote(Arc<str>),
    /// Nobody serves it right now (a handoff or a takeover is under way): wait briefly.
    Unknown,
}

#[derive(Debug, Clone)]
enum Slot {
    Owned {
        epoch: u64,
        deadline: Instant,
    },
    /// Owned, but being handed off: no new work is admitted.
    Releasing,
    Remote(Arc<str>),
    Unknown,
}

/// The shard table. Reads take a shared lock for a few nanoseconds.
pub struct Ownership {
    slots: RwLock<Vec<Slot>>,
    changed: Notify,
}

impl Ownership {
    pub(crate) fn new(shard_count: u32) -> Self {
        Self {
            slots: RwLock::new(vec![Slot::Unknown; shard_count as usize]),
            changed: Notify::new(),
        }
    }

    pub fn shard_count(&self) -> u32 {
        self.read().len() as u32
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Slot>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Slot>> {
        self.slots.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Where shard `shard`'s requests go now. A lease past its local deadline is not
    /// served, whatever the lease loop has managed to do since.
    pub fn route(&self, shard: ShardNo) -> Route {
        match self.read().get(shard as usize) {
            Some(Slot::Owned { epoch, deadline }) if Instant::now() < *deadline => {
                Route::Local(Fence {
                    shard,
                    epoch: *epoch,
                })
            }
            Some(Slot::Remote(url)) => Route::Remote(Arc::clone(url)),
            _ => Route::Unknown,
        }
    }

    /// Shards held (leases within their deadline) now.
    pub fn owned(&self) -> Vec<Fence> {
        let now = Instant::now();
        self.read()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Owned { epoch, deadline } if now < *deadline => Some(Fence {
                    shard: i as ShardNo,
                    epoch: *epoch,
                }),
                _ => None,
            })
            .collect()
    }

    /// Shards whose slot says owned (whether or not the deadline passed), for the loop.
    pub(crate) fn held(&self) -> Vec<(ShardNo, u64, Instant)> {
        self.read()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Owned { epoch, deadline } => Some((i as ShardNo, *epoch, *deadline)),
                _ => None,
            })
            .collect()
    }

    /// How many shards nobody serves or forwards to right now (0 = ready).
    pub fn unrouted(&self) -> usize {
        let now = Instant::now();
        self.read()
            .iter()
            .filter(|s| match s {
                Slot::Owned { deadline, .. } => now >= *deadline,
                Slot::Remote(_) => false,
                Slot::Releasing | Slot::Unknown => true,
            })
            .count()
    }

    pub(crate) fn set_owned(&self, fence: Fence, deadline: Instant) {
        self.set(
            fence.shard,
            Slot::Owned {
                epoch: fence.epoch,
                deadline,
            },
        );
    }

    /// Extends the deadline of a shard still held with the same epoch.
    pub(crate) fn renew(&self, fence: Fence, deadline: Instant) -> bool {
        let mut slots = self.write();
        match slots.get_mut(fence.shard as usize) {
            Some(Slot::Owned { epoch, deadline: d }) if *epoch == fence.epoch => {
                *d = deadline;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn set_releasing(&self, shard: ShardNo) {
        self.set(shard, Slot::Releasing);
    }

    pub(crate) fn set_remote(&self, shard: ShardNo, url: Arc<str>) {
        let mut slots = self.write();
        if let Some(s) = slots.get_mut(shard as usize) {
            if !matches!(s, Slot::Remote(u) if *u == url) {
                *s = Slot::Remote(url);
                drop(slots);
                self.changed.notify_waiters();
            }
        }
    }

    /// Every shard routed to `url` becomes unknown (that instance seems gone).
    pub(crate) fn forget_remote(&self, url: &str) {
        let mut changed = false;
        for s in self.write().iter_mut() {
            if matches!(s, Slot::Remote(u) if &**u == url) {
                *s = Slot::Unknown;
                changed = true;
            }
        }
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// The distinct instances shards are forwarded to now.
    pub fn remotes(&self) -> Vec<Arc<str>> {
        let mut urls: Vec<Arc<str>> = self
            .read()
            .iter()
            .filter_map(|s| match s {
                Slot::Remote(u) => Some(Arc::clone(u)),
                _ => None,
            })
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }

    pub(crate) fn set_unknown(&self, shard: ShardNo) {
        self.set(shard, Slot::Unknown);
    }

    fn set(&self, shard: ShardNo, slot: Slot) {
        if let Some(s) = self.write().get_mut(shard as usize) {
            *s = slot;
        }
        self.changed.notify_waiters();
    }

    /// Resolves at the next change of the table (or at `until`).
    pub async fn changed_or(&self, until: Instant) {
        let _ = tokio::time::timeout_at(until, self.changed.notified()).await;
    }
}
