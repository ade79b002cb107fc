//! The axum front end: routes of API.md, the middleware stack (request ids, tracing,
//! admission and timeout, panic capture), and the state handlers share.

pub mod admin;
pub mod assets;
pub mod auth;
pub mod bookings;
pub mod dev;
pub mod doctor;
pub mod dto;
pub mod encoded;
pub mod error;
pub mod extract;
pub mod forward;
pub mod history;
pub mod holds;
pub mod idempotency;
pub mod inbox;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod patient;
pub mod rfc3339;
pub mod schema;
pub mod serve;
pub mod stream;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::CONNECTION;
use axum::http::{HeaderName, HeaderValue, Response};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::{get, patch, post};
use axum::Router;
use consult_actors::Engine;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};

use self::auth::JwtKeys;
use self::error::ApiError;
use self::metrics::Metrics;

/// What every handler can reach; one `Arc`, so the per-request clone is one increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub engine: Engine,
    pub jwt: Arc<JwtKeys>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// Set when shutdown begins: `/readyz` answers 503 so balancers stop sending.
    pub draining: Arc<AtomicBool>,
    /// First answers of `Idempotency-Key` bookings.
    pub idempotency: idempotency::IdempotencyCache,
    /// Per-user limiter, keyed by role and sub; `None` when the limit is off.
    pub rate_limiter: Option<Arc<UserRateLimiter>>,
    /// Lifetime of development sign-in tokens; `None` in production, where the `/dev/`
    /// routes do not exist.
    pub dev_token_ttl_s: Option<u64>,
    /// Sends requests for doctors served by another instance there.
    pub forward_client: reqwest::Client,
    /// Set to true when shutdown begins: long-lived answers (the availability stream) end.
    stopping: tokio::sync::watch::Sender<bool>,
    admission: Arc<Semaphore>,
    request_timeout: Duration,
}

/// Requests per user (role, sub), token-bucket style.
pub type UserRateLimiter = governor::DefaultKeyedRateLimiter<(auth::Role, i64)>;

/// The limits the router enforces.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    /// Sustained requests per second per user; 0 = no limit.
    pub rate_limit_per_s: u32,
    pub rate_limit_burst: u32,
    /// `Some(ttl)` in the development profile: `/dev/sign-in` mints tokens of that life.
    pub dev_token_ttl_s: Option<u64>,
}

impl AppState {
    pub fn new(engine: Engine, jwt: JwtKeys, limits: HttpLimits) -> Self {
        Self(Arc::new(Shared {
            metrics: Arc::new(Metrics::new(engine.clone())),
            engine,
            jwt: Arc::new(jwt),
            max_body_bytes: limits.max_body_bytes,
            draining: Arc::new(AtomicBool::new(false)),
            idempotency: idempotency::IdempotencyCache::default(),
            rate_limiter: NonZeroU32::new(limits.rate_limit_per_s).map(|rate| {
                let burst = NonZeroU32::new(limits.rate_limit_burst).unwrap_or(rate);
                Arc::new(governor::RateLimiter::keyed(
                    governor::Quota::per_second(rate).allow_burst(burst),
                ))
            }),
            dev_token_ttl_s: limits.dev_token_ttl_s,
            forward_client: forward::client(),
            stopping: tokio::sync::watch::Sender::new(false),
            admission: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            request_timeout: limits.request_timeout,
        }))
    }
}

impl Shared {
    /// Resolves once shutdown has begun.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Begins shutdown of long-lived answers: open streams end.
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    if state.dev_token_ttl_s.is_some() {
        api = api
            .route("/dev/sign-in", post(dev::sign_in))
            .route("/dev/users", get(dev::users));
    }
    let api = api
        .route("/patient/doctors", get(patient::list_doctors))
        .route(
            "/patient/doctors/{id}/availability",
            get(patient::availability),
        )
        .route(
            "/patient/doctors/{id}/availability/stream",
            get(stream::availability_stream),
        )
        .route(
            "/patient/doctors/{id}/hold",
            axum::routing::delete(holds::release_hold),
        )
        .route("/patient/doctors/check-slot", post(patient::check_slot))
        .route("/patient/doctors/book", post(patient::book))
        .route("/patient/bookings", post(bookings::book_many))
        .route("/patient/bookings/{id}", get(bookings::get_booking))
        .route("/patient/consultations", get(patient::list_consultations))
        .route(
            "/patient/consultations/{id}",
            get(patient::get_consultation),
        )
        .route(
            "/patient/consultations/{id}/reschedule",
            post(patient::reschedule_consultation),
        )
        .route(
            "/patient/consultations/{id}/cancel",
            post(patient::cancel_consultation),
        )
        .route(
            "/patient/consultations/{id}/calendar.ics",
            get(patient::calendar_ics),
        )
        .route(
            "/patient/consultations/{id}/session",
            get(inbox::patient_session),
        )
        .route(
            "/doctor/consultations/{id}/session",
            get(inbox::doctor_session),
        )
        .route("/notifications", get(inbox::list_notifications))
        .route("/notifications/read", post(inbox::mark_read))
        .route(
            "/doctor/availability",
            get(doctor::get_availability).put(doctor::put_availability),
        )
        .route("/doctor/profile", get(doctor::get_profile))
        .route("/doctor/status", patch(doctor::patch_status))
        .route("/doctor/consultations", get(doctor::list_consultations))
        .route(
            "/doctor/slots/{start}/history",
            get(history::doctor_slot_history),
        )
        .route(
            "/admin/doctors",
            get(admin::list_doctors).post(admin::create_doctor),
        )
        .route("/admin/doctors/{id}/approve", post(admin::approve_doctor))
        .route(
            "/admin/doctors/{id}/slots/{start}/history",
            get(history::admin_slot_history),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/", get(assets::index))
        .fallback(assets::fallback)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            forward::forward,
        ))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), admission))
        .with_state(state);

    api.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &Request<Body>| {
                        let id = req
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        // The path only: query strings are not logged.
                        tracing::info_span!(
                            "request",
                            request_id = %id,
                            method = %req.method(),
                            path = %req.uri().path(),
                        )
                    })
                    .on_response(
                        DefaultOnResponse::new()
                            .level(tracing::Level::INFO)
                            .latency_unit(tower_http::LatencyUnit::Micros),
                    )
                    // A 5xx is an operational state (overload, storage down, waiting for a
                    // shard's new owner), logged as a warning; a 500's cause is logged as
                    // an error where it happens (`ApiError::Internal`).
                    .on_failure(
                        DefaultOnFailure::new()
                            .level(tracing::Level::WARN)
                            .latency_unit(tower_http::LatencyUnit::Micros),
                    ),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(CatchPanicLayer::custom(|_panic| {
                ApiError::Internal("handler panicked".into()).into_response()
            })),
    )
}

/// Most bytes of header names and values one request may carry (431 past it): a bearer
/// token, cookies and a proxy's headers fit many times over.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses oversized headers (431). Bounds requests in flight (503 past the limit, at once) and their duration (503 after
/// the request timeout), and counts them.
async fn admission(State(state): State<AppState>, req: Request, next: Next) -> Response<Body> {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        let response = ApiError::HeadersTooLarge(MAX_HEADER_BYTES).into_response();
        state.metrics.response(response.status().as_u16());
        return response;
    }
    let Ok(_permit) = state.admission.try_acquire() else {
        let response =
            ApiError::Unavailable("The service is busy; nothing was done. Please retry.")
                .into_response();
        state.metrics.response(response.status().as_u16());
        return response;
    };
    let _in_flight = InFlight::enter(&state.metrics);
    let mut response = match tokio::time::timeout(state.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(
            "The request timed out. It may have completed: check before retrying.",
        )
        .into_response(),
    };
    state.metrics.response(response.status().as_u16());
    if state.draining.load(Ordering::Relaxed) {
        // Leaving: every answer closes its connection, so a client (or another instance's
        // forwarder) opens a new one for its next request, which after the listener closes
        // is refused before anything is sent (safe to send elsewhere), instead of racing
        // the close of an idle kept-alive connection (an unknown outcome).
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Counts a request in flight until dropped (also when the client goes away mid-request).
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn enter(metrics: &'a Metrics) -> Self {
        metrics.in_flight.inc();
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}
