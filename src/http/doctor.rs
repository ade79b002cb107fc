//! Doctor endpoints: a doctor reads and changes their own schedule and status and lists
//! their own consultations. The doctor's id is the token's `sub`.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use consult_actors::calendar::schedule_covers;
use consult_actors::{Requester, ScheduleUpdate, StatusUpdate};

use super::auth::DoctorAuth;
use super::dto::*;
use super::encoded;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery};
use super::patient::{availability_of, list_limit};
use super::AppState;

/// Longest range of `GET /doctor/consultations`.
pub const MAX_CONSULTATION_RANGE_DAYS: i64 = 366;

/// The doctor's own record: name, specialty, timezone, schedule, approval and status.
#[utoipa::path(get, path = "/doctor/profile", tag = "doctor", security(("bearer" = [])),
    responses((status = 200, body = DoctorAnswer), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_profile(
    State(state): State<AppState>,
    DoctorAuth(doctor_id): DoctorAuth,
) -> Result<Json<DoctorAnswer>, ApiError> {
    let profile = state.engine.doctor(doctor_id).await?;
    Ok(Json(DoctorAnswer {
        success: true,
        doctor: (&profile).into(),
    }))
}

/// The doctor's own slots (whatever their approval or status).
#[utoipa::path(get, path = "/doctor/availability", tag = "doctor", security(("bearer" = [])),
    params(AvailabilityQuery),
    responses((status = 200, body = AvailabilityAnswer), (status = 404, body = ErrorBody)))]
pub async fn get_availability(
    State(state): State<AppState>,
    DoctorAuth(doctor_id): DoctorAuth,
    ApiQuery(query): ApiQuery<AvailabilityQuery>,
) -> Result<Response, ApiError> {
    let answer = availability_of(&state, doctor_id, query).await?;
    Ok(encoded::json_response(answer.body))
}

/// Replaces the weekly windows (with their breaks); optionally the timezone, slot length,
/// date overrides and booking policy. Existing consultations are kept, even those the new
/// schedule leaves outside (the consultation list flags them `outside_schedule`).
#[utoipa::path(put, path = "/doctor/availability", tag = "doctor", security(("bearer" = [])),
    request_body = ScheduleRequest,
    responses((status = 200, body = DoctorAnswer),
        (status = 400, body = ErrorBody, description = "validation_failed: a bad time, window, break, date override, policy bound, timezone or slot length (one that does not fit a window)"),
        (status = 404, body = ErrorBody, description = "not_found: the token's doctor does not exist")))]
pub async fn put_availability(
    State(state): State<AppState>,
    DoctorAuth(doctor_id): DoctorAuth,
    ApiJson(req): ApiJson<ScheduleRequest>,
) -> Result<Json<DoctorAnswer>, ApiError> {
    let timezone = req
        .timezone
        .as_deref()
        .map(|tz| parse_timezone("timezone", tz))
        .transpose()?;
    let update = ScheduleUpdate {
        timezone,
        slot_minutes: req.slot_minutes,
        schedule: req.availability_schedule.parse()?,
        date_overrides: req
            .date_overrides
            .as_ref()
            .map(parse_overrides)
            .transpose()?,
        policy: req.policy.as_ref().map(Into::into),
    };
    let profile = state.engine.update_schedule(doctor_id, update).await?;
    Ok(Json(DoctorAnswer {
        success: true,
        doctor: (&profile).into(),
    }))
}

/// Switches the doctor's availability for new bookings on or off.
#[utoipa::path(patch, path = "/doctor/status", tag = "doctor", security(("bearer" = [])),
    request_body = StatusRequest,
    responses((status = 200, body = DoctorAnswer), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn patch_status(
    State(state): State<AppState>,
    DoctorAuth(doctor_id): DoctorAuth,
    ApiJson(req): ApiJson<StatusRequest>,
) -> Result<Json<DoctorAnswer>, ApiError> {
    let profile = state
        .engine
        .set_status_by(
            doctor_id,
            StatusUpdate {
                is_available: Some(req.is_available),
                is_approved: None,
            },
            Requester::Doctor(doctor_id),
        )
        .await?;
    Ok(Json(DoctorAnswer {
        success: true,
        doctor: (&profile).into(),
    }))
}

/// The doctor's consultations starting in `[from, to)`, oldest first.
#[utoipa::path(get, path = "/doctor/consultations", tag = "doctor", security(("bearer" = [])),
    params(DoctorConsultationsQuery),
    responses((status = 200, body = ConsultationsAnswer),
        (status = 400, body = ErrorBody, description = "validation_failed: a bad `from`, `to` or `limit`; `to` not after `from`; a range over 366 days"),
        (status = 404, body = ErrorBody, description = "not_found: the token's doctor does not exist")))]
pub async fn list_consultations(
    State(state): State<AppState>,
    DoctorAuth(doctor_id): DoctorAuth,
    ApiQuery(query): ApiQuery<DoctorConsultationsQuery>,
) -> Result<Json<ConsultationsAnswer>, ApiError> {
    let limit = list_limit(query.limit)?;
    let profile = state.engine.doctor(doctor_id).await?;
    let tz = profile.timezone;
    let from = match query.from.as_deref() {
        Some(s) => parse_instant("from", s, tz)?,
        None => local_midnight(state.engine.now().with_timezone(&tz).date_naive(), tz),
    };
    let to = match query.to.as_deref() {
        Some(s) => parse_instant("to", s, tz)?,
        None => from + Duration::days(30),
    };
    if to <= from {
        return Err(ApiError::field("to", "must be after from"));
    }
    if to - from > Duration::days(MAX_CONSULTATION_RANGE_DAYS) {
        return Err(ApiError::field(
            "to",
            format!("the range may span at most {MAX_CONSULTATION_RANGE_DAYS} days"),
        ));
    }
    let list = state
        .engine
        .doctor_consultations(doctor_id, from, to, limit)
        .await?;
    let consultations = list
        .into_iter()
        .map(|c| {
            let outside = c.status.is_active()
                && !schedule_covers(&profile, c.scheduled_at, c.duration_minutes);
            ConsultationDto {
                outside_schedule: Some(outside),
                ..c.into()
            }
        })
        .collect();
    Ok(Json(ConsultationsAnswer {
        success: true,
        consultations,
    }))
}

/// RFC 3339, or a date meaning midnight in the doctor's timezone.
fn parse_instant(field: &str, s: &str, tz: Tz) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| local_midnight(d, tz))
        .map_err(|_| ApiError::field(field, "must be RFC 3339 or YYYY-MM-DD"))
}

/// The first instant of `date` in `tz` (midnight, or the end of a DST gap at midnight).
fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    use chrono::TimeZone;
    let mut t = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    for _ in 0..4 {
        if let Some(local) = tz.from_local_datetime(&t).earliest() {
            return local.with_timezone(&Utc);
        }
        t += Duration::minutes(30);
    }
    t.and_utc()
}
