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
/// generated client knows every status it can meet: an operation behind a bearer token
/// can answer 401 (no or bad token), 403 (wrong role), 429 (the caller's rate limit) and
/// 503 (overload, request timeout, storage down); one with path, query or header
/// parameters, or a body, 400 (malformed); one with a path parameter 404; one with a body
/// 413 (over the size limit); any operation 431 (headers over 32 KiB). Each with the error
/// body. Operations declare their own
/// answers beyond these (and their own descriptions win).
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
    if secured || has_body {
        add(
            "503",
            "unavailable: overloaded, timed out or storage down; Retry-After set",
        );
    }
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

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
