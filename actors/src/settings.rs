//! Engine settings: every bound the engine enforces, named with its unit.

use serde::{Deserialize, Serialize};

use crate::calendar::Rules;
use crate::error::InvalidField;

/// Tunables of the engine. Defaults suit one 2-core machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// Number of shard supervisors; doctors are spread over them by hash of their id.
    pub shards: usize,
    /// Requests allowed in flight per shard; past it, calls answer `Overloaded` at once.
    pub max_in_flight_per_shard: usize,
    /// Upper bound on any engine call, activation and journal wait included.
    pub call_timeout_ms: u64,
    /// How long a hold reserves a slot.
    pub hold_ttl_s: u32,
    /// A booking must start at least this long after now.
    pub min_notice_minutes: u32,
    /// A doctor actor idle this long is passivated (snapshot, stop) to free memory.
    pub passivate_after_idle_ms: u64,
    /// How often shards tick their actors that asked for it (a hold to expire, a snapshot
    /// to queue); the others every [`EngineSettings::idle_tick_every`] ticks.
    pub tick_interval_ms: u64,
    /// How often dirty actors write a snapshot.
    pub snapshot_interval_ms: u64,
    /// Snapshot writer tasks (each writes a batch of snapshots per store call; they share
    /// the store with the journal).
    pub max_concurrent_snapshot_writes: usize,
    /// Journal writers, each owning the doctors whose id hashes to it; 0 = what the store
    /// prefers (`Store::preferred_append_concurrency`).
    pub journal_writers: usize,
    /// Most records in one journal transaction.
    pub journal_max_batch: usize,
    /// How long the journal writer waits for more records after the first of a batch.
    pub journal_flush_interval_ms: u64,
    /// Journal records queued before actors answer `Overloaded`.
    pub journal_queue_capacity: usize,
    /// Most days one availability query may span.
    pub max_availability_days: u16,
    /// Encoded availability answers kept per read doctor (one per asked range of dates,
    /// about 4 KB for one day of 30-minute slots), reused while nothing they show has
    /// changed; the oldest goes first. 0 turns the cache off.
    pub availability_cache_entries_per_doctor: usize,
    /// Live availability streams open on one doctor at once; past it, `Overloaded`.
    pub max_stream_subscribers_per_doctor: usize,
    /// Live availability streams open in the whole process at once; past it, `Overloaded`.
    pub max_stream_subscribers: usize,
    /// Slot changes kept per watched doctor for streams that reconnect; older ones are
    /// answered with a resync.
    pub stream_buffer_events: usize,
    /// How long an `Idempotency-Key` answers with its first answer (stored with the
    /// booking); after it the key is unknown again.
    pub idempotency_ttl_s: u32,
    /// How often expired idempotency keys are purged from the store.
    pub idempotency_purge_interval_ms: u64,
    /// Most expired keys deleted by one purge statement, so a purge never holds the
    /// journal's tables for long; a round repeats statements until fewer are left.
    pub idempotency_purge_batch_rows: u32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            shards: 16,
            max_in_flight_per_shard: 4096,
            call_timeout_ms: 5_000,
            hold_ttl_s: 300,
            min_notice_minutes: 0,
            passivate_after_idle_ms: 15 * 60 * 1000,
            tick_interval_ms: 1_000,
            snapshot_interval_ms: 30_000,
            max_concurrent_snapshot_writes: 4,
            journal_writers: 0,
            journal_max_batch: 4096,
            // Write as soon as the writer is free; records arriving meanwhile form the next
            // batch. Waiting only adds latency unless the store's fixed cost per
            // transaction is very high.
            journal_flush_interval_ms: 0,
            journal_queue_capacity: 65_536,
            max_availability_days: 62,
            // A month of one-day reads.
            availability_cache_entries_per_doctor: 32,
            max_stream_subscribers_per_doctor: 256,
            max_stream_subscribers: 10_000,
            stream_buffer_events: 256,
            idempotency_ttl_s: 24 * 3600,
            idempotency_purge_interval_ms: 60_000,
            idempotency_purge_batch_rows: 1_000,
        }
    }
}

/// Longest gap between two ticks of an idle doctor: it bounds how late pruning and
/// passivation come.
const IDLE_TICK_MAX_MS: u64 = 30_000;

impl EngineSettings {
    /// Every how many ticks a shard ticks its doctors that did not ask: a tenth of the
    /// passivation delay (so passivation comes at most 10% late), at most
    /// [`IDLE_TICK_MAX_MS`], at least every tick. 30 with the defaults.
    pub fn idle_tick_every(&self) -> u64 {
        let gap_ms = (self.passivate_after_idle_ms / 10).min(IDLE_TICK_MAX_MS);
        (gap_ms / self.tick_interval_ms.max(1)).max(1)
    }

    /// Refuses values that would make the engine unbounded or useless.
    pub fn validate(&self) -> Result<(), InvalidField> {
        fn check(ok: bool, field: &str, reason: &str) -> Result<(), InvalidField> {
            if ok {
                Ok(())
            } else {
                Err(InvalidField::new(format!("engine.{field}"), reason))
            }
        }
        check(
            (1..=4096).contains(&self.shards),
            "shards",
            "must be 1..=4096",
        )?;
        check(
            (1..=1_000_000).contains(&self.max_in_flight_per_shard),
            "max_in_flight_per_shard",
            "must be 1..=1000000",
        )?;
        check(
            (1..=600_000).contains(&self.call_timeout_ms),
            "call_timeout_ms",
            "must be 1..=600000",
        )?;
        check(
            (1..=86_400).contains(&self.hold_ttl_s),
            "hold_ttl_s",
            "must be 1..=86400",
        )?;
        check(
            self.min_notice_minutes <= 525_600,
            "min_notice_minutes",
            "must be at most a year",
        )?;
        check(
            self.passivate_after_idle_ms >= 1,
            "passivate_after_idle_ms",
            "must be at least 1",
        )?;
        check(
            (1..=3_600_000).contains(&self.tick_interval_ms),
            "tick_interval_ms",
            "must be 1..=3600000",
        )?;
        check(
            self.snapshot_interval_ms >= 1,
            "snapshot_interval_ms",
            "must be at least 1",
        )?;
        check(
            (1..=64).contains(&self.max_concurrent_snapshot_writes),
            "max_concurrent_snapshot_writes",
            "must be 1..=64",
        )?;
        check(
            self.journal_writers <= 64,
            "journal_writers",
            "must be 0 (store's choice) to 64",
        )?;
        check(
            (1..=65_536).contains(&self.journal_max_batch),
            "journal_max_batch",
            "must be 1..=65536",
        )?;
        check(
            self.journal_flush_interval_ms <= 2,
            "journal_flush_interval_ms",
            "must be at most 2 (a booking waits for it)",
        )?;
        check(
            (1..=10_000_000).contains(&self.journal_queue_capacity),
            "journal_queue_capacity",
            "must be 1..=10000000",
        )?;
        check(
            (1..=366).contains(&self.max_availability_days),
            "max_availability_days",
            "must be 1..=366",
        )?;
        check(
            self.availability_cache_entries_per_doctor <= 1_024,
            "availability_cache_entries_per_doctor",
            "must be 0 (off) to 1024",
        )?;
        check(
            (1..=100_000).contains(&self.max_stream_subscribers_per_doctor),
            "max_stream_subscribers_per_doctor",
            "must be 1..=100000",
        )?;
        check(
            (1..=1_000_000).contains(&self.max_stream_subscribers),
            "max_stream_subscribers",
            "must be 1..=1000000",
        )?;
        check(
            (1..=65_536).contains(&self.stream_buffer_events),
            "stream_buffer_events",
            "must be 1..=65536",
        )?;
        check(
            (60..=7 * 86_400).contains(&self.idempotency_ttl_s),
            "idempotency_ttl_s",
            "must be 60..=604800 (a minute to a week)",
        )?;
        check(
            (1_000..=86_400_000).contains(&self.idempotency_purge_interval_ms),
            "idempotency_purge_interval_ms",
            "must be 1000..=86400000",
        )?;
        check(
            (1..=100_000).contains(&self.idempotency_purge_batch_rows),
            "idempotency_purge_batch_rows",
            "must be 1..=100000",
        )?;
        Ok(())
    }

    pub fn feed_limits(&self) -> crate::feed::FeedLimits {
        crate::feed::FeedLimits {
            max_subscribers_per_doctor: self.max_stream_subscribers_per_doctor,
            max_subscribers: self.max_stream_subscribers,
            buffer_len: self.stream_buffer_events,
        }
    }

    pub fn rules(&self) -> Rules {
        Rules {
            min_notice_minutes: self.min_notice_minutes,
            hold_ttl_s: self.hold_ttl_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(EngineSettings::default().validate(), Ok(()));
    }

    #[test]
    fn unbounded_values_are_refused_with_the_field_named() {
        let s = EngineSettings {
            journal_flush_interval_ms: 50,
            ..Default::default()
        };
        assert_eq!(
            s.validate().unwrap_err().field,
            "engine.journal_flush_interval_ms"
        );
        let s = EngineSettings {
            shards: 0,
            ..Default::default()
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn idle_doctors_are_ticked_every_tenth_of_the_passivation_delay_at_most_30_s_apart() {
        let every = |passivate_after_idle_ms, tick_interval_ms| {
            EngineSettings {
                passivate_after_idle_ms,
                tick_interval_ms,
                ..Default::default()
            }
            .idle_tick_every()
        };
        assert_eq!(EngineSettings::default().idle_tick_every(), 30);
        assert_eq!(every(60_000, 1_000), 6);
        assert_eq!(every(25, 5), 1, "never less than every tick");
        assert_eq!(every(3_600_000, 500), 60, "30 s apart at most");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let r: Result<EngineSettings, _> = serde_json::from_str(r#"{"shardz": 4}"#);
        assert!(r.is_err());
    }
}
