//! Burp's wire framing, without IO.
//!
//! Every message on a burp connection is one frame (burp's `asfd.c`): a command byte, four
//! hex digits giving the payload length, then the payload, no terminator. The status port
//! answers a request with a JSON document cut into `c` frames of at most 16000 bytes, followed
//! (pretty printing off) by the end frame `c0001\n`. [`Decoder`] cuts a byte stream into
//! [`Frame`]s, [`Assembler`] joins `c` frames into documents and turns `w`/`e` frames into
//! [`Event`]s. Neither does IO, so both are tested byte by byte and with proptest; the session
//! feeds them from the TLS stream.

use std::borrow::Cow;
use std::fmt;

/// Bytes before the payload: command byte + 4 hex digits.
pub const HEADER_LEN: usize = 5;

/// Largest payload burp accepts: its reader rejects lengths of 32032 and more.
pub const MAX_PAYLOAD: usize = 32031;

/// Default cap on one reassembled document. A 2,000-client `c:` is about 140 kB, so this
/// leaves room for huge servers and logs while stopping a runaway peer long before memory
/// becomes a problem.
pub const DEFAULT_MAX_DOCUMENT: usize = 16 * 1024 * 1024;

/// Payload of the frame that ends a document when pretty printing is off.
pub const END_OF_DOCUMENT: &[u8] = b"\n";

/// The command byte of a frame; the status port uses only these three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `c`: normal data (handshake replies, document parts, requests).
    Normal,
    /// `w`: a warning, e.g. the server's "unknown version" notice at login.
    Warning,
    /// `e`: an error, e.g. "unable to authorise on server"; the server usually closes next.
    Error,
}

impl Command {
    /// The byte on the wire.
    pub fn as_byte(self) -> u8 {
        match self {
            Command::Normal => b'c',
            Command::Warning => b'w',
            Command::Error => b'e',
        }
    }

    /// The command for a wire byte, `None` for anything the status port never sends.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'c' => Some(Command::Normal),
            b'w' => Some(Command::Warning),
            b'e' => Some(Command::Error),
            _ => None,
        }
    }
}

/// One frame: a command and its payload.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame with the given command and payload.
    pub fn new(command: Command, payload: impl Into<Vec<u8>>) -> Self {
        Frame {
            command,
            payload: payload.into(),
        }
    }

    /// Whether this is the `c0001\n` frame that ends a document.
    pub fn is_end_of_document(&self) -> bool {
        self.command == Command::Normal && self.payload == END_OF_DOCUMENT
    }

    /// The payload as text (burp sends ASCII/UTF-8; invalid bytes become U+FFFD).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.payload)
    }

    /// Appends the wire form of this frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        encode_into(self.command, &self.payload, out)
    }
}

impl fmt::Debug for Frame {
    /// Shows the payload as escaped text, cut after 200 bytes: documents can be megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Frame({}, {} bytes, \"{}\")",
            self.command.as_byte() as char,
            self.payload.len(),
            escape_prefix(&self.payload, 200)
        )
    }
}

/// What is wrong with a byte stream or a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame starts with a byte other than `c`, `w`, `e`.
    #[error("unknown frame command byte 0x{0:02x} (expected 'c', 'w' or 'e')")]
    BadCommand(u8),
    /// The 4 length bytes are not hex digits.
    #[error("frame length \"{0}\" is not 4 hex digits")]
    BadLength(String),
    /// A length beyond what burp itself accepts.
    #[error("frame length {len} exceeds burp's limit of {MAX_PAYLOAD} bytes")]
    TooLong { len: usize },
    /// A reassembled document grew beyond the configured cap.
    #[error("document exceeds the {limit} byte cap")]
    DocumentTooLarge { limit: usize },
}

/// Appends the wire form of one frame to `out`.
///
/// Fails only when the payload is longer than burp accepts ([`MAX_PAYLOAD`]).
pub fn encode_into(command: Command, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLong { len: payload.len() });
    }
    out.reserve(HEADER_LEN + payload.len());
    out.push(command.as_byte());
    out.extend_from_slice(format!("{:04X}", payload.len()).as_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The wire form of one frame.
pub fn encode(command: Command, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_into(command, payload, &mut out)?;
    Ok(out)
}

/// Incremental frame decoder: [`push`](Decoder::push) bytes as they arrive, then call
/// [`next_frame`](Decoder::next_frame) until it returns `Ok(None)`.
///
/// A header is checked as soon as its bytes arrive, so garbage fails fast instead of waiting
/// for a length that will never come. After an error the decoder stays failed: a byte stream
/// that broke framing cannot be resynchronised.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already returned as frames; dropped on the next push.
    consumed: usize,
    failed: Option<FrameError>,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match parse_frame(&self.buf[self.consumed..]) {
            Ok(Some((frame, used))) => {
                self.consumed += used;
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(err) => {
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }
}

/// Parses one frame from the front of `avail`: the frame and the bytes it used, or `None`
/// when `avail` holds only a valid prefix.
fn parse_frame(avail: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(&first) = avail.first() else {
        return Ok(None);
    };
    let command = Command::from_byte(first).ok_or(FrameError::BadCommand(first))?;
    let digits = &avail[1..avail.len().min(HEADER_LEN)];
    if let Some(bad) = digits.iter().position(|d| !d.is_ascii_hexdigit()) {
        // Show the digits up to the first bad one: the same text however the bytes arrived.
        return Err(FrameError::BadLength(escape_prefix(
            &digits[..=bad],
            HEADER_LEN,
        )));
    }
    if digits.len() < HEADER_LEN - 1 {
        return Ok(None);
    }
    // burp writes "%04X"; its reader (sscanf "%04X") also takes lowercase, and so do we.
    let len = digits
        .iter()
        .fold(0usize, |acc, &d| acc * 16 + hex_value(d) as usize);
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong { len });
    }
    let end = HEADER_LEN + len;
    match avail.get(HEADER_LEN..end) {
        Some(payload) => Ok(Some((Frame::new(command, payload), end))),
        None => Ok(None),
    }
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// Escapes up to `max` bytes for an error message or debug output, marking a cut with `...`.
pub(crate) fn escape_prefix(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut text: String = shown.escape_ascii().to_string();
    if bytes.len() > max {
        text.push_str("...");
    }
    text
}

/// What the [`Assembler`] makes of the frames it is fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete document: the `c` payloads up to (not including) the end frame.
    Document(Vec<u8>),
    /// A `w` frame's text, trailing whitespace removed.
    Warning(String),
    /// An `e` frame's text, trailing whitespace removed.
    Error(String),
}

/// Joins `c` frames into documents up to the `c0001\n` end frame, with a size cap.
#[derive(Debug)]
pub struct Assembler {
    doc: Vec<u8>,
    limit: usize,
}

impl Assembler {
    /// An assembler that refuses documents longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Assembler {
            doc: Vec::new(),
            limit,
        }
    }

    /// The document size cap in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether part of a document has arrived but not its end frame.
    pub fn in_progress(&self) -> bool {
        !self.doc.is_empty()
    }

    /// Feeds one frame; returns an event when one is complete.
    ///
    /// A `w` or `e` frame in the middle of a document is reported at once and the partial
    /// document is kept: burp never interleaves them, but the caller decides what to do.
    pub fn feed(&mut self, frame: Frame) -> Result<Option<Event>, FrameError> {
        match frame.command {
            Command::Warning => Ok(Some(Event::Warning(frame.text().trim_end().to_owned()))),
            Command::Error => Ok(Some(Event::Error(frame.text().trim_end().to_owned()))),
            Command::Normal if frame.is_end_of_document() => {
                Ok(Some(Event::Document(std::mem::take(&mut self.doc))))
            }
            Command::Normal => {
                if self.doc.len().saturating_add(frame.payload.len()) > self.limit {
                    self.doc = Vec::new();
                    return Err(FrameError::DocumentTooLarge { limit: self.limit });
                }
                if self.doc.is_empty() {
                    // One frame is the common case: take its buffer instead of copying.
                    self.doc = frame.payload;
                } else {
                    self.doc.extend_from_slice(&frame.payload);
                }
                Ok(None)
            }
        }
    }

    /// Drops a partial document (after an error, before reusing the assembler).
    pub fn reset(&mut self) {
        self.doc = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    mod transcript {
        include!("../tests/transcript/parse.rs");
    }

    /// Decodes `bytes` pushed in the given chunk sizes; frames up to the first error.
    fn decode_chunked(bytes: &[u8], cuts: &[usize]) -> (Vec<Frame>, Option<FrameError>) {
        let mut decoder = Decoder::new();
        let mut frames = Vec::new();
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
        ends.sort_unstable();
        ends.push(bytes.len());
        for end in ends {
            decoder.push(&bytes[start..end.max(start)]);
            start = end.max(start);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(err) => return (frames, Some(err)),
                }
            }
        }
        (frames, None)
    }

    fn encode_all(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            frame.encode_into(&mut out).expect("test frames fit");
        }
        out
    }

    fn doc_frames(doc: &[u8], chunk: usize) -> Vec<Frame> {
        let mut frames: Vec<Frame> = doc
            .chunks(chunk)
            .map(|c| Frame::new(Command::Normal, c))
            .collect();
        frames.push(Frame::new(Command::Normal, END_OF_DOCUMENT));
        frames
    }

    #[test]
    fn encodes_like_burp() {
        assert_eq!(
            encode(Command::Normal, b"hello:3.1.4").unwrap(),
            b"c000Bhello:3.1.4"
        );
        assert_eq!(encode(Command::Normal, b"\n").unwrap(), b"c0001\n");
        assert_eq!(encode(Command::Error, b"").unwrap(), b"e0000");
        let max = vec![b'x'; MAX_PAYLOAD];
        assert_eq!(&encode(Command::Normal, &max).unwrap()[..5], b"c7D1F");
        assert_eq!(
            encode(Command::Normal, &vec![0; MAX_PAYLOAD + 1]),
            Err(FrameError::TooLong {
                len: MAX_PAYLOAD + 1
            })
        );
    }

    #[test]
    fn rejects_bad_headers_early() {
        let mut d = Decoder::new();
        d.push(b"x");
        assert_eq!(d.next_frame(), Err(FrameError::BadCommand(b'x')));
        // Stays failed.
        d.push(b"c0001\n");
        assert_eq!(d.next_frame(), Err(FrameError::BadCommand(b'x')));

        let mut d = Decoder::new();
        d.push(b"c0");
        assert_eq!(d.next_frame(), Ok(None));
        d.push(b"G");
        assert!(matches!(d.next_frame(), Err(FrameError::BadLength(s)) if s == "0G"));

        let mut d = Decoder::new();
        d.push(b"c7D20");
        assert_eq!(d.next_frame(), Err(FrameError::TooLong { len: 32032 }));

        let mut d = Decoder::new();
        d.push(b"cFFFFxxxx");
        assert_eq!(d.next_frame(), Err(FrameError::TooLong { len: 0xFFFF }));

        let mut d = Decoder::new();
        d.push(b"c 001\n");
        assert!(matches!(d.next_frame(), Err(FrameError::BadLength(_))));

        // The TLS record of a plain-text HTTP answer, say.
        let (frames, err) = decode_chunked(b"HTTP/1.1 400 Bad Request\r\n", &[]);
        assert!(frames.is_empty());
        assert_eq!(err, Some(FrameError::BadCommand(b'H')));
    }

    #[test]
    fn accepts_lowercase_hex_as_burp_does() {
        let (frames, err) = decode_chunked(b"c000bhello:3.1.4", &[]);
        assert_eq!(err, None);
        assert_eq!(frames, vec![Frame::new(Command::Normal, "hello:3.1.4")]);
    }

    #[test]
    fn zero_length_and_max_length_frames() {
        let big = vec![b'y'; MAX_PAYLOAD];
        let frames = vec![
            Frame::new(Command::Normal, ""),
            Frame::new(Command::Normal, big),
            Frame::new(Command::Warning, "w"),
        ];
        let bytes = encode_all(&frames);
        assert_eq!(decode_chunked(&bytes, &[]), (frames, None));
    }

    #[test]
    fn replays_the_captured_transcript_at_every_split() {
        let lines = transcript::parse(include_str!("../tests/data/transcript.txt"));
        let server: Vec<Vec<u8>> = lines
            .iter()
            .filter(|l| !l.from_client && !l.abbreviated)
            .map(|l| l.bytes.clone())
            .collect();
        assert!(
            server.len() >= 20,
            "transcript parsed: {} lines",
            server.len()
        );
        let stream = server.concat();
        let (whole, err) = decode_chunked(&stream, &[]);
        assert_eq!(err, None);
        assert_eq!(whole.len(), server.len());
        for (frame, line) in whole.iter().zip(&server) {
            assert_eq!(encode(frame.command, &frame.payload).unwrap(), *line);
        }
        for cut in 0..=stream.len() {
            assert_eq!(
                decode_chunked(&stream, &[cut]),
                (whole.clone(), None),
                "cut {cut}"
            );
        }
        // One byte at a time.
        let cuts: Vec<usize> = (0..stream.len()).collect();
        assert_eq!(decode_chunked(&stream, &cuts), (whole.clone(), None));

        // And the documents come out as captured.
        let mut asm = Assembler::new(DEFAULT_MAX_DOCUMENT);
        let docs: Vec<Event> = whole
            .into_iter()
            .filter_map(|f| asm.feed(f).unwrap())
            .collect();
        assert!(docs.contains(&Event::Document(
            br#"{"warning":"Could not find client: nosuch"}"#.to_vec()
        )));
        assert!(docs.contains(&Event::Document(
            br#"{"warning":"Unknown command"}"#.to_vec()
        )));
    }

    #[test]
    fn bad_password_transcript_gives_error_event() {
        let lines = transcript::parse(include_str!("../tests/data/transcript_bad_password.txt"));
        let last = lines.last().expect("transcript has lines");
        assert!(!last.from_client);
        let (frames, err) = decode_chunked(&last.bytes, &[]);
        assert_eq!(err, None);
        let mut asm = Assembler::new(100);
        assert_eq!(
            asm.feed(frames[0].clone()),
            Ok(Some(Event::Error("unable to authorise on server".into())))
        );
    }

    #[test]
    fn version_warning_transcript_gives_warning_event() {
        let lines = transcript::parse(include_str!(
            "../tests/data/transcript_hello_without_version.txt"
        ));
        let warning = lines
            .iter()
            .find(|l| l.bytes.first() == Some(&b'w'))
            .expect("the capture has a w frame");
        let (frames, err) = decode_chunked(&warning.bytes, &[]);
        assert_eq!(err, None);
        assert_eq!(
            Assembler::new(100).feed(frames[0].clone()),
            Ok(Some(Event::Warning(
                "Client 'monitor' has an unknown version. Please upgrade.".into()
            )))
        );
    }

    #[test]
    fn response_markers_transcript_gives_one_document_per_marker() {
        // With `j:response-markers-on` burp wraps each reply in marker documents; each is a
        // document of its own, closed by its own end frame.
        let lines = transcript::parse(include_str!(
            "../tests/data/transcript_response_markers.txt"
        ));
        let stream: Vec<u8> = lines
            .iter()
            .filter(|l| !l.from_client && !l.abbreviated)
            .flat_map(|l| l.bytes.clone())
            .collect();
        let (frames, err) = decode_chunked(&stream, &[1, 2, 3, 4, 5, 6, 100]);
        assert_eq!(err, None);
        let mut asm = Assembler::new(DEFAULT_MAX_DOCUMENT);
        let docs: Vec<Event> = frames
            .into_iter()
            .filter_map(|f| asm.feed(f).unwrap())
            .collect();
        // 1 (pretty-print-off) + 5 replies of 3 documents; the capture shortened the `c:`
        // reply, which we drop, so its end frame alone makes an empty document.
        assert_eq!(docs.len(), 16, "{docs:?}");
        assert_eq!(docs[5], Event::Document(Vec::new()));
        assert_eq!(
            docs[2],
            Event::Document(br#"{"warning":"Response markers on"}"#.to_vec())
        );
        assert_eq!(
            docs[4],
            Event::Document(br#"{"response-start":"c:"}"#.to_vec())
        );
    }

    #[test]
    fn reassembles_a_2000_client_document() {
        // Shape of a real 2,000-client `c:`: ~140 kB, burp cuts at 16000 bytes -> 9 frames.
        let mut doc = br#"{"clients":["#.to_vec();
        for i in 0..2000 {
            if i > 0 {
                doc.push(b',');
            }
            doc.extend_from_slice(
                format!(
                    r#"{{"name":"client{i:04}","run_status":"idle","protocol":1,"backups":[]}}"#
                )
                .as_bytes(),
            );
        }
        doc.extend_from_slice(b"]}");
        assert!(doc.len() > 128_000 && doc.len() <= 144_000, "{}", doc.len());
        let frames = doc_frames(&doc, 16000);
        assert_eq!(frames.len(), 10, "9 data frames + end frame");
        let mut stream = encode_all(&frames);
        // The next document's frames right behind must stay for the next call.
        stream.extend_from_slice(b"c0002{}c0001\n");

        let (decoded, err) = decode_chunked(&stream, &[3, 16003, 16007, 70000]);
        assert_eq!(err, None);
        let mut asm = Assembler::new(DEFAULT_MAX_DOCUMENT);
        let events: Vec<Event> = decoded
            .into_iter()
            .filter_map(|f| asm.feed(f).unwrap())
            .collect();
        assert_eq!(
            events,
            vec![Event::Document(doc), Event::Document(b"{}".to_vec())]
        );
        assert!(!asm.in_progress());
    }

    #[test]
    fn caps_document_size() {
        let mut asm = Assembler::new(10);
        assert_eq!(asm.feed(Frame::new(Command::Normal, "12345")), Ok(None));
        assert_eq!(asm.feed(Frame::new(Command::Normal, "67890")), Ok(None));
        assert!(asm.in_progress());
        assert_eq!(
            asm.feed(Frame::new(Command::Normal, "x")),
            Err(FrameError::DocumentTooLarge { limit: 10 })
        );
        assert!(!asm.in_progress());
        // A document of exactly the cap passes.
        let mut asm = Assembler::new(4);
        asm.feed(Frame::new(Command::Normal, "abcd")).unwrap();
        assert_eq!(
            asm.feed(Frame::new(Command::Normal, END_OF_DOCUMENT)),
            Ok(Some(Event::Document(b"abcd".to_vec())))
        );
    }

    #[test]
    fn debug_output_is_short_and_escaped() {
        let frame = Frame::new(Command::Normal, vec![b'a'; 1000]);
        let shown = format!("{frame:?}");
        assert!(shown.len() < 260, "{shown}");
        assert!(shown.starts_with("Frame(c, 1000 bytes, \"aaa"));
        assert_eq!(
            format!("{:?}", Frame::new(Command::Normal, "\n")),
            "Frame(c, 1 bytes, \"\\n\")"
        );
    }

    /// Bytes of any length up to `max`: a random pattern repeated (generating every byte
    /// through proptest would make the large cases slow without finding more).
    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(any::<u8>(), 1..64),
            prop_oneof![0..64usize, 0..=max],
        )
            .prop_map(|(pattern, len)| pattern.iter().copied().cycle().take(len).collect())
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (
            prop_oneof![
                Just(Command::Normal),
                Just(Command::Warning),
                Just(Command::Error)
            ],
            arb_bytes(MAX_PAYLOAD),
        )
            .prop_map(|(command, payload)| Frame::new(command, payload))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            cuts in proptest::collection::vec(0usize..4096, 0..8),
        ) {
            let (frames, err) = decode_chunked(&bytes, &[]);
            // Split points change nothing, not even where an error is found.
            prop_assert_eq!(decode_chunked(&bytes, &cuts), (frames.clone(), err));
            let mut asm = Assembler::new(1024);
            for frame in frames {
                let _ = asm.feed(frame);
            }
        }

        #[test]
        fn valid_headers_with_garbage_never_panic(
            parts in proptest::collection::vec(
                (prop_oneof![Just(b'c'), Just(b'w'), Just(b'e'), any::<u8>()],
                 0usize..0x10000,
                 proptest::collection::vec(any::<u8>(), 0..40)),
                0..20),
        ) {
            let mut bytes = Vec::new();
            for (cmd, len, tail) in parts {
                bytes.push(cmd);
                bytes.extend_from_slice(format!("{len:04X}").as_bytes());
                bytes.extend_from_slice(&tail);
            }
            let (frames, err) = decode_chunked(&bytes, &[]);
            let cuts: Vec<usize> = (0..bytes.len()).step_by(7).collect();
            prop_assert_eq!(decode_chunked(&bytes, &cuts), (frames, err));
        }

        #[test]
        fn encode_decode_round_trip(
            frames in proptest::collection::vec(arb_frame(), 0..6),
            cuts in proptest::collection::vec(0usize..200_000, 0..10),
        ) {
            let bytes = encode_all(&frames);
            prop_assert_eq!(decode_chunked(&bytes, &cuts), (frames, None));
        }

        #[test]
        fn documents_survive_any_chunking(
            doc in arb_bytes(60_000).prop_filter("non-empty", |d| !d.is_empty()),
            chunk in 1usize..=16000,
            cuts in proptest::collection::vec(0usize..70_000, 0..10),
        ) {
            // Burp never sends a lone "\n" inside a document (pretty printing off).
            let mut doc = doc;
            for part in doc.chunks_mut(chunk) {
                if part == END_OF_DOCUMENT {
                    part[0] = b'!';
                }
            }
            let bytes = encode_all(&doc_frames(&doc, chunk));
            let (frames, err) = decode_chunked(&bytes, &cuts);
            prop_assert_eq!(err, None);
            let mut asm = Assembler::new(doc.len());
            let events: Vec<Event> =
                frames.into_iter().filter_map(|f| asm.feed(f).unwrap()).collect();
            prop_assert_eq!(events, vec![Event::Document(doc)]);
        }
    }
}
