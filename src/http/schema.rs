//! Types that exist only for the OpenAPI document: the closed sets of strings the API
//! takes and answers (so a generated client knows them, and a validator refuses what the
//! server would), and the patterns of its text fields. The handlers keep plain strings;
//! `tests` below hold each set equal to the engine's own.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// How a consultation is held.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ConsultMode {
    Voice,
    Video,
    Chat,
    Whatsapp,
}

/// The modes with an in-app session.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SessionMode {
    Voice,
    Video,
    Chat,
}

/// A consultation's state.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ConsultationStatus {
    Pending,
    Scheduled,
    Completed,
    Cancelled,
    NoShow,
}

/// The state of a consultation's in-app session (`not_required` for WhatsApp).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SessionStatus {
    Pending,
    Ready,
    Failed,
    NotRequired,
}

/// A slot of an availability answer, for the asking patient.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SlotStatus {
    Available,
    Booked,
    Held,
    Past,
    OutsideBookingWindow,
    Full,
}

/// A slot as a slot history sees it now.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SlotNowStatus {
    Available,
    Booked,
    Held,
    Past,
    Unavailable,
}

/// A slot's state in an availability-stream event.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum StreamSlotStatus {
    Available,
    Booked,
    Held,
}

/// The booking rule that refuses a slot, as its error code.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RuleCode {
    DoctorUnavailable,
    DayUnavailable,
    OutsideAvailability,
    OffSlotGrid,
    InPast,
    OutsideBookingWindow,
    DayFull,
    TimeSlotConflict,
}

/// A notification's event.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum NotificationEvent {
    ConsultationScheduled,
    ConsultationCancelled,
    ConsultationRescheduled,
    SessionReady,
    SessionFailed,
}

/// A journal event that touched a slot.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SlotEventKind {
    Registered,
    Booked,
    Cancelled,
    RescheduledIn,
    RescheduledOut,
    ScheduleUpdated,
    StatusChanged,
}

/// Who decided a journal event.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum Actor {
    Patient,
    Doctor,
    Admin,
    System,
}

/// A caller's role.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RoleName {
    Patient,
    Doctor,
    Admin,
}

/// The caller's role in an in-app session: video `moderator` (doctor) or `publisher`
/// (patient); `member` of a chat.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum JoinRole {
    Publisher,
    Subscriber,
    Moderator,
    Member,
}

/// Every `error` code of the API's error body (docs/API.md's table).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ErrorCode {
    ValidationFailed,
    DoctorUnavailable,
    DayUnavailable,
    OutsideAvailability,
    OffSlotGrid,
    InPast,
    OutsideBookingWindow,
    DayFull,
    TimeSlotConflict,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotCancellable,
    NotReschedulable,
    IdempotencyKeyReused,
    PayloadTooLarge,
    HeadersTooLarge,
    RateLimited,
    Unavailable,
    InternalError,
}

/// An IANA timezone name, one of those the service knows (the tz database's names and
/// links, as `chrono-tz` has them; case matters).
pub struct Timezone;

impl PartialSchema for Timezone {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some(
                "An IANA timezone name (the tz database's names and links; case matters)",
            ))
            .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())))
            .examples(["Europe/Berlin"])
            .into()
    }
}

impl ToSchema for Timezone {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timezone")
    }
}

/// Free text (medical fields): no control character but tab, line feed and carriage
/// return. Kept equal to the `pattern` literals of the schema attributes by a test.
pub const MULTILINE_TEXT_PATTERN: &str = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$";
/// A name or a label: no control character at all.
pub const LINE_TEXT_PATTERN: &str = "^[^\\x00-\\x1F\\x7F-\\x9F]*$";
/// A name or a label that is not blank: no control character, and something besides
/// white space.
pub const NAME_PATTERN: &str =
    "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$";
/// A local time `HH:MM`, `00:00` to `24:00`.
pub const LOCAL_TIME_PATTERN: &str = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";
/// An `Idempotency-Key`: visible ASCII.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]+$";
/// A stream position, `<seq>.<n>` or `<seq>`.
pub const STREAM_POSITION_PATTERN: &str = "^[0-9]+(\\.[0-9]+)?$";

/// Date overrides by local date `YYYY-MM-DD`; `max` bounds how many (requests).
fn date_overrides(max: Option<usize>) -> RefOr<Schema> {
    use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
    use utoipa::openapi::Ref;
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
                .build(),
        ))
        .additional_properties(Some(Ref::from_schema_name("DateOverrideDto")))
        .max_properties(max)
        .into()
}

/// Date overrides as answered: by local date.
pub struct DateOverrides;

impl PartialSchema for DateOverrides {
    fn schema() -> RefOr<Schema> {
        date_overrides(None)
    }
}

impl ToSchema for DateOverrides {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("DateOverrides")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        use super::dto::DateOverrideDto;
        schemas.push((DateOverrideDto::name().into(), DateOverrideDto::schema()));
        DateOverrideDto::schemas(schemas);
    }
}

/// Date overrides in a schedule update: at most 366 dates.
pub struct DateOverridesUpdate;

impl PartialSchema for DateOverridesUpdate {
    fn schema() -> RefOr<Schema> {
        date_overrides(Some(consult_actors::calendar::MAX_DATE_OVERRIDES))
    }
}

impl ToSchema for DateOverridesUpdate {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("DateOverridesUpdate")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        DateOverrides::schemas(schemas);
    }
}

/// An instant (RFC 3339, any offset) or a local date `YYYY-MM-DD` (midnight in the
/// doctor's timezone).
pub struct InstantOrDate;

impl PartialSchema for InstantOrDate {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, SchemaFormat};
        let string = |format| {
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        AnyOfBuilder::new()
            .item(string(KnownFormat::DateTime))
            .item(string(KnownFormat::Date))
            .description(Some(
                "An instant (RFC 3339, any offset) or a local date YYYY-MM-DD (midnight in the doctor's timezone)",
            ))
            .into()
    }
}

impl ToSchema for InstantOrDate {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("InstantOrDate")
    }
}
