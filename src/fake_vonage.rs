//! A fake Vonage for tests and local runs: one HTTP server answering the Video API
//! `POST /session/create` and the Conversations API v1 paths the Vonage client uses
//! (create and list conversations, users and members, look-ups by name), with the real
//! status codes, error codes, body shapes and id formats, and the real authentication
//! (an RS256 application JWT checked against the application's public key).
//!
//! It owns its in-memory world (what was created, counters) and the injected faults:
//! fail the next N calls with a status (and `Retry-After`), hang the next N calls until
//! the server stops, or add latency to every call. Tests drive it through
//! [`FakeVonage`]; the standalone binary (`consult-scheduler fake-vonage`) through
//! `GET /_fake/stats`, `POST /_fake/faults` and `POST /_fake/reset` (no JWT there).

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Page size of list answers when the request names none (the real default).
const DEFAULT_PAGE_SIZE: usize = 10;
/// Largest page size the real API accepts.
const MAX_PAGE_SIZE: usize = 100;
/// Longest conversation `name` the real API accepts.
const MAX_CONVERSATION_NAME_CHARS: usize = 100;
/// Longest conversation `display_name` the real API accepts.
const MAX_CONVERSATION_DISPLAY_NAME_CHARS: usize = 50;
/// How long [`FakeVonage::stop`] waits for in-flight calls before aborting the server.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Upper bound on injected latency.
const MAX_LATENCY_MS: u64 = 60_000;

/// What the fake created and saw since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FakeCounts {
    pub video_sessions: u64,
    pub conversations: u64,
    pub users: u64,
    pub members: u64,
    /// API calls received (not `/_fake/*`), answered or not.
    pub requests: u64,
    /// API calls refused for a missing or bad application JWT.
    pub unauthorized: u64,
    /// The most API calls being handled at once (injected latency included), since the
    /// start or the last [`FakeVonage::restart_most_at_once`].
    pub most_at_once: u64,
}

/// The injected faults in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FakeFaults {
    /// Calls still to be failed with `status`.
    pub fail_next: u32,
    pub status: u16,
    pub retry_after_s: Option<u64>,
    /// Calls still to be left unanswered until the server stops.
    pub hang_next: u32,
    /// Added before every API call is handled.
    pub latency_ms: u64,
}

/// A running fake; stops on [`FakeVonage::stop`] or when dropped.
pub struct FakeVonage {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl FakeVonage {
    /// Binds (port 0 allowed) and serves until `stop` / drop.
    pub async fn start(
        bind: SocketAddr,
        public_key_pem: &str,
        application_id: Option<String>,
    ) -> std::io::Result<FakeVonage> {
        let key = DecodingKey::from_rsa_pem(public_key_pem.as_bytes()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the public key is not an RSA PEM key: {e}"),
            )
        })?;
        let listener = TcpListener::bind(bind).await?;
        let addr = reachable(listener.local_addr()?);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        let shared = Arc::new(Shared {
            key,
            validation,
            application_id,
            verified: moka::sync::Cache::new(VERIFIED_TOKENS_KEPT),
            base_url: format!("http://{addr}"),
            world: Mutex::default(),
            faults: Mutex::default(),
            shutdown: shutdown_rx.clone(),
        });
        let app = router(shared.clone());
        let mut stopped = shutdown_rx;
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .into_future();
        Ok(FakeVonage {
            addr,
            shared,
            shutdown,
            server: Some(tokio::spawn(server)),
        })
    }

    /// `http://127.0.0.1:PORT`: serves both the video and the api paths.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counts(&self) -> FakeCounts {
        self.shared.world().counts
    }

    /// Starts `most_at_once` again from the calls being handled now.
    pub fn restart_most_at_once(&self) {
        let mut world = self.shared.world();
        world.counts.most_at_once = world.in_progress;
    }

    /// Ids of the video sessions created, oldest first.
    pub fn video_sessions(&self) -> Vec<String> {
        self.shared.world().video_sessions.clone()
    }

    /// `(id, name)` of the conversations created, oldest first.
    pub fn conversations(&self) -> Vec<(String, String)> {
        let world = self.shared.world();
        world
            .conversations
            .iter()
            .map(|c| (c.id.clone(), c.name.clone()))
            .collect()
    }

    /// User names of the members of a conversation, in joining order.
    pub fn members(&self, conversation_id: &str) -> Vec<String> {
        let world = self.shared.world();
        world
            .conversations
            .iter()
            .find(|c| c.id == conversation_id)
            .map(|c| c.members.iter().map(|m| m.user_name.clone()).collect())
            .unwrap_or_default()
    }

    /// Fails the next `calls` API calls with `status` (and `Retry-After: S` when given).
    pub fn fail_next(&self, calls: u32, status: u16, retry_after_s: Option<u64>) {
        let mut faults = self.shared.faults();
        faults.fail_next = calls;
        faults.status = status;
        faults.retry_after_s = retry_after_s;
    }

    /// Leaves the next `calls` API calls unanswered until the server stops.
    pub fn hang_next(&self, calls: u32) {
        self.shared.faults().hang_next = calls;
    }

    /// Adds `latency` before every API call is handled (at most 60 s).
    pub fn set_latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.shared.faults().latency_ms = ms.min(MAX_LATENCY_MS);
    }

    pub fn faults(&self) -> FakeFaults {
        *self.shared.faults()
    }

    pub fn clear_faults(&self) {
        *self.shared.faults() = FakeFaults::default();
    }

    /// Stops accepting, releases hanging calls, and waits (up to 5 s) for the server.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(mut server) = self.server.take() {
            match tokio::time::timeout(STOP_GRACE, &mut server).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "fake vonage server failed"),
                Ok(_) => {}
                Err(_) => server.abort(),
            }
        }
    }
}

impl Drop for FakeVonage {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl std::fmt::Debug for FakeVonage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeVonage")
            .field("addr", &self.addr)
            .field("application_id", &self.shared.application_id)
            .finish_non_exhaustive()
    }
}

/// An address a client on this machine can dial: the wildcard becomes loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

struct Shared {
    key: DecodingKey,
    validation: Validation,
    application_id: Option<String>,
    /// Tokens that passed [`Shared::authorize`], with their `exp`. The client keeps one
    /// application JWT for most of its life, and an RS256 check costs more than anything
    /// else the fake does (jsonwebtoken rebuilds the RSA key on every check), so an
    /// identical token is accepted again while `exp` is ahead; anything else is checked in
    /// full.
    verified: moka::sync::Cache<Box<str>, i64>,
    /// Prefix of the `_links` hrefs.
    base_url: String,
    world: Mutex<World>,
    faults: Mutex<FakeFaults>,
    shutdown: watch::Receiver<bool>,
}

#[derive(Default)]
struct World {
    counts: FakeCounts,
    /// API calls being handled now.
    in_progress: u64,
    video_sessions: Vec<String>,
    conversations: Vec<Conversation>,
    users: Vec<User>,
}

struct Conversation {
    id: String,
    name: String,
    display_name: Option<String>,
    ttl: Option<Value>,
    created: DateTime<Utc>,
    members: Vec<Member>,
}

struct Member {
    id: String,
    state: &'static str,
    user_id: String,
    user_name: String,
    user_display_name: Option<String>,
    at: DateTime<Utc>,
}

struct User {
    id: String,
    name: String,
    display_name: Option<String>,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, FakeFaults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False when the server began stopping first.
    async fn sleep_unless_stopping(&self, duration: Duration) -> bool {
        let mut stop = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    async fn until_stopping(&self) {
        let mut stop = self.shutdown.clone();
        let _ = stop.wait_for(|s| *s).await;
    }

    /// Checks the application JWT the way Vonage does: RS256 with the application's key,
    /// `application_id`, `iat`, `exp` in the future, `jti`.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), TokenRefusal> {
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TokenRefusal::Invalid)?;
        if let Some(exp) = self.verified.get(token) {
            if exp > Utc::now().timestamp() {
                return Ok(());
            }
            self.verified.invalidate(token);
        }
        let claims = jsonwebtoken::decode::<AppClaims>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenRefusal::Expired,
                _ => TokenRefusal::Invalid,
            })?
            .claims;
        if claims.exp <= Utc::now().timestamp() {
            return Err(TokenRefusal::Expired);
        }
        let wrong_app = self
            .application_id
            .as_ref()
            .is_some_and(|want| *want != claims.application_id);
        if wrong_app || claims.jti.trim().is_empty() || claims.iat <= 0 {
            return Err(TokenRefusal::Invalid);
        }
        self.verified.insert(token.into(), claims.exp);
        Ok(())
    }

    fn href(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// Most tokens the fake keeps as verified.
const VERIFIED_TOKENS_KEPT: u64 = 1_000;

/// Why an application JWT was refused; the two get different error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenRefusal {
    Invalid,
    Expired,
}

/// The claims Vonage requires of an application JWT; a missing one fails to decode.
#[derive(Deserialize)]
struct AppClaims {
    application_id: String,
    iat: i64,
    exp: i64,
    jti: String,
}

type AppState = Arc<Shared>;

fn router(shared: AppState) -> Router {
    let api = Router::new()
        .route("/session/create", post(create_session))
        .route(
            "/v1/conversations",
            get(list_conversations).post(create_conversation),
        )
        .route("/v1/conversations/{id}", get(get_conversation))
        .route(
            "/v1/conversations/{id}/members",
            get(list_members).post(create_member),
        )
        .route("/v1/users", get(list_users).post(create_user))
        .route("/v1/users/{id}", get(get_user))
        .route_layer(middleware::from_fn_with_state(shared.clone(), api_gate));
    let control = Router::new()
        .route("/_fake/stats", get(stats))
        .route("/_fake/faults", post(set_faults))
        .route("/_fake/reset", post(reset));
    api.merge(control)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// Which API a path belongs to: their error bodies differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Video,
    Conversations,
}

impl Api {
    fn of(path: &str) -> Self {
        if path.starts_with("/v1/") {
            Self::Conversations
        } else {
            Self::Video
        }
    }
}

enum Verdict {
    Serve,
    Hang,
    Fail {
        status: u16,
        retry_after_s: Option<u64>,
    },
}

/// Every API call: count it, apply latency and faults, then check its JWT.
async fn api_gate(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let api = Api::of(request.uri().path());
    shared.world().counts.requests += 1;
    let _handling = Handling::begin(&shared);
    let (latency, verdict) = {
        let mut faults = shared.faults();
        let verdict = if faults.hang_next > 0 {
            faults.hang_next -= 1;
            Verdict::Hang
        } else if faults.fail_next > 0 {
            faults.fail_next -= 1;
            Verdict::Fail {
                status: faults.status,
                retry_after_s: faults.retry_after_s,
            }
        } else {
            Verdict::Serve
        };
        (Duration::from_millis(faults.latency_ms), verdict)
    };
    if !latency.is_zero() && !shared.sleep_unless_stopping(latency).await {
        return fault(api, 503, None);
    }
    match verdict {
        Verdict::Serve => {}
        Verdict::Hang => {
            shared.until_stopping().await;
            return fault(api, 503, None);
        }
        Verdict::Fail {
            status,
            retry_after_s,
        } => return fault(api, status, retry_after_s),
    }
    if let Err(refusal) = shared.authorize(request.headers()) {
        shared.world().counts.unauthorized += 1;
        tracing::debug!(
            path = request.uri().path(),
            ?refusal,
            "fake vonage refused an application jwt"
        );
        return unauthorized(api, refusal == TokenRefusal::Expired);
    }
    next.run(request).await
}

/// One API call being handled, counted in `in_progress` until dropped (answered, or
/// abandoned by a client that went away).
struct Handling<'a>(&'a Shared);

impl<'a> Handling<'a> {
    fn begin(shared: &'a Shared) -> Self {
        let mut world = shared.world();
        world.in_progress += 1;
        world.counts.most_at_once = world.counts.most_at_once.max(world.in_progress);
        Self(shared)
    }
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.0.world().in_progress -= 1;
    }
}

// ---------------------------------------------------------------- error bodies

/// A Conversations API error: `{title, type, code, detail, instance}`.
fn conversation_error(status: StatusCode, code: &str, title: &str, detail: &str) -> Response {
    let body = json!({
        "title": title,
        "type": format!("https://developer.vonage.com/api/conversation#{code}"),
        "code": code,
        "detail": detail,
        "instance": instance(),
    });
    (status, Json(body)).into_response()
}

/// A Video API error: `{code, message, description}`.
fn video_error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "code": status.as_u16(),
        "message": message,
        "description": message,
    });
    (status, Json(body)).into_response()
}

/// 400 `http:error:validation-fail` with the offending parameters.
fn validation_fail(invalid: &[(&str, String)]) -> Response {
    let params: Vec<Value> = invalid
        .iter()
        .map(|(name, reason)| json!({ "name": name, "reason": reason }))
        .collect();
    let body = json!({
        "title": "Bad request.",
        "type": "https://developer.vonage.com/api/conversation#http:error:validation-fail",
        "code": "http:error:validation-fail",
        "detail": "Input validation failure.",
        "instance": instance(),
        "invalid_parameters": params,
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn unauthorized(api: Api, expired: bool) -> Response {
    match (api, expired) {
        (Api::Video, _) => video_error(StatusCode::UNAUTHORIZED, "Invalid or expired JWT"),
        (Api::Conversations, true) => conversation_error(
            StatusCode::UNAUTHORIZED,
            "system:error:expired-token",
            "Unauthorized.",
            "You provided an expired token. Please provide a valid token.",
        ),
        (Api::Conversations, false) => conversation_error(
            StatusCode::UNAUTHORIZED,
            "system:error:invalid-token",
            "Unauthorized.",
            "You did not provide a valid token. Please provide a valid token.",
        ),
    }
}

/// An injected failure, shaped like the real one for that status.
fn fault(api: Api, status: u16, retry_after_s: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match api {
        Api::Video => video_error(status, status.canonical_reason().unwrap_or("Error")),
        Api::Conversations => {
            let (code, title, detail) = match status.as_u16() {
                400 => (
                    "http:error:validation-fail".to_owned(),
                    "Bad request.",
                    "Input validation failure.",
                ),
                401 => (
                    "system:error:invalid-token".to_owned(),
                    "Unauthorized.",
                    "You did not provide a valid token. Please provide a valid token.",
                ),
                404 => (
                    "http:error:not-found".to_owned(),
                    "Not found.",
                    "Not found.",
                ),
                429 => (
                    "http:error:too-many-request".to_owned(),
                    "Too Many Requests.",
                    "You have exceeded your request limit.",
                ),
                s if s >= 500 => (
                    "system:error:internal-error".to_owned(),
                    "Internal Error.",
                    "Something went wrong.",
                ),
                s => (format!("http:error:{s}"), "Error.", "Injected failure."),
            };
            conversation_error(status, &code, title, detail)
        }
    };
    if let Some(s) = retry_after_s {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(s));
    }
    response
}

fn conversation_not_found() -> Response {
    conversation_error(
        StatusCode::NOT_FOUND,
        "conversation:error:not-found",
        "Not found.",
        "Conversation does not exist, or you do not have access.",
    )
}

fn user_not_found() -> Response {
    conversation_error(
        StatusCode::NOT_FOUND,
        "user:error:not-found",
        "Not found.",
        "User does not exist, or you do not have access.",
    )
}

fn instance() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn now_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

// ---------------------------------------------------------------- video

/// `POST /session/create`: form fields as the real API takes them; answers a one-element
/// JSON array.
async fn create_session(
    State(shared): State<AppState>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return video_error(StatusCode::BAD_REQUEST, "Invalid form body");
    };
    let field = |k: &str, default: &'static str| form.get(k).map_or(default, String::as_str);
    let archive_mode = field("archiveMode", "manual");
    let p2p = field("p2p.preference", "enabled");
    if !matches!(archive_mode, "manual" | "always") {
        return video_error(
            StatusCode::BAD_REQUEST,
            "archiveMode must be manual or always",
        );
    }
    if !matches!(p2p, "enabled" | "disabled" | "always") {
        return video_error(
            StatusCode::BAD_REQUEST,
            "p2p.preference must be enabled, disabled or always",
        );
    }
    if archive_mode == "always" && p2p != "disabled" {
        return video_error(
            StatusCode::BAD_REQUEST,
            "A session with archiveMode always must be routed (p2p.preference disabled)",
        );
    }
    if !matches!(field("e2ee", "false"), "true" | "false") {
        return video_error(StatusCode::BAD_REQUEST, "e2ee must be true or false");
    }
    let project = shared
        .application_id
        .clone()
        .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".to_owned());
    let now = Utc::now();
    let session_id = mint_session_id(&project, now);
    {
        let mut world = shared.world();
        world.video_sessions.push(session_id.clone());
        world.counts.video_sessions += 1;
    }
    let body = json!([{
        "session_id": session_id,
        "project_id": project,
        "partner_id": project,
        "create_dt": now.format("%a %b %d %H:%M:%S UTC %Y").to_string(),
        "session_status": null,
        "status_invalid": null,
        "media_server_hostname": null,
        "messaging_server_url": null,
        "messaging_url": null,
        "symphony_address": null,
        "properties": null,
        "ice_server": null,
        "session_segment_id": uuid::Uuid::new_v4().to_string(),
        "ice_servers": null,
        "ice_credential_expiration": 86100,
    }]);
    (StatusCode::OK, Json(body)).into_response()
}

/// Real session ids are `1_` + base64 (`+` written `-`) of
/// `1~{project}~~{created ms}~{random}~~~`, hence their `1_MX4` start.
fn mint_session_id(project: &str, now: DateTime<Utc>) -> String {
    let random = URL_SAFE_NO_PAD.encode(&uuid::Uuid::new_v4().as_bytes()[..12]);
    let raw = format!("1~{project}~~{}~{random}~~~", now.timestamp_millis());
    let encoded = STANDARD.encode(raw).replace('+', "-").replace('/', "_");
    format!("1_{}", encoded.trim_end_matches('='))
}

// ---------------------------------------------------------------- lists

/// `page_size`, `order` and `cursor` of a list request.
struct Listing {
    page_size: usize,
    descending: bool,
    offset: usize,
}

impl Listing {
    /// `Err((parameter, reason))` for a value the real API refuses.
    fn parse(query: &HashMap<String, String>) -> Result<Self, (&'static str, &'static str)> {
        let page_size = match query.get("page_size") {
            None => DEFAULT_PAGE_SIZE,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => return Err(("page_size", "\"page_size\" must be between 1 and 100")),
            },
        };
        let descending = match query.get("order").map(|o| o.to_ascii_lowercase()) {
            None => false,
            Some(o) if o == "asc" => false,
            Some(o) if o == "desc" => true,
            Some(_) => return Err(("order", "\"order\" must be one of [asc, desc, ASC, DESC]")),
        };
        let offset = match query.get("cursor") {
            None => 0,
            Some(c) => decode_cursor(c).ok_or(("cursor", "\"cursor\" is invalid"))?,
        };
        Ok(Self {
            page_size,
            descending,
            offset,
        })
    }

    /// The page of `items` (oldest first) and whether more follow.
    fn page<'a, T>(&self, items: &[&'a T]) -> (Vec<&'a T>, bool) {
        let ordered: Vec<&T> = if self.descending {
            items.iter().rev().copied().collect()
        } else {
            items.to_vec()
        };
        let page: Vec<&T> = ordered
            .iter()
            .skip(self.offset)
            .take(self.page_size)
            .copied()
            .collect();
        let more = ordered.len() > self.offset + page.len();
        (page, more)
    }

    /// HAL `_links`: `first`, `self`, and `next` / `prev` when they exist.
    fn links(&self, url: &str, extra: &[(&str, &str)], more: bool) -> Value {
        let href = |offset: Option<usize>| {
            let order = if self.descending { "desc" } else { "asc" };
            let mut q = format!("{url}?order={order}&page_size={}", self.page_size);
            for (k, v) in extra {
                q.push_str(&format!("&{k}={}", percent_encode(v)));
            }
            if let Some(o) = offset {
                q.push_str(&format!("&cursor={}", percent_encode(&encode_cursor(o))));
            }
            json!({ "href": q })
        };
        let mut links = Map::new();
        links.insert("first".into(), href(None));
        links.insert("self".into(), href(Some(self.offset)));
        if more {
            links.insert("next".into(), href(Some(self.offset + self.page_size)));
        }
        if self.offset > 0 {
            let prev = self.offset.saturating_sub(self.page_size);
            links.insert("prev".into(), href(Some(prev)));
        }
        Value::Object(links)
    }
}

/// Opaque to clients, like the real cursors.
fn encode_cursor(offset: usize) -> String {
    STANDARD.encode(format!("offset:{offset}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let raw = STANDARD.decode(cursor).ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------- conversations

fn conversation_json(shared: &Shared, c: &Conversation) -> Value {
    let mut body = json!({
        "id": c.id,
        "name": c.name,
        "state": "ACTIVE",
        "sequence_number": 0,
        "timestamp": { "created": now_text(c.created) },
        "properties": {},
        "_links": { "self": { "href": shared.href(&format!("/v1/conversations/{}", c.id)) } },
    });
    if let Some(d) = &c.display_name {
        body["display_name"] = json!(d);
    }
    if let Some(ttl) = &c.ttl {
        body["properties"]["ttl"] = ttl.clone();
    }
    body
}

/// The keys `POST /v1/conversations` accepts; any other is refused like the real API.
const CONVERSATION_KEYS: [&str; 6] = [
    "name",
    "display_name",
    "image_url",
    "properties",
    "numbers",
    "callback",
];

async fn create_conversation(
    State(shared): State<AppState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Ok(Json(Value::Object(body))) = body else {
        return validation_fail(&[("body", "\"value\" must be of type object".to_owned())]);
    };
    let mut invalid = Vec::new();
    for key in body.keys() {
        if !CONVERSATION_KEYS.contains(&key.as_str()) {
            invalid.push((key.as_str(), format!("\"{key}\" is not allowed")));
        }
    }
    let name = match body.get("name") {
        None => None,
        Some(Value::String(s)) if s.chars().count() <= MAX_CONVERSATION_NAME_CHARS => {
            Some(s.clone())
        }
        Some(Value::String(_)) => {
            invalid.push((
                "name",
                "\"name\" length must be less than or equal to 100 characters long".to_owned(),
            ));
            None
        }
        Some(_) => {
            invalid.push(("name", "\"name\" must be a string".to_owned()));
            None
        }
    };
    let display_name = match body.get("display_name") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => {
            invalid.push((
                "display_name",
                "\"display_name\" is not allowed to be empty".to_owned(),
            ));
            None
        }
        Some(Value::String(s)) if s.chars().count() > MAX_CONVERSATION_DISPLAY_NAME_CHARS => {
            invalid.push((
                "display_name",
                "\"display_name\" length must be less than or equal to 50 characters long"
                    .to_owned(),
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            invalid.push((
                "display_name",
                "\"display_name\" must be a string".to_owned(),
            ));
            None
        }
    };
    let ttl = match body.get("properties") {
        None => None,
        Some(Value::Object(p)) => match p.get("ttl") {
            None => None,
            Some(Value::Number(n)) if n.as_f64().is_some_and(|t| t >= 0.0) => {
                Some(Value::Number(n.clone()))
            }
            Some(Value::Number(_)) => {
                invalid.push((
                    "ttl",
                    "\"ttl\" must be greater than or equal to 0".to_owned(),
                ));
                None
            }
            Some(_) => {
                invalid.push(("ttl", "\"ttl\" must be a number".to_owned()));
                None
            }
        },
        Some(_) => {
            invalid.push((
                "properties",
                "\"properties\" must be of type object".to_owned(),
            ));
            None
        }
    };
    if !invalid.is_empty() {
        return validation_fail(&invalid);
    }
    let name = name.unwrap_or_else(|| format!("NAM-{}", uuid::Uuid::new_v4()));
    let mut world = shared.world();
    if world.conversations.iter().any(|c| c.name == name) {
        return conversation_error(
            StatusCode::CONFLICT,
            "conversation:error:duplicate-name",
            "Bad request.",
            "The request failed because the conversation name already exists. Please provide a unique conversation name and try again.",
        );
    }
    let conversation = Conversation {
        id: format!("CON-{}", uuid::Uuid::new_v4()),
        name,
        display_name,
        ttl,
        created: Utc::now(),
        members: Vec::new(),
    };
    let body = conversation_json(&shared, &conversation);
    world.conversations.push(conversation);
    world.counts.conversations += 1;
    (StatusCode::OK, Json(body)).into_response()
}

async fn list_conversations(
    State(shared): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let listing = match Listing::parse(&query) {
        Ok(l) => l,
        Err((parameter, reason)) => return validation_fail(&[(parameter, reason.to_owned())]),
    };
    let world = shared.world();
    let all: Vec<&Conversation> = world.conversations.iter().collect();
    let (page, more) = listing.page(&all);
    let items: Vec<Value> = page
        .iter()
        .map(|c| {
            let mut item = json!({
                "id": c.id,
                "name": c.name,
                "timestamp": { "created": now_text(c.created) },
                "_links": { "self": { "href": shared.href(&format!("/v1/conversations/{}", c.id)) } },
            });
            if let Some(d) = &c.display_name {
                item["display_name"] = json!(d);
            }
            item
        })
        .collect();
    let body = json!({
        "page_size": listing.page_size,
        "_embedded": { "conversations": items },
        "_links": listing.links(&shared.href("/v1/conversations"), &[], more),
    });
    (StatusCode::OK, Json(body)).into_response()
}

async fn get_conversation(State(shared): State<AppState>, Path(id): Path<String>) -> Response {
    let world = shared.world();
    match world.conversations.iter().find(|c| c.id == id) {
        Some(c) => (StatusCode::OK, Json(conversation_json(&shared, c))).into_response(),
        None => conversation_not_found(),
    }
}

// ---------------------------------------------------------------- users

fn user_json(shared: &Shared, u: &User) -> Value {
    let mut body = json!({
        "id": u.id,
        "name": u.name,
        "_links": { "self": { "href": shared.href(&format!("/v1/users/{}", u.id)) } },
    });
    if let Some(d) = &u.display_name {
        body["display_name"] = json!(d);
    }
    body
}

const USER_KEYS: [&str; 5] = [
    "name",
    "display_name",
    "image_url",
    "properties",
    "channels",
];

async fn create_user(
    State(shared): State<AppState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Ok(Json(Value::Object(body))) = body else {
        return validation_fail(&[("body", "\"value\" must be of type object".to_owned())]);
    };
    let mut invalid = Vec::new();
    for key in body.keys() {
        if !USER_KEYS.contains(&key.as_str()) {
            invalid.push((key.as_str(), format!("\"{key}\" is not allowed")));
        }
    }
    let text = |key: &'static str, invalid: &mut Vec<(&str, String)>| match body.get(key) {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::String(_)) => {
            invalid.push((key, format!("\"{key}\" is not allowed to be empty")));
            None
        }
        Some(_) => {
            invalid.push((key, format!("\"{key}\" must be a string")));
            None
        }
    };
    let name = text("name", &mut invalid);
    let display_name = text("display_name", &mut invalid);
    if !invalid.is_empty() {
        return validation_fail(&invalid);
    }
    // Without a name the real API makes one up in this form.
    let name = name.unwrap_or_else(|| format!("NAM-{}", uuid::Uuid::new_v4()));
    let mut world = shared.world();
    if world.users.iter().any(|u| u.name == name) {
        return conversation_error(
            StatusCode::CONFLICT,
            "user:error:duplicate-name",
            "Bad request.",
            "The request failed because the user name already exists. Please provide a unique user name and try again.",
        );
    }
    let user = User {
        id: format!("USR-{}", uuid::Uuid::new_v4()),
        name,
        display_name,
    };
    let body = user_json(&shared, &user);
    world.users.push(user);
    world.counts.users += 1;
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `GET /v1/users`, optionally `?name=` (exact match, the real look-up by name).
async fn list_users(
    State(shared): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let listing = match Listing::parse(&query) {
        Ok(l) => l,
        Err((parameter, reason)) => return validation_fail(&[(parameter, reason.to_owned())]),
    };
    let name = query.get("name");
    let world = shared.world();
    let all: Vec<&User> = world
        .users
        .iter()
        .filter(|u| name.is_none_or(|n| *n == u.name))
        .collect();
    let (page, more) = listing.page(&all);
    let items: Vec<Value> = page.iter().map(|u| user_json(&shared, u)).collect();
    let extra: Vec<(&str, &str)> = name.iter().map(|n| ("name", n.as_str())).collect();
    let body = json!({
        "page_size": listing.page_size,
        "_embedded": { "users": items },
        "_links": listing.links(&shared.href("/v1/users"), &extra, more),
    });
    (StatusCode::OK, Json(body)).into_response()
}

async fn get_user(State(shared): State<AppState>, Path(id): Path<String>) -> Response {
    let world = shared.world();
    match world.users.iter().find(|u| u.id == id) {
        Some(u) => (StatusCode::OK, Json(user_json(&shared, u))).into_response(),
        None => user_not_found(),
    }
}

// ---------------------------------------------------------------- members

fn member_json(shared: &Shared, conversation_id: &str, m: &Member) -> Value {
    let mut user = json!({
        "id": m.user_id,
        "name": m.user_name,
        "_links": { "self": { "href": shared.href(&format!("/v1/users/{}", m.user_id)) } },
    });
    if let Some(d) = &m.user_display_name {
        user["display_name"] = json!(d);
    }
    let mut timestamp = Map::new();
    timestamp.insert(m.state.to_ascii_lowercase(), json!(now_text(m.at)));
    json!({
        "id": m.id,
        "state": m.state,
        "_embedded": { "user": user },
        "timestamp": timestamp,
        "initiator": { "joined": { "is_system": true } },
        "channel": { "type": "app" },
        "_links": { "self": { "href": shared.href(
            &format!("/v1/conversations/{conversation_id}/members/{}", m.id)) } },
    })
}

async fn create_member(
    State(shared): State<AppState>,
    Path(conversation_id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Ok(Json(Value::Object(body))) = body else {
        return validation_fail(&[("body", "\"value\" must be of type object".to_owned())]);
    };
    let mut invalid = Vec::new();
    let state = match body.get("state").and_then(Value::as_str) {
        Some(s) if s.eq_ignore_ascii_case("joined") => "JOINED",
        Some(s) if s.eq_ignore_ascii_case("invited") => "INVITED",
        _ => {
            invalid.push((
                "state",
                "\"state\" must be one of [invited, joined]".to_owned(),
            ));
            "JOINED"
        }
    };
    if body["channel"]["type"].as_str().is_none_or(str::is_empty) {
        invalid.push(("channel", "\"channel.type\" is required".to_owned()));
    }
    let user_id = body["user"]["id"].as_str();
    let user_name = body["user"]["name"].as_str();
    if user_id.is_none() && user_name.is_none() {
        invalid.push((
            "user",
            "\"user\" must contain at least one of [id, name]".to_owned(),
        ));
    }
    let mut world = shared.world();
    let world = &mut *world;
    let Some(conversation) = world
        .conversations
        .iter_mut()
        .find(|c| c.id == conversation_id)
    else {
        return conversation_not_found();
    };
    if !invalid.is_empty() {
        return validation_fail(&invalid);
    }
    let Some(user) = world
        .users
        .iter()
        .find(|u| user_id.is_some_and(|id| id == u.id) || user_name.is_some_and(|n| n == u.name))
    else {
        return user_not_found();
    };
    if conversation.members.iter().any(|m| m.user_id == user.id) {
        return conversation_error(
            StatusCode::BAD_REQUEST,
            "conversation:error:member-already-joined",
            "Bad request.",
            "The user is already a member of this conversation.",
        );
    }
    let member = Member {
        id: format!("MEM-{}", uuid::Uuid::new_v4()),
        state,
        user_id: user.id.clone(),
        user_name: user.name.clone(),
        user_display_name: user.display_name.clone(),
        at: Utc::now(),
    };
    let body = member_json(&shared, &conversation.id, &member);
    conversation.members.push(member);
    world.counts.members += 1;
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn list_members(
    State(shared): State<AppState>,
    Path(conversation_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let listing = match Listing::parse(&query) {
        Ok(l) => l,
        Err((parameter, reason)) => return validation_fail(&[(parameter, reason.to_owned())]),
    };
    let world = shared.world();
    let Some(conversation) = world.conversations.iter().find(|c| c.id == conversation_id) else {
        return conversation_not_found();
    };
    let all: Vec<&Member> = conversation.members.iter().collect();
    let (page, more) = listing.page(&all);
    let items: Vec<Value> = page
        .iter()
        .map(|m| {
            let full = member_json(&shared, &conversation.id, m);
            json!({
                "id": full["id"],
                "state": full["state"],
                "_embedded": full["_embedded"],
                "_links": full["_links"],
            })
        })
        .collect();
    let url = shared.href(&format!("/v1/conversations/{}/members", conversation.id));
    let body = json!({
        "page_size": listing.page_size,
        "_embedded": { "members": items },
        "_links": listing.links(&url, &[], more),
    });
    (StatusCode::OK, Json(body)).into_response()
}

// ---------------------------------------------------------------- control

async fn stats(State(shared): State<AppState>) -> Json<FakeCounts> {
    Json(shared.world().counts)
}

/// Body of `POST /_fake/faults`; absent fields leave that fault as it is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsRequest {
    fail_next: Option<u32>,
    status: Option<u16>,
    retry_after_s: Option<u64>,
    hang_next: Option<u32>,
    latency_ms: Option<u64>,
}

async fn set_faults(
    State(shared): State<AppState>,
    body: Result<Json<FaultsRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            let body = json!({ "error": e.body_text() });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    if let Some(status) = request.status {
        if !(400..=599).contains(&status) {
            let body = json!({ "error": "status must be 400..=599" });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    }
    let mut faults = shared.faults();
    if let Some(n) = request.fail_next {
        faults.fail_next = n;
        faults.status = request.status.unwrap_or(500);
        faults.retry_after_s = request.retry_after_s;
    }
    if let Some(n) = request.hang_next {
        faults.hang_next = n;
    }
    if let Some(ms) = request.latency_ms {
        faults.latency_ms = ms.min(MAX_LATENCY_MS);
    }
    (StatusCode::OK, Json(*faults)).into_response()
}

async fn reset(State(shared): State<AppState>) -> StatusCode {
    *shared.faults() = FakeFaults::default();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_session_ids_look_like_real_ones() {
        let id = mint_session_id("29f760f8-7ce1-46c9-ade3-f2dedee4ed5f", Utc::now());
        assert!(id.starts_with("1_MX4"), "{id}");
        let body = id[2..].replace('-', "+").replace('_', "/");
        let padded = format!("{body}{}", "=".repeat((4 - body.len() % 4) % 4));
        let raw = String::from_utf8(STANDARD.decode(padded).unwrap()).unwrap();
        assert!(
            raw.starts_with("1~29f760f8-7ce1-46c9-ade3-f2dedee4ed5f~~"),
            "{raw}"
        );
        assert!(raw.ends_with("~~~"), "{raw}");
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(300)), Some(300));
        assert_eq!(decode_cursor("%%%"), None);
        assert_eq!(decode_cursor(&STANDARD.encode("nope")), None);
    }

    #[test]
    fn pages_walk_newest_first_when_descending() {
        let items = [1, 2, 3, 4, 5];
        let refs: Vec<&i32> = items.iter().collect();
        let listing = Listing {
            page_size: 2,
            descending: true,
            offset: 2,
        };
        let (page, more) = listing.page(&refs);
        assert_eq!(page, vec![&3, &2]);
        assert!(more);
        let links = listing.links("http://h/v1/users", &[("name", "a b")], more);
        let next = links["next"]["href"].as_str().unwrap();
        assert!(next.contains("name=a%20b"), "{next}");
        assert!(links["prev"].is_object());
    }
}
