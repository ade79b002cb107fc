//! Admin endpoints: register doctors, approve them, list all of them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use consult_actors::calendar::{LocalTime, WeeklySchedule};
use consult_actors::{NewDoctor, Requester, StatusUpdate, DEFAULT_SLOT_MINUTES};

use super::auth::AdminAuth;
use super::dto::*;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::AppState;

/// Registers a doctor, not yet approved.
#[utoipa::path(post, path = "/admin/doctors", tag = "admin", security(("bearer" = [])),
    request_body = NewDoctorRequest,
    responses((status = 201, body = DoctorAnswer),
        (status = 400, body = ErrorBody, description = "validation_failed: a bad name, specialty, timezone, schedule or slot length"),
        (status = 403, body = ErrorBody)))]
pub async fn create_doctor(
    State(state): State<AppState>,
    _admin: AdminAuth,
    ApiJson(req): ApiJson<NewDoctorRequest>,
) -> Result<(StatusCode, Json<DoctorAnswer>), ApiError> {
    let schedule = match &req.availability_schedule {
        Some(s) => s.parse()?,
        None => WeeklySchedule::weekdays(LocalTime::hm(9, 0), LocalTime::hm(17, 0)),
    };
    let profile = state
        .engine
        .create_doctor(NewDoctor {
            name: req.name,
            specialty: req.specialty,
            timezone: parse_timezone("timezone", &req.timezone)?,
            slot_minutes: req.slot_minutes.unwrap_or(DEFAULT_SLOT_MINUTES),
            schedule,
            is_available: req.is_available.unwrap_or(true),
            is_approved: false,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(DoctorAnswer {
            success: true,
            doctor: (&profile).into(),
        }),
    ))
}

/// Approves a doctor for booking.
#[utoipa::path(post, path = "/admin/doctors/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Doctor id")),
    responses((status = 200, body = DoctorAnswer), (status = 404, body = ErrorBody)))]
pub async fn approve_doctor(
    State(state): State<AppState>,
    _admin: AdminAuth,
    ApiPath(doctor_id): ApiPath<i64>,
) -> Result<Json<DoctorAnswer>, ApiError> {
    let profile = state
        .engine
        .set_status_by(
            doctor_id,
            StatusUpdate {
                is_available: None,
                is_approved: Some(true),
            },
            Requester::Admin,
        )
        .await?;
    Ok(Json(DoctorAnswer {
        success: true,
        doctor: (&profile).into(),
    }))
}

/// Every doctor, approved or not.
#[utoipa::path(get, path = "/admin/doctors", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = DoctorsAnswer), (status = 403, body = ErrorBody)))]
pub async fn list_doctors(
    State(state): State<AppState>,
    _admin: AdminAuth,
) -> Result<Json<DoctorsAnswer>, ApiError> {
    let doctors = state.engine.list_doctors().await?;
    Ok(Json(DoctorsAnswer {
        success: true,
        doctors: doctors.iter().map(DoctorDto::from).collect(),
    }))
}
