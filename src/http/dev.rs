//! Development-profile sign-in, so the UI at `/` can be tried with no identity provider:
//! the demo users, and short-lived tokens for them. These routes exist only in the
//! development profile (in production they are the API's 404), and the tokens they mint
//! are ordinary HS256 tokens with the configured secret.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{now_s, Role};
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use super::AppState;
use crate::demo::{DEMO_ADMIN, DEMO_PATIENTS};

/// Lifetime of a development sign-in token unless the settings give a shorter one.
pub const MAX_DEV_TOKEN_TTL_S: u64 = 8 * 3600;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// `patient` | `doctor` | `admin`
    #[schema(value_type = super::schema::RoleName, example = "patient")]
    pub role: String,
    /// The user's id, positive. Default: the first demo patient (67) or the demo admin
    /// (1); required for doctors (a doctor id; an unknown one answers 404).
    #[schema(minimum = 1)]
    pub sub: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignInAnswer {
    pub success: bool,
    /// Bearer token (HS256). Keep it out of URLs and logs.
    pub token: String,
    #[schema(value_type = super::schema::RoleName)]
    pub role: String,
    pub sub: i64,
    pub name: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DemoUser {
    /// `patient` | `doctor` | `admin`
    #[schema(value_type = super::schema::RoleName)]
    pub role: String,
    pub sub: i64,
    pub name: String,
    /// A doctor's specialty and state, e.g. `Dermatology`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DemoUsersAnswer {
    pub success: bool,
    pub users: Vec<DemoUser>,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Patient => "patient",
        Role::Doctor => "doctor",
        Role::Admin => "admin",
    }
}

/// The users the development sign-in offers: the demo patients, the admin, and every
/// doctor in the store (approved or not).
#[utoipa::path(get, path = "/dev/users", tag = "dev",
    responses((status = 200, body = DemoUsersAnswer), (status = 404, body = ErrorBody, description = "production profile")))]
pub async fn users(State(state): State<AppState>) -> Result<Json<DemoUsersAnswer>, ApiError> {
    let mut users: Vec<DemoUser> = DEMO_PATIENTS
        .iter()
        .map(|(sub, name)| DemoUser {
            role: "patient".into(),
            sub: *sub,
            name: (*name).into(),
            detail: None,
        })
        .collect();
    let mut doctors = state.engine.list_doctors().await?;
    doctors.sort_by_key(|d| d.id);
    users.extend(doctors.into_iter().map(|d| DemoUser {
        role: "doctor".into(),
        sub: d.id,
        detail: Some(match (d.is_approved, d.is_available) {
            (false, _) => format!("{} (awaiting approval)", d.specialty),
            (true, false) => format!("{} (not taking bookings)", d.specialty),
            (true, true) => d.specialty,
        }),
        name: d.name,
    }));
    users.push(DemoUser {
        role: "admin".into(),
        sub: DEMO_ADMIN.0,
        name: DEMO_ADMIN.1.into(),
        detail: None,
    });
    Ok(Json(DemoUsersAnswer {
        success: true,
        users,
    }))
}

/// A short-lived token for a demo user.
#[utoipa::path(post, path = "/dev/sign-in", tag = "dev", request_body = SignInRequest,
    responses((status = 200, body = SignInAnswer), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "production profile, or an unknown doctor")))]
pub async fn sign_in(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SignInRequest>,
) -> Result<Json<SignInAnswer>, ApiError> {
    let role = match req.role.as_str() {
        "patient" => Role::Patient,
        "doctor" => Role::Doctor,
        "admin" => Role::Admin,
        _ => {
            return Err(ApiError::field(
                "role",
                "must be one of patient, doctor, admin",
            ))
        }
    };
    let (sub, name) = match (role, req.sub) {
        (Role::Patient, sub) => {
            let sub = sub.unwrap_or(DEMO_PATIENTS[0].0);
            if sub <= 0 {
                return Err(ApiError::field("sub", "must be a positive id"));
            }
            let name = DEMO_PATIENTS
                .iter()
                .find(|(id, _)| *id == sub)
                .map_or_else(|| format!("Patient {sub}"), |(_, n)| (*n).to_owned());
            (sub, name)
        }
        (Role::Doctor, None) => return Err(ApiError::field("sub", "a doctor id is required")),
        (Role::Doctor, Some(sub)) => (sub, state.engine.doctor(sub).await?.name),
        (Role::Admin, sub) => {
            let sub = sub.unwrap_or(DEMO_ADMIN.0);
            if sub <= 0 {
                return Err(ApiError::field("sub", "must be a positive id"));
            }
            (sub, DEMO_ADMIN.1.to_owned())
        }
    };
    let ttl_s = state.dev_token_ttl_s.unwrap_or(0).min(MAX_DEV_TOKEN_TTL_S);
    let now = now_s();
    let token = state.jwt.mint_named(role, sub, Some(&name), now, ttl_s);
    Ok(Json(SignInAnswer {
        success: true,
        token,
        role: role_name(role).into(),
        sub,
        name,
        expires_at: DateTime::from_timestamp((now + ttl_s) as i64, 0).unwrap_or_default(),
    }))
}
