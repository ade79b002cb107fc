//! Multi-patient bookings (the seed's `BookingService`): one booker books 1 to 10
//! consultations at once, for themselves and family members, with one or several doctors.
//! All or nothing: the engine books every item durably in one store transaction, or none.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use consult_actors::{
    BookingItem, ConsultMode, EngineError, MedicalInfo, MultiBooking, MultiBookingRequest,
    StoredIdempotency, MAX_BOOKING_ITEMS, MAX_PATIENT_NAME_CHARS, MAX_RELATION_CHARS,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::PatientAuth;
use super::dto::ConsultationDto;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::idempotency::{self, fingerprint, Answer};
use super::AppState;

/// One consultation of a multi-patient booking.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingItemRequest {
    pub doctor_id: i64,
    /// RFC 3339, any offset.
    pub scheduled_at: DateTime<chrono::FixedOffset>,
    /// `voice` | `video` | `chat` | `whatsapp`
    #[schema(value_type = super::schema::ConsultMode, example = "video")]
    pub consult_mode: String,
    /// Who the consultation is for: 1 to 200 characters after trimming white space; no
    /// control character.
    #[schema(
        example = "Ada Okafor",
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub patient_name: String,
    /// The booker's relation to them, e.g. `self`, `child`, `parent`: 1 to 50 characters,
    /// not blank; no control character.
    #[schema(
        example = "child",
        min_length = 1,
        max_length = 50,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub relation: Option<String>,
    /// At most 500 characters; no control character but tab, line feed, carriage return.
    #[schema(
        max_length = 500,
        pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$"
    )]
    pub reason: Option<String>,
    /// At most 2000 characters; no control character but tab, line feed, carriage return.
    #[schema(
        max_length = 2000,
        pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$"
    )]
    pub symptoms: Option<String>,
    /// At most 4000 characters; no control character but tab, line feed, carriage return.
    #[schema(
        max_length = 4000,
        pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$"
    )]
    pub medical_history: Option<String>,
    /// At most 1000 characters; no control character but tab, line feed, carriage return.
    #[schema(
        max_length = 1000,
        pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$"
    )]
    pub allergies: Option<String>,
    /// At most 1000 characters; no control character but tab, line feed, carriage return.
    #[schema(
        max_length = 1000,
        pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$"
    )]
    pub current_medications: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiBookRequest {
    /// 1 to 10 items.
    #[schema(min_items = 1, max_items = 10)]
    pub items: Vec<BookingItemRequest>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BookingDto {
    /// The booking's id (the id of its first consultation).
    pub id: i64,
    /// In item order; each carries `booking_id`, `patient_name` and `relation`.
    pub consultations: Vec<ConsultationDto>,
}

impl From<MultiBooking> for BookingDto {
    fn from(b: MultiBooking) -> Self {
        Self {
            id: b.id,
            consultations: b.consultations.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BookingAnswer {
    pub success: bool,
    pub booking: BookingDto,
}

/// Books every item or none (201 only once all are durable, in one transaction). A
/// conflict answers 409 with the seed's three fields plus `item` (the first conflicting
/// item) and `errors: {"items[i]": [...]}`; items of one doctor that overlap each other
/// are a 400 naming both. `Idempotency-Key` as for single bookings.
#[utoipa::path(post, path = "/patient/bookings", tag = "patient", security(("bearer" = [])),
    request_body = MultiBookRequest,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "1 to 255 visible ASCII characters; repeats from the same patient answer the first answer (kept 24 h, also across restarts)")),
    responses((status = 201, body = BookingAnswer),
        (status = 400, body = ErrorBody, description = "validation_failed (also: two items of one doctor overlap), or a booking rule of one item, with `item`: doctor_unavailable, day_unavailable, outside_availability, off_slot_grid, in_past, outside_booking_window, day_full"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "an item names an unknown doctor"),
        (status = 409, body = ErrorBody, description = "time_slot_conflict, with `item` and `errors`; nothing was booked"),
        (status = 422, body = ErrorBody, description = "idempotency_key_reused"),
        (status = 503, body = ErrorBody, description = "overloaded or storage down; nothing was booked")))]
pub async fn book_many(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    headers: HeaderMap,
    ApiJson(req): ApiJson<MultiBookRequest>,
) -> Result<Response, ApiError> {
    let request = parse(patient_id, &req)?;
    let Some(key) = idempotency::key_of(&headers)? else {
        let booking = book_once(&state, request, None).await?;
        return Ok(created(booking).into_response());
    };
    // The whole body, instants normalised: the same instant in another offset is the same
    // request.
    let fp = fingerprint(
        "bookings",
        &req.items
            .iter()
            .map(|i| {
                (
                    i.doctor_id,
                    i.scheduled_at.timestamp_micros(),
                    &i.consult_mode,
                    &i.patient_name,
                    &i.relation,
                    [
                        &i.reason,
                        &i.symptoms,
                        &i.medical_history,
                        &i.allergies,
                        &i.current_medications,
                    ],
                )
            })
            .collect::<Vec<_>>(),
    );
    let answer = state
        .idempotency
        .answer(patient_id, "bookings", &key, &fp, async {
            if let Some(stored) = state.engine.find_idempotency(patient_id, &key).await? {
                return replay(&state, patient_id, stored).await;
            }
            let claim = state.engine.idempotency_claim(patient_id, &key, fp.clone());
            let (status, body) = match book_once(&state, request, Some(claim)).await {
                Ok(booking) => (StatusCode::CREATED, to_json(answer_of(booking))?),
                Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => return Err(e),
                Err(e) => (e.status(), to_json(e.body())?),
            };
            Ok(Answer {
                request_fingerprint: fp.clone(),
                status,
                body,
                kept_for: kept_for(&state),
            })
        })
        .await?;
    Ok((answer.status, Json(answer.body.clone())).into_response())
}

/// One multi-patient booking of its booker; 403 for anyone else's, 404 for none.
#[utoipa::path(get, path = "/patient/bookings/{id}", tag = "patient", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Booking id")),
    responses((status = 200, body = BookingAnswer), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get_booking(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<BookingAnswer>, ApiError> {
    let booking = state
        .engine
        .booking(id, patient_id)
        .await
        .map_err(|e| match e {
            EngineError::Forbidden => ApiError::Forbidden("You may not see another user's booking"),
            other => other.into(),
        })?;
    Ok(Json(answer_of(booking)))
}

/// The request as the engine takes it; every ill-formed field at once, named
/// `items[i].field`.
fn parse(patient_id: i64, req: &MultiBookRequest) -> Result<MultiBookingRequest, ApiError> {
    if req.items.is_empty() || req.items.len() > MAX_BOOKING_ITEMS {
        return Err(ApiError::field(
            "items",
            format!("must hold 1 to {MAX_BOOKING_ITEMS} items"),
        ));
    }
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut items = Vec::with_capacity(req.items.len());
    for (i, item) in req.items.iter().enumerate() {
        let mode = ConsultMode::parse(&item.consult_mode);
        if mode.is_none() {
            failures.push((
                format!("items[{i}].consult_mode"),
                "must be one of voice, video, chat, whatsapp".into(),
            ));
        }
        let name = item.patient_name.trim();
        if name.is_empty() || name.chars().count() > MAX_PATIENT_NAME_CHARS {
            failures.push((
                format!("items[{i}].patient_name"),
                format!("must be 1 to {MAX_PATIENT_NAME_CHARS} characters"),
            ));
        }
        let relation = item.relation.as_deref().map(str::trim);
        if relation.is_some_and(|r| r.is_empty() || r.chars().count() > MAX_RELATION_CHARS) {
            failures.push((
                format!("items[{i}].relation"),
                format!("must be 1 to {MAX_RELATION_CHARS} characters"),
            ));
        }
        let medical = MedicalInfo {
            reason: item.reason.clone(),
            symptoms: item.symptoms.clone(),
            medical_history: item.medical_history.clone(),
            allergies: item.allergies.clone(),
            current_medications: item.current_medications.clone(),
        };
        for (field, reason) in medical.invalid_fields() {
            failures.push((format!("items[{i}].{field}"), reason));
        }
        if let Some(mode) = mode {
            items.push(BookingItem {
                doctor_id: item.doctor_id,
                scheduled_at: item.scheduled_at.with_timezone(&Utc),
                mode,
                patient_name: name.to_owned(),
                relation: relation.map(str::to_owned),
                medical,
            });
        }
    }
    if !failures.is_empty() {
        return Err(ApiError::fields(
            failures
                .iter()
                .map(|(f, r)| (f.as_str(), r.clone()))
                .collect(),
        ));
    }
    Ok(MultiBookingRequest { patient_id, items })
}

/// One attempt, counted in the booking metrics by outcome.
async fn book_once(
    state: &AppState,
    request: MultiBookingRequest,
    idempotency: Option<consult_actors::IdempotencyClaim>,
) -> Result<MultiBooking, ApiError> {
    let started = Instant::now();
    let result = state
        .engine
        .book_many(request, idempotency)
        .await
        .map_err(ApiError::from);
    let outcome = match &result {
        Ok(_) => "booked",
        Err(e) if e.status() == StatusCode::CONFLICT => "conflict",
        Err(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        Err(e) if e.status().is_client_error() => "rejected",
        Err(_) => "error",
    };
    state
        .metrics
        .booking(outcome, started.elapsed().as_secs_f64());
    result
}

/// The first answer of a key the store knows, rebuilt from the booking as stored now.
async fn replay(
    state: &AppState,
    patient_id: i64,
    stored: StoredIdempotency,
) -> Result<Answer, ApiError> {
    let first = state.engine.consultation(stored.consultation_id).await;
    let booking_id = match first {
        Ok(c) if c.patient_id == patient_id => c.member.map(|m| m.booking_id),
        Ok(_) | Err(EngineError::ConsultationNotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    // A key used for a single booking meets this endpoint's other fingerprint (422).
    let Some(booking_id) = booking_id else {
        return Ok(Answer {
            request_fingerprint: stored.fingerprint,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: to_json(ApiError::IdempotencyKeyReused.body())?,
            kept_for: kept_for(state),
        });
    };
    let booking = state.engine.booking(booking_id, patient_id).await?;
    Ok(Answer {
        request_fingerprint: stored.fingerprint,
        status: StatusCode::CREATED,
        body: to_json(answer_of(booking))?,
        kept_for: (stored.expires_at - state.engine.now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    })
}

fn answer_of(booking: MultiBooking) -> BookingAnswer {
    BookingAnswer {
        success: true,
        booking: booking.into(),
    }
}

fn created(booking: MultiBooking) -> (StatusCode, Json<BookingAnswer>) {
    (StatusCode::CREATED, Json(answer_of(booking)))
}

fn kept_for(state: &AppState) -> Duration {
    Duration::from_secs(u64::from(state.engine.settings().idempotency_ttl_s))
}

fn to_json(value: impl Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Internal(e.to_string()))
}
