//! Reading a snapshot's blob through its SAS URL straight into the pipeline: its size
//! (`HEAD`), which pages hold data ([`pages`]: only those are downloaded, the rest are zeros
//! made here; a blob service that cannot list them gets every byte read), and ranged GETs
//! of at most [`RANGE`] bytes, each streamed as it arrives (no temporary file, bounded
//! memory). A lost connection, a short body or a 5xx/429 answer is retried from the byte
//! reached, up to [`ATTEMPTS`] times in a row; then the read fails naming the status and the
//! offset.
//!
//! The SAS URL is a credential (anyone holding it reads the disk until access is revoked):
//! it is never logged nor put in a message; errors name the blob endpoint's origin only.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use bytes::Bytes;

use super::arm::{client, form_escape, origin};
use super::error::AzureError;
use super::pages::{self, Segment};
use crate::cancel::Cancel;
use crate::destination::{cause, runtime};

/// Bytes asked for per request.
const RANGE: u64 = 64 << 20;
/// Tries of one range in a row before the read fails.
const ATTEMPTS: u32 = 4;
/// Longest wait for the next bytes of an answer.
const STALL: Duration = Duration::from_secs(300);
/// The Blob service version the requests speak (page-list markers need 2020-10-02).
const BLOB_VERSION: &str = "2021-08-06";
/// Longest answer listing page ranges.
const MAX_PAGE_LIST: usize = 16 << 20;
/// Longest listing of one window (its `NextMarker` parts).
const MAX_PAGE_LIST_PARTS: usize = 1_000;
/// Zeros handed out for pages never written.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// A blob being read from its SAS URL.
pub struct Blob {
    sas: String,
    /// The snapshot's name, for messages.
    snapshot: String,
    offset: u64,
    total: Option<u64>,
    /// End (exclusive) of the range being read.
    range_end: u64,
    /// Whether the page list is used: `None` until the blob's size and first page list were
    /// asked for.
    sparse: Option<bool>,
    /// The stretches from `offset` on whose page ranges are known.
    plan: VecDeque<Segment>,
    answer: Option<reqwest::Response>,
    pending: Bytes,
    deadline: Option<Instant>,
    /// Stops the download on SIGINT/SIGTERM.
    cancel: Cancel,
}

/// Why getting the next bytes stopped.
enum Stop {
    Failed(AzureError),
    Cancelled,
    Expired,
}

impl Blob {
    /// A reader of the blob of `snapshot` at `sas`, stopped by `cancel`.
    pub fn new(sas: String, snapshot: String, cancel: Cancel) -> Self {
        Blob {
            sas,
            snapshot,
            offset: 0,
            total: None,
            range_end: 0,
            sparse: None,
            plan: VecDeque::new(),
            answer: None,
            pending: Bytes::new(),
            deadline: None,
            cancel,
        }
    }

    /// Fails reads after `after` from now (the source's `timeout`).
    pub fn set_deadline(&mut self, after: Duration) {
        self.deadline = Some(Instant::now() + after);
    }

    /// Bytes read so far and the blob's size once known.
    pub fn progress(&self) -> (u64, Option<u64>) {
        (self.offset, self.total)
    }

    /// Whether every byte of the blob was read.
    pub fn complete(&self) -> bool {
        self.total == Some(self.offset)
    }

    fn step(&self) -> String {
        format!("downloading snapshot {}", self.snapshot)
    }

    /// The blob's size (`HEAD`) and the page ranges of its first window; without either,
    /// every byte is read.
    async fn probe(&mut self) -> Result<(), AzureError> {
        let what = self.step();
        let req = client()?
            .head(&self.sas)
            .header("x-ms-version", BLOB_VERSION);
        let resp = send(&what, req).await?;
        let size = resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let Some(size) = size.filter(|_| resp.status().is_success()) else {
            tracing::debug!(snapshot = %self.snapshot, status = resp.status().as_u16(),
                "no blob size; reading every byte");
            self.sparse = Some(false);
            return Ok(());
        };
        self.total = Some(size);
        if size == 0 {
            self.sparse = Some(false);
            return Ok(());
        }
        match self.plan_window().await {
            Ok(()) => self.sparse = Some(true),
            // Only a refusal to list is a reason to read everything; a lost connection is
            // retried as any other.
            Err(AzureError::Status { status, .. }) if (400..500).contains(&status) => {
                tracing::debug!(snapshot = %self.snapshot, status, "no page list; reading every byte");
                self.plan.clear();
                self.sparse = Some(false);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Lists the page ranges of the window starting at `offset` into `plan`.
    async fn plan_window(&mut self) -> Result<(), AzureError> {
        let what = format!(
            "{} (listing its pages at byte {})",
            self.step(),
            self.offset
        );
        let total = self.total.unwrap_or(0);
        let (from, to) = (self.offset, total.min(self.offset + pages::WINDOW));
        let mut ranges = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGE_LIST_PARTS {
            let mut url = format!("{}&comp=pagelist", self.sas);
            if let Some(m) = &marker {
                url.push_str("&marker=");
                url.push_str(&form_escape(m));
            }
            let req = client()?
                .get(&url)
                .header("x-ms-version", BLOB_VERSION)
                .header("x-ms-range", format!("bytes={from}-{}", to - 1));
            let mut resp = send(&what, req).await?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(AzureError::Status {
                    what,
                    status,
                    code: error_code(&resp),
                    message: String::new(),
                });
            }
            let mut body = Vec::new();
            while let Some(c) = tokio::time::timeout(STALL, resp.chunk())
                .await
                .map_err(|_| AzureError::Timeout {
                    what: what.clone(),
                    seconds: STALL.as_secs(),
                })?
                .map_err(lost(&what))?
            {
                if body.len() + c.len() > MAX_PAGE_LIST {
                    return Err(AzureError::Answer {
                        what,
                        detail: format!("page list larger than {} MiB", MAX_PAGE_LIST >> 20),
                    });
                }
                body.extend_from_slice(&c);
            }
            let list =
                pages::parse_page_list(&String::from_utf8_lossy(&body)).map_err(|detail| {
                    AzureError::Answer {
                        what: what.clone(),
                        detail,
                    }
                })?;
            ranges.extend(list.ranges);
            marker = list.next_marker;
            if marker.is_none() {
                let plan = pages::segments(from, to, &ranges)
                    .map_err(|detail| AzureError::Answer { what, detail })?;
                self.plan.extend(plan);
                return Ok(());
            }
        }
        Err(AzureError::Answer {
            what,
            detail: format!("the page list did not end after {MAX_PAGE_LIST_PARTS} parts"),
        })
    }

    /// Asks for `[offset, end)`; sets `total` from `Content-Range`.
    async fn request(&mut self, end: u64) -> Result<(), AzureError> {
        let what = self.step();
        let req = client()?
            .get(&self.sas)
            .header("x-ms-version", BLOB_VERSION)
            .header(
                reqwest::header::RANGE,
                format!("bytes={}-{}", self.offset, end - 1),
            );
        let resp = send(&what, req).await?;
        let status = resp.status().as_u16();
        match status {
            206 => {
                let range = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range);
                let Some((first, last, total)) = range.filter(|r| r.0 == self.offset) else {
                    return Err(AzureError::Answer {
                        what,
                        detail: format!(
                            "a partial answer without a Content-Range starting at byte {}",
                            self.offset
                        ),
                    });
                };
                self.total = Some(total);
                self.range_end = last.max(first) + 1;
            }
            // The whole blob (a server that ignores ranges), only sensible from the start.
            200 if self.offset == 0 => {
                let total = resp.content_length().ok_or_else(|| AzureError::Answer {
                    what: what.clone(),
                    detail: "a whole-blob answer without a length".into(),
                })?;
                self.total = Some(total);
                self.range_end = total;
            }
            // An empty blob has no byte 0.
            416 if self.offset == 0 => {
                self.total = Some(0);
                self.range_end = 0;
            }
            _ => {
                return Err(AzureError::Status {
                    what: format!(
                        "{what} (from {}, at byte {})",
                        origin(&self.sas),
                        self.offset
                    ),
                    status,
                    code: error_code(&resp),
                    message: String::new(),
                });
            }
        }
        self.answer = Some(resp);
        Ok(())
    }

    /// The next bytes of the blob; `None` at its end. Opens ranges as needed.
    async fn next_bytes(&mut self) -> Result<Option<Bytes>, AzureError> {
        loop {
            if self.complete() {
                return Ok(None);
            }
            if self.answer.is_none() {
                if self.sparse.is_none() {
                    self.probe().await?;
                    continue;
                }
                if self.sparse == Some(true) {
                    while self.plan.front().is_some_and(|s| s.end <= self.offset) {
                        self.plan.pop_front();
                    }
                    let Some(seg) = self.plan.front().copied() else {
                        self.plan_window().await?;
                        continue;
                    };
                    if !seg.data {
                        let n = (seg.end - self.offset).min(ZEROS.len() as u64) as usize;
                        self.offset += n as u64;
                        return Ok(Some(Bytes::from_static(&ZEROS[..n])));
                    }
                    self.request(seg.end.min(self.offset + RANGE)).await?;
                    continue;
                }
                let end = self
                    .total
                    .map_or(self.offset + RANGE, |t| t.min(self.offset + RANGE));
                self.request(end).await?;
                continue;
            }
            let Some(resp) = self.answer.as_mut() else {
                continue;
            };
            let chunk = tokio::time::timeout(STALL, resp.chunk()).await;
            match chunk {
                Err(_) => {
                    return Err(AzureError::Timeout {
                        what: format!("{} (no data at byte {})", self.step(), self.offset),
                        seconds: STALL.as_secs(),
                    })
                }
                Ok(Err(e)) => {
                    self.answer = None;
                    return Err(AzureError::Request {
                        what: format!("{} (at byte {})", self.step(), self.offset),
                        cause: cause::describe(&e),
                    });
                }
                Ok(Ok(Some(c))) if !c.is_empty() => {
                    // Never past the range asked for (a server sending more is cut off).
                    let room = self.range_end.saturating_sub(self.offset);
                    let c = if (c.len() as u64) > room {
                        c.slice(..room as usize)
                    } else {
                        c
                    };
                    self.offset += c.len() as u64;
                    return Ok(Some(c));
                }
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => {
                    self.answer = None;
                    if self.offset < self.range_end {
                        return Err(AzureError::Answer {
                            what: self.step(),
                            detail: format!(
                                "the answer ended at byte {}, before the end of its range {}",
                                self.offset, self.range_end
                            ),
                        });
                    }
                }
            }
        }
    }

    /// [`Blob::next_bytes`], stopped early by a signal or the deadline.
    async fn next_or_stop(&mut self) -> Result<Option<Bytes>, Stop> {
        let (deadline, cancel) = (self.deadline, self.cancel);
        let watch = async move {
            loop {
                if cancel.signal().is_some() {
                    return Stop::Cancelled;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Stop::Expired;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            r = self.next_bytes() => r.map_err(Stop::Failed),
            stop = watch => Err(stop),
        }
    }

    /// The next bytes, retrying what may pass (from the byte reached) up to [`ATTEMPTS`].
    fn fill(&mut self) -> io::Result<()> {
        let mut attempt = 1;
        let mut wait = Duration::from_millis(500);
        loop {
            match runtime::block_on(self.next_or_stop()) {
                Ok(Some(c)) => {
                    self.pending = c;
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                // Not `Interrupted`: readers retry that kind.
                Err(Stop::Cancelled) => {
                    return Err(io::Error::other(AzureError::Cancelled {
                        what: self.step(),
                    }))
                }
                Err(Stop::Expired) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{}: the source's timeout passed at byte {}",
                            self.step(),
                            self.offset
                        ),
                    ))
                }
                Err(Stop::Failed(e)) => {
                    self.answer = None;
                    let transient = e.retry() == crate::source::Retry::Transient
                        || matches!(e, AzureError::Answer { .. } if self.total.is_some());
                    if !transient || attempt >= ATTEMPTS {
                        if attempt > 1 {
                            return Err(io::Error::other(format!(
                                "{e} (gave up after {attempt} attempts)"
                            )));
                        }
                        return Err(io::Error::other(e));
                    }
                    tracing::debug!(snapshot = %self.snapshot, attempt, offset = self.offset,
                        "download interrupted; resuming: {e}");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
            }
        }
    }
}

impl Read for Blob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pending.is_empty() {
            self.fill()?;
        }
        let n = self.pending.len().min(buf.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        let _ = self.pending.split_to(n);
        Ok(n)
    }
}

/// Sends `req`; no answer (its status and headers) within [`STALL`] is an error.
async fn send(what: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response, AzureError> {
    match tokio::time::timeout(STALL, req.send()).await {
        Ok(r) => r.map_err(lost(what)),
        Err(_) => Err(AzureError::Timeout {
            what: what.to_owned(),
            seconds: STALL.as_secs(),
        }),
    }
}

/// The error of a request to the blob service that got no (whole) answer.
fn lost(what: &str) -> impl Fn(reqwest::Error) -> AzureError + '_ {
    move |e| AzureError::Request {
        what: what.to_owned(),
        cause: cause::describe(&e),
    }
}

/// The blob service's `x-ms-error-code`, cut short.
fn error_code(resp: &reqwest::Response) -> String {
    let code = resp
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    custos_kit::text::prefix(code, 100).to_owned()
}

/// `bytes FIRST-LAST/TOTAL` (or `bytes */TOTAL`) as (first, last, total); `None` for
/// anything else or a range that does not fit its total.
pub fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total: u64 = total.trim().parse().ok()?;
    if range.trim() == "*" {
        return Some((0, 0, total)).filter(|_| total == 0);
    }
    let (a, b) = range.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b && b < total).then_some((a, b, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_read_strictly() {
        assert_eq!(
            parse_content_range("bytes 0-1023/4096"),
            Some((0, 1023, 4096))
        );
        assert_eq!(parse_content_range("bytes */0"), Some((0, 0, 0)));
        for bad in [
            "bytes 10-5/100",
            "bytes 0-100/100",
            "bytes 0-1/x",
            "items 0-1/2",
            "bytes */5",
            "bytes 0-18446744073709551616/1",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
