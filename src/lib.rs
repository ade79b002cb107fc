//! Consult Scheduler: an actor-based, in-memory scheduling engine for telehealth
//! consultations, with its HTTP front end ([`Application`]), embeddable as a library.
//!
//! The engine lives in [`engine`] (`consult-actors`); durable storage adapters for SQLite
//! (the embedded default) and Postgres in [`persistence`] (`consult-persistence`).
//!
//! Embedding on the default SQLite store:
//!
//! ```
//! use chrono::{Duration, Utc};
//! use consult_scheduler::engine::calendar::{DayWindow, LocalTime, WeeklySchedule};
//! use consult_scheduler::engine::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("cs-doc-{}", std::process::id()));
//! # let url = format!("sqlite://{}/consult.db", dir.display());
//! // e.g. url = "sqlite://data/consult-scheduler.db" or "postgres://postgres@127.0.0.1/test"
//! let store = consult_scheduler::persistence::open_store(&url).await?;
//! let engine = Engine::start(EngineSettings::default(), store).await?;
//! let tz = chrono_tz::Asia::Kolkata;
//! let doctor = engine
//!     .create_doctor(NewDoctor {
//!         name: "Dr. Meera Iyer".into(),
//!         specialty: "Dermatology".into(),
//!         timezone: tz,
//!         slot_minutes: 30,
//!         schedule: WeeklySchedule::every_day(DayWindow::open(
//!             LocalTime::hm(9, 0),
//!             LocalTime::hm(17, 0),
//!         )),
//!         is_available: true,
//!         is_approved: true,
//!     })
//!     .await?;
//! let day = (Utc::now() + Duration::days(2)).with_timezone(&tz).date_naive();
//! let availability = engine.availability(doctor.id, day, 1).await?;
//! let first = &availability.days[0].slots[0]; // 09:00 local
//! let consultation = engine
//!     .book(BookingRequest {
//!         doctor_id: doctor.id,
//!         patient_id: 67,
//!         scheduled_at: first.start,
//!         mode: ConsultMode::Chat,
//!         medical: MedicalInfo::default(),
//!     })
//!     .await?; // durable in SQLite when this returns
//! assert_eq!(consultation.status, ConsultationStatus::Scheduled);
//! engine.shutdown().await;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

pub use consult_actors as engine;
pub use consult_persistence as persistence;

pub mod cli;
pub mod demo;
pub mod fake_vonage;
pub mod http;
pub mod settings;
pub mod startup;
pub mod telemetry;

pub use settings::Settings;
pub use startup::{Application, StartupError};
