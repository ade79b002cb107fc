//! A test client of the availability stream: opens it with a patient's token and reads
//! its server-sent events one at a time, with a deadline (shared by the stream and
//! reschedule tests).

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// An open stream and the bytes read from it not yet parsed.
pub struct Watcher {
    response: reqwest::Response,
    buffer: String,
}

impl Watcher {
    pub async fn open(app: &TestApp, doctor: i64, token: &str, last_id: Option<&str>) -> Self {
        let mut req = app
            .client
            .get(app.url(&format!("/patient/doctors/{doctor}/availability/stream")))
            .bearer_auth(token);
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (heartbeat comments skipped), within 10 s; `None` if the stream ended.
    pub async fn next(&mut self) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if event.is_empty() {
                    continue; // a comment
                }
                return Some(Sse {
                    event,
                    id,
                    data: serde_json::from_str(&data).expect("data is JSON"),
                });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event within 10 s")
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    /// The next event, which must be `event` about `start` (if given).
    pub async fn expect(&mut self, event: &str, start: Option<DateTime<Utc>>) -> Sse {
        let got = self.next().await.expect("the stream is open");
        assert_eq!(got.event, event, "{got:?}");
        if let Some(start) = start {
            let seen: DateTime<Utc> = got.data["start"].as_str().unwrap().parse().unwrap();
            assert_eq!(seen, start, "{got:?}");
        }
        got
    }
}
