//! The original haproxysessionmon's YAML config, and the keys custos adds.
//!
//! The original's README example loads unchanged: `logging`, `backends` (sinks by id, with a
//! `type`) and `servers` (HAProxy instances by id, naming their backends). Durations are seconds
//! (numbers or numeric strings, as the original's `float()` accepted). `validate()` reports
//! every semantic error with the key path and the value (never a password). A backend's keys
//! are its type's module's under [`crate::sink`]; they are typed here once `type` is known.

use crate::sample::RowType;
use custos_kit::config::values::{opt_seconds, seconds, AnyValue};
use custos_kit::config::{ConfigError, Secret, Strictness, UnknownKey};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

// A backend type's config lives with its sink (`crate::sink::<type>`); here is where readers of
// the config find them.
pub use crate::sink::gelf::{GelfBackend, GelfProtocol, DEFAULT_CHUNK_SIZE, DEFAULT_FACILITY};
pub use crate::sink::logfile::LogfileBackend;
pub use crate::sink::prometheus::{PrometheusBackend, DEFAULT_LISTEN};
pub use crate::sink::prtg::{PrtgBackend, PrtgMethod};
pub use crate::sink::Backend;

/// The environment variable the original reads the config path from.
pub const ENV_CONFIG: &str = "HAPROXYSM_CONFIG_FILE";

/// Default seconds between polls (the original's).
pub const DEFAULT_INTERVAL: f64 = 10.0;
/// Longest default request timeout; the default is also capped at the poll interval.
pub const DEFAULT_TIMEOUT: f64 = 10.0;
/// Bounds of `update-interval`, in seconds: more often than 10 times a second only loads
/// HAProxy, and a poll less than daily is no monitor (and far-off durations overflow timers).
pub const INTERVAL_RANGE: (f64, f64) = (0.1, 86_400.0);
/// Default of `max-rows`: rows read per stats page (a 2,000-server HAProxy has about 2,100).
pub const DEFAULT_MAX_ROWS: u64 = 10_000;
/// Largest `max-rows`.
pub const MAX_ROWS_LIMIT: u64 = 1_000_000;
/// Bounds of every `timeout`, in seconds.
pub const TIMEOUT_RANGE: (f64, f64) = (0.01, 3_600.0);

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub logging: Logging,
    /// The backends as written; [`Config::validate`] types them by their `type` into
    /// [`Config::backends`] (each type's keys are its module's, under `crate::sink`).
    #[serde(rename = "backends")]
    pub raw_backends: BTreeMap<String, AnyValue>,
    pub servers: BTreeMap<String, Server>,
    /// The typed backends (filled by [`Config::validate`]).
    #[serde(skip)]
    pub backends: BTreeMap<String, Backend>,
}

/// The monitor's own log (not a sink).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`.
    #[serde(default = "default_level")]
    pub level: String,
    /// Also append the log to this file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Log to the console (stderr).
    #[serde(default = "yes")]
    pub console: bool,
}

impl Default for Logging {
    fn default() -> Logging {
        Logging {
            level: default_level(),
            file: None,
            console: true,
        }
    }
}

fn default_level() -> String {
    "INFO".into()
}

fn yes() -> bool {
    true
}

/// One HAProxy instance to poll.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The `;csv` stats URL (`http(s)://`), or `unix:///path/to/admin.sock` for the runtime API.
    pub endpoint: String,
    /// Seconds between polls.
    #[serde(
        default = "default_interval",
        rename = "update-interval",
        deserialize_with = "seconds"
    )]
    pub update_interval: f64,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// Ids of the backends (sinks) this server's samples go to.
    pub backends: Vec<String>,
    /// Seconds a fetch may take (default: the interval, at most 10).
    #[serde(default, deserialize_with = "opt_seconds")]
    pub timeout: Option<f64>,
    /// PEM file of CAs to trust for an https endpoint (instead of the system's).
    #[serde(default, rename = "ca-file")]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate of an https endpoint.
    #[serde(default)]
    pub insecure: bool,
    /// Which row types to forward (default: backends only, as the original).
    #[serde(default = "default_rows")]
    pub rows: Vec<String>,
    /// Forward only proxies whose name matches this regex.
    #[serde(default)]
    pub include: Option<String>,
    /// Do not forward proxies whose name matches this regex.
    #[serde(default)]
    pub exclude: Option<String>,
    /// Rows read per page; the rest are counted and skipped, so memory follows this bound
    /// rather than whatever the page holds.
    #[serde(default = "default_max_rows", rename = "max-rows")]
    pub max_rows: u64,
}

fn default_max_rows() -> u64 {
    DEFAULT_MAX_ROWS
}

fn default_interval() -> f64 {
    DEFAULT_INTERVAL
}

fn default_rows() -> Vec<String> {
    vec!["backend".into()]
}

impl Server {
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.update_interval)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(
            self.timeout
                .unwrap_or(self.update_interval.min(DEFAULT_TIMEOUT)),
        )
    }

    /// Rows read per page (valid after `validate()`).
    pub fn max_rows(&self) -> usize {
        usize::try_from(self.max_rows.min(MAX_ROWS_LIMIT)).unwrap_or(usize::MAX)
    }

    /// The row types to forward (valid after `validate()`).
    pub fn row_types(&self) -> Vec<RowType> {
        self.rows.iter().filter_map(|r| RowType::parse(r)).collect()
    }

    /// The endpoint with any `user:password@` removed, for logs and sinks.
    pub fn endpoint_display(&self) -> String {
        redact_userinfo(&self.endpoint)
    }
}

/// The kit's one URL redactor, named here for this crate's callers.
pub use custos_kit::http_client::redact_userinfo;

const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

impl Config {
    /// Reads, parses and validates `path`. Keys nothing reads are returned, for the caller to
    /// report with [`custos_kit::config::check_unknown`] once logging is set up (the file says
    /// how to log); with `strict` the first one is an error here, after validation (so that a
    /// misspelt required key is reported as the typo of that key).
    pub fn load(path: &Path, strict: bool) -> Result<(Config, Vec<UnknownKey>), ConfigError> {
        let text = custos_kit::config::read(path)?;
        Config::parse(path, &text, strict)
    }

    /// [`Config::load`] of text already read from `file` (also what the `haproxy_config` fuzz
    /// target feeds).
    pub fn parse(
        file: &Path,
        text: &str,
        strict: bool,
    ) -> Result<(Config, Vec<UnknownKey>), ConfigError> {
        let (mut cfg, mut unknown) = custos_kit::config::parse_yaml_lenient::<Config>(file, text)?;
        let unused = cfg.check(file, Some(text))?;
        unknown.extend(unused);
        if strict {
            custos_kit::config::check_unknown(file, &unknown, Strictness::Strict)?;
        }
        Ok((cfg, unknown))
    }

    /// Semantic checks (the first problem found, naming its key path); fills
    /// [`Config::backends`] and returns the backend keys their type does not read.
    pub fn validate(&mut self, file: &Path) -> Result<Vec<UnknownKey>, ConfigError> {
        self.check(file, None)
    }

    /// [`Config::validate`], with the file's `text` when known for the lines of errors in the
    /// backends (typed only here, once their `type` is known).
    fn check(&mut self, file: &Path, text: Option<&str>) -> Result<Vec<UnknownKey>, ConfigError> {
        let mut unused = Vec::new();
        self.backends.clear();
        for (id, AnyValue(keys)) in &self.raw_backends {
            let b = Backend::parse(file, id, keys.clone(), text, &mut unused)?;
            self.backends.insert(id.clone(), b);
        }
        let bad = |key: String, value: &dyn std::fmt::Display, reason: &str| {
            Err(ConfigError::invalid(file, key, value, reason))
        };
        if !LEVELS.contains(&self.logging.level.to_ascii_uppercase().as_str()) {
            return bad(
                "logging.level".into(),
                &self.logging.level,
                "must be DEBUG, INFO, WARNING, ERROR or CRITICAL",
            );
        }
        if self.backends.is_empty() {
            return bad("backends".into(), &"{}", "at least one backend is needed");
        }
        if self.servers.is_empty() {
            return bad("servers".into(), &"{}", "at least one server is needed");
        }
        let mut listens: BTreeMap<SocketAddr, &str> = BTreeMap::new();
        for (id, b) in &self.backends {
            b.validate(file, id)?;
            if let Some((a, written)) = b.config().listens() {
                if let Some(other) = listens.insert(a, id) {
                    return bad(
                        format!("backends.{id}.listen"),
                        &written,
                        &format!("backend {other} listens there already"),
                    );
                }
            }
        }
        for (id, s) in &self.servers {
            let key = |k: &str| format!("servers.{id}.{k}");
            if let Err(reason) = check_endpoint(&s.endpoint) {
                return bad(key("endpoint"), &s.endpoint_display(), &reason);
            }
            if let Err(reason) = check_seconds(s.update_interval, INTERVAL_RANGE) {
                return bad(key("update-interval"), &s.update_interval, &reason);
            }
            if let Some(t) = s.timeout {
                if let Err(reason) = check_seconds(t, TIMEOUT_RANGE) {
                    return bad(key("timeout"), &t, &reason);
                }
            }
            if !(1..=MAX_ROWS_LIMIT).contains(&s.max_rows) {
                return bad(
                    key("max-rows"),
                    &s.max_rows,
                    &format!("must be 1-{MAX_ROWS_LIMIT}"),
                );
            }
            if s.username.is_some() && s.password.is_none() {
                return bad(
                    key("password"),
                    &"",
                    "`username` is set but `password` is not",
                );
            }
            if s.backends.is_empty() {
                return bad(key("backends"), &"[]", "at least one backend is needed");
            }
            for (i, b) in s.backends.iter().enumerate() {
                if !self.backends.contains_key(b) {
                    let known: Vec<&str> = self.backends.keys().map(String::as_str).collect();
                    return bad(
                        format!("servers.{id}.backends[{i}]"),
                        b,
                        &format!("no such backend (defined: {})", known.join(", ")),
                    );
                }
            }
            for (i, r) in s.rows.iter().enumerate() {
                if RowType::parse(r).is_none() {
                    return bad(
                        format!("servers.{id}.rows[{i}]"),
                        r,
                        "must be frontend, backend, server or listener",
                    );
                }
            }
            for (k, re) in [("include", &s.include), ("exclude", &s.exclude)] {
                if let Some(re) = re {
                    if let Err(e) = regex_lite::Regex::new(re) {
                        return bad(key(k), re, &format!("not a valid regex: {e}"));
                    }
                }
            }
            if let Some(ca) = &s.ca_file {
                if !ca.is_file() {
                    return bad(key("ca-file"), &ca.display(), "no such file");
                }
            }
        }
        Ok(unused)
    }
}

/// A number of seconds within `(min, max)`, so that every duration built from it later exists
/// (`Duration::from_secs_f64` aborts on 1e20) and no timer is zero.
pub(crate) fn check_seconds(v: f64, (min, max): (f64, f64)) -> Result<(), String> {
    if v.is_finite() && (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(format!("must be a number of seconds from {min} to {max}"))
    }
}

/// An `http(s)://host...` URL.
pub(crate) fn check_http_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// A stats URL or `unix:///absolute/path`.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if let Some(path) = endpoint.strip_prefix("unix://") {
        if path.starts_with('/') && path.len() > 1 {
            return Ok(());
        }
        return Err("a runtime socket endpoint is unix:///absolute/path".into());
    }
    check_http_url(endpoint)
}

#[cfg(test)]
mod tests;
