//! The original haproxysessionmon's YAML config, and the keys custos adds.
//!
//! The original's README example loads unchanged: `logging`, `backends` (sinks by id, with a
//! `type`) and `servers` (HAProxy instances by id, naming their backends). Durations are seconds
//! (numbers or numeric strings, as the original's `float()` accepted). `validate()` reports
//! every semantic error with the key path and the value (never a password).

use crate::sample::RowType;
use custos_kit::config::{ConfigError, Secret, Strictness, UnknownKey};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable the original reads the config path from.
pub const ENV_CONFIG: &str = "HAPROXYSM_CONFIG_FILE";

/// Default seconds between polls (the original's).
pub const DEFAULT_INTERVAL: f64 = 10.0;
/// Longest default request timeout; the default is also capped at the poll interval.
pub const DEFAULT_TIMEOUT: f64 = 10.0;
/// Default GELF facility (the original's default for its Graylog backend).
pub const DEFAULT_FACILITY: &str = "haproxy-session-mon";
/// Default GELF UDP chunk size: fits an Ethernet MTU after IP and UDP headers.
pub const DEFAULT_CHUNK_SIZE: usize = 1420;
/// Default listen address of a `prometheus` backend (that of HAProxy's Go exporter).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9101";
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
    /// The backends as written; [`Config::validate`] turns them into [`Config::backends`].
    #[serde(rename = "backends")]
    pub raw_backends: BTreeMap<String, RawBackend>,
    pub servers: BTreeMap<String, Server>,
    /// The typed backends (filled by [`Config::validate`]).
    #[serde(skip)]
    pub backends: BTreeMap<String, Backend>,
}

/// A backend as written: every key of every type, so that a key no type knows is reported
/// with the nearest known one; [`RawBackend::typed`] checks them against the `type`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    #[serde(rename = "type")]
    pub kind: String,
    // logfile
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub filename: Option<PathBuf>,
    // gelf
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default, deserialize_with = "opt_port")]
    pub port: Option<u16>,
    #[serde(default)]
    pub facility: Option<String>,
    #[serde(default)]
    pub protocol: Option<GelfProtocol>,
    #[serde(default)]
    pub compress: Option<bool>,
    #[serde(default, rename = "chunk-size")]
    pub chunk_size: Option<usize>,
    // prtg
    #[serde(default, rename = "base-url")]
    pub base_url: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub gid: Option<yaml_value::Value>,
    #[serde(default)]
    pub method: Option<PrtgMethod>,
    #[serde(default, deserialize_with = "opt_seconds")]
    pub timeout: Option<f64>,
    // prometheus
    #[serde(default)]
    pub listen: Option<String>,
}

impl RawBackend {
    /// The keys set in this backend, by config name.
    fn keys_set(&self) -> Vec<&'static str> {
        [
            ("path", self.path.is_some()),
            ("filename", self.filename.is_some()),
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("facility", self.facility.is_some()),
            ("protocol", self.protocol.is_some()),
            ("compress", self.compress.is_some()),
            ("chunk-size", self.chunk_size.is_some()),
            ("base-url", self.base_url.is_some()),
            ("token", self.token.is_some()),
            ("key", self.key.is_some()),
            ("gid", self.gid.is_some()),
            ("method", self.method.is_some()),
            ("timeout", self.timeout.is_some()),
            ("listen", self.listen.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }

    /// The typed backend for `type`, and the keys set that this type does not read. A missing
    /// required key is an error naming `backends.<id>.<key>`, or the key of `unknown` (the
    /// keys nothing read) that looks like its typo.
    pub fn typed(
        &self,
        id: &str,
        file: &Path,
        unknown: &[UnknownKey],
    ) -> Result<(Backend, Vec<UnknownKey>), ConfigError> {
        let prefix = format!("backends.{id}.");
        let missing = |k: &str| {
            let typo = unknown
                .iter()
                .filter_map(|u| u.key.strip_prefix(&prefix))
                .find(|name| custos_kit::config::nearest_known(name, [k]).is_some());
            match typo {
                Some(typo) => ConfigError::misspelt(file, format!("{prefix}{typo}"), typo, k, None),
                None => ConfigError::invalid(
                    file,
                    format!("{prefix}{k}"),
                    "",
                    format!("a {} backend needs `{k}`", self.kind),
                ),
            }
        };
        let (backend, reads): (Backend, &[&str]) = match self.kind.as_str() {
            "logfile" => (
                Backend::Logfile(LogfileBackend {
                    path: self.path.clone(),
                    filename: self.filename.clone(),
                }),
                &["path", "filename"],
            ),
            "gelf" => (
                Backend::Gelf(GelfBackend {
                    host: self.host.clone().ok_or_else(|| missing("host"))?,
                    port: self.port.ok_or_else(|| missing("port"))?,
                    facility: self.facility.clone().unwrap_or_else(default_facility),
                    protocol: self.protocol.unwrap_or(GelfProtocol::Udp),
                    compress: self.compress.unwrap_or(false),
                    chunk_size: self.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE),
                }),
                &[
                    "host",
                    "port",
                    "facility",
                    "protocol",
                    "compress",
                    "chunk-size",
                ],
            ),
            "prtg" => (
                Backend::Prtg(PrtgBackend {
                    base_url: self.base_url.clone().ok_or_else(|| missing("base-url"))?,
                    token: self.token.clone(),
                    key: self.key.clone(),
                    method: self.method.unwrap_or(PrtgMethod::Post),
                    timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
                }),
                &["base-url", "token", "key", "gid", "method", "timeout"],
            ),
            "prometheus" => (
                Backend::Prometheus(PrometheusBackend {
                    listen: self.listen.clone().unwrap_or_else(default_listen),
                }),
                &["listen"],
            ),
            other => {
                return Err(ConfigError::invalid(
                    file,
                    format!("backends.{id}.type"),
                    other,
                    "must be logfile, gelf, prtg or prometheus",
                ))
            }
        };
        let unused = self
            .keys_set()
            .into_iter()
            .filter(|k| !reads.contains(k))
            .map(|k| UnknownKey {
                key: format!("{prefix}{k}"),
                nearest: custos_kit::config::nearest_known(k, reads.iter().copied())
                    .map(str::to_owned),
            })
            .collect();
        Ok((backend, unused))
    }
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

/// A sink, by its `type`.
#[derive(Debug, Clone)]
pub enum Backend {
    Logfile(LogfileBackend),
    Gelf(GelfBackend),
    Prtg(PrtgBackend),
    Prometheus(PrometheusBackend),
}

impl Backend {
    /// The `type` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Logfile(_) => "logfile",
            Backend::Gelf(_) => "gelf",
            Backend::Prtg(_) => "prtg",
            Backend::Prometheus(_) => "prometheus",
        }
    }
}

/// `type: logfile`. The original documented `path` but read `filename`; both are accepted.
#[derive(Debug, Clone)]
pub struct LogfileBackend {
    pub path: Option<PathBuf>,
    pub filename: Option<PathBuf>,
}

impl LogfileBackend {
    /// The file to write (valid after `validate()`).
    pub fn file(&self) -> &Path {
        self.path
            .as_deref()
            .or(self.filename.as_deref())
            .unwrap_or(Path::new(""))
    }
}

/// GELF transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GelfProtocol {
    Udp,
    Tcp,
}

/// `type: gelf`.
#[derive(Debug, Clone)]
pub struct GelfBackend {
    pub host: String,
    pub port: u16,
    pub facility: String,
    /// `udp` (the original's, default) or `tcp` (`\0`-delimited, never compressed).
    pub protocol: GelfProtocol,
    /// gzip each UDP message.
    pub compress: bool,
    /// Largest UDP datagram; longer messages are chunked.
    pub chunk_size: usize,
}

fn default_facility() -> String {
    DEFAULT_FACILITY.into()
}

/// PRTG push method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PrtgMethod {
    Get,
    Post,
}

/// `type: prtg`: an HTTP Push Data Advanced sensor per HAProxy server.
#[derive(Debug, Clone)]
pub struct PrtgBackend {
    /// The probe's push URL up to the token, e.g. `https://prtg.local:5051/`.
    pub base_url: String,
    /// The sensor's identification token; `{server}` is replaced by the server id (default:
    /// the server id alone, so each HAProxy feeds its own sensor).
    pub token: Option<String>,
    /// The original's name for the token (it never used it); used when `token` is absent.
    pub key: Option<String>,
    pub method: PrtgMethod,
    /// Seconds a push may take.
    pub timeout: f64,
}

/// A YAML value of any shape, for keys accepted only for compatibility.
pub mod yaml_value {
    /// Any value; its content is ignored.
    #[derive(Debug, Clone, Default)]
    pub struct Value;

    impl<'de> serde::Deserialize<'de> for Value {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
            serde::de::IgnoredAny::deserialize(d).map(|_| Value)
        }
    }
}

impl PrtgBackend {
    /// The push URL for `server`.
    pub fn url_for(&self, server: &str) -> String {
        let token = self
            .token
            .as_deref()
            .or(self.key.as_deref())
            .unwrap_or("{server}")
            .replace("{server}", server);
        format!("{}/{}", self.base_url.trim_end_matches('/'), token)
    }
}

/// `type: prometheus`: serves `/metrics` for the servers that name it.
#[derive(Debug, Clone)]
pub struct PrometheusBackend {
    /// `host:port` to listen on (`:port` for all interfaces).
    pub listen: String,
}

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}

impl PrometheusBackend {
    /// The socket address (valid after `validate()`).
    pub fn addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        let s = self.listen.trim();
        match s.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}").parse(),
            None => s.parse(),
        }
    }
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

/// A number, or text that reads as one (the original's `float()`); absent or null is `None`.
/// The visitor says what its field holds (`a port 1-65535`, `a number of seconds`) in every
/// error, and errors point at the value, not at the enclosing mapping.
struct LenientNumber(&'static str);

impl<'de> serde::de::Visitor<'de> for LenientNumber {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Option<f64>, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<f64>, E> {
        v.trim()
            .parse()
            .map(Some)
            .map_err(|_| E::custom(format!("expected {}, got {v:?}", self.0)))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<f64>, E> {
        Ok(None)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Option<f64>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_any(self)
    }
}

const SECONDS: &str = "a number of seconds";
const PORT: &str = "a port 1-65535";

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(LenientNumber(SECONDS))?
        .ok_or_else(|| serde::de::Error::custom(format!("expected {SECONDS}, got nothing")))
}

fn opt_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(LenientNumber(SECONDS))
}

fn opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let Some(n) = d.deserialize_any(LenientNumber(PORT))? else {
        return Ok(None);
    };
    if n.fract() == 0.0 && (1.0..=65535.0).contains(&n) {
        Ok(Some(n as u16))
    } else {
        Err(serde::de::Error::custom(format!(
            "expected {PORT}, got {n}"
        )))
    }
}

const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

impl Config {
    /// Reads, parses and validates `path`. Keys nothing reads are returned, for the caller to
    /// report with [`custos_kit::config::check_unknown`] once logging is set up (the file says
    /// how to log); with `strict` the first one is an error here.
    pub fn load(path: &Path, strict: bool) -> Result<(Config, Vec<UnknownKey>), ConfigError> {
        let text = custos_kit::config::read(path)?;
        let (mut cfg, mut unknown): (Config, _) =
            custos_kit::config::parse_yaml_lenient(path, &text)?;
        let unused = cfg.validate_with(path, &unknown)?;
        unknown.extend(unused);
        if strict {
            custos_kit::config::check_unknown(path, &unknown, Strictness::Strict)?;
        }
        Ok((cfg, unknown))
    }

    /// Semantic checks (the first problem found, naming its key path); fills
    /// [`Config::backends`] and returns the backend keys their type does not read.
    pub fn validate(&mut self, file: &Path) -> Result<Vec<UnknownKey>, ConfigError> {
        self.validate_with(file, &[])
    }

    /// [`Config::validate`] knowing the keys the parser found nothing to read into
    /// (`unknown`): a required backend key that is missing is reported as its typo there.
    pub fn validate_with(
        &mut self,
        file: &Path,
        unknown: &[UnknownKey],
    ) -> Result<Vec<UnknownKey>, ConfigError> {
        let mut unused = Vec::new();
        self.backends.clear();
        for (id, raw) in &self.raw_backends {
            let (b, u) = raw.typed(id, file, unknown)?;
            self.backends.insert(id.clone(), b);
            unused.extend(u);
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
            let key = |k: &str| format!("backends.{id}.{k}");
            match b {
                Backend::Logfile(l) => match (&l.path, &l.filename) {
                    (None, None) => return bad(key("path"), &"", "a logfile backend needs `path`"),
                    (Some(p), Some(f)) if p != f => {
                        return bad(
                            key("filename"),
                            &f.display(),
                            &format!("differs from `path` ({})", p.display()),
                        )
                    }
                    _ => {}
                },
                Backend::Gelf(g) => {
                    if g.host.trim().is_empty() {
                        return bad(key("host"), &g.host, "must not be empty");
                    }
                    if !(64..=65_000).contains(&g.chunk_size) {
                        return bad(key("chunk-size"), &g.chunk_size, "must be 64-65000");
                    }
                }
                Backend::Prtg(p) => {
                    if let Err(reason) = check_http_url(&p.base_url) {
                        return bad(key("base-url"), &redact_userinfo(&p.base_url), &reason);
                    }
                    if let Err(reason) = check_seconds(p.timeout, TIMEOUT_RANGE) {
                        return bad(key("timeout"), &p.timeout, &reason);
                    }
                }
                Backend::Prometheus(p) => match p.addr() {
                    Err(e) => return bad(key("listen"), &p.listen, &e.to_string()),
                    Ok(a) => {
                        if let Some(other) = listens.insert(a, id) {
                            return bad(
                                key("listen"),
                                &p.listen,
                                &format!("backend {other} listens there already"),
                            );
                        }
                    }
                },
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
fn check_seconds(v: f64, (min, max): (f64, f64)) -> Result<(), String> {
    if v.is_finite() && (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(format!("must be a number of seconds from {min} to {max}"))
    }
}

/// An `http(s)://host...` URL.
fn check_http_url(url: &str) -> Result<(), String> {
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
