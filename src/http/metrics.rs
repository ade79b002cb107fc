//! Prometheus metrics, one registry per application (no process-global recorder, so
//! several servers in one test process keep their own counts): bookings by outcome,
//! booking latency, requests in flight and by status class, and the engine's own
//! counters and journal histograms read at scrape time.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64};

use consult_actors::{Engine, HistogramSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub class: &'static str,
}

pub struct Metrics {
    registry: Registry,
    bookings: Family<OutcomeLabel, Counter<u64, AtomicU64>>,
    booking_seconds: Histogram,
    pub in_flight: Gauge<i64, AtomicI64>,
    responses: Family<StatusLabel, Counter<u64, AtomicU64>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(engine: Engine) -> Self {
        let mut registry = Registry::with_prefix("consult");
        let bookings = Family::<OutcomeLabel, Counter<u64, AtomicU64>>::default();
        registry.register(
            "bookings",
            "Booking requests by outcome (booked, conflict, rejected, invalid, unavailable)",
            bookings.clone(),
        );
        // 100 µs .. ~3.3 s, doubling.
        let booking_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16),
        );
        registry.register(
            "booking_duration_seconds",
            "Time to answer POST /patient/doctors/book",
            booking_seconds.clone(),
        );
        let in_flight = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being handled",
            in_flight.clone(),
        );
        let responses = Family::<StatusLabel, Counter<u64, AtomicU64>>::default();
        registry.register(
            "http_responses",
            "HTTP responses by status class",
            responses.clone(),
        );
        registry.register_collector(Box::new(EngineCollector(engine)));
        Self {
            registry,
            bookings,
            booking_seconds,
            in_flight,
            responses,
        }
    }

    pub fn booking(&self, outcome: &'static str, seconds: f64) {
        self.bookings.get_or_create(&OutcomeLabel { outcome }).inc();
        self.booking_seconds.observe(seconds);
    }

    pub fn response(&self, status: u16) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.responses.get_or_create(&StatusLabel { class }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Reads the engine's counters on each scrape.
struct EngineCollector(Engine);

impl fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EngineCollector")
    }
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = self.0.stats();
        let gauge = ConstGauge::new(s.active_actors as i64);
        gauge.encode(encoder.encode_descriptor(
            "engine_active_actors",
            "Doctor actors currently active",
            None,
            gauge.metric_type(),
        )?)?;
        let waiting = ConstGauge::new(s.journal_waiting as i64);
        waiting.encode(encoder.encode_descriptor(
            "journal_waiting_records",
            "Records queued for the journal or being written now",
            None,
            waiting.metric_type(),
        )?)?;
        let streams = ConstGauge::new(self.0.stream_subscribers() as i64);
        streams.encode(encoder.encode_descriptor(
            "availability_streams",
            "Availability streams open now",
            None,
            streams.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "engine_activations",
                "Doctor actors started from the store",
                s.activations,
            ),
            (
                "engine_passivations",
                "Doctor actors stopped after being idle",
                s.passivations,
            ),
            (
                "engine_actor_failures",
                "Doctor actors that failed",
                s.actor_failures,
            ),
            (
                "engine_overloaded",
                "Calls refused by admission control",
                s.overloaded,
            ),
            (
                "journal_records",
                "Journal records committed",
                s.journal_records,
            ),
            (
                "journal_failed_batches",
                "Journal transactions that failed",
                s.journal_failed_batches,
            ),
            (
                "engine_snapshots_written",
                "Doctor snapshots written",
                s.snapshots_written,
            ),
            (
                "engine_snapshot_batches",
                "Store calls that wrote doctor snapshots",
                s.snapshot_batches,
            ),
            (
                "engine_doctor_ticks",
                "Ticks sent to doctor actors (hold expiry, snapshots, idle checks)",
                s.doctor_ticks,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        histogram(
            &mut encoder,
            "journal_batch_size_records",
            "Records per journal transaction",
            &s.journal_batch_sizes,
            1.0,
        )?;
        histogram(
            &mut encoder,
            "journal_flush_duration_seconds",
            "Time per journal transaction",
            &s.journal_flush_latency_us,
            1e-6,
        )?;
        if let Some(cluster) = self.0.cluster() {
            encode_cluster(&mut encoder, cluster)?;
        }
        Ok(())
    }
}

/// Shard ownership and lease health of a clustered instance.
fn encode_cluster(
    encoder: &mut DescriptorEncoder,
    cluster: &consult_actors::cluster::Cluster,
) -> Result<(), fmt::Error> {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &cluster.stats;
    for (name, help, value) in [
        (
            "cluster_owned_shards",
            "Lease shards this instance serves now",
            cluster.ownership().owned().len() as i64,
        ),
        (
            "cluster_unrouted_shards",
            "Lease shards with neither a local lease nor a known live owner",
            cluster.ownership().unrouted() as i64,
        ),
        (
            "cluster_last_renew_microseconds",
            "Duration of the last lease renewal (heartbeat + renew)",
            c.last_renew_micros.load(Relaxed) as i64,
        ),
    ] {
        let gauge = ConstGauge::new(value);
        gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
    }
    for (name, help, value) in [
        (
            "cluster_lease_renewals",
            "Successful lease renewals",
            &c.renewals,
        ),
        (
            "cluster_lease_renew_failures",
            "Failed lease renewals",
            &c.renew_failures,
        ),
        (
            "cluster_lease_renew_microseconds",
            "Time spent renewing leases",
            &c.renew_micros_total,
        ),
        ("cluster_shards_acquired", "Shard leases taken", &c.acquired),
        (
            "cluster_shards_handed_off",
            "Shard leases released by handoff",
            &c.handed_off,
        ),
        (
            "cluster_shards_lost",
            "Shards lost (deadline passed or taken over)",
            &c.lost,
        ),
        (
            "cluster_fenced_transactions",
            "Writes refused by a stale epoch",
            &c.fenced,
        ),
        (
            "cluster_forwarded_requests",
            "Requests forwarded to the owner",
            &c.forwarded,
        ),
    ] {
        let counter = ConstCounter::new(value.load(Relaxed));
        counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
    scale: f64,
) -> Result<(), fmt::Error> {
    // The text encoder accumulates per-bucket counts itself.
    let mut previous = 0;
    let mut buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|(bound, cumulative)| {
            let in_bucket = cumulative - previous;
            previous = *cumulative;
            (*bound as f64 * scale, in_bucket)
        })
        .collect();
    // f64::MAX is how prometheus-client spells the `+Inf` bucket.
    buckets.push((f64::MAX, h.count - previous));
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        h.sum as f64 * scale,
        h.count,
        &buckets,
        None,
    )
}
