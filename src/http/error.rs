//! The one error type at the HTTP edge. Every failure a handler or extractor can meet
//! becomes an [`ApiError`], which renders the API's single error shape:
//! `{"success": false, "message": "...", "error": "<code>"}` (+ `errors` for validation).
//! Internal failures are logged here, once, and answered with a generic message.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use consult_actors::{EngineError, Rejection};
use serde::Serialize;
use utoipa::ToSchema;

/// `Retry-After` sent with 503 and 429 answers, in seconds.
pub const RETRY_AFTER_S: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `validation_failed`: malformed JSON, missing or ill-typed fields, bad dates.
    #[error("{message}")]
    Validation {
        message: String,
        errors: BTreeMap<String, Vec<String>>,
    },
    /// 400 (rule violations, seed messages) or 409 `time_slot_conflict`.
    #[error(transparent)]
    Rejected(Rejection),
    /// 409 `time_slot_conflict` with the seed's three fields, plus up to three next free
    /// starts of the doctor after the requested time (`next_available`).
    #[error("This time slot was just booked by another patient. Please select a different time.")]
    SlotTaken { next_available: Vec<DateTime<Utc>> },
    /// 401 `unauthorized`: no, bad or expired token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403 `forbidden`: wrong role, or another user's resource.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404 `not_found`: unknown doctor, consultation or route.
    #[error("{0}")]
    NotFound(String),
    /// 405 `method_not_allowed`.
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// 409 `not_cancellable`: the consultation is no longer active.
    #[error("This consultation can no longer be cancelled")]
    NotCancellable,
    /// 409 `not_reschedulable`: the consultation is no longer active or has started.
    #[error("This consultation can no longer be rescheduled")]
    NotReschedulable,
    /// 422 `idempotency_key_reused`: an `Idempotency-Key` this patient already used for a
    /// different request (another body, or another endpoint).
    #[error("This Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// 413 `payload_too_large`: body over the configured limit.
    #[error("Request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 431 `headers_too_large`: the request's headers together are over the limit.
    #[error("Request headers are larger than {0} bytes")]
    HeadersTooLarge(usize),
    /// 429 `rate_limited`: this user sent too many requests; retry after `Retry-After`.
    #[error("Too many requests; slow down and retry")]
    RateLimited,
    /// 503 `unavailable`: overload, storage down, or the engine is stopping. Nothing was
    /// booked (except after a timeout, which says so).
    #[error("{0}")]
    Unavailable(&'static str),
    /// 503 `unavailable`: another instance serves the doctor. The forwarding layer
    /// (`super::forward`) sends the request there instead; a client sees this only when
    /// no owner could be reached in time. Nothing was done.
    #[error("The doctor's schedule is moving between servers; nothing was done. Please retry.")]
    NotOwner { owner: Option<String> },
    /// 500 `internal_error`: a bug or an unexpected failure; details are logged only.
    #[error("Internal server error")]
    Internal(String),
    /// One item of a multi-patient booking refused: `inner`'s status, code and message,
    /// plus `item` (its 0-based index) and `errors: {"items[i]": [...]}`.
    #[error("{inner}")]
    Item { item: usize, inner: Box<ApiError> },
}

/// The error body, for the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub message: String,
    /// Stable machine-readable code, e.g. `time_slot_conflict`.
    #[schema(value_type = super::schema::ErrorCode)]
    pub error: String,
    /// Field name -> reasons, for `validation_failed` (and for a refused item of a
    /// multi-patient booking: `items[i]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, Vec<String>>>,
    /// The 0-based index of the refused item of a multi-patient booking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    /// With `time_slot_conflict`: up to three next free slot starts (UTC) of that doctor
    /// after the requested time, each bookable by the asking patient when answered.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::rfc3339::option_list"
    )]
    pub next_available: Option<Vec<DateTime<Utc>>>,
}

impl ApiError {
    /// A validation failure on one field.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let field = field.into();
        let reason = reason.into();
        let mut errors = BTreeMap::new();
        errors.insert(field.clone(), vec![reason.clone()]);
        Self::Validation {
            message: format!("Invalid {field}: {reason}"),
            errors,
        }
    }

    /// A validation failure on several fields at once (`failures` not empty).
    pub fn fields(failures: Vec<(&str, String)>) -> Self {
        let message = match failures.as_slice() {
            [(field, reason)] => format!("Invalid {field}: {reason}"),
            _ => "Some fields are invalid; see errors".to_owned(),
        };
        let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (field, reason) in failures {
            errors.entry(field.to_owned()).or_default().push(reason);
        }
        Self::Validation { message, errors }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation { .. } => StatusCode::BAD_REQUEST,
            Self::Rejected(Rejection::Conflict) | Self::SlotTaken { .. } => StatusCode::CONFLICT,
            Self::Rejected(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotCancellable | Self::NotReschedulable => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::NotOwner { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Item { inner, .. } => inner.status(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "validation_failed",
            Self::Rejected(r) => r.code(),
            Self::SlotTaken { .. } => Rejection::Conflict.code(),
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotCancellable => "not_cancellable",
            Self::NotReschedulable => "not_reschedulable",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::HeadersTooLarge(_) => "headers_too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable(_) | Self::NotOwner { .. } => "unavailable",
            Self::Internal(_) => "internal_error",
            Self::Item { inner, .. } => inner.code(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Rejected(r) => Self::Rejected(r),
            EngineError::Invalid(f) => Self::field(f.field, f.reason),
            EngineError::DoctorNotFound => Self::NotFound("Doctor not found".into()),
            EngineError::ConsultationNotFound(_) => {
                Self::NotFound("Consultation not found".into())
            }
            EngineError::BookingNotFound(_) => Self::NotFound("Booking not found".into()),
            EngineError::ItemRejected { item, error } => {
                let inner = Self::from(*error);
                // A 503 is about the whole booking, not one item.
                if inner.status() == StatusCode::SERVICE_UNAVAILABLE {
                    return inner;
                }
                Self::Item {
                    item,
                    inner: Box::new(inner),
                }
            }
            EngineError::Forbidden => {
                Self::Forbidden("You may not act on another user's consultation")
            }
            EngineError::NotCancellable(_) => Self::NotCancellable,
            EngineError::NotReschedulable(_) => Self::NotReschedulable,
            EngineError::Overloaded => {
                Self::Unavailable("The service is busy; nothing was booked. Please retry.")
            }
            EngineError::Timeout => Self::Unavailable(
                "The request timed out. It may have completed: check your consultations before retrying.",
            ),
            EngineError::Storage(detail) => {
                tracing::error!(error = %detail, "storage failure answered 503");
                Self::Unavailable("Storage is unavailable; nothing was booked. Please retry.")
            }
            EngineError::Indeterminate(detail) => {
                tracing::error!(error = %detail, "storage write outcome unknown answered 503");
                Self::Unavailable(
                    "The connection to storage was lost while saving. It may have completed: check your consultations before retrying.",
                )
            }
            EngineError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "engine unavailable answered 503");
                Self::Unavailable("The service is unavailable; nothing was booked. Please retry.")
            }
            EngineError::NotOwner { owner } => Self::NotOwner { owner },
        }
    }
}

impl ApiError {
    /// The JSON body this error answers with.
    pub fn body(&self) -> ErrorBody {
        if let Self::Item { item, inner } = self {
            let mut body = inner.body();
            let errors = body.errors.get_or_insert_with(BTreeMap::new);
            if errors.is_empty() {
                errors.insert(format!("items[{item}]"), vec![body.message.clone()]);
            }
            body.item = Some(*item);
            return body;
        }
        let (message, errors) = match self {
            Self::Validation { message, errors } => (message.clone(), Some(errors.clone())),
            other => (other.to_string(), None),
        };
        let next_available = match self {
            Self::SlotTaken { next_available } => Some(next_available.clone()),
            _ => None,
        };
        ErrorBody {
            success: false,
            message,
            error: self.code().to_owned(),
            errors,
            item: None,
            next_available,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error answered 500");
        }
        let body = self.body();
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::NotOwner { owner } = self {
            response
                .extensions_mut()
                .insert(super::forward::NotOwner(owner));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        response
    }
}
