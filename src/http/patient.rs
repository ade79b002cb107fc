//! Patient endpoints: browse doctors, see availability, check or hold a slot, book, and
//! list, read, reschedule or cancel one's own consultations.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use consult_actors::{
    BookingRequest, ConsultMode, EncodedAvailability, EngineError, IdempotencyClaim, MedicalInfo,
    Rejection, Requester, StoredIdempotency,
};

use super::auth::PatientAuth;
use super::dto::*;
use super::encoded;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::idempotency::{self, fingerprint, Answer};
use super::AppState;

/// Approved doctors who are taking bookings.
#[utoipa::path(get, path = "/patient/doctors", tag = "patient", security(("bearer" = [])),
    responses((status = 200, body = DoctorsAnswer), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_doctors(
    State(state): State<AppState>,
    _patient: PatientAuth,
) -> Result<Json<DoctorsAnswer>, ApiError> {
    let doctors = state.engine.list_doctors().await?;
    Ok(Json(DoctorsAnswer {
        success: true,
        doctors: doctors
            .iter()
            .filter(|d| d.is_approved && d.is_available)
            .map(DoctorDto::from)
            .collect(),
    }))
}

/// A doctor's slots over local dates; 400 `doctor_unavailable` for a doctor not taking
/// bookings.
#[utoipa::path(get, path = "/patient/doctors/{id}/availability", tag = "patient", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Doctor id"), AvailabilityQuery),
    responses((status = 200, body = AvailabilityAnswer),
        (status = 400, body = ErrorBody, description = "validation_failed (`days` out of range, a bad `from`), or doctor_unavailable: the doctor is not taking bookings"),
        (status = 404, body = ErrorBody, description = "not_found: no such doctor")))]
pub async fn availability(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    ApiPath(doctor_id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<AvailabilityQuery>,
) -> Result<Response, ApiError> {
    let answer = availability_of(&state, doctor_id, query).await?;
    if !answer.bookable {
        return Err(ApiError::Rejected(Rejection::DoctorUnavailable));
    }
    let hold = state
        .engine
        .hold_of(doctor_id, patient_id)
        .map(super::holds::HoldDto::from);
    Ok(encoded::json_response(encoded::with_hold(
        answer.body,
        hold.as_ref(),
    )))
}

/// Availability for `query` as encoded JSON (without `your_hold`), defaulting `from` to
/// today in the doctor's timezone and `days` to 7. Shared with the doctor's own view.
pub(super) async fn availability_of(
    state: &AppState,
    doctor_id: i64,
    query: AvailabilityQuery,
) -> Result<EncodedAvailability, ApiError> {
    let days = query.days.unwrap_or(7);
    let max = state.engine.settings().max_availability_days;
    if days == 0 || days > max {
        return Err(ApiError::field("days", format!("must be 1 to {max}")));
    }
    let from = match query.from {
        Some(date) => date,
        None => {
            let tz = state.engine.doctor(doctor_id).await?.timezone;
            state.engine.now().with_timezone(&tz).date_naive()
        }
    };
    Ok(state
        .engine
        .availability_encoded(doctor_id, from, days, encoded::encode)
        .await?)
}

/// Runs the booking checks for a slot; with `hold: true` also reserves it for this
/// patient (booking consumes the hold).
#[utoipa::path(post, path = "/patient/doctors/check-slot", tag = "patient", security(("bearer" = [])),
    request_body = CheckSlotRequest,
    responses((status = 200, body = CheckSlotAnswer),
        (status = 400, body = ErrorBody, description = "validation_failed, or a booking rule: doctor_unavailable, day_unavailable, outside_availability, off_slot_grid, in_past, outside_booking_window, day_full"),
        (status = 404, body = ErrorBody, description = "not_found: no such doctor"),
        (status = 409, body = ErrorBody, description = "time_slot_conflict, with `next_available`")))]
pub async fn check_slot(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    ApiJson(req): ApiJson<CheckSlotRequest>,
) -> Result<Json<CheckSlotAnswer>, ApiError> {
    let at = req.scheduled_at.with_timezone(&Utc);
    let check = match state
        .engine
        .check_slot(req.doctor_id, patient_id, at, req.hold)
        .await
    {
        Ok(check) => check,
        Err(e) => {
            return Err(with_next_available(&state, req.doctor_id, patient_id, at, e.into()).await)
        }
    };
    Ok(Json(CheckSlotAnswer {
        success: true,
        available: true,
        held_until: check.held_until,
    }))
}

/// Books a slot. 201 only once the booking is durable. With an `Idempotency-Key` header,
/// a repeat from the same patient answers the first answer instead of booking again, also
/// after a crash (the key is stored with the booking, in its transaction).
#[utoipa::path(post, path = "/patient/doctors/book", tag = "patient", security(("bearer" = [])),
    request_body = BookRequest,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "1 to 255 visible ASCII characters; repeats from the same patient answer the first answer (kept 24 h, also across restarts)")),
    responses((status = 201, body = ConsultationAnswer),
        (status = 400, body = ErrorBody, description = "validation_failed, or a booking rule: doctor_unavailable, day_unavailable, outside_availability, off_slot_grid, in_past, outside_booking_window, day_full"),
        (status = 404, body = ErrorBody, description = "not_found: no such doctor"),
        (status = 409, body = ErrorBody, description = "time_slot_conflict, with `next_available`"),
        (status = 422, body = ErrorBody, description = "idempotency_key_reused: the key was used for a different request"),
        (status = 503, body = ErrorBody, description = "overloaded or storage down; nothing was booked")))]
pub async fn book(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    headers: HeaderMap,
    ApiJson(req): ApiJson<BookRequest>,
) -> Result<Response, ApiError> {
    let Some(key) = idempotency::key_of(&headers)? else {
        let consultation = book_once(&state, patient_id, req, None).await?;
        return Ok((
            StatusCode::CREATED,
            Json(ConsultationAnswer {
                success: true,
                consultation: consultation.into(),
            }),
        )
            .into_response());
    };
    // The whole body: the same instant in another offset is the same request.
    let fp = fingerprint(
        "book",
        &(
            req.doctor_id,
            req.scheduled_at.timestamp_micros(),
            &req.consult_mode,
            [
                &req.reason,
                &req.symptoms,
                &req.medical_history,
                &req.allergies,
                &req.current_medications,
            ],
        ),
    );
    let answer = state
        .idempotency
        .answer(patient_id, "book", &key, &fp, async {
            // Memory does not know the key: the store does if it booked before a restart.
            if let Some(stored) = state.engine.find_idempotency(patient_id, &key).await? {
                return replay(&state, patient_id, stored, StatusCode::CREATED).await;
            }
            let claim = state.engine.idempotency_claim(patient_id, &key, fp.clone());
            let result = book_once(&state, patient_id, req, Some(claim)).await;
            settle(&state, &fp, StatusCode::CREATED, result)
        })
        .await?;
    Ok((answer.status, Json(answer.body.clone())).into_response())
}

/// The answer to keep for a first attempt under a key; `Err` for the answers that must
/// not be kept (a retry with the same key must try again).
fn settle(
    state: &AppState,
    fp: &str,
    ok: StatusCode,
    result: Result<consult_actors::Consultation, ApiError>,
) -> Result<Answer, ApiError> {
    let (status, body) = match result {
        Ok(c) => (
            ok,
            serde_json::to_value(ConsultationAnswer {
                success: true,
                consultation: c.into(),
            }),
        ),
        Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => return Err(e),
        Err(e) => (e.status(), serde_json::to_value(e.body())),
    };
    Ok(Answer {
        request_fingerprint: fp.to_owned(),
        status,
        body: body.map_err(|e| ApiError::Internal(e.to_string()))?,
        kept_for: Duration::from_secs(u64::from(state.engine.settings().idempotency_ttl_s)),
    })
}

/// The first answer of a key the store knows, rebuilt from its consultation as stored now
/// (same shape; `status`, `scheduled_at` and `session_status` show the current state).
async fn replay(
    state: &AppState,
    patient_id: i64,
    stored: StoredIdempotency,
    status: StatusCode,
) -> Result<Answer, ApiError> {
    let c = match state.engine.consultation(stored.consultation_id).await {
        Ok(c) if c.patient_id == patient_id => c,
        // Written in one transaction with its consultation, for this patient.
        Ok(_) | Err(EngineError::ConsultationNotFound(_)) => {
            return Err(ApiError::Internal(format!(
                "stored idempotency key names consultation {} it does not own",
                stored.consultation_id
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let kept_for = (stored.expires_at - state.engine.now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    Ok(Answer {
        request_fingerprint: stored.fingerprint,
        status,
        body: serde_json::to_value(ConsultationAnswer {
            success: true,
            consultation: c.into(),
        })
        .map_err(|e| ApiError::Internal(e.to_string()))?,
        kept_for,
    })
}

/// How many next free starts a 409 offers.
pub const NEXT_AVAILABLE_LIMIT: usize = 3;

/// A `time_slot_conflict` turned into the same 409 with `next_available`: up to three free
/// starts of the doctor after `at`, from the doctor actor's calendar. Any other error, or a
/// failure to find them (the 409 then goes out as the seed's), is returned as it is.
async fn with_next_available(
    state: &AppState,
    doctor_id: i64,
    patient_id: i64,
    at: chrono::DateTime<Utc>,
    error: ApiError,
) -> ApiError {
    if !matches!(error, ApiError::Rejected(Rejection::Conflict)) {
        return error;
    }
    match state
        .engine
        .next_available(doctor_id, patient_id, at, NEXT_AVAILABLE_LIMIT)
        .await
    {
        Ok(next_available) => ApiError::SlotTaken { next_available },
        Err(_) => error,
    }
}

/// One booking attempt, counted in the metrics by outcome.
async fn book_once(
    state: &AppState,
    patient_id: i64,
    req: BookRequest,
    idempotency: Option<IdempotencyClaim>,
) -> Result<consult_actors::Consultation, ApiError> {
    let started = Instant::now();
    let mode = ConsultMode::parse(&req.consult_mode).ok_or_else(|| {
        ApiError::field(
            "consult_mode",
            "must be one of voice, video, chat, whatsapp",
        )
    });
    let medical = MedicalInfo {
        reason: req.reason,
        symptoms: req.symptoms,
        medical_history: req.medical_history,
        allergies: req.allergies,
        current_medications: req.current_medications,
    };
    // Every field over its limit at once, so a form can mark them all.
    let over = medical.invalid_fields();
    let mode = mode.and_then(|m| {
        if over.is_empty() {
            Ok(m)
        } else {
            Err(ApiError::fields(over))
        }
    });
    let at = req.scheduled_at.with_timezone(&Utc);
    let result = match mode {
        Ok(mode) => state
            .engine
            .book_with(
                BookingRequest {
                    doctor_id: req.doctor_id,
                    patient_id,
                    scheduled_at: req.scheduled_at.with_timezone(&Utc),
                    mode,
                    medical,
                },
                idempotency,
            )
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let result = match result {
        Err(e) => Err(with_next_available(state, req.doctor_id, patient_id, at, e).await),
        ok => ok,
    };
    let outcome = match &result {
        Ok(_) => "booked",
        Err(ApiError::Rejected(Rejection::Conflict) | ApiError::SlotTaken { .. }) => "conflict",
        Err(ApiError::Rejected(_)) => "rejected",
        Err(ApiError::Unavailable(_)) => "unavailable",
        Err(ApiError::NotFound(_)) | Err(ApiError::Validation { .. }) => "invalid",
        Err(_) => "error",
    };
    state
        .metrics
        .booking(outcome, started.elapsed().as_secs_f64());
    result
}

/// The patient's consultations, newest first.
#[utoipa::path(get, path = "/patient/consultations", tag = "patient", security(("bearer" = [])),
    params(ListQuery), responses((status = 200, body = ConsultationsAnswer), (status = 401, body = ErrorBody)))]
pub async fn list_consultations(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ConsultationsAnswer>, ApiError> {
    let limit = list_limit(query.limit)?;
    let list = state
        .engine
        .patient_consultations(patient_id, limit)
        .await?;
    // Few distinct doctors per patient: one lookup each.
    let mut doctors = std::collections::HashMap::new();
    let mut consultations = Vec::with_capacity(list.len());
    for c in list {
        let doctor = match doctors.entry(c.doctor_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(state.engine.doctor(c.doctor_id).await.ok())
            }
        };
        let dto = ConsultationDto::from(c);
        consultations.push(match doctor {
            Some(d) => dto.with_doctor(d),
            None => dto,
        });
    }
    Ok(Json(ConsultationsAnswer {
        success: true,
        consultations,
    }))
}

/// One of the patient's consultations; 403 for another patient's.
#[utoipa::path(get, path = "/patient/consultations/{id}", tag = "patient", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Consultation id")),
    responses((status = 200, body = ConsultationAnswer), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_consultation(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ConsultationAnswer>, ApiError> {
    let c = state.engine.consultation(id).await?;
    if c.patient_id != patient_id {
        return Err(EngineError::Forbidden.into());
    }
    let doctor = state.engine.doctor(c.doctor_id).await.ok();
    let dto = ConsultationDto::from(c);
    Ok(Json(ConsultationAnswer {
        success: true,
        consultation: match &doctor {
            Some(d) => dto.with_doctor(d),
            None => dto,
        },
    }))
}

/// Cancels one of the patient's consultations, freeing its slot.
#[utoipa::path(post, path = "/patient/consultations/{id}/cancel", tag = "patient", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Consultation id")),
    responses((status = 200, body = ConsultationAnswer), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "not_cancellable")))]
pub async fn cancel_consultation(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ConsultationAnswer>, ApiError> {
    let c = state
        .engine
        .cancel(id, Requester::Patient(patient_id))
        .await?;
    Ok(Json(ConsultationAnswer {
        success: true,
        consultation: c.into(),
    }))
}

/// Moves one of the patient's consultations to another start with the same doctor: one
/// decision by the doctor's actor and one journal record, so the new slot is taken and the
/// old one freed together. The booking rules apply to the new start; any refusal leaves the
/// consultation where it was. Same id, reference, mode and session; both sides are notified.
#[utoipa::path(post, path = "/patient/consultations/{id}/reschedule", tag = "patient", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Consultation id"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "1 to 255 visible ASCII characters; a repeat of the same move from the same patient answers the first 200 (kept 24 h, also across restarts)")),
    request_body = RescheduleRequest,
    responses((status = 200, body = ConsultationAnswer, description = "the consultation at its new time, once durable"),
        (status = 400, body = ErrorBody, description = "validation_failed (also: `scheduled_at` is the consultation's current time), doctor_unavailable, day_unavailable, outside_availability, off_slot_grid, in_past"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "not a patient, or another patient's consultation"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "time_slot_conflict (the consultation stays where it was), or not_reschedulable"),
        (status = 422, body = ErrorBody, description = "idempotency_key_reused: the key was used for a different request"),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "overloaded or storage down; nothing was moved")))]
pub async fn reschedule_consultation(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<RescheduleRequest>,
) -> Result<Response, ApiError> {
    let to = req.scheduled_at.with_timezone(&Utc);
    let by = Requester::Patient(patient_id);
    let Some(key) = idempotency::key_of(&headers)? else {
        let c = match state.engine.reschedule(id, by, to).await {
            Ok(c) => c,
            Err(e) => return Err(reschedule_error(&state, id, patient_id, to, e).await),
        };
        return Ok(Json(ConsultationAnswer {
            success: true,
            consultation: c.into(),
        })
        .into_response());
    };
    let fp = fingerprint("reschedule", &(id, to.timestamp_micros()));
    let answer = state
        .idempotency
        .answer(patient_id, "reschedule", &key, &fp, async {
            if let Some(stored) = state.engine.find_idempotency(patient_id, &key).await? {
                return replay(&state, patient_id, stored, StatusCode::OK).await;
            }
            let claim = state.engine.idempotency_claim(patient_id, &key, fp.clone());
            let result = match state.engine.reschedule_with(id, by, to, Some(claim)).await {
                Ok(c) => Ok(c),
                Err(e) => Err(reschedule_error(&state, id, patient_id, to, e).await),
            };
            settle(&state, &fp, StatusCode::OK, result)
        })
        .await?;
    Ok((answer.status, Json(answer.body.clone())).into_response())
}

/// A reschedule's error; a conflict offers the doctor's next free starts after `to`.
async fn reschedule_error(
    state: &AppState,
    id: i64,
    patient_id: i64,
    to: chrono::DateTime<Utc>,
    error: EngineError,
) -> ApiError {
    let error = ApiError::from(error);
    if !matches!(error, ApiError::Rejected(Rejection::Conflict)) {
        return error;
    }
    match state.engine.consultation(id).await {
        Ok(c) => with_next_available(state, c.doctor_id, patient_id, to, error).await,
        Err(_) => error,
    }
}

/// One of the patient's consultations as an RFC 5545 calendar file: the time in UTC, the
/// doctor's timezone and local time named in the description, no medical text.
#[utoipa::path(get, path = "/patient/consultations/{id}/calendar.ics", tag = "patient", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Consultation id")),
    responses((status = 200, content_type = "text/calendar", body = String),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn calendar_ics(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    use icalendar::{Calendar, Component, EventLike, EventStatus};
    let c = state.engine.consultation(id).await?;
    if c.patient_id != patient_id {
        return Err(EngineError::Forbidden.into());
    }
    let doctor = state.engine.doctor(c.doctor_id).await?;
    let end = c.scheduled_at + chrono::Duration::minutes(i64::from(c.duration_minutes));
    let local = c.scheduled_at.with_timezone(&doctor.timezone);
    let mode = c.consultation_mode.as_str();
    let how = if c.consultation_mode.needs_session() {
        "in the Consult Scheduler app"
    } else {
        "by WhatsApp"
    };
    let description = format!(
        "{mode} consultation {reference} with {name} ({specialty}), {how}. \
         Doctor's time: {local} ({tz}).",
        mode = capitalised(mode),
        reference = c.reference,
        name = doctor.name,
        specialty = doctor.specialty,
        local = local.format("%Y-%m-%d %H:%M"),
        tz = doctor.timezone.name(),
    );
    let event = icalendar::Event::new()
        .uid(&format!("{}@consult-scheduler", c.reference))
        .summary(&format!(
            "{} consultation with {}",
            capitalised(mode),
            doctor.name
        ))
        .description(&description)
        .starts(c.scheduled_at)
        .ends(end)
        .status(
            if c.status == consult_actors::ConsultationStatus::Cancelled {
                EventStatus::Cancelled
            } else {
                EventStatus::Confirmed
            },
        )
        .done();
    let body = Calendar::new()
        .name("Consult Scheduler")
        .push(event)
        .done()
        .to_string();
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.ics\"", c.reference),
            ),
        ],
        body,
    )
        .into_response())
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Default and bound of list endpoints.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
pub const MAX_LIST_LIMIT: u32 = 500;

pub(super) fn list_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_LIST_LIMIT) {
        l @ 1..=MAX_LIST_LIMIT => Ok(l),
        _ => Err(ApiError::field(
            "limit",
            format!("must be 1 to {MAX_LIST_LIMIT}"),
        )),
    }
}
