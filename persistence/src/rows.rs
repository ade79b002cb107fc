//! Reading rows back into domain values, shared by both backends: each backend implements
//! [`ReadRow`] for its row type (they differ in how timestamps are stored), and the
//! conversions here validate every stored string. Errors name the column, never its value.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use consult_actors::calendar::{BookingPolicy, DateOverrides, WeeklySchedule};
use consult_actors::outbox::{
    ConsultationSummary, Notification, NotificationKind, Recipient, RecipientRole, SessionRecord,
    SessionTask,
};
use consult_actors::{
    BookingMember, ConsultMode, Consultation, ConsultationStatus, DoctorProfile, MedicalInfo,
    SessionStatus, StoreError,
};

/// The columns [`consultation`] reads, over [`CONSULTATIONS_FROM`].
///
/// `session_status` is the session row's status when the consultation has one (an in-app
/// consultation), else the column's, which is written once with the booking: settling a
/// session writes the session row only (see `Store::settle_sessions`).
pub(crate) const CONSULTATION_COLUMNS: &str = "id, reference, doctor_id, patient_id, \
    scheduled_at, duration_minutes, status, consultation_mode, consult_mode, \
    COALESCE((SELECT s.status FROM sessions s WHERE s.consultation_id = consultations.id), \
    session_status) AS session_status, \
    reason, symptoms, medical_history, allergies, current_medications, created_at, \
    cancelled_at, booking_id, patient_name, relation";

/// Consultations with who they are for when they belong to a multi-patient booking. The
/// joined table's columns (`consultation_id`, `booking_id`, `patient_name`, `relation`)
/// share no name with `consultations`, so unqualified conditions stay unambiguous.
pub(crate) const CONSULTATIONS_FROM: &str =
    "consultations LEFT JOIN booking_members ON booking_members.consultation_id = consultations.id";

/// The `doctors` columns [`doctor`] reads.
pub(crate) const DOCTOR_COLUMNS: &str = "id, name, specialty, timezone, slot_minutes, \
    availability_schedule, is_available, is_approved, created_at, date_overrides, booking_policy";

/// Typed column access over one backend's row type.
/// The `webhook_state` a new notification row gets: `pending` (its webhook due at once)
/// while webhooks are queued (see [`consult_actors::Store::queue_webhooks`]), else `none`,
/// which no poll reads and no index holds.
pub(crate) fn webhook_state(queued: bool) -> &'static str {
    if queued {
        "pending"
    } else {
        "none"
    }
}

pub(crate) trait ReadRow {
    fn int8(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int8(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn int4(&self, column: &str) -> Result<i32, StoreError>;
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn boolean(&self, column: &str) -> Result<bool, StoreError>;
    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError>;
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The columns [`session_task`] reads, over `sessions s JOIN consultations c`.
pub(crate) const SESSION_TASK_COLUMNS: &str = "s.consultation_id, s.attempts, c.reference, \
    c.doctor_id, c.patient_id, c.consultation_mode, c.scheduled_at, c.duration_minutes, \
    c.status";

/// The `sessions` columns [`session_record`] reads.
pub(crate) const SESSION_COLUMNS: &str = "consultation_id, status, attempts, next_attempt_at, \
    last_error, provider, provider_session_id, doctor_join, patient_join, expires_at, \
    updated_at";

/// The columns [`notification`] reads, over `notifications n JOIN consultations c`.
pub(crate) const NOTIFICATION_COLUMNS: &str = "n.id, n.recipient_role, n.recipient_id, n.kind, \
    n.created_at, n.read_at, n.webhook_attempts, n.consultation_id, c.reference, c.doctor_id, \
    c.patient_id, c.scheduled_at, c.duration_minutes, c.status, c.consultation_mode, \
    COALESCE((SELECT s.status FROM sessions s WHERE s.consultation_id = c.id), \
    c.session_status) AS session_status";

fn count(row: &impl ReadRow, column: &str) -> Result<u32, StoreError> {
    u32::try_from(row.int4(column)?).map_err(|_| corrupt(&format!("{column} is negative")))
}

fn minutes(row: &impl ReadRow) -> Result<u16, StoreError> {
    u16::try_from(row.int4("duration_minutes")?)
        .map_err(|_| corrupt("consultations.duration_minutes is out of range"))
}

fn status(row: &impl ReadRow) -> Result<ConsultationStatus, StoreError> {
    ConsultationStatus::parse(&row.text("status")?)
        .ok_or_else(|| corrupt("consultations.status is not a known status"))
}

fn session_status(row: &impl ReadRow, column: &str) -> Result<SessionStatus, StoreError> {
    SessionStatus::parse(&row.text(column)?)
        .ok_or_else(|| corrupt(&format!("{column} is not a known session status")))
}

fn mode(row: &impl ReadRow, column: &str) -> Result<ConsultMode, StoreError> {
    ConsultMode::parse(&row.text(column)?)
        .ok_or_else(|| corrupt(&format!("consultations.{column} is not a known mode")))
}

/// A pending session with its consultation's facts.
pub(crate) fn session_task(row: &impl ReadRow) -> Result<SessionTask, StoreError> {
    Ok(SessionTask {
        consultation_id: row.int8("consultation_id")?,
        reference: row.text("reference")?,
        doctor_id: row.int8("doctor_id")?,
        patient_id: row.int8("patient_id")?,
        mode: mode(row, "consultation_mode")?,
        scheduled_at: row.time("scheduled_at")?,
        duration_minutes: minutes(row)?,
        consultation_status: status(row)?,
        attempts: count(row, "attempts")?,
    })
}

/// A `sessions` row.
pub(crate) fn session_record(row: &impl ReadRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        consultation_id: row.int8("consultation_id")?,
        status: session_status(row, "status")?,
        attempts: count(row, "attempts")?,
        next_attempt_at: row.time("next_attempt_at")?,
        last_error: row.opt_text("last_error")?,
        provider: row.opt_text("provider")?,
        provider_session_id: row.opt_text("provider_session_id")?,
        doctor_join: row.opt_blob("doctor_join")?,
        patient_join: row.opt_blob("patient_join")?,
        expires_at: row.opt_time("expires_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// A notification with its consultation as it stands.
pub(crate) fn notification(row: &impl ReadRow) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: row.int8("id")?,
        recipient: Recipient {
            role: RecipientRole::parse(&row.text("recipient_role")?)
                .ok_or_else(|| corrupt("notifications.recipient_role is not a known role"))?,
            id: row.int8("recipient_id")?,
        },
        kind: NotificationKind::parse(&row.text("kind")?)
            .ok_or_else(|| corrupt("notifications.kind is not a known kind"))?,
        consultation: ConsultationSummary {
            id: row.int8("consultation_id")?,
            reference: row.text("reference")?,
            doctor_id: row.int8("doctor_id")?,
            patient_id: row.int8("patient_id")?,
            scheduled_at: row.time("scheduled_at")?,
            duration_minutes: minutes(row)?,
            status: status(row)?,
            consult_mode: mode(row, "consultation_mode")?,
            session_status: session_status(row, "session_status")?,
        },
        created_at: row.time("created_at")?,
        read_at: row.opt_time("read_at")?,
        webhook_attempts: count(row, "webhook_attempts")?,
    })
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// A full consultation, medical text included.
pub(crate) fn consultation(row: &impl ReadRow) -> Result<Consultation, StoreError> {
    let mode = |column: &str| {
        ConsultMode::parse(&row.text(column)?)
            .ok_or_else(|| corrupt(&format!("consultations.{column} is not a known mode")))
    };
    Ok(Consultation {
        id: row.int8("id")?,
        reference: row.text("reference")?,
        doctor_id: row.int8("doctor_id")?,
        patient_id: row.int8("patient_id")?,
        scheduled_at: row.time("scheduled_at")?,
        duration_minutes: u16::try_from(row.int4("duration_minutes")?)
            .map_err(|_| corrupt("consultations.duration_minutes is out of range"))?,
        status: ConsultationStatus::parse(&row.text("status")?)
            .ok_or_else(|| corrupt("consultations.status is not a known status"))?,
        consultation_mode: mode("consultation_mode")?,
        consult_mode: mode("consult_mode")?,
        session_status: SessionStatus::parse(&row.text("session_status")?)
            .ok_or_else(|| corrupt("consultations.session_status is not a known status"))?,
        medical: MedicalInfo {
            reason: row.opt_text("reason")?,
            symptoms: row.opt_text("symptoms")?,
            medical_history: row.opt_text("medical_history")?,
            allergies: row.opt_text("allergies")?,
            current_medications: row.opt_text("current_medications")?,
        },
        created_at: row.time("created_at")?,
        cancelled_at: row.opt_time("cancelled_at")?,
        member: match row.opt_int8("booking_id")? {
            Some(booking_id) => Some(BookingMember {
                booking_id,
                patient_name: row.text("patient_name")?,
                relation: row.opt_text("relation")?,
            }),
            None => None,
        },
    })
}

/// A doctor's profile from its `doctors` row.
pub(crate) fn doctor(row: &impl ReadRow) -> Result<DoctorProfile, StoreError> {
    let schedule: WeeklySchedule = serde_json::from_str(&row.text("availability_schedule")?)
        .map_err(|e| {
            StoreError::Corrupt(format!("doctors.availability_schedule does not parse: {e}"))
        })?;
    let date_overrides: DateOverrides = serde_json::from_str(&row.text("date_overrides")?)
        .map_err(|e| StoreError::Corrupt(format!("doctors.date_overrides does not parse: {e}")))?;
    let policy: BookingPolicy = serde_json::from_str(&row.text("booking_policy")?)
        .map_err(|e| StoreError::Corrupt(format!("doctors.booking_policy does not parse: {e}")))?;
    Ok(DoctorProfile {
        id: row.int8("id")?,
        name: row.text("name")?,
        specialty: row.text("specialty")?,
        timezone: row
            .text("timezone")?
            .parse::<Tz>()
            .map_err(|_| corrupt("doctors.timezone is not an IANA timezone"))?,
        slot_minutes: u16::try_from(row.int4("slot_minutes")?)
            .map_err(|_| corrupt("doctors.slot_minutes is out of range"))?,
        schedule,
        is_available: row.boolean("is_available")?,
        is_approved: row.boolean("is_approved")?,
        created_at: row.time("created_at")?,
        date_overrides,
        policy,
    })
}

/// Journal and snapshot sequence numbers are `BIGINT` in the schema, `u64` in the engine.
pub(crate) fn seq_from_i64(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| corrupt("journal seq is negative"))
}
