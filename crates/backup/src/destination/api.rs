//! Direct requests to a store's HTTP API, for what opendal does not cover (the B2 bucket id,
//! Dropbox listing and upload sessions, all of Google Drive): one reqwest client on the
//! shared runtime, answers mapped to the typed [`DestinationError`] as [`super::store`] maps
//! opendal's.
//! Like opendal's client it honours `HTTPS_PROXY` and the platform TLS roots
//! (`SSL_CERT_FILE`), which is how the tests reach their fake APIs.

use std::time::Duration;

use super::{cause, runtime, DestinationError, ErrorKind};

/// Longest part of an error answer kept in a message.
const MAX_ERROR_BODY: usize = 300;
/// Largest answer read into memory: a listing page of a few thousand entries or one read
/// chunk (8 MiB) fits many times; a server streaming without end does not.
pub const MAX_ANSWER: usize = 64 << 20;
/// Most pages one listing may take (Dropbox gives up to 2,000 entries a page, Drive 1,000):
/// millions of objects, far beyond any backup folder, and an end to a server that never says
/// the listing is complete.
pub const MAX_PAGES: usize = 10_000;

/// The cursors (page tokens) of one paged listing, so a server that repeats one or never
/// ends fails the listing instead of looping forever. A listing cut short is an error, not
/// a shorter list: retention must never decide on half a listing.
pub struct Pages {
    seen: std::collections::HashSet<String>,
    max: usize,
}

impl Pages {
    /// A listing of at most `max` pages.
    pub fn new(max: usize) -> Self {
        Self {
            seen: std::collections::HashSet::new(),
            max,
        }
    }

    /// Takes `cursor` as the one to ask the next page with; an error when the server gave it
    /// before or the listing already took `max` pages.
    pub fn next(&mut self, call: &Call<'_>, cursor: &str) -> Result<(), DestinationError> {
        if self.seen.len() + 1 >= self.max {
            return Err(call.error(
                ErrorKind::Other,
                format!("listing not finished after {} pages; stopped", self.max),
            ));
        }
        if !self.seen.insert(cursor.to_string()) {
            return Err(call.error(
                ErrorKind::Other,
                format!(
                    "the server repeated a listing cursor after {} pages; stopped (broken or \
                     hostile server)",
                    self.seen.len() + 1
                ),
            ));
        }
        Ok(())
    }
}

/// The process-wide client ([`runtime::http_client`]); a client that cannot be set up is
/// an error of `call`, never a panic.
pub fn client(call: &Call<'_>) -> Result<&'static reqwest::Client, DestinationError> {
    runtime::http_client().map_err(|e| call.error(ErrorKind::Other, e.to_string()))
}

/// A server's answer.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// How one bounded request ended ([`fetch`]).
pub enum Fetched {
    /// No whole answer within the time allowed.
    TimedOut,
    /// No answer: refused, DNS, TLS, reset.
    Failed(reqwest::Error),
    /// An answer larger than allowed (not read further).
    TooLarge,
    /// The whole answer.
    Answer(Answer),
}

/// Sends `req` on the shared runtime and reads its whole answer, within `timeout` and at
/// most `max` bytes (a server streaming without end is cut off). For every direct API call
/// of the crate (stores here, Azure's ARM in `source::azure`).
pub fn fetch(req: reqwest::RequestBuilder, timeout: Duration, max: usize) -> Fetched {
    let answer = runtime::block_on(async {
        tokio::time::timeout(timeout, async {
            let mut resp = req.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > max {
                    return Ok(None);
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Some(Answer {
                status,
                headers,
                body,
            }))
        })
        .await
    });
    match answer {
        Err(_) => Fetched::TimedOut,
        Ok(Err(e)) => Fetched::Failed(e),
        Ok(Ok(None)) => Fetched::TooLarge,
        Ok(Ok(Some(a))) => Fetched::Answer(a),
    }
}

/// Where a request failed, for the error.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub destination: &'a str,
    pub op: &'static str,
    pub object: &'a str,
}

impl Call<'_> {
    /// An error of this call.
    pub fn error(&self, kind: ErrorKind, message: String) -> DestinationError {
        DestinationError::Store {
            destination: self.destination.to_string(),
            op: self.op,
            object: self.object.to_string(),
            kind,
            message,
        }
    }

    /// Sends `req` on the shared runtime and returns the body of a 2xx answer; any other
    /// answer, a connection failure or no answer within `timeout` is an error of its kind
    /// (see [`Call::status_error`]).
    pub fn send(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Vec<u8>, DestinationError> {
        let a = self.exchange(req, timeout)?;
        if a.status.is_success() {
            Ok(a.body)
        } else {
            Err(self.status_error(a.status, &a.body))
        }
    }

    /// Sends `req` and returns whatever the server answered; only a connection failure or
    /// no answer within `timeout` is an error (transient, and other).
    pub fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Answer, DestinationError> {
        match fetch(req, timeout, MAX_ANSWER) {
            Fetched::TimedOut => Err(self.error(
                ErrorKind::Other,
                format!("no answer within {} s (stall_timeout)", timeout.as_secs()),
            )),
            // Names the endpoint, not the URL: its query can carry a token.
            Fetched::Failed(e) => Err(self.error(ErrorKind::Transient, cause::describe(&e))),
            Fetched::TooLarge => Err(self.error(
                ErrorKind::Other,
                format!("answer larger than {} MiB; refused", MAX_ANSWER >> 20),
            )),
            Fetched::Answer(a) => Ok(a),
        }
    }

    /// The error for an answer that is not the expected one: 401/403 auth, 404 (or
    /// Dropbox's 409 `not_found`) not found, 429/5xx transient, else other; the message
    /// keeps the start of the service's error text.
    pub fn status_error(&self, status: reqwest::StatusCode, body: &[u8]) -> DestinationError {
        let kind = match status.as_u16() {
            401 | 403 => ErrorKind::Auth,
            404 => ErrorKind::NotFound,
            // Dropbox answers an endpoint's own errors with 409 and a summary such as
            // `path/not_found/..`.
            409 if body.windows(9).any(|w| w == b"not_found") => ErrorKind::NotFound,
            429 | 500..=599 => ErrorKind::Transient,
            _ => ErrorKind::Other,
        };
        let text = String::from_utf8_lossy(body);
        let text: String = text.chars().take(MAX_ERROR_BODY).collect();
        self.error(kind, format!("HTTP {status}: {}", text.trim()))
    }

    /// [`Call::send`], the answer parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, DestinationError> {
        let body = self.send(req, timeout)?;
        serde_json::from_slice(&body)
            .map_err(|e| self.error(ErrorKind::Other, format!("unexpected answer: {e}")))
    }
}

/// JSON for an HTTP header (Dropbox-API-Arg): non-ASCII characters as `\u` escapes (`\u00e9`), as
/// header values must be ASCII.
pub fn header_json(v: &serde_json::Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_cursor_or_too_many_pages_stop_a_listing() {
        let call = Call {
            destination: "d",
            op: "list",
            object: "src/",
        };
        let mut p = Pages::new(MAX_PAGES);
        p.next(&call, "a").expect("first");
        p.next(&call, "b").expect("second");
        let e = p.next(&call, "a").expect_err("repeated");
        assert!(e.to_string().contains("repeated a listing cursor"), "{e}");
        assert_eq!(e.kind(), ErrorKind::Other);

        let mut p = Pages::new(3);
        p.next(&call, "1").expect("page 2");
        p.next(&call, "2").expect("page 3");
        let e = p.next(&call, "3").expect_err("page 4");
        assert!(e.to_string().contains("not finished after 3 pages"), "{e}");
    }

    #[test]
    fn header_json_is_ascii() {
        let v = serde_json::json!({"path": "/backups/café/😀"});
        let h = header_json(&v);
        assert!(h.is_ascii(), "{h}");
        let back: serde_json::Value = serde_json::from_str(&h).expect("json");
        assert_eq!(back, v);
    }
}
