//! `flagfile`: a file rewritten after a fully successful run, for "how old is the last good
//! backup" checks (the original README's `file_age_secs` over SNMP). Written atomically
//! (temporary file + rename), so a checker never reads a half-written flag.
//!
//! The original read `flagfile` while its README documents `filename`; both are accepted.
//! The content is `OK <RFC 3339 time>` (the original wrote `OK`; its mtime still works).

use std::path::PathBuf;

use serde::Deserialize;

use super::{Context, Delivery, Events, Notifier};
use crate::outcome::RunReport;
use custos_kit::config::{Invalid, Validate};

/// `type: flagfile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flagfile {
    #[serde(default)]
    pub flagfile: Option<PathBuf>,
    #[serde(default)]
    pub filename: Option<PathBuf>,
}

impl Flagfile {
    fn path(&self) -> Option<&PathBuf> {
        self.flagfile.as_ref().or(self.filename.as_ref())
    }
}

impl Validate for Flagfile {
    fn validate(&self) -> Result<(), Invalid> {
        match self.path() {
            Some(p) if !p.as_os_str().is_empty() => Ok(()),
            _ => Err(Invalid::new(
                "flagfile",
                "",
                "set flagfile (or filename) to a path",
            )),
        }
    }
}

impl Notifier for Flagfile {
    fn default_events(&self) -> Events {
        Events {
            start: false,
            success: true,
            failure: false,
        }
    }

    /// Writes the flag only when every source succeeded: a flag after a partial failure
    /// would tell the checker all is well.
    fn finish(&self, ctx: &Context, report: &RunReport) -> Delivery {
        let mut d = Delivery::default();
        if !ctx.events.success || report.dry_run || !report.backups_succeeded() {
            return d;
        }
        if let Some(path) = self.path() {
            let body = format!(
                "OK {}\n",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            d.record(super::write_atomically(path, body.as_bytes()));
        }
        d
    }
}
