//! Logging: tracing JSON lines (one object per event, with the request span's fields such
//! as `request_id`), or human-readable lines when stdout is a terminal. `RUST_LOG`
//! overrides the configured level.

use std::io::IsTerminal;

use chrono::{SecondsFormat, Utc};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                json_subscriber::fmt::layer()
                    .with_timer(UtcMicros)
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_target(true),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init()
    };
    // Already installed (several apps in one test process): keep the first.
    let _ = result;
}

/// JSON lines' `timestamp`: RFC 3339 in UTC with microseconds and `Z`
/// (`2026-12-07T16:30:00.123456Z`), the text of tracing-subscriber's default `SystemTime`
/// timer, which writes it in eight formatted pieces; chrono writes it into one `String`.
struct UtcMicros;

impl FormatTime for UtcMicros {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        w.write_str(&Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_keep_the_default_timers_shape() {
        let mut ours = String::new();
        UtcMicros.format_time(&mut Writer::new(&mut ours)).unwrap();
        let mut default = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut default))
            .unwrap();
        // Same length and layout: digits everywhere except the separators, which match.
        assert_eq!(ours.len(), "2026-12-07T16:30:00.123456Z".len(), "{ours}");
        assert_eq!(ours.len(), default.len(), "{ours} against {default}");
        for (a, b) in ours.bytes().zip(default.bytes()) {
            assert_eq!(
                a.is_ascii_digit(),
                b.is_ascii_digit(),
                "{ours} against {default}"
            );
            if !a.is_ascii_digit() {
                assert_eq!(a, b, "{ours} against {default}");
            }
        }
        // Both read the same clock: the same date and hour (unless taken across an hour).
        assert!(
            ours[..13] == default[..13] || default[14..16] == *"00",
            "{ours} against {default}"
        );
    }
}
