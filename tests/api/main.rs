//! The HTTP API through a real server on port 0, each test on its own fresh database.

mod auth;
mod bookings;
mod concurrency;
mod doctor_admin;
mod errors;
mod helpers;
mod hostile;
mod idempotency;
mod matrix;
mod notifications;
mod ops;
mod patient;
mod policy;
mod reschedule;
mod sessions;
mod slot_history;
mod stream;
mod ui_support;
mod vonage;
mod watcher;

use std::future::Future;
use std::time::Duration;

/// Polls `attempt` until it answers `Some`, for up to 20 s.
pub async fn eventually<T, F, Fut>(mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = attempt().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
