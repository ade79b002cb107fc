//! The Vonage client: creates the Video API session and the Conversations API
//! conversation, users and members a consultation needs, and mints the client tokens
//! (video and chat) locally with the application's RSA key.
//!
//! - [`VonageClient`]: one shared HTTP client and the parsed key; cheap to clone.
//! - [`VonageError`]: every failure is either worth retrying ([`VonageError::Transient`],
//!   with the server's `Retry-After`), not ([`VonageError::Permanent`]), or a bad setting
//!   ([`VonageError::Config`]).
//!
//! Conversation, user and member creation are idempotent: a retry after a call whose
//! answer was lost finds the existing resource (Vonage refuses a duplicate name) and
//! returns its id. Tokens and keys are never logged; logs carry status codes, paths and
//! ids only.

mod client;
mod tokens;

use std::time::Duration;

pub use client::VonageClient;

/// Production base URL of the Video API.
pub const PRODUCTION_VIDEO_BASE_URL: &str = "https://video.api.vonage.com";
/// Production base URL of the Conversations API (and the other `api.nexmo.com` APIs).
pub const PRODUCTION_API_BASE_URL: &str = "https://api.nexmo.com";
/// A sensible default for [`VonageConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the client needs to talk to Vonage as one Vonage application.
#[derive(Clone)]
pub struct VonageConfig {
    pub application_id: String,
    /// PEM (PKCS#8 or PKCS#1) RSA private key of the Vonage application. Debug must redact it.
    pub private_key_pem: String,
    /// Video API base, production `https://video.api.vonage.com`.
    pub video_base_url: String,
    /// Conversations API base, production `https://api.nexmo.com`.
    pub api_base_url: String,
    /// Upper bound on one HTTP call (connect + answer).
    pub request_timeout: Duration,
}

impl VonageConfig {
    /// The production endpoints with [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn production(
        application_id: impl Into<String>,
        private_key_pem: impl Into<String>,
    ) -> Self {
        Self {
            application_id: application_id.into(),
            private_key_pem: private_key_pem.into(),
            video_base_url: PRODUCTION_VIDEO_BASE_URL.to_owned(),
            api_base_url: PRODUCTION_API_BASE_URL.to_owned(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for VonageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageConfig")
            .field("application_id", &self.application_id)
            .field("private_key_pem", &"<redacted>")
            .field("video_base_url", &self.video_base_url)
            .field("api_base_url", &self.api_base_url)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// What a video participant may do; the `role` claim of a video token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoRole {
    Publisher,
    Subscriber,
    Moderator,
}

impl VideoRole {
    /// The claim value: `"publisher"`, `"subscriber"` or `"moderator"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publisher => "publisher",
            Self::Subscriber => "subscriber",
            Self::Moderator => "moderator",
        }
    }
}

/// Why a Vonage call or token failed.
#[derive(Debug, thiserror::Error)]
pub enum VonageError {
    /// 429, 5xx, timeout or connection error: worth retrying; `retry_after` from the `Retry-After` header (seconds or HTTP date).
    #[error(
        "vonage transient failure (status {status:?}, retry after {retry_after:?}): {message}"
    )]
    Transient {
        status: Option<u16>,
        retry_after: Option<Duration>,
        message: String,
    },
    /// Any other 4xx, or an answer that does not parse: retrying will not help.
    #[error("vonage permanent failure (status {status:?}): {message}")]
    Permanent {
        status: Option<u16>,
        message: String,
    },
    /// Bad key or settings.
    #[error("vonage configuration error: {0}")]
    Config(String),
}

impl VonageError {
    /// True for [`VonageError::Transient`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// How long the server asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status of the answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Transient { status, .. } | Self::Permanent { status, .. } => *status,
            Self::Config(_) => None,
        }
    }
}
