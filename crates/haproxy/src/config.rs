//! The original haproxysessionmon's YAML config, and the keys custos adds.
//!
//! The original's README example loads unchanged: `logging`, `backends` (sinks by id, with a
//! `type`) and `servers` (HAProxy instances by id, naming their backends). Durations are seconds
//! (numbers or numeric strings, as the original's `float()` accepted). `validate()` reports
//! every semantic error with the key path and the value (never a password).

use crate::sample::RowType;
use custos_kit::config::ConfigError;
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

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub logging: Logging,
    pub backends: BTreeMap<String, Backend>,
    pub servers: BTreeMap<String, Server>,
}

/// The monitor's own log (not a sink).
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
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
#[derive(Debug, Clone, Deserialize)]
pub struct LogfileBackend {
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
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
#[derive(Debug, Clone, Deserialize)]
pub struct GelfBackend {
    pub host: String,
    #[serde(deserialize_with = "port")]
    pub port: u16,
    #[serde(default = "default_facility")]
    pub facility: String,
    /// `udp` (the original's, default) or `tcp` (`\0`-delimited, never compressed).
    #[serde(default = "udp")]
    pub protocol: GelfProtocol,
    /// gzip each UDP message.
    #[serde(default)]
    pub compress: bool,
    /// Largest UDP datagram; longer messages are chunked.
    #[serde(default = "default_chunk_size", rename = "chunk-size")]
    pub chunk_size: usize,
}

fn default_facility() -> String {
    DEFAULT_FACILITY.into()
}

fn udp() -> GelfProtocol {
    GelfProtocol::Udp
}

fn default_chunk_size() -> usize {
    DEFAULT_CHUNK_SIZE
}

/// PRTG push method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PrtgMethod {
    Get,
    Post,
}

/// `type: prtg`: an HTTP Push Data Advanced sensor per HAProxy server.
#[derive(Debug, Clone, Deserialize)]
pub struct PrtgBackend {
    /// The probe's push URL up to the token, e.g. `https://prtg.local:5051/`.
    #[serde(rename = "base-url")]
    pub base_url: String,
    /// The sensor's identification token; `{server}` is replaced by the server id (default:
    /// the server id alone, so each HAProxy feeds its own sensor).
    #[serde(default)]
    pub token: Option<String>,
    /// The original's name for the token (it never used it); used when `token` is absent.
    #[serde(default)]
    pub key: Option<String>,
    /// Required by the original's validator, never used by it; accepted and ignored.
    #[serde(default)]
    pub gid: Option<yaml_value::Value>,
    #[serde(default = "post")]
    pub method: PrtgMethod,
    /// Seconds a push may take.
    #[serde(default = "default_timeout", deserialize_with = "seconds")]
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

fn post() -> PrtgMethod {
    PrtgMethod::Post
}

fn default_timeout() -> f64 {
    DEFAULT_TIMEOUT
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
#[derive(Debug, Clone, Deserialize)]
pub struct PrometheusBackend {
    /// `host:port` to listen on (`:port` for all interfaces).
    #[serde(default = "default_listen")]
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
    pub password: Option<String>,
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

    /// The row types to forward (valid after `validate()`).
    pub fn row_types(&self) -> Vec<RowType> {
        self.rows.iter().filter_map(|r| RowType::parse(r)).collect()
    }

    /// The endpoint with any `user:password@` removed, for logs and sinks.
    pub fn endpoint_display(&self) -> String {
        redact_userinfo(&self.endpoint)
    }
}

/// `scheme://user:pass@host/...` without `user:pass@`.
pub fn redact_userinfo(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let auth_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            return format!("{scheme}://{}", &rest[at + 1..]);
        }
    }
    url.to_string()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(f64),
    Text(String),
}

fn to_f64<E: serde::de::Error>(v: NumberOrText) -> Result<f64, E> {
    match v {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| E::custom(format!("expected a number of seconds, got {s:?}"))),
    }
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    to_f64(NumberOrText::deserialize(d)?)
}

fn opt_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<NumberOrText>::deserialize(d)?
        .map(to_f64)
        .transpose()
}

fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let n = to_f64::<D::Error>(NumberOrText::deserialize(d)?)?;
    if n.fract() == 0.0 && (1.0..=65535.0).contains(&n) {
        Ok(n as u16)
    } else {
        Err(serde::de::Error::custom(format!(
            "expected a port 1-65535, got {n}"
        )))
    }
}

const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = custos_kit::config::read(path)?;
        let cfg: Config = custos_kit::config::parse_yaml(path, &text)?;
        cfg.validate(path)?;
        if cfg.servers.values().any(|s| s.password.is_some()) {
            custos_kit::config::warn_if_readable_by_others(path);
        }
        Ok(cfg)
    }

    /// Semantic checks; the first problem found, naming its key path.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
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
                    if !(p.timeout > 0.0 && p.timeout.is_finite()) {
                        return bad(key("timeout"), &p.timeout, "must be a positive number");
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
            if !(s.update_interval > 0.0 && s.update_interval.is_finite()) {
                return bad(
                    key("update-interval"),
                    &s.update_interval,
                    "must be a positive number of seconds",
                );
            }
            if let Some(t) = s.timeout {
                if !(t > 0.0 && t.is_finite()) {
                    return bad(key("timeout"), &t, "must be a positive number of seconds");
                }
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
        Ok(())
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
mod tests {
    use super::*;

    /// The example of the original's README, unchanged.
    pub const ORIGINAL_EXAMPLE: &str = include_str!("../tests/data/original-readme-example.yml");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = custos_kit::config::parse_yaml(Path::new("c.yml"), text)?;
        cfg.validate(Path::new("c.yml"))?;
        Ok(cfg)
    }

    #[test]
    fn original_readme_example_loads() {
        let c = parse(ORIGINAL_EXAMPLE).unwrap();
        assert_eq!(c.logging.level, "DEBUG");
        assert_eq!(c.servers.len(), 2);
        let p = &c.servers["lb-primary"];
        assert_eq!(p.interval(), Duration::from_secs(10));
        assert_eq!(p.timeout(), Duration::from_secs(10));
        assert_eq!(p.backends, ["graylog1", "prtg1"]);
        assert_eq!(p.row_types(), [RowType::Backend]);
        let s = &c.servers["lb-secondary"];
        assert_eq!(s.interval(), Duration::from_secs(60));
        assert!(s.username.is_none());
        match &c.backends["logfile1"] {
            Backend::Logfile(l) => assert_eq!(l.file(), Path::new("/var/log/session-count.log")),
            b => panic!("{b:?}"),
        }
        match &c.backends["graylog2"] {
            Backend::Gelf(g) => {
                assert_eq!((g.host.as_str(), g.port), ("logbroker2.local", 12201));
                assert_eq!(g.facility, "haproxysm-secondary");
                assert_eq!(g.protocol, GelfProtocol::Udp);
            }
            b => panic!("{b:?}"),
        }
        match &c.backends["prtg1"] {
            Backend::Prtg(p) => {
                assert_eq!(
                    p.url_for("lb-primary"),
                    "https://prtg.local/probe/lb-primary"
                );
                assert_eq!(p.method, PrtgMethod::Post);
            }
            b => panic!("{b:?}"),
        }
    }

    const MINIMAL: &str = "backends:\n  f:\n    type: logfile\n    filename: /tmp/x.log\n\
                           servers:\n  a:\n    endpoint: http://127.0.0.1:1/s;csv\n    backends: [f]\n";

    #[test]
    fn logfile_filename_and_defaults() {
        let c = parse(MINIMAL).unwrap();
        let s = &c.servers["a"];
        assert_eq!(s.interval(), Duration::from_secs(10));
        assert!(c.logging.console);
        match &c.backends["f"] {
            Backend::Logfile(l) => assert_eq!(l.file(), Path::new("/tmp/x.log")),
            b => panic!("{b:?}"),
        }
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_key_and_value() {
        let e = err(&MINIMAL.replace("backends: [f]", "backends: [f, nope]"));
        assert!(
            e.contains("servers.a.backends[1]") && e.contains("\"nope\"") && e.contains("f"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("http://127.0.0.1:1/s;csv", "htp:/x"));
        assert!(
            e.contains("servers.a.endpoint") && e.contains("htp:/x"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("http://127.0.0.1:1/s;csv", "http://u:topsecret@:1/s;csv"));
        assert!(!e.contains("topsecret"), "{e}");
        let e = err(&MINIMAL.replace(
            "    backends: [f]",
            "    backends: [f]\n    update-interval: x",
        ));
        assert!(e.contains("servers.a.update-interval"), "{e}");
        let e = err(&MINIMAL.replace("    backends: [f]", "    backends: [f]\n    username: u"));
        assert!(e.contains("servers.a.password"), "{e}");
        let e = err(&MINIMAL.replace("    backends: [f]", "    backends: [f]\n    include: \"(\""));
        assert!(e.contains("servers.a.include"), "{e}");
        let e = err(&MINIMAL.replace("    backends: [f]", "    backends: [f]\n    rows: [pool]"));
        assert!(e.contains("servers.a.rows[0]") && e.contains("pool"), "{e}");
        let e = err(&MINIMAL.replace("    filename: /tmp/x.log\n", ""));
        assert!(e.contains("backends.f.path"), "{e}");
        let e = err(&MINIMAL.replace("type: logfile", "type: kafka"));
        assert!(e.contains("backends") && e.contains("kafka"), "{e}");
    }

    #[test]
    fn numbers_as_strings_and_new_keys() {
        let c = parse(
            "backends:\n  g:\n    type: gelf\n    host: h\n    port: \"12201\"\n    protocol: tcp\n\
             \x20 p:\n    type: prometheus\n    listen: \":9999\"\n\
             \x20 r:\n    type: prtg\n    base-url: http://probe:5050\n    token: \"tok-{server}\"\n    method: GET\n    gid: 7\n    key: k\n\
             servers:\n  a:\n    endpoint: unix:///run/haproxy/admin.sock\n    update-interval: \"2.5\"\n    timeout: 1\n\
             \x20   rows: [frontend, backend, server]\n    exclude: \"^stats$\"\n    backends: [g, p, r]\n",
        )
        .unwrap();
        let s = &c.servers["a"];
        assert_eq!(s.interval(), Duration::from_millis(2500));
        assert_eq!(s.timeout(), Duration::from_secs(1));
        assert_eq!(s.row_types().len(), 3);
        match &c.backends["g"] {
            Backend::Gelf(g) => assert_eq!((g.port, g.protocol), (12201, GelfProtocol::Tcp)),
            b => panic!("{b:?}"),
        }
        match &c.backends["p"] {
            Backend::Prometheus(p) => assert_eq!(p.addr().unwrap().port(), 9999),
            b => panic!("{b:?}"),
        }
        match &c.backends["r"] {
            Backend::Prtg(p) => {
                assert_eq!(p.url_for("a"), "http://probe:5050/tok-a");
                assert_eq!(p.method, PrtgMethod::Get);
            }
            b => panic!("{b:?}"),
        }
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_userinfo("http://admin:pw@lb:8080/haproxy?stats;csv"),
            "http://lb:8080/haproxy?stats;csv"
        );
        assert_eq!(redact_userinfo("http://lb/a@b"), "http://lb/a@b");
    }
}
