//! Any instance answers any request: when a handler finds that another instance serves the
//! doctor (`ApiError::NotOwner`), this layer sends the same request to that instance and
//! relays its answer, streamed (so the availability stream works through it).
//!
//! - One hop: a forwarded request carries `x-consult-forwarded`; an instance that is not
//!   the owner either answers `421 Misdirected Request` instead of forwarding again.
//! - On a 421, an unreachable owner, or no known owner (a handoff or takeover under way),
//!   the request is run here again after the shard table changes (or a short pause), so it
//!   is served here if this instance took the shard, or forwarded to the new owner. A
//!   `NotOwner` answer had no effect, so running the request again is safe.
//! - After [`HANDOFF_WAIT`] the client gets the 503 with `Retry-After`.
//!
//! Bodies are buffered (they are small and bounded by `max_body_bytes`) so a request can be
//! sent more than once. Only active when the engine is part of a cluster.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::error::ApiError;
use super::AppState;

/// Marks a forwarded request (its value is the forwarding instance's URL).
pub const FORWARDED: HeaderName = HeaderName::from_static("x-consult-forwarded");
/// How long a request waits for a shard with no reachable owner before its 503.
pub const HANDOFF_WAIT: Duration = Duration::from_secs(5);
/// Pause between attempts when the table did not change.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Connecting to another instance.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

const UNREACHABLE: &str = "unreachable";

/// Set on a `NotOwner` response: the owner's URL, when known.
#[derive(Debug, Clone)]
pub struct NotOwner(pub Option<String>);

/// The HTTP client for forwarded requests (connection pools per instance).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // Well below the servers' idle close (`server.header_read_timeout_ms`, keep it
        // over 10 s in a cluster), so a pooled connection is not reused as it is closed.
        .pool_idle_timeout(Duration::from_secs(10))
        .build()
        .expect("a client with these options builds")
}

pub async fn forward(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cluster) = state.engine.cluster().cloned() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => return ApiError::PayloadTooLarge(state.max_body_bytes).into_response(),
    };
    let was_forwarded = parts.headers.contains_key(FORWARDED);
    let give_up = Instant::now() + HANDOFF_WAIT;
    loop {
        let response = next
            .clone()
            .run(Request::from_parts(parts.clone(), Body::from(body.clone())))
            .await;
        let Some(NotOwner(owner)) = response.extensions().get::<NotOwner>().cloned() else {
            return response;
        };
        if was_forwarded {
            // One hop only: the forwarding instance re-resolves and tries again.
            let (mut p, b) = response.into_parts();
            p.status = StatusCode::MISDIRECTED_REQUEST;
            p.headers.remove(header::RETRY_AFTER);
            return Response::from_parts(p, b);
        }
        if let Some(url) = &owner {
            let url = url.clone();
            match send(
                &state.forward_client,
                &url,
                cluster.advertise_url(),
                &parts,
                &body,
            )
            .await
            {
                Ok(answer) => {
                    cluster
                        .stats
                        .forwarded
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return answer;
                }
                Err(why) => {
                    tracing::debug!(owner = %url, why, "forwarding failed; re-resolving");
                    if why == UNREACHABLE {
                        cluster.suspect(&url);
                    }
                    let _ = cluster.refresh().await;
                }
            }
        }
        if Instant::now() >= give_up {
            return response;
        }
        if owner.is_none() {
            // No owner known here: read the lease table (the lease loop may be stopped,
            // as on an instance that is leaving).
            let _ = cluster.refresh().await;
        }
        cluster.poke();
        let until = (Instant::now() + RETRY_PAUSE).min(give_up);
        cluster.ownership().changed_or(until).await;
    }
}

/// Sends the request to `base` and relays the answer; `Err` when it should be routed again
/// (unreachable, or the instance is not the owner either).
async fn send(
    client: &reqwest::Client,
    base: &str,
    me: &str,
    parts: &Parts,
    body: &Bytes,
) -> Result<Response, &'static str> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = client
        .request(parts.method.clone(), format!("{base}{path}"))
        .body(body.clone());
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    if let Ok(me) = HeaderValue::from_str(me) {
        request = request.header(FORWARDED, me);
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        // Not connected: the request never left, so it may be routed again.
        Err(e) if e.is_connect() => return Err(UNREACHABLE),
        // Sent, then the owner went away: it may have been acted on. Never sent twice.
        Err(_) => return Ok(ambiguous(&parts.method)),
    };
    if answer.status() == StatusCode::MISDIRECTED_REQUEST {
        return Err("not the owner");
    }
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !is_hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .map_err(|_| "bad answer")
}

/// The answer when a forwarded request's outcome is unknown: a read is safe to retry; a
/// write may have completed (like a timeout).
fn ambiguous(method: &axum::http::Method) -> Response {
    if method == axum::http::Method::GET {
        ApiError::Unavailable("The service is unavailable; nothing was changed. Please retry.")
    } else {
        ApiError::Unavailable(
            "The request timed out. It may have completed: check your consultations before retrying.",
        )
    }
    .into_response()
}

/// Checks that every instance shards are forwarded to answers `/healthz`; one that does
/// not is suspected (see `Cluster::suspect`). For readiness.
pub async fn probe_remotes(client: &reqwest::Client, cluster: &consult_actors::cluster::Cluster) {
    let probes = cluster
        .ownership()
        .remotes()
        .into_iter()
        .map(|url| async move {
            let ok = client
                .get(format!("{url}/healthz"))
                .timeout(PROBE_TIMEOUT)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (url, ok)
        });
    for (url, ok) in futures_util::future::join_all(probes).await {
        if !ok {
            cluster.suspect(&url);
        }
    }
}

/// How long a readiness probe of another instance may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "host"
            | "content-length"
    )
}
