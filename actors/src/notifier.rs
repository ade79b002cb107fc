//! The notifier: delivers the notification outbox to the configured webhook URLs, at least
//! once. Each notification is POSTed as JSON with a stable idempotency key (`ntf-{id}`,
//! the same on every retry, so receivers can drop repeats) and an HMAC-SHA256 signature
//! over `"{timestamp}.{body}"`. A notification is delivered when every URL answered 2xx in
//! one round; otherwise every URL gets it again after an exponential backoff with jitter
//! (a `Retry-After` is honoured), up to `max_attempts`, then it is marked failed. The
//! in-app inbox needs no delivery: it reads the same rows.
//!
//! A plain task, woken by each durable journal batch and by a poll.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::error::InvalidField;
use crate::outbox::{Notification, WebhookUpdate};
use crate::store::Store;

/// Header with `t={unix seconds},v1={hex HMAC-SHA256 of "{t}.{body}"}`.
pub const SIGNATURE_HEADER: &str = "x-consult-signature";
/// Header with the notification's stable key; the same on every retry.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Header with the event kind, e.g. `consultation_scheduled`.
pub const EVENT_HEADER: &str = "x-consult-event";

/// Webhook delivery settings, named with their units.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Receivers; empty = webhooks off (the inbox still works).
    pub webhook_urls: Vec<String>,
    /// HMAC-SHA256 key of the signature header.
    pub webhook_secret: String,
    /// Upper bound on one POST.
    pub webhook_timeout_ms: u64,
    /// Delivery rounds before a notification is marked failed.
    pub webhook_max_attempts: u32,
    pub webhook_backoff_base_ms: u64,
    pub webhook_backoff_max_ms: u64,
    /// How often the outbox is polled for due deliveries.
    pub poll_interval_ms: u64,
    /// Notifications delivered at once.
    pub webhook_max_in_flight: usize,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("urls", &self.webhook_urls.len())
            .field("secret", &"<redacted>")
            .field("max_attempts", &self.webhook_max_attempts)
            .finish_non_exhaustive()
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            webhook_urls: Vec::new(),
            webhook_secret: String::new(),
            webhook_timeout_ms: 5_000,
            webhook_max_attempts: 10,
            webhook_backoff_base_ms: 1_000,
            webhook_backoff_max_ms: 600_000,
            poll_interval_ms: 1_000,
            webhook_max_in_flight: 16,
        }
    }
}

impl WebhookSettings {
    pub fn validate(&self) -> Result<(), InvalidField> {
        let check = |ok: bool, field: &str, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(InvalidField::new(format!("notifications.{field}"), reason))
            }
        };
        check(
            self.webhook_urls.len() <= 16,
            "webhook_urls",
            "at most 16 URLs",
        )?;
        for url in &self.webhook_urls {
            check(
                url.starts_with("http://") || url.starts_with("https://"),
                "webhook_urls",
                "every URL must start with http:// or https://",
            )?;
        }
        check(
            self.webhook_urls.is_empty() || self.webhook_secret.len() >= 16,
            "webhook_secret",
            "must be at least 16 bytes when webhook URLs are set",
        )?;
        check(
            (1..=60_000).contains(&self.webhook_timeout_ms),
            "webhook_timeout_ms",
            "must be 1..=60000",
        )?;
        check(
            (1..=100).contains(&self.webhook_max_attempts),
            "webhook_max_attempts",
            "must be 1..=100",
        )?;
        check(
            (1..=60_000).contains(&self.webhook_backoff_base_ms)
                && self.webhook_backoff_max_ms >= self.webhook_backoff_base_ms,
            "webhook_backoff_base_ms",
            "must be 1..=60000 and at most webhook_backoff_max_ms",
        )?;
        check(
            (10..=600_000).contains(&self.poll_interval_ms),
            "poll_interval_ms",
            "must be 10..=600000",
        )?;
        check(
            (1..=1024).contains(&self.webhook_max_in_flight),
            "webhook_max_in_flight",
            "must be 1..=1024",
        )
    }
}

/// The signature header's value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Checks a signature header against `body` in constant time; for receivers and tests.
pub fn verify(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signature = hex::decode(s).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// The JSON body of one delivery.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookBody {
    /// The idempotency key, `ntf-{id}`.
    pub id: String,
    pub event: String,
    pub created_at: DateTime<Utc>,
    pub recipient: crate::outbox::Recipient,
    pub consultation: crate::outbox::ConsultationSummary,
}

impl WebhookBody {
    pub fn of(n: &Notification) -> Self {
        Self {
            id: format!("ntf-{}", n.id),
            event: n.kind.as_str().to_owned(),
            created_at: n.created_at,
            recipient: n.recipient,
            consultation: n.consultation.clone(),
        }
    }
}

pub(crate) struct NotifierHandle {
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl NotifierHandle {
    pub fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: WebhookSettings,
    ) -> Result<Self, InvalidField> {
        settings.validate()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.webhook_timeout_ms))
            .build()
            .map_err(|e| InvalidField::new("notifications", format!("HTTP client: {e}")))?;
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(
            Arc::new(Deliverer {
                store,
                clock,
                client,
                settings,
            }),
            Arc::clone(&wake),
            stopped,
        ));
        Ok(Self {
            wake,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        })
    }

    /// New notifications may be due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops after the round in progress; what is undelivered stays in the outbox.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().expect("task lock").take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

struct Deliverer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    settings: WebhookSettings,
}

async fn run(d: Arc<Deliverer>, wake: Arc<Notify>, mut stopped: watch::Receiver<bool>) {
    if d.settings.webhook_urls.is_empty() {
        return;
    }
    let poll = Duration::from_millis(d.settings.poll_interval_ms);
    loop {
        let due = match d
            .store
            .due_webhooks(d.clock.now(), d.settings.webhook_max_in_flight as u32)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                warn!(error = %e, "webhook outbox poll failed");
                Vec::new()
            }
        };
        let full = due.len() >= d.settings.webhook_max_in_flight;
        let mut round = tokio::task::JoinSet::new();
        for n in due {
            let d = Arc::clone(&d);
            round.spawn(async move { d.deliver(n).await });
        }
        while round.join_next().await.is_some() {}
        if *stopped.borrow() {
            return;
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = stopped.changed() => return,
        }
    }
}

impl Deliverer {
    async fn deliver(&self, n: Notification) {
        let body = serde_json::to_vec(&WebhookBody::of(&n)).expect("webhook body serializes");
        let key = format!("ntf-{}", n.id);
        let mut retry_after = None;
        let mut failures = Vec::new();
        for url in &self.settings.webhook_urls {
            let timestamp = self.clock.now().timestamp();
            let sent = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(IDEMPOTENCY_HEADER, &key)
                .header(EVENT_HEADER, n.kind.as_str())
                .header(
                    SIGNATURE_HEADER,
                    sign(self.settings.webhook_secret.as_bytes(), timestamp, &body),
                )
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    let after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    retry_after = retry_after.max(after);
                    failures.push(format!("HTTP {}", r.status().as_u16()));
                }
                Err(e) if e.is_timeout() => failures.push("timeout".to_owned()),
                Err(_) => failures.push("connection failed".to_owned()),
            }
        }
        let attempts = n.webhook_attempts + 1;
        let update = if failures.is_empty() {
            debug!(notification = %key, event = n.kind.as_str(), "webhook delivered");
            WebhookUpdate::Delivered
        } else if attempts >= self.settings.webhook_max_attempts {
            warn!(
                event_type = "webhook_failed",
                notification = %key,
                event = n.kind.as_str(),
                attempts,
                errors = ?failures,
                "webhook delivery gave up"
            );
            WebhookUpdate::GaveUp { attempts }
        } else {
            let s = &self.settings;
            let delay = crate::sessions::jittered_backoff(
                s.webhook_backoff_base_ms,
                s.webhook_backoff_max_ms,
                attempts,
                retry_after,
            );
            warn!(
                notification = %key,
                event = n.kind.as_str(),
                attempts,
                retry_in_ms = delay.as_millis() as u64,
                errors = ?failures,
                "webhook delivery failed; retrying"
            );
            WebhookUpdate::Retry {
                attempts,
                next_at: self.clock.now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero()),
            }
        };
        if let Err(e) = self.store.update_webhook(n.id, update).await {
            warn!(notification = %key, error = %e, "webhook outcome not stored; it will be sent again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_for_its_body_and_secret_only() {
        let header = sign(b"secret-0123456789", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify(b"secret-0123456789", &header, b"{\"a\":1}"));
        assert!(!verify(b"secret-0123456789", &header, b"{\"a\":2}"));
        assert!(!verify(b"other-secret-0000", &header, b"{\"a\":1}"));
        let moved = header.replace("t=1700000000", "t=1700000001");
        assert!(!verify(b"secret-0123456789", &moved, b"{\"a\":1}"));
        assert!(!verify(b"secret-0123456789", "garbage", b"{\"a\":1}"));
    }
}
