//! Peer booking servers: the Postgres designs a developer would pick instead of the engine,
//! each behind the same kind of HTTP handler as the real application, so `http_load` can
//! run them side by side with it.
//!
//! Every peer is a small axum server with a `PgPool` (prepared statements, durable commits:
//! the default `synchronous_commit`), the patient JWT verified on every request with the
//! app's own [`JwtKeys`], and the app's request and answer types (`http::dto`) and error
//! type (`http::error::ApiError`), so status codes and bodies are the app's, byte for byte.
//! Each serves the two endpoints the bench needs, plus `GET /healthz`:
//! - `POST /patient/doctors/book`: the app's validation, then one of three designs:
//!   - [`PeerKind::Exclusion`]: a `btree_gist` exclusion constraint on active consultations
//!     decides; one autocommit `INSERT`, SQLSTATE 23P01 answers 409.
//!   - [`PeerKind::RowLock`]: a transaction locks the doctor's row (`FOR UPDATE`), looks for
//!     an overlapping active consultation, inserts.
//!   - [`PeerKind::SeedLiteral`]: the original design, ported literally: a transaction locks
//!     (`FOR UPDATE`) the active consultations within 29 minutes of the start and inserts
//!     if there are none. Under READ COMMITTED an empty window locks nothing, so two
//!     concurrent requests for a free slot can both insert: double bookings get through.
//!     That is the point of this peer; the bench reports them.
//! - `GET /patient/doctors/{id}/availability`: the doctor, then one query of their active
//!   consultations in the range.
//!
//! Simplification: no weekly schedules. Every peer doctor is open 00:00-24:00 every day in
//! UTC (the bench's doctors on the engine are exactly that), so the app's day and window
//! checks reduce to "the slot ends by midnight UTC", and availability lists
//! `1440 / slot_minutes` slots a UTC day. The `timezone` column is answered, not used.
//! Also left out, because the bench does not exercise them: holds (`held` never appears),
//! `Idempotency-Key`, the per-user rate limit, the admission limit and request timeout,
//! and sessions (a booking answers the `session_status` a fresh booking starts with in the
//! app). Of the medical fields only `reason` is stored and answered.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Days, Duration, NaiveDate, Timelike, Utc};
use consult_scheduler::engine::{ConsultMode, Rejection, SessionStatus, MAX_SLOT_MINUTES};
use consult_scheduler::http::auth::{bearer_token, JwtKeys, Role};
use consult_scheduler::http::dto::{
    AvailabilityAnswer, AvailabilityQuery, BookRequest, ConsultationAnswer, ConsultationDto,
    DayDto, DayWindowDto, HealthAnswer, ScheduleDto, SlotDto,
};
use consult_scheduler::http::error::ApiError;
use consult_scheduler::http::extract::{ApiJson, ApiPath, ApiQuery, BodyLimit};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{PgExecutor, Postgres, Transaction};
use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest a peer's statement waits for a lock, and runs at all.
const LOCK_TIMEOUT: &str = "2s";
const STATEMENT_TIMEOUT: &str = "10s";

/// A Postgres design the engine is benchmarked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// An exclusion constraint over `tstzrange(scheduled_at, ends_at)` decides conflicts.
    Exclusion,
    /// The doctor's row is locked for the check-then-insert.
    RowLock,
    /// The seed's design: lock the rows near the start, insert if none (racy).
    SeedLiteral,
}

impl PeerKind {
    /// The name the bench's tables show.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exclusion => "pg-exclusion",
            Self::RowLock => "pg-row-lock",
            Self::SeedLiteral => "pg-seed-literal",
        }
    }
}

/// The app's defaults for what the peers share with it.
const MAX_BODY_BYTES: usize = 65_536;
const JWT_LEEWAY_S: u64 = 30;
const MAX_AVAILABILITY_DAYS: u16 = 62;
const DEFAULT_AVAILABILITY_DAYS: u16 = 7;
/// Same backlog as the app (`startup::LISTEN_BACKLOG`): a burst of a few hundred connects
/// must not wait for a SYN retransmit.
const LISTEN_BACKLOG: u32 = 4096;
const MINUTES_PER_DAY: u32 = 24 * 60;
/// Slot length of the doctors [`PeerServer::create_doctors`] makes (the bench's).
const DOCTOR_SLOT_MINUTES: i32 = 30;
const STORAGE_UNAVAILABLE: &str = "Storage is unavailable; nothing was booked. Please retry.";

const SCHEMA: &str = r#"
CREATE TABLE doctors (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL,
    specialty    TEXT NOT NULL,
    timezone     TEXT NOT NULL DEFAULT 'UTC',
    slot_minutes INT NOT NULL DEFAULT 30 CHECK (slot_minutes BETWEEN 5 AND 240),
    is_available BOOLEAN NOT NULL DEFAULT TRUE,
    is_approved  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE consultations (
    id               BIGSERIAL PRIMARY KEY,
    reference        TEXT NOT NULL,
    doctor_id        BIGINT NOT NULL REFERENCES doctors (id),
    patient_id       BIGINT NOT NULL,
    scheduled_at     TIMESTAMPTZ NOT NULL,
    ends_at          TIMESTAMPTZ NOT NULL,
    duration_minutes INT NOT NULL,
    status           TEXT NOT NULL,
    consult_mode     TEXT NOT NULL,
    reason           TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX consultations_doctor_start ON consultations (doctor_id, scheduled_at);
"#;

/// Added for [`PeerKind::Exclusion`] after [`SCHEMA`].
const EXCLUSION_SCHEMA: &str = r#"
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE consultations ADD CONSTRAINT consultations_no_overlap
    EXCLUDE USING gist (doctor_id WITH =, tstzrange(scheduled_at, ends_at) WITH &&)
    WHERE (status IN ('pending', 'scheduled'));
"#;

const SELECT_DOCTOR: &str =
    "SELECT slot_minutes, is_available, is_approved, timezone FROM doctors WHERE id = $1";
const SELECT_DOCTOR_FOR_UPDATE: &str =
    "SELECT slot_minutes, is_available, is_approved, timezone FROM doctors WHERE id = $1 FOR UPDATE";
/// The row-lock design's overlap check. The lower bound on `scheduled_at` (no consultation
/// is longer than `MAX_SLOT_MINUTES`, the engine's own bound) keeps the index range scan
/// to the neighbourhood of the slot; without it every earlier consultation of the doctor
/// is visited and filtered on `ends_at`.
const SELECT_OVERLAP: &str = "SELECT 1 FROM consultations \
     WHERE doctor_id = $1 AND status IN ('pending', 'scheduled') \
     AND scheduled_at < $2 AND ends_at > $3 AND scheduled_at > $4 LIMIT 1";
/// The seed's check, literally.
const SELECT_SEED_WINDOW_FOR_UPDATE: &str = "SELECT id FROM consultations \
     WHERE doctor_id = $1 AND status IN ('pending', 'scheduled') \
     AND scheduled_at > $2 - interval '29 minutes' AND scheduled_at < $2 + interval '29 minutes' \
     FOR UPDATE";
const INSERT_CONSULTATION: &str = "INSERT INTO consultations \
     (reference, doctor_id, patient_id, scheduled_at, ends_at, duration_minutes, status, consult_mode, reason) \
     VALUES ($1, $2, $3, $4, $5, $6, 'scheduled', $7, $8) RETURNING id, created_at";
/// Active consultations that may overlap `[$2, $3)`, for availability.
const SELECT_ACTIVE_IN_RANGE: &str = "SELECT scheduled_at, ends_at FROM consultations \
     WHERE doctor_id = $1 AND status IN ('pending', 'scheduled') \
     AND scheduled_at > $2 - make_interval(mins => $4) AND scheduled_at < $3 \
     ORDER BY scheduled_at";
const INSERT_DOCTORS: &str = "INSERT INTO doctors \
     (name, specialty, timezone, slot_minutes, is_available, is_approved) \
     SELECT 'Dr. Peer ' || lpad(i::text, 4, '0'), 'General practice', 'UTC', $2, TRUE, TRUE \
     FROM generate_series(1, $1) AS i RETURNING id";

/// A running peer server.
pub struct PeerServer {
    pub addr: SocketAddr,
    pool: PgPool,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl PeerServer {
    /// Creates the schema in the (empty) database at `url`, opens a pool of `pool_size`
    /// connections and serves on a free loopback port.
    ///
    /// The bench passes 64: enough that 64 or 256 client connections keep every Postgres
    /// backend busy, without thrashing Postgres on a 2-core machine; more backends than
    /// cores only add context switches and lock contention. Requests beyond the pool wait
    /// in `acquire`, as they would in a typical deployment.
    pub async fn start(
        kind: PeerKind,
        url: &str,
        pool_size: u32,
        jwt_secret: &[u8],
    ) -> Result<Self, String> {
        // Bounded waits: under the hot race the exclusion constraint's inserters can wait
        // on each other's transactions for as long as the race lasts (seen: 35 s); a lock
        // wait past `lock_timeout` fails the request (503, counted as an error) and the
        // run stays bounded in time.
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| format!("{}: bad database URL: {e}", kind.name()))?
            .options([
                ("lock_timeout", LOCK_TIMEOUT),
                ("statement_timeout", STATEMENT_TIMEOUT),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .min_connections(pool_size)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| format!("{}: cannot connect: {e}", kind.name()))?;
        let schema = match kind {
            PeerKind::Exclusion => format!("{SCHEMA}{EXCLUSION_SCHEMA}"),
            PeerKind::RowLock | PeerKind::SeedLiteral => SCHEMA.to_owned(),
        };
        sqlx::raw_sql(&schema)
            .execute(&pool)
            .await
            .map_err(|e| format!("{}: cannot create the schema: {e}", kind.name()))?;
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| format!("{}: cannot listen: {e}", kind.name()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("{}: no local address: {e}", kind.name()))?;
        let app = router(Arc::new(PeerState {
            kind,
            pool: pool.clone(),
            jwt: JwtKeys::new(jwt_secret, JWT_LEEWAY_S),
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self {
            addr,
            pool,
            stop,
            serving,
        })
    }

    /// Inserts `n` approved, available doctors (one multi-row `INSERT`); their ids, sorted.
    pub async fn create_doctors(&self, n: usize) -> Result<Vec<i64>, String> {
        let n = i32::try_from(n).map_err(|_| format!("{n} doctors is too many"))?;
        let mut ids: Vec<i64> = sqlx::query_scalar(INSERT_DOCTORS)
            .bind(n)
            .bind(DOCTOR_SLOT_MINUTES)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| format!("cannot create doctors: {e}"))?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// Graceful stop: stops accepting, lets in-flight requests finish, closes the pool.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.serving.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("peer server stopped with an error: {e}"),
            Err(e) => eprintln!("peer server task failed: {e}"),
        }
        self.pool.close().await;
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

// ---------------------------------------------------------------------------------------
// The HTTP edge: state, extractors, routes.

struct PeerState {
    kind: PeerKind,
    pool: PgPool,
    jwt: JwtKeys,
}

type Peer = Arc<PeerState>;

fn router(peer: Peer) -> Router {
    Router::new()
        .route("/patient/doctors/book", post(book))
        .route("/patient/doctors/{id}/availability", get(availability))
        .route("/healthz", get(healthz))
        .fallback(|| async { ApiError::NotFound("No such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(peer)
}

/// A patient, authenticated as the app does it: bearer token, HS256, role `patient`.
struct Patient(i64);

impl FromRequestParts<Peer> for Patient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, peer: &Peer) -> Result<Self, ApiError> {
        let claims = peer.jwt.verify(bearer_token(parts)?)?;
        if claims.role != Role::Patient {
            return Err(ApiError::Forbidden("This endpoint is for patients"));
        }
        Ok(Self(claims.sub))
    }
}

/// The app's own extractors (`ApiJson`, `ApiQuery`, `ApiPath`) answer a peer's malformed
/// input exactly as the app does; they need the body limit for the 413.
impl BodyLimit for PeerState {
    fn max_body_bytes(&self) -> usize {
        MAX_BODY_BYTES
    }
}

async fn healthz() -> Json<HealthAnswer> {
    Json(HealthAnswer {
        status: "ok".into(),
    })
}

/// Storage failures answer what the app answers for them: 503, nothing booked.
fn storage(e: sqlx::Error) -> ApiError {
    tracing::error!(error = %e, "peer storage failure answered 503");
    ApiError::Unavailable(STORAGE_UNAVAILABLE)
}

fn conflict() -> ApiError {
    ApiError::Rejected(Rejection::Conflict)
}

// ---------------------------------------------------------------------------------------
// Booking.

/// What a booking needs from the doctor's row.
struct Doctor {
    slot_minutes: u16,
    is_available: bool,
    is_approved: bool,
    timezone: String,
}

type DoctorRow = (i32, bool, bool, String);

impl Doctor {
    fn from_row((slot_minutes, is_available, is_approved, timezone): DoctorRow) -> Self {
        Self {
            // The schema's CHECK keeps it in 5..=240.
            slot_minutes: u16::try_from(slot_minutes).unwrap_or(MAX_SLOT_MINUTES),
            is_available,
            is_approved,
            timezone,
        }
    }

    /// The app's booking rules, in its order, for a doctor open 00:00-24:00 every day in
    /// UTC: approved and available, inside the day, on the slot grid, in the future. The
    /// conflict check is each design's own.
    fn check_slot(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ApiError> {
        if !(self.is_approved && self.is_available) {
            return Err(ApiError::Rejected(Rejection::DoctorUnavailable));
        }
        let minute = at.hour() * 60 + at.minute();
        let on_minute = at.second() == 0 && at.nanosecond() == 0;
        let slot = u32::from(self.slot_minutes);
        if minute + slot > MINUTES_PER_DAY {
            return Err(ApiError::Rejected(Rejection::OutsideAvailability));
        }
        if !on_minute || !minute.is_multiple_of(slot) {
            return Err(ApiError::Rejected(Rejection::OffSlotGrid));
        }
        if at <= now {
            return Err(ApiError::Rejected(Rejection::InPast));
        }
        Ok(())
    }
}

async fn find_doctor<'e>(
    ex: impl PgExecutor<'e>,
    sql: &'static str,
    doctor_id: i64,
) -> Result<Doctor, ApiError> {
    sqlx::query_as::<_, DoctorRow>(sql)
        .bind(doctor_id)
        .fetch_optional(ex)
        .await
        .map_err(storage)?
        .map(Doctor::from_row)
        .ok_or_else(|| ApiError::NotFound("Doctor not found".into()))
}

/// A validated booking request.
struct NewBooking {
    doctor_id: i64,
    patient_id: i64,
    at: DateTime<Utc>,
    mode: ConsultMode,
    reason: Option<String>,
}

/// What the `INSERT` made.
struct Booked {
    id: i64,
    reference: String,
    duration_minutes: u16,
    created_at: DateTime<Utc>,
}

/// Longest accepted medical text field, as in the app.
const MAX_MEDICAL_FIELD_BYTES: usize = 4096;

async fn book(
    State(peer): State<Peer>,
    Patient(patient_id): Patient,
    ApiJson(req): ApiJson<BookRequest>,
) -> Result<Response, ApiError> {
    let mode = ConsultMode::parse(&req.consult_mode).ok_or_else(|| {
        ApiError::field(
            "consult_mode",
            "must be one of voice, video, chat, whatsapp",
        )
    })?;
    for (field, value) in [
        ("reason", &req.reason),
        ("symptoms", &req.symptoms),
        ("medical_history", &req.medical_history),
        ("allergies", &req.allergies),
        ("current_medications", &req.current_medications),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.len() > MAX_MEDICAL_FIELD_BYTES)
        {
            return Err(ApiError::field(field, "must be at most 4096 bytes"));
        }
    }
    let new = NewBooking {
        doctor_id: req.doctor_id,
        patient_id,
        at: req.scheduled_at.with_timezone(&Utc),
        mode,
        reason: req.reason,
    };
    let booked = match peer.kind {
        PeerKind::Exclusion => book_exclusion(&peer.pool, &new).await?,
        PeerKind::RowLock => book_row_lock(&peer.pool, &new).await?,
        PeerKind::SeedLiteral => book_seed_literal(&peer.pool, &new).await?,
    };
    let mode = new.mode.as_str().to_owned();
    let answer = ConsultationAnswer {
        success: true,
        consultation: ConsultationDto {
            id: booked.id,
            reference: booked.reference,
            doctor_id: new.doctor_id,
            patient_id: new.patient_id,
            scheduled_at: new.at,
            duration_minutes: booked.duration_minutes,
            status: "scheduled".into(),
            consultation_mode: mode.clone(),
            consult_mode: mode,
            session_status: SessionStatus::initial_for(new.mode).as_str().to_owned(),
            created_at: booked.created_at,
            cancelled_at: None,
            doctor_name: None,
            doctor_timezone: None,
            outside_schedule: None,
            reason: new.reason,
            symptoms: None,
            medical_history: None,
            allergies: None,
            current_medications: None,
            booking_id: None,
            patient_name: None,
            relation: None,
        },
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Exclusion constraint: no transaction; the constraint refuses the overlapping `INSERT`.
async fn book_exclusion(pool: &PgPool, new: &NewBooking) -> Result<Booked, ApiError> {
    let doctor = find_doctor(pool, SELECT_DOCTOR, new.doctor_id).await?;
    doctor.check_slot(new.at, Utc::now())?;
    insert(pool, new, doctor.slot_minutes).await.map_err(|e| {
        match e.as_database_error().and_then(|d| d.code()) {
            Some(code) if code == "23P01" => conflict(),
            _ => storage(e),
        }
    })
}

/// Row lock: the doctor's row serializes this doctor's bookings; check, then insert.
/// An early return drops the transaction, which rolls it back.
async fn book_row_lock(pool: &PgPool, new: &NewBooking) -> Result<Booked, ApiError> {
    let mut tx = pool.begin().await.map_err(storage)?;
    let doctor = find_doctor(&mut *tx, SELECT_DOCTOR_FOR_UPDATE, new.doctor_id).await?;
    doctor.check_slot(new.at, Utc::now())?;
    let end = new.at + minutes(doctor.slot_minutes);
    let overlap: Option<i32> = sqlx::query_scalar(SELECT_OVERLAP)
        .bind(new.doctor_id)
        .bind(end)
        .bind(new.at)
        .bind(new.at - minutes(MAX_SLOT_MINUTES))
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage)?;
    if overlap.is_some() {
        return Err(conflict());
    }
    commit_insert(tx, new, doctor.slot_minutes).await
}

/// The seed's design: lock what is near the start, insert if nothing is. Racy on purpose
/// (see the module docs).
async fn book_seed_literal(pool: &PgPool, new: &NewBooking) -> Result<Booked, ApiError> {
    let mut tx = pool.begin().await.map_err(storage)?;
    let doctor = find_doctor(&mut *tx, SELECT_DOCTOR, new.doctor_id).await?;
    doctor.check_slot(new.at, Utc::now())?;
    let near: Vec<i64> = sqlx::query_scalar(SELECT_SEED_WINDOW_FOR_UPDATE)
        .bind(new.doctor_id)
        .bind(new.at)
        .fetch_all(&mut *tx)
        .await
        .map_err(storage)?;
    if !near.is_empty() {
        return Err(conflict());
    }
    commit_insert(tx, new, doctor.slot_minutes).await
}

async fn commit_insert(
    mut tx: Transaction<'static, Postgres>,
    new: &NewBooking,
    slot_minutes: u16,
) -> Result<Booked, ApiError> {
    let booked = insert(&mut *tx, new, slot_minutes).await.map_err(storage)?;
    tx.commit().await.map_err(storage)?;
    Ok(booked)
}

async fn insert<'e>(
    ex: impl PgExecutor<'e>,
    new: &NewBooking,
    slot_minutes: u16,
) -> Result<Booked, sqlx::Error> {
    let reference = random_reference();
    let (id, created_at): (i64, DateTime<Utc>) = sqlx::query_as(INSERT_CONSULTATION)
        .bind(&reference)
        .bind(new.doctor_id)
        .bind(new.patient_id)
        .bind(new.at)
        .bind(new.at + minutes(slot_minutes))
        .bind(i32::from(slot_minutes))
        .bind(new.mode.as_str())
        .bind(new.reason.as_deref())
        .fetch_one(ex)
        .await?;
    Ok(Booked {
        id,
        reference,
        duration_minutes: slot_minutes,
        created_at,
    })
}

/// `CONS-` and 6 characters of the app's alphabet (no 0/O, 1/I/L), drawn at random as the
/// seed did; the app derives its references from the id instead.
fn random_reference() -> String {
    use rand::Rng;
    const ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let code: String = (0..6)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("CONS-{code}")
}

fn minutes(m: u16) -> Duration {
    Duration::minutes(i64::from(m))
}

// ---------------------------------------------------------------------------------------
// Availability.

async fn availability(
    State(peer): State<Peer>,
    _patient: Patient,
    ApiPath(doctor_id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<AvailabilityQuery>,
) -> Result<Json<AvailabilityAnswer>, ApiError> {
    let days = query.days.unwrap_or(DEFAULT_AVAILABILITY_DAYS);
    if days == 0 || days > MAX_AVAILABILITY_DAYS {
        return Err(ApiError::field(
            "days",
            format!("must be 1 to {MAX_AVAILABILITY_DAYS}"),
        ));
    }
    let doctor = find_doctor(&peer.pool, SELECT_DOCTOR, doctor_id).await?;
    if !(doctor.is_approved && doctor.is_available) {
        return Err(ApiError::Rejected(Rejection::DoctorUnavailable));
    }
    let now = Utc::now();
    let from = query.from.unwrap_or_else(|| now.date_naive());
    let last = from
        .checked_add_days(Days::new(u64::from(days)))
        .ok_or_else(|| ApiError::field("from", "is out of range"))?;
    let (lo, hi) = (midnight(from), midnight(last));
    let active: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(SELECT_ACTIVE_IN_RANGE)
        .bind(doctor_id)
        .bind(lo)
        .bind(hi)
        .bind(i32::from(MAX_SLOT_MINUTES))
        .fetch_all(&peer.pool)
        .await
        .map_err(storage)?;
    Ok(Json(availability_answer(
        doctor_id, &doctor, from, days, &active, now,
    )))
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
}

/// The app's availability answer over `days` UTC dates from `from`, given the doctor's
/// active consultations `(start, end)` sorted by start.
fn availability_answer(
    doctor_id: i64,
    doctor: &Doctor,
    from: NaiveDate,
    days: u16,
    active: &[(DateTime<Utc>, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> AvailabilityAnswer {
    let slot = minutes(doctor.slot_minutes);
    let max = minutes(MAX_SLOT_MINUTES);
    // As the engine: an active consultation overlapping [start, start + slot) books it.
    let booked = |start: DateTime<Utc>| {
        let first = active.partition_point(|(s, _)| *s <= start - max);
        active[first..]
            .iter()
            .take_while(|(s, _)| *s < start + slot)
            .any(|(_, e)| *e > start)
    };
    let per_day = MINUTES_PER_DAY / u32::from(doctor.slot_minutes);
    let day_list = from
        .iter_days()
        .take(usize::from(days))
        .map(|date| DayDto {
            date,
            enabled: true,
            slots: (0..per_day)
                .map(|i| {
                    let start = midnight(date) + slot * i as i32;
                    let status = if start <= now {
                        "past"
                    } else if booked(start) {
                        "booked"
                    } else {
                        "available"
                    };
                    SlotDto {
                        start,
                        local_time: start.format("%H:%M").to_string(),
                        status: status.to_owned(),
                    }
                })
                .collect(),
            overridden: false,
            breaks: Vec::new(),
            booked: 0,
            full: false,
        })
        .collect();
    let (lo, hi) = (
        midnight(from),
        midnight(from) + Duration::days(i64::from(days)),
    );
    let mut booked_slots: Vec<DateTime<Utc>> = active
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| *s >= lo && *s < hi)
        .collect();
    // Starts, as the app lists them; a double booking (seed literal) shows once.
    booked_slots.dedup();
    let open = || DayWindowDto {
        enabled: true,
        start: "00:00".into(),
        end: "24:00".into(),
        breaks: Vec::new(),
    };
    AvailabilityAnswer {
        success: true,
        your_hold: None,
        doctor_id,
        timezone: doctor.timezone.clone(),
        slot_minutes: doctor.slot_minutes,
        availability_schedule: ScheduleDto {
            monday: open(),
            tuesday: open(),
            wednesday: open(),
            thursday: open(),
            friday: open(),
            saturday: open(),
            sunday: open(),
        },
        date_overrides: Default::default(),
        policy: Default::default(),
        booked_slots,
        days: day_list,
    }
}

// ---------------------------------------------------------------------------------------
// Smoke check.

/// The app's exact conflict body.
const CONFLICT_BODY: &str = r#"{"success":false,"message":"This time slot was just booked by another patient. Please select a different time.","error":"time_slot_conflict"}"#;

/// Starts a `kind` peer on the empty database at `url`, exercises both endpoints over HTTP
/// (booking, the same slot again, the validation answers, availability, a 16-way race for
/// one slot) and checks statuses and bodies against the app's; stops it. The race must end
/// with exactly one booking for the exclusion and row-lock peers; the seed-literal peer's
/// count is returned in the summary, not checked (it is allowed to double book).
pub async fn smoke(kind: PeerKind, url: &str) -> Result<String, String> {
    let secret = consult_scheduler::settings::DEV_JWT_SECRET.as_bytes();
    let server = PeerServer::start(kind, url, 4, secret).await?;
    let result = smoke_against(kind, &server, secret).await;
    server.stop().await;
    result.map_err(|e| format!("{}: {e}", kind.name()))
}

async fn smoke_against(
    kind: PeerKind,
    server: &PeerServer,
    secret: &[u8],
) -> Result<String, String> {
    use consult_scheduler::http::auth::now_s;
    use serde_json::{json, Value};

    fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            Err(what())
        }
    }

    let keys = JwtKeys::new(secret, JWT_LEEWAY_S);
    let patient = |id: i64| keys.mint(Role::Patient, id, now_s(), 3600);
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let doctors = server.create_doctors(2).await?;
    ensure(doctors.len() == 2 && doctors[0] < doctors[1], || {
        format!("create_doctors(2) gave {doctors:?}")
    })?;
    let doctor = doctors[0];

    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.map_err(|e| format!("transport: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| format!("body: {e}"))?;
        Ok::<_, String>((status, body))
    };
    let book = |token: String, body: String| {
        client
            .post(format!("{base}/patient/doctors/book"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
    };
    let book_json = |doctor: i64, at: &str, mode: &str| {
        json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": mode}).to_string()
    };
    let error_code = |body: &str| -> Option<String> {
        let v: Value = serde_json::from_str(body).ok()?;
        (v["success"] == json!(false)).then(|| v["error"].as_str().map(str::to_owned))?
    };

    let (status, _) = send(client.get(format!("{base}/healthz"))).await?;
    ensure(status == 200, || format!("healthz answered {status}"))?;

    let tomorrow = Utc::now().date_naive() + Days::new(1);
    let at = midnight(tomorrow) + Duration::minutes(10 * 60 + 30);
    let at_text = at.format("%Y-%m-%dT%H:%M:%SZ").to_string();

    // Book, then the same slot again.
    let (status, body) = send(book(patient(101), book_json(doctor, &at_text, "video"))).await?;
    ensure(
        status == 201 && body.starts_with(r#"{"success":true"#),
        || format!("first booking answered {status} {body}"),
    )?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("201 body: {e}"))?;
    let c = &v["consultation"];
    let answered_at = c["scheduled_at"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let reference = c["reference"].as_str().unwrap_or_default();
    ensure(
        c["id"].as_i64().is_some()
            && reference.starts_with("CONS-")
            && reference.len() == 11
            && c["doctor_id"] == json!(doctor)
            && c["patient_id"] == json!(101)
            && answered_at == Some(at)
            && c["duration_minutes"] == json!(30)
            && c["status"] == json!("scheduled")
            && c["consult_mode"] == json!("video")
            && c["consultation_mode"] == json!("video")
            && c["session_status"] == json!("pending")
            && c["created_at"].is_string(),
        || format!("201 body does not describe the booking: {body}"),
    )?;
    let (status, body) = send(book(patient(102), book_json(doctor, &at_text, "video"))).await?;
    ensure(status == 409 && body == CONFLICT_BODY, || {
        format!("second booking of the slot answered {status} {body}")
    })?;

    // The app's refusals, in its order.
    let off_grid = (at + Duration::minutes(15)).to_rfc3339();
    let late = (midnight(tomorrow) + Duration::minutes(23 * 60 + 45)).to_rfc3339();
    let past = (at - Duration::days(2)).to_rfc3339();
    let cases: [(&str, reqwest::RequestBuilder, u16, &str); 10] = [
        (
            "off the grid",
            book(patient(103), book_json(doctor, &off_grid, "video")),
            400,
            "off_slot_grid",
        ),
        (
            "past midnight",
            book(patient(103), book_json(doctor, &late, "video")),
            400,
            "outside_availability",
        ),
        (
            "in the past",
            book(patient(103), book_json(doctor, &past, "video")),
            400,
            "in_past",
        ),
        (
            "unknown mode",
            book(patient(103), book_json(doctor, &at_text, "fax")),
            400,
            "validation_failed",
        ),
        (
            "malformed JSON",
            book(patient(103), "{\"doctor_id\":".into()),
            400,
            "validation_failed",
        ),
        (
            "unknown doctor",
            book(patient(103), book_json(i64::MAX, &at_text, "video")),
            404,
            "not_found",
        ),
        (
            "no token",
            client
                .post(format!("{base}/patient/doctors/book"))
                .body(book_json(doctor, &at_text, "video")),
            401,
            "unauthorized",
        ),
        (
            "a doctor's token",
            book(
                keys.mint(Role::Doctor, doctor, now_s(), 3600),
                book_json(doctor, &at_text, "video"),
            ),
            403,
            "forbidden",
        ),
        (
            "63 days",
            client
                .get(format!(
                    "{base}/patient/doctors/{doctor}/availability?days=63"
                ))
                .bearer_auth(patient(103)),
            400,
            "validation_failed",
        ),
        (
            "a bad date",
            client
                .get(format!(
                    "{base}/patient/doctors/{doctor}/availability?from=2026-13-01"
                ))
                .bearer_auth(patient(103)),
            400,
            "validation_failed",
        ),
    ];
    for (what, req, want_status, want_code) in cases {
        let (status, body) = send(req).await?;
        ensure(
            status == want_status && error_code(&body).as_deref() == Some(want_code),
            || format!("{what}: answered {status} {body}, expected {want_status} {want_code}"),
        )?;
    }

    // Availability over two days from tomorrow.
    let (status, body) = send(
        client
            .get(format!(
                "{base}/patient/doctors/{doctor}/availability?from={tomorrow}&days=2"
            ))
            .bearer_auth(patient(103)),
    )
    .await?;
    ensure(status == 200, || {
        format!("availability answered {status} {body}")
    })?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("availability: {e}"))?;
    let days = v["days"].as_array().cloned().unwrap_or_default();
    let booked: Vec<&str> = days
        .iter()
        .flat_map(|d| d["slots"].as_array().into_iter().flatten())
        .filter(|s| s["status"] == json!("booked"))
        .filter_map(|s| s["local_time"].as_str())
        .collect();
    let booked_slots: Vec<DateTime<Utc>> = v["booked_slots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .filter_map(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .collect();
    ensure(
        v["success"] == json!(true)
            && v["doctor_id"] == json!(doctor)
            && v["timezone"] == json!("UTC")
            && v["slot_minutes"] == json!(30)
            && v["availability_schedule"]["sunday"]
                == json!({"enabled": true, "start": "00:00", "end": "24:00"})
            && days.len() == 2
            && days[0]["date"] == json!(tomorrow.to_string())
            && days[0]["enabled"] == json!(true)
            && days
                .iter()
                .all(|d| d["slots"].as_array().is_some_and(|s| s.len() == 48))
            && days[0]["slots"][21]["local_time"] == json!("10:30")
            && days[0]["slots"][21]["status"] == json!("booked")
            && booked == ["10:30"]
            && booked_slots == [at],
        || format!("availability does not show the one booking: {body}"),
    )?;
    // Today's early slots are past.
    let (status, body) = send(
        client
            .get(format!("{base}/patient/doctors/{doctor}/availability"))
            .bearer_auth(patient(103)),
    )
    .await?;
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    ensure(
        status == 200
            && v["days"].as_array().is_some_and(|d| d.len() == 7)
            && v["days"][0]["slots"][0]["status"] == json!("past"),
        || format!("default availability answered {status} {body}"),
    )?;

    // A race: 16 patients at once for one free slot of the other doctor.
    let race_at = (midnight(tomorrow) + Duration::hours(12)).to_rfc3339();
    let racers: Vec<_> = (0..16)
        .map(|i| {
            send(book(
                patient(200 + i),
                book_json(doctors[1], &race_at, "chat"),
            ))
        })
        .collect();
    let mut created = 0;
    for (status, body) in futures::future::join_all(racers)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
    {
        match status {
            201 => created += 1,
            409 if body == CONFLICT_BODY => {}
            _ => return Err(format!("race: answered {status} {body}")),
        }
    }
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM consultations WHERE doctor_id = $1 AND status IN ('pending', 'scheduled')",
    )
    .bind(doctors[1])
    .fetch_one(&server.pool)
    .await
    .map_err(|e| format!("count: {e}"))?;
    ensure(stored == created, || {
        format!("race: {created} answered 201 but {stored} rows are stored")
    })?;
    let summary = format!("all checks passed; 16-way race for one slot: {created} booked");
    match kind {
        PeerKind::Exclusion | PeerKind::RowLock => {
            ensure(created == 1, || {
                format!("race: {created} bookings of one slot")
            })?;
        }
        PeerKind::SeedLiteral => {}
    }
    Ok(summary)
}
