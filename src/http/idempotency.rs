//! `Idempotency-Key` on bookings and reschedules: a repeated key from the same patient
//! answers the first answer instead of acting again, also when the repeats race the first
//! request (they wait for it) and also after a crash and restart.
//!
//! Two layers. In memory, a single-flight cache (moka's `try_get_with`) holds settled
//! answers (201 / 200 and 4xx) and makes concurrent repeats wait for the first. Durable:
//! a key that booked (or moved) is stored with its record, in the journal batch's own
//! transaction (`idempotency_keys`, unique per patient and key), so when memory does not
//! know a key (after a restart, or once the cache dropped it) the store is asked before
//! acting, and the answer is rebuilt from the consultation as stored. 4xx answers stay
//! memory-only: after a restart the request is simply decided again. A 503 or 500 is not
//! kept anywhere, so a retry with the same key tries again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use moka::future::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};

use super::error::ApiError;
pub use consult_actors::MAX_IDEMPOTENCY_KEY_BYTES;

/// Most keys kept in memory at once (least recently used go first; the store still
/// knows the ones that booked).
pub const MAX_IDEMPOTENCY_ENTRIES: u64 = 100_000;

/// A settled answer: status and JSON body, the fingerprint of the request it answered,
/// and how long it is kept in memory.
#[derive(Debug)]
pub struct Answer {
    pub request_fingerprint: String,
    pub status: StatusCode,
    pub body: serde_json::Value,
    pub kept_for: Duration,
}

/// Each answer lives as long as its key does: a fresh one the configured time, one rebuilt
/// from the store what is left of its stored life.
struct KeptFor;

/// (patient, endpoint, key): the endpoint is part of the memory key so an answer is only
/// ever replayed by the endpoint that gave it; the store's key is (patient, key), and a
/// key used on another endpoint meets a different fingerprint there (422).
type CacheKey = (i64, &'static str, String);

impl Expiry<CacheKey, Arc<Answer>> for KeptFor {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Answer>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.kept_for)
    }
}

#[derive(Clone)]
pub struct IdempotencyCache {
    answers: Cache<CacheKey, Arc<Answer>>,
}

impl Default for IdempotencyCache {
    fn default() -> Self {
        Self {
            answers: Cache::builder()
                .max_capacity(MAX_IDEMPOTENCY_ENTRIES)
                .expire_after(KeptFor)
                .build(),
        }
    }
}

/// The request's `Idempotency-Key`, if any: 1 to [`MAX_IDEMPOTENCY_KEY_BYTES`] visible
/// ASCII characters, else 400 on `Idempotency-Key`.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if consult_actors::valid_idempotency_key(key) => Ok(Some(key.to_owned())),
        _ => Err(ApiError::field(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters"),
        )),
    }
}

/// A stable fingerprint of a request: SHA-256 (hex) of the endpoint's name and the
/// request's canonical JSON. Stored with the key, so it must not change between releases
/// for the same request; the request itself (medical text) is never stored with the key.
pub fn fingerprint(endpoint: &str, request: &impl serde::Serialize) -> String {
    let mut hash = Sha256::new();
    hash.update(endpoint.as_bytes());
    hash.update([0]);
    hash.update(serde_json::to_vec(request).expect("requests always serialize"));
    hex::encode(hash.finalize())
}

impl IdempotencyCache {
    /// The first settled answer for `(patient, key)`, running `first` only if memory has
    /// none yet (concurrent repeats wait for it). `first` asks the store before acting
    /// and answers `Err` for answers that must not be kept (503s, 500s); those are passed
    /// on and the key stays free. A settled answer to a different request is 422
    /// `idempotency_key_reused`.
    pub async fn answer<F>(
        &self,
        patient: i64,
        endpoint: &'static str,
        key: &str,
        request_fingerprint: &str,
        first: F,
    ) -> Result<Arc<Answer>, ApiError>
    where
        F: std::future::Future<Output = Result<Answer, ApiError>>,
    {
        let answer = self
            .answers
            .try_get_with((patient, endpoint, key.to_owned()), async {
                first.await.map(Arc::new)
            })
            .await
            .map_err(|shared: Arc<ApiError>| {
                Arc::try_unwrap(shared).unwrap_or_else(|shared| repeat(&shared))
            })?;
        if answer.request_fingerprint != request_fingerprint {
            tracing::debug!(
                patient_id = patient,
                endpoint,
                idempotency_key = key,
                "idempotency key reused for a different request"
            );
            return Err(ApiError::IdempotencyKeyReused);
        }
        Ok(answer)
    }
}

/// The same error for a caller that waited on someone else's attempt.
fn repeat(e: &ApiError) -> ApiError {
    match e {
        ApiError::Unavailable(m) => ApiError::Unavailable(m),
        other => ApiError::Internal(format!("idempotent attempt failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_by_endpoint_and_by_any_field() {
        let a = fingerprint("book", &(1, "video", Some("cough")));
        assert_eq!(a, fingerprint("book", &(1, "video", Some("cough"))));
        assert_ne!(a, fingerprint("reschedule", &(1, "video", Some("cough"))));
        assert_ne!(a, fingerprint("book", &(1, "video", Some("fever"))));
        assert_eq!(a.len(), 64);
        assert!(!a.contains("cough"));
    }

    #[test]
    fn keys_are_bounded_visible_ascii() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("idempotency-key", v.parse().unwrap());
            h
        };
        assert_eq!(key_of(&HeaderMap::new()).unwrap(), None);
        assert_eq!(key_of(&headers("k-1")).unwrap().as_deref(), Some("k-1"));
        let longest = "k".repeat(MAX_IDEMPOTENCY_KEY_BYTES);
        assert!(key_of(&headers(&longest)).unwrap().is_some());
        assert!(key_of(&headers(&format!("{longest}k"))).is_err());
        assert!(key_of(&headers("two words")).is_err());
        assert!(key_of(&headers("")).is_err());
    }
}
