//! What the durable outboxes hold: the session row every in-app booking gets in its own
//! journal transaction (the session worker's to-do list and, once settled, the sealed join
//! details), and the notifications written beside every booking, cancellation, reschedule
//! and session outcome (the in-app inbox and the webhook queue). Plain data; the store keeps it, the
//! session worker and the notifier act on it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{
    ConsultMode, ConsultationId, ConsultationStatus, DoctorId, PatientId, SessionStatus,
};

/// Who a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientRole {
    Patient,
    Doctor,
}

impl RecipientRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::Doctor => "doctor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "patient" => Some(Self::Patient),
            "doctor" => Some(Self::Doctor),
            _ => None,
        }
    }
}

/// A patient or a doctor, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Recipient {
    pub role: RecipientRole,
    pub id: i64,
}

impl Recipient {
    pub fn patient(id: PatientId) -> Self {
        Self {
            role: RecipientRole::Patient,
            id,
        }
    }

    pub fn doctor(id: DoctorId) -> Self {
        Self {
            role: RecipientRole::Doctor,
            id,
        }
    }
}

/// What happened. Each event is written once for the patient and once for the doctor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    ConsultationScheduled,
    ConsultationCancelled,
    /// The consultation moved to another start; the notification shows the new one.
    ConsultationRescheduled,
    SessionReady,
    SessionFailed,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsultationScheduled => "consultation_scheduled",
            Self::ConsultationCancelled => "consultation_cancelled",
            Self::ConsultationRescheduled => "consultation_rescheduled",
            Self::SessionReady => "session_ready",
            Self::SessionFailed => "session_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "consultation_scheduled" => Self::ConsultationScheduled,
            "consultation_cancelled" => Self::ConsultationCancelled,
            "consultation_rescheduled" => Self::ConsultationRescheduled,
            "session_ready" => Self::SessionReady,
            "session_failed" => Self::SessionFailed,
            _ => return None,
        })
    }
}

/// The consultation a notification is about, as it stands when read (no medical text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsultationSummary {
    pub id: ConsultationId,
    pub reference: String,
    pub doctor_id: DoctorId,
    pub patient_id: PatientId,
    pub scheduled_at: DateTime<Utc>,
    pub duration_minutes: u16,
    pub status: ConsultationStatus,
    pub consult_mode: ConsultMode,
    pub session_status: SessionStatus,
}

/// One stored notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Allocated by the store, increasing: the inbox's order and the webhook's idempotency
    /// key (`ntf-{id}`).
    pub id: i64,
    pub recipient: Recipient,
    pub kind: NotificationKind,
    pub consultation: ConsultationSummary,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    /// Webhook delivery attempts made so far.
    pub webhook_attempts: u32,
}

/// A page of someone's inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxQuery {
    pub recipient: Recipient,
    /// Only notifications with a smaller id (the previous page's last id).
    pub before_id: Option<i64>,
    pub limit: u32,
    pub unread_only: bool,
}

/// A pending session the worker should create: the consultation facts it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTask {
    pub consultation_id: ConsultationId,
    pub reference: String,
    pub doctor_id: DoctorId,
    pub patient_id: PatientId,
    pub mode: ConsultMode,
    pub scheduled_at: DateTime<Utc>,
    pub duration_minutes: u16,
    pub consultation_status: ConsultationStatus,
    /// Attempts already made (and failed) before this one.
    pub attempts: u32,
}

/// A session row as stored. Join details are sealed (AES-256-GCM); the store never sees
/// a token in the clear.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub consultation_id: ConsultationId,
    pub status: SessionStatus,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed (an HTTP status or a transport error, never a token).
    pub last_error: Option<String>,
    /// `vonage` or `fake`.
    pub provider: Option<String>,
    /// Video session id or chat conversation id.
    pub provider_session_id: Option<String>,
    pub doctor_join: Option<Vec<u8>>,
    pub patient_join: Option<Vec<u8>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("consultation_id", &self.consultation_id)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .field("provider", &self.provider)
            .field("provider_session_id", &self.provider_session_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Whose join token: a session has one per side, each signed when that side first asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinSide {
    Doctor,
    Patient,
}

/// How a pending session ends.
#[derive(Clone, PartialEq, Eq)]
pub enum SessionOutcome {
    Ready {
        consultation_id: ConsultationId,
        provider: String,
        provider_session_id: String,
        expires_at: DateTime<Utc>,
    },
    /// Attempts exhausted or a permanent provider error.
    Failed {
        consultation_id: ConsultationId,
        error: String,
    },
    /// The consultation was cancelled before its session was made: none is needed now.
    NotRequired { consultation_id: ConsultationId },
}

impl SessionOutcome {
    pub fn consultation_id(&self) -> ConsultationId {
        match self {
            Self::Ready {
                consultation_id, ..
            }
            | Self::Failed {
                consultation_id, ..
            }
            | Self::NotRequired { consultation_id } => *consultation_id,
        }
    }

    pub fn status(&self) -> SessionStatus {
        match self {
            Self::Ready { .. } => SessionStatus::Ready,
            Self::Failed { .. } => SessionStatus::Failed,
            Self::NotRequired { .. } => SessionStatus::NotRequired,
        }
    }

    /// The notification this outcome sends to patient and doctor, if any.
    pub fn notification(&self) -> Option<NotificationKind> {
        match self {
            Self::Ready { .. } => Some(NotificationKind::SessionReady),
            Self::Failed { .. } => Some(NotificationKind::SessionFailed),
            Self::NotRequired { .. } => None,
        }
    }
}

impl std::fmt::Debug for SessionOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOutcome")
            .field("consultation_id", &self.consultation_id())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// Webhook delivery state of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookUpdate {
    /// Every configured URL answered 2xx.
    Delivered,
    /// Try again at this time; `attempts` made so far.
    Retry {
        attempts: u32,
        next_at: DateTime<Utc>,
    },
    /// Attempts exhausted or a permanent refusal.
    GaveUp { attempts: u32 },
}
