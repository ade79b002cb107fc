//! The session worker yields to bookings: while they queue for the journal it keeps to
//! `max_in_flight_while_busy` sessions at once, and once they no longer queue it works the
//! outbox off at `max_in_flight`; a side asking for its session is served at once all the
//! same. A real journal on SQLite (its writes slowed), bookings racing, and real HTTP to
//! the fake Vonage, which counts the calls it handles at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use consult_actors::seal::Sealer;
use consult_actors::sessions::{SessionConfig, SessionSettings, BUSY_FOR};
use consult_actors::vonage::{VonageClient, VonageConfig};
use consult_actors::*;
use consult_scheduler::fake_vonage::FakeVonage;
use consult_scheduler::settings::{DEV_VONAGE_PRIVATE_KEY, DEV_VONAGE_PUBLIC_KEY};
use futures::future::join_all;

use crate::helpers::*;

const APPLICATION_ID: &str = "29f760f8-7ce1-46c9-ade3-f2dedee4ed5f";
/// What every Vonage call takes: sessions started together are handled together.
const VONAGE_LATENCY: StdDuration = StdDuration::from_millis(1_000);
const BUSY_BOUND: usize = 2;

fn sessions_against(fake: &FakeVonage) -> SessionConfig {
    let client = VonageClient::new(VonageConfig {
        application_id: APPLICATION_ID.into(),
        private_key_pem: DEV_VONAGE_PRIVATE_KEY.into(),
        video_base_url: fake.base_url(),
        api_base_url: fake.base_url(),
        request_timeout: StdDuration::from_secs(10),
    })
    .expect("vonage client");
    SessionConfig {
        client,
        provider: "fake".into(),
        application_id: APPLICATION_ID.into(),
        sealer: Sealer::new(&[7; 32]),
        settings: SessionSettings {
            max_in_flight: 32,
            max_in_flight_while_busy: BUSY_BOUND,
            busy_journal_records: 4,
            poll_interval_ms: 100,
            ..Default::default()
        },
    }
}

/// Books `count` video consultations of a new doctor at once; answers them by id.
async fn book_videos(
    engine: &Engine,
    name: &str,
    first_patient: PatientId,
    count: i64,
) -> Vec<Consultation> {
    let doctor = engine
        .create_doctor(open_doctor(name, chrono_tz::UTC))
        .await
        .unwrap();
    let mut booked: Vec<Consultation> = join_all((0..count).map(|n| {
        let engine = engine.clone();
        async move {
            engine
                .book(booking(doctor.id, first_patient + n, slot(n)))
                .await
        }
    }))
    .await
    .into_iter()
    .map(|r| r.expect("a video booking"))
    .collect();
    booked.sort_by_key(|c| c.id);
    booked
}

/// How many of these consultations' sessions are still pending in the store.
async fn pending_sessions(store: &dyn Store, consultations: &[Consultation]) -> usize {
    let mut pending = 0;
    for c in consultations {
        let record = store.session(c.id).await.unwrap().expect("a session row");
        pending += usize::from(record.status == SessionStatus::Pending);
    }
    pending
}

/// Like [`eventually`], for an asynchronous check.
async fn eventually_async<F, Fut>(limit: StdDuration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    check().await
}

async fn sessions_made(fake: &FakeVonage, target: u64) -> bool {
    eventually(StdDuration::from_secs(20), || {
        fake.counts().video_sessions >= target
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_worker_keeps_to_its_busy_bound_while_bookings_queue_then_catches_up() {
    let fake = FakeVonage::start(
        "127.0.0.1:0".parse().unwrap(),
        DEV_VONAGE_PUBLIC_KEY,
        Some(APPLICATION_ID.into()),
    )
    .await
    .expect("fake vonage starts");
    fake.set_latency(VONAGE_LATENCY);
    let b = Backend::sqlite().await;
    let append_delay_ms = Arc::new(AtomicU64::new(0));
    let delay = Arc::clone(&append_delay_ms);
    let store = FaultyStore::with_plan(
        b.store.clone(),
        Box::new(move || AppendFault {
            delay: Some(StdDuration::from_millis(delay.load(Ordering::SeqCst))),
            ..AppendFault::NONE
        }),
    );
    let engine = Engine::builder(store)
        .settings(settings())
        .sessions(sessions_against(&fake))
        .start()
        .await
        .expect("engine starts");

    // Quiet: bookings one at a time never queue, so their sessions run side by side.
    let doctor = engine
        .create_doctor(open_doctor("Dr. Quiet", chrono_tz::UTC))
        .await
        .unwrap();
    for n in 0..12 {
        engine
            .book(booking(doctor.id, 100 + n, slot(n)))
            .await
            .unwrap();
    }
    assert!(sessions_made(&fake, 12).await, "{:?}", fake.counts());
    let quiet = fake.counts().most_at_once;
    assert!(quiet > BUSY_BOUND as u64, "quiet: {quiet} sessions at once");

    // Busy: 16 patients keep booking (WhatsApp: no session) against a journal whose every
    // write takes 40 ms, so each batch begins with about 16 records waiting.
    append_delay_ms.store(40, Ordering::SeqCst);
    let stop = Arc::new(AtomicBool::new(false));
    let mut loaders = Vec::new();
    for i in 0..16 {
        let (engine, stop) = (engine.clone(), Arc::clone(&stop));
        loaders.push(tokio::spawn(async move {
            let doctor = engine
                .create_doctor(open_doctor(&format!("Dr. Busy {i}"), chrono_tz::UTC))
                .await
                .unwrap();
            let mut booked = 0;
            for n in 0..400 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let mut request = booking(doctor.id, 10_000 * (i + 1) + n, slot(n));
                request.mode = ConsultMode::Whatsapp;
                engine.book(request).await.expect("a loader's booking");
                booked += 1;
            }
            booked
        }));
    }
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    fake.restart_most_at_once();
    let videos = book_videos(&engine, "Dr. Video", 1_000, 20).await;
    tokio::time::sleep(StdDuration::from_millis(2_500)).await;
    let busy = fake.counts();

    // Still busy: a patient asks once for the newest pending session (last in the
    // outbox's order) and gets it ahead of the others.
    let asked = videos.last().unwrap();
    let view = engine
        .session_join(asked.id, Requester::Patient(asked.patient_id))
        .await
        .unwrap();
    assert_eq!(view.status, SessionStatus::Pending);
    let ready = eventually_async(StdDuration::from_secs(10), || async {
        pending_sessions(b.store.as_ref(), std::slice::from_ref(asked)).await == 0
    })
    .await;
    assert!(ready, "the asked-for session was not made");
    let others = pending_sessions(b.store.as_ref(), &videos[..videos.len() - 1]).await;
    assert!(
        others >= 5,
        "only {others} of the burst's other sessions were still pending"
    );
    assert!(
        loaders.iter().all(|l| !l.is_finished()),
        "the load ended early"
    );
    stop.store(true, Ordering::SeqCst);
    let mut loader_bookings = 0;
    for l in loaders {
        loader_bookings += l.await.expect("loader");
    }
    assert!(
        loader_bookings >= 16 * 10,
        "loaders booked {loader_bookings}"
    );
    assert!(
        busy.most_at_once <= BUSY_BOUND as u64,
        "{} sessions at once while bookings queued",
        busy.most_at_once
    );
    assert!(
        busy.video_sessions > 12,
        "no session was made while bookings queued: {busy:?}"
    );
    assert!(
        busy.video_sessions < 12 + 20,
        "every session was made while bookings queued: {busy:?}"
    );

    // Quiet again: the rest is worked off, more than the busy bound at once.
    append_delay_ms.store(0, Ordering::SeqCst);
    fake.restart_most_at_once();
    assert!(sessions_made(&fake, 12 + 20).await, "{:?}", fake.counts());
    let after = fake.counts();
    assert_eq!(
        after.video_sessions,
        12 + 20,
        "one session per video booking"
    );
    assert!(
        after.most_at_once > BUSY_BOUND as u64,
        "the backlog was worked off {} at a time, {BUSY_FOR:?} after the burst",
        after.most_at_once
    );
    engine.shutdown().await;
    fake.stop().await;
    b.cleanup().await;
}
