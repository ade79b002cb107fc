//! The OpenAPI document, generated from the handlers' annotations and types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, bookings, dev, doctor, history, holds, inbox, ops, patient, stream};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Consult Scheduler",
        description = "Telehealth consultation booking. Every error is `{success: false, message, error}`; see docs/API.md in the repository for the error table."
    ),
    paths(
        patient::list_doctors,
        patient::availability,
        stream::availability_stream,
        patient::check_slot,
        holds::release_hold,
        patient::book,
        bookings::book_many,
        bookings::get_booking,
        patient::list_consultations,
        patient::get_consultation,
        patient::reschedule_consultation,
        patient::cancel_consultation,
        patient::calendar_ics,
        inbox::patient_session,
        inbox::doctor_session,
        inbox::list_notifications,
        inbox::mark_read,
        doctor::get_profile,
        doctor::get_availability,
        doctor::put_availability,
        doctor::patch_status,
        doctor::list_consultations,
        history::doctor_slot_history,
        admin::create_doctor,
        admin::approve_doctor,
        admin::list_doctors,
        history::admin_slot_history,
        dev::sign_in,
        dev::users,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi,
    ),
    // Referenced only from query parameters, whose types the paths do not collect.
    components(schemas(super::schema::InstantOrDate)),
    modifiers(&BearerAuth),
    tags(
        (name = "patient", description = "Role patient"),
        (name = "doctor", description = "Role doctor; acts on their own record"),
        (name = "admin", description = "Role admin"),
        (name = "notifications", description = "Roles patient and doctor: their own inbox"),
        (name = "ops", description = "Health, readiness, metrics"),
        (name = "dev", description = "Development profile only (404 in production): demo users and sign-in"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                declare_common_answers(op);
            }
        }
    }
}

/// Declares the answers the middleware and extractors give on any operation, so a
/// generated client knows every status it can meet: any operation 431 (headers over
/// 32 KiB) and 503 (overload, request timeout, too many connections, storage down); an
/// operation behind a bearer token 401 (no or bad token), 403 (wrong role) and 429 (the
/// caller's rate limit); one with path, query or header parameters, or a body, 400
/// (malformed); one with a path parameter 404; one with a body 413 (over the size limit).
/// Each with the error body. Operations declare their own answers beyond these (and their
/// own descriptions win). The body is read as JSON whatever its `Content-Type`, so no
/// operation answers 415.
fn declare_common_answers(op: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
    let has_body = op.request_body.is_some();
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build()
                    .into()
            });
    };
    if secured {
        add("401", "unauthorized: no, bad or expired bearer token");
        add("403", "forbidden: wrong role, or another user's resource");
        add(
            "429",
            "rate_limited: this user's rate limit; Retry-After set",
        );
    }
    // Admission (requests in flight, the request timeout) and the connection limit come
    // before routing: any operation can meet them.
    add(
        "503",
        "unavailable: overloaded, timed out, too many connections or storage down; Retry-After set",
    );
    if !params.is_empty() || has_body {
        add("400", "validation_failed: a malformed parameter or body");
    }
    if has_path {
        add("404", "not_found: no such resource");
    }
    if has_body {
        add("413", "payload_too_large: body over the configured limit");
    }
    add(
        "431",
        "headers_too_large: the request's headers together over 32 KiB",
    );
}

/// The document with the built-in bounds (`days` at most 62).
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as this server answers it: `days` bounded by the configured
/// `engine.max_availability_days`.
pub fn document_for(max_availability_days: u16) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    let mut doc = document();
    for item in doc.paths.paths.values_mut() {
        let Some(op) = item.get.as_mut() else {
            continue;
        };
        for param in op.parameters.iter_mut().flatten() {
            if param.name == "days" {
                if let Some(RefOr::T(Schema::Object(schema))) = param.schema.as_mut() {
                    schema.maximum = Some(max_availability_days.into());
                }
                param.description = Some(format!(
                    "Number of days, 1..={max_availability_days} (`engine.max_availability_days`); default 7."
                ));
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    //! The document's bounds, patterns and closed sets are written as literals in the
    //! schema attributes; these tests hold them equal to the constants and enums the server
    //! validates and answers with, so the two cannot drift apart.

    use std::collections::BTreeSet;

    use consult_actors::calendar::{self, SlotEventKind, SlotNow, SlotStatus};
    use consult_actors::outbox::NotificationKind;
    use consult_actors::{ConsultMode, ConsultationStatus, Rejection, SessionStatus};
    use serde_json::Value;

    use super::super::error::ApiError;
    use super::super::schema::*;
    use super::*;

    fn doc() -> Value {
        serde_json::to_value(document()).unwrap()
    }

    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        &doc["components"]["schemas"][name]
    }

    fn enum_of(doc: &Value, name: &str) -> BTreeSet<String> {
        schema(doc, name)["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        items.into_iter().map(str::to_owned).collect()
    }

    fn param<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
    }

    /// Every `$ref` in the document names a schema it has (an unresolvable one made
    /// schemathesis skip the doctor's `from` and `to`).
    #[test]
    fn every_reference_resolves() {
        fn walk(value: &Value, doc: &Value, refs: &mut usize) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let name = target
                            .strip_prefix("#/components/schemas/")
                            .unwrap_or_else(|| panic!("unexpected reference {target}"));
                        assert!(
                            schema(doc, name).is_object(),
                            "unresolvable reference {target}"
                        );
                        *refs += 1;
                    }
                    map.values().for_each(|v| walk(v, doc, refs));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, doc, refs)),
                _ => {}
            }
        }
        let doc = doc();
        let mut refs = 0;
        walk(&doc, &doc, &mut refs);
        assert!(refs > 100, "{refs} references");
    }

    #[test]
    fn closed_sets_are_the_engines() {
        let doc = doc();
        // Each list is made by an exhaustive match, so a new variant fails to compile here.
        let modes = [
            ConsultMode::Voice,
            ConsultMode::Video,
            ConsultMode::Chat,
            ConsultMode::Whatsapp,
        ];
        for m in modes {
            match m {
                ConsultMode::Voice
                | ConsultMode::Video
                | ConsultMode::Chat
                | ConsultMode::Whatsapp => {}
            }
        }
        assert_eq!(enum_of(&doc, "ConsultMode"), set(modes.map(|m| m.as_str())));
        for mode in enum_of(&doc, "ConsultMode") {
            assert!(ConsultMode::parse(&mode).is_some(), "{mode}");
        }
        assert_eq!(
            enum_of(&doc, "SessionMode"),
            set(modes
                .iter()
                .filter(|m| m.needs_session())
                .map(|m| m.as_str()))
        );
        let statuses = [
            ConsultationStatus::Pending,
            ConsultationStatus::Scheduled,
            ConsultationStatus::Completed,
            ConsultationStatus::Cancelled,
            ConsultationStatus::NoShow,
        ];
        for s in statuses {
            match s {
                ConsultationStatus::Pending
                | ConsultationStatus::Scheduled
                | ConsultationStatus::Completed
                | ConsultationStatus::Cancelled
                | ConsultationStatus::NoShow => {}
            }
        }
        assert_eq!(
            enum_of(&doc, "ConsultationStatus"),
            set(statuses.map(|s| s.as_str()))
        );
        let sessions = [
            SessionStatus::Pending,
            SessionStatus::Ready,
            SessionStatus::Failed,
            SessionStatus::NotRequired,
        ];
        for s in sessions {
            match s {
                SessionStatus::Pending
                | SessionStatus::Ready
                | SessionStatus::Failed
                | SessionStatus::NotRequired => {}
            }
        }
        assert_eq!(
            enum_of(&doc, "SessionStatus"),
            set(sessions.map(|s| s.as_str()))
        );
        let slot = |s: SlotStatus| match s {
            SlotStatus::Available => "available",
            SlotStatus::Booked => "booked",
            SlotStatus::Held => "held",
            SlotStatus::Past => "past",
            SlotStatus::OutsideBookingWindow => "outside_booking_window",
            SlotStatus::Full => "full",
        };
        let slots = [
            SlotStatus::Available,
            SlotStatus::Booked,
            SlotStatus::Held,
            SlotStatus::Past,
            SlotStatus::OutsideBookingWindow,
            SlotStatus::Full,
        ];
        assert_eq!(enum_of(&doc, "SlotStatus"), set(slots.map(slot)));
        for s in slots {
            // The availability answer's own mapping says the same.
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                Value::String(slot(s).into())
            );
        }
        let now = [
            SlotNow::Available,
            SlotNow::Booked,
            SlotNow::Held,
            SlotNow::Past,
            SlotNow::Unavailable,
        ];
        for s in now {
            match s {
                SlotNow::Available
                | SlotNow::Booked
                | SlotNow::Held
                | SlotNow::Past
                | SlotNow::Unavailable => {}
            }
        }
        assert_eq!(enum_of(&doc, "SlotNowStatus"), set(now.map(|s| s.as_str())));
        let rejections = [
            Rejection::DoctorUnavailable,
            Rejection::DayUnavailable,
            Rejection::OutsideAvailability,
            Rejection::OffSlotGrid,
            Rejection::InPast,
            Rejection::OutsideBookingWindow,
            Rejection::DayFull,
            Rejection::Conflict,
        ];
        for r in rejections {
            match r {
                Rejection::DoctorUnavailable
                | Rejection::DayUnavailable
                | Rejection::OutsideAvailability
                | Rejection::OffSlotGrid
                | Rejection::InPast
                | Rejection::OutsideBookingWindow
                | Rejection::DayFull
                | Rejection::Conflict => {}
            }
        }
        assert_eq!(enum_of(&doc, "RuleCode"), set(rejections.map(|r| r.code())));
        let kinds = [
            NotificationKind::ConsultationScheduled,
            NotificationKind::ConsultationCancelled,
            NotificationKind::ConsultationRescheduled,
            NotificationKind::SessionReady,
            NotificationKind::SessionFailed,
        ];
        for k in kinds {
            match k {
                NotificationKind::ConsultationScheduled
                | NotificationKind::ConsultationCancelled
                | NotificationKind::ConsultationRescheduled
                | NotificationKind::SessionReady
                | NotificationKind::SessionFailed => {}
            }
        }
        assert_eq!(
            enum_of(&doc, "NotificationEvent"),
            set(kinds.map(|k| k.as_str()))
        );
        let events = [
            SlotEventKind::Registered,
            SlotEventKind::Booked,
            SlotEventKind::Cancelled,
            SlotEventKind::RescheduledIn,
            SlotEventKind::RescheduledOut,
            SlotEventKind::ScheduleUpdated,
            SlotEventKind::StatusChanged,
        ];
        for e in events {
            match e {
                SlotEventKind::Registered
                | SlotEventKind::Booked
                | SlotEventKind::Cancelled
                | SlotEventKind::RescheduledIn
                | SlotEventKind::RescheduledOut
                | SlotEventKind::ScheduleUpdated
                | SlotEventKind::StatusChanged => {}
            }
        }
        assert_eq!(
            enum_of(&doc, "SlotEventKind"),
            set(events.map(|e| e.as_str()))
        );
        let actors = [
            calendar::ActedBy::Patient,
            calendar::ActedBy::Doctor,
            calendar::ActedBy::Admin,
            calendar::ActedBy::System,
        ];
        for a in actors {
            match a {
                calendar::ActedBy::Patient
                | calendar::ActedBy::Doctor
                | calendar::ActedBy::Admin
                | calendar::ActedBy::System => {}
            }
        }
        assert_eq!(enum_of(&doc, "Actor"), set(actors.map(|a| a.as_str())));
        let video = [
            consult_actors::vonage::VideoRole::Publisher,
            consult_actors::vonage::VideoRole::Subscriber,
            consult_actors::vonage::VideoRole::Moderator,
        ];
        let mut join = set(video.map(|r| r.as_str()));
        join.insert("member".into());
        assert_eq!(enum_of(&doc, "JoinRole"), join);
        // Every code an error can answer with is in the error body's set.
        let errors = [
            ApiError::field("x", "y"),
            ApiError::SlotTaken {
                next_available: vec![],
            },
            ApiError::Unauthorized(""),
            ApiError::Forbidden(""),
            ApiError::NotFound(String::new()),
            ApiError::MethodNotAllowed,
            ApiError::NotCancellable,
            ApiError::NotReschedulable,
            ApiError::IdempotencyKeyReused,
            ApiError::PayloadTooLarge(0),
            ApiError::HeadersTooLarge(0),
            ApiError::RateLimited,
            ApiError::Unavailable(""),
            ApiError::NotOwner { owner: None },
            ApiError::Internal(String::new()),
        ];
        let mut codes: BTreeSet<String> = errors.iter().map(|e| e.code().to_owned()).collect();
        codes.extend(rejections.map(|r| r.code().to_owned()));
        for e in &errors {
            match e {
                ApiError::Validation { .. }
                | ApiError::Rejected(_)
                | ApiError::SlotTaken { .. }
                | ApiError::Unauthorized(_)
                | ApiError::Forbidden(_)
                | ApiError::NotFound(_)
                | ApiError::MethodNotAllowed
                | ApiError::NotCancellable
                | ApiError::NotReschedulable
                | ApiError::IdempotencyKeyReused
                | ApiError::PayloadTooLarge(_)
                | ApiError::HeadersTooLarge(_)
                | ApiError::RateLimited
                | ApiError::Unavailable(_)
                | ApiError::NotOwner { .. }
                | ApiError::Internal(_)
                | ApiError::Item { .. } => {}
            }
        }
        assert_eq!(enum_of(&doc, "ErrorCode"), codes);
        assert_eq!(
            enum_of(&doc, "RoleName"),
            set(["patient", "doctor", "admin"])
        );
        // Every timezone named parses, and the answers' names are among them.
        let zones = enum_of(&doc, "Timezone");
        assert!(zones.len() > 400);
        for zone in &zones {
            assert!(zone.parse::<chrono_tz::Tz>().is_ok(), "{zone}");
        }
        for tz in [
            chrono_tz::Asia::Kolkata,
            chrono_tz::UTC,
            chrono_tz::Europe::Berlin,
        ] {
            assert!(zones.contains(tz.name()));
        }
    }

    #[test]
    fn bounds_and_patterns_are_the_servers() {
        use consult_actors::calendar::{
            MAX_BOOKING_WINDOW_DAYS, MAX_BREAKS_PER_DAY, MAX_DATE_OVERRIDES, MAX_MAX_PER_DAY,
            MAX_MIN_NOTICE_MINUTES, MIN_BOOKING_WINDOW_DAYS, MIN_MAX_PER_DAY,
        };
        use consult_actors::{
            MAX_BOOKING_ITEMS, MAX_IDEMPOTENCY_KEY_BYTES, MAX_PATIENT_NAME_CHARS,
            MAX_RELATION_CHARS, MAX_SLOT_MINUTES, MEDICAL_FIELD_MAX_CHARS, MIN_SLOT_MINUTES,
        };
        let doc = doc();
        let props = |name: &str| schema(&doc, name)["properties"].clone();
        for request in ["BookRequest", "BookingItemRequest"] {
            let p = props(request);
            for (field, max) in MEDICAL_FIELD_MAX_CHARS {
                assert_eq!(p[field]["maxLength"], max, "{request}.{field}");
                assert_eq!(
                    p[field]["pattern"], MULTILINE_TEXT_PATTERN,
                    "{request}.{field}"
                );
            }
        }
        let item = props("BookingItemRequest");
        assert_eq!(item["patient_name"]["maxLength"], MAX_PATIENT_NAME_CHARS);
        assert_eq!(item["patient_name"]["pattern"], NAME_PATTERN);
        assert_eq!(item["relation"]["maxLength"], MAX_RELATION_CHARS);
        assert_eq!(item["relation"]["pattern"], NAME_PATTERN);
        assert_eq!(
            props("MultiBookRequest")["items"]["maxItems"],
            MAX_BOOKING_ITEMS
        );
        let doctor = props("NewDoctorRequest");
        assert_eq!(doctor["name"]["pattern"], NAME_PATTERN);
        assert_eq!(doctor["specialty"]["pattern"], LINE_TEXT_PATTERN);
        for (schema_name, field) in [
            ("NewDoctorRequest", "slot_minutes"),
            ("ScheduleRequest", "slot_minutes"),
            ("DoctorDto", "slot_minutes"),
            ("AvailabilityAnswer", "slot_minutes"),
        ] {
            let p = props(schema_name);
            assert_eq!(p[field]["minimum"], MIN_SLOT_MINUTES, "{schema_name}");
            assert_eq!(p[field]["maximum"], MAX_SLOT_MINUTES, "{schema_name}");
        }
        let policy = props("PolicyDto");
        assert_eq!(
            policy["min_notice_minutes"]["maximum"],
            MAX_MIN_NOTICE_MINUTES
        );
        assert_eq!(
            policy["booking_window_days"]["minimum"],
            MIN_BOOKING_WINDOW_DAYS
        );
        assert_eq!(
            policy["booking_window_days"]["maximum"],
            MAX_BOOKING_WINDOW_DAYS
        );
        assert_eq!(policy["max_per_day"]["minimum"], MIN_MAX_PER_DAY);
        assert_eq!(policy["max_per_day"]["maximum"], MAX_MAX_PER_DAY);
        assert_eq!(
            props("DayWindowDto")["breaks"]["maxItems"],
            MAX_BREAKS_PER_DAY
        );
        assert_eq!(
            props("DateOverrideDto")["breaks"]["maxItems"],
            MAX_BREAKS_PER_DAY
        );
        assert_eq!(
            schema(&doc, "DateOverridesUpdate")["maxProperties"],
            MAX_DATE_OVERRIDES
        );
        for (schema_name, field) in [
            ("DayWindowDto", "start"),
            ("DayWindowDto", "end"),
            ("BreakDto", "start"),
            ("DateOverrideDto", "start"),
        ] {
            assert_eq!(
                props(schema_name)[field]["pattern"],
                LOCAL_TIME_PATTERN,
                "{schema_name}.{field}"
            );
        }
        assert_eq!(
            props("MarkReadRequest")["ids"]["maxItems"],
            consult_actors::MAX_LIST_LIMIT
        );
        let limit = |path: &str| param(&doc, path, "get", "limit")["schema"].clone();
        for path in ["/patient/consultations", "/doctor/consultations"] {
            assert_eq!(limit(path)["minimum"], 1);
            assert_eq!(limit(path)["maximum"], crate::http::patient::MAX_LIST_LIMIT);
        }
        assert_eq!(
            limit("/notifications")["maximum"],
            consult_actors::MAX_LIST_LIMIT
        );
        let days = consult_actors::EngineSettings::default().max_availability_days;
        for path in ["/patient/doctors/{id}/availability", "/doctor/availability"] {
            assert_eq!(param(&doc, path, "get", "days")["schema"]["maximum"], days);
            assert_eq!(param(&doc, path, "get", "days")["schema"]["minimum"], 1);
        }
        for path in ["/patient/doctors/book", "/patient/bookings"] {
            let key = &param(&doc, path, "post", "Idempotency-Key")["schema"];
            assert_eq!(key["maxLength"], MAX_IDEMPOTENCY_KEY_BYTES);
            assert_eq!(key["pattern"], IDEMPOTENCY_KEY_PATTERN);
        }
        assert_eq!(
            param(
                &doc,
                "/patient/doctors/{id}/availability/stream",
                "get",
                "Last-Event-ID"
            )["schema"]["pattern"],
            STREAM_POSITION_PATTERN
        );
        // The served document follows the configured bound.
        let served = serde_json::to_value(document_for(10)).unwrap();
        assert_eq!(
            param(&served, "/doctor/availability", "get", "days")["schema"]["maximum"],
            10
        );
    }

    #[test]
    fn the_patterns_say_what_the_server_checks() {
        use consult_actors::{has_control_chars, TextKind};
        let matches = |pattern: &str, text: &str| {
            regex::Regex::new(pattern)
                .unwrap_or_else(|e| panic!("{pattern}: {e}"))
                .is_match(text)
        };
        let samples = [
            "",
            " ",
            "Ada",
            " Ada ",
            "a\tb",
            "a\nb\r\n",
            "a\u{0}b",
            "a\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}",
            "Müdigkeit, 头痛",
            "\u{a0}",
            "\t",
        ];
        for text in samples {
            assert_eq!(
                matches(MULTILINE_TEXT_PATTERN, text),
                !has_control_chars(text, TextKind::Multiline),
                "{text:?}"
            );
            assert_eq!(
                matches(LINE_TEXT_PATTERN, text),
                !has_control_chars(text, TextKind::Line),
                "{text:?}"
            );
            assert_eq!(
                matches(NAME_PATTERN, text),
                !has_control_chars(text, TextKind::Line) && !text.trim().is_empty(),
                "{text:?}"
            );
        }
        for h in 0..=25 {
            for m in [0, 5, 30, 59, 60] {
                let t = format!("{h:02}:{m:02}");
                assert_eq!(
                    matches(LOCAL_TIME_PATTERN, &t),
                    consult_actors::calendar::LocalTime::parse(&t).is_some(),
                    "{t}"
                );
            }
        }
        for bad in ["9:00", "+9:00", "24:01", "", "12:00:00"] {
            assert!(!matches(LOCAL_TIME_PATTERN, bad), "{bad}");
        }
        for key in ["a", "abc-123_~!", &"k".repeat(255)] {
            assert!(matches(IDEMPOTENCY_KEY_PATTERN, key));
            assert!(consult_actors::valid_idempotency_key(key), "{key}");
        }
        for key in ["", "a b", "ключ", "a\u{7f}"] {
            assert!(!matches(IDEMPOTENCY_KEY_PATTERN, key), "{key}");
            assert!(!consult_actors::valid_idempotency_key(key), "{key}");
        }
    }
}
