//! Which idempotency keys may be in the store, so that a request with a key the store
//! cannot hold needs no look-up there (the look-up was a database round trip on every
//! keyed booking). A key can be stored only if an earlier process stored it (those are read
//! once at start, while they are unexpired) or this engine was given it with a booking,
//! a move or a multi-patient booking since (recorded before the record is written). So a
//! key that is in neither is certainly not stored. Entries are hashes: a collision only
//! costs a look-up. Bounded: past [`MAX_KNOWN_KEYS`] every key is looked up, as before.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::error::StoreError;
use crate::model::{IdempotencyClaim, PatientId};
use crate::store::Store;

/// Most keys remembered (16 bytes each, plus the map's overhead).
pub const MAX_KNOWN_KEYS: usize = 2_000_000;
/// Keys read from the store per query at start.
const LOAD_PAGE_ROWS: u32 = 10_000;

#[derive(Default)]
pub(crate) struct KnownKeys {
    /// Hash of (patient, key) -> when the key expires (unix seconds).
    expiry: DashMap<u64, i64>,
    /// Past the bound: every key may be stored.
    saturated: AtomicBool,
}

fn hash(patient: PatientId, key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (patient, key).hash(&mut h);
    h.finish()
}

impl KnownKeys {
    /// Reads every key of the store that has not expired at `now`, page by page.
    pub async fn load(store: &dyn Store, now: DateTime<Utc>) -> Result<Self, StoreError> {
        let known = Self::default();
        let mut after: (PatientId, String) = (PatientId::MIN, String::new());
        loop {
            let page = store
                .unexpired_idempotency_keys(now, (after.0, &after.1), LOAD_PAGE_ROWS)
                .await?;
            let full = page.len() == LOAD_PAGE_ROWS as usize;
            for (patient, key, expires_at) in &page {
                known.remember(*patient, key, *expires_at);
            }
            match page.into_iter().last() {
                Some((patient, key, _)) if full && !known.saturated.load(Ordering::Relaxed) => {
                    after = (patient, key)
                }
                _ => return Ok(known),
            }
        }
    }

    /// Every key may be stored: used when other instances share the store (a key they
    /// wrote is not known here), so every key is looked up.
    pub fn shared() -> Self {
        let known = Self::default();
        known.saturated.store(true, Ordering::Relaxed);
        known
    }

    fn remember(&self, patient: PatientId, key: &str, expires_at: DateTime<Utc>) {
        if self.expiry.len() >= MAX_KNOWN_KEYS {
            self.saturated.store(true, Ordering::Relaxed);
            return;
        }
        self.expiry
            .insert(hash(patient, key), expires_at.timestamp());
    }

    /// Records a claim before its record is written.
    pub fn record(&self, claim: &IdempotencyClaim) {
        self.remember(claim.patient_id, &claim.key, claim.expires_at);
    }

    /// Whether the store may hold this key (false: it certainly does not).
    pub fn may_be_stored(&self, patient: PatientId, key: &str) -> bool {
        self.saturated.load(Ordering::Relaxed) || self.expiry.contains_key(&hash(patient, key))
    }

    /// Forgets the keys that expired at or before `now` (they are unknown to the store's
    /// look-up too, and purged there).
    pub fn purge(&self, now: DateTime<Utc>) {
        let now = now.timestamp();
        self.expiry.retain(|_, expires| *expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    fn claim(patient: PatientId, key: &str, expires_at: DateTime<Utc>) -> IdempotencyClaim {
        IdempotencyClaim {
            patient_id: patient,
            key: key.into(),
            fingerprint: "f".into(),
            expires_at,
        }
    }

    #[tokio::test]
    async fn a_recorded_key_may_be_stored_others_certainly_not_and_expired_ones_are_forgotten() {
        let known = KnownKeys::load(&MemoryStore::default(), Utc::now())
            .await
            .unwrap();
        let now = Utc::now();
        assert!(!known.may_be_stored(7, "k-1"));
        known.record(&claim(7, "k-1", now + chrono::Duration::hours(1)));
        known.record(&claim(7, "k-2", now - chrono::Duration::seconds(1)));
        assert!(known.may_be_stored(7, "k-1"));
        assert!(!known.may_be_stored(8, "k-1"), "keys are per patient");
        known.purge(now);
        assert!(known.may_be_stored(7, "k-1"));
        assert!(!known.may_be_stored(7, "k-2"), "expired keys are forgotten");
    }
}
