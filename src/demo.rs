//! Demo data: on an empty store, a handful of approved doctors with realistic weekly
//! schedules in a few timezones, so a newcomer sees something at once.

use chrono_tz::Tz;
use consult_actors::calendar::{DayWindow, LocalTime, WeeklySchedule};
use consult_actors::{Engine, EngineError, NewDoctor};

struct Demo {
    name: &'static str,
    specialty: &'static str,
    timezone: Tz,
    slot_minutes: u16,
    schedule: WeeklySchedule,
}

fn demo_doctors() -> Vec<Demo> {
    let hm = LocalTime::hm;
    let mut saturday_mornings = WeeklySchedule::weekdays(hm(9, 0), hm(17, 0));
    saturday_mornings.saturday = DayWindow::open(hm(9, 0), hm(13, 0));
    let mut late = WeeklySchedule::weekdays(hm(12, 0), hm(20, 0));
    late.friday = DayWindow::closed();
    vec![
        Demo {
            name: "Dr. Meera Iyer",
            specialty: "Dermatology",
            timezone: chrono_tz::Asia::Kolkata,
            slot_minutes: 30,
            schedule: saturday_mornings,
        },
        Demo {
            name: "Dr. Lukas Brandt",
            specialty: "General Practice",
            timezone: chrono_tz::Europe::Berlin,
            slot_minutes: 30,
            schedule: WeeklySchedule::weekdays(hm(8, 0), hm(16, 0)),
        },
        Demo {
            name: "Dr. Amara Okafor",
            specialty: "Pediatrics",
            timezone: chrono_tz::Africa::Lagos,
            slot_minutes: 30,
            schedule: WeeklySchedule::weekdays(hm(10, 0), hm(18, 0)),
        },
        Demo {
            name: "Dr. Sofia Alvarez",
            specialty: "Psychiatry",
            timezone: chrono_tz::America::New_York,
            slot_minutes: 60,
            schedule: late,
        },
        Demo {
            name: "Dr. Kenji Watanabe",
            specialty: "Cardiology",
            timezone: chrono_tz::Asia::Tokyo,
            slot_minutes: 30,
            schedule: WeeklySchedule::every_day(DayWindow::open(hm(9, 0), hm(12, 30))),
        },
    ]
}

/// Seeds the demo doctors if the store has no doctor yet; returns how many were added.
pub async fn seed_if_empty(engine: &Engine) -> Result<usize, EngineError> {
    if !engine.list_doctors().await?.is_empty() {
        return Ok(0);
    }
    let doctors = demo_doctors();
    for d in &doctors {
        engine
            .create_doctor(NewDoctor {
                name: d.name.into(),
                specialty: d.specialty.into(),
                timezone: d.timezone,
                slot_minutes: d.slot_minutes,
                schedule: d.schedule,
                is_available: true,
                is_approved: true,
            })
            .await?;
    }
    Ok(doctors.len())
}

/// The demo patients the development sign-in offers: (sub, name).
pub const DEMO_PATIENTS: [(i64, &str); 2] = [(67, "Asha Patel"), (68, "Tomás Reyes")];

/// The demo admin the development sign-in offers: (sub, name).
pub const DEMO_ADMIN: (i64, &str) = (1, "Clinic admin");
