//! The SQLite adapter: the embedded default. One database file in WAL mode with
//! `synchronous = FULL`, so an acknowledged batch survives a crash or power loss. Writers
//! take the write lock up front (`BEGIN IMMEDIATE`) and wait up to the busy timeout for it;
//! readers run concurrently from the pool. Timestamps are stored as fixed-format RFC 3339
//! UTC text (see [`ts`]) so that text order is time order.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use consult_actors::calendar::{DoctorEvent, JournalRecord};
use consult_actors::outbox::{
    InboxQuery, JoinSide, Notification, Recipient, SessionOutcome, SessionRecord, SessionTask,
    WebhookUpdate,
};
use consult_actors::{
    Consultation, ConsultationId, DoctorHistory, DoctorId, DoctorProfile, JournalEntry, NewDoctor,
    PatientId, SnapshotWrite, Store, StoreError, StoredIdempotency, StoredSnapshot,
};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row, Sqlite, SqliteConnection};

use crate::batch::{
    self, Cancellation, DoctorUpdate, JournalRow, NewConsultation, NewIdempotencyKey, NewMember,
    NewNotification, NewSession, Reschedule,
};
use crate::error::{config_error, db_error, migrate_error};
use crate::rows::{
    self, ReadRow, CONSULTATIONS_FROM, CONSULTATION_COLUMNS, DOCTOR_COLUMNS, NOTIFICATION_COLUMNS,
    SESSION_COLUMNS, SESSION_TASK_COLUMNS,
};
use crate::sqlite_lock::{lock_database, DatabaseLock};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Pool size: one writer at a time (SQLite's rule) plus concurrent readers.
const MAX_CONNECTIONS: u32 = 8;
/// How long a writer waits for another writer's lock before failing.
/// WAL size, in pages, past which a commit checkpoints it.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;
/// Page cache per connection, in KiB.
const CACHE_KIB: u32 = 64 * 1024;
const BUSY_TIMEOUT_MS: u64 = 5_000;
/// How long a caller waits for a pooled connection.
const ACQUIRE_TIMEOUT_MS: u64 = 10_000;
/// SQLite's bound-parameter limit per statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32).
const MAX_BOUND_VARIABLES: usize = 32_766;
const JOURNAL_COLUMNS: usize = 5;
const CONSULTATION_INSERT_COLUMNS: usize = 17;

/// The store on one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Readers.
    pool: SqlitePool,
    /// The one connection every write goes through: SQLite has a single writer anyway, and
    /// one connection keeps its page cache warm (a cache is per connection and is dropped
    /// whenever another connection writes).
    writer: SqlitePool,
    /// This process's lock on the database file (none in memory), shared by the clones,
    /// given up by [`SqliteStore::close`] or when the last clone is dropped.
    lock: Arc<Mutex<Option<Arc<DatabaseLock>>>>,
    /// See [`Store::queue_webhooks`]; shared by the clones.
    webhooks: Arc<AtomicBool>,
}

impl SqliteStore {
    /// Opens (creating the file and its parent directory if missing) the database a
    /// `sqlite:` URL names, e.g. `sqlite://data/consult-scheduler.db` (relative) or
    /// `sqlite:///abs/path.db`, and runs the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url).map_err(config_error)?;
        Self::connect_with(options).await
    }

    /// Like [`SqliteStore::connect`], from options. The durability settings (WAL,
    /// `synchronous = FULL`, busy timeout, foreign keys, create if missing) are always
    /// applied over what `options` says.
    ///
    /// A database file is served by one process: this first locks `<file>.lock` (see
    /// [`crate::sqlite_lock`]) and refuses with `Unavailable`, naming the lock file, while
    /// another process has the database open.
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .foreign_keys(true)
            // A booking touches several index pages; a larger page cache keeps a batch's
            // dirty pages in memory instead of spilling them mid-transaction.
            .pragma("cache_size", format!("-{CACHE_KIB}"))
            .pragma("temp_store", "memory")
            // Checkpoint the WAL into the database less often (default 1,000 pages), so a
            // page rewritten by many batches is copied once.
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        let filename = options.get_filename();
        create_parent_dir(filename)?;
        let lock = if is_file(filename) {
            let lock = lock_database(filename)?;
            refuse_foreign_file(filename).await?;
            Some(lock)
        } else {
            None
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
            // A write whose statement or COMMIT failed on a full disk leaves sqlx counting a
            // transaction that SQLite has already rolled back by itself; the ROLLBACK then
            // fails too, and that connection would refuse every later `BEGIN IMMEDIATE`
            // ("begin_with at non-zero transaction depth") for good. Such a connection is
            // closed instead of reused, and the next write opens a fresh one. (A released
            // connection is pinged first, so a pending rollback has run by now.)
            .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(options.clone())
            .await
            .map_err(db_error)?;
        MIGRATOR.run(&writer).await.map_err(migrate_error)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Ok(Self {
            pool,
            writer,
            lock: Arc::new(Mutex::new(lock)),
            webhooks: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The `webhook_state` new notifications get (see [`rows::webhook_state`]).
    fn webhook_state(&self) -> &'static str {
        rows::webhook_state(self.webhooks.load(Ordering::Relaxed))
    }

    /// The connection pool, for tests and operational queries.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection, first moving the WAL into the database file and truncating
    /// it, then gives up the lock on the file; later calls fail. (SQLite also checkpoints
    /// when its last connection closes, but not when connections close at the same moment
    /// and see each other still open.)
    pub async fn close(&self) {
        self.pool.close().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint at close failed; the next start replays it");
        }
        self.writer.close().await;
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }
}

/// Refuses a database file that is not this service's, before anything writes to it (even
/// switching to WAL rewrites the header): a file that is not SQLite at all (or is
/// damaged), one holding another application's tables, or one migrated by another
/// application or a newer version. Missing or empty files, and files holding only this
/// service's tables and migrations, pass. The file is only read (a read-only connection).
async fn refuse_foreign_file(filename: &Path) -> Result<(), StoreError> {
    match std::fs::metadata(filename) {
        Ok(meta) if meta.len() > 0 => {}
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::Unavailable(format!(
                "cannot read the database file {}: {e}",
                filename.display()
            )))
        }
    }
    let name = filename.display();
    let advice = "it was left untouched; point database.url at this service's database or at \
                  a new file";
    let unreadable = |e: sqlx::Error| {
        StoreError::Corrupt(format!(
            "{name} is not a SQLite database this service can open ({e}); {advice}"
        ))
    };
    let options = SqliteConnectOptions::new()
        .filename(filename)
        .read_only(true)
        .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS));
    let mut conn = options.connect().await.map_err(unreadable)?;
    let verdict = async {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(unreadable)?;
        if tables.is_empty() {
            return Ok(());
        }
        if !tables.iter().any(|t| t == "_sqlx_migrations") {
            let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
            let more = if tables.len() > shown.len() {
                ", ..."
            } else {
                ""
            };
            return Err(StoreError::Unavailable(format!(
                "{name} is not a Consult Scheduler database: it holds other tables ({}{more}) \
                 and no migration history of this service; {advice}",
                shown.join(", ")
            )));
        }
        let applied: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await
                .map_err(unreadable)?;
        for (version, checksum) in applied {
            let known = MIGRATOR.iter().any(|m| {
                m.version == version
                    && !m.migration_type.is_down_migration()
                    && *m.checksum == *checksum
            });
            if !known {
                return Err(StoreError::Unavailable(format!(
                    "{name} was migrated by another application or another version of this \
                     service (migration {version} is not one of this version's); {advice}"
                )));
            }
        }
        Ok(())
    }
    .await;
    let _ = conn.close().await;
    verdict
}

/// Whether the database is a file (an in-memory database is named `:memory:` or, shared
/// in sqlx, `file:sqlx-in-memory-...`).
fn is_file(filename: &Path) -> bool {
    let name = filename.to_string_lossy();
    name != ":memory:" && !name.starts_with("file:")
}

/// sqlx creates the file but not its directory. In-memory databases have no directory.
fn create_parent_dir(filename: &Path) -> Result<(), StoreError> {
    if !is_file(filename) {
        return Ok(());
    }
    match filename.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create the database directory: {e}"))
        }),
        _ => Ok(()),
    }
}

/// A timestamp as stored: RFC 3339 UTC with exactly six fractional digits and `Z`, so
/// that text comparison is time comparison. Truncated to microseconds, like Postgres.
fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_ts(column: &str, text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("{column} is not an RFC 3339 timestamp")))
}

impl ReadRow for SqliteRow {
    fn int8(&self, column: &str) -> Result<i64, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn opt_int8(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn int4(&self, column: &str) -> Result<i32, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn boolean(&self, column: &str) -> Result<bool, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        parse_ts(column, &self.text(column)?)
    }
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_text(column)?
            .map(|text| parse_ts(column, &text))
            .transpose()
    }
    fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.try_get(column).map_err(db_error)
    }
}

async fn insert_journal(
    conn: &mut SqliteConnection,
    rows: &[JournalRow],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(MAX_BOUND_VARIABLES / JOURNAL_COLUMNS) {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO journal (doctor_id, seq, kind, payload, recorded_at) ",
        );
        query.push_values(chunk, |mut row, r| {
            row.push_bind(r.doctor_id)
                .push_bind(r.seq)
                .push_bind(r.kind)
                .push_bind(r.payload.as_slice())
                .push_bind(ts(r.recorded_at));
        });
        query.build().execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

async fn insert_consultations(
    conn: &mut SqliteConnection,
    rows: &[NewConsultation<'_>],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(MAX_BOUND_VARIABLES / CONSULTATION_INSERT_COLUMNS) {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO consultations (id, reference, doctor_id, patient_id, scheduled_at, \
             duration_minutes, status, consultation_mode, consult_mode, session_status, reason, \
             symptoms, medical_history, allergies, current_medications, created_at, updated_at) ",
        );
        query.push_values(chunk, |mut row, c| {
            row.push_bind(c.id)
                .push_bind(c.reference.as_str())
                .push_bind(c.doctor_id)
                .push_bind(c.patient_id)
                .push_bind(ts(c.scheduled_at))
                .push_bind(c.duration_minutes)
                .push_bind(c.status)
                .push_bind(c.mode)
                .push_bind(c.mode)
                .push_bind(c.session_status)
                .push_bind(c.medical.reason.as_deref())
                .push_bind(c.medical.symptoms.as_deref())
                .push_bind(c.medical.medical_history.as_deref())
                .push_bind(c.medical.allergies.as_deref())
                .push_bind(c.medical.current_medications.as_deref())
                .push_bind(ts(c.created_at))
                .push_bind(ts(c.created_at));
        });
        query.build().execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

async fn cancel_consultations(
    conn: &mut SqliteConnection,
    rows: &[Cancellation],
) -> Result<(), StoreError> {
    let mut updated = 0;
    for c in rows {
        updated += sqlx::query(
            "UPDATE consultations SET status = 'cancelled', cancelled_at = ?1, updated_at = ?1 \
             WHERE id = ?2 AND doctor_id = ?3",
        )
        .bind(ts(c.at))
        .bind(c.id)
        .bind(c.doctor_id)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?
        .rows_affected();
    }
    if updated != rows.len() as u64 {
        tracing::warn!(
            expected = rows.len(),
            updated,
            "cancellation events without a matching consultation row"
        );
    }
    Ok(())
}

/// One statement per move, in order: SQLite checks the unique active start row by row, and
/// the phase's order is one in which it never fires (see [`crate::batch`]).
async fn reschedule_consultations(
    conn: &mut SqliteConnection,
    rows: &[Reschedule],
) -> Result<(), StoreError> {
    let mut updated = 0;
    for r in rows {
        updated += sqlx::query(
            "UPDATE consultations SET scheduled_at = ?1, updated_at = ?2 \
             WHERE id = ?3 AND doctor_id = ?4",
        )
        .bind(ts(r.to))
        .bind(ts(r.at))
        .bind(r.id)
        .bind(r.doctor_id)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?
        .rows_affected();
    }
    if updated != rows.len() as u64 {
        tracing::warn!(
            expected = rows.len(),
            updated,
            "reschedule events without a matching consultation row"
        );
    }
    Ok(())
}

async fn insert_idempotency_keys(
    conn: &mut SqliteConnection,
    rows: &[NewIdempotencyKey<'_>],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(MAX_BOUND_VARIABLES / 6) {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO idempotency_keys (patient_id, key, fingerprint, consultation_id, \
             created_at, expires_at) ",
        );
        query.push_values(chunk, |mut row, k| {
            row.push_bind(k.patient_id)
                .push_bind(k.key)
                .push_bind(k.fingerprint)
                .push_bind(k.consultation_id)
                .push_bind(ts(k.created_at))
                .push_bind(ts(k.expires_at));
        });
        query.build().execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

async fn insert_members(
    conn: &mut SqliteConnection,
    rows: &[NewMember<'_>],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(MAX_BOUND_VARIABLES / 4) {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO booking_members (consultation_id, booking_id, patient_name, relation) ",
        );
        query.push_values(chunk, |mut row, m| {
            row.push_bind(m.consultation_id)
                .push_bind(m.member.booking_id)
                .push_bind(m.member.patient_name.as_str())
                .push_bind(m.member.relation.as_deref());
        });
        query.build().execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

async fn insert_sessions(
    conn: &mut SqliteConnection,
    rows: &[NewSession],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(MAX_BOUND_VARIABLES / 5) {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO sessions (consultation_id, status, attempts, next_attempt_at, \
             updated_at) ",
        );
        query.push_values(chunk, |mut row, r| {
            let at = ts(r.at);
            row.push_bind(r.consultation_id)
                .push_bind("pending")
                .push_bind(0_i32)
                .push_bind(at.clone())
                .push_bind(at);
        });
        query.build().execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

/// Settles one pending session inside the caller's transaction (see
/// `Store::settle_sessions`); `false` when it was not pending.
async fn settle_one(
    conn: &mut SqliteConnection,
    outcome: &SessionOutcome,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let id = outcome.consultation_id();
    let status = outcome.status().as_str();
    let query = match outcome {
        SessionOutcome::Ready {
            provider,
            provider_session_id,
            expires_at,
            ..
        } => sqlx::query(
            "UPDATE sessions SET status = ?2, provider = ?3, provider_session_id = ?4, \
             expires_at = ?5, last_error = NULL, updated_at = ?6 WHERE consultation_id = ?1 AND status = 'pending'",
        )
        .bind(id)
        .bind(status)
        .bind(provider.as_str())
        .bind(provider_session_id.as_str())
        .bind(ts(*expires_at))
        .bind(ts(now)),
        SessionOutcome::Failed { error, .. } => sqlx::query(
            "UPDATE sessions SET status = ?2, last_error = ?3, updated_at = ?4 \
             WHERE consultation_id = ?1 AND status = 'pending'",
        )
        .bind(id)
        .bind(status)
        .bind(error.as_str())
        .bind(ts(now)),
        SessionOutcome::NotRequired { .. } => sqlx::query(
            "UPDATE sessions SET status = ?2, updated_at = ?3 \
             WHERE consultation_id = ?1 AND status = 'pending'",
        )
        .bind(id)
        .bind(status)
        .bind(ts(now)),
    };
    if query
        .execute(&mut *conn)
        .await
        .map_err(db_error)?
        .rows_affected()
        == 0
    {
        return Ok(false);
    }
    // The consultation's `session_status` is read through the session row (see
    // `CONSULTATION_COLUMNS`), so it is not written again here.
    Ok(true)
}

/// Bound values per notification row written from the batch.
const NOTIFICATION_INSERT_COLUMNS: usize = 8;

/// Writes each event for the consultation's patient, then its doctor, in event order (ids
/// follow it). A run of events that name their parties (bookings) is one statement; an
/// event that does not (a cancellation) reads them from the consultation in its own.
/// `webhook_state`: see [`rows::webhook_state`].
async fn insert_notifications(
    conn: &mut SqliteConnection,
    rows: &[NewNotification],
    webhook_state: &'static str,
) -> Result<(), StoreError> {
    let most_events = MAX_BOUND_VARIABLES / NOTIFICATION_INSERT_COLUMNS / 2;
    let mut rest = rows;
    while let Some(first) = rest.first() {
        let named = rest
            .iter()
            .take_while(|r| r.parties.is_some())
            .take(most_events)
            .count();
        if named == 0 {
            sqlx::query(
                "INSERT INTO notifications (recipient_role, recipient_id, kind, consultation_id, \
                 created_at, webhook_state, webhook_attempts, webhook_next_at) \
                 SELECT r.role, CASE r.n WHEN 1 THEN c.patient_id ELSE c.doctor_id END, ?1, c.id, \
                 ?2, ?4, 0, ?2 \
                 FROM consultations c \
                 CROSS JOIN (SELECT 1 AS n, 'patient' AS role UNION ALL SELECT 2, 'doctor') r \
                 WHERE c.id = ?3 ORDER BY r.n",
            )
            .bind(first.kind)
            .bind(ts(first.at))
            .bind(first.consultation_id)
            .bind(webhook_state)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            rest = &rest[1..];
            continue;
        }
        let (run, later) = rest.split_at(named);
        let recipients = run.iter().flat_map(|r| {
            let (patient, doctor) = r.parties.expect("a named event");
            [("patient", patient, r), ("doctor", doctor, r)]
        });
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO notifications (recipient_role, recipient_id, kind, consultation_id, \
             created_at, webhook_state, webhook_attempts, webhook_next_at) ",
        );
        query.push_values(recipients, |mut row, (role, recipient, r)| {
            let at = ts(r.at);
            row.push_bind(role)
                .push_bind(recipient)
                .push_bind(r.kind)
                .push_bind(r.consultation_id)
                .push_bind(at.clone())
                .push_bind(webhook_state)
                .push_bind(0_i64)
                .push_bind(at);
        });
        query.build().execute(&mut *conn).await.map_err(db_error)?;
        rest = later;
    }
    Ok(())
}

async fn update_doctor(
    conn: &mut SqliteConnection,
    update: &DoctorUpdate,
) -> Result<(), StoreError> {
    let query = match update {
        DoctorUpdate::Schedule {
            doctor_id,
            timezone,
            slot_minutes,
            schedule_json,
            overrides_json,
            policy_json,
            at,
        } => sqlx::query(
            "UPDATE doctors SET timezone = ?1, slot_minutes = ?2, availability_schedule = ?3, \
             updated_at = ?4, date_overrides = ?6, booking_policy = ?7 WHERE id = ?5",
        )
        .bind(*timezone)
        .bind(*slot_minutes)
        .bind(schedule_json.as_str())
        .bind(ts(*at))
        .bind(*doctor_id)
        .bind(overrides_json.as_str())
        .bind(policy_json.as_str()),
        DoctorUpdate::Status {
            doctor_id,
            is_available,
            is_approved,
            at,
        } => sqlx::query(
            "UPDATE doctors SET is_available = ?1, is_approved = ?2, updated_at = ?3 WHERE id = ?4",
        )
        .bind(*is_available)
        .bind(*is_approved)
        .bind(ts(*at))
        .bind(*doctor_id),
    };
    query.execute(&mut *conn).await.map_err(db_error)?;
    Ok(())
}

fn consultations(rows: Vec<SqliteRow>) -> Result<Vec<Consultation>, StoreError> {
    rows.iter().map(rows::consultation).collect()
}

/// Stores (replaces) a doctor's snapshot.
fn upsert_snapshot(
    doctor_id: DoctorId,
    seq: u64,
    blob: &[u8],
    now: DateTime<Utc>,
) -> Result<sqlx::query::Query<'_, Sqlite, SqliteArguments<'_>>, StoreError> {
    Ok(sqlx::query(
        "INSERT INTO snapshots (doctor_id, seq, blob, taken_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (doctor_id) DO UPDATE \
         SET seq = excluded.seq, blob = excluded.blob, taken_at = excluded.taken_at",
    )
    .bind(doctor_id)
    .bind(batch::seq_to_i64(seq)?)
    .bind(blob)
    .bind(ts(now)))
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_doctor(
        &self,
        doctor: &NewDoctor,
        now: DateTime<Utc>,
    ) -> Result<DoctorProfile, StoreError> {
        let schedule = batch::schedule_json(&doctor.schedule)?;
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO doctors (name, specialty, timezone, slot_minutes, availability_schedule, \
             is_available, is_approved, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) RETURNING id",
        )
        .bind(&doctor.name)
        .bind(&doctor.specialty)
        .bind(doctor.timezone.name())
        .bind(i32::from(doctor.slot_minutes))
        .bind(schedule)
        .bind(doctor.is_available)
        .bind(doctor.is_approved)
        .bind(ts(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let profile = doctor.profile(id, now);
        let event = DoctorEvent::Registered {
            profile: profile.clone(),
        };
        sqlx::query(
            "INSERT INTO journal (doctor_id, seq, kind, payload, recorded_at) \
             VALUES (?1, 1, ?2, ?3, ?4)",
        )
        .bind(id)
        .bind(event.kind())
        .bind(event.encode())
        .bind(ts(now))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(profile)
    }

    async fn load_doctor(&self, id: DoctorId) -> Result<Option<DoctorHistory>, StoreError> {
        let exists = sqlx::query("SELECT 1 FROM doctors WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        if exists.is_none() {
            return Ok(None);
        }
        let snapshot = sqlx::query("SELECT seq, blob FROM snapshots WHERE doctor_id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .map(|row| -> Result<StoredSnapshot, StoreError> {
                Ok(StoredSnapshot {
                    seq: rows::seq_from_i64(row.try_get("seq").map_err(db_error)?)?,
                    blob: row.try_get("blob").map_err(db_error)?,
                })
            })
            .transpose()?;
        let after = snapshot.as_ref().map_or(0, |s| s.seq);
        let events = sqlx::query(
            "SELECT seq, payload FROM journal WHERE doctor_id = ?1 AND seq > ?2 ORDER BY seq",
        )
        .bind(id)
        .bind(batch::seq_to_i64(after)?)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| {
            let seq = rows::seq_from_i64(row.try_get("seq").map_err(db_error)?)?;
            let payload: &[u8] = row.try_get("payload").map_err(db_error)?;
            Ok((seq, DoctorEvent::decode(payload)?))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(DoctorHistory { snapshot, events }))
    }

    async fn doctor_journal(
        &self,
        doctor_id: DoctorId,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        // Backwards over the primary key (doctor_id, seq): reads `limit` rows, no more.
        sqlx::query(
            "SELECT seq, payload, recorded_at FROM journal WHERE doctor_id = ?1 \
             ORDER BY seq DESC LIMIT ?2",
        )
        .bind(doctor_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| {
            let payload: &[u8] = row.try_get("payload").map_err(db_error)?;
            Ok(JournalEntry {
                seq: rows::seq_from_i64(row.try_get("seq").map_err(db_error)?)?,
                recorded_at: parse_ts(
                    "recorded_at",
                    &row.try_get::<String, _>("recorded_at").map_err(db_error)?,
                )?,
                event: DoctorEvent::decode(payload)?,
            })
        })
        .collect()
    }

    async fn append(&self, batch: &[JournalRecord]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let plan = batch::plan(batch)?;
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        insert_journal(&mut tx, &plan.journal).await?;
        for phase in &plan.phases {
            insert_consultations(&mut tx, &phase.bookings).await?;
            reschedule_consultations(&mut tx, &phase.reschedules).await?;
            cancel_consultations(&mut tx, &phase.cancellations).await?;
        }
        for update in &plan.doctor_updates {
            update_doctor(&mut tx, update).await?;
        }
        insert_idempotency_keys(&mut tx, &plan.idempotency).await?;
        insert_members(&mut tx, &plan.members).await?;
        insert_sessions(&mut tx, &plan.sessions).await?;
        insert_notifications(&mut tx, &plan.notifications, self.webhook_state()).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn find_idempotency(
        &self,
        patient_id: PatientId,
        key: &str,
    ) -> Result<Option<StoredIdempotency>, StoreError> {
        sqlx::query(
            "SELECT fingerprint, consultation_id, expires_at FROM idempotency_keys \
             WHERE patient_id = ?1 AND key = ?2",
        )
        .bind(patient_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .map(|row| {
            Ok(StoredIdempotency {
                fingerprint: row.text("fingerprint")?,
                consultation_id: row.int8("consultation_id")?,
                expires_at: row.time("expires_at")?,
            })
        })
        .transpose()
    }

    async fn unexpired_idempotency_keys(
        &self,
        now: DateTime<Utc>,
        after: (PatientId, &str),
        limit: u32,
    ) -> Result<Vec<(PatientId, String, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT patient_id, key, expires_at FROM idempotency_keys \
             WHERE expires_at > ?1 AND (patient_id, key) > (?2, ?3) \
             ORDER BY patient_id, key LIMIT ?4",
        )
        .bind(ts(now))
        .bind(after.0)
        .bind(after.1)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.int8("patient_id")?,
                    row.text("key")?,
                    row.time("expires_at")?,
                ))
            })
            .collect()
    }

    async fn forget_expired_idempotency(
        &self,
        patient_id: PatientId,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM idempotency_keys WHERE patient_id = ?1 AND key = ?2 \
             AND expires_at <= ?3",
        )
        .bind(patient_id)
        .bind(key)
        .bind(ts(now))
        .execute(&self.writer)
        .await
        .map_err(db_error)?
        .rows_affected()
            > 0)
    }

    async fn purge_idempotency(&self, now: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys \
             WHERE expires_at <= ?1 LIMIT ?2)",
        )
        .bind(ts(now))
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map_err(db_error)?
        .rows_affected())
    }

    async fn save_snapshot(
        &self,
        doctor_id: DoctorId,
        seq: u64,
        blob: &[u8],
    ) -> Result<(), StoreError> {
        upsert_snapshot(doctor_id, seq, blob, Utc::now())?
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// One transaction. A single instance: there are no fences to check.
    async fn save_snapshots(&self, snapshots: &[SnapshotWrite]) -> Result<Vec<bool>, StoreError> {
        if snapshots.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        for s in snapshots {
            upsert_snapshot(s.doctor_id, s.seq, &s.blob, now)?
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(vec![true; snapshots.len()])
    }

    async fn delete_snapshots(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM snapshots")
            .execute(&self.writer)
            .await
            .map_err(db_error)?
            .rows_affected())
    }

    async fn max_consultation_id(&self) -> Result<ConsultationId, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM consultations")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn list_doctors(&self) -> Result<Vec<DoctorProfile>, StoreError> {
        sqlx::query(&format!("SELECT {DOCTOR_COLUMNS} FROM doctors ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?
            .iter()
            .map(rows::doctor)
            .collect()
    }

    async fn get_consultation(
        &self,
        id: ConsultationId,
    ) -> Result<Option<Consultation>, StoreError> {
        sqlx::query(&format!(
            "SELECT {CONSULTATION_COLUMNS} FROM {CONSULTATIONS_FROM} WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(rows::consultation)
        .transpose()
    }

    async fn booking_consultations(
        &self,
        booking_id: i64,
    ) -> Result<Vec<Consultation>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONSULTATION_COLUMNS} FROM {CONSULTATIONS_FROM} \
             WHERE booking_id = ?1 ORDER BY id LIMIT 10"
        ))
        .bind(booking_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        consultations(rows)
    }

    async fn patient_consultations(
        &self,
        patient_id: PatientId,
        limit: u32,
    ) -> Result<Vec<Consultation>, StoreError> {
        let found = sqlx::query(&format!(
            "SELECT {CONSULTATION_COLUMNS} FROM {CONSULTATIONS_FROM} WHERE patient_id = ?1 \
             ORDER BY scheduled_at DESC, id DESC LIMIT ?2"
        ))
        .bind(patient_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        consultations(found)
    }

    async fn doctor_consultations(
        &self,
        doctor_id: DoctorId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Consultation>, StoreError> {
        let found = sqlx::query(&format!(
            "SELECT {CONSULTATION_COLUMNS} FROM {CONSULTATIONS_FROM} \
             WHERE doctor_id = ?1 AND scheduled_at >= ?2 AND scheduled_at < ?3 \
             ORDER BY scheduled_at, id LIMIT ?4"
        ))
        .bind(doctor_id)
        .bind(ts(from))
        .bind(ts(to))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        consultations(found)
    }

    async fn active_consultations(
        &self,
        doctor_id: Option<DoctorId>,
    ) -> Result<Vec<Consultation>, StoreError> {
        let found = sqlx::query(&format!(
            "SELECT {CONSULTATION_COLUMNS} FROM {CONSULTATIONS_FROM} \
             WHERE status IN ('pending', 'scheduled') AND (?1 IS NULL OR doctor_id = ?1) \
             ORDER BY doctor_id, scheduled_at, id"
        ))
        .bind(doctor_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        consultations(found)
    }

    async fn due_sessions(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SessionTask>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SESSION_TASK_COLUMNS} FROM sessions s \
             JOIN consultations c ON c.id = s.consultation_id \
             WHERE s.status = 'pending' AND s.next_attempt_at <= ?1 \
             ORDER BY s.next_attempt_at, s.consultation_id LIMIT ?2"
        ))
        .bind(ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(rows::session_task)
        .collect()
    }

    async fn pending_sessions(
        &self,
        consultation_ids: &[ConsultationId],
    ) -> Result<Vec<SessionTask>, StoreError> {
        // The ids as a JSON array: one statement whatever their number.
        let ids = serde_json::to_string(consultation_ids).expect("ids serialize");
        sqlx::query(&format!(
            "SELECT {SESSION_TASK_COLUMNS} FROM sessions s \
             JOIN consultations c ON c.id = s.consultation_id \
             WHERE s.consultation_id IN (SELECT value FROM json_each(?1)) \
             AND s.status = 'pending'"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(rows::session_task)
        .collect()
    }

    async fn session(
        &self,
        consultation_id: ConsultationId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE consultation_id = ?1"
        ))
        .bind(consultation_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(rows::session_record)
        .transpose()
    }

    async fn retry_session(
        &self,
        consultation_id: ConsultationId,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sessions SET attempts = ?2, next_attempt_at = ?3, last_error = ?4, \
             updated_at = ?5 WHERE consultation_id = ?1 AND status = 'pending'",
        )
        .bind(consultation_id)
        .bind(attempts as i32)
        .bind(ts(next_attempt_at))
        .bind(error)
        .bind(ts(Utc::now()))
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn settle_sessions(
        &self,
        outcomes: &[SessionOutcome],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let mut settled = Vec::with_capacity(outcomes.len());
        let mut notifications = Vec::new();
        for outcome in outcomes {
            let done = settle_one(&mut tx, outcome, now).await?;
            if let Some(kind) = outcome.notification().filter(|_| done) {
                notifications.push(NewNotification {
                    kind: kind.as_str(),
                    consultation_id: outcome.consultation_id(),
                    parties: None,
                    at: now,
                });
            }
            settled.push(done);
        }
        insert_notifications(&mut tx, &notifications, self.webhook_state()).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(settled)
    }

    async fn save_join(
        &self,
        consultation_id: ConsultationId,
        side: JoinSide,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        let sql = match side {
            JoinSide::Doctor => {
                "UPDATE sessions SET doctor_join = ?2 WHERE consultation_id = ?1 AND status = 'ready'"
            }
            JoinSide::Patient => {
                "UPDATE sessions SET patient_join = ?2 WHERE consultation_id = ?1 AND status = 'ready'"
            }
        };
        sqlx::query(sql)
            .bind(consultation_id)
            .bind(sealed)
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn notifications(&self, query: &InboxQuery) -> Result<Vec<Notification>, StoreError> {
        sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications n \
             JOIN consultations c ON c.id = n.consultation_id \
             WHERE n.recipient_role = ?1 AND n.recipient_id = ?2 \
             AND (?3 IS NULL OR n.id < ?3) AND (NOT ?4 OR n.read_at IS NULL) \
             ORDER BY n.id DESC LIMIT ?5"
        ))
        .bind(query.recipient.role.as_str())
        .bind(query.recipient.id)
        .bind(query.before_id)
        .bind(query.unread_only)
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(rows::notification)
        .collect()
    }

    async fn mark_notifications_read(
        &self,
        recipient: Recipient,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let ids = serde_json::to_string(ids)
            .map_err(|e| StoreError::Corrupt(format!("ids do not serialize: {e}")))?;
        Ok(sqlx::query(
            "UPDATE notifications SET read_at = ?1 WHERE recipient_role = ?2 \
             AND recipient_id = ?3 AND id IN (SELECT value FROM json_each(?4)) \
             AND read_at IS NULL",
        )
        .bind(ts(now))
        .bind(recipient.role.as_str())
        .bind(recipient.id)
        .bind(ids)
        .execute(&self.writer)
        .await
        .map_err(db_error)?
        .rows_affected())
    }

    fn queue_webhooks(&self, queued: bool) {
        self.webhooks.store(queued, Ordering::Relaxed);
    }

    async fn due_webhooks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications n \
             JOIN consultations c ON c.id = n.consultation_id \
             WHERE n.webhook_state = 'pending' AND n.webhook_next_at <= ?1 \
             ORDER BY n.webhook_next_at, n.id LIMIT ?2"
        ))
        .bind(ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(rows::notification)
        .collect()
    }

    async fn update_webhook(&self, id: i64, update: WebhookUpdate) -> Result<(), StoreError> {
        let query = match update {
            WebhookUpdate::Delivered => sqlx::query(
                "UPDATE notifications SET webhook_state = 'delivered', \
                 webhook_attempts = webhook_attempts + 1 WHERE id = ?1",
            )
            .bind(id),
            WebhookUpdate::Retry { attempts, next_at } => sqlx::query(
                "UPDATE notifications SET webhook_attempts = ?2, webhook_next_at = ?3 \
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(attempts as i32)
            .bind(ts(next_at)),
            WebhookUpdate::GaveUp { attempts } => sqlx::query(
                "UPDATE notifications SET webhook_state = 'failed', webhook_attempts = ?2 \
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(attempts as i32),
        };
        query.execute(&self.writer).await.map_err(db_error)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }
}
