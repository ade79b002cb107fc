//! The caller's own in-app sessions and notifications: join details of a consultation's
//! session (patient or doctor of that consultation only) and the notification inbox.

use axum::extract::State;
use axum::Json;
use consult_actors::outbox::{InboxQuery, Recipient};
use consult_actors::Requester;

use super::auth::{AuthUser, DoctorAuth, PatientAuth, Role};
use super::dto::*;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::AppState;

/// Default page size of the inbox.
const DEFAULT_INBOX_LIMIT: u32 = 50;

/// The patient's join details for their consultation's session (`session` once ready).
#[utoipa::path(get, path = "/patient/consultations/{id}/session", tag = "patient", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Consultation id")),
    responses((status = 200, body = SessionAnswer), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn patient_session(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SessionAnswer>, ApiError> {
    let view = state
        .engine
        .session_join(id, Requester::Patient(patient_id))
        .await?;
    Ok(Json(view.into()))
}

/// The doctor's join details (moderator for video) for their consultation's session.
#[utoipa::path(get, path = "/doctor/consultations/{id}/session", tag = "doctor", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Consultation id")),
    responses((status = 200, body = SessionAnswer), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn doctor_session(
    State(state): State<AppState>,
    DoctorAuth(doctor_id): DoctorAuth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SessionAnswer>, ApiError> {
    let view = state
        .engine
        .session_join(id, Requester::Doctor(doctor_id))
        .await?;
    Ok(Json(view.into()))
}

fn recipient(user: &AuthUser) -> Result<Recipient, ApiError> {
    match user.role {
        Role::Patient => Ok(Recipient::patient(user.id)),
        Role::Doctor => Ok(Recipient::doctor(user.id)),
        Role::Admin => Err(ApiError::Forbidden(
            "Only patients and doctors have a notification inbox",
        )),
    }
}

/// The caller's notifications, newest first, a page at a time.
#[utoipa::path(get, path = "/notifications", tag = "notifications", security(("bearer" = [])),
    params(InboxParams),
    responses((status = 200, body = InboxAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_notifications(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<InboxParams>,
) -> Result<Json<InboxAnswer>, ApiError> {
    let recipient = recipient(&user)?;
    let limit = params.limit.unwrap_or(DEFAULT_INBOX_LIMIT);
    if !(1..=consult_actors::MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("must be 1..={}", consult_actors::MAX_LIST_LIMIT),
        ));
    }
    let page = state
        .engine
        .notifications(InboxQuery {
            recipient,
            before_id: params.before,
            limit,
            unread_only: params.unread_only.unwrap_or(false),
        })
        .await?;
    let next_before = (page.len() == limit as usize)
        .then(|| page.last().map(|n| n.id))
        .flatten();
    Ok(Json(InboxAnswer {
        success: true,
        notifications: page.into_iter().map(NotificationDto::from).collect(),
        next_before,
    }))
}

/// Marks some of the caller's notifications read.
#[utoipa::path(post, path = "/notifications/read", tag = "notifications", security(("bearer" = [])),
    request_body = MarkReadRequest,
    responses((status = 200, body = MarkReadAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn mark_read(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<MarkReadRequest>,
) -> Result<Json<MarkReadAnswer>, ApiError> {
    let recipient = recipient(&user)?;
    let updated = state
        .engine
        .mark_notifications_read(recipient, &body.ids)
        .await?;
    Ok(Json(MarkReadAnswer {
        success: true,
        updated,
    }))
}
