//! Reading a snapshot's blob through its SAS URL straight into the pipeline: ranged GETs of
//! [`RANGE`] bytes, each streamed as it arrives (no temporary file, bounded memory). A lost
//! connection, a short body or a 5xx/429 answer is retried from the byte reached, up to
//! [`ATTEMPTS`] times in a row; then the read fails naming the status and the offset.
//!
//! The SAS URL is a credential (anyone holding it reads the disk until access is revoked):
//! it is never logged nor put in a message; errors name the blob endpoint's origin only.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::arm::{client, origin};
use super::error::AzureError;
use crate::destination::{cause, runtime};

/// Bytes asked for per request.
const RANGE: u64 = 64 << 20;
/// Tries of one range in a row before the read fails.
const ATTEMPTS: u32 = 4;
/// Longest wait for the next bytes of an answer.
const STALL: Duration = Duration::from_secs(300);
/// The Blob service version the requests speak.
const BLOB_VERSION: &str = "2021-08-06";

/// A blob being read from its SAS URL.
pub struct Blob {
    sas: String,
    /// The snapshot's name, for messages.
    snapshot: String,
    offset: u64,
    total: Option<u64>,
    /// End (exclusive) of the range being read.
    range_end: u64,
    answer: Option<reqwest::Response>,
    pending: Bytes,
    deadline: Option<Instant>,
}

/// Why getting the next bytes stopped.
enum Stop {
    Failed(AzureError),
    Cancelled,
    Expired,
}

impl Blob {
    /// A reader of the blob of `snapshot` at `sas`.
    pub fn new(sas: String, snapshot: String) -> Self {
        Blob {
            sas,
            snapshot,
            offset: 0,
            total: None,
            range_end: 0,
            answer: None,
            pending: Bytes::new(),
            deadline: None,
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

    /// Asks for the next range from `offset`; sets `total` from `Content-Range`.
    async fn request(&mut self) -> Result<(), AzureError> {
        let what = self.step();
        let end = match self.total {
            Some(t) => t.min(self.offset + RANGE),
            None => self.offset + RANGE,
        };
        let resp = client()?
            .get(&self.sas)
            .header("x-ms-version", BLOB_VERSION)
            .header(
                reqwest::header::RANGE,
                format!("bytes={}-{}", self.offset, end - 1),
            )
            .send()
            .await
            .map_err(|e| AzureError::Request {
                what: what.clone(),
                cause: cause::describe(&e),
            })?;
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
                let code = resp
                    .headers()
                    .get("x-ms-error-code")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                return Err(AzureError::Status {
                    what: format!(
                        "{what} (from {}, at byte {})",
                        origin(&self.sas),
                        self.offset
                    ),
                    status,
                    code: custos_kit::text::prefix(&code, 100).to_owned(),
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
                self.request().await?;
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
        let deadline = self.deadline;
        let watch = async move {
            loop {
                if super::cancelled() {
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
