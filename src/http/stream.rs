//! `GET /patient/doctors/{id}/availability/stream`: a doctor's slot changes as server-sent
//! events, so an open booking page sees a slot booked, held, released or cancelled by
//! someone else within moments (a reschedule is two `rescheduled` events: the start left
//! and the start taken). First `ready` (the position to resume from), then one
//! event per change; `id:` is the position, `Last-Event-ID` resumes after it (or answers
//! `resync`). Heartbeat comments keep proxies from closing an idle stream; the stream ends
//! when the server shuts down. Events carry no patient id and no medical text.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use consult_actors::feed::{ChangeKind, Position, SlotChange, Subscription};
use consult_actors::Rejection;
use futures_util::stream::{self, Stream};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::auth::PatientAuth;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use super::AppState;

/// How often an idle stream sends a heartbeat comment.
pub const HEARTBEAT_INTERVAL_S: u64 = 15;

/// The `data:` of a slot event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SlotEventData {
    pub doctor_id: i64,
    /// The slot's start (UTC); absent for `schedule_changed` and `resync`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<chrono::DateTime<chrono::Utc>>,
    /// `available` | `booked` | `held`; absent for `schedule_changed` and `resync`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::schema::StreamSlotStatus>)]
    pub status: Option<&'static str>,
}

#[derive(Serialize)]
struct ReadyData {
    doctor_id: i64,
    /// The position now: resume from it with `Last-Event-ID`.
    seq: String,
}

/// Live slot changes of one doctor (`text/event-stream`). Events: `ready`, then `booked`,
/// `held`, `released`, `cancelled`, `rescheduled` (twice: the start left, `available`, then
/// the start taken, `booked`) (data: `{doctor_id, start, status}`), `schedule_changed` and
/// `resync` (reload availability). 503 past the subscriber bounds.
#[utoipa::path(get, path = "/patient/doctors/{id}/availability/stream", tag = "patient", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Doctor id"),
        ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = "^[0-9]+(\\.[0-9]+)?$", description = "Resume after this position (`<seq>.<n>`)")),
    responses((status = 200, content_type = "text/event-stream", body = SlotEventData,
            description = "server-sent events; `data:` of slot events has this shape"),
        (status = 400, body = ErrorBody, description = "validation_failed (a bad `Last-Event-ID`), or doctor_unavailable"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody, description = "too many streams open")))]
pub async fn availability_stream(
    State(state): State<AppState>,
    _patient: PatientAuth,
    ApiPath(doctor_id): ApiPath<i64>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<Position>().ok())
                .ok_or_else(|| {
                    ApiError::field("Last-Event-ID", "must be a stream position like 12.0")
                })?,
        ),
    };
    let profile = state.engine.doctor(doctor_id).await?;
    if !(profile.is_approved && profile.is_available) {
        return Err(ApiError::Rejected(Rejection::DoctorUnavailable));
    }
    let subscription = state.engine.subscribe(doctor_id, last).await?;
    Ok(
        Sse::new(events(doctor_id, subscription, state.stopping())).keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(HEARTBEAT_INTERVAL_S))
                .text("heartbeat"),
        ),
    )
}

fn slot_event(change: &SlotChange) -> Event {
    let data = SlotEventData {
        doctor_id: change.doctor_id,
        start: change.start,
        status: change.kind.slot_status(),
    };
    Event::default()
        .event(change.kind.as_str())
        .id(change.position.to_string())
        .data(serde_json::to_string(&data).unwrap_or_default())
}

/// `ready`, the backlog, then live changes until the subscription lags (a `resync`, and
/// on), the feed closes, or the server stops.
fn events(
    doctor_id: i64,
    subscription: Subscription,
    stopping: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let ready = Event::default()
        .event("ready")
        .id(subscription.position.to_string())
        .data(
            serde_json::to_string(&ReadyData {
                doctor_id,
                seq: subscription.position.to_string(),
            })
            .unwrap_or_default(),
        );
    let mut first: Vec<Event> = vec![ready];
    first.extend(subscription.backlog.iter().map(slot_event));
    let head = stream::iter(first.into_iter().map(Ok));
    let live = stream::unfold(
        (subscription, stopping, None::<Position>),
        move |(mut sub, mut stopping, last)| async move {
            let next = tokio::select! {
                _ = stopping.wait_for(|s| *s) => return None,
                next = sub.receiver.recv() => next,
            };
            let change = match next {
                Ok(change) => change,
                // Slower than the doctor's changes: the client must reload.
                Err(RecvError::Lagged(_)) => SlotChange {
                    doctor_id,
                    position: last.unwrap_or(sub.position),
                    kind: ChangeKind::Resync,
                    start: None,
                },
                Err(RecvError::Closed) => return None,
            };
            let event = slot_event(&change);
            Some((Ok(event), (sub, stopping, Some(change.position))))
        },
    );
    futures_util::StreamExt::chain(head, live)
}
