//! The exporter's YAML config: the original burp_exporter's keys, plus a few limits it lacked.
//!
//! Every config of the original loads unchanged (its per-server `refresh_interval_seconds` and
//! `version` keys included). Relative certificate paths are resolved against the directory of
//! the config file, so a unit started from `/` finds what the user tested in the config's folder.

use crate::session::Target;
use crate::tls::{self, TlsError};
pub use custos_kit::config::Secret;
use custos_kit::config::{self as kit, ConfigError};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the config lives unless `-c` says otherwise (as the original).
pub const DEFAULT_PATH: &str = "/etc/burp_exporter/burp_exporter.yaml";

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// IP address the HTTP endpoint listens on.
    #[serde(default = "default_bind_address")]
    pub bind_address: String,
    #[serde(default = "default_bind_port")]
    pub bind_port: u16,
    /// Seconds between polls of each server (a server entry may override it).
    #[serde(default = "default_refresh")]
    pub refresh_interval_seconds: u64,
    /// Seconds to wait for TCP connect + TLS + login, and for each whole reply.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Largest reply document accepted, in bytes (a 2,000-client `c:` is about 140 kB).
    /// Larger replies fail the poll instead of growing memory without bound.
    #[serde(default = "default_max_document")]
    pub max_document_bytes: usize,
    /// The burp servers to poll. (The original calls them clients: we are a client of each.)
    #[serde(default)]
    pub clients: Vec<ServerConfig>,
}

/// One burp server, and how we log in to its status port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Our name for this server: the `server` label and the `/probe?server[]=` key.
    pub name: String,
    pub burp_host: String,
    /// The server's `listen_status` port.
    #[serde(default = "default_burp_port")]
    pub burp_port: u16,
    /// CN of the server's certificate (burp's `ssl_peer_cn`).
    #[serde(default = "default_burp_cname")]
    pub burp_cname: String,
    /// Our client name on the server (CN of our certificate, a file in its clientconfdir).
    pub cname: String,
    pub password: Secret,
    pub tls_ca_cert: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Overrides the top-level interval for this server (the original kept it here).
    #[serde(default)]
    pub refresh_interval_seconds: Option<u64>,
    /// Accepted for compatibility and ignored: the original claimed to be this burp version;
    /// custos announces its own protocol version.
    #[serde(default)]
    pub version: Option<String>,
}

fn default_bind_address() -> String {
    "127.0.0.1".into()
}
fn default_bind_port() -> u16 {
    9645
}
fn default_refresh() -> u64 {
    60
}
fn default_request_timeout() -> u64 {
    30
}
fn default_max_document() -> usize {
    crate::frame::DEFAULT_MAX_DOCUMENT
}
fn default_burp_port() -> u16 {
    4972
}
fn default_burp_cname() -> String {
    "burpserver".into()
}

const MAX_INTERVAL: u64 = 7 * 86400;
const MIN_DOCUMENT: usize = 4096;

impl Config {
    /// Reads, parses and validates `path`; resolves certificate paths against its directory
    /// and checks that they can be read. Warns when the file (it holds passwords) is readable
    /// by others. A key nothing reads is a warning, or an error with `Strictness::Strict`.
    pub fn load(path: &Path, strictness: kit::Strictness) -> Result<Config, ConfigError> {
        let text = kit::read(path)?;
        let mut cfg = Config::parse(path, &text, strictness)?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.check_files(path)?;
        kit::warn_if_readable_by_others(path);
        for s in &cfg.clients {
            if s.version.is_some() {
                tracing::info!(
                    server = %s.name,
                    "config key `version` is ignored: custos announces its own version"
                );
            }
        }
        Ok(cfg)
    }

    /// Parses and validates config text read from `file`, without touching any other file
    /// (the certificates are [`Config::load`]'s part); also what the `burp_config` fuzz target
    /// feeds.
    pub fn parse(
        file: &Path,
        text: &str,
        strictness: kit::Strictness,
    ) -> Result<Config, ConfigError> {
        let (cfg, unknown) = kit::parse_yaml_lenient::<Config>(file, text)?;
        kit::check_unknown(file, &unknown, strictness)?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Semantic checks; errors name `file`, the key path and the value (never a password).
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, value: &dyn fmt::Display, why: &str| {
            Err(ConfigError::invalid(file, key, value, why))
        };
        if self.bind_address.parse::<IpAddr>().is_err() {
            return bad("bind_address", &self.bind_address, "not an IP address");
        }
        if self.bind_port == 0 {
            return bad("bind_port", &self.bind_port, "must be 1-65535");
        }
        check_interval(
            file,
            "refresh_interval_seconds",
            self.refresh_interval_seconds,
        )?;
        check_interval(
            file,
            "request_timeout_seconds",
            self.request_timeout_seconds,
        )?;
        if self.max_document_bytes < MIN_DOCUMENT {
            return bad(
                "max_document_bytes",
                &self.max_document_bytes,
                &format!("must be at least {MIN_DOCUMENT}"),
            );
        }
        if self.clients.is_empty() {
            return bad(
                "clients",
                &"[]",
                "no burp server configured; add at least one entry",
            );
        }
        let mut names = HashSet::new();
        for (i, s) in self.clients.iter().enumerate() {
            let key = |k: &str| format!("clients[{i}].{k}");
            if s.name.trim().is_empty() {
                return bad(&key("name"), &s.name, "must not be empty");
            }
            if !names.insert(s.name.as_str()) {
                return bad(
                    &key("name"),
                    &s.name,
                    "used by an earlier entry; names must be unique",
                );
            }
            if s.burp_host.trim().is_empty() {
                return bad(&key("burp_host"), &s.burp_host, "must not be empty");
            }
            if s.burp_port == 0 {
                return bad(&key("burp_port"), &s.burp_port, "must be 1-65535");
            }
            if s.burp_cname.trim().is_empty() {
                return bad(&key("burp_cname"), &s.burp_cname, "must not be empty");
            }
            if s.cname.trim().is_empty() || s.cname.contains(['\n', '\r', '\0']) {
                return bad(&key("cname"), &s.cname, "must be a non-empty single line");
            }
            if s.password.expose().contains(['\n', '\r', '\0']) {
                return bad(&key("password"), &"<secret>", "must be a single line");
            }
            for (k, p) in [
                ("tls_ca_cert", &s.tls_ca_cert),
                ("tls_cert", &s.tls_cert),
                ("tls_key", &s.tls_key),
            ] {
                if p.as_os_str().is_empty() {
                    return bad(&key(k), &p.display(), "must not be empty");
                }
            }
            if let Some(r) = s.refresh_interval_seconds {
                check_interval(file, &key("refresh_interval_seconds"), r)?;
            }
        }
        Ok(())
    }

    /// Makes relative certificate paths relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for s in &mut self.clients {
            for p in [&mut s.tls_ca_cert, &mut s.tls_cert, &mut s.tls_key] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
    }

    /// Checks that every certificate and key file can be read and used (PEM that rustls
    /// accepts, a key that fits its certificate), so a local file problem is a config error
    /// at start, not an unreachable server at each poll.
    pub fn check_files(&self, file: &Path) -> Result<(), ConfigError> {
        for (i, s) in self.clients.iter().enumerate() {
            tls::client_config(
                &s.tls_ca_cert,
                Some((&s.tls_cert, &s.tls_key)),
                &s.burp_cname,
            )
            .map_err(|e| tls_file_error(file, i, e))?;
        }
        Ok(())
    }

    /// The address the HTTP endpoint listens on (valid after [`Config::validate`]).
    pub fn listen_addr(&self) -> SocketAddr {
        let ip = self
            .bind_address
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        SocketAddr::new(ip, self.bind_port)
    }

    /// Poll interval of server `s`.
    pub fn refresh_interval(&self, s: &ServerConfig) -> Duration {
        Duration::from_secs(
            s.refresh_interval_seconds
                .unwrap_or(self.refresh_interval_seconds),
        )
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    /// Where and as whom the status-port client connects for server `s`.
    pub fn target(&self, s: &ServerConfig) -> Target {
        let mut t = Target::new(
            s.burp_host.clone(),
            s.burp_port,
            s.cname.clone(),
            s.password.expose().to_string(),
            s.burp_cname.clone(),
            s.tls_ca_cert.clone(),
        )
        .with_client_cert(s.tls_cert.clone(), s.tls_key.clone());
        t.timeout = self.request_timeout();
        t.max_document = self.max_document_bytes;
        t
    }
}

/// A TLS file of `clients[i]` that cannot be used, as the config error naming its key.
fn tls_file_error(file: &Path, i: usize, e: TlsError) -> ConfigError {
    match e {
        TlsError::Read { key, path, source } => ConfigError::invalid(
            file,
            format!("clients[{i}].{key}"),
            path.display(),
            format!("cannot read: {source}"),
        ),
        TlsError::Invalid { key, path, reason } => {
            ConfigError::invalid(file, format!("clients[{i}].{key}"), path.display(), reason)
        }
        TlsError::HalfClientAuth { given } => ConfigError::invalid(
            file,
            format!("clients[{i}].{given}"),
            given,
            "tls_cert and tls_key must be set together",
        ),
    }
}

fn check_interval(file: &Path, key: &str, v: u64) -> Result<(), ConfigError> {
    if v == 0 || v > MAX_INTERVAL {
        return Err(ConfigError::invalid(
            file,
            key,
            v,
            format!("must be 1-{MAX_INTERVAL} seconds"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the original's `config.example.yaml` (two servers, all keys it documents).
    const ORIGINAL_STYLE: &str = "\
---
bind_address: 127.0.0.1
bind_port: 9645
clients:
  - name: client1
    burp_host: 127.0.0.1
    burp_port: 4972
    burp_cname: burpserver
    cname: burp
    password: abcdefgh
    tls_ca_cert: client1_ca.pem
    tls_cert: client1.pem
    tls_key: client1.key
  - name: client2
    burp_host: 192.168.0.1
    burp_port: 4972
    burp_cname: backup
    cname: burp
    password: correcthorsebatterystaple
    tls_ca_cert: client2_ca.pem
    tls_cert: client2.pem
    tls_key: client2.key
    refresh_interval_seconds: 30
    version: 2.1.18
";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let f = Path::new("/etc/burp_exporter/burp_exporter.yaml");
        let c: Config = kit::parse_yaml(f, text)?;
        c.validate(f)?;
        Ok(c)
    }

    #[test]
    fn original_config_loads_with_defaults() {
        let c = parse(ORIGINAL_STYLE).unwrap();
        assert_eq!(c.listen_addr(), "127.0.0.1:9645".parse().unwrap());
        assert_eq!(c.refresh_interval_seconds, 60);
        assert_eq!(c.clients.len(), 2);
        assert_eq!(c.refresh_interval(&c.clients[0]), Duration::from_secs(60));
        assert_eq!(c.refresh_interval(&c.clients[1]), Duration::from_secs(30));
        assert_eq!(c.clients[1].burp_cname, "backup");
        assert_eq!(c.clients[1].password.expose(), "correcthorsebatterystaple");
        assert_eq!(c.request_timeout(), Duration::from_secs(30));
        assert!(c.max_document_bytes >= 1 << 20);
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(
            "clients:\n  - {name: a, burp_host: h, cname: m, password: p, tls_ca_cert: ca, tls_cert: c, tls_key: k}\n",
        )
        .unwrap();
        assert_eq!(c.bind_port, 9645);
        assert_eq!(c.bind_address, "127.0.0.1");
        assert_eq!(c.clients[0].burp_port, 4972);
        assert_eq!(c.clients[0].burp_cname, "burpserver");
    }

    #[test]
    fn example_config_in_repo_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/burp_exporter.yaml");
        let c: Config = kit::load(&path, kit::Format::Yaml, kit::Strictness::Strict)
            .unwrap()
            .value;
        c.validate(&path).unwrap();
        assert_eq!(c.clients[0].burp_port, 4972);
        assert_eq!(c.clients[0].cname, "monitor");
    }

    #[test]
    fn password_never_printed() {
        let c = parse(ORIGINAL_STYLE).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("abcdefgh"), "{dbg}");
        assert!(dbg.contains("<secret>"));
        let e = parse(&ORIGINAL_STYLE.replace("password: abcdefgh", "password: \"abc\\ndef\""))
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("clients[0].password"), "{msg}");
        assert!(!msg.contains("abc"), "{msg}");
    }

    #[test]
    fn errors_name_key_and_value() {
        let cases = [
            (
                "bind_port: 9645",
                "bind_port: 0",
                "bind_port: invalid value \"0\"",
            ),
            (
                "bind_address: 127.0.0.1",
                "bind_address: nowhere",
                "bind_address: invalid value \"nowhere\"",
            ),
            (
                "  - name: client2",
                "  - name: client1",
                "clients[1].name: invalid value \"client1\"",
            ),
            (
                "    burp_port: 4972\n    burp_cname: backup",
                "    burp_port: 0\n    burp_cname: backup",
                "clients[1].burp_port: invalid value \"0\"",
            ),
            (
                "bind_port: 9645",
                "bind_port: 9645\nrefresh_interval_seconds: 0",
                "refresh_interval_seconds: invalid value \"0\"",
            ),
            (
                "    refresh_interval_seconds: 30",
                "    refresh_interval_seconds: -1",
                "clients[1].refresh_interval_seconds",
            ),
            (
                "    refresh_interval_seconds: 30",
                "    refresh_interval_seconds: 0",
                "clients[1].refresh_interval_seconds: invalid value \"0\"",
            ),
            ("bind_port: 9645", "bind_port: 9645\ncolour: red", "colour"),
            ("bind_port: 9645", "bind_port: 70000", "bind_port"),
        ];
        for (from, to, want) in cases {
            let text = ORIGINAL_STYLE.replacen(from, to, 1);
            assert_ne!(text, ORIGINAL_STYLE, "{from}");
            let msg = parse(&text).unwrap_err().to_string();
            assert!(
                msg.starts_with("/etc/burp_exporter/burp_exporter.yaml: ") && msg.contains(want),
                "{to:?} -> {msg}"
            );
        }
        let msg = parse("bind_port: 9645\n").unwrap_err().to_string();
        assert!(msg.contains("clients: invalid value"), "{msg}");
    }

    #[test]
    fn load_resolves_relative_paths_and_checks_files() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["burp".to_owned()]).unwrap();
        let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
        for (f, data) in [
            ("client1_ca.pem", &cert),
            ("client1.pem", &cert),
            ("client1.key", &key),
            ("client2_ca.pem", &cert),
            ("client2.pem", &cert),
        ] {
            std::fs::write(dir.path().join(f), data).unwrap();
        }
        let path = dir.path().join("burp_exporter.yaml");
        std::fs::write(&path, ORIGINAL_STYLE).unwrap();
        let load = || {
            Config::load(&path, kit::Strictness::Warn)
                .unwrap_err()
                .to_string()
        };
        let msg = load();
        assert!(msg.contains("clients[1].tls_key: invalid value"), "{msg}");
        assert!(msg.contains("client2.key"), "{msg}");
        // A file that opens but cannot be read (a directory), or holds no key: config errors.
        let key_path = dir.path().join("client2.key");
        std::fs::create_dir(&key_path).unwrap();
        let msg = load();
        assert!(
            msg.contains("clients[1].tls_key: invalid value") && msg.contains("cannot read"),
            "{msg}"
        );
        std::fs::remove_dir(&key_path).unwrap();
        std::fs::write(&key_path, "x").unwrap();
        let msg = load();
        assert!(
            msg.contains("clients[1].tls_key: invalid value") && msg.contains("no usable PEM"),
            "{msg}"
        );
        std::fs::write(dir.path().join("client2_ca.pem"), "x").unwrap();
        assert!(load().contains("clients[1].tls_ca_cert"));
        std::fs::write(dir.path().join("client2_ca.pem"), &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        let c = Config::load(&path, kit::Strictness::Warn).unwrap();
        assert_eq!(c.clients[0].tls_ca_cert, dir.path().join("client1_ca.pem"));
    }
}
