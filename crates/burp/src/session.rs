//! A status-port session: connect, log in as burp's own client does, ask for JSON documents.
//!
//! API the exporter codes against:
//! - [`Target`]: where and as whom to connect; `Debug` hides the password.
//! - [`StatusClient::connect`]`(&Target) -> Result<StatusClient, Error>`: TCP, TLS and the
//!   login handshake (as captured from burp 3.1.4 in `tests/data/transcript*.txt`), all
//!   within `Target::timeout`.
//! - [`StatusClient::request`]`(&mut self, cmd: &str) -> Result<Vec<u8>, Error>`: sends one
//!   request (`c:`, `c:<client>`, `c:<client>:b:<n>`, `...:l:<log>`) and returns one whole
//!   JSON document; a `{"warning":"..."}` document becomes [`Error::Warning`].
//! - [`Connection`]: one long-lived connection per server. `Connection::request` connects
//!   lazily, drops the connection on errors that [`Error::needs_reconnect`], retries once at
//!   once when a reused connection turns out closed (idle timeout, server restart), and backs
//!   off exponentially (1 s doubling to 60 s, reset on success) so a dead server is not
//!   hammered. `is_connected()` and `last_error()` report the state.
//!
//! We say hello with the burp version whose protocol we speak ([`PROTOCOL_VERSION`]); faking
//! an old one (as the Python original's 2.1.18) would switch the server to its old JSON format.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::Error;
use crate::frame::{self, Assembler, Command, Decoder, Event, Frame, FrameError};
use crate::tls;
use crate::warnings::WarningBudget;
use custos_kit::poll::Backoff;

/// The burp version whose status protocol this client speaks, sent in `hello:<version>`.
pub const PROTOCOL_VERSION: &str = "3.1.4";

/// Default bound on connecting (TCP + TLS + login) and on each request. The first request on
/// a new connection takes the server 1-4 s (it loads its data); big servers take longer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// First reconnect delay after a failure.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);

/// Longest reconnect delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Bytes asked from the TLS stream per read: two of burp's 16000-byte frames.
const READ_CHUNK: usize = 32 * 1024;

/// Where and as whom to connect to one burp server's status port.
#[derive(Clone)]
pub struct Target {
    /// Server host name or IP address (`burp_host`).
    pub host: String,
    /// Status port (`burp_port`; burp's `listen_status`, e.g. 4972).
    pub port: u16,
    /// Our client name, as in the server's clientconfdir (`cname`).
    pub cname: String,
    /// Our password (`password`). Never printed.
    pub password: String,
    /// Expected CN of the server's certificate (`burp_cname`, burp's `ssl_peer_cn`).
    pub burp_cname: String,
    /// CA certificate(s) the server's certificate must chain to (`tls_ca_cert`).
    pub tls_ca_cert: PathBuf,
    /// Our client certificate (`tls_cert`); burp requires one whose CN is `cname`.
    pub tls_cert: Option<PathBuf>,
    /// Our client key (`tls_key`).
    pub tls_key: Option<PathBuf>,
    /// Bound on connecting (TCP + TLS + login, together) and on each request.
    pub timeout: Duration,
    /// Cap on one reply document in bytes.
    pub max_document: usize,
    /// Version sent in `hello:`; [`PROTOCOL_VERSION`] unless testing.
    pub client_version: String,
}

impl Target {
    /// A target with default timeout and document cap and no client certificate.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        cname: impl Into<String>,
        password: impl Into<String>,
        burp_cname: impl Into<String>,
        tls_ca_cert: impl Into<PathBuf>,
    ) -> Self {
        Target {
            host: host.into(),
            port,
            cname: cname.into(),
            password: password.into(),
            burp_cname: burp_cname.into(),
            tls_ca_cert: tls_ca_cert.into(),
            tls_cert: None,
            tls_key: None,
            timeout: DEFAULT_TIMEOUT,
            max_document: frame::DEFAULT_MAX_DOCUMENT,
            client_version: PROTOCOL_VERSION.to_owned(),
        }
    }

    /// Sets the client certificate and key files.
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some(cert.into());
        self.tls_key = Some(key.into());
        self
    }

    /// `host:port` (`[v6]:port`), as errors and logs name the server.
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("cname", &self.cname)
            .field("password", &"<hidden>")
            .field("burp_cname", &self.burp_cname)
            .field("tls_ca_cert", &self.tls_ca_cert)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("timeout", &self.timeout)
            .field("max_document", &self.max_document)
            .field("client_version", &self.client_version)
            .finish()
    }
}

/// One logged-in status-port connection.
pub struct StatusClient {
    stream: TlsStream<TcpStream>,
    addr: String,
    timeout: Duration,
    decoder: Decoder,
    assembler: Assembler,
    read_buf: Box<[u8]>,
    server_version: String,
    server_features: String,
    login_warnings: Vec<String>,
    /// Warnings of the login or request in progress.
    warnings: WarningBudget,
    /// Handshake step in progress, named in a timeout error.
    step: &'static str,
    /// Login finished: an `e` frame from now on is a server error, not a refused login.
    logged_in: bool,
    /// A request began and has not finished: if set at the next request, the previous one was
    /// cancelled mid-way and the stream position is unknown.
    in_flight: bool,
}

impl fmt::Debug for StatusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusClient")
            .field("addr", &self.addr)
            .field("server_version", &self.server_version)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl StatusClient {
    /// Connects, sets up TLS and logs in; all of it within `target.timeout`.
    pub async fn connect(target: &Target) -> Result<StatusClient, Error> {
        let addr = target.addr();
        let tls_error = |reason: String| Error::Tls {
            addr: addr.clone(),
            reason,
        };
        let timed_out = |step: &str| Error::Timeout {
            addr: addr.clone(),
            request: step.to_owned(),
            timeout: target.timeout,
        };
        let client_auth =
            tls::client_auth_pair(target.tls_cert.as_deref(), target.tls_key.as_deref())
                .map_err(|e| tls_error(e.to_string()))?;
        let config = tls::client_config(&target.tls_ca_cert, client_auth, &target.burp_cname)
            .map_err(|e| tls_error(e.to_string()))?;

        let deadline = Instant::now() + target.timeout;
        let tcp = timeout_at(
            deadline,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| timed_out("TCP connect"))?
        .map_err(|source| Error::Io {
            addr: addr.clone(),
            source,
        })?;
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%addr, "cannot set TCP_NODELAY: {e}");
        }
        let stream = timeout_at(
            deadline,
            TlsConnector::from(Arc::new(config)).connect(server_name(&target.host), tcp),
        )
        .await
        .map_err(|_| timed_out("TLS handshake"))?
        .map_err(|e| tls_error(tls::describe_handshake_error(&e)))?;

        let mut client = StatusClient {
            stream,
            addr: addr.clone(),
            timeout: target.timeout,
            decoder: Decoder::new(),
            assembler: Assembler::new(target.max_document),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            server_version: String::new(),
            server_features: String::new(),
            login_warnings: Vec::new(),
            warnings: WarningBudget::default(),
            step: "hello",
            logged_in: false,
            in_flight: false,
        };
        match timeout_at(deadline, client.login(target)).await {
            Ok(Ok(())) => {
                tracing::debug!(
                    %addr,
                    server_version = %client.server_version,
                    "logged in to burp status port"
                );
                Ok(client)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(timed_out(client.step)),
        }
    }

    /// Sends one request and returns the whole JSON document that answers it, within the
    /// request timeout. A `{"warning":"..."}` document becomes [`Error::Warning`] and leaves
    /// the connection usable; any other error leaves it broken (see [`Error::needs_reconnect`]).
    pub async fn request(&mut self, cmd: &str) -> Result<Vec<u8>, Error> {
        if self.in_flight {
            return Err(self.protocol(
                "an earlier request on this connection was cancelled; reconnect".to_owned(),
            ));
        }
        self.in_flight = true;
        let deadline = Instant::now() + self.timeout;
        let doc = match timeout_at(deadline, self.exchange(cmd)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(Error::Timeout {
                    addr: self.addr.clone(),
                    request: cmd.to_owned(),
                    timeout: self.timeout,
                })
            }
        };
        self.in_flight = false;
        match warning_text(&doc) {
            Some(text) => Err(Error::Warning(text)),
            None => Ok(doc),
        }
    }

    /// The server's version from its `whoareyou:<version>` greeting (empty if it sent none).
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The feature list from `extra_comms_begin ok:<features>`.
    pub fn server_features(&self) -> &str {
        &self.server_features
    }

    /// `w` frames received during login, such as burp's version warning.
    pub fn login_warnings(&self) -> &[String] {
        &self.login_warnings
    }

    /// False once a request was cancelled mid-way (its future dropped, e.g. by an outer
    /// timeout): the stream position is unknown and the client must be replaced.
    pub fn is_usable(&self) -> bool {
        !self.in_flight
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn exchange(&mut self, cmd: &str) -> Result<Vec<u8>, Error> {
        self.send(cmd).await?;
        let doc = self.read_document().await?;
        if doc.is_empty() {
            return Err(self.protocol(format!("empty document in reply to {cmd:?}")));
        }
        Ok(doc)
    }

    /// burp's login, exactly as its own client does it (captured in tests/data/transcript.txt).
    async fn login(&mut self, target: &Target) -> Result<(), Error> {
        self.warnings.reset(&self.addr);
        self.step = "hello";
        self.send(&format!("hello:{}", target.client_version))
            .await?;
        let reply = self.login_reply().await?;
        match reply.strip_prefix("whoareyou") {
            Some(version) => self.server_version = version.trim_start_matches(':').to_owned(),
            None => return Err(self.unexpected("whoareyou[:<version>]", &reply)),
        }

        self.step = "cname";
        self.send(&target.cname).await?;
        self.expect("okpassword").await?;

        self.step = "password";
        self.send(&target.password).await?;
        self.expect("ok").await?;

        // We have a certificate already (or run without): no certificate signing request.
        self.step = "nocsr";
        self.send("nocsr").await?;
        self.expect("nocsr ok").await?;

        self.step = "extra_comms_begin";
        self.send("extra_comms_begin").await?;
        let reply = self.login_reply().await?;
        match reply.strip_prefix("extra_comms_begin ok") {
            Some(features) => {
                self.server_features = features.trim_start_matches(':').to_owned();
            }
            None => return Err(self.unexpected("extra_comms_begin ok[:<features>]", &reply)),
        }
        self.step = "extra_comms_end";
        self.send("extra_comms_end").await?;
        self.expect("extra_comms_end ok").await?;

        // One compact JSON document per reply, each closed by the "\n" end frame.
        self.step = "j:pretty-print-off";
        self.send("j:pretty-print-off").await?;
        let doc = self.read_document().await?;
        if warning_text(&doc).as_deref() != Some("Pretty print off") {
            return Err(self.unexpected(
                r#"{"warning":"Pretty print off"}"#,
                &String::from_utf8_lossy(&doc),
            ));
        }
        self.step = "request";
        self.logged_in = true;
        Ok(())
    }

    /// Sends one `c` frame. Never logs the payload: it may be the password.
    async fn send(&mut self, payload: &str) -> Result<(), Error> {
        let bytes = frame::encode(Command::Normal, payload.as_bytes())
            .map_err(|e| self.protocol(format!("request not sendable: {e}")))?;
        self.stream
            .write_all(&bytes)
            .await
            .map_err(|e| self.io_error(e))?;
        self.stream.flush().await.map_err(|e| self.io_error(e))
    }

    /// Expects the login reply `want`.
    async fn expect(&mut self, want: &str) -> Result<(), Error> {
        let reply = self.login_reply().await?;
        if reply == want {
            Ok(())
        } else {
            Err(self.unexpected(want, &reply))
        }
    }

    /// The next `c` frame's text during login; `w` frames are kept and logged, an `e` frame
    /// ends the login (burp also checks our certificate after the password: "check cert
    /// failed on server" is a refused login too).
    async fn login_reply(&mut self) -> Result<String, Error> {
        loop {
            let frame = self.next_frame().await?;
            match frame.command {
                Command::Normal => return Ok(frame.text().into_owned()),
                Command::Warning => {
                    let text = frame.text().trim_end().to_owned();
                    if self.record_warning(&text)? {
                        self.login_warnings.push(text);
                    }
                }
                Command::Error => return Err(self.server_error(frame.text().trim_end())),
            }
        }
    }

    /// Counts a warning against the budget of this login or request; whether it is new.
    fn record_warning(&mut self, text: &str) -> Result<bool, Error> {
        self.warnings
            .record(&self.addr, text)
            .map_err(|reason| self.protocol(reason))
    }

    /// Reads frames up to the end of the next document (a request's budget of warnings).
    async fn read_document(&mut self) -> Result<Vec<u8>, Error> {
        self.warnings.reset(&self.addr);
        let doc = self.read_document_frames().await;
        self.warnings.flush(&self.addr);
        doc
    }

    async fn read_document_frames(&mut self) -> Result<Vec<u8>, Error> {
        loop {
            let frame = self.next_frame().await?;
            let event = self
                .assembler
                .feed(frame)
                .map_err(|e| self.frame_error(e))?;
            match event {
                None => {}
                Some(Event::Document(doc)) => return Ok(doc),
                Some(Event::Warning(text)) => {
                    self.record_warning(&text)?;
                }
                Some(Event::Error(text)) => return Err(self.server_error(&text)),
            }
        }
    }

    async fn next_frame(&mut self) -> Result<Frame, Error> {
        loop {
            if let Some(frame) = self.decoder.next_frame().map_err(|e| self.frame_error(e))? {
                return Ok(frame);
            }
            quick_ack(self.stream.get_ref().0);
            let n = self
                .stream
                .read(&mut self.read_buf)
                .await
                .map_err(|e| self.io_error(e))?;
            if n == 0 {
                return Err(Error::Eof {
                    addr: self.addr.clone(),
                });
            }
            self.decoder.push(&self.read_buf[..n]);
        }
    }

    fn server_error(&self, text: &str) -> Error {
        if self.logged_in {
            Error::Server(text.to_owned())
        } else {
            Error::Auth {
                addr: self.addr.clone(),
                message: text.to_owned(),
            }
        }
    }

    fn unexpected(&self, want: &str, got: &str) -> Error {
        self.protocol(format!(
            "expected {want:?} after {}, got \"{}\"",
            self.step,
            frame::escape_prefix(got.as_bytes(), 200)
        ))
    }

    fn protocol(&self, reason: String) -> Error {
        Error::Protocol {
            addr: self.addr.clone(),
            reason,
        }
    }

    fn frame_error(&self, err: FrameError) -> Error {
        match err {
            FrameError::DocumentTooLarge { limit } => Error::TooLarge {
                addr: self.addr.clone(),
                limit,
            },
            other => self.protocol(other.to_string()),
        }
    }

    fn io_error(&self, err: std::io::Error) -> Error {
        let tls_failure = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(tls::describe_rustls);
        if let Some(reason) = tls_failure {
            // E.g. the server's alert after it rejected our client certificate (TLS 1.3
            // reports that only at the first read).
            Error::Tls {
                addr: self.addr.clone(),
                reason,
            }
        } else if err.kind() == std::io::ErrorKind::UnexpectedEof {
            // The peer closed without TLS close_notify: for us the same as a clean close.
            Error::Eof {
                addr: self.addr.clone(),
            }
        } else {
            Error::Io {
                addr: self.addr.clone(),
                source: err,
            }
        }
    }
}

/// Asks the kernel to acknowledge what arrives next at once.
///
/// burp writes a reply's end frame (`c0001\n`) as a separate small write; Nagle on the
/// server holds it until our ACK of the document, which Linux delays by 40 ms. Measured on
/// burp 3.1.4 over loopback: a small request takes ~44 ms without this and ~2 ms with it,
/// which decides whether asking for 2,000 clients one by one takes 90 s or 4 s. The flag is
/// not sticky, hence once per read.
#[cfg(target_os = "linux")]
fn quick_ack(tcp: &TcpStream) {
    // Best effort: without it we are only slower.
    let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn quick_ack(_tcp: &TcpStream) {}

/// The name passed to rustls. SNI is off and the verifier ignores it, so any valid name does.
fn server_name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()))
}

/// The text of a document that is exactly `{"warning":"..."}`.
pub fn warning_text(doc: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct WarningDoc {
        warning: String,
    }
    // Cheap test first: real documents are `{"clients":...}`, possibly megabytes.
    if !doc.starts_with(br#"{"warning""#) {
        return None;
    }
    serde_json::from_slice::<WarningDoc>(doc)
        .ok()
        .map(|w| w.warning)
}

/// One long-lived, self-healing connection to a burp server (see the module docs).
#[derive(Debug)]
pub struct Connection {
    target: Target,
    client: Option<StatusClient>,
    backoff: Backoff,
    last_error: Option<String>,
    attempts: u64,
}

impl Connection {
    /// A connection to `target`; nothing happens until the first request.
    pub fn new(target: Target) -> Self {
        Connection {
            target,
            client: None,
            backoff: Backoff::new(DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX),
            last_error: None,
            attempts: 0,
        }
    }

    /// Replaces the reconnect backoff (tests use milliseconds).
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(initial, max);
        self
    }

    /// The target this connection talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Whether a logged-in connection is open (it may still have been closed by the server).
    pub fn is_connected(&self) -> bool {
        self.client.as_ref().is_some_and(StatusClient::is_usable)
    }

    /// The last failure that dropped (or prevented) the connection; `None` after a success.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Consecutive failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }

    /// Connection attempts (TCP + TLS + login) made so far, including the silent reconnect
    /// of [`Connection::request`]; attempts skipped by the backoff do not count.
    pub fn connect_attempts(&self) -> u64 {
        self.attempts
    }

    /// The server version seen at the last login, if connected.
    pub fn server_version(&self) -> Option<&str> {
        self.client.as_ref().map(StatusClient::server_version)
    }

    /// Closes the connection; the next request reconnects (subject to backoff).
    pub fn disconnect(&mut self) {
        self.client = None;
    }

    /// Connects now unless connected or backing off.
    pub async fn ensure_connected(&mut self) -> Result<(), Error> {
        if self.is_connected() {
            return Ok(());
        }
        let result = self.open().await.map(|_| ());
        self.record(&result);
        result
    }

    /// Sends one request (see [`StatusClient::request`]), connecting first if needed.
    ///
    /// A reused connection that fails with EOF or an IO error is re-opened and the request
    /// retried once at once: burp drops idle connections after `network_timeout`, and status
    /// requests are read-only.
    pub async fn request(&mut self, cmd: &str) -> Result<Vec<u8>, Error> {
        let reused = self.is_connected();
        let mut result = self.try_request(cmd).await;
        if reused {
            if let Err(err @ (Error::Eof { .. } | Error::Io { .. })) = &result {
                tracing::debug!(
                    addr = %self.target.addr(),
                    "reused connection failed ({err}); reconnecting once"
                );
                self.client = None;
                result = self.try_request(cmd).await;
            }
        }
        self.record(&result);
        result
    }

    async fn try_request(&mut self, cmd: &str) -> Result<Vec<u8>, Error> {
        self.open().await?.request(cmd).await
    }

    async fn open(&mut self) -> Result<&mut StatusClient, Error> {
        if self.client.as_ref().is_some_and(|c| !c.is_usable()) {
            tracing::debug!(
                addr = %self.target.addr(),
                "dropping a connection whose last request was cancelled"
            );
            self.client = None;
        }
        if self.client.is_none() {
            if let Some(retry_in) = self.backoff.wait(Instant::now()) {
                return Err(Error::Backoff {
                    addr: self.target.addr(),
                    retry_in,
                    last_error: self.last_error.clone().unwrap_or_default(),
                });
            }
        }
        match &mut self.client {
            Some(client) => Ok(client),
            slot @ None => {
                self.attempts += 1;
                Ok(slot.insert(StatusClient::connect(&self.target).await?))
            }
        }
    }

    fn record<T>(&mut self, result: &Result<T, Error>) {
        match result {
            // The server answered in full: the connection works.
            Ok(_) | Err(Error::Warning(_)) | Err(Error::Parse { .. }) => {
                self.backoff.reset();
                self.last_error = None;
            }
            // No attempt was made; keep the error that caused the backoff.
            Err(Error::Backoff { .. }) => {}
            Err(err) => {
                self.client = None;
                let delay = self.backoff.fail(Instant::now());
                tracing::debug!(
                    addr = %self.target.addr(),
                    "burp status connection failed ({err}); next attempt in {delay:?} at the earliest"
                );
                self.last_error = Some(err.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let target = Target::new(
            "127.0.0.1",
            4972,
            "monitor",
            "s3cret-Pa55",
            "burpserver",
            "/etc/burp/ssl_cert_ca.pem",
        )
        .with_client_cert("/etc/burp/c.pem", "/etc/burp/c.key");
        let shown = format!("{target:?} {target:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<hidden>") && shown.contains("monitor"));
        let conn = Connection::new(target);
        assert!(!format!("{conn:?}").contains("s3cret"));
    }

    #[test]
    fn addr_brackets_ipv6() {
        let mut t = Target::new("::1", 4972, "a", "b", "c", "d");
        assert_eq!(t.addr(), "[::1]:4972");
        t.host = "burp.example".into();
        assert_eq!(t.addr(), "burp.example:4972");
    }

    #[test]
    fn warning_documents_are_recognised_exactly() {
        assert_eq!(
            warning_text(br#"{"warning":"Could not find client: x"}"#).as_deref(),
            Some("Could not find client: x")
        );
        assert_eq!(warning_text(br#"{"clients":[]}"#), None);
        assert_eq!(warning_text(br#"{"warning":"x","clients":[]}"#), None);
        assert_eq!(warning_text(br#"{"warning":1}"#), None);
        assert_eq!(warning_text(b"{\"warning\""), None);
    }

    #[tokio::test(start_paused = true)]
    async fn connection_backs_off_after_a_failed_connect() {
        let dir = tempfile::tempdir().unwrap();
        // A CA file that is missing: every connect fails at once, before any network.
        let target = Target::new(
            "127.0.0.1",
            9,
            "m",
            "pw",
            "burpserver",
            dir.path().join("ca.pem"),
        );
        let mut conn = Connection::new(target);
        let first = conn.request("c:").await.unwrap_err();
        assert!(matches!(first, Error::Tls { .. }), "{first}");
        assert!(conn.last_error().unwrap().contains("ca.pem"));
        assert!(!conn.is_connected());

        let second = conn.request("c:").await.unwrap_err();
        match &second {
            Error::Backoff {
                retry_in,
                last_error,
                ..
            } => {
                assert_eq!(*retry_in, Duration::from_secs(1));
                assert!(last_error.contains("ca.pem"));
            }
            other => panic!("expected Backoff, got {other}"),
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(conn.request("c:").await, Err(Error::Tls { .. })));
        assert_eq!(conn.failures(), 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        match conn.request("c:").await {
            Err(Error::Backoff { retry_in, .. }) => assert_eq!(retry_in, Duration::from_secs(1)),
            other => panic!("expected Backoff, got {other:?}"),
        }
    }
}
