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
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
