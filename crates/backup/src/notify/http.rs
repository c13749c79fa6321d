//! The HTTP side of notifiers: one client per run (the kit's set-up, the same async reqwest
//! as the stores', run to completion on the shared runtime), requests with a per-notifier
//! timeout, and errors that never show a URL's secret parts.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Client, Method, Url};
use serde::{Deserialize, Deserializer};

use crate::destination::runtime;
use custos_kit::config::Secret;

/// A notification could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The client could not be set up (TLS roots).
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// No answer: refused, unreachable, timed out, TLS failed.
    #[error("{endpoint}: {detail}")]
    Transport {
        /// `scheme://host:port` only.
        endpoint: String,
        detail: String,
        timeout: bool,
    },
    /// The server answered with an error status.
    #[error("{endpoint}: HTTP {status}{body}")]
    Status {
        endpoint: String,
        status: u16,
        /// `: ` and the start of the response body, when there is one.
        body: String,
    },
    /// Sending mail failed.
    #[error("SMTP {server}: {detail}")]
    Smtp {
        server: String,
        detail: String,
        transient: bool,
    },
    /// Credentials would go over an unencrypted connection to a host that is not loopback.
    #[error(
        "SMTP {server}: refusing to send the password over an unencrypted connection (the \
         server offers no STARTTLS): set use_tls or use_ssl if it has TLS, or \
         allow_plaintext_auth: true to send it in clear"
    )]
    PlaintextAuth { server: String },
    /// Writing a file failed.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl NotifyError {
    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            NotifyError::Setup(_) => false,
            NotifyError::Transport { .. } => true,
            NotifyError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            NotifyError::Smtp { transient, .. } => *transient,
            NotifyError::PlaintextAuth { .. } => false,
            NotifyError::File { source, .. } => crate::outcome::io_retryable(source),
        }
    }
}

/// A URL whose path, query and user info may hold secrets (webhook tokens, bot tokens,
/// ping UUIDs): `Debug` and [`SecretUrl::endpoint`] show only `scheme://host:port`.
#[derive(Clone)]
pub struct SecretUrl(pub Url);

impl SecretUrl {
    /// `scheme://host:port`, safe for logs and errors.
    pub fn endpoint(&self) -> String {
        endpoint(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/<secret>", self.endpoint())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let url = Url::parse(s.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "not a URL ({e}; value not shown: it may hold a secret)"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(serde::de::Error::custom(
                "expected an http:// or https:// URL with a host",
            ));
        }
        Ok(SecretUrl(url))
    }
}

/// `scheme://host:port` of a URL (the port always written): the kit's one URL redaction.
pub fn endpoint(url: &Url) -> String {
    custos_kit::http_client::origin(url, custos_kit::http_client::ImpliedPort::Write)
}

/// `credentials: {username, password}` as the original writes them.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, <secret>)", self.username)
    }
}

impl Credentials {
    /// Present and usable (the original's examples carry `"credentials": {}`).
    pub fn given(c: &Option<Credentials>) -> Option<&Credentials> {
        c.as_ref().filter(|c| !c.username.is_empty())
    }
}

/// One request a notifier sends.
#[derive(Clone)]
pub struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    pub basic: Option<&'a Credentials>,
    pub bearer: Option<&'a Secret>,
}

impl Request<'_> {
    /// A request with a JSON body.
    pub fn json(method: Method, url: Url, body: &serde_json::Value) -> Request<'static> {
        Request {
            method,
            url,
            content_type: Some("application/json"),
            body: body.to_string().into_bytes(),
            basic: None,
            bearer: None,
        }
    }
}

/// Sends `req`; any status outside 2xx is an error. Errors show the endpoint only.
pub fn send(client: &Client, timeout: Duration, req: Request<'_>) -> Result<(), NotifyError> {
    let ep = endpoint(&req.url);
    // What a server might echo back in an error page ("Cannot POST /bot<token>/..."): the
    // path, the query and the credentials, each cut from any body quoted in an error.
    let mut secrets: Vec<String> = vec![req.url.path().to_owned()];
    secrets.extend(
        req.url
            .path_segments()
            .into_iter()
            .flatten()
            .map(str::to_owned),
    );
    secrets.extend(req.url.query().map(str::to_owned));
    secrets.extend(req.url.query_pairs().map(|(_, v)| v.into_owned()));
    secrets.extend(req.url.password().map(str::to_owned));
    secrets.extend(req.bearer.map(|t| t.expose().to_owned()));
    secrets.extend(
        req.basic
            .and_then(|c| c.password.as_ref())
            .map(|p| p.expose().to_owned()),
    );
    let mut b = client
        .request(req.method, req.url)
        .timeout(timeout)
        .body(req.body);
    if let Some(ct) = req.content_type {
        b = b.header(reqwest::header::CONTENT_TYPE, ct);
    }
    if let Some(c) = req.basic {
        b = b.basic_auth(&c.username, c.password.as_ref().map(Secret::expose));
    }
    if let Some(t) = req.bearer {
        b = b.bearer_auth(t.expose());
    }
    let answer = runtime::block_on(async {
        let resp = b.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok((status, String::new()));
        }
        // The start of the body helps (Slack says `invalid_payload`); never echo more.
        Ok::<_, reqwest::Error>((status, resp.text().await.unwrap_or_default()))
    });
    let (status, mut text) = answer.map_err(|e| NotifyError::Transport {
        endpoint: ep.clone(),
        timeout: e.is_timeout(),
        detail: custos_kit::error::chain(&e.without_url()),
    })?;
    if status.is_success() {
        return Ok(());
    }
    secrets.retain(|s| s.len() >= 4 && s != "/");
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in &secrets {
        text = text.replace(s.as_str(), "<secret>");
    }
    let text: String = text.trim().chars().take(200).collect();
    Err(NotifyError::Status {
        endpoint: ep,
        status: status.as_u16(),
        body: if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        },
    })
}

/// How a ping is retried, as `curl --retry 3` users expect: a refused or dropped connection,
/// a timeout, 5xx or 429 is tried again after 1 s, then 2 s, within a short window, so one
/// blip does not lose the signal (and make the monitoring service alarm) while a dead
/// service still fails the notifier soon.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// No retry starts later than this after the first try.
    pub window: Duration,
    /// Wait before the second try; doubled for each further one.
    pub first_wait: Duration,
}

impl Retry {
    /// Three tries within 15 s.
    pub const PING: Retry = Retry {
        attempts: 3,
        window: Duration::from_secs(15),
        first_wait: Duration::from_secs(1),
    };
}

/// [`send`], retried by `retry` while the failure is [`NotifyError::retryable`]; the window
/// never outlasts `timeout` (shortened when a run was stopped). Each retry is one DEBUG line.
pub fn send_retrying(
    client: &Client,
    timeout: Duration,
    retry: Retry,
    req: Request<'_>,
) -> Result<(), NotifyError> {
    let started = Instant::now();
    let window = retry.window.min(timeout);
    let mut wait = retry.first_wait;
    let mut attempt = 1;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match send(client, left, req.clone()) {
            Err(e)
                if e.retryable()
                    && attempt < retry.attempts
                    && started.elapsed() + wait < window =>
            {
                tracing::debug!(endpoint = %endpoint(&req.url), attempt, error = %e,
                    retry_in_ms = wait.as_millis() as u64, "ping failed; retrying");
                std::thread::sleep(wait);
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing listens at first (refused); the port is served a moment later: the retried
    /// ping arrives.
    #[test]
    fn a_refused_ping_is_retried_until_it_arrives() {
        use std::io::{BufRead as _, Write as _};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            let (c, _) = l.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(&c).read_line(&mut line).unwrap();
            let _ = (&c)
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            line
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/ping/uuid")).unwrap();
        let req = Request::json(Method::POST, url.clone(), &serde_json::json!({}));
        let quick = Retry {
            attempts: 3,
            window: Duration::from_secs(10),
            first_wait: Duration::from_millis(500),
        };
        send_retrying(
            runtime::http_client().unwrap(),
            Duration::from_secs(10),
            quick,
            req,
        )
        .expect("retried ping arrives");
        assert!(server.join().unwrap().starts_with("POST /ping/uuid "));

        // A dead service fails within the window, after its tries.
        let dead = Url::parse(&format!("http://127.0.0.1:{port}/ping/uuid")).unwrap();
        let started = Instant::now();
        let e = send_retrying(
            runtime::http_client().unwrap(),
            Duration::from_secs(10),
            Retry {
                first_wait: Duration::from_millis(50),
                ..quick
            },
            Request::json(Method::POST, dead, &serde_json::json!({})),
        )
        .unwrap_err();
        assert!(e.retryable(), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn secret_urls_show_only_the_endpoint() {
        let u: SecretUrl = serde_json::from_str(
            r#""https://user:pw@hooks.slack.com/services/T0/B0/SECRET?token=x""#,
        )
        .unwrap();
        assert_eq!(u.endpoint(), "https://hooks.slack.com:443");
        let dbg = format!("{u:?}");
        assert!(!dbg.contains("SECRET") && !dbg.contains("pw") && !dbg.contains("token"));
        let e = serde_json::from_str::<SecretUrl>(r#""hooks.slack.com/SECRET""#).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert!(serde_json::from_str::<SecretUrl>(r#""ftp://x/y""#).is_err());
    }

    #[test]
    fn status_errors_say_whether_to_retry() {
        let e = |status| NotifyError::Status {
            endpoint: "http://x:80".into(),
            status,
            body: String::new(),
        };
        assert!(e(500).retryable() && e(429).retryable());
        assert!(!e(404).retryable() && !e(401).retryable());
    }

    #[test]
    fn error_bodies_that_echo_the_request_lose_its_secret_parts() {
        use std::io::{Read as _, Write as _};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let body = "Cannot POST /bot123:TOKENXYZ/sendMessage?auth_token=QSECRET";
            let _ = write!(
                c,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
        let url = Url::parse(&format!(
            "http://127.0.0.1:{port}/bot123:TOKENXYZ/sendMessage?auth_token=QSECRET"
        ))
        .unwrap();
        let e = send(
            runtime::http_client().unwrap(),
            Duration::from_secs(10),
            Request::json(Method::POST, url, &serde_json::json!({})),
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("HTTP 404: Cannot POST <secret>"), "{m}");
        assert!(!m.contains("TOKENXYZ") && !m.contains("QSECRET"), "{m}");
    }

    #[test]
    fn refused_connections_name_the_endpoint_and_not_the_path() {
        // A port nothing listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = runtime::http_client().unwrap();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/hook/SECRET")).unwrap();
        let e = send(
            c,
            Duration::from_secs(5),
            Request::json(Method::POST, url, &serde_json::json!({})),
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with(&format!("http://127.0.0.1:{port}: ")), "{m}");
        assert!(!m.contains("SECRET"), "{m}");
        assert!(e.retryable());
    }
}
