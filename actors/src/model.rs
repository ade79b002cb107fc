//! Plain data shared by the rules, the actors and the store: doctors, consultations,
//! booking requests. No behaviour beyond parsing and formatting lives here.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::calendar::{BookingPolicy, DateOverrides, WeeklySchedule};

/// A doctor's numeric id (the JWT `sub` of a doctor).
pub type DoctorId = i64;
/// A patient's numeric id (the JWT `sub` of a patient).
pub type PatientId = i64;
/// A consultation's numeric id, allocated by the engine.
pub type ConsultationId = i64;

/// Default slot length, the seed's 30 minutes.
pub const DEFAULT_SLOT_MINUTES: u16 = 30;
/// Shortest slot a doctor may configure.
pub const MIN_SLOT_MINUTES: u16 = 5;
/// Longest slot a doctor may configure; also bounds the conflict range query.
pub const MAX_SLOT_MINUTES: u16 = 240;

/// Everything the engine knows about a doctor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorProfile {
    pub id: DoctorId,
    pub name: String,
    pub specialty: String,
    /// IANA timezone the weekly schedule is written in.
    pub timezone: Tz,
    pub slot_minutes: u16,
    pub schedule: WeeklySchedule,
    /// The doctor's own switch (`PATCH /doctor/status`).
    pub is_available: bool,
    /// Set by an admin; unapproved doctors cannot be booked.
    pub is_approved: bool,
    pub created_at: DateTime<Utc>,
    /// Local dates whose window replaces the weekly one. Absent in data written before
    /// overrides existed.
    #[serde(default)]
    pub date_overrides: DateOverrides,
    /// The doctor's own booking bounds. Absent in data written before policies existed.
    #[serde(default)]
    pub policy: BookingPolicy,
}

/// What an admin gives to register a doctor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDoctor {
    pub name: String,
    pub specialty: String,
    pub timezone: Tz,
    pub slot_minutes: u16,
    pub schedule: WeeklySchedule,
    pub is_available: bool,
    pub is_approved: bool,
}

impl NewDoctor {
    /// The profile this registration becomes, once the store has given it `id`.
    pub fn profile(&self, id: DoctorId, created_at: DateTime<Utc>) -> DoctorProfile {
        DoctorProfile {
            id,
            name: self.name.clone(),
            specialty: self.specialty.clone(),
            timezone: self.timezone,
            slot_minutes: self.slot_minutes,
            schedule: self.schedule,
            is_available: self.is_available,
            is_approved: self.is_approved,
            created_at,
            date_overrides: DateOverrides::new(),
            policy: BookingPolicy::default(),
        }
    }
}

/// Lifecycle of a consultation. `Pending` and `Scheduled` are active: they hold their slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultationStatus {
    Pending,
    Scheduled,
    Completed,
    Cancelled,
    NoShow,
}

impl ConsultationStatus {
    /// Whether a consultation in this status occupies its slot.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Scheduled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Scheduled => "scheduled",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::NoShow => "no_show",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "scheduled" => Self::Scheduled,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "no_show" => Self::NoShow,
            _ => return None,
        })
    }
}

/// How the consultation takes place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultMode {
    Voice,
    Video,
    Chat,
    Whatsapp,
}

impl ConsultMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voice => "voice",
            Self::Video => "video",
            Self::Chat => "chat",
            Self::Whatsapp => "whatsapp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "voice" => Self::Voice,
            "video" => Self::Video,
            "chat" => Self::Chat,
            "whatsapp" => Self::Whatsapp,
            _ => return None,
        })
    }

    /// In-app modes get a Vonage session; WhatsApp happens outside the app.
    pub fn needs_session(self) -> bool {
        !matches!(self, Self::Whatsapp)
    }
}

/// State of the in-app session of a consultation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Pending,
    Ready,
    Failed,
    NotRequired,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::NotRequired => "not_required",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            "not_required" => Self::NotRequired,
            _ => return None,
        })
    }

    /// The status a fresh booking in `mode` starts with.
    pub fn initial_for(mode: ConsultMode) -> Self {
        if mode.needs_session() {
            Self::Pending
        } else {
            Self::NotRequired
        }
    }
}

/// Free-text medical information a patient may attach to a booking. Never logged, never
/// journaled (the journal holds scheduling facts only); it lives in the consultations table.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MedicalInfo {
    pub reason: Option<String>,
    pub symptoms: Option<String>,
    pub medical_history: Option<String>,
    pub allergies: Option<String>,
    pub current_medications: Option<String>,
}

impl std::fmt::Debug for MedicalInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MedicalInfo(<redacted>)")
    }
}

/// Longest accepted medical text per field, in characters (Unicode scalar values), in the
/// order of the booking form: a reason is a line, a history is a page.
pub const MEDICAL_FIELD_MAX_CHARS: [(&str, usize); 5] = [
    ("reason", 500),
    ("symptoms", 2000),
    ("medical_history", 4000),
    ("allergies", 1000),
    ("current_medications", 1000),
];

impl MedicalInfo {
    /// The fields by name, in the order of [`MEDICAL_FIELD_MAX_CHARS`].
    pub fn fields(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("reason", self.reason.as_deref()),
            ("symptoms", self.symptoms.as_deref()),
            ("medical_history", self.medical_history.as_deref()),
            ("allergies", self.allergies.as_deref()),
            ("current_medications", self.current_medications.as_deref()),
        ]
    }

    /// Every field over its limit or holding a control character, with the reason, in
    /// form order.
    pub fn invalid_fields(&self) -> Vec<(&'static str, String)> {
        self.fields()
            .into_iter()
            .zip(MEDICAL_FIELD_MAX_CHARS)
            .filter_map(|((field, value), (_, max))| {
                let value = value?;
                if value.chars().count() > max {
                    Some((field, format!("must be at most {max} characters")))
                } else if has_control_chars(value, TextKind::Multiline) {
                    Some((field, CONTROL_CHARS_REASON.to_owned()))
                } else {
                    None
                }
            })
            .collect()
    }
}

/// A patient's request to book one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingRequest {
    pub doctor_id: DoctorId,
    pub patient_id: PatientId,
    pub scheduled_at: DateTime<Utc>,
    pub mode: ConsultMode,
    pub medical: MedicalInfo,
}

/// Who a consultation of a multi-patient booking is for: the booker (the patient who signed
/// in) books for a family member. Personal data: stored with the consultation, never
/// journaled and never logged (`Debug` leaves the name out).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingMember {
    /// The multi-patient booking this consultation belongs to (the id of its first
    /// consultation).
    pub booking_id: i64,
    pub patient_name: String,
    /// E.g. `self`, `child`, `parent`, `spouse`; free text within bounds.
    pub relation: Option<String>,
}

impl std::fmt::Debug for BookingMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BookingMember")
            .field("booking_id", &self.booking_id)
            .finish_non_exhaustive()
    }
}

/// Whether a text may span lines (tab, line feed and carriage return allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// A name or a label: no control character at all.
    Line,
    /// Free text: tab, line feed and carriage return allowed.
    Multiline,
}

/// The reason given for text refused by [`has_control_chars`].
pub const CONTROL_CHARS_REASON: &str = "must not contain control characters";

/// Whether `text` holds a control character (C0, DEL or C1) that stored text may not: a
/// NUL byte cannot be stored in Postgres text at all, and escape sequences have no place
/// in a name or a note shown to someone else.
pub fn has_control_chars(text: &str, kind: TextKind) -> bool {
    text.chars().any(|c| {
        c.is_control() && !(kind == TextKind::Multiline && matches!(c, '\t' | '\n' | '\r'))
    })
}

/// Most consultations in one multi-patient booking.
pub const MAX_BOOKING_ITEMS: usize = 10;
/// Longest `patient_name`, in characters.
pub const MAX_PATIENT_NAME_CHARS: usize = 200;
/// Longest `relation`, in characters.
pub const MAX_RELATION_CHARS: usize = 50;

/// One consultation of a multi-patient booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingItem {
    pub doctor_id: DoctorId,
    pub scheduled_at: DateTime<Utc>,
    pub mode: ConsultMode,
    pub patient_name: String,
    pub relation: Option<String>,
    pub medical: MedicalInfo,
}

/// A patient's request to book several consultations at once (for themselves and family
/// members, with one or several doctors): all of them, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiBookingRequest {
    /// The booker; every consultation is theirs to see, move and cancel.
    pub patient_id: PatientId,
    pub items: Vec<BookingItem>,
}

/// A multi-patient booking as made: its id and its consultations in item order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiBooking {
    pub id: i64,
    pub consultations: Vec<Consultation>,
}

/// Longest accepted idempotency key, in bytes (visible ASCII only).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// Whether `key` is an acceptable idempotency key: 1 to [`MAX_IDEMPOTENCY_KEY_BYTES`]
/// visible ASCII characters (`!` to `~`), so it fits any index and any log line.
pub fn valid_idempotency_key(key: &str) -> bool {
    (1..=MAX_IDEMPOTENCY_KEY_BYTES).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_graphic())
}

/// An idempotency key to store with the record that answers it, in the record's own
/// transaction: a repeat after a crash finds it. The consultation it answers with is the
/// record's (`Booked` or `Rescheduled`).
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub patient_id: PatientId,
    pub key: String,
    /// A hash of the whole request (never the request itself: it holds medical text).
    pub fingerprint: String,
    /// After this the key is unknown again.
    pub expires_at: DateTime<Utc>,
}

/// Keys are the client's; shown in full only at debug level, so `Debug` leaves it out.
impl std::fmt::Debug for IdempotencyClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyClaim")
            .field("patient_id", &self.patient_id)
            .field("fingerprint", &self.fingerprint)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A stored idempotency key: what a repeat is compared with and answered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdempotency {
    pub fingerprint: String,
    pub consultation_id: ConsultationId,
    pub expires_at: DateTime<Utc>,
}

/// Who asks for a change; the doctor actor checks ownership with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Requester {
    Patient(PatientId),
    Doctor(DoctorId),
    Admin,
}

impl Requester {
    /// Who asked, for logs: `patient` | `doctor` | `admin`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Patient(_) => "patient",
            Self::Doctor(_) => "doctor",
            Self::Admin => "admin",
        }
    }
}

/// A doctor's change to their timezone, slot length, weekly windows, date overrides and
/// policy (`None`: unchanged). Existing consultations are kept even when the new schedule
/// no longer covers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleUpdate {
    pub timezone: Option<Tz>,
    pub slot_minutes: Option<u16>,
    pub schedule: WeeklySchedule,
    /// Replaces every override when given.
    pub date_overrides: Option<DateOverrides>,
    pub policy: Option<BookingPolicy>,
}

/// A change of the doctor's own availability switch and/or the admin's approval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub is_available: Option<bool>,
    pub is_approved: Option<bool>,
}

/// A consultation as stored and as answered to callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consultation {
    pub id: ConsultationId,
    /// Human-friendly reference, `CONS-` + 6 unambiguous characters.
    pub reference: String,
    pub doctor_id: DoctorId,
    pub patient_id: PatientId,
    pub scheduled_at: DateTime<Utc>,
    pub duration_minutes: u16,
    pub status: ConsultationStatus,
    pub consultation_mode: ConsultMode,
    /// The seed's legacy name for the mode; always equal to `consultation_mode`.
    pub consult_mode: ConsultMode,
    pub session_status: SessionStatus,
    pub medical: MedicalInfo,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Set for the consultations of a multi-patient booking.
    pub member: Option<BookingMember>,
}

/// Characters of a reference: no 0/O, 1/I/L, so it can be read aloud and retyped.
const REFERENCE_ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
const REFERENCE_SPACE: i64 = 31 * 31 * 31 * 31 * 31 * 31; // 887,503,681
/// Multiplier of the affine bijection; coprime with 31^6 so distinct ids give distinct codes.
const REFERENCE_MULTIPLIER: i64 = 387_420_489; // 3^18
const REFERENCE_OFFSET: i64 = 123_456_789;

/// The reference of consultation `id`: `CONS-` + 6 characters, unique by construction for
/// the first 887,503,681 ids (an affine bijection of the id), longer beyond that.
pub fn reference_for(id: ConsultationId) -> String {
    let id = id.max(0);
    let low = id % REFERENCE_SPACE;
    let mut high = id / REFERENCE_SPACE;
    let mut v = ((low as i128 * REFERENCE_MULTIPLIER as i128 + REFERENCE_OFFSET as i128)
        % REFERENCE_SPACE as i128) as i64;
    let mut code = Vec::with_capacity(8);
    for _ in 0..6 {
        code.push(REFERENCE_ALPHABET[(v % 31) as usize]);
        v /= 31;
    }
    while high > 0 {
        code.push(REFERENCE_ALPHABET[(high % 31) as usize]);
        high /= 31;
    }
    code.reverse();
    format!(
        "CONS-{}",
        String::from_utf8(code).expect("alphabet is ascii")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn references_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for id in (0..200_000).chain(REFERENCE_SPACE - 10..REFERENCE_SPACE + 10) {
            let r = reference_for(id);
            assert!(r.starts_with("CONS-"));
            assert!(
                r[5..].bytes().all(|b| REFERENCE_ALPHABET.contains(&b)),
                "{r}"
            );
            assert!(seen.insert(r), "duplicate reference for {id}");
        }
        assert_eq!(reference_for(1).len(), 11);
    }

    #[test]
    fn medical_info_debug_is_redacted() {
        let m = MedicalInfo {
            reason: Some("chest pain".into()),
            ..Default::default()
        };
        assert!(!format!("{m:?}").contains("chest"));
    }
}
