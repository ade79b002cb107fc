//! The API's JSON shapes (requests and answers), with their OpenAPI schemas, and the
//! conversions from the engine's types. Field names are the seed's, exactly.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use consult_actors::calendar::{
    Availability, BookingPolicy, Break, Breaks, DateOverride, DateOverrides, DayWindow, LocalTime,
    SlotStatus, WeeklySchedule, MAX_BREAKS_PER_DAY,
};
use consult_actors::{Consultation, DoctorProfile};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;

/// A pause inside a day's window, `[start, end)` in local `HH:MM`; no slot overlapping it
/// is offered or bookable.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakDto {
    #[schema(example = "12:00", pattern = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub start: String,
    #[schema(example = "13:00", pattern = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub end: String,
}

impl BreakDto {
    fn list(breaks: &Breaks) -> Vec<Self> {
        breaks
            .as_slice()
            .iter()
            .map(|b| BreakDto {
                start: b.start.to_string(),
                end: b.end.to_string(),
            })
            .collect()
    }
}

/// A local `HH:MM` from a request, or a validation error on `field`.
fn parse_time(field: &str, s: &str) -> Result<LocalTime, ApiError> {
    LocalTime::parse(s).ok_or_else(|| ApiError::field(field, format!("`{s}` is not a time HH:MM")))
}

/// Breaks from a request (at most [`MAX_BREAKS_PER_DAY`]); `field` is the list's path.
fn parse_breaks(field: &str, list: &[BreakDto]) -> Result<Breaks, ApiError> {
    let parsed = list
        .iter()
        .enumerate()
        .map(|(i, b)| {
            Ok(Break::new(
                parse_time(&format!("{field}[{i}].start"), &b.start)?,
                parse_time(&format!("{field}[{i}].end"), &b.end)?,
            ))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Breaks::from_slice(&parsed).ok_or_else(|| {
        ApiError::field(
            field,
            format!("at most {MAX_BREAKS_PER_DAY} breaks per day"),
        )
    })
}

/// One weekday's window, `HH:MM` local times.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DayWindowDto {
    pub enabled: bool,
    #[schema(example = "09:00", pattern = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub start: String,
    #[schema(example = "17:00", pattern = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub end: String,
    /// Breaks inside the window, at most 8, not overlapping; default none. Left out of
    /// answers when empty, so a day without breaks keeps the seed's exact shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 8)]
    pub breaks: Vec<BreakDto>,
}

/// Replaces the weekly window on one local date: `enabled: false` closes it (a vacation is
/// a run of them); `enabled: true` needs `start` and `end` and may carry breaks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DateOverrideDto {
    pub enabled: bool,
    #[schema(example = "10:00", pattern = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub start: Option<String>,
    #[schema(example = "14:00", pattern = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub end: Option<String>,
    /// At most 8, not overlapping; default none.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub breaks: Vec<BreakDto>,
}

impl From<&DateOverride> for DateOverrideDto {
    fn from(o: &DateOverride) -> Self {
        Self {
            enabled: o.enabled,
            start: o.start.map(|t| t.to_string()),
            end: o.end.map(|t| t.to_string()),
            breaks: BreakDto::list(&o.breaks),
        }
    }
}

/// A doctor's booking bounds, on top of the service's own minimum notice (which stays a
/// floor). Replaced as a whole; an absent field is its default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyDto {
    /// A booking must start more than this many minutes from now, 0..=43200; default 0.
    #[schema(minimum = 0, maximum = 43200)]
    pub min_notice_minutes: u32,
    /// A booking must start within this many days (of 24 h) from now, 1..=730; null: no
    /// bound (default).
    #[schema(minimum = 1, maximum = 730)]
    pub booking_window_days: Option<u16>,
    /// At most this many active consultations per local date, 1..=200; null: no cap
    /// (default).
    #[schema(minimum = 1, maximum = 200)]
    pub max_per_day: Option<u16>,
}

impl From<&BookingPolicy> for PolicyDto {
    fn from(p: &BookingPolicy) -> Self {
        Self {
            min_notice_minutes: p.min_notice_minutes,
            booking_window_days: p.booking_window_days,
            max_per_day: p.max_per_day,
        }
    }
}

impl From<&PolicyDto> for BookingPolicy {
    fn from(p: &PolicyDto) -> Self {
        Self {
            min_notice_minutes: p.min_notice_minutes,
            booking_window_days: p.booking_window_days,
            max_per_day: p.max_per_day,
        }
    }
}

/// Date overrides by local date, as answered.
fn overrides_dto(o: &DateOverrides) -> BTreeMap<NaiveDate, DateOverrideDto> {
    o.iter().map(|(d, o)| (*d, o.into())).collect()
}

/// Date overrides from a request; engine rules (range, windows, breaks) come after.
pub fn parse_overrides(
    list: &BTreeMap<String, DateOverrideDto>,
) -> Result<DateOverrides, ApiError> {
    list.iter()
        .map(|(key, o)| {
            let field = format!("date_overrides.{key}");
            let date = NaiveDate::parse_from_str(key, "%Y-%m-%d")
                .map_err(|_| ApiError::field(&field, "must be a date YYYY-MM-DD"))?;
            let time = |which: &str, v: &Option<String>| {
                v.as_deref()
                    .map(|t| parse_time(&format!("{field}.{which}"), t))
                    .transpose()
            };
            Ok((
                date,
                DateOverride {
                    enabled: o.enabled,
                    start: time("start", &o.start)?,
                    end: time("end", &o.end)?,
                    breaks: parse_breaks(&format!("{field}.breaks"), &o.breaks)?,
                },
            ))
        })
        .collect()
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
            breaks: BreakDto::list(&w.breaks),
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
            let field = format!("availability_schedule.{name}");
            Ok(DayWindow {
                enabled: d.enabled,
                start: parse_time(&format!("{field}.start"), &d.start)?,
                end: parse_time(&format!("{field}.end"), &d.end)?,
                breaks: parse_breaks(&format!("{field}.breaks"), &d.breaks)?,
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
    #[schema(value_type = super::schema::Timezone)]
    pub timezone: String,
    pub is_available: bool,
    pub is_approved: bool,
    #[schema(minimum = 5, maximum = 240)]
    pub slot_minutes: u16,
    pub availability_schedule: ScheduleDto,
    pub created_at: DateTime<Utc>,
    /// Local dates whose window replaces the weekly one (today and later).
    #[schema(value_type = super::schema::DateOverrides)]
    pub date_overrides: BTreeMap<NaiveDate, DateOverrideDto>,
    pub policy: PolicyDto,
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
            date_overrides: overrides_dto(&p.date_overrides),
            policy: (&p.policy).into(),
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
    /// Number of days, 1..=62 (`engine.max_availability_days`); default 7.
    #[param(minimum = 1, maximum = 62)]
    pub days: Option<u16>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SlotDto {
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub start: DateTime<Utc>,
    #[schema(example = "09:30")]
    pub local_time: String,
    /// `available` | `booked` | `held` | `past` | `outside_booking_window` (further ahead
    /// than the doctor's booking window) | `full` (the doctor's daily cap is reached)
    #[schema(value_type = super::schema::SlotStatus, example = "available")]
    pub status: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DayDto {
    pub date: NaiveDate,
    /// False on a closed weekday or a closed date override.
    pub enabled: bool,
    pub slots: Vec<SlotDto>,
    /// Whether a date override replaces the weekly window on this date.
    pub overridden: bool,
    /// The breaks that apply on this date (no slot overlaps them).
    pub breaks: Vec<BreakDto>,
    /// Active consultations on this date.
    pub booked: u32,
    /// Whether the doctor's `max_per_day` is reached on this date.
    pub full: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityAnswer {
    pub success: bool,
    pub doctor_id: i64,
    #[schema(value_type = super::schema::Timezone)]
    pub timezone: String,
    #[schema(minimum = 5, maximum = 240)]
    pub slot_minutes: u16,
    pub availability_schedule: ScheduleDto,
    /// The date overrides that fall in the requested range.
    #[schema(value_type = super::schema::DateOverrides)]
    pub date_overrides: BTreeMap<NaiveDate, DateOverrideDto>,
    pub policy: PolicyDto,
    #[serde(serialize_with = "super::rfc3339::list")]
    pub booked_slots: Vec<DateTime<Utc>>,
    pub days: Vec<DayDto>,
    /// The asking patient's own live hold on this doctor (its slot shows as `held`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub your_hold: Option<super::holds::HoldDto>,
}

impl From<&Availability> for AvailabilityAnswer {
    fn from(a: &Availability) -> Self {
        Self {
            success: true,
            doctor_id: a.doctor_id,
            timezone: a.timezone.name().to_owned(),
            slot_minutes: a.slot_minutes,
            availability_schedule: (&a.schedule).into(),
            date_overrides: overrides_dto(&a.date_overrides),
            policy: (&a.policy).into(),
            booked_slots: a.booked_slots.clone(),
            your_hold: None,
            days: a
                .days
                .iter()
                .map(|d| DayDto {
                    date: d.date,
                    enabled: d.enabled,
                    overridden: d.overridden,
                    breaks: BreakDto::list(&d.breaks),
                    booked: d.booked,
                    full: d.full,
                    slots: d
                        .slots
                        .iter()
                        .map(|s| SlotDto {
                            start: s.start,
                            local_time: s.local_time.clone(),
                            status: match s.status {
                                SlotStatus::Available => "available",
                                SlotStatus::Booked => "booked",
                                SlotStatus::Held => "held",
                                SlotStatus::Past => "past",
                                SlotStatus::OutsideBookingWindow => "outside_booking_window",
                                SlotStatus::Full => "full",
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
    #[schema(value_type = super::schema::ConsultMode, example = "video")]
    pub consult_mode: String,
    /// At most 500 characters; no control character but tab, line feed, carriage return.
    #[schema(
        max_length = 500,
        pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$"
    )]
    pub reason: Option<String>,
    /// At most 2000 characters; no control character but tab, line feed, carriage return.
    #[schema(
        max_length = 2000,
        pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$"
    )]
    pub symptoms: Option<String>,
    /// At most 4000 characters; no control character but tab, line feed, carriage return.
    #[schema(
        max_length = 4000,
        pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$"
    )]
    pub medical_history: Option<String>,
    /// At most 1000 characters; no control character but tab, line feed, carriage return.
    #[schema(
        max_length = 1000,
        pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$"
    )]
    pub allergies: Option<String>,
    /// At most 1000 characters; no control character but tab, line feed, carriage return.
    #[schema(
        max_length = 1000,
        pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$"
    )]
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
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub scheduled_at: DateTime<Utc>,
    pub duration_minutes: u16,
    /// `pending` | `scheduled` | `completed` | `cancelled` | `no_show`
    #[schema(value_type = super::schema::ConsultationStatus)]
    pub status: String,
    #[schema(value_type = super::schema::ConsultMode)]
    pub consultation_mode: String,
    /// The seed's name for `consultation_mode`; always equal.
    #[schema(value_type = super::schema::ConsultMode)]
    pub consult_mode: String,
    /// `pending` | `ready` | `failed` | `not_required`
    #[schema(value_type = super::schema::SessionStatus)]
    pub session_status: String,
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::rfc3339::option"
    )]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The doctor's name, in the patient's consultation answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doctor_name: Option<String>,
    /// The doctor's IANA timezone, in the patient's consultation answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::schema::Timezone>)]
    pub doctor_timezone: Option<String>,
    /// In the doctor's consultation list: whether this active consultation now lies
    /// outside the doctor's schedule (a later schedule change left it there; it is kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_schedule: Option<bool>,
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
            outside_schedule: None,
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
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DoctorConsultationsQuery {
    /// Start of the range: RFC 3339, or `YYYY-MM-DD` (midnight in the doctor's timezone).
    /// Default: today in the doctor's timezone.
    #[param(value_type = Option<super::schema::InstantOrDate>)]
    pub from: Option<String>,
    /// End of the range (exclusive), same forms; default 30 days after `from`; after
    /// `from`, and at most 366 days after it.
    #[param(value_type = Option<super::schema::InstantOrDate>)]
    pub to: Option<String>,
    /// At most this many, 1..=500; default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// IANA timezone; unchanged if absent.
    #[schema(value_type = Option<super::schema::Timezone>)]
    pub timezone: Option<String>,
    /// Slot length in minutes, 5..=240; unchanged if absent.
    #[schema(minimum = 5, maximum = 240)]
    pub slot_minutes: Option<u16>,
    pub availability_schedule: ScheduleDto,
    /// Replaces every date override when given (at most 366, from today to 731 days
    /// ahead; earlier dates are dropped); unchanged if absent.
    #[schema(value_type = Option<super::schema::DateOverridesUpdate>)]
    pub date_overrides: Option<BTreeMap<String, DateOverrideDto>>,
    /// Replaces the booking policy when given; unchanged if absent.
    pub policy: Option<PolicyDto>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub is_available: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDoctorRequest {
    /// 1 to 200 bytes (UTF-8) after trimming white space; no control character.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub name: String,
    /// At most 200 bytes (UTF-8); no control character.
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub specialty: String,
    /// IANA timezone, e.g. `Europe/Berlin`.
    #[schema(value_type = super::schema::Timezone)]
    pub timezone: String,
    /// Default: Monday to Friday, 09:00-17:00.
    pub availability_schedule: Option<ScheduleDto>,
    /// 5..=240; default 30.
    #[schema(minimum = 5, maximum = 240)]
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
    #[schema(value_type = super::schema::SessionMode)]
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
    #[schema(value_type = super::schema::JoinRole)]
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
    #[schema(value_type = super::schema::SessionStatus)]
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
    /// At most this many, 1..=1000; default 50.
    #[param(minimum = 1, maximum = 1000)]
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
    #[serde(serialize_with = "super::rfc3339::serialize")]
    pub scheduled_at: DateTime<Utc>,
    pub duration_minutes: u16,
    #[schema(value_type = super::schema::ConsultationStatus)]
    pub status: String,
    #[schema(value_type = super::schema::ConsultMode)]
    pub consult_mode: String,
    #[schema(value_type = super::schema::SessionStatus)]
    pub session_status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationDto {
    pub id: i64,
    /// `consultation_scheduled` | `consultation_cancelled` | `consultation_rescheduled` |
    /// `session_ready` | `session_failed`
    #[schema(value_type = super::schema::NotificationEvent)]
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
    /// Notification ids (at most 1000); ids that are not the caller's are ignored.
    #[schema(max_items = 1000)]
    pub ids: Vec<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarkReadAnswer {
    pub success: bool,
    /// How many were unread and are now read.
    pub updated: u64,
}
