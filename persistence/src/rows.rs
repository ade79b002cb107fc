//! Reading rows back into domain values, shared by both backends: each backend implements
//! [`ReadRow`] for its row type (they differ in how timestamps are stored), and the
//! conversions here validate every stored string. Errors name the column, never its value.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use consult_actors::calendar::WeeklySchedule;
use consult_actors::{
    ConsultMode, Consultation, ConsultationStatus, DoctorProfile, MedicalInfo, SessionStatus,
    StoreError,
};

/// The `consultations` columns [`consultation`] reads.
pub(crate) const CONSULTATION_COLUMNS: &str = "id, reference, doctor_id, patient_id, \
    scheduled_at, duration_minutes, status, consultation_mode, consult_mode, session_status, \
    reason, symptoms, medical_history, allergies, current_medications, created_at, cancelled_at";

/// The `doctors` columns [`doctor`] reads.
pub(crate) const DOCTOR_COLUMNS: &str = "id, name, specialty, timezone, slot_minutes, \
    availability_schedule, is_available, is_approved, created_at";

/// Typed column access over one backend's row type.
pub(crate) trait ReadRow {
    fn int8(&self, column: &str) -> Result<i64, StoreError>;
    fn int4(&self, column: &str) -> Result<i32, StoreError>;
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn boolean(&self, column: &str) -> Result<bool, StoreError>;
    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError>;
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
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
    })
}

/// A doctor's profile from its `doctors` row.
pub(crate) fn doctor(row: &impl ReadRow) -> Result<DoctorProfile, StoreError> {
    let schedule: WeeklySchedule = serde_json::from_str(&row.text("availability_schedule")?)
        .map_err(|e| {
            StoreError::Corrupt(format!("doctors.availability_schedule does not parse: {e}"))
        })?;
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
    })
}

/// Journal and snapshot sequence numbers are `BIGINT` in the schema, `u64` in the engine.
pub(crate) fn seq_from_i64(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| corrupt("journal seq is negative"))
}
