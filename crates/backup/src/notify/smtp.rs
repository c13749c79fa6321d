//! `smtp`: a mail per source to `success_to` / `failure_to` (`host`, `port`, `credentials`,
//! `use_tls` = STARTTLS, `use_ssl` = implicit TLS). Unlike the original it logs in only when
//! credentials are given, and sends proper `From`/`To`/`Subject`/`Date`/`Message-ID`
//! headers besides the original's `X-Backup-Id`/`-Type`/`-Hostname`. `backup verify`
//! mails the same recipients, a mail per source (`Verify of ...`).
//!
//! The original sent from the recipient's own address; custos `from` overrides that.
//! custos `ca_file` (PEM) trusts a private CA for a relay with its own certificate.
//!
//! Without `use_tls`/`use_ssl` the original logged in over plain text, handing the relay
//! password to anyone on the path. custos uses STARTTLS whenever the server offers it, and
//! logs in over an unencrypted connection only to a loopback host or when the custos key
//! `allow_plaintext_auth` says so; otherwise the notifier fails with an error naming that key.

use std::net::IpAddr;
use std::path::PathBuf;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials as SmtpCredentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use serde::{Deserialize, Deserializer};

use super::http::Credentials;
use super::{Context, Delivery, Events, Notifier, NotifyError};
use crate::outcome::{size_description, RunReport, SourceReport, SourceVerification, Verification};
use custos_kit::config::values::{port, truthy};
use custos_kit::config::{Invalid, Validate};

/// `type: smtp`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    /// `port` (default 465 with `use_ssl`, 587 with `use_tls`, else 25).
    #[serde(default, deserialize_with = "port")]
    pub port: Option<u16>,
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// STARTTLS (required when set; without it, used when the server offers it).
    #[serde(default, deserialize_with = "truthy")]
    pub use_tls: bool,
    /// TLS from the first byte (SMTPS).
    #[serde(default, deserialize_with = "truthy")]
    pub use_ssl: bool,
    /// custos `allow_plaintext_auth`: log in even when the connection to a host that is not
    /// a loopback address is not encrypted (a relay without TLS on a trusted network).
    #[serde(default, deserialize_with = "truthy")]
    pub allow_plaintext_auth: bool,
    /// Recipients of success mails: one address, several separated by commas, or a list.
    #[serde(default, deserialize_with = "addresses")]
    pub success_to: Vec<String>,
    /// Recipients of failure mails.
    #[serde(default, deserialize_with = "addresses")]
    pub failure_to: Vec<String>,
    /// The original's `debug` (smtplib's protocol trace): accepted; `-d` logs instead.
    #[serde(default)]
    #[allow(dead_code)]
    debug: Option<serde_json::Value>,
    /// custos `from` (default: the first recipient, as the original).
    #[serde(default)]
    pub from: Option<String>,
    /// custos `ca_file`: PEM certificate(s) to trust besides the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// A loopback host: the bytes never leave this machine. An IP literal (`127.0.0.0/8`, `::1`,
/// bracketed or not, IPv4-mapped too) or `localhost` and its subdomains (RFC 6761); names are not resolved.
fn is_loopback(host: &str) -> bool {
    let h = host.trim().trim_end_matches('.');
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        // `::ffff:127.0.0.1` too.
        return ip.to_canonical().is_loopback();
    }
    let lower = h.to_ascii_lowercase();
    lower == "localhost" || lower.ends_with(".localhost")
}

impl Smtp {
    fn port(&self) -> u16 {
        self.port.unwrap_or(if self.use_ssl {
            465
        } else if self.use_tls {
            587
        } else {
            25
        })
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port())
    }

    fn error(&self, detail: impl Into<String>, transient: bool) -> NotifyError {
        NotifyError::Smtp {
            server: self.server(),
            detail: detail.into(),
            transient,
        }
    }

    /// Whether credentials may go over a connection that is not encrypted: to a loopback
    /// host, or when `allow_plaintext_auth` says so.
    fn plaintext_auth_allowed(&self) -> Result<(), NotifyError> {
        if self.allow_plaintext_auth || is_loopback(&self.host) {
            Ok(())
        } else {
            Err(NotifyError::PlaintextAuth {
                server: self.server(),
            })
        }
    }

    fn tls_parameters(&self) -> Result<TlsParameters, NotifyError> {
        let mut params = TlsParameters::builder(self.host.clone());
        if let Some(ca) = &self.ca_file {
            let pem = std::fs::read(ca).map_err(|e| NotifyError::File {
                path: ca.clone(),
                source: e,
            })?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| self.error(format!("ca_file {}: {e}", ca.display()), false))?;
            params = params.add_root_certificate(cert);
        }
        params
            .build_rustls()
            .map_err(|e| self.error(format!("TLS setup: {e}"), false))
    }

    fn smtp_error(&self, e: &lettre::transport::smtp::Error) -> NotifyError {
        self.error(
            e.to_string(),
            e.is_transient() || e.is_timeout() || !e.is_permanent(),
        )
    }

    /// Connects, encrypts (implicit TLS, required STARTTLS, or STARTTLS when offered) and
    /// logs in when credentials are given: never over plain text unless
    /// [`Smtp::plaintext_auth_allowed`].
    fn session(&self, ctx: &Context) -> Result<SmtpConnection, NotifyError> {
        let tls = self.tls_parameters()?;
        let hello = ClientId::default();
        let connect = |wrapped: bool| {
            SmtpConnection::connect(
                (self.host.as_str(), self.port()),
                Some(ctx.timeout),
                &hello,
                wrapped.then_some(&tls),
                None,
            )
            .map_err(|e| self.smtp_error(&e))
        };
        let credentials = Credentials::given(&self.credentials).map(|c| {
            SmtpCredentials::new(
                c.username.clone(),
                c.password
                    .as_ref()
                    .map(|p| p.expose().to_owned())
                    .unwrap_or_default(),
            )
        });
        let mut conn = connect(self.use_ssl)?;
        if self.use_tls || conn.can_starttls() {
            if let Err(e) = conn.starttls(&tls, &hello) {
                conn.abort();
                let refused = self.smtp_error(&e);
                // STARTTLS only because it was offered (a local relay's self-signed
                // certificate, say): go on without it as before, unless that would expose
                // the password.
                if self.use_tls || (credentials.is_some() && self.plaintext_auth_allowed().is_err())
                {
                    return Err(refused);
                }
                if is_loopback(&self.host) {
                    tracing::info!("offered STARTTLS failed, sending without TLS: {refused}");
                } else {
                    tracing::warn!("offered STARTTLS failed, sending without TLS: {refused}");
                }
                conn = connect(false)?;
            }
        }
        if let Some(c) = &credentials {
            if !conn.is_encrypted() {
                if let Err(e) = self.plaintext_auth_allowed() {
                    conn.abort();
                    return Err(e);
                }
            }
            conn.auth(DEFAULT_MECHANISMS, c)
                .map_err(|e| self.smtp_error(&e))?;
        }
        Ok(conn)
    }

    fn mail(
        &self,
        s: &SourceReport,
        hostname: &str,
        to: &[String],
    ) -> Result<Message, NotifyError> {
        let (subject, body) = if s.succeeded() {
            (
                format!(
                    "Backup of {} ({}) on {} was successful",
                    s.name, s.kind, hostname
                ),
                success_body(s),
            )
        } else {
            (
                format!(
                    "ERROR: Backup of {} ({}) on {} failed",
                    s.name, s.kind, hostname
                ),
                format!(
                    "Error encountered while backing up {} ({}):\n\n{}\n",
                    s.name,
                    s.kind,
                    s.error_text()
                ),
            )
        };
        self.message(subject, body, (&s.id, &s.kind), hostname, to)
    }

    /// The mail about a verified source.
    fn verify_mail(
        &self,
        s: &SourceVerification,
        report: &Verification,
        to: &[String],
    ) -> Result<Message, NotifyError> {
        let ok = s.succeeded();
        let subject = format!(
            "{}Verify of {} ({}) on {} {}",
            if ok { "" } else { "ERROR: " },
            s.name,
            s.kind,
            report.hostname,
            if ok { "was successful" } else { "failed" }
        );
        let mut body = format!("{}\n\n", super::verify_text(s, report));
        for c in &s.copies {
            let how = match &c.result {
                Ok(()) => format!("ok, {}", size_description(c.size.unwrap_or(0) as f64)),
                Err(f) => format!("FAILED: {}", f.message),
            };
            body.push_str(&format!("{}: {how}\n", c.label()));
        }
        self.message(subject, body, (&s.id, &s.kind), &report.hostname, to)
    }

    /// A plain-text mail with the original's `X-Backup-*` headers for source `(id, kind)`.
    fn message(
        &self,
        subject: String,
        body: String,
        (id, kind): (&str, &str),
        hostname: &str,
        to: &[String],
    ) -> Result<Message, NotifyError> {
        let mbox = |a: &str, key: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| self.error(format!("{key} {a:?}: {e}"), false))
        };
        let from = mbox(self.from.as_deref().unwrap_or(&to[0]), "from")?;
        let mut m = Message::builder()
            .from(from)
            .subject(subject)
            .date_now()
            .message_id(None)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Backup-Id"),
                id.to_owned(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Backup-Type"),
                kind.to_owned(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Backup-Hostname"),
                hostname.to_owned(),
            ))
            .header(ContentType::TEXT_PLAIN);
        for a in to {
            m = m.to(mbox(a, "to")?);
        }
        m.body(body)
            .map_err(|e| self.error(format!("building the message: {e}"), false))
    }
}

fn success_body(s: &SourceReport) -> String {
    let mut b = format!(
        "Successfully backed up {} ({}) [size: {}]\n\n",
        s.name,
        s.kind,
        size_description(s.stored_bytes.unwrap_or(0) as f64)
    );
    if let Some(o) = &s.object {
        b.push_str(&format!("object:   {o}\n"));
    }
    if let Some(h) = &s.sha256 {
        b.push_str(&format!("sha256:   {h}\n"));
    }
    b.push_str(&format!(
        "read:     {}\ntime:     {:.1}s\n",
        size_description(s.input_bytes.unwrap_or(0) as f64),
        s.dump.as_secs_f64()
    ));
    for d in &s.destinations {
        let kept = d
            .retained_good()
            .map_or(String::new(), |n| format!(", {n} good copies kept"));
        b.push_str(&format!(
            "stored at {} in {:.1}s{kept}\n",
            d.id,
            d.upload.as_secs_f64()
        ));
    }
    b
}

impl Validate for Smtp {
    fn validate(&self) -> Result<(), Invalid> {
        if self.host.trim().is_empty() {
            return Err(Invalid::new("host", "", "must not be empty"));
        }
        if self.use_tls && self.use_ssl {
            return Err(Invalid::new(
                "use_ssl",
                1,
                "use_tls (STARTTLS) and use_ssl (implicit TLS) exclude each other",
            ));
        }
        for (key, list) in [
            ("success_to", &self.success_to),
            ("failure_to", &self.failure_to),
        ] {
            for a in list {
                if a.parse::<Mailbox>().is_err() {
                    return Err(Invalid::new(key, a, "not an e-mail address"));
                }
            }
        }
        if let Some(f) = &self.from {
            if f.parse::<Mailbox>().is_err() {
                return Err(Invalid::new("from", f, "not an e-mail address"));
            }
        }
        Ok(())
    }
}

impl Notifier for Smtp {
    /// As the original's README says: a mail goes to `success_to` / `failure_to` when set.
    fn default_events(&self) -> Events {
        Events {
            start: false,
            success: !self.success_to.is_empty(),
            failure: !self.failure_to.is_empty(),
        }
    }

    fn finish(&self, ctx: &Context, report: &RunReport) -> Delivery {
        self.over_one_session(ctx, |send| {
            Delivery::per_source(report, ctx.events, |s| {
                send(s.succeeded(), &|to| self.mail(s, &report.hostname, to))
            })
        })
    }

    fn verified(&self, ctx: &Context, report: &Verification) -> Delivery {
        self.over_one_session(ctx, |send| {
            Delivery::per_verified_source(report, ctx.events, |s| {
                send(s.succeeded(), &|to| self.verify_mail(s, report, to))
            })
        })
    }
}

/// Sends one mail: to `success_to` when the first argument says it is good news, else to
/// `failure_to` (none when that is empty), built for them by the second.
type SendMail<'a> = dyn FnMut(bool, &dyn Fn(&[String]) -> Result<Message, NotifyError>) -> Result<(), NotifyError>
    + 'a;

impl Smtp {
    /// Runs `mails` with a sender that keeps one session for all of them (a new one after a
    /// failed transaction) and closes it at the end.
    fn over_one_session(
        &self,
        ctx: &Context,
        mails: impl FnOnce(&mut SendMail<'_>) -> Delivery,
    ) -> Delivery {
        let mut session: Option<SmtpConnection> = None;
        let delivery = mails(&mut |good, build| {
            let to = if good {
                &self.success_to
            } else {
                &self.failure_to
            };
            if to.is_empty() {
                return Ok(());
            }
            let message = build(to)?;
            let conn = match session.take().filter(|c| !c.has_broken()) {
                Some(c) => session.insert(c),
                None => session.insert(self.session(ctx)?),
            };
            conn.send(message.envelope(), &message.formatted())
                .map(|_| ())
                .map_err(|e| self.smtp_error(&e))
        });
        if let Some(mut c) = session {
            let _ = c.quit();
        }
        delivery
    }
}

/// Recipients: `"a@x, B <b@y>"` (split at commas, so a display name may hold spaces) or a
/// list; empty entries are dropped.
fn addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde_json::Value;
    let bad = || {
        serde::de::Error::custom("expected an address, addresses separated by commas, or a list")
    };
    let list = match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split(',').map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    Ok(list
        .into_iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn recipients_split_at_commas_and_keep_display_names() {
        let s: super::Smtp = serde_json::from_str(
            r#"{"host": "h", "success_to": "Ops Team <ops@x.org>, b@y.org", "failure_to": ["c@z.org"]}"#,
        )
        .unwrap();
        assert_eq!(s.success_to, ["Ops Team <ops@x.org>", "b@y.org"]);
        assert_eq!(s.failure_to, ["c@z.org"]);
        use custos_kit::config::Validate as _;
        assert!(s.validate().is_ok());
        // A wrong type says what the key takes, not serde's internal enum.
        for to in ["5", "[\"a@x.org\", 5]", "{\"a\": 1}"] {
            let e = serde_json::from_str::<super::Smtp>(&format!(
                r#"{{"host": "h", "success_to": {to}}}"#
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("expected an address, addresses separated by commas, or a list"),
                "{to}: {e}"
            );
        }
    }

    fn smtp(json: serde_json::Value) -> super::Smtp {
        serde_json::from_value(json).unwrap()
    }

    /// Issue 16.9: the password crossed the network in clear when neither `use_tls` nor
    /// `use_ssl` was set. Over an unencrypted connection it may go only to a loopback host
    /// or when `allow_plaintext_auth` says so.
    #[test]
    fn plaintext_auth_only_to_loopback_or_when_the_key_allows_it() {
        let remote = smtp(serde_json::json!({"host": "mail.example.com", "port": 25}));
        let err = remote.plaintext_auth_allowed().unwrap_err();
        assert!(!err.retryable());
        let text = err.to_string();
        assert!(
            text.starts_with("SMTP mail.example.com:25: refusing to send the password")
                && text.contains("allow_plaintext_auth: true")
                && text.contains("use_tls"),
            "{text}"
        );
        for host in [
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "localhost",
            "LOCALHOST.",
            "relay.localhost",
        ] {
            let s = smtp(serde_json::json!({"host": host}));
            assert!(s.plaintext_auth_allowed().is_ok(), "{host}");
        }
        for host in [
            "10.0.0.1",
            "192.0.2.2",
            "::2",
            "localhost.example.com",
            "127.0.0.1.nip.io",
        ] {
            let s = smtp(serde_json::json!({"host": host}));
            assert!(s.plaintext_auth_allowed().is_err(), "{host}");
        }
        for allow in [serde_json::json!(true), serde_json::json!(1)] {
            let s = smtp(
                serde_json::json!({"host": "mail.example.com", "allow_plaintext_auth": allow}),
            );
            assert!(s.plaintext_auth_allowed().is_ok());
        }
    }
}
