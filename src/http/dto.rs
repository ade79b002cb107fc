//! The API's JSON shapes (requests and answers), with their OpenAPI schemas, and the
//! conversions from the engine's types. Field names are the seed's, exactly.

use chrono::{DateTime, NaiveDate, Utc};
use consult_actors::calendar::{Availability, DayWindow, LocalTime, SlotStatus, WeeklySchedule};
use consult_actors::{Consultation, DoctorProfile};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;

/// One weekday's window, `HH:MM` local times.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DayWindowDto {
    pub enabled: bool,
    #[schema(example = "09:00")]
    pub start: String,
    #[schema(example = "17:00")]
    pub end: String,
}

/// The seed's `availability_schedule`: all seven days by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDto {
    pub monday: DayWindowDto,
    pub tuesday: DayWindowDto,
    pub wednesday: DayWindowDto,
    pub thursday: DayWindowDto,
    pub friday: DayWindowDto,
    pub saturday: DayWindowDto,
    pub sunday: DayWindowDto,
}

impl From<&WeeklySchedule> for ScheduleDto {
    fn from(s: &WeeklySchedule) -> Self {
        let d = |w: &DayWindow| DayWindowDto {
            enabled: w.enabled,
            start: w.start.to_string(),
            end: w.end.to_string(),
        };
        Self {
            monday: d(&s.monday),
            tuesday: d(&s.tuesday),
            wednesday: d(&s.wednesday),
            thursday: d(&s.thursday),
            friday: d(&s.friday),
            saturday: d(&s.saturday),
            sunday: d(&s.sunday),
        }
    }
}

impl ScheduleDto {
    /// The engine's schedule; times must be `HH:MM`. Window rules are the engine's.
    pub fn parse(&self) -> Result<WeeklySchedule, ApiError> {
        let w = |name: &str, d: &DayWindowDto| -> Result<DayWindow, ApiError> {
            let time = |which: &str, s: &str| {
                LocalTime::parse(s).ok_or_else(|| {
                    ApiError::field(
                        format!("availability_schedule.{name}.{which}"),
                        format!("`{s}` is not a time HH:MM"),
                    )
                })
            };
            Ok(DayWindow {
                enabled: d.enabled,
                start: time("start", &d.start)?,
                end: time("end", &d.end)?,
            })
        };
        Ok(WeeklySchedule {
            monday: w("monday", &self.monday)?,
            tuesday: w("tuesday", &self.tuesday)?,
            wednesday: w("wednesday", &self.wednesday)?,
            thursday: w("thursday", &self.thursday)?,
            friday: w("friday", &self.friday)?,
            saturday: w("saturday", &self.saturday)?,
            sunday: w("sunday", &self.sunday)?,
        })
    }
}

/// An IANA timezone name from a request.
pub fn parse_timezone(field: &str, name: &str) -> Result<chrono_tz::Tz, ApiError> {
    name.parse()
        .map_err(|_| ApiError::field(field, format!("`{name}` is not an IANA timezone")))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DoctorDto {
    pub id: i64,
    pub name: String,
    pub specialty: String,
    #[schema(example = "Asia/Kolkata")]
    pub timezone: String,
    pub is_available: bool,
    pub is_approved: bool,
    pub slot_minutes: u16,
    pub availability_schedule: ScheduleDto,
    pub created_at: DateTime<Utc>,
}

impl From<&DoctorProfile> for DoctorDto {
    fn from(p: &DoctorProfile) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            specialty: p.specialty.clone(),
            timezone: p.timezone.name().to_owned(),
            is_available: p.is_available,
            is_approved: p.is_approved,
            slot_minutes: p.slot_minutes,
            availability_schedule: (&p.schedule).into(),
            created_at: p.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DoctorsAnswer {
    pub success: bool,
    pub doctors: Vec<DoctorDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DoctorAnswer {
    pub success: bool,
    pub doctor: DoctorDto,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityQuery {
    /// First local date (doctor's timezone), `YYYY-MM-DD`; default today there.
    pub from: Option<NaiveDate>,
    /// Number of days, 1..=62; default 7.
    pub days: Option<u16>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SlotDto {
    pub start: DateTime<Utc>,
    #[schema(example = "09:30")]
    pub local_time: String,
    /// `available` | `booked` | `held` | `past`
    #[schema(example = "available")]
    pub status: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DayDto {
    pub date: NaiveDate,
    pub enabled: bool,
    pub slots: Vec<SlotDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityAnswer {
    pub success: bool,
    pub doctor_id: i64,
    pub timezone: String,
    pub slot_minutes: u16,
    pub availability_schedule: ScheduleDto,
    pub booked_slots: Vec<DateTime<Utc>>,
    pub days: Vec<DayDto>,
    /// The asking patient's own live hold on this doctor (its slot shows as `held`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub your_hold: Option<super::holds::HoldDto>,
}

impl From<Availability> for AvailabilityAnswer {
    fn from(a: Availability) -> Self {
        Self {
            success: true,
            doctor_id: a.doctor_id,
            timezone: a.timezone.name().to_owned(),
            slot_minutes: a.slot_minutes,
            availability_schedule: (&a.schedule).into(),
            booked_slots: a.booked_slots,
            your_hold: None,
            days: a
                .days
                .into_iter()
                .map(|d| DayDto {
                    date: d.date,
                    enabled: d.enabled,
                    slots: d
                        .slots
                        .into_iter()
                        .map(|s| SlotDto {
                            start: s.start,
                            local_time: s.local_time,
                            status: match s.status {
                                SlotStatus::Available => "available",
                                SlotStatus::Booked => "booked",
                                SlotStatus::Held => "held",
                                SlotStatus::Past => "past",
                            }
                            .to_owned(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckSlotRequest {
    pub doctor_id: i64,
    /// RFC 3339, any offset.
    pub scheduled_at: DateTime<chrono::FixedOffset>,
    /// Reserve the slot for this patient for a few minutes.
    #[serde(default)]
    pub hold: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckSlotAnswer {
    pub success: bool,
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookRequest {
    pub doctor_id: i64,
    /// RFC 3339, any offset.
    pub scheduled_at: DateTime<chrono::FixedOffset>,
    /// `voice` | `video` | `chat` | `whatsapp`
    #[schema(example = "video")]
    pub consult_mode: String,
    pub reason: Option<String>,
    pub symptoms: Option<String>,
    pub medical_history: Option<String>,
    pub allergies: Option<String>,
    pub current_medications: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleRequest {
    /// The new start with the same doctor; RFC 3339, any offset.
    pub scheduled_at: DateTime<chrono::FixedOffset>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsultationDto {
    pub id: i64,
    #[schema(example = "CONS-7K2Q9X")]
    pub reference: String,
    pub doctor_id: i64,
    pub patient_id: i64,
    pub scheduled_at: DateTime<Utc>,
    pub duration_minutes: u16,
    /// `pending` | `scheduled` | `completed` | `cancelled` | `no_show`
    pub status: String,
    pub consultation_mode: String,
    /// The seed's name for `consultation_mode`; always equal.
    pub consult_mode: String,
    /// `pending` | `ready` | `failed` | `not_required`
    pub session_status: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The doctor's name, in the patient's consultation answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doctor_name: Option<String>,
    /// The doctor's IANA timezone, in the patient's consultation answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doctor_timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symptoms: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medical_history: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allergies: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_medications: Option<String>,
    /// The multi-patient booking this consultation belongs to; `null` for single bookings.
    pub booking_id: Option<i64>,
    /// Who it is for, in a multi-patient booking (the booker's family member).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_name: Option<String>,
    /// The booker's relation to `patient_name`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
}

impl ConsultationDto {
    /// With the doctor's name and timezone, for the patient who cannot look them up when
    /// the doctor no longer takes bookings.
    pub fn with_doctor(mut self, doctor: &DoctorProfile) -> Self {
        self.doctor_name = Some(doctor.name.clone());
        self.doctor_timezone = Some(doctor.timezone.name().to_owned());
        self
    }
}

impl From<Consultation> for ConsultationDto {
    fn from(c: Consultation) -> Self {
        Self {
            id: c.id,
            reference: c.reference,
            doctor_id: c.doctor_id,
            patient_id: c.patient_id,
            scheduled_at: c.scheduled_at,
            duration_minutes: c.duration_minutes,
            status: c.status.as_str().to_owned(),
            consultation_mode: c.consultation_mode.as_str().to_owned(),
            consult_mode: c.consult_mode.as_str().to_owned(),
            session_status: c.session_status.as_str().to_owned(),
            created_at: c.created_at,
            cancelled_at: c.cancelled_at,
            doctor_name: None,
            doctor_timezone: None,
            reason: c.medical.reason,
            symptoms: c.medical.symptoms,
            medical_history: c.medical.medical_history,
            allergies: c.medical.allergies,
            current_medications: c.medical.current_medications,
            booking_id: c.member.as_ref().map(|m| m.booking_id),
            patient_name: c.member.as_ref().map(|m| m.patient_name.clone()),
            relation: c.member.and_then(|m| m.relation),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsultationAnswer {
    pub success: bool,
    pub consultation: ConsultationDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsultationsAnswer {
    pub success: bool,
    pub consultations: Vec<ConsultationDto>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many, 1..=500; default 100.
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DoctorConsultationsQuery {
    /// Start of the range: RFC 3339, or `YYYY-MM-DD` (midnight in the doctor's timezone).
    /// Default: today in the doctor's timezone.
    pub from: Option<String>,
    /// End of the range (exclusive), same forms; default 30 days after `from`, at most 366.
    pub to: Option<String>,
    /// At most this many, 1..=500; default 100.
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// IANA timezone; unchanged if absent.
    pub timezone: Option<String>,
    /// Slot length in minutes, 5..=240; unchanged if absent.
    pub slot_minutes: Option<u16>,
    pub availability_schedule: ScheduleDto,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub is_available: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDoctorRequest {
    pub name: String,
    pub specialty: String,
    /// IANA timezone, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// Default: Monday to Friday, 09:00-17:00.
    pub availability_schedule: Option<ScheduleDto>,
    /// Default 30.
    pub slot_minutes: Option<u16>,
    /// Default true; approval is separate (`POST /admin/doctors/{id}/approve`).
    pub is_available: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthAnswer {
    pub status: String,
}

/// A caller's way into an in-app consultation.
#[derive(Debug, Serialize, ToSchema)]
pub struct JoinDto {
    /// `vonage` or `fake`.
    pub provider: String,
    /// `voice` | `video` | `chat`
    pub mode: String,
    /// Voice is a video session whose clients publish audio only.
    pub audio_only: bool,
    /// The Vonage application id (video clients connect with it).
    pub application_id: String,
    /// Video session id (voice, video).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Conversation id (chat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The caller's Vonage user name (chat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// `moderator` (doctor) or `publisher` (patient) for video; `member` for chat.
    pub role: String,
    /// The caller's client token (JWT). Never logged.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionAnswer {
    pub success: bool,
    pub consultation_id: i64,
    /// `pending` | `ready` | `failed` | `not_required`
    pub session_status: String,
    /// Present when `session_status` is `ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<JoinDto>,
}

impl From<consult_actors::sessions::SessionView> for SessionAnswer {
    fn from(v: consult_actors::sessions::SessionView) -> Self {
        Self {
            success: true,
            consultation_id: v.consultation_id,
            session_status: v.status.as_str().to_owned(),
            session: v.join.map(|j| JoinDto {
                provider: j.provider,
                mode: j.mode.as_str().to_owned(),
                audio_only: j.audio_only,
                application_id: j.application_id,
                session_id: j.session_id,
                conversation_id: j.conversation_id,
                user_name: j.user_name,
                role: j.role,
                token: j.token,
                expires_at: j.expires_at,
            }),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    /// At most this many, 1..=500; default 50.
    pub limit: Option<u32>,
    /// Only notifications older than this id (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Only unread ones; default false.
    pub unread_only: Option<bool>,
}

/// The consultation a notification is about, as it stands now (no medical text).
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationConsultationDto {
    pub id: i64,
    pub reference: String,
    pub doctor_id: i64,
    pub patient_id: i64,
    pub scheduled_at: DateTime<Utc>,
    pub duration_minutes: u16,
    pub status: String,
    pub consult_mode: String,
    pub session_status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationDto {
    pub id: i64,
    /// `consultation_scheduled` | `consultation_cancelled` | `consultation_rescheduled` |
    /// `session_ready` | `session_failed`
    pub event: String,
    pub created_at: DateTime<Utc>,
    pub read: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
    pub consultation: NotificationConsultationDto,
}

impl From<consult_actors::outbox::Notification> for NotificationDto {
    fn from(n: consult_actors::outbox::Notification) -> Self {
        let c = n.consultation;
        Self {
            id: n.id,
            event: n.kind.as_str().to_owned(),
            created_at: n.created_at,
            read: n.read_at.is_some(),
            read_at: n.read_at,
            consultation: NotificationConsultationDto {
                id: c.id,
                reference: c.reference,
                doctor_id: c.doctor_id,
                patient_id: c.patient_id,
                scheduled_at: c.scheduled_at,
                duration_minutes: c.duration_minutes,
                status: c.status.as_str().to_owned(),
                consult_mode: c.consult_mode.as_str().to_owned(),
                session_status: c.session_status.as_str().to_owned(),
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboxAnswer {
    pub success: bool,
    pub notifications: Vec<NotificationDto>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkReadRequest {
    /// Notification ids (at most 500); ids that are not the caller's are ignored.
    pub ids: Vec<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarkReadAnswer {
    pub success: bool,
    /// How many were unread and are now read.
    pub updated: u64,
}
