//! The Postgres adapter: production storage. A journal batch is all or nothing in a few
//! set-based statements whatever its size. A batch of bookings only (the usual one) is one
//! statement, four inserts joined by CTEs from UNNESTed arrays (journal, consultations,
//! session and notification outboxes), in one round trip. Other batches are one
//! transaction: the journal insert, per phase (see [`crate::batch::Plan`]) one UNNEST
//! insert for the bookings, one update per reschedule (in order) and one UNNEST update for
//! the cancellations, per-row updates for the rare doctor changes, then the outboxes. A
//! fenced batch (several instances, see [`crate::cluster`]) is always a transaction that
//! first checks its shards' lease epochs, then runs the same statements.
//! `synchronous_commit` stays on: commit means durable.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use consult_actors::calendar::{DoctorEvent, JournalRecord};
use consult_actors::cluster::{ClusterStore, Fence};
use consult_actors::outbox::{
    InboxQuery, JoinSide, Notification, Recipient, SessionOutcome, SessionRecord, SessionTask,
    WebhookUpdate,
};
use consult_actors::{
    Consultation, ConsultationId, DoctorHistory, DoctorId, DoctorProfile, JournalEntry, NewDoctor,
    PatientId, SnapshotWrite, Store, StoreError, StoredIdempotency, StoredSnapshot,
};
use futures_util::StreamExt;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Either, Executor, PgConnection, Postgres, Row};

use crate::batch::{
    self, Cancellation, DoctorUpdate, JournalRow, NewConsultation, NewIdempotencyKey, NewMember,
    NewNotification, NewSession, Reschedule,
};
use crate::cluster::{bound_epoch, check_fences, FenceCheck};
use crate::error::{config_error, db_error, migrate_error};
use crate::rows::{
    self, ReadRow, CONSULTATIONS_FROM, CONSULTATION_COLUMNS, DOCTOR_COLUMNS, NOTIFICATION_COLUMNS,
    SESSION_COLUMNS, SESSION_TASK_COLUMNS,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Pool size: the journal writer, snapshots and the query traffic of one node.
const MAX_CONNECTIONS: u32 = 16;
/// How long a caller waits for a pooled connection. sqlx spends it retrying a refused
/// connection, so it is also how long a request waits while the database is down (a
/// restart, an outage) before its caller is answered 503: kept well under the engine's
/// call timeout (5 s), so the answer is the journal's clear "nothing was booked" rather
/// than a timeout's "it may have completed", and `/readyz` answers within it.
const ACQUIRE_TIMEOUT_MS: u64 = 2_000;
/// How long the service waits at start for a database that refuses connections (still
/// starting up, e.g. started together with it).
const STARTUP_WAIT_MS: u64 = 10_000;
/// The `application_name` of this store's sessions (`pg_stat_activity`), unless the URL
/// names another.
const APPLICATION_NAME: &str = "consult-scheduler";
/// How long a claim on outbox work (a session attempt, a webhook delivery) keeps other
/// instances off it: longer than an attempt takes with the default timeouts (Vonage 10 s
/// per call, a few calls; webhooks 5 s per URL), short enough that the work of an instance
/// that died is picked up again soon. See [`PgStore::with_outbox_claim`].
pub const DEFAULT_OUTBOX_CLAIM_S: u64 = 300;

/// How long the server lets a transaction of this store sit idle before ending it.
const IDLE_IN_TRANSACTION_TIMEOUT_MS: u64 = 2000;
/// Most connections kept out of the pool for journal writes between batches (see
/// [`JournalConnections`]): one per journal writer, which is one unless
/// `engine.journal_writers` says more.
const MAX_KEPT_JOURNAL_CONNECTIONS: usize = 8;
/// How long a journal connection is kept before it goes back to the pool.
const JOURNAL_CONNECTION_TURN: Duration = Duration::from_secs(600);

/// The store on one Postgres database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Names this store's claims on session rows (`sessions.claimed_by`); unique per
    /// connected store, shared by its clones.
    claimer: i64,
    /// See [`DEFAULT_OUTBOX_CLAIM_S`].
    outbox_claim: Duration,
    /// See [`Store::queue_webhooks`]; shared by the clones.
    webhooks: Arc<AtomicBool>,
    /// Shared by the clones.
    journal: Arc<JournalConnections>,
}

/// The connections journal writes go to, kept between batches instead of going back to the
/// pool after each.
///
/// sqlx tests every connection returned to its pool with a round trip (a `Sync`), and its
/// idle queue hands out connections in turn, so the journal's transactions went through all
/// 16 connections one after another: one more round trip per transaction, and each
/// transaction in a backend process whose caches had gone cold. A writer now takes a kept
/// connection when there is one and puts it back after a write that succeeded. A write
/// that failed gives its connection back to the pool, which tests it and closes it if it
/// broke, so the next batch starts on a sound connection, as before. While the pool has no
/// idle connection, a connection is given back rather than kept: callers may be waiting in
/// the pool for one (multi-patient bookings write their own batches, many at once), and a
/// kept connection is out of their reach. A connection kept for
/// [`JOURNAL_CONNECTION_TURN`] goes back to the pool too, so the server processes behind
/// the journal are renewed as the pool's other connections are.
#[derive(Debug, Default)]
struct JournalConnections {
    kept: std::sync::Mutex<Vec<KeptConnection>>,
}

/// A connection taken out of the pool for journal writes, and since when.
#[derive(Debug)]
struct KeptConnection {
    conn: PoolConnection<Postgres>,
    since: std::time::Instant,
}

impl JournalConnections {
    async fn take(&self, pool: &PgPool) -> Result<KeptConnection, StoreError> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match kept {
            Some(kept) => Ok(kept),
            None => Ok(KeptConnection {
                conn: pool.acquire().await.map_err(db_error)?,
                since: std::time::Instant::now(),
            }),
        }
    }

    /// Keeps `conn` for the next batch, unless the pool has no idle connection (others
    /// may be waiting for one), enough are kept or its turn is over: then it goes back to
    /// the pool.
    fn keep(&self, conn: KeptConnection, pool: &PgPool) {
        if pool.num_idle() == 0 || conn.since.elapsed() >= JOURNAL_CONNECTION_TURN {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < MAX_KEPT_JOURNAL_CONNECTIONS {
            kept.push(conn);
        }
    }

    /// Gives every kept connection back to the pool (which waits for them on close).
    fn release(&self) {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl PgStore {
    /// Connects to the database a `postgres:` / `postgresql:` URL names and runs the
    /// migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(config_error)?;
        Self::connect_with(options).await
    }

    /// Like [`PgStore::connect`], from options.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        // A transaction left idle (its process paused) must not hold its locks (the lease
        // rows a fenced write reads FOR SHARE) for long: the server ends it.
        let mut options = options.options([(
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT_MS.to_string(),
        )]);
        if options.get_application_name().is_none() {
            options = options.application_name(APPLICATION_NAME);
        }
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
            // No ping before each use: it is one more round trip per journal transaction.
            // A connection that broke is discarded by sqlx when its query fails; the
            // journal answers that batch's callers 503 and the next batch gets a new one.
            .test_before_acquire(false)
            .connect_lazy_with(options);
        wait_for_database(&pool).await?;
        MIGRATOR.run(&pool).await.map_err(migrate_error)?;
        let claimer = sqlx::query_scalar("SELECT nextval('outbox_claimers')")
            .fetch_one(&pool)
            .await
            .map_err(db_error)?;
        Ok(Self {
            pool,
            claimer,
            outbox_claim: Duration::from_secs(DEFAULT_OUTBOX_CLAIM_S),
            webhooks: Arc::new(AtomicBool::new(true)),
            journal: Arc::default(),
        })
    }

    /// The `webhook_state` new notifications get: `pending` (due at once) while webhooks
    /// are queued, else `none`, which no poll or index reads.
    fn webhook_state(&self) -> &'static str {
        rows::webhook_state(self.webhooks.load(Ordering::Relaxed))
    }

    /// The same store with another outbox claim period: it must be longer than one
    /// session attempt or webhook delivery round can take (the callers' timeouts), or
    /// another instance may start the same work while this one is still at it.
    pub fn with_outbox_claim(mut self, claim: Duration) -> Self {
        self.outbox_claim = claim;
        self
    }

    /// The connection pool, for tests and operational queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        self.journal.release();
        self.pool.close().await;
    }
}

/// Waits up to [`STARTUP_WAIT_MS`] for the first connection: each attempt retries a refused
/// connection for [`ACQUIRE_TIMEOUT_MS`]; any other failure (bad password, unknown
/// database) ends the wait at once.
async fn wait_for_database(pool: &PgPool) -> Result<(), StoreError> {
    let until = std::time::Instant::now() + Duration::from_millis(STARTUP_WAIT_MS);
    loop {
        match pool.acquire().await {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::PoolTimedOut) if std::time::Instant::now() < until => {}
            Err(e) => return Err(db_error(e)),
        }
    }
}

impl ReadRow for PgRow {
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
        self.try_get(column).map_err(db_error)
    }
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.try_get(column).map_err(db_error)
    }
    fn opt_blob(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.try_get(column).map_err(db_error)
    }
}

/// A Postgres statement with its arguments bound so far.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

// The set-based inserts of a journal batch. Each binds its arrays after the ones already
// bound, so the same binders serve the standalone statements of the transaction path and
// the one combined statement of a bookings-only batch (`BOOKINGS_BATCH`).

const INSERT_JOURNAL: &str = "INSERT INTO journal (doctor_id, seq, kind, payload, recorded_at) \
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bytea[], \
     $5::timestamptz[])";

fn bind_journal<'q>(query: PgQuery<'q>, rows: &'q [JournalRow]) -> PgQuery<'q> {
    query
        .bind(rows.iter().map(|r| r.doctor_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.payload.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
}

const INSERT_CONSULTATIONS: &str = "INSERT INTO consultations (id, reference, doctor_id, \
     patient_id, scheduled_at, duration_minutes, status, consultation_mode, consult_mode, \
     session_status, reason, symptoms, medical_history, allergies, current_medications, \
     created_at, updated_at) \
     SELECT u.id, u.reference, u.doctor_id, u.patient_id, u.scheduled_at, \
     u.duration_minutes, u.status, u.mode, u.mode, u.session_status, u.reason, u.symptoms, \
     u.medical_history, u.allergies, u.current_medications, u.created_at, u.created_at \
     FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[], \
     $6::int[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
     $13::text[], $14::text[], $15::timestamptz[]) \
     AS u(id, reference, doctor_id, patient_id, scheduled_at, duration_minutes, status, \
     mode, session_status, reason, symptoms, medical_history, allergies, \
     current_medications, created_at)";

fn bind_consultations<'q>(query: PgQuery<'q>, rows: &'q [NewConsultation<'_>]) -> PgQuery<'q> {
    let medical = |field: fn(&consult_actors::MedicalInfo) -> &Option<String>| {
        rows.iter()
            .map(|c| field(c.medical).as_deref())
            .collect::<Vec<_>>()
    };
    query
        .bind(rows.iter().map(|c| c.id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|c| c.reference.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|c| c.doctor_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|c| c.patient_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|c| c.scheduled_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|c| c.duration_minutes).collect::<Vec<_>>())
        .bind(rows.iter().map(|c| c.status).collect::<Vec<_>>())
        .bind(rows.iter().map(|c| c.mode).collect::<Vec<_>>())
        .bind(rows.iter().map(|c| c.session_status).collect::<Vec<_>>())
        .bind(medical(|m| &m.reason))
        .bind(medical(|m| &m.symptoms))
        .bind(medical(|m| &m.medical_history))
        .bind(medical(|m| &m.allergies))
        .bind(medical(|m| &m.current_medications))
        .bind(rows.iter().map(|c| c.created_at).collect::<Vec<_>>())
}

const INSERT_SESSIONS: &str = "INSERT INTO sessions (consultation_id, status, attempts, \
     next_attempt_at, updated_at) \
     SELECT u.id, 'pending', 0, u.at, u.at \
     FROM UNNEST($1::bigint[], $2::timestamptz[]) AS u(id, at)";

fn bind_sessions<'q>(query: PgQuery<'q>, rows: &'q [NewSession]) -> PgQuery<'q> {
    query
        .bind(rows.iter().map(|r| r.consultation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
}

/// Each event for its patient, then its doctor, in event order; the parties come with the
/// rows (bookings). The webhook state is bound last (`$6`).
const INSERT_NOTIFICATIONS: &str = "INSERT INTO notifications (recipient_role, recipient_id, \
     kind, consultation_id, created_at, webhook_state, webhook_attempts, webhook_next_at) \
     SELECT r.role, CASE r.n WHEN 1 THEN u.patient ELSE u.doctor END, u.kind, u.id, \
     u.at, $6::text, 0, u.at \
     FROM UNNEST($1::text[], $2::bigint[], $3::timestamptz[], $4::bigint[], \
     $5::bigint[]) WITH ORDINALITY AS u(kind, id, at, patient, doctor, ord) \
     CROSS JOIN (VALUES (1, 'patient'), (2, 'doctor')) AS r(n, role) \
     ORDER BY u.ord, r.n";

/// `parties`: each row's (patient, doctor).
fn bind_notifications<'q>(
    query: PgQuery<'q>,
    rows: &'q [NewNotification],
    parties: &[(i64, i64)],
) -> PgQuery<'q> {
    query
        .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.consultation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
        .bind(parties.iter().map(|p| p.0).collect::<Vec<_>>())
        .bind(parties.iter().map(|p| p.1).collect::<Vec<_>>())
}

const INSERT_IDEMPOTENCY_KEYS: &str = "INSERT INTO idempotency_keys (patient_id, key, \
     fingerprint, consultation_id, created_at, expires_at) \
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], \
     $5::timestamptz[], $6::timestamptz[])";

fn bind_idempotency_keys<'q>(query: PgQuery<'q>, rows: &'q [NewIdempotencyKey<'_>]) -> PgQuery<'q> {
    query
        .bind(rows.iter().map(|k| k.patient_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|k| k.key).collect::<Vec<_>>())
        .bind(rows.iter().map(|k| k.fingerprint).collect::<Vec<_>>())
        .bind(rows.iter().map(|k| k.consultation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|k| k.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|k| k.expires_at).collect::<Vec<_>>())
}

const INSERT_MEMBERS: &str = "INSERT INTO booking_members (consultation_id, booking_id, \
     patient_name, relation) \
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[])";

fn bind_members<'q>(query: PgQuery<'q>, rows: &'q [NewMember<'_>]) -> PgQuery<'q> {
    query
        .bind(rows.iter().map(|m| m.consultation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| m.member.booking_id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|m| m.member.patient_name.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|m| m.member.relation.as_deref())
                .collect::<Vec<_>>(),
        )
}

// The one statement of a bookings-only batch; see `BOOKINGS_BATCH`. `head` and `keys` are
// CTEs in front (the fence check, the idempotency keys), `when` the condition every insert
// is under, and `open` / `tail` turn the last insert into a CTE with a query after it.
macro_rules! bookings_batch {
    ($head:literal, $keys:literal, $when:literal, $open:literal, $tail:literal, $state:literal) => {
        concat!("WITH ", $head, $keys, "j AS (\
     INSERT INTO journal (doctor_id, seq, kind, payload, recorded_at) \
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bytea[], \
     $5::timestamptz[])", $when, "), \
     c AS (INSERT INTO consultations (id, reference, doctor_id, \
     patient_id, scheduled_at, duration_minutes, status, consultation_mode, consult_mode, \
     session_status, reason, symptoms, medical_history, allergies, current_medications, \
     created_at, updated_at) \
     SELECT u.id, u.reference, u.doctor_id, u.patient_id, u.scheduled_at, \
     u.duration_minutes, u.status, u.mode, u.mode, u.session_status, u.reason, u.symptoms, \
     u.medical_history, u.allergies, u.current_medications, u.created_at, u.created_at \
     FROM UNNEST($6::bigint[], $7::text[], $8::bigint[], $9::bigint[], $10::timestamptz[], \
     $11::int[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], \
     $17::text[], $18::text[], $19::text[], $20::timestamptz[]) \
     AS u(id, reference, doctor_id, patient_id, scheduled_at, duration_minutes, status, \
     mode, session_status, reason, symptoms, medical_history, allergies, \
     current_medications, created_at)", $when, "), \
     s AS (INSERT INTO sessions (consultation_id, status, attempts, next_attempt_at, updated_at) \
     SELECT u.id, 'pending', 0, u.at, u.at \
     FROM UNNEST($21::bigint[], $22::timestamptz[]) AS u(id, at)", $when, ") ", $open,
     "INSERT INTO notifications (recipient_role, recipient_id, \
     kind, consultation_id, created_at, webhook_state, webhook_attempts, webhook_next_at) \
     SELECT r.role, CASE r.n WHEN 1 THEN u.patient ELSE u.doctor END, u.kind, u.id, \
     u.at, ", $state, "::text, 0, u.at \
     FROM UNNEST($23::text[], $24::bigint[], $25::timestamptz[], $26::bigint[], \
     $27::bigint[]) WITH ORDINALITY AS u(kind, id, at, patient, doctor, ord) \
     CROSS JOIN (VALUES (1, 'patient'), (2, 'doctor')) AS r(n, role)", $when,
     " ORDER BY u.ord, r.n", $tail)
    };
}

/// A batch of bookings only (the usual batch) as one statement: Postgres runs it in its own
/// implicit transaction, so the batch is all or nothing in one round trip, where BEGIN, four
/// inserts and COMMIT took six. The parameters are those of the four statements above, in
/// order (journal 1-5, consultations 6-20, sessions 21-22, notifications 23-27), and last
/// the notifications' webhook state (28 here; after the keys' and the fences' parameters in
/// the variants below).
const BOOKINGS_BATCH: &str = bookings_batch!("", "", "", "", "", "$28");

/// [`BOOKINGS_BATCH`] for a batch where some bookings carry an idempotency key: one more
/// UNNEST insert in the same statement (parameters 28-33, bound after the notifications).
/// A batch without keys keeps the statement above and writes nothing extra.
const BOOKINGS_BATCH_WITH_KEYS: &str = bookings_batch!(
    "",
    "k AS (INSERT INTO idempotency_keys (patient_id, key, fingerprint, consultation_id, \
     created_at, expires_at) \
     SELECT * FROM UNNEST($28::bigint[], $29::text[], $30::text[], $31::bigint[], \
     $32::timestamptz[], $33::timestamptz[])), ",
    "",
    "",
    "",
    "$34"
);

/// [`PgStore::save_snapshots`]' statement: snapshots (doctor ids 1, seqs 2, blobs 3, each
/// one's fence or NULL 4-5) upserted where the fence found its lease row among the distinct
/// fences (6-7), locked `FOR SHARE` to the statement's commit.
const SAVE_SNAPSHOTS: &str = "WITH f AS MATERIALIZED (SELECT shard, epoch FROM shard_leases \
     WHERE (shard, epoch) IN (SELECT * FROM UNNEST($6::bigint[], $7::bigint[])) \
     ORDER BY shard FOR SHARE) \
     INSERT INTO snapshots (doctor_id, seq, blob, taken_at) \
     SELECT u.doctor_id, u.seq, u.blob, now() \
     FROM UNNEST($1::bigint[], $2::bigint[], $3::bytea[], $4::bigint[], $5::bigint[]) \
     AS u(doctor_id, seq, blob, shard, epoch) \
     WHERE u.shard IS NULL OR (u.shard, u.epoch) IN (SELECT shard, epoch FROM f) \
     ON CONFLICT (doctor_id) DO UPDATE \
     SET seq = excluded.seq, blob = excluded.blob, taken_at = excluded.taken_at \
     RETURNING doctor_id";

/// [`BOOKINGS_BATCH`] under fences (in a cluster), still one statement: the fence check of
/// [`check_fences`] is its first CTE (the lease rows `FOR SHARE`, held to the statement's
/// commit), every insert writes only if each fence found its row, and the statement
/// returns the rows found. So a fenced batch commits nothing, in one round trip where
/// BEGIN, the check, the batch and COMMIT took four. Parameters after the batch's: the
/// fences' shards, epochs and count.
const FENCED_BOOKINGS_BATCH: &str = bookings_batch!(
    "f AS (SELECT shard, epoch FROM shard_leases \
     WHERE (shard, epoch) IN (SELECT * FROM UNNEST($28::bigint[], $29::bigint[])) \
     ORDER BY shard FOR SHARE), ",
    "",
    " WHERE (SELECT count(*) FROM f) = $30",
    ", n AS (",
    ") SELECT shard, epoch FROM f",
    "$31"
);

/// [`FENCED_BOOKINGS_BATCH`] with idempotency keys (parameters 28-33, then the fences').
const FENCED_BOOKINGS_BATCH_WITH_KEYS: &str = bookings_batch!(
    "f AS (SELECT shard, epoch FROM shard_leases \
     WHERE (shard, epoch) IN (SELECT * FROM UNNEST($34::bigint[], $35::bigint[])) \
     ORDER BY shard FOR SHARE), ",
    "k AS (INSERT INTO idempotency_keys (patient_id, key, fingerprint, consultation_id, \
     created_at, expires_at) \
     SELECT * FROM UNNEST($28::bigint[], $29::text[], $30::text[], $31::bigint[], \
     $32::timestamptz[], $33::timestamptz[]) WHERE (SELECT count(*) FROM f) = $36), ",
    " WHERE (SELECT count(*) FROM f) = $36",
    ", n AS (",
    ") SELECT shard, epoch FROM f",
    "$37"
);

async fn insert_journal(conn: &mut PgConnection, rows: &[JournalRow]) -> Result<(), StoreError> {
    bind_journal(sqlx::query(INSERT_JOURNAL), rows)
        .execute(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn insert_consultations(
    conn: &mut PgConnection,
    rows: &[NewConsultation<'_>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    bind_consultations(sqlx::query(INSERT_CONSULTATIONS), rows)
        .execute(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn cancel_consultations(
    conn: &mut PgConnection,
    rows: &[Cancellation],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let updated = sqlx::query(
        "UPDATE consultations AS c \
         SET status = 'cancelled', cancelled_at = u.at, updated_at = u.at \
         FROM UNNEST($1::bigint[], $2::bigint[], $3::timestamptz[]) AS u(id, doctor_id, at) \
         WHERE c.id = u.id AND c.doctor_id = u.doctor_id",
    )
    .bind(rows.iter().map(|c| c.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|c| c.doctor_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|c| c.at).collect::<Vec<_>>())
    .execute(conn)
    .await
    .map_err(db_error)?
    .rows_affected();
    if updated != rows.len() as u64 {
        tracing::warn!(
            expected = rows.len(),
            updated,
            "cancellation events without a matching consultation row"
        );
    }
    Ok(())
}

/// One statement per move, in order: the unique active start is checked row by row, in an
/// order a single UNNEST update would not fix, and the phase's order is one in which it
/// never fires (see [`crate::batch`]). Reschedules are rare next to bookings.
async fn reschedule_consultations(
    conn: &mut PgConnection,
    rows: &[Reschedule],
) -> Result<(), StoreError> {
    let mut updated = 0;
    for r in rows {
        updated += sqlx::query(
            "UPDATE consultations SET scheduled_at = $1, updated_at = $2 \
             WHERE id = $3 AND doctor_id = $4",
        )
        .bind(r.to)
        .bind(r.at)
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

async fn insert_sessions(conn: &mut PgConnection, rows: &[NewSession]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    bind_sessions(sqlx::query(INSERT_SESSIONS), rows)
        .execute(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Settles one pending session inside the caller's transaction (see
/// `Store::settle_sessions`); `false` when it was not pending.
async fn settle_one(
    conn: &mut PgConnection,
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
            "UPDATE sessions SET status = $2, provider = $3, provider_session_id = $4, \
             expires_at = $5, last_error = NULL, updated_at = $6 WHERE consultation_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(status)
        .bind(provider.as_str())
        .bind(provider_session_id.as_str())
        .bind(*expires_at)
        .bind(now),
        SessionOutcome::Failed { error, .. } => sqlx::query(
            "UPDATE sessions SET status = $2, last_error = $3, updated_at = $4 \
             WHERE consultation_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(status)
        .bind(error.as_str())
        .bind(now),
        SessionOutcome::NotRequired { .. } => sqlx::query(
            "UPDATE sessions SET status = $2, updated_at = $3 \
             WHERE consultation_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(status)
        .bind(now),
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
    // `CONSULTATION_COLUMNS`), so the consultation is not written: an update of it cost a
    // new row version and an entry in each of its indexes per session.
    Ok(true)
}

/// `due_sessions`: claims up to `$2` sessions due at `$1` for `$3` seconds as `$4`'s.
fn due_sessions_sql() -> String {
    format!(
        "WITH due AS (SELECT consultation_id, next_attempt_at FROM sessions \
         WHERE status = 'pending' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at, consultation_id LIMIT $2 FOR UPDATE SKIP LOCKED), \
         claimed AS (UPDATE sessions AS s \
         SET next_attempt_at = $1 + make_interval(secs => $3), claimed_by = $4 \
         FROM due WHERE s.consultation_id = due.consultation_id \
         RETURNING s.consultation_id, s.attempts, due.next_attempt_at AS due_at) \
         SELECT {SESSION_TASK_COLUMNS} FROM claimed s \
         JOIN consultations c ON c.id = s.consultation_id \
         ORDER BY s.due_at, s.consultation_id"
    )
}

/// `pending_sessions`: claims the pending sessions of consultations `$1` as `$2`'s for `$3`
/// seconds.
fn claim_sessions_sql() -> String {
    format!(
        "WITH claimed AS (UPDATE sessions AS s SET claimed_by = $2, \
         next_attempt_at = GREATEST(s.next_attempt_at, now() + make_interval(secs => $3)) \
         WHERE s.consultation_id IN (SELECT consultation_id FROM sessions \
         WHERE consultation_id = ANY($1) AND (status = 'pending') IS TRUE \
         AND (claimed_by IS NULL OR claimed_by = $2 OR next_attempt_at <= now()) \
         FOR UPDATE SKIP LOCKED) \
         RETURNING s.consultation_id, s.attempts) \
         SELECT {SESSION_TASK_COLUMNS} FROM claimed s \
         JOIN consultations c ON c.id = s.consultation_id"
    )
}

/// A transaction whose statements read a polled outbox in index order. Postgres estimates
/// a partial range such as `status = 'pending'` from statistics that lag a burst (none at
/// all before the table's first ANALYZE), so it would collect every due row in a bitmap
/// and sort them, on every poll: 15 ms with 25,000 sessions waiting. Without bitmap scans
/// and explicit sorts, the index is read in order and the poll stops after its `LIMIT`.
/// The sort that is left (of the claimed rows, for the answer's order) now counts as
/// "disabled", a cost that would make Postgres compile the statement with its JIT (about
/// 140 ms): JIT is off too.
async fn begin_in_index_order(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    sqlx::query(
        "SELECT set_config('enable_bitmapscan', 'off', true), \
         set_config('enable_sort', 'off', true), set_config('jit', 'off', true)",
    )
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    Ok(tx)
}

/// Writes each event for the consultation's patient, then its doctor, in event order.
/// Bookings name both, so a batch of them is written straight from the arrays; a batch
/// with a cancellation reads the parties from `consultations` (by primary key).
/// `webhook_state`: see [`PgStore::webhook_state`].
async fn insert_notifications(
    conn: &mut PgConnection,
    rows: &[NewNotification],
    webhook_state: &'static str,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let query = match rows.iter().map(|r| r.parties).collect::<Option<Vec<_>>>() {
        Some(parties) => bind_notifications(sqlx::query(INSERT_NOTIFICATIONS), rows, &parties)
            .bind(webhook_state),
        None => sqlx::query(
            "INSERT INTO notifications (recipient_role, recipient_id, kind, consultation_id, \
             created_at, webhook_state, webhook_attempts, webhook_next_at) \
             SELECT r.role, CASE r.n WHEN 1 THEN c.patient_id ELSE c.doctor_id END, u.kind, u.id, \
             u.at, $4::text, 0, u.at \
             FROM UNNEST($1::text[], $2::bigint[], $3::timestamptz[]) WITH ORDINALITY \
             AS u(kind, id, at, ord) \
             JOIN consultations c ON c.id = u.id \
             CROSS JOIN (VALUES (1, 'patient'), (2, 'doctor')) AS r(n, role) \
             ORDER BY u.ord, r.n",
        )
        .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.consultation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
        .bind(webhook_state),
    };
    query.execute(conn).await.map_err(db_error)?;
    Ok(())
}

async fn update_doctor(conn: &mut PgConnection, update: &DoctorUpdate) -> Result<(), StoreError> {
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
            "UPDATE doctors SET timezone = $1, slot_minutes = $2, availability_schedule = $3, \
             updated_at = $4, date_overrides = $6, booking_policy = $7 WHERE id = $5",
        )
        .bind(*timezone)
        .bind(*slot_minutes)
        .bind(schedule_json.as_str())
        .bind(*at)
        .bind(*doctor_id)
        .bind(overrides_json.as_str())
        .bind(policy_json.as_str()),
        DoctorUpdate::Status {
            doctor_id,
            is_available,
            is_approved,
            at,
        } => sqlx::query(
            "UPDATE doctors SET is_available = $1, is_approved = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(*is_available)
        .bind(*is_approved)
        .bind(*at)
        .bind(*doctor_id),
    };
    query.execute(conn).await.map_err(db_error)?;
    Ok(())
}

/// A bookings-only batch (one phase of bookings, no member rows; the usual batch) as the
/// one statement of [`BOOKINGS_BATCH`]; `None` for any other batch.
fn bookings_batch_statement<'q>(
    plan: &'q batch::Plan<'_>,
    fences: &FenceCheck,
    webhook_state: &'static str,
) -> Option<PgQuery<'q>> {
    let [phase] = plan.phases.as_slice() else {
        return None;
    };
    let bookings_only = phase.cancellations.is_empty()
        && phase.reschedules.is_empty()
        && plan.doctor_updates.is_empty()
        && plan.members.is_empty();
    if !bookings_only {
        return None;
    }
    let parties: Vec<(i64, i64)> = plan
        .notifications
        .iter()
        .map(|n| n.parties)
        .collect::<Option<_>>()?;
    let keys = !plan.idempotency.is_empty();
    let sql = match (keys, fences.is_empty()) {
        (false, true) => BOOKINGS_BATCH,
        (true, true) => BOOKINGS_BATCH_WITH_KEYS,
        (false, false) => FENCED_BOOKINGS_BATCH,
        (true, false) => FENCED_BOOKINGS_BATCH_WITH_KEYS,
    };
    let query = bind_journal(sqlx::query(sql), &plan.journal);
    let query = bind_consultations(query, &phase.bookings);
    let query = bind_sessions(query, &plan.sessions);
    let mut query = bind_notifications(query, &plan.notifications, &parties);
    if keys {
        query = bind_idempotency_keys(query, &plan.idempotency);
    }
    if !fences.is_empty() {
        query = query
            .bind(fences.shards())
            .bind(fences.epochs())
            .bind(fences.count());
    }
    Some(query.bind(webhook_state))
}

/// Any batch as a series of set-based statements inside the caller's transaction.
async fn write_plan(
    conn: &mut PgConnection,
    plan: &batch::Plan<'_>,
    webhook_state: &'static str,
) -> Result<(), StoreError> {
    insert_journal(conn, &plan.journal).await?;
    for phase in &plan.phases {
        insert_consultations(conn, &phase.bookings).await?;
        reschedule_consultations(conn, &phase.reschedules).await?;
        cancel_consultations(conn, &phase.cancellations).await?;
    }
    for update in &plan.doctor_updates {
        update_doctor(conn, update).await?;
    }
    if !plan.idempotency.is_empty() {
        bind_idempotency_keys(sqlx::query(INSERT_IDEMPOTENCY_KEYS), &plan.idempotency)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    if !plan.members.is_empty() {
        bind_members(sqlx::query(INSERT_MEMBERS), &plan.members)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    insert_sessions(conn, &plan.sessions).await?;
    insert_notifications(conn, &plan.notifications, webhook_state).await
}

/// The error of a statement that commits (a COMMIT, or one auto-committed statement): when
/// the connection was lost or the server went away meanwhile (an I/O or protocol error, or
/// the server's own "terminating connection" or "cannot connect now" answers, SQLSTATE
/// classes 57P and 08), the write may have been committed before the answer was lost, so
/// it is [`StoreError::Indeterminate`]; any other error (a constraint, a serialization
/// failure) rolled it back.
fn commit_error(e: sqlx::Error) -> StoreError {
    let lost = match &e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("57P") || code.starts_with("08")),
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        _ => false,
    };
    if lost {
        StoreError::Indeterminate(e.to_string())
    } else {
        db_error(e)
    }
}

/// Runs one auto-committed statement and returns its rows. Its implicit commit comes after
/// the statement completed, so the error's moment decides what it means: an error the
/// server answered before the statement completed (a lock wait cut by
/// `pg_terminate_backend`, a constraint) aborted it, for sure; a lost connection, or any
/// error after it completed, is [`commit_error`]'s to judge: the commit may have landed.
async fn autocommit(
    conn: &mut PgConnection,
    statement: PgQuery<'_>,
) -> Result<Vec<PgRow>, StoreError> {
    let mut results = conn.fetch_many(statement);
    let mut rows = Vec::new();
    let mut completed = false;
    while let Some(result) = results.next().await {
        match result {
            Ok(Either::Left(_)) => completed = true,
            Ok(Either::Right(row)) => rows.push(row),
            Err(e @ sqlx::Error::Database(_)) if !completed => return Err(db_error(e)),
            Err(e) => return Err(commit_error(e)),
        }
    }
    Ok(rows)
}

fn consultations(rows: Vec<PgRow>) -> Result<Vec<Consultation>, StoreError> {
    rows.iter().map(rows::consultation).collect()
}

#[async_trait]
impl Store for PgStore {
    async fn create_doctor(
        &self,
        doctor: &NewDoctor,
        now: DateTime<Utc>,
    ) -> Result<DoctorProfile, StoreError> {
        let schedule = batch::schedule_json(&doctor.schedule)?;
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO doctors (name, specialty, timezone, slot_minutes, availability_schedule, \
             is_available, is_approved, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
        )
        .bind(&doctor.name)
        .bind(&doctor.specialty)
        .bind(doctor.timezone.name())
        .bind(i32::from(doctor.slot_minutes))
        .bind(schedule)
        .bind(doctor.is_available)
        .bind(doctor.is_approved)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let profile = doctor.profile(id, now);
        let event = DoctorEvent::Registered {
            profile: profile.clone(),
        };
        sqlx::query(
            "INSERT INTO journal (doctor_id, seq, kind, payload, recorded_at) \
             VALUES ($1, 1, $2, $3, $4)",
        )
        .bind(id)
        .bind(event.kind())
        .bind(event.encode())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(profile)
    }

    async fn load_doctor(&self, id: DoctorId) -> Result<Option<DoctorHistory>, StoreError> {
        let exists = sqlx::query("SELECT 1 FROM doctors WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        if exists.is_none() {
            return Ok(None);
        }
        let snapshot = sqlx::query("SELECT seq, blob FROM snapshots WHERE doctor_id = $1")
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
            "SELECT seq, payload FROM journal WHERE doctor_id = $1 AND seq > $2 ORDER BY seq",
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
            "SELECT seq, payload, recorded_at FROM journal WHERE doctor_id = $1 \
             ORDER BY seq DESC LIMIT $2",
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
                recorded_at: row.try_get("recorded_at").map_err(db_error)?,
                event: DoctorEvent::decode(payload)?,
            })
        })
        .collect()
    }

    async fn append(&self, batch: &[JournalRecord]) -> Result<(), StoreError> {
        self.append_fenced(batch, &[]).await
    }

    /// Without fences: a bookings-only batch is its one statement, any other batch one
    /// transaction. With fences: one transaction that checks them first (see
    /// [`check_fences`]), then writes the same statements.
    async fn append_fenced(
        &self,
        batch: &[JournalRecord],
        fences: &[Fence],
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let plan = batch::plan(batch)?;
        let fence_check = FenceCheck::new(fences);
        if let Some(statement) = bookings_batch_statement(&plan, &fence_check, self.webhook_state())
        {
            // Taken apart: a failure to get a connection wrote nothing for sure.
            let mut conn = self.journal.take(&self.pool).await?;
            let rows = autocommit(&mut conn.conn, statement).await?;
            self.journal.keep(conn, &self.pool);
            if fence_check.is_empty() {
                return Ok(());
            }
            let held = rows
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<Vec<(i32, i64)>, sqlx::Error>>()
                .map_err(db_error)?;
            return fence_check.verdict(held);
        }
        let mut conn = self.journal.take(&self.pool).await?;
        let mut tx = conn.conn.begin().await.map_err(db_error)?;
        if let Err(e) = check_fences(&mut tx, fences).await {
            let _ = tx.rollback().await;
            return Err(e);
        }
        write_plan(&mut tx, &plan, self.webhook_state()).await?;
        // A commit whose answer is lost (connection gone) is an error, never success; nor
        // is it known to have failed. (Before the COMMIT, a lost connection rolls back.)
        tx.commit().await.map_err(commit_error)?;
        self.journal.keep(conn, &self.pool);
        Ok(())
    }

    async fn find_idempotency(
        &self,
        patient_id: PatientId,
        key: &str,
    ) -> Result<Option<StoredIdempotency>, StoreError> {
        sqlx::query(
            "SELECT fingerprint, consultation_id, expires_at FROM idempotency_keys \
             WHERE patient_id = $1 AND key = $2",
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
             WHERE expires_at > $1 AND (patient_id, key) > ($2, $3) \
             ORDER BY patient_id, key LIMIT $4",
        )
        .bind(now)
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
            "DELETE FROM idempotency_keys WHERE patient_id = $1 AND key = $2 \
             AND expires_at <= $3",
        )
        .bind(patient_id)
        .bind(key)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_error)?
        .rows_affected()
            > 0)
    }

    async fn purge_idempotency(&self, now: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys \
             WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(i64::from(limit))
        .execute(&self.pool)
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
        self.save_snapshot_fenced(doctor_id, seq, blob, None).await
    }

    /// [`PgStore::save_snapshots`] of one.
    async fn save_snapshot_fenced(
        &self,
        doctor_id: DoctorId,
        seq: u64,
        blob: &[u8],
        fence: Option<Fence>,
    ) -> Result<(), StoreError> {
        let snapshot = SnapshotWrite {
            doctor_id,
            seq,
            blob: blob.to_vec(),
            fence,
        };
        match (self.save_snapshots(&[snapshot]).await?.as_slice(), fence) {
            ([false], Some(f)) => Err(StoreError::Fenced {
                shard: f.shard,
                epoch: f.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// One statement: the fences' lease rows `FOR SHARE` as its first CTE, then one upsert
    /// of every snapshot whose fence found its row (or that has none); the doctors written
    /// come back.
    async fn save_snapshots(&self, snapshots: &[SnapshotWrite]) -> Result<Vec<bool>, StoreError> {
        if snapshots.is_empty() {
            return Ok(Vec::new());
        }
        let fences: Vec<Fence> = snapshots.iter().filter_map(|s| s.fence).collect();
        let wanted = FenceCheck::new(&fences);
        let doctors: Vec<DoctorId> = snapshots.iter().map(|s| s.doctor_id).collect();
        let seqs = snapshots
            .iter()
            .map(|s| batch::seq_to_i64(s.seq))
            .collect::<Result<Vec<_>, _>>()?;
        let blobs: Vec<&[u8]> = snapshots.iter().map(|s| s.blob.as_slice()).collect();
        let shards: Vec<Option<i64>> = snapshots
            .iter()
            .map(|s| s.fence.map(|f| i64::from(f.shard)))
            .collect();
        let epochs: Vec<Option<i64>> = snapshots
            .iter()
            .map(|s| s.fence.map(|f| bound_epoch(f.epoch)))
            .collect();
        let written: Vec<DoctorId> = sqlx::query_scalar(SAVE_SNAPSHOTS)
            .bind(&doctors)
            .bind(&seqs)
            .bind(&blobs)
            .bind(&shards)
            .bind(&epochs)
            .bind(wanted.shards())
            .bind(wanted.epochs())
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(doctors.iter().map(|d| written.contains(d)).collect())
    }

    async fn delete_snapshots(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM snapshots")
            .execute(&self.pool)
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
            "SELECT {CONSULTATION_COLUMNS} FROM {CONSULTATIONS_FROM} WHERE id = $1"
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
             WHERE booking_id = $1 ORDER BY id LIMIT 10"
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
            "SELECT {CONSULTATION_COLUMNS} FROM {CONSULTATIONS_FROM} WHERE patient_id = $1 \
             ORDER BY scheduled_at DESC, id DESC LIMIT $2"
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
             WHERE doctor_id = $1 AND scheduled_at >= $2 AND scheduled_at < $3 \
             ORDER BY scheduled_at, id LIMIT $4"
        ))
        .bind(doctor_id)
        .bind(from)
        .bind(to)
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
             WHERE status IN ('pending', 'scheduled') \
             AND ($1::bigint IS NULL OR doctor_id = $1) \
             ORDER BY doctor_id, scheduled_at, id"
        ))
        .bind(doctor_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        consultations(found)
    }

    /// Claims what it returns: the due rows no other transaction holds (`SKIP LOCKED`),
    /// due again only after the claim period and named as this store's.
    ///
    /// Read in index order (see [`begin_in_index_order`]), so a poll reads `limit` rows
    /// (and the locked ones it skips), not the whole backlog.
    async fn due_sessions(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SessionTask>, StoreError> {
        let mut tx = begin_in_index_order(&self.pool).await?;
        let due = sqlx::query(&due_sessions_sql())
            .bind(now)
            .bind(i64::from(limit))
            .bind(self.outbox_claim.as_secs_f64())
            .bind(self.claimer)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        due.iter().map(rows::session_task).collect()
    }

    /// Claims the row too, unless another store holds a claim on it that has not run out
    /// (its next attempt is still ahead by the database clock) or a transaction has it
    /// locked: then `None`, as for a settled session, and the claimer goes on with it.
    ///
    /// The rows are found by primary key only: `(status = 'pending') IS TRUE` is the same
    /// test as `status = 'pending'`, but no index can serve it, so Postgres can't choose
    /// to scan every pending session in `sessions_due` for the few ids asked for (which it
    /// did before the table was first analyzed). Planned on each call (an unnamed
    /// statement): a generic plan made while the table was tiny could be a sequential scan,
    /// and it would be kept as the table grows.
    async fn pending_sessions(
        &self,
        consultation_ids: &[ConsultationId],
    ) -> Result<Vec<SessionTask>, StoreError> {
        sqlx::query(&claim_sessions_sql())
            .persistent(false)
            .bind(consultation_ids)
            .bind(self.claimer)
            .bind(self.outbox_claim.as_secs_f64())
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
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE consultation_id = $1"
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
        // Not over another store's claim: that store has the session now.
        sqlx::query(
            "UPDATE sessions SET attempts = $2, next_attempt_at = $3, last_error = $4, \
             updated_at = now() WHERE consultation_id = $1 AND status = 'pending' \
             AND (claimed_by IS NULL OR claimed_by = $5)",
        )
        .bind(consultation_id)
        .bind(attempts as i32)
        .bind(next_attempt_at)
        .bind(error)
        .bind(self.claimer)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn settle_sessions(
        &self,
        outcomes: &[SessionOutcome],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
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
                "UPDATE sessions SET doctor_join = $2 WHERE consultation_id = $1 AND status = 'ready'"
            }
            JoinSide::Patient => {
                "UPDATE sessions SET patient_join = $2 WHERE consultation_id = $1 AND status = 'ready'"
            }
        };
        sqlx::query(sql)
            .bind(consultation_id)
            .bind(sealed)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn notifications(&self, query: &InboxQuery) -> Result<Vec<Notification>, StoreError> {
        sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications n \
             JOIN consultations c ON c.id = n.consultation_id \
             WHERE n.recipient_role = $1 AND n.recipient_id = $2 \
             AND ($3::bigint IS NULL OR n.id < $3) AND (NOT $4 OR n.read_at IS NULL) \
             ORDER BY n.id DESC LIMIT $5"
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
        Ok(sqlx::query(
            "UPDATE notifications SET read_at = $1 WHERE recipient_role = $2 \
             AND recipient_id = $3 AND id = ANY($4::bigint[]) AND read_at IS NULL",
        )
        .bind(now)
        .bind(recipient.role.as_str())
        .bind(recipient.id)
        .bind(ids)
        .execute(&self.pool)
        .await
        .map_err(db_error)?
        .rows_affected())
    }

    /// Claims what it returns: the due rows no other transaction holds (`SKIP LOCKED`),
    /// due again only after the claim period unless [`Store::update_webhook`] says
    /// otherwise first.
    fn queue_webhooks(&self, queued: bool) {
        self.webhooks.store(queued, Ordering::Relaxed);
    }

    async fn due_webhooks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut tx = begin_in_index_order(&self.pool).await?;
        let due = sqlx::query(&format!(
            "WITH due AS (SELECT id, webhook_next_at FROM notifications \
             WHERE webhook_state = 'pending' AND webhook_next_at <= $1 \
             ORDER BY webhook_next_at, id LIMIT $2 FOR UPDATE SKIP LOCKED), \
             claimed AS (UPDATE notifications AS n \
             SET webhook_next_at = $1 + make_interval(secs => $3) \
             FROM due WHERE n.id = due.id \
             RETURNING n.*, due.webhook_next_at AS due_at) \
             SELECT {NOTIFICATION_COLUMNS} FROM claimed n \
             JOIN consultations c ON c.id = n.consultation_id \
             ORDER BY n.due_at, n.id"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .bind(self.outbox_claim.as_secs_f64())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        due.iter().map(rows::notification).collect()
    }

    async fn update_webhook(&self, id: i64, update: WebhookUpdate) -> Result<(), StoreError> {
        let query = match update {
            WebhookUpdate::Delivered => sqlx::query(
                "UPDATE notifications SET webhook_state = 'delivered', \
                 webhook_attempts = webhook_attempts + 1 WHERE id = $1",
            )
            .bind(id),
            WebhookUpdate::Retry { attempts, next_at } => sqlx::query(
                "UPDATE notifications SET webhook_attempts = $2, webhook_next_at = $3 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(attempts as i32)
            .bind(next_at),
            WebhookUpdate::GaveUp { attempts } => sqlx::query(
                "UPDATE notifications SET webhook_state = 'failed', webhook_attempts = $2 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(attempts as i32),
        };
        query.execute(&self.pool).await.map_err(db_error)?;
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
        PgStore::close(self).await;
    }

    /// The lease and membership tables live in this database (see [`crate::cluster`]).
    fn cluster(&self) -> Option<Arc<dyn ClusterStore>> {
        Some(Arc::new(self.clone()))
    }
}

#[cfg(test)]
mod plan_tests {
    //! What the session worker's claims read, seen in Postgres's own `EXPLAIN ANALYZE`:
    //! rows, not time, so the checks hold on any machine.

    use super::*;
    use crate::testing::{drop_postgres, fresh_postgres};

    /// The most rows any one scan of `sessions` (table or index) produced in `plan`:
    /// actual rows times loops.
    fn most_sessions_rows_read(plan: &[String]) -> u64 {
        plan.iter()
            .filter(|line| line.contains("Scan") && line.contains(" sessions"))
            .filter_map(|line| {
                let actual = &line[line.find("(actual")?..];
                let number = |key: &str| -> Option<u64> {
                    let rest = &actual[actual.find(key)? + key.len()..];
                    rest.split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                };
                Some(number("rows=")? * number("loops=")?)
            })
            .max()
            .unwrap_or(0)
    }

    /// 5,000 in-app consultations whose sessions wait, in a table never analyzed: the
    /// backlog a burst of bookings leaves. (At this size, without `begin_in_index_order`,
    /// Postgres plans the poll as a bitmap scan of the whole backlog and a sort; at 40,000
    /// it happens to choose the index.)
    async fn backlog(pool: &PgPool) {
        sqlx::query(
            "INSERT INTO consultations SELECT g, 'CONS-' || g, g % 100, g, \
             now() + (g / 100) * interval '30 min', 30, 'scheduled', 'video', 'video', \
             'pending', NULL, NULL, NULL, NULL, NULL, now(), now(), NULL \
             FROM generate_series(1, 5000) g",
        )
        .execute(pool)
        .await
        .expect("consultations");
        sqlx::query(
            "INSERT INTO sessions (consultation_id, status, attempts, next_attempt_at, \
             updated_at) SELECT g, 'pending', 0, now() - interval '1 hour' \
             + g * interval '1 ms', now() FROM generate_series(1, 5000) g",
        )
        .execute(pool)
        .await
        .expect("sessions");
    }

    #[tokio::test]
    async fn a_poll_and_a_claim_read_their_rows_not_the_backlog() {
        let Some((store, name)) = fresh_postgres().await else {
            return;
        };
        backlog(store.pool()).await;

        let mut tx = begin_in_index_order(store.pool()).await.expect("begin");
        let poll: Vec<String> = sqlx::query_scalar(&format!(
            "EXPLAIN (ANALYZE, COSTS OFF) {}",
            due_sessions_sql()
        ))
        .bind(Utc::now())
        .bind(10_i64)
        .bind(30.0_f64)
        .bind(1_i64)
        .fetch_all(&mut *tx)
        .await
        .expect("explain the poll");
        tx.rollback().await.expect("rollback");
        let read = most_sessions_rows_read(&poll);
        assert!(
            (10..=20).contains(&read),
            "a poll for 10 read {read} rows of 5,000 due:\n{}",
            poll.join("\n")
        );

        let claim: Vec<String> = sqlx::query_scalar(&format!(
            "EXPLAIN (ANALYZE, COSTS OFF) {}",
            claim_sessions_sql()
        ))
        .persistent(false)
        .bind(vec![4_998_i64, 4_999, 5_000])
        .bind(1_i64)
        .bind(30.0_f64)
        .fetch_all(store.pool())
        .await
        .expect("explain the claim");
        let read = most_sessions_rows_read(&claim);
        assert!(
            (3..=6).contains(&read),
            "a claim of 3 read {read} rows of 5,000 pending:\n{}",
            claim.join("\n")
        );

        store.close().await;
        drop_postgres(&name).await;
    }
}
