//! Operational endpoints: liveness, readiness, metrics and the OpenAPI document.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;

use super::dto::HealthAnswer;
use super::error::{ApiError, ErrorBody};
use super::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = HealthAnswer)))]
pub async fn healthz() -> Json<HealthAnswer> {
    Json(HealthAnswer {
        status: "ok".into(),
    })
}

/// How long `/readyz` waits for the store to answer a trivial query: a store that takes
/// longer (down, restarting, its connections all stuck) is not ready, and a probe never
/// waits out its own timeout.
const READY_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The engine is running, not draining, and the store answers.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = HealthAnswer), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<HealthAnswer>, ApiError> {
    if state.draining.load(Ordering::Relaxed) || !state.engine.is_running() {
        return Err(ApiError::Unavailable("The service is shutting down"));
    }
    match tokio::time::timeout(READY_PROBE_TIMEOUT, state.engine.store().ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store unreachable");
            return Err(ApiError::Unavailable("Storage is unreachable"));
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = READY_PROBE_TIMEOUT.as_millis() as u64,
                "readiness: store did not answer in time"
            );
            return Err(ApiError::Unavailable("Storage is unreachable"));
        }
    }
    // In a cluster: ready once every shard is served here or has a live owner to forward to.
    if let Some(cluster) = state.engine.cluster() {
        super::forward::probe_remotes(&state.forward_client, cluster).await;
        if cluster.ownership().unrouted() > 0 {
            return Err(ApiError::Unavailable(
                "Some doctors have no serving instance yet (shard leases are being taken)",
            ));
        }
    }
    Ok(Json(HealthAnswer {
        status: "ready".into(),
    }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    Json(super::openapi::document_for(
        state.engine.settings().max_availability_days,
    ))
}
