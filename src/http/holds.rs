//! A patient's hold on a slot, beyond placing it (`check-slot` with `hold: true`): reading
//! it back (availability's `your_hold`) and giving it up, so a page that closes or moves on
//! does not keep a slot from other patients until the hold expires.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::PatientAuth;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use super::AppState;

/// The asking patient's live hold on a doctor.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HoldDto {
    /// The held slot's start (UTC).
    pub start: DateTime<Utc>,
    pub held_until: DateTime<Utc>,
}

impl From<consult_actors::calendar::Hold> for HoldDto {
    fn from(h: consult_actors::calendar::Hold) -> Self {
        Self {
            start: h.start,
            held_until: h.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseAnswer {
    pub success: bool,
    /// Whether there was a hold to release.
    pub released: bool,
}

/// Releases the patient's hold on this doctor, if any (idempotent). Watchers of the doctor
/// see the slot `released`.
#[utoipa::path(delete, path = "/patient/doctors/{id}/hold", tag = "patient", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Doctor id")),
    responses((status = 200, body = ReleaseAnswer), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn release_hold(
    State(state): State<AppState>,
    PatientAuth(patient_id): PatientAuth,
    ApiPath(doctor_id): ApiPath<i64>,
) -> Result<Json<ReleaseAnswer>, ApiError> {
    let released = state.engine.release_hold(doctor_id, patient_id).await?;
    Ok(Json(ReleaseAnswer {
        success: true,
        released,
    }))
}
