//! `type: gelf`: a GELF 1.1 message per sample to Graylog, over UDP (optionally gzipped,
//! chunked when larger than a datagram) or TCP (`\0`-terminated, uncompressed).
//!
//! Fields are the original's (`host` = server id, `_facility`, `_sessions`, `_backend`,
//! `_queued_sessions`, `_active_backends`, `_http_4xx`, `_http_5xx`) plus the new columns;
//! `_sessions` is now `scur`. A value HAProxy does not report is left out, not sent as 0.

use super::{missing, Built, Context, Delivered, Sink, SinkConfig, SinkError, TaskSink, Write};
use crate::sample::{Batch, RowType, Sample};
use custos_kit::config::{values, Invalid, Validate};
use serde::Deserialize;
use std::borrow::Cow;
use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

/// The GELF chunk magic bytes.
pub const CHUNK_MAGIC: [u8; 2] = [0x1e, 0x0f];
/// Bytes of a chunk header: magic, 8-byte message id, sequence number, sequence count.
pub const CHUNK_HEADER: usize = 12;
/// Most chunks a GELF message may have.
pub const MAX_CHUNKS: usize = 128;
/// Time a TCP connect or write may take.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// Default GELF facility (the original's default for its Graylog backend).
pub const DEFAULT_FACILITY: &str = "haproxy-session-mon";
/// Default GELF UDP chunk size: fits an Ethernet MTU after IP and UDP headers.
pub const DEFAULT_CHUNK_SIZE: usize = 1420;

/// GELF transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GelfProtocol {
    Udp,
    Tcp,
}

/// `type: gelf`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Keys")]
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

/// The keys as written (`~` reads as absent, as the original's `.get()`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    #[serde(default)]
    host: Option<String>,
    #[serde(default, deserialize_with = "values::port")]
    port: Option<u16>,
    #[serde(default)]
    facility: Option<String>,
    #[serde(default)]
    protocol: Option<GelfProtocol>,
    #[serde(default)]
    compress: Option<bool>,
    #[serde(default, rename = "chunk-size")]
    chunk_size: Option<usize>,
}

impl TryFrom<Keys> for GelfBackend {
    type Error = String;

    fn try_from(k: Keys) -> Result<GelfBackend, String> {
        Ok(GelfBackend {
            host: k.host.ok_or_else(|| missing("host"))?,
            port: k.port.ok_or_else(|| missing("port"))?,
            facility: k.facility.unwrap_or_else(|| DEFAULT_FACILITY.into()),
            protocol: k.protocol.unwrap_or(GelfProtocol::Udp),
            compress: k.compress.unwrap_or(false),
            chunk_size: k.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE),
        })
    }
}

impl Validate for GelfBackend {
    fn validate(&self) -> Result<(), Invalid> {
        if self.host.trim().is_empty() {
            return Err(Invalid::new("host", &self.host, "must not be empty"));
        }
        if !(64..=65_000).contains(&self.chunk_size) {
            return Err(Invalid::new(
                "chunk-size",
                self.chunk_size,
                "must be 64-65000",
            ));
        }
        Ok(())
    }
}

impl SinkConfig for GelfBackend {
    fn build(&self, _: &Context) -> Result<Built, SinkError> {
        Ok(Built::Sink(Sink::Task(Box::new(GelfSink::new(
            self.clone(),
        )))))
    }
}

impl TaskSink for GelfSink {
    fn write<'a>(&'a mut self, batch: &'a Batch) -> Write<'a> {
        Box::pin(GelfSink::write(self, batch))
    }
}

#[derive(Debug)]
pub struct GelfSink {
    cfg: GelfBackend,
    udp: Option<UdpSocket>,
    tcp: Option<TcpStream>,
    /// A message was left out before (the same row is usually too large at every poll: the
    /// warning is logged once, then at debug level).
    warned_too_large: bool,
    /// The facility as a JSON string, escaped once.
    facility: Vec<u8>,
    /// A batch's messages, one after the other (kept across polls: no allocation per message).
    buf: Vec<u8>,
    /// Where each message of `buf` ends.
    ends: Vec<usize>,
}

impl GelfSink {
    pub fn new(cfg: GelfBackend) -> GelfSink {
        let mut facility = Vec::new();
        json_str(&mut facility, &cfg.facility);
        GelfSink {
            cfg,
            udp: None,
            tcp: None,
            warned_too_large: false,
            facility,
            buf: Vec::new(),
            ends: Vec::new(),
        }
    }

    fn target(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port)
    }

    /// Sends every sample of the batch; the first failure ends the batch (and drops the socket,
    /// so the next batch resolves and connects again). A message too large for 128 UDP chunks
    /// is left out, logged and counted, and the rest are sent.
    pub async fn write(&mut self, batch: &Batch) -> Result<Delivered, SinkError> {
        let batch_fields = BatchFields::of(batch, &self.facility);
        self.buf.clear();
        self.ends.clear();
        for s in &batch.samples {
            write_message(&mut self.buf, &batch_fields, s);
            self.ends.push(self.buf.len());
        }
        let r = match self.cfg.protocol {
            GelfProtocol::Udp => self.send_udp().await,
            GelfProtocol::Tcp => self.send_tcp().await,
        };
        if r.is_err() {
            self.udp = None;
            self.tcp = None;
        }
        r
    }

    /// The messages of the last [`GelfSink::write`], in order.
    fn messages(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| &self.buf[a..b])
    }

    async fn send_udp(&mut self) -> Result<Delivered, SinkError> {
        let target = self.target();
        let io = |what: &str, source| SinkError::Io {
            what: format!("GELF UDP {what} {target}"),
            source,
        };
        if self.udp.is_none() {
            let addr = tokio::net::lookup_host(&target)
                .await
                .map_err(|e| io("resolving", e))?
                .next()
                .ok_or_else(|| io("resolving", std::io::ErrorKind::NotFound.into()))?;
            let local = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let sock = UdpSocket::bind(local)
                .await
                .map_err(|e| io("binding for", e))?;
            // Connected, so an ICMP "port unreachable" surfaces as an error on a later send.
            sock.connect(addr)
                .await
                .map_err(|e| io("connecting to", e))?;
            self.udp = Some(sock);
        }
        let mut done = Delivered::default();
        let mut datagrams: Vec<Cow<'_, [u8]>> = Vec::with_capacity(self.ends.len());
        let mut too_large = false;
        for m in self.messages() {
            let payload = if self.cfg.compress {
                Cow::Owned(gzip(m))
            } else {
                Cow::Borrowed(m)
            };
            if payload.len() <= self.cfg.chunk_size {
                // Fits one datagram, sent from the batch buffer as it is.
                datagrams.push(payload);
                continue;
            }
            match chunks(payload.into_owned(), self.cfg.chunk_size, rand::random()) {
                Ok(d) => datagrams.extend(d.into_iter().map(Cow::Owned)),
                Err(e) => {
                    // Only this message cannot go (a proxy name of many kB): the rest can.
                    if self.warned_too_large || too_large {
                        tracing::debug!(target = %target, "GELF message left out: {e}");
                    } else {
                        tracing::warn!(target = %target, "GELF message left out (counted in \
                            haproxysessionmon_sink_skipped_messages_total): {e}");
                        too_large = true;
                    }
                    done.skipped += 1;
                }
            }
        }
        let sock = self.udp.as_ref().expect("connected above");
        let sent = send_all(sock, &datagrams).await;
        drop(datagrams);
        self.warned_too_large |= too_large;
        sent.map_err(|e| io("sending to", e))?;
        Ok(done)
    }

    async fn send_tcp(&mut self) -> Result<Delivered, SinkError> {
        let target = self.target();
        let what = format!("GELF TCP {target}");
        if self.tcp.is_none() {
            let s = tokio::time::timeout(TCP_TIMEOUT, TcpStream::connect(&target))
                .await
                .map_err(|_| SinkError::Timeout {
                    what: what.clone(),
                    timeout: TCP_TIMEOUT,
                })?
                .map_err(|source| SinkError::Io {
                    what: what.clone(),
                    source,
                })?;
            self.tcp = Some(s);
        }
        let mut buf = Vec::with_capacity(self.buf.len() + self.ends.len());
        for m in self.messages() {
            buf.extend_from_slice(m);
            buf.push(0);
        }
        let s = self.tcp.as_mut().expect("connected above");
        tokio::time::timeout(TCP_TIMEOUT, s.write_all(&buf))
            .await
            .map_err(|_| SinkError::Timeout {
                what: what.clone(),
                timeout: TCP_TIMEOUT,
            })?
            .map_err(|source| SinkError::Io { what, source })?;
        Ok(Delivered::default())
    }
}

/// What every message of one batch shares, as JSON text made once per batch.
pub struct BatchFields {
    /// `{"version":"1.1","host":"<server>","short_message":"`
    head: Vec<u8>,
    /// `,"timestamp":<seconds>,"level":6,"_facility":"<facility>","_backend":`
    middle: Vec<u8>,
    /// `,"_endpoint":"<endpoint>"`
    endpoint: Vec<u8>,
}

impl BatchFields {
    /// The shared parts of `batch`'s messages; `facility` is a JSON string (see [`json_str`]).
    pub fn of(batch: &Batch, facility: &[u8]) -> BatchFields {
        let mut head = br#"{"version":"1.1","host":"#.to_vec();
        json_str(&mut head, &batch.server);
        head.extend_from_slice(br#","short_message":""#);
        let timestamp = batch
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0);
        let mut middle = br#","timestamp":"#.to_vec();
        // serde_json's float text (shortest round trip, `1.5`, `1700000000.0`), once a batch.
        let _ = serde_json::to_writer(&mut middle, &timestamp);
        middle.extend_from_slice(br#","level":6,"_facility":"#);
        middle.extend_from_slice(facility);
        middle.extend_from_slice(br#","_backend":"#);
        let mut endpoint = br#","_endpoint":"#.to_vec();
        json_str(&mut endpoint, &batch.endpoint);
        BatchFields {
            head,
            middle,
            endpoint,
        }
    }
}

/// Appends the GELF 1.1 message of one sample: the original's fields first (`version`, `host`,
/// `short_message`, `timestamp`, `level`, `_facility`, `_backend`, `_sessions`,
/// `_queued_sessions`, `_active_backends`, `_http_4xx`, `_http_5xx`), then `_svname`,
/// `_row_type`, `_endpoint`, `_session_rate`, `_max_sessions`, `_session_limit`,
/// `_backup_servers`, `_status`. A value HAProxy does not report is left out, not sent as 0.
///
/// Written by hand rather than through serde: the parts every message of a batch shares are
/// escaped once per batch, and a name with nothing to escape is copied as it is (serde's
/// per-message serialization was a quarter of a poll's instructions).
pub fn write_message(out: &mut Vec<u8>, b: &BatchFields, s: &Sample) {
    let c = &s.counts;
    out.reserve(b.head.len() + b.middle.len() + b.endpoint.len() + 4 * s.proxy.len() + 320);
    out.extend_from_slice(&b.head);
    // short_message: `<scur> concurrent requests measured for backend "<proxy>"`.
    match c.scur {
        Some(n) => push_u64(out, n),
        None => out.extend_from_slice(b"unknown"),
    }
    out.extend_from_slice(b" concurrent requests measured for ");
    out.extend_from_slice(s.row_type.as_str().as_bytes());
    out.extend_from_slice(br#" \""#);
    json_str_body(out, &s.proxy);
    if matches!(s.row_type, RowType::Server | RowType::Listener) {
        out.push(b'/');
        json_str_body(out, &s.svname);
    }
    out.extend_from_slice(br#"\"""#);
    out.extend_from_slice(&b.middle);
    json_str(out, &s.proxy);
    let number = |out: &mut Vec<u8>, key: &[u8], v: Option<u64>| {
        if let Some(v) = v {
            out.extend_from_slice(key);
            push_u64(out, v);
        }
    };
    number(out, br#","_sessions":"#, c.scur);
    number(out, br#","_queued_sessions":"#, c.qcur);
    number(out, br#","_active_backends":"#, c.act);
    number(out, br#","_http_4xx":"#, c.hrsp_4xx);
    number(out, br#","_http_5xx":"#, c.hrsp_5xx);
    out.extend_from_slice(br#","_svname":"#);
    json_str(out, &s.svname);
    out.extend_from_slice(br#","_row_type":""#);
    out.extend_from_slice(s.row_type.as_str().as_bytes());
    out.push(b'"');
    out.extend_from_slice(&b.endpoint);
    number(out, br#","_session_rate":"#, c.rate);
    number(out, br#","_max_sessions":"#, c.smax);
    number(out, br#","_session_limit":"#, c.slim);
    number(out, br#","_backup_servers":"#, c.bck);
    if let Some(status) = &s.status {
        out.extend_from_slice(br#","_status":"#);
        json_str(out, status);
    }
    out.push(b'}');
}

/// The GELF message of one sample, alone (what [`GelfSink::write`] sends for it).
pub fn encode(batch: &Batch, s: &Sample, facility: &str) -> Vec<u8> {
    let mut f = Vec::new();
    json_str(&mut f, facility);
    let mut out = Vec::new();
    write_message(&mut out, &BatchFields::of(batch, &f), s);
    out
}

/// Appends `v` in decimal (what `write!` does, without the formatting machinery: a tenth of
/// its instructions, and a message has up to ten numbers).
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `text` as a JSON string, quotes included.
pub fn json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    json_str_body(out, text);
    out.push(b'"');
}

/// Appends `text` escaped for inside a JSON string, as serde_json escapes it: `"`, `\\` and the
/// control characters (`\n`, `\t`... or `\u00XX`); everything else, UTF-8 included, as it is.
fn json_str_body(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let needs = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    if !bytes.iter().any(|&b| needs(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(br#"\""#),
            b'\\' => out.extend_from_slice(br"\\"),
            b'\n' => out.extend_from_slice(br"\n"),
            b'\r' => out.extend_from_slice(br"\r"),
            b'\t' => out.extend_from_slice(br"\t"),
            0x08 => out.extend_from_slice(br"\b"),
            0x0c => out.extend_from_slice(br"\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(br"\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// gzip of `data` (GELF UDP accepts gzip or zlib; Graylog detects which).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// Most datagrams one `sendmmsg` call takes (Linux's `UIO_MAXIOV`).
const SENDMMSG_MAX: usize = 1024;

/// Sends `datagrams` in order on a connected socket, as many per system call as the kernel
/// takes (`sendmmsg`): a poll of a 24-backend HAProxy is one call instead of 24 `send`s. (An
/// earlier measurement found no gain; measured again side by side with the per-datagram
/// sends once the rest of a poll had become cheaper, it saves a sixth of a fetch's CPU.) The
/// first datagram the kernel refuses ends the batch with its error.
pub async fn send_all<D: AsRef<[u8]>>(sock: &UdpSocket, datagrams: &[D]) -> std::io::Result<()> {
    let mut sent = 0;
    while sent < datagrams.len() {
        let part = &datagrams[sent..datagrams.len().min(sent + SENDMMSG_MAX)];
        sent += sock
            .async_io(tokio::io::Interest::WRITABLE, || sendmmsg(sock, part))
            .await?;
    }
    Ok(())
}

/// One `sendmmsg` of `datagrams` (not empty): how many the kernel took (at least one), or the
/// error of the first.
#[cfg(target_os = "linux")]
fn sendmmsg<D: AsRef<[u8]>>(sock: &UdpSocket, datagrams: &[D]) -> std::io::Result<usize> {
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags};
    let iovs: Vec<[std::io::IoSlice<'_>; 1]> = datagrams
        .iter()
        .map(|d| [std::io::IoSlice::new(d.as_ref())])
        .collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = iovs
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut msgs: Vec<MMsgHdr<'_>> = iovs
        .iter()
        .zip(controls.iter_mut())
        .map(|(iov, control)| MMsgHdr::new(iov, control))
        .collect();
    let n = rustix::net::sendmmsg(sock, &mut msgs, SendFlags::empty())?;
    Ok(n.max(1))
}

/// Where there is no `sendmmsg`: the first datagram alone.
#[cfg(not(target_os = "linux"))]
fn sendmmsg<D: AsRef<[u8]>>(sock: &UdpSocket, datagrams: &[D]) -> std::io::Result<usize> {
    sock.try_send(datagrams[0].as_ref()).map(|_| 1)
}

/// The datagrams for one message: itself if it fits `chunk_size`, else GELF chunks.
pub fn chunks(payload: Vec<u8>, chunk_size: usize, id: [u8; 8]) -> Result<Vec<Vec<u8>>, SinkError> {
    if payload.len() <= chunk_size {
        return Ok(vec![payload]);
    }
    let per = chunk_size - CHUNK_HEADER;
    let count = payload.len().div_ceil(per);
    if count > MAX_CHUNKS {
        return Err(SinkError::TooLarge {
            bytes: payload.len(),
            chunk_size,
        });
    }
    Ok(payload
        .chunks(per)
        .enumerate()
        .map(|(i, part)| {
            let mut d = Vec::with_capacity(CHUNK_HEADER + part.len());
            d.extend_from_slice(&CHUNK_MAGIC);
            d.extend_from_slice(&id);
            d.push(i as u8);
            d.push(count as u8);
            d.extend_from_slice(part);
            d
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Counts;
    use serde::Serialize;
    use serde_json::Value;
    use std::io::Read;
    use std::time::SystemTime;

    fn json(b: &Batch, s: &Sample, facility: &str) -> Value {
        serde_json::from_slice(&encode(b, s, facility)).unwrap()
    }

    fn batch(samples: Vec<Sample>) -> Batch {
        Batch {
            server: "lb1".into(),
            endpoint: "http://lb1/;csv".into(),
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_500),
            samples,
        }
    }

    fn sample(proxy: &str, scur: Option<u64>) -> Sample {
        Sample {
            proxy: proxy.into(),
            svname: "BACKEND".into(),
            row_type: RowType::Backend,
            status: Some("UP".into()),
            counts: Counts {
                scur,
                qcur: Some(1),
                ..Counts::default()
            },
        }
    }

    #[test]
    fn original_fields_with_scur_as_sessions() {
        let b = batch(vec![sample("be_app", Some(3))]);
        let m = json(&b, &b.samples[0], "fac");
        assert_eq!(m["version"], "1.1");
        assert_eq!(m["host"], "lb1");
        assert_eq!(
            m["short_message"],
            "3 concurrent requests measured for backend \"be_app\""
        );
        assert_eq!(m["timestamp"], 1.5);
        assert_eq!(m["level"], 6);
        assert_eq!(m["_facility"], "fac");
        assert_eq!(m["_sessions"], 3);
        assert_eq!(m["_backend"], "be_app");
        assert_eq!(m["_queued_sessions"], 1);
        assert!(m.get("_http_4xx").is_none(), "unknown is left out, not 0");
        for k in m.as_object().unwrap().keys() {
            assert!(k != "_id");
            if let Some(name) = k.strip_prefix('_') {
                assert!(name
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_.-".contains(c)));
            }
        }
        let x = sample("x", None);
        let m = json(&b, &x, "fac");
        assert!(m["short_message"].as_str().unwrap().starts_with("unknown "));
        assert!(m.get("_sessions").is_none());
    }

    /// The message as serde_json wrote it before the hand-written encoder: the reference
    /// the encoder must match byte for byte.
    #[derive(Serialize)]
    struct Reference<'a> {
        version: &'static str,
        host: &'a str,
        short_message: String,
        timestamp: f64,
        level: u8,
        #[serde(rename = "_facility")]
        facility: &'a str,
        #[serde(rename = "_backend")]
        backend: &'a str,
        #[serde(rename = "_sessions", skip_serializing_if = "Option::is_none")]
        sessions: Option<u64>,
        #[serde(rename = "_queued_sessions", skip_serializing_if = "Option::is_none")]
        queued_sessions: Option<u64>,
        #[serde(rename = "_active_backends", skip_serializing_if = "Option::is_none")]
        active_backends: Option<u64>,
        #[serde(rename = "_http_4xx", skip_serializing_if = "Option::is_none")]
        http_4xx: Option<u64>,
        #[serde(rename = "_http_5xx", skip_serializing_if = "Option::is_none")]
        http_5xx: Option<u64>,
        #[serde(rename = "_svname")]
        svname: &'a str,
        #[serde(rename = "_row_type")]
        row_type: &'static str,
        #[serde(rename = "_endpoint")]
        endpoint: &'a str,
        #[serde(rename = "_session_rate", skip_serializing_if = "Option::is_none")]
        session_rate: Option<u64>,
        #[serde(rename = "_max_sessions", skip_serializing_if = "Option::is_none")]
        max_sessions: Option<u64>,
        #[serde(rename = "_session_limit", skip_serializing_if = "Option::is_none")]
        session_limit: Option<u64>,
        #[serde(rename = "_backup_servers", skip_serializing_if = "Option::is_none")]
        backup_servers: Option<u64>,
        #[serde(rename = "_status", skip_serializing_if = "Option::is_none")]
        status: Option<&'a str>,
    }

    fn reference(b: &Batch, s: &Sample, facility: &str) -> Vec<u8> {
        let c = &s.counts;
        let what = match s.row_type {
            RowType::Backend | RowType::Frontend => {
                format!("{} \"{}\"", s.row_type.as_str(), s.proxy)
            }
            RowType::Server | RowType::Listener => {
                format!("{} \"{}/{}\"", s.row_type.as_str(), s.proxy, s.svname)
            }
        };
        let n = c
            .scur
            .map_or_else(|| "unknown".to_string(), |v| v.to_string());
        serde_json::to_vec(&Reference {
            version: "1.1",
            host: &b.server,
            short_message: format!("{n} concurrent requests measured for {what}"),
            timestamp: b
                .time
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0),
            level: 6,
            facility,
            backend: &s.proxy,
            sessions: c.scur,
            queued_sessions: c.qcur,
            active_backends: c.act,
            http_4xx: c.hrsp_4xx,
            http_5xx: c.hrsp_5xx,
            svname: &s.svname,
            row_type: s.row_type.as_str(),
            endpoint: &b.endpoint,
            session_rate: c.rate,
            max_sessions: c.smax,
            session_limit: c.slim,
            backup_servers: c.bck,
            status: s.status.as_deref(),
        })
        .unwrap()
    }

    proptest::proptest! {
        /// Any names (quotes, backslashes, control characters, any UTF-8), any counts, any
        /// row type and time: the same bytes as serde_json's encoding of the message.
        #[test]
        fn encoder_matches_serde_json(
            server in "\\PC{0,12}|[\"\\\\\u{0}-\u{1f}a]{0,6}",
            endpoint in "\\PC{0,20}",
            facility in "\\PC{0,8}|[\"\\\\\u{0}-\u{1f}]{0,4}",
            proxy in "\\PC{0,16}|[\"\\\\\u{0}-\u{1f}\u{7f}é/]{0,8}",
            svname in "\\PC{0,8}|[\"\\\\\u{0}-\u{1f}]{0,4}",
            status in proptest::option::of("\\PC{0,8}|[\"\\\\\u{0}-\u{1f}]{0,4}"),
            row_type in 0u64..4,
            counts in proptest::collection::vec(proptest::option::of(proptest::num::u64::ANY), 9),
            millis in 0u64..4_000_000_000_000,
        ) {
            let b = Batch {
                server: server.as_str().into(),
                endpoint: endpoint.as_str().into(),
                time: SystemTime::UNIX_EPOCH + Duration::from_millis(millis),
                samples: vec![Sample {
                    proxy,
                    svname,
                    row_type: RowType::from_code(row_type).unwrap(),
                    status,
                    counts: Counts {
                        scur: counts[0],
                        rate: counts[1],
                        qcur: counts[2],
                        smax: counts[3],
                        slim: counts[4],
                        act: counts[5],
                        bck: counts[6],
                        hrsp_4xx: counts[7],
                        hrsp_5xx: counts[8],
                        extra: None,
                    },
                }],
            };
            let s = &b.samples[0];
            let ours = encode(&b, s, &facility);
            let want = reference(&b, s, &facility);
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&want)
            );
        }
    }

    #[test]
    fn chunking_per_spec() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let id = *b"ABCDEFGH";
        let c = chunks(payload.clone(), 1000, id).unwrap();
        assert_eq!(c.len(), 4); // 988 bytes per chunk
        for (i, d) in c.iter().enumerate() {
            assert!(d.len() <= 1000);
            assert_eq!(&d[..2], &CHUNK_MAGIC);
            assert_eq!(&d[2..10], &id);
            assert_eq!((d[10], d[11]), (i as u8, 4));
        }
        let joined: Vec<u8> = c.iter().flat_map(|d| d[12..].to_vec()).collect();
        assert_eq!(joined, payload);
        assert_eq!(
            chunks(b"small".to_vec(), 1000, id).unwrap(),
            vec![b"small".to_vec()]
        );
        assert!(matches!(
            chunks(vec![0; 200 * 100], 100, id),
            Err(SinkError::TooLarge { .. })
        ));
    }

    /// A row whose message needs more than 128 chunks is left out and counted; the rows after
    /// it are still sent (the whole batch used to fail, on every poll).
    #[tokio::test]
    async fn a_message_too_large_is_skipped_and_the_rest_sent() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut sink = GelfSink::new(GelfBackend {
            host: "127.0.0.1".into(),
            port: rx.local_addr().unwrap().port(),
            facility: "f".into(),
            protocol: GelfProtocol::Udp,
            compress: false,
            chunk_size: 200,
        });
        let huge = "x".repeat(200 * MAX_CHUNKS);
        let b = batch(vec![
            sample("be_a", Some(1)),
            sample(&huge, Some(2)),
            sample("be_c", Some(3)),
        ]);
        assert_eq!(sink.write(&b).await.unwrap(), Delivered { skipped: 1 });
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        let mut parts: Vec<u8> = Vec::new();
        while got.len() < 2 {
            let n = tokio::time::timeout(Duration::from_secs(5), rx.recv(&mut buf))
                .await
                .expect("datagrams of the other rows")
                .unwrap();
            let d = &buf[..n];
            if d[..2] == CHUNK_MAGIC {
                parts.extend_from_slice(&d[CHUNK_HEADER..]);
                if d[10] + 1 < d[11] {
                    continue;
                }
                got.push(serde_json::from_slice::<Value>(&parts).unwrap());
                parts.clear();
            } else {
                got.push(serde_json::from_slice::<Value>(d).unwrap());
            }
        }
        let names: Vec<&str> = got
            .iter()
            .map(|m| m["_backend"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["be_a", "be_c"]);
    }

    /// `send_all` delivers every datagram, in order, whole.
    #[tokio::test]
    async fn send_all_sends_every_datagram_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        tx.connect(rx.local_addr().unwrap()).await.unwrap();
        let datagrams: Vec<Vec<u8>> = (0..100u32)
            .map(|i| format!("{i}:{}", "x".repeat(i as usize * 7)).into_bytes())
            .collect();
        send_all(&tx, &datagrams).await.unwrap();
        send_all::<Vec<u8>>(&tx, &[]).await.unwrap();
        let mut buf = vec![0u8; 65536];
        for want in &datagrams {
            let n = tokio::time::timeout(Duration::from_secs(5), rx.recv(&mut buf))
                .await
                .expect("every datagram")
                .unwrap();
            assert_eq!(&buf[..n], &want[..]);
        }
    }

    #[test]
    fn gzip_round_trip() {
        let z = gzip(b"{\"a\":1}");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "{\"a\":1}");
    }
}
