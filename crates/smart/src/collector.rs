//! The published state and the prometheus-client collector that encodes it at scrape time.

use crate::metrics::{self, Family, Kind};
use crate::state::State;
use custos_kit::exposition::Exposition;
use custos_kit::snapshot::{Snapshot, Store};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// The one slot of the store: the exporter has one helper.
pub const KEY: &str = "helper";

/// A refresh's result as scrapes see it: the state and its families, built once.
#[derive(Debug, Default)]
pub struct Published {
    pub state: State,
    pub families: Vec<Family>,
}

impl Snapshot for Published {
    fn key(&self) -> &str {
        KEY
    }
    fn empty(_key: &str) -> Published {
        Published::default()
    }
}

/// The store a refresher publishes into.
pub type SmartStore = Store<Published>;

/// A new store holding the state before the first refresh.
pub fn store() -> Arc<SmartStore> {
    Arc::new(Store::new([KEY]))
}

/// Which families a collector writes: everything cached per refresh, or the ages per scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Stable,
    Ages,
}

#[derive(Debug)]
struct SmartCollector {
    store: Arc<SmartStore>,
    part: Part,
}

impl Collector for SmartCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let Some(p) = self.store.get(KEY) else {
            return Ok(());
        };
        match self.part {
            Part::Stable => encode_families(&mut enc, &p.families),
            Part::Ages => encode_families(
                &mut enc,
                &metrics::age_families(&p.state, SystemTime::now()),
            ),
        }
    }
}

/// Writes `families` with the kit's constant-family helpers.
pub fn encode_families(enc: &mut DescriptorEncoder, families: &[Family]) -> fmt::Result {
    for f in families {
        // A family without labels is written `name value`, not `name{} value`.
        if let [(labels, v)] = f.samples.as_slice() {
            if labels.is_empty() {
                let ty = match f.kind {
                    Kind::Gauge => MetricType::Gauge,
                    Kind::Counter => MetricType::Counter,
                };
                let m = enc.encode_descriptor(&f.name, &f.help, None, ty)?;
                match f.kind {
                    Kind::Gauge => ConstGauge::new(*v).encode(m)?,
                    Kind::Counter => ConstCounter::new(v.max(0.0) as u64).encode(m)?,
                }
                continue;
            }
        }
        let samples = f.samples.iter().map(|(l, v)| (l.clone(), *v));
        match f.kind {
            Kind::Gauge => custos_kit::families::gauge(enc, &f.name, &f.help, None, samples)?,
            Kind::Counter => custos_kit::families::counter(
                enc,
                &f.name,
                &f.help,
                samples.map(|(l, v)| (l, v.max(0.0) as u64)),
            )?,
        }
    }
    Ok(())
}

/// What `/metrics` serves: the refresh's families encoded once per refresh, ages per scrape.
pub fn exposition(store: &Arc<SmartStore>) -> Exposition {
    let registry = |part| {
        let mut r = Registry::default();
        r.register_collector(Box::new(SmartCollector {
            store: Arc::clone(store),
            part,
        }));
        r
    };
    let generation_store = Arc::clone(store);
    Exposition::cached(
        registry(Part::Stable),
        registry(Part::Ages),
        Box::new(move || generation_store.generation()),
    )
}
