//! `Idempotency-Key` on bookings: a repeated key from the same patient answers the first
//! answer instead of booking again, also when the repeats race the first request (they
//! wait for it). Answers that settle the request (201, 4xx) are kept for
//! [`IDEMPOTENCY_TTL`]; a 503 is not kept, so a retry with the same key tries again.
//!
//! Kept in memory, bounded by [`MAX_IDEMPOTENCY_ENTRIES`]: after a restart a repeated key
//! books again, and a repeat of an acknowledged booking then meets its own slot and
//! answers 409.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use moka::future::Cache;

use super::error::ApiError;

/// How long a key's answer is kept.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most keys kept at once (least recently used go first).
pub const MAX_IDEMPOTENCY_ENTRIES: u64 = 100_000;
/// Longest accepted key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// A settled answer: status and JSON body, plus a fingerprint of the request it answered.
#[derive(Debug)]
pub struct Answer {
    pub request_fingerprint: u64,
    pub status: StatusCode,
    pub body: serde_json::Value,
}

#[derive(Clone)]
pub struct IdempotencyCache {
    answers: Cache<(i64, String), Arc<Answer>>,
}

impl Default for IdempotencyCache {
    fn default() -> Self {
        Self {
            answers: Cache::builder()
                .max_capacity(MAX_IDEMPOTENCY_ENTRIES)
                .time_to_live(IDEMPOTENCY_TTL)
                .build(),
        }
    }
}

/// A fingerprint of the request fields that must match for a key to be reused.
pub fn fingerprint(parts: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

impl IdempotencyCache {
    /// The first settled answer for `(patient, key)`, running `first` only if there is
    /// none yet (concurrent repeats wait for it). `first` answers `Err` for answers that
    /// must not be kept (503s); those are passed on and the key stays free.
    pub async fn answer<F>(
        &self,
        patient: i64,
        key: &str,
        request_fingerprint: u64,
        first: F,
    ) -> Result<Arc<Answer>, ApiError>
    where
        F: std::future::Future<Output = Result<Answer, ApiError>>,
    {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES || !key.is_ascii() {
            return Err(ApiError::field(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} ASCII characters"),
            ));
        }
        let answer = self
            .answers
            .try_get_with((patient, key.to_owned()), async {
                first.await.map(Arc::new)
            })
            .await
            .map_err(|shared: Arc<ApiError>| {
                Arc::try_unwrap(shared).unwrap_or_else(|shared| repeat(&shared))
            })?;
        if answer.request_fingerprint != request_fingerprint {
            return Err(ApiError::field(
                "Idempotency-Key",
                "was already used for a different request",
            ));
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
