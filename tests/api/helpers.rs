//! `spawn_app`: the real application on 127.0.0.1 port 0 with a fresh database, a
//! reqwest client, token minting, and typed request helpers.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{DateTime, Duration, DurationRound, Utc};
use consult_scheduler::engine::Engine;
use consult_scheduler::http::auth::{now_s, JwtKeys, Role};
use consult_scheduler::persistence::testing::{
    drop_postgres, fresh_postgres, fresh_sqlite, pg_url_for, remove_sqlite,
};
use consult_scheduler::settings::DEV_JWT_SECRET;
use consult_scheduler::{Application, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use consult_scheduler::http::auth::Role::{Admin, Doctor, Patient};

/// The seed's conflict body, exactly.
pub fn conflict_body() -> Value {
    json!({
        "success": false,
        "message": "This time slot was just booked by another patient. Please select a different time.",
        "error": "time_slot_conflict"
    })
}

/// The seed's three fields of a 409 (`success`, `message`, `error`), after checking that
/// anything else is the additive `next_available` (at most three UTC starts).
pub fn seed_fields(body: &Value) -> Value {
    let mut seed = serde_json::Map::new();
    for (k, v) in body.as_object().expect("a JSON object") {
        match k.as_str() {
            "success" | "message" | "error" => {
                seed.insert(k.clone(), v.clone());
            }
            "next_available" => {
                let list = v.as_array().expect("next_available is a list");
                assert!(list.len() <= 3, "{body}");
                assert!(
                    list.iter()
                        .all(|s| s.as_str().is_some_and(|s| s.ends_with('Z'))),
                    "{body}"
                );
            }
            other => panic!("unexpected field {other} in {body}"),
        }
    }
    Value::Object(seed)
}

pub enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub engine: Engine,
    pub db: Db,
    keys: JwtKeys,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// Settings of a test app: port 0, the given database, no demo data, plus `extra`.
pub fn test_settings(url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut env = vec![
        ("CONSULT__SERVER__BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("CONSULT__DATABASE__URL".to_owned(), url.to_owned()),
        ("CONSULT__DEMO__SEED".to_owned(), "false".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load(None, env).expect("test settings are valid")
}

impl TestApp {
    /// On a fresh SQLite file.
    pub async fn spawn() -> Self {
        Self::spawn_sqlite_with(&[]).await
    }

    pub async fn spawn_sqlite_with(extra: &[(&str, &str)]) -> Self {
        let (store, path) = fresh_sqlite().await;
        drop(store);
        let url = format!("sqlite://{}", path.display());
        Self::start(Db::Sqlite(path), test_settings(&url, extra)).await
    }

    /// On a fresh Postgres database; `None` when Postgres is unreachable outside CI.
    pub async fn spawn_postgres() -> Option<Self> {
        let (store, name) = fresh_postgres().await?;
        drop(store);
        let url = pg_url_for(&name);
        Some(Self::start(Db::Postgres(name), test_settings(&url, &[])).await)
    }

    pub async fn start(db: Db, settings: Settings) -> Self {
        let app = Application::build(settings).await.expect("app builds");
        let addr = app.local_addr();
        let engine = app.engine().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client: reqwest::Client::new(),
            engine,
            db,
            keys: JwtKeys::new(DEV_JWT_SECRET.as_bytes(), 0),
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn token(&self, role: Role, sub: i64) -> String {
        self.keys.mint(role, sub, now_s(), 3600)
    }

    /// Sends `method path` with an optional bearer token and JSON body; answers the
    /// status and the JSON body (`Value::Null` if the body is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Registers and approves a doctor on UTC, open every day 08:00-18:00, 30-minute slots.
    pub async fn doctor(&self) -> i64 {
        self.doctor_with(
            json!({"name": "Dr. Test", "specialty": "General Practice", "timezone": "UTC",
            "availability_schedule": every_day("08:00", "18:00")}),
        )
        .await
    }

    /// Registers a doctor from `body` and approves it; answers its id.
    pub async fn doctor_with(&self, body: Value) -> i64 {
        let admin = self.token(Admin, 1);
        let (status, created) = self.post("/admin/doctors", &admin, body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["doctor"]["id"].as_i64().expect("doctor id");
        let (status, approved) = self
            .post(&format!("/admin/doctors/{id}/approve"), &admin, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        id
    }

    /// Books `at` with doctor `doctor` as `patient`; answers status and body.
    pub async fn book(&self, patient: i64, doctor: i64, at: DateTime<Utc>) -> (StatusCode, Value) {
        let token = self.token(Patient, patient);
        self.post(
            "/patient/doctors/book",
            &token,
            json!({"doctor_id": doctor, "scheduled_at": at, "consult_mode": "video"}),
        )
        .await
    }

    /// Stops the server (graceful: in-flight requests finish, journal flushed) and removes
    /// the database.
    pub async fn stop(mut self) {
        self.shutdown().await;
        match &self.db {
            Db::Sqlite(path) => remove_sqlite(path),
            Db::Postgres(name) => drop_postgres(name).await,
        }
    }

    /// The URL of this app's database.
    pub fn db_url(&self) -> String {
        match &self.db {
            Db::Sqlite(path) => format!("sqlite://{}", path.display()),
            Db::Postgres(name) => pg_url_for(name),
        }
    }

    /// Stops the server gracefully (journal flushed, final snapshots written) and starts a
    /// new app on the same database with the plain test settings, as a restarted process
    /// would; with
    /// `delete_snapshots`, every snapshot is deleted in between, so the new app rebuilds
    /// each doctor from the journal alone.
    pub async fn restart(mut self, delete_snapshots: bool) -> TestApp {
        self.shutdown().await;
        let url = self.db_url();
        if delete_snapshots {
            let store = consult_scheduler::persistence::open_store(&url)
                .await
                .expect("the database opens");
            assert!(
                store.delete_snapshots().await.expect("snapshots deleted") >= 1,
                "the shutdown wrote snapshots"
            );
            store.close().await;
        }
        let db = match &self.db {
            Db::Sqlite(path) => Db::Sqlite(path.clone()),
            Db::Postgres(name) => Db::Postgres(name.clone()),
        };
        TestApp::start(db, test_settings(&url, &[])).await
    }

    /// Stops the server but keeps the database.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
    }
}

/// The seed's `availability_schedule` with the same window every day.
pub fn every_day(start: &str, end: &str) -> Value {
    let day = json!({"enabled": true, "start": start, "end": end});
    json!({"monday": day, "tuesday": day, "wednesday": day, "thursday": day,
        "friday": day, "saturday": day, "sunday": day})
}

/// Tomorrow (UTC) at `hour:minute`.
pub fn tomorrow_at(hour: u32, minute: u32) -> DateTime<Utc> {
    let midnight = Utc::now().duration_trunc(Duration::days(1)).unwrap();
    midnight + Duration::days(1) + Duration::hours(hour.into()) + Duration::minutes(minute.into())
}
