//! The status-port client against an in-process fake burp server over real TLS.
//!
//! The fake peer uses burp-like certificates (made here with rcgen: a CA, leaf certificates
//! without subjectAltName, server CN `burpserver`), speaks burp's login and framing, and can
//! misbehave on purpose: wrong CN, foreign CA, garbage, oversized frames and documents,
//! silence, EOF mid-document, plain TCP. Every case must end in a typed error within the
//! configured timeout, never a panic or a hang. A replay peer also plays the captures of a
//! real burp 3.1.4 (tests/data/transcript*.txt) and checks our bytes against them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custos_burp::error::Error;
use custos_burp::frame::{self, Command, Decoder, Frame};
use custos_burp::session::{Connection, StatusClient, Target};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

mod transcript {
    include!("transcript/parse.rs");
}

mod common;

const PASSWORD: &str = "monitorpass";
const TIMEOUT: Duration = Duration::from_secs(10);
/// For the tests that wait for a timeout on purpose.
const SHORT: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------
// Certificates

/// A CA and its leaf certificates, as burp_ca makes them: no SAN, identity in the CN.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivatePkcs8KeyDer<'static>,
    ca_der: CertificateDer<'static>,
}

fn pki(server_cn: &str) -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "burpCA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let leaf = |cn: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert, key)
    };
    let (server_cert, server_key) = leaf(server_cn);
    let (client_cert, client_key) = leaf("monitor");

    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca_pem: write("ssl_cert_ca.pem", ca_cert.pem()),
        client_cert: write("ssl_cert-client.pem", client_cert.pem()),
        client_key: write("ssl_cert-client.key", client_key.serialize_pem()),
        server_chain: vec![server_cert.der().clone()],
        server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        ca_der: ca_cert.der().clone(),
        dir,
    }
}

impl Pki {
    fn target(&self, addr: SocketAddr) -> Target {
        let mut t = Target::new(
            addr.ip().to_string(),
            addr.port(),
            "monitor",
            PASSWORD,
            "burpserver",
            &self.ca_pem,
        )
        .with_client_cert(&self.client_cert, &self.client_key);
        t.timeout = TIMEOUT;
        t
    }

    fn server_config(&self, require_client_cert: bool) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca_der.clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(
            builder
                .with_single_cert(
                    self.server_chain.clone(),
                    PrivateKeyDer::Pkcs8(self.server_key.clone_key()),
                )
                .unwrap(),
        )
    }
}

// ---------------------------------------------------------------------------------------
// The fake peer

/// How a request is answered.
#[derive(Clone)]
enum Reply {
    /// A JSON document in frames of at most 16000 bytes, then the end frame (as burp does).
    Doc(Vec<u8>),
    /// These bytes, then keep listening.
    Raw(Vec<u8>),
    /// These bytes, then close the connection.
    RawThenClose(Vec<u8>),
    /// Never answer.
    Silence,
    /// `w` frames without end (until the client goes away).
    WarningFlood,
}

/// What the peer does once TLS is up.
#[derive(Clone)]
enum Mode {
    /// Log in like burp 3.1.4, then answer requests from the table (unknown ones get burp's
    /// `{"warning":"Unknown command"}`).
    Burp {
        version_warning: bool,
        replies: HashMap<&'static str, Reply>,
        /// Close the connection after this many requests (burp's idle timeout, a restart).
        close_after: Option<usize>,
    },
    /// Write these bytes at once, then read and drop whatever comes.
    Raw(Vec<u8>),
    /// Say nothing.
    Silent,
    /// Log in like burp up to the password, then send `w` frames without end.
    LoginFlood,
    /// Play a captured transcript: check each `>>` frame, send each `<<` frame.
    Replay(Vec<transcript::Line>),
}

fn burp(replies: &[(&'static str, Reply)]) -> Mode {
    Mode::Burp {
        version_warning: false,
        replies: replies.iter().cloned().collect(),
        close_after: None,
    }
}

struct Peer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Problems the replay peer saw (our bytes differing from the capture).
    mismatches: Arc<Mutex<Vec<String>>>,
}

async fn spawn_peer(pki: &Pki, require_client_cert: bool, mode: Mode) -> Peer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_peer_on(listener, pki, require_client_cert, mode)
}

fn spawn_peer_on(listener: TcpListener, pki: &Pki, require_client_cert: bool, mode: Mode) -> Peer {
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(pki.server_config(require_client_cert));
    let connections = Arc::new(AtomicUsize::new(0));
    let mismatches = Arc::new(Mutex::new(Vec::new()));
    let (count, problems) = (connections.clone(), mismatches.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (acceptor, mode, problems) = (acceptor.clone(), mode.clone(), problems.clone());
            tokio::spawn(async move {
                // A failed handshake (the client rejected us) just ends this connection.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(Wire::new(tls), mode, problems).await;
                }
            });
        }
    });
    Peer {
        addr,
        connections,
        mismatches,
    }
}

/// A framed stream on the peer's side.
struct Wire<S> {
    stream: S,
    decoder: Decoder,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    fn new(stream: S) -> Self {
        Wire {
            stream,
            decoder: Decoder::new(),
        }
    }

    async fn read(&mut self) -> Option<Frame> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(frame) = self.decoder.next_frame().ok()? {
                return Some(frame);
            }
            let n = self.stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            self.decoder.push(&buf[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    async fn send(&mut self, command: Command, text: &str) {
        self.write(&frame::encode(command, text.as_bytes()).unwrap())
            .await;
    }

    async fn send_doc(&mut self, doc: &[u8]) {
        for part in doc.chunks(16000) {
            self.write(&frame::encode(Command::Normal, part).unwrap())
                .await;
        }
        self.write(b"c0001\n").await;
    }

    async fn close(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// Sends the same warning until the client stops reading or goes away.
async fn flood<S: AsyncRead + AsyncWrite + Unpin>(wire: &mut Wire<S>) {
    let frame = frame::encode(Command::Warning, b"flood of warnings\n").unwrap();
    let burst = frame.repeat(64);
    while wire.stream.write_all(&burst).await.is_ok() {}
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut wire: Wire<S>,
    mode: Mode,
    problems: Arc<Mutex<Vec<String>>>,
) {
    match mode {
        Mode::Silent => {
            // Hold the connection open until the client gives up.
            while wire.read().await.is_some() {}
        }
        Mode::LoginFlood => {
            for answer in ["whoareyou:3.1.4", "okpassword"] {
                if wire.read().await.is_none() {
                    return;
                }
                wire.send(Command::Normal, answer).await;
            }
            if wire.read().await.is_some() {
                flood(&mut wire).await;
            }
        }
        Mode::Raw(bytes) => {
            wire.write(&bytes).await;
            while wire.read().await.is_some() {}
        }
        Mode::Replay(lines) => {
            for line in lines {
                if line.from_client {
                    let got = wire.read().await.map(|f| {
                        let mut b = Vec::new();
                        f.encode_into(&mut b).unwrap();
                        b
                    });
                    if got.as_deref() != Some(&line.bytes[..]) {
                        problems.lock().unwrap().push(format!(
                            "expected {}, got {:?}",
                            line.bytes.escape_ascii(),
                            got.map(|g| g.escape_ascii().to_string())
                        ));
                        wire.close().await;
                        return;
                    }
                } else {
                    wire.write(&line.bytes).await;
                }
            }
            while wire.read().await.is_some() {}
        }
        Mode::Burp {
            version_warning,
            replies,
            close_after,
        } => {
            let Some(hello) = wire.read().await else {
                return;
            };
            assert!(hello.text().starts_with("hello:"), "{hello:?}");
            wire.send(Command::Normal, "whoareyou:3.1.4").await;
            let Some(_cname) = wire.read().await else {
                return;
            };
            wire.send(Command::Normal, "okpassword").await;
            let Some(password) = wire.read().await else {
                return;
            };
            if password.text() != PASSWORD {
                wire.send(Command::Error, "unable to authorise on server")
                    .await;
                wire.close().await;
                return;
            }
            if version_warning {
                wire.send(
                    Command::Warning,
                    "Client 'monitor' has an unknown version. Please upgrade.\n",
                )
                .await;
            }
            wire.send(Command::Normal, "ok").await;
            for (want, answer) in [
                ("nocsr", "nocsr ok"),
                (
                    "extra_comms_begin",
                    "extra_comms_begin ok:autoupgrade:incexc:msg:",
                ),
                ("extra_comms_end", "extra_comms_end ok"),
            ] {
                let Some(got) = wire.read().await else { return };
                assert_eq!(got.text(), want);
                wire.send(Command::Normal, answer).await;
            }
            let Some(got) = wire.read().await else { return };
            assert_eq!(got.text(), "j:pretty-print-off");
            wire.send_doc(br#"{"warning":"Pretty print off"}"#).await;

            let mut served = 0;
            while let Some(request) = wire.read().await {
                let reply = replies
                    .get(&*request.text())
                    .cloned()
                    .unwrap_or(Reply::Doc(br#"{"warning":"Unknown command"}"#.to_vec()));
                match reply {
                    Reply::Doc(doc) => wire.send_doc(&doc).await,
                    Reply::Raw(bytes) => wire.write(&bytes).await,
                    Reply::RawThenClose(bytes) => {
                        wire.write(&bytes).await;
                        wire.close().await;
                        return;
                    }
                    Reply::Silence => {}
                    Reply::WarningFlood => {
                        flood(&mut wire).await;
                        return;
                    }
                }
                served += 1;
                if close_after == Some(served) {
                    wire.close().await;
                    return;
                }
            }
        }
    }
}

/// A plain TCP peer (no TLS): writes `bytes` (if any) and holds the connection, or closes it
/// at once when `close` is set.
async fn spawn_plain_peer(bytes: &'static [u8], close: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.write_all(bytes).await;
                if close {
                    return;
                }
                let mut buf = [0u8; 1024];
                while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

fn clients_doc(n: usize) -> Vec<u8> {
    let mut doc = br#"{"clients":["#.to_vec();
    for i in 0..n {
        if i > 0 {
            doc.push(b',');
        }
        doc.extend_from_slice(
            format!(r#"{{"name":"client{i:04}","run_status":"idle","protocol":1,"backups":[]}}"#)
                .as_bytes(),
        );
    }
    doc.extend_from_slice(b"]}");
    doc
}

/// Asserts that `started` is within the timeout plus scheduling slack.
fn assert_bounded(started: Instant, timeout: Duration) {
    let took = started.elapsed();
    assert!(
        took >= timeout.saturating_sub(Duration::from_millis(50))
            && took < timeout + Duration::from_secs(2),
        "took {took:?} for a {timeout:?} timeout"
    );
}

// ---------------------------------------------------------------------------------------
// Happy paths

#[tokio::test]
async fn logs_in_and_answers_requests() {
    let pki = pki("burpserver");
    let c = br#"{"clients":[{"name":"monitor","run_status":"idle","protocol":1,"backups":[]}]}"#;
    let peer = spawn_peer(
        &pki,
        true,
        burp(&[
            ("c:", Reply::Doc(c.to_vec())),
            (
                "c:nosuch",
                Reply::Doc(br#"{"warning":"Could not find client: nosuch"}"#.to_vec()),
            ),
        ]),
    )
    .await;
    let mut client = StatusClient::connect(&pki.target(peer.addr)).await.unwrap();
    assert_eq!(client.server_version(), "3.1.4");
    assert!(client.server_features().starts_with("autoupgrade"));
    assert!(client.login_warnings().is_empty());
    assert_eq!(client.request("c:").await.unwrap(), c);
    match client.request("c:nosuch").await {
        Err(e @ Error::Warning(_)) => {
            assert!(!e.needs_reconnect());
            assert_eq!(e.to_string(), "burp warning: Could not find client: nosuch");
        }
        other => panic!("expected a warning, got {other:?}"),
    }
    // The connection survives a warning.
    assert_eq!(client.request("c:").await.unwrap(), c);
    assert!(
        matches!(client.request("j:bogus").await, Err(Error::Warning(w)) if w == "Unknown command")
    );
    assert_eq!(peer.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn reassembles_a_2000_client_reply() {
    let pki = pki("burpserver");
    let doc = clients_doc(2000);
    assert!(doc.len() > 128_000, "{}", doc.len());
    let peer = spawn_peer(&pki, true, burp(&[("c:", Reply::Doc(doc.clone()))])).await;
    let mut client = StatusClient::connect(&pki.target(peer.addr)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(client.request("c:").await.unwrap(), doc);
    }
}

#[tokio::test]
async fn tolerates_the_version_warning_at_login() {
    let pki = pki("burpserver");
    let mode = Mode::Burp {
        version_warning: true,
        replies: HashMap::new(),
        close_after: None,
    };
    let peer = spawn_peer(&pki, true, mode).await;
    let client = StatusClient::connect(&pki.target(peer.addr)).await.unwrap();
    assert_eq!(
        client.login_warnings(),
        ["Client 'monitor' has an unknown version. Please upgrade."]
    );
}

#[tokio::test]
async fn connects_without_a_client_certificate_when_none_is_configured() {
    let pki = pki("burpserver");
    let peer = spawn_peer(&pki, false, burp(&[])).await;
    let mut target = pki.target(peer.addr);
    target.tls_cert = None;
    target.tls_key = None;
    StatusClient::connect(&target).await.unwrap();

    // A server that requires one refuses us, as a TLS error.
    let strict = spawn_peer(&pki, true, burp(&[])).await;
    target.port = strict.addr.port();
    match StatusClient::connect(&target).await {
        Err(Error::Tls { reason, .. }) => assert!(reason.contains("alert"), "{reason}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn server_cn_matches_case_insensitively() {
    let pki = pki("BurpServer");
    let peer = spawn_peer(&pki, true, burp(&[])).await;
    StatusClient::connect(&pki.target(peer.addr)).await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Replays of real captures

/// Plays `file` (a capture of a real burp 3.1.4) and issues the requests it holds; checks
/// that we sent exactly the captured bytes and got the captured documents.
async fn replay(file: &str) {
    let text = std::fs::read_to_string(format!("tests/data/{file}")).unwrap();
    let all = transcript::parse(&text);
    // Drop exchanges whose reply the capture abbreviated ("...(2289 bytes)..."): from the
    // request before such a line to the next request.
    let mut lines: Vec<transcript::Line> = Vec::new();
    let mut skipping = false;
    for (i, line) in all.iter().enumerate() {
        if line.from_client {
            skipping = all[i + 1..]
                .iter()
                .take_while(|l| !l.from_client)
                .any(|l| l.abbreviated);
        }
        if !skipping {
            lines.push(line.clone());
        }
    }
    let handshake = lines
        .iter()
        .position(|l| l.from_client && l.bytes.ends_with(b"j:pretty-print-off"))
        .unwrap()
        + 3; // the request, the warning document, its end frame
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    for line in &lines[handshake..] {
        if line.from_client {
            expected.push((
                String::from_utf8(line.bytes[5..].to_vec()).unwrap(),
                Vec::new(),
            ));
        } else if line.bytes != b"c0001\n" {
            expected
                .last_mut()
                .unwrap()
                .1
                .extend_from_slice(&line.bytes[5..]);
        }
    }
    assert!(!expected.is_empty());

    let pki = pki("burpserver");
    let peer = spawn_peer(&pki, true, Mode::Replay(lines)).await;
    let mut client = StatusClient::connect(&pki.target(peer.addr)).await.unwrap();
    assert_eq!(client.server_version(), "3.1.4");
    for (request, doc) in expected {
        let got = client.request(&request).await;
        match custos_burp::session::warning_text(&doc) {
            Some(text) => assert!(
                matches!(&got, Err(Error::Warning(w)) if *w == text),
                "{request}: {got:?}"
            ),
            None => assert_eq!(got.unwrap(), doc, "{request}"),
        }
    }
    assert_eq!(*peer.mismatches.lock().unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn replays_the_captured_session() {
    replay("transcript.txt").await;
}

#[tokio::test]
async fn replays_a_captured_2000_client_reply_in_9_frames() {
    let text = std::fs::read_to_string("tests/data/transcript_2000_clients.txt").unwrap();
    let frames = transcript::parse(&text)
        .into_iter()
        .filter(|l| !l.from_client && l.bytes.len() > 16000)
        .count();
    assert_eq!(frames, 8, "8 full frames + 1 shorter one");
    replay("transcript_2000_clients.txt").await;
}

#[tokio::test]
async fn bad_password_capture_gives_auth_error() {
    let text = std::fs::read_to_string("tests/data/transcript_bad_password.txt").unwrap();
    let lines = transcript::parse(&text);
    let pki = pki("burpserver");
    let peer = spawn_peer(&pki, true, Mode::Replay(lines)).await;
    let mut target = pki.target(peer.addr);
    target.password = "wrongpass".into();
    match StatusClient::connect(&target).await {
        Err(Error::Auth { message, .. }) => assert_eq!(message, "unable to authorise on server"),
        other => panic!("expected Auth, got {other:?}"),
    }
    assert_eq!(*peer.mismatches.lock().unwrap(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    let pki = pki("burpserver");
    let peer = spawn_peer(&pki, true, burp(&[])).await;
    let mut target = pki.target(peer.addr);
    target.password = "not-the-password".into();
    let err = StatusClient::connect(&target).await.unwrap_err();
    assert!(
        matches!(&err, Error::Auth { message, .. } if message == "unable to authorise on server"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(!text.contains("not-the-password"));
    // burp says only "unable to authorise": the message says what decides it.
    for hint in ["`cname`", "`password`", "clientconfdir", "`restore_client`"] {
        assert!(text.contains(hint), "{hint} not in: {text}");
    }
}

#[tokio::test]
async fn cn_mismatch_is_a_tls_error_naming_the_cn() {
    let pki = pki("otherserver");
    let peer = spawn_peer(&pki, true, burp(&[])).await;
    match StatusClient::connect(&pki.target(peer.addr)).await {
        Err(Error::Tls { reason, .. }) => {
            assert!(
                reason.contains("\"otherserver\"") && reason.contains("burpserver"),
                "{reason}"
            );
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn untrusted_ca_is_a_tls_error() {
    let server_pki = pki("burpserver");
    let client_pki = pki("burpserver");
    let peer = spawn_peer(&server_pki, false, burp(&[])).await;
    let err = StatusClient::connect(&client_pki.target(peer.addr))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Tls { reason, .. } if reason.contains("tls_ca_cert")),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_ca_file_is_a_tls_error_naming_it() {
    let pki = pki("burpserver");
    let mut target = pki.target("127.0.0.1:9".parse().unwrap());
    target.tls_ca_cert = pki.dir.path().join("no-such-ca.pem");
    let err = StatusClient::connect(&target).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("tls_ca_cert") && text.contains("no-such-ca.pem"),
        "{text}"
    );
}

#[tokio::test]
async fn garbage_after_tls_is_a_protocol_error() {
    let pki = pki("burpserver");
    let peer = spawn_peer(
        &pki,
        true,
        Mode::Raw(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
    )
    .await;
    let err = StatusClient::connect(&pki.target(peer.addr))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("0x48")),
        "{err:?}"
    );

    // Garbage in place of a document.
    let peer = spawn_peer(&pki, true, burp(&[("c:", Reply::Raw(b"c00zz{}".to_vec()))])).await;
    let mut client = StatusClient::connect(&pki.target(peer.addr)).await.unwrap();
    let err = client.request("c:").await.unwrap_err();
    assert!(matches!(&err, Error::Protocol { .. }), "{err:?}");
    assert!(err.needs_reconnect());
}

#[tokio::test]
async fn oversized_frame_length_is_a_protocol_error() {
    let pki = pki("burpserver");
    let peer = spawn_peer(
        &pki,
        true,
        burp(&[("c:", Reply::Raw(b"cFFFF{\"clients\"".to_vec()))]),
    )
    .await;
    let mut client = StatusClient::connect(&pki.target(peer.addr)).await.unwrap();
    let err = client.request("c:").await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("65535")),
        "{err:?}"
    );
}

#[tokio::test]
async fn document_over_the_cap_is_too_large() {
    let pki = pki("burpserver");
    let peer = spawn_peer(&pki, true, burp(&[("c:", Reply::Doc(clients_doc(2000)))])).await;
    let mut target = pki.target(peer.addr);
    target.max_document = 100_000;
    let mut client = StatusClient::connect(&target).await.unwrap();
    let err = client.request("c:").await.unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: 100_000, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn silent_peer_after_tls_times_out() {
    let pki = pki("burpserver");
    let peer = spawn_peer(&pki, true, Mode::Silent).await;
    let mut target = pki.target(peer.addr);
    target.timeout = SHORT;
    let started = Instant::now();
    let err = StatusClient::connect(&target).await.unwrap_err();
    assert_bounded(started, SHORT);
    assert!(
        matches!(&err, Error::Timeout { request, timeout, .. } if request == "hello" && *timeout == SHORT),
        "{err:?}"
    );
}

#[tokio::test]
async fn unanswered_request_times_out() {
    let pki = pki("burpserver");
    let peer = spawn_peer(&pki, true, burp(&[("c:", Reply::Silence)])).await;
    let mut target = pki.target(peer.addr);
    target.timeout = SHORT;
    let mut client = StatusClient::connect(&target).await.unwrap();
    let started = Instant::now();
    let err = client.request("c:").await.unwrap_err();
    assert_bounded(started, SHORT);
    assert!(
        matches!(&err, Error::Timeout { request, .. } if request == "c:"),
        "{err:?}"
    );
    assert!(err.needs_reconnect());
}

#[tokio::test]
async fn eof_mid_document_is_eof() {
    let pki = pki("burpserver");
    let mut partial = frame::encode(Command::Normal, &[b'x'; 16000]).unwrap();
    partial.extend_from_slice(b"c3E80{\"clients\":[");
    let peer = spawn_peer(&pki, true, burp(&[("c:", Reply::RawThenClose(partial))])).await;
    let mut client = StatusClient::connect(&pki.target(peer.addr)).await.unwrap();
    let err = client.request("c:").await.unwrap_err();
    assert!(matches!(err, Error::Eof { .. }), "{err:?}");
}

#[tokio::test]
async fn plain_tcp_peer_that_never_speaks_times_out() {
    let addr = spawn_plain_peer(b"", false).await;
    let pki = pki("burpserver");
    let mut target = pki.target(addr);
    target.timeout = SHORT;
    let started = Instant::now();
    let err = StatusClient::connect(&target).await.unwrap_err();
    assert_bounded(started, SHORT);
    assert!(
        matches!(&err, Error::Timeout { request, .. } if request == "TLS handshake"),
        "{err:?}"
    );
}

#[tokio::test]
async fn plain_tcp_peer_speaking_burp_frames_is_a_tls_error() {
    let addr = spawn_plain_peer(b"c000Fwhoareyou:3.1.4", false).await;
    let pki = pki("burpserver");
    let err = StatusClient::connect(&pki.target(addr)).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
}

#[tokio::test]
async fn peer_closing_before_tls_is_a_tls_error_with_a_hint() {
    // What burp does when max_status_children are busy.
    let addr = spawn_plain_peer(b"", true).await;
    let pki = pki("burpserver");
    let err = StatusClient::connect(&pki.target(addr)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Tls { reason, .. } if reason.contains("max_status_children")),
        "{err:?}"
    );
}

#[tokio::test]
async fn refused_connection_is_an_io_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pki = pki("burpserver");
    let err = StatusClient::connect(&pki.target(addr)).await.unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[tokio::test]
async fn a_cancelled_request_poisons_the_client() {
    let pki = pki("burpserver");
    let peer = spawn_peer(&pki, true, burp(&[("c:", Reply::Silence)])).await;
    let mut client = StatusClient::connect(&pki.target(peer.addr)).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), client.request("c:"))
            .await
            .is_err()
    );
    let err = client.request("j:bogus").await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("cancelled")),
        "{err:?}"
    );
    assert!(!client.is_usable());
}

#[tokio::test]
async fn connection_replaces_a_client_whose_request_was_cancelled() {
    let pki = pki("burpserver");
    let c = br#"{"clients":[]}"#.to_vec();
    let peer = spawn_peer(
        &pki,
        true,
        burp(&[("c:", Reply::Doc(c.clone())), ("c:hang", Reply::Silence)]),
    )
    .await;
    let mut conn = Connection::new(pki.target(peer.addr));
    assert_eq!(conn.request("c:").await.unwrap(), c);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), conn.request("c:hang"))
            .await
            .is_err()
    );
    assert!(!conn.is_connected());
    // No error, no backoff: a fresh connection answers.
    assert_eq!(conn.request("c:").await.unwrap(), c);
    assert_eq!(conn.failures(), 0);
    assert_eq!(peer.connections.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------
// The reconnecting wrapper

#[tokio::test]
async fn connection_reuses_and_reconnects_transparently() {
    let pki = pki("burpserver");
    let c = br#"{"clients":[]}"#.to_vec();
    let mode = Mode::Burp {
        version_warning: false,
        replies: [("c:", Reply::Doc(c.clone()))].into_iter().collect(),
        close_after: Some(2),
    };
    let peer = spawn_peer(&pki, true, mode).await;
    let mut conn = Connection::new(pki.target(peer.addr));
    assert!(!conn.is_connected());
    for _ in 0..5 {
        assert_eq!(conn.request("c:").await.unwrap(), c);
        assert!(conn.is_connected());
        assert_eq!(conn.last_error(), None);
    }
    // 2 requests per connection: the server closed twice, we never failed a request.
    assert_eq!(peer.connections.load(Ordering::SeqCst), 3);
    assert_eq!(conn.failures(), 0);
    // Silent reconnects are still contact attempts (burp_contact_attempts_total).
    assert_eq!(conn.connect_attempts(), 3);
}

#[tokio::test]
async fn connection_backs_off_from_a_dead_server_and_recovers() {
    let pki = pki("burpserver");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let backoff = Duration::from_millis(300);
    let mut conn = Connection::new(pki.target(addr)).with_backoff(backoff, Duration::from_secs(5));

    assert!(matches!(conn.request("c:").await, Err(Error::Io { .. })));
    assert!(conn.last_error().is_some());
    // Within the backoff no attempt is made.
    match conn.request("c:").await {
        Err(Error::Backoff {
            retry_in,
            last_error,
            ..
        }) => {
            assert!(retry_in <= backoff);
            assert_eq!(Some(last_error.as_str()), conn.last_error());
        }
        other => panic!("expected Backoff, got {other:?}"),
    }
    tokio::time::sleep(backoff).await;
    assert!(matches!(conn.request("c:").await, Err(Error::Io { .. })));
    assert_eq!(conn.failures(), 2);
    assert_eq!(conn.connect_attempts(), 2, "backoff skips are not attempts");

    // The server comes back on the same port.
    let listener = TcpListener::bind(addr).await.unwrap();
    let c = br#"{"clients":[]}"#.to_vec();
    let peer = spawn_peer_on(listener, &pki, true, burp(&[("c:", Reply::Doc(c.clone()))]));
    tokio::time::sleep(backoff * 2).await;
    assert_eq!(conn.request("c:").await.unwrap(), c);
    assert!(conn.is_connected());
    assert_eq!(conn.last_error(), None);
    assert_eq!(conn.failures(), 0);
    assert_eq!(peer.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connection_drops_a_timed_out_connection_but_keeps_one_after_a_warning() {
    let pki = pki("burpserver");
    let c = br#"{"clients":[]}"#.to_vec();
    let peer = spawn_peer(
        &pki,
        true,
        burp(&[("c:", Reply::Doc(c.clone())), ("c:hang", Reply::Silence)]),
    )
    .await;
    let mut target = pki.target(peer.addr);
    target.timeout = SHORT;
    let mut conn =
        Connection::new(target).with_backoff(Duration::from_millis(100), Duration::from_secs(1));
    assert!(matches!(
        conn.request("c:nosuch").await,
        Err(Error::Warning(_))
    ));
    assert!(conn.is_connected());
    assert_eq!(conn.last_error(), None);
    assert!(matches!(
        conn.request("c:hang").await,
        Err(Error::Timeout { .. })
    ));
    assert!(!conn.is_connected());
    assert!(conn.last_error().unwrap().contains("c:hang"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(conn.request("c:").await.unwrap(), c);
    assert_eq!(peer.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn wrong_password_through_connection_backs_off() {
    let pki = pki("burpserver");
    let peer = spawn_peer(&pki, true, burp(&[])).await;
    let mut target = pki.target(peer.addr);
    target.password = "nope".into();
    let mut conn = Connection::new(target);
    assert!(matches!(conn.request("c:").await, Err(Error::Auth { .. })));
    assert!(matches!(
        conn.request("c:").await,
        Err(Error::Backoff { .. })
    ));
    // One attempt only: the second call did not touch the server.
    assert_eq!(peer.connections.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// Hostile peers

#[tokio::test]
async fn endless_warnings_at_login_are_a_protocol_error() {
    let pki = pki("burpserver");
    let peer = spawn_peer(&pki, true, Mode::LoginFlood).await;
    let started = Instant::now();
    let err = StatusClient::connect(&pki.target(peer.addr))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("warnings")),
        "{err}"
    );
    assert!(err.needs_reconnect());
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
}

#[tokio::test]
async fn endless_warnings_to_a_request_disconnect_and_count_a_protocol_error() {
    use custos_burp::exporter::Poller;
    use custos_burp::snapshot::Snapshots;
    let pki = pki("burpserver");
    let peer = spawn_peer(&pki, true, burp(&[("c:", Reply::WarningFlood)])).await;
    let mut conn =
        Connection::new(pki.target(peer.addr)).with_backoff(Duration::ZERO, Duration::ZERO);
    let store = Snapshots::new(["s"]);
    let mut poller = Poller::new("s", Duration::from_secs(5));
    let started = Instant::now();
    poller.poll(&mut conn, &store).await;
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    let s = store.get("s").unwrap();
    assert!(!s.up);
    assert_eq!(s.errors.get("protocol"), 1);
    assert!(s.last_error.as_deref().unwrap().contains("warnings"));
    assert!(!conn.is_connected(), "the flooding peer is disconnected");
    // Each poll meets the same flood: bounded again, counted again.
    poller.poll(&mut conn, &store).await;
    assert_eq!(store.get("s").unwrap().errors.get("protocol"), 2);
    assert_eq!(peer.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn exporter_against_a_warning_flood_logs_little_and_counts_protocol_errors() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = pki("burpserver");
    let peer = rt.block_on(spawn_peer(&pki, true, burp(&[("c:", Reply::WarningFlood)])));
    let mut ex = common::Exporter::start(&[entry("flood", &pki, peer.addr)]);
    let kind = [("server", "flood"), ("kind", "protocol")];
    ex.wait_metrics("two protocol errors", TIMEOUT, |m| {
        m.value("burp_poll_errors_total", &kind)
            .filter(|n| *n >= 2.0)
    });
    let log = ex.log();
    let polls = peer.connections.load(Ordering::SeqCst);
    // Per connection: the first warning, one "repeated N more times" line and the poll error
    // (was: a line per frame, about 100,000 a second).
    let lines = log.lines().count();
    assert!(
        lines <= 5 + 4 * polls,
        "{lines} log lines for {polls} polls:\n{log}"
    );
    assert!(
        log.contains("repeated that warning 63 more time(s)"),
        "{log}"
    );
}

#[test]
fn once_escapes_control_characters_in_server_text() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = pki("burpserver");
    let names = br#"{"clients":[{"name":"evil\u001b[2J\u001b]0;pwned\u0007","run_status":"idle\r\nfake line","backups":[]}]}"#;
    let names_peer = rt.block_on(spawn_peer(
        &pki,
        true,
        burp(&[("c:", Reply::Doc(names.to_vec()))]),
    ));
    let error = frame::encode(Command::Error, b"bad \x1b[31mred\x1b[0m news").unwrap();
    let error_peer = rt.block_on(spawn_peer(&pki, true, burp(&[("c:", Reply::Raw(error))])));
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(
        dir.path(),
        common::free_port(),
        &[
            entry("names", &pki, names_peer.addr),
            entry("errors", &pki, error_peer.addr),
        ],
        "",
    );
    let (status, stdout, stderr) = common::run_once(&cfg, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "control characters reach the terminal: {stdout:?}"
    );
    assert!(
        stdout.contains("evil\\u{1b}[2J\\u{1b}]0;pwned\\u{7}"),
        "{stdout}"
    );
    assert!(stdout.contains("idle\\u{d}\\u{a}fake line"), "{stdout}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("fake line")),
        "{stdout}"
    );
    assert!(
        stdout.contains("bad \\u{1b}[31mred\\u{1b}[0m news"),
        "{stdout}"
    );
}

#[test]
fn repeated_clients_and_log_names_give_no_duplicate_series() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = pki("burpserver");
    let doc = br#"{"clients":[
        {"name":"a","run_status":"idle","backups":[{"number":1,"timestamp":1,"flags":["current"],"logs":{"list":["backup","odd","backup","odd"]}}]},
        {"name":"a","run_status":"running","backups":[]},
        {"name":"b","run_status":"idle","backups":[]}]}"#;
    let peer = rt.block_on(spawn_peer(
        &pki,
        true,
        burp(&[("c:", Reply::Doc(doc.to_vec()))]),
    ));
    let mut ex = common::Exporter::start(&[entry("dup", &pki, peer.addr)]);
    let server = [("server", "dup")];
    ex.wait_metrics("parse errors of the first poll", TIMEOUT, |m| {
        m.value("burp_parse_errors_total", &server)
            .filter(|n| *n >= 3.0)
    });
    let body = ex.get("/metrics");
    let mut seen = std::collections::HashSet::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let series = line.rsplit_once(' ').map_or(line, |(k, _)| k);
        assert!(seen.insert(series), "duplicate series {series}:\n{body}");
    }
    let a = [("server", "dup"), ("name", "a")];
    let m = common::Metrics::parse(&body);
    assert_eq!(
        m.value(
            "burp_client_run_status",
            &[a[0], a[1], ("burp_client_run_status", "idle")]
        ),
        Some(1.0),
        "the first entry of a wins"
    );
    assert!(
        body.contains(r#"log="odd""#),
        "the unknown log is still shown once:\n{body}"
    );
    let log = ex.log();
    assert!(log.contains(r#"client "a" listed again"#), "{log}");
    assert!(log.contains(r#"log "backup" listed again"#), "{log}");
}

#[tokio::test]
async fn a_few_warnings_with_a_reply_are_fine() {
    let pki = pki("burpserver");
    let w = frame::encode(Command::Warning, b"odd\n")
        .unwrap()
        .repeat(10);
    let mut raw = w.clone();
    raw.extend_from_slice(&frame::encode(Command::Normal, br#"{"clients":[]}"#).unwrap());
    raw.extend_from_slice(b"c0001\n");
    let peer = spawn_peer(&pki, true, burp(&[("c:", Reply::Raw(raw))])).await;
    let mut client = StatusClient::connect(&pki.target(peer.addr)).await.unwrap();
    assert_eq!(client.request("c:").await.unwrap(), br#"{"clients":[]}"#);
}

// ---------------------------------------------------------------------------------------
// The binary against hostile HTTP clients

/// The exporter's entry for a burp server at `addr` with this PKI.
fn entry(name: &str, pki: &Pki, addr: SocketAddr) -> common::ClientEntry {
    common::ClientEntry {
        name: name.into(),
        burp_host: addr.ip().to_string(),
        burp_port: addr.port(),
        burp_cname: "burpserver".into(),
        cname: "monitor".into(),
        password: PASSWORD.into(),
        tls_ca_cert: pki.ca_pem.clone(),
        tls_cert: pki.client_cert.clone(),
        tls_key: pki.client_key.clone(),
    }
}

#[test]
fn sigterm_with_a_stalled_http_client_exits_within_the_grace() {
    use std::io::Write as _;
    let pki = pki("burpserver");
    // No burp server at all: shutdown must not depend on one.
    let nowhere = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let mut ex = common::Exporter::start(&[entry("gone", &pki, nowhere)]);
    // Half a request header: hyper waits for the rest during a graceful shutdown.
    let mut stalled = std::net::TcpStream::connect(ex.addr).unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    ex.wait_metrics("the stalled client accepted", TIMEOUT, |m| {
        (m.value("custos_http_connections_open", &[]) == Some(2.0)).then_some(())
    });
    let grace = custos_kit::http::Limits::default().shutdown_grace;
    let (status, took) = ex.terminate(grace + Duration::from_secs(10));
    assert!(status.success(), "{status}; log:\n{}", ex.log());
    assert!(took >= grace - Duration::from_millis(200), "{took:?}");
    assert!(took < grace + Duration::from_secs(3), "{took:?}");
    assert!(ex.log().contains("closing them"), "{}", ex.log());
    drop(stalled);
}
