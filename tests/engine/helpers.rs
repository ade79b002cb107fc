//! Shared fixtures for the engine suite: a fresh database per test on each backend, a store
//! wrapper that injects failures and counts loads, and doctor / slot builders.

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, DurationRound, Utc};
use chrono_tz::Tz;
use consult_actors::calendar::{DayWindow, JournalRecord, LocalTime, WeeklySchedule};
use consult_actors::outbox::{
    InboxQuery, JoinSide, Notification, Recipient, SessionOutcome, SessionRecord, SessionTask,
    WebhookUpdate,
};
use consult_actors::*;
use consult_persistence::testing::{drop_postgres, fresh_postgres, fresh_sqlite, remove_sqlite};
use consult_persistence::{PgStore, SqliteStore};

/// Which database a test runs on, and how to open it again.
pub enum Kind {
    Sqlite(PathBuf),
    Postgres(String),
}

/// A test's own database.
pub struct Backend {
    pub kind: Kind,
    pub store: Arc<dyn Store>,
}

impl Backend {
    pub async fn sqlite() -> Self {
        let (store, path) = fresh_sqlite().await;
        Self {
            kind: Kind::Sqlite(path),
            store: Arc::new(store),
        }
    }

    /// `None` (after a skip notice) when Postgres is unreachable outside CI.
    pub async fn postgres() -> Option<Self> {
        let (store, name) = fresh_postgres().await?;
        Some(Self {
            kind: Kind::Postgres(name),
            store: Arc::new(store),
        })
    }

    /// A new connection to the same database, as a restarted process would open it.
    pub async fn reopen(&self) -> Arc<dyn Store> {
        match &self.kind {
            Kind::Sqlite(path) => Arc::new(
                SqliteStore::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
                    .await
                    .expect("reopen sqlite"),
            ),
            Kind::Postgres(name) => {
                let url = consult_persistence::testing::test_pg_url();
                let options = sqlx::postgres::PgConnectOptions::from_str(&url)
                    .expect("pg url")
                    .database(name);
                Arc::new(PgStore::connect_with(options).await.expect("reopen pg"))
            }
        }
    }

    pub async fn cleanup(self) {
        drop(self.store);
        match self.kind {
            Kind::Sqlite(path) => remove_sqlite(&path),
            Kind::Postgres(name) => drop_postgres(&name).await,
        }
    }
}

/// Runs each named `async fn(&Backend)` of the calling module once on SQLite and once on
/// Postgres, each on a fresh database.
#[macro_export]
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let backend = $crate::helpers::Backend::sqlite().await;
                    super::$test(&backend).await;
                    backend.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Some(backend) = $crate::helpers::Backend::postgres().await else {
                        return;
                    };
                    super::$test(&backend).await;
                    backend.cleanup().await;
                }
            )*
        }
    };
}

/// What a fault plan does to one `append`: an optional delay (paused time in the
/// simulation, so nothing really waits), then its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendFault {
    pub delay: Option<StdDuration>,
    pub outcome: AppendOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Written,
    /// Refused before anything is written: a clean failure.
    FailBefore,
    /// Written, then reported failed: the caller cannot tell whether it happened.
    FailAfter,
}

impl AppendFault {
    pub const NONE: Self = Self {
        delay: None,
        outcome: AppendOutcome::Written,
    };
}

/// Decides each `append`'s fault, in call order (the simulation draws it from its seed).
pub type FaultPlan = Box<dyn FnMut() -> AppendFault + Send>;

/// A store that can be told to fail every `append` or to follow a fault plan, and that
/// counts `load_doctor` calls.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    pub fail_appends: AtomicBool,
    pub loads: AtomicU64,
    /// Each `save_snapshots` call first waits while this is set, then this long (a slow
    /// disk) ...
    pub hold_snapshots: AtomicBool,
    pub snapshot_delay_ms: AtomicU64,
    /// ... and is counted, with the most snapshots one call carried.
    pub snapshot_calls: AtomicU64,
    pub largest_snapshot_batch: AtomicU64,
    plan: Mutex<Option<FaultPlan>>,
}

impl FaultyStore {
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail_appends: AtomicBool::new(false),
            loads: AtomicU64::new(0),
            hold_snapshots: AtomicBool::new(false),
            snapshot_delay_ms: AtomicU64::new(0),
            snapshot_calls: AtomicU64::new(0),
            largest_snapshot_batch: AtomicU64::new(0),
            plan: Mutex::new(None),
        })
    }

    /// Like [`FaultyStore::wrap`], every `append` getting the fault `plan` decides.
    pub fn with_plan(inner: Arc<dyn Store>, plan: FaultPlan) -> Arc<Self> {
        let store = Self::wrap(inner);
        *store.plan.lock().expect("plan lock") = Some(plan);
        store
    }

    fn next_fault(&self) -> AppendFault {
        if self.fail_appends.load(Ordering::SeqCst) {
            return AppendFault {
                outcome: AppendOutcome::FailBefore,
                ..AppendFault::NONE
            };
        }
        self.plan
            .lock()
            .expect("plan lock")
            .as_mut()
            .map_or(AppendFault::NONE, |plan| plan())
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn create_doctor(
        &self,
        doctor: &NewDoctor,
        now: DateTime<Utc>,
    ) -> Result<DoctorProfile, StoreError> {
        self.inner.create_doctor(doctor, now).await
    }
    async fn load_doctor(&self, id: DoctorId) -> Result<Option<DoctorHistory>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_doctor(id).await
    }
    async fn append(&self, batch: &[JournalRecord]) -> Result<(), StoreError> {
        let fault = self.next_fault();
        if let Some(delay) = fault.delay {
            tokio::time::sleep(delay).await;
        }
        match fault.outcome {
            AppendOutcome::Written => self.inner.append(batch).await,
            AppendOutcome::FailBefore => Err(StoreError::Unavailable("injected failure".into())),
            AppendOutcome::FailAfter => {
                self.inner.append(batch).await?;
                Err(StoreError::Unavailable(
                    "injected failure after the write".into(),
                ))
            }
        }
    }
    async fn doctor_journal(
        &self,
        d: DoctorId,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        self.inner.doctor_journal(d, limit).await
    }
    async fn save_snapshot(&self, d: DoctorId, seq: u64, blob: &[u8]) -> Result<(), StoreError> {
        self.inner.save_snapshot(d, seq, blob).await
    }
    async fn save_snapshots(&self, snapshots: &[SnapshotWrite]) -> Result<Vec<bool>, StoreError> {
        while self.hold_snapshots.load(Ordering::SeqCst) {
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
        let delay = self.snapshot_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(StdDuration::from_millis(delay)).await;
        }
        self.snapshot_calls.fetch_add(1, Ordering::SeqCst);
        self.largest_snapshot_batch
            .fetch_max(snapshots.len() as u64, Ordering::SeqCst);
        self.inner.save_snapshots(snapshots).await
    }
    async fn delete_snapshots(&self) -> Result<u64, StoreError> {
        self.inner.delete_snapshots().await
    }
    async fn find_idempotency(
        &self,
        p: PatientId,
        key: &str,
    ) -> Result<Option<consult_actors::StoredIdempotency>, StoreError> {
        self.inner.find_idempotency(p, key).await
    }
    async fn forget_expired_idempotency(
        &self,
        p: PatientId,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.forget_expired_idempotency(p, key, now).await
    }
    async fn purge_idempotency(&self, now: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        self.inner.purge_idempotency(now, limit).await
    }
    async fn max_consultation_id(&self) -> Result<ConsultationId, StoreError> {
        self.inner.max_consultation_id().await
    }
    async fn list_doctors(&self) -> Result<Vec<DoctorProfile>, StoreError> {
        self.inner.list_doctors().await
    }
    async fn get_consultation(
        &self,
        id: ConsultationId,
    ) -> Result<Option<Consultation>, StoreError> {
        self.inner.get_consultation(id).await
    }
    async fn unexpired_idempotency_keys(
        &self,
        now: DateTime<Utc>,
        after: (PatientId, &str),
        limit: u32,
    ) -> Result<Vec<(PatientId, String, DateTime<Utc>)>, StoreError> {
        self.inner
            .unexpired_idempotency_keys(now, after, limit)
            .await
    }
    async fn booking_consultations(&self, id: i64) -> Result<Vec<Consultation>, StoreError> {
        self.inner.booking_consultations(id).await
    }
    async fn patient_consultations(
        &self,
        p: PatientId,
        limit: u32,
    ) -> Result<Vec<Consultation>, StoreError> {
        self.inner.patient_consultations(p, limit).await
    }
    async fn doctor_consultations(
        &self,
        d: DoctorId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Consultation>, StoreError> {
        self.inner.doctor_consultations(d, from, to, limit).await
    }
    async fn active_consultations(
        &self,
        d: Option<DoctorId>,
    ) -> Result<Vec<Consultation>, StoreError> {
        self.inner.active_consultations(d).await
    }
    async fn due_sessions(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SessionTask>, StoreError> {
        self.inner.due_sessions(now, limit).await
    }
    async fn pending_sessions(
        &self,
        ids: &[ConsultationId],
    ) -> Result<Vec<SessionTask>, StoreError> {
        self.inner.pending_sessions(ids).await
    }
    async fn session(&self, id: ConsultationId) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.session(id).await
    }
    async fn retry_session(
        &self,
        id: ConsultationId,
        attempts: u32,
        next: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.inner.retry_session(id, attempts, next, error).await
    }
    async fn settle_sessions(
        &self,
        outcomes: &[SessionOutcome],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.inner.settle_sessions(outcomes, now).await
    }
    async fn save_join(
        &self,
        id: ConsultationId,
        side: JoinSide,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        self.inner.save_join(id, side, sealed).await
    }
    async fn notifications(&self, query: &InboxQuery) -> Result<Vec<Notification>, StoreError> {
        self.inner.notifications(query).await
    }
    async fn mark_notifications_read(
        &self,
        recipient: Recipient,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner
            .mark_notifications_read(recipient, ids, now)
            .await
    }
    fn queue_webhooks(&self, queued: bool) {
        self.inner.queue_webhooks(queued);
    }
    async fn due_webhooks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        self.inner.due_webhooks(now, limit).await
    }
    async fn update_webhook(&self, id: i64, update: WebhookUpdate) -> Result<(), StoreError> {
        self.inner.update_webhook(id, update).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// Settings for tests: defaults, snapshots often so they are exercised.
pub fn settings() -> EngineSettings {
    EngineSettings {
        snapshot_interval_ms: 200,
        tick_interval_ms: 50,
        ..Default::default()
    }
}

pub async fn start(store: Arc<dyn Store>) -> Engine {
    Engine::start(settings(), store)
        .await
        .expect("engine starts")
}

/// An approved, available doctor open around the clock every day, 30-minute slots.
pub fn open_doctor(name: &str, tz: Tz) -> NewDoctor {
    NewDoctor {
        name: name.into(),
        specialty: "General practice".into(),
        timezone: tz,
        slot_minutes: 30,
        schedule: WeeklySchedule::every_day(DayWindow::open(
            LocalTime::hm(0, 0),
            LocalTime::END_OF_DAY,
        )),
        is_available: true,
        is_approved: true,
    }
}

/// Monday to Friday 09:00-17:00 only.
pub fn weekday_doctor(name: &str, tz: Tz) -> NewDoctor {
    NewDoctor {
        schedule: WeeklySchedule::weekdays(LocalTime::hm(9, 0), LocalTime::hm(17, 0)),
        ..open_doctor(name, tz)
    }
}

/// The `n`-th 30-minute slot starting from the next whole hour plus a day (so always in
/// the future and on the grid of an around-the-clock doctor in a whole-hour timezone).
pub fn slot(n: i64) -> DateTime<Utc> {
    static BASE: OnceLock<DateTime<Utc>> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        (Utc::now() + Duration::days(1))
            .duration_trunc(Duration::hours(1))
            .expect("trunc")
    });
    *base + Duration::minutes(30 * n)
}

pub fn booking(doctor_id: DoctorId, patient_id: PatientId, at: DateTime<Utc>) -> BookingRequest {
    BookingRequest {
        doctor_id,
        patient_id,
        scheduled_at: at,
        mode: ConsultMode::Video,
        medical: MedicalInfo {
            reason: Some("follow-up".into()),
            ..Default::default()
        },
    }
}

/// Ids of the doctor's active consultations in the store.
pub async fn active_ids(store: &dyn Store, doctor_id: DoctorId) -> HashSet<ConsultationId> {
    store
        .active_consultations(Some(doctor_id))
        .await
        .expect("read active consultations")
        .iter()
        .map(|c| c.id)
        .collect()
}

/// Asserts that no two active consultations of one doctor overlap in time.
pub fn assert_no_overlaps(active: &[Consultation]) {
    let mut sorted: Vec<&Consultation> = active.iter().collect();
    sorted.sort_by_key(|c| (c.doctor_id, c.scheduled_at));
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.doctor_id == b.doctor_id {
            let a_end = a.scheduled_at + Duration::minutes(i64::from(a.duration_minutes));
            assert!(
                a_end <= b.scheduled_at,
                "double booking: consultations {} and {} of doctor {} overlap",
                a.id,
                b.id,
                a.doctor_id
            );
        }
    }
}

/// Polls `check` until it holds or `limit` passes.
pub async fn eventually(limit: StdDuration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    check()
}
