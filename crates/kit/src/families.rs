//! Writing whole metric families from a collector at scrape time.
//!
//! Collectors that encode a snapshot (instead of registering a metric per series) write each
//! family as a descriptor followed by constant samples; these helpers are that pattern once.

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes one gauge family: descriptor, then a sample per `(labels, value)`.
pub fn gauge<L, V, I>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: I,
) -> fmt::Result
where
    L: EncodeLabelSet,
    V: EncodeGaugeValue + fmt::Debug,
    I: IntoIterator<Item = (L, V)>,
{
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Like [`gauge`] for counters; `name` without `_total` (the encoder appends it).
pub fn counter<L, I>(enc: &mut DescriptorEncoder, name: &str, help: &str, samples: I) -> fmt::Result
where
    L: EncodeLabelSet,
    I: IntoIterator<Item = (L, u64)>,
{
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A time as Unix seconds (0 before the epoch), the value of `*_timestamp_seconds` gauges.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            gauge(
                &mut enc,
                "demo_level",
                "A level.",
                Some(&Unit::Seconds),
                [([("server", "a")], 1.5), ([("server", "b")], 2.0)],
            )?;
            counter(
                &mut enc,
                "demo_errors",
                "Errors.",
                [([("kind", "io")], 3u64)],
            )
        }
    }

    #[test]
    fn families_encode_as_openmetrics() {
        let mut r = Registry::default();
        r.register_collector(Box::new(Two));
        let (_, om) = crate::exposition::encode(&r, Some("application/openmetrics-text"));
        assert!(om.contains("# TYPE demo_level_seconds gauge\n# UNIT demo_level_seconds seconds\ndemo_level_seconds{server=\"a\"} 1.5\ndemo_level_seconds{server=\"b\"} 2.0\n"), "{om}");
        assert!(
            om.contains("# TYPE demo_errors counter\ndemo_errors_total{kind=\"io\"} 3\n"),
            "{om}"
        );
        assert_eq!(unix_seconds(UNIX_EPOCH), 0.0);
    }
}
