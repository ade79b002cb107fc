//! A slot's history: why a slot is (un)available. The doctor reads their own slots, an
//! admin any doctor's. The answer is built from the doctor's journal (bounded) and the
//! doctor's calendar; it never carries medical text, and the doctor's view no patient id.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use consult_actors::calendar::{SlotEvent, SlotHistory, SlotState};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{AdminAuth, DoctorAuth};
use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use super::AppState;

/// One journal event that touched the slot.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotEventDto {
    /// The doctor's journal sequence number.
    pub seq: u64,
    /// `registered` | `booked` | `cancelled` | `rescheduled_in` | `rescheduled_out` |
    /// `schedule_updated` | `status_changed`
    #[schema(value_type = super::schema::SlotEventKind, example = "booked")]
    pub kind: String,
    /// When the journal recorded it.
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consultation_id: Option<i64>,
    /// The consultation's patient: in the admin's view only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<i64>,
    /// `patient` | `doctor` | `admin` | `system`; null when the journal did not record it
    /// (cancellations and status changes written before it did).
    #[schema(value_type = Option<super::schema::Actor>, example = "patient")]
    pub by: Option<String>,
    /// For reschedules: the start the consultation left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// For reschedules: the start it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
}

impl SlotEventDto {
    fn new(e: SlotEvent, with_patient: bool) -> Self {
        Self {
            seq: e.seq,
            kind: e.kind.as_str().to_owned(),
            at: e.at,
            consultation_id: e.consultation_id,
            patient_id: e.patient_id.filter(|_| with_patient),
            by: e.by.map(|b| b.as_str().to_owned()),
            from: e.from,
            to: e.to,
        }
    }
}

/// The slot as it stands now.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotNowDto {
    /// `available` | `booked` | `held` | `past` | `unavailable`
    #[schema(value_type = super::schema::SlotNowStatus, example = "booked")]
    pub status: String,
    /// The first booking rule (in the seed's order) that refuses the slot now, as its
    /// error code (`doctor_unavailable`, `day_unavailable`, `outside_availability`,
    /// `off_slot_grid`, `in_past`, `time_slot_conflict`); null when it is bookable.
    #[schema(value_type = Option<super::schema::RuleCode>, example = "time_slot_conflict")]
    pub rule: Option<String>,
    /// When the live hold on the slot ends (the holder is not named).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_until: Option<DateTime<Utc>>,
    /// The active consultation on the slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consultation_id: Option<i64>,
}

impl From<SlotState> for SlotNowDto {
    fn from(s: SlotState) -> Self {
        Self {
            status: s.status.as_str().to_owned(),
            rule: s.rule.map(|r| r.code().to_owned()),
            held_until: s.held_until,
            consultation_id: s.consultation_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SlotHistoryAnswer {
    pub success: bool,
    pub doctor_id: i64,
    /// The slot's start (UTC).
    pub start: DateTime<Utc>,
    /// The slot's length: the doctor's current slot length.
    pub slot_minutes: u16,
    /// Oldest first: bookings, cancellations and moves of consultations on the slot, and
    /// the schedule and status changes (which touch every slot).
    pub events: Vec<SlotEventDto>,
    /// True when older events were left out: only the doctor's latest 10,000 journal events
    /// are read, and at most the latest 500 events are answered.
    pub truncated: bool,
    pub now: SlotNowDto,
}

impl SlotHistoryAnswer {
    fn new(h: SlotHistory, with_patient: bool) -> Self {
        Self {
            success: true,
            doctor_id: h.doctor_id,
            start: h.start,
            slot_minutes: h.slot_minutes,
            events: h
                .events
                .into_iter()
                .map(|e| SlotEventDto::new(e, with_patient))
                .collect(),
            truncated: h.truncated,
            now: h.now.into(),
        }
    }
}

/// The `{start}` path segment: an RFC 3339 instant, any offset.
fn parse_start(start: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(start)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::field(
                "start",
                "must be an RFC 3339 instant, e.g. 2030-01-07T09:00:00Z",
            )
        })
}

/// Why one of the doctor's own slots is (un)available: the journal events that touched
/// it, who decided them, and the rule that refuses it now. No patient ids.
#[utoipa::path(get, path = "/doctor/slots/{start}/history", tag = "doctor", security(("bearer" = [])),
    params(("start" = String, Path, format = DateTime, description = "The slot's start, RFC 3339 (any offset; URL-encode `+` as `%2B`)")),
    responses((status = 200, body = SlotHistoryAnswer), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn doctor_slot_history(
    State(state): State<AppState>,
    DoctorAuth(doctor_id): DoctorAuth,
    ApiPath(start): ApiPath<String>,
) -> Result<Json<SlotHistoryAnswer>, ApiError> {
    let at = parse_start(&start)?;
    let history = state.engine.slot_history(doctor_id, at).await?;
    Ok(Json(SlotHistoryAnswer::new(history, false)))
}

/// Why a doctor's slot is (un)available, for an admin: as the doctor's view, with the
/// patient id of each consultation event.
#[utoipa::path(get, path = "/admin/doctors/{id}/slots/{start}/history", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Doctor id"),
        ("start" = String, Path, format = DateTime, description = "The slot's start, RFC 3339 (any offset; URL-encode `+` as `%2B`)")),
    responses((status = 200, body = SlotHistoryAnswer), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn admin_slot_history(
    State(state): State<AppState>,
    _admin: AdminAuth,
    ApiPath((doctor_id, start)): ApiPath<(i64, String)>,
) -> Result<Json<SlotHistoryAnswer>, ApiError> {
    let at = parse_start(&start)?;
    let history = state.engine.slot_history(doctor_id, at).await?;
    Ok(Json(SlotHistoryAnswer::new(history, true)))
}
