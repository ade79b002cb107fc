//! Availability answers as JSON bytes encoded once: the engine keeps them beside the
//! doctor's view (`Engine::availability_encoded`), so a repeated read is served without
//! rebuilding or re-serializing the day. The asking patient's own hold, the one part that
//! differs between patients, is spliced in per request.

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use consult_actors::calendar::Availability;
use serde::Serialize;

use super::dto::AvailabilityAnswer;
use super::holds::HoldDto;

/// The body `Json(AvailabilityAnswer::from(answer))` would send (without `your_hold`).
pub fn encode(answer: &Availability) -> Bytes {
    Bytes::from(to_json(&AvailabilityAnswer::from(answer)))
}

/// `body` with `"your_hold"` added as its last field: the bytes the answer with that hold
/// serializes to, since `your_hold` is the answer's last field and is left out when `None`.
pub fn with_hold(body: Bytes, hold: Option<&HoldDto>) -> Bytes {
    let Some(hold) = hold else {
        return body;
    };
    let Some(open) = body.strip_suffix(b"}") else {
        return body;
    };
    let mut out = Vec::with_capacity(body.len() + 96);
    out.extend_from_slice(open);
    out.extend_from_slice(br#","your_hold":"#);
    out.extend_from_slice(&to_json(hold));
    out.push(b'}');
    Bytes::from(out)
}

/// A 200 with a JSON body, as `Json` answers it.
pub fn json_response(body: Bytes) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// Serializing these answers cannot fail: plain structs, maps keyed by dates (strings).
fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("availability answers serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use consult_actors::calendar::{
        BookingPolicy, DateOverrides, DayView, DayWindow, LocalTime, SlotStatus, SlotView,
        WeeklySchedule,
    };

    fn answer() -> Availability {
        let start = Utc.with_ymd_and_hms(2030, 1, 7, 9, 0, 0).unwrap();
        Availability {
            doctor_id: 7,
            timezone: chrono_tz::Europe::Paris,
            slot_minutes: 30,
            schedule: WeeklySchedule::every_day(DayWindow::open(
                LocalTime::hm(9, 0),
                LocalTime::hm(17, 0),
            )),
            date_overrides: DateOverrides::default(),
            policy: BookingPolicy::default(),
            bookable: true,
            booked_slots: vec![start],
            days: vec![DayView {
                date: start.date_naive(),
                enabled: true,
                slots: vec![SlotView {
                    start,
                    local_time: "10:00".into(),
                    status: SlotStatus::Held,
                }],
                overridden: false,
                breaks: Default::default(),
                booked: 1,
                full: false,
            }],
        }
    }

    #[test]
    fn a_spliced_hold_gives_the_bytes_of_the_answer_serialized_with_it() {
        let hold = HoldDto {
            start: Utc.with_ymd_and_hms(2030, 1, 7, 9, 30, 0).unwrap(),
            held_until: Utc.with_ymd_and_hms(2030, 1, 7, 8, 5, 0).unwrap(),
        };
        let mut whole = AvailabilityAnswer::from(&answer());
        whole.your_hold = Some(hold.clone());
        assert_eq!(
            with_hold(encode(&answer()), Some(&hold)),
            serde_json::to_vec(&whole).unwrap()
        );
        assert_eq!(
            with_hold(encode(&answer()), None),
            serde_json::to_vec(&AvailabilityAnswer::from(&answer())).unwrap()
        );
    }
}
