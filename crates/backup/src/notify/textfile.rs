//! `textfile` (custos): the push gateway's metrics written to a `.prom` file for
//! node_exporter's textfile collector, one label `source="<id>"` per source. Written
//! atomically (temporary file + rename) so the collector never reads half a file; a failed
//! source keeps the last success time found in the previous file.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{metrics, Context, Delivery, Events, Notifier};
use crate::outcome::RunReport;
use custos_kit::config::{Invalid, Validate};

/// `type: textfile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Textfile {
    /// `path`: e.g. `/var/lib/prometheus/node-exporter/backup.prom`.
    pub path: PathBuf,
}

/// The value of `backup_last_success_timestamp_seconds{source="<id>"}` in `text`.
fn last_success(text: &str, id: &str) -> Option<f64> {
    let prefix = format!(
        "{}{{{}}} ",
        metrics::LAST_SUCCESS,
        metrics::label("source", id)
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

impl Validate for Textfile {
    fn validate(&self) -> Result<(), Invalid> {
        if self.path.extension().and_then(|e| e.to_str()) != Some("prom") {
            return Err(Invalid::new(
                "path",
                self.path.display(),
                "node_exporter reads only files ending in .prom",
            ));
        }
        Ok(())
    }
}

impl Notifier for Textfile {
    fn default_events(&self) -> Events {
        Events::OUTCOMES
    }

    fn finish(&self, ctx: &Context, report: &RunReport) -> Delivery {
        let mut d = Delivery::default();
        if report.dry_run || !(ctx.events.success || ctx.events.failure) {
            return d;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let previous = std::fs::read_to_string(&self.path).unwrap_or_default();
        let sets: Vec<(String, Vec<metrics::Metric>)> = report
            .sources
            .iter()
            .map(|s| {
                (
                    metrics::label("source", &s.id),
                    metrics::of_source(s, now, last_success(&previous, &s.id)),
                )
            })
            .collect();
        d.record(super::write_atomically(
            &self.path,
            metrics::render(&sets).as_bytes(),
        ));
        d
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn last_success_is_found_per_source() {
        let text = "backup_last_success_timestamp_seconds{source=\"a\"} 12\n\
                    backup_last_success_timestamp_seconds{source=\"b\"} 1.5e9\n";
        assert_eq!(super::last_success(text, "b"), Some(1.5e9));
        assert_eq!(super::last_success(text, "c"), None);
    }
}
