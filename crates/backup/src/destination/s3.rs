//! The `s3` destination (and `minio`, which the config translates to it): objects are keys
//! `{source id}/{timestamp}/{file}` in a bucket, written through opendal on the shared
//! runtime ([`super::runtime`]).
//!
//! Uploads stream: bytes go into an S3 multipart upload in [`PART_SIZE`] parts, one uploading
//! while the next fills ([`CONCURRENT_PARTS`]), so memory stays bounded whatever the object
//! size and no temporary file is written. An object becomes visible only when the upload is completed
//! ([`ObjectWriter::commit`] checks `close()`); a failed or aborted upload is aborted on the
//! server, so `list`, `restore` and retention never see a half object. A run killed with
//! `kill -9` leaves an incomplete multipart upload that is invisible to `list` but holds
//! space until a bucket lifecycle rule (`AbortIncompleteMultipartUpload`) removes it.

use std::future::IntoFuture;
use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime};

use opendal::{services, Operator};
use serde::Deserialize;

use super::{runtime, Destination, DestinationError, ErrorKind, ObjectInfo, ObjectWriter};
use crate::config::{Invalid, Secret, Validate};

/// Size of one multipart part (S3's minimum is 5 MiB, except for the last part).
pub const PART_SIZE: usize = 8 << 20;
/// Parts uploaded at once per object. One: with more, opendal 0.57 keeps every finished
/// part's buffer until the upload completes (its task queue allows 8192 finished tasks), so
/// memory grew with the object (measured peak RSS 96, 170, 271 MB for 30, 100, 200 MB); with
/// one, parts are awaited in line and the peak stays at 91 MB whatever the size.
pub const CONCURRENT_PARTS: usize = 1;
/// Bytes fetched per request when reading an object back.
const READ_CHUNK: u64 = 8 << 20;
/// Region used when the config names none (what S3-compatible services expect).
const DEFAULT_REGION: &str = "us-east-1";

/// `type: s3`: objects are keys `{source id}/{timestamp}/{file}` in `bucket`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `bucket`.
    pub bucket: String,
    /// `region` (`us-east-1` if absent, as most S3-compatible services expect).
    #[serde(default)]
    pub region: Option<String>,
    /// `credentials`; without them the standard AWS chain (environment, `~/.aws`, instance
    /// role) is used.
    #[serde(default)]
    pub credentials: Option<S3Credentials>,
    /// `endpoint_url` of an S3-compatible service (`https://s3.wasabisys.com`).
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

/// `credentials` of an `s3` destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Credentials {
    /// `aws_access_key_id`.
    pub aws_access_key_id: String,
    /// `aws_secret_access_key`.
    pub aws_secret_access_key: Secret,
}

impl S3Config {
    /// The destination this config describes; `stall` bounds each request.
    pub fn build(
        &self,
        id: &str,
        stall: Duration,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        Ok(Box::new(S3Destination::new(id, self, stall)?))
    }
}

fn check_bucket(bucket: &str) -> Result<(), Invalid> {
    if bucket.is_empty() || bucket.contains('/') {
        return Err(Invalid::new(
            "bucket",
            bucket,
            "must be a bucket name (no /)",
        ));
    }
    Ok(())
}

impl Validate for S3Config {
    fn validate(&self) -> Result<(), Invalid> {
        check_bucket(&self.bucket)?;
        if let Some(url) = &self.endpoint_url {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains("://")) {
                return Err(Invalid::new(
                    "endpoint_url",
                    url,
                    "must be http(s)://host[:port]",
                ));
            }
        }
        Ok(())
    }
}

/// `type: minio` as the original reads it (minio SDK settings): the same store as `s3` with
/// an `endpoint_url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinioConfig {
    /// `host` or `host:port`, no scheme.
    pub endpoint: String,
    /// `bucket`.
    pub bucket: String,
    /// `secure`: TLS (default true).
    #[serde(default)]
    pub secure: Option<bool>,
    /// `credentials`.
    pub credentials: MinioCredentials,
}

/// `credentials` of a `minio` destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinioCredentials {
    /// `access_key`.
    pub access_key: String,
    /// `secret_key`.
    pub secret_key: Secret,
}

impl MinioConfig {
    /// The same store as an `s3` destination.
    pub fn to_s3(&self) -> S3Config {
        let scheme = if self.secure.unwrap_or(true) {
            "https"
        } else {
            "http"
        };
        S3Config {
            bucket: self.bucket.clone(),
            region: None,
            credentials: Some(S3Credentials {
                aws_access_key_id: self.credentials.access_key.clone(),
                aws_secret_access_key: self.credentials.secret_key.clone(),
            }),
            endpoint_url: Some(format!("{scheme}://{}", self.endpoint)),
        }
    }

    /// The destination this config describes; `stall` bounds each request.
    pub fn build(
        &self,
        id: &str,
        stall: Duration,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        self.to_s3().build(id, stall)
    }
}

impl Validate for MinioConfig {
    fn validate(&self) -> Result<(), Invalid> {
        check_bucket(&self.bucket)?;
        let e = &self.endpoint;
        if e.is_empty() || e.contains("://") || e.contains('/') {
            return Err(Invalid::new(
                "endpoint",
                e,
                "must be host or host:port, without a scheme",
            ));
        }
        Ok(())
    }
}

/// A bucket on S3 or an S3-compatible service.
pub struct S3Destination {
    id: String,
    op: Operator,
    /// Longest wait for one request of list, stat, read, delete (the stall timeout): a hung
    /// server fails the operation instead of hanging the run. Not retried: the server had
    /// the whole stall timeout, and retries would multiply the hang.
    timeout: Duration,
}

impl std::fmt::Debug for S3Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Destination")
            .field("id", &self.id)
            .finish()
    }
}

impl S3Destination {
    /// `id` from the config and its `s3`/`minio` settings; `timeout` bounds each request
    /// that is not part of an upload. Without credentials the standard AWS chain
    /// (environment, `~/.aws/credentials`, instance role) is used.
    pub fn new(id: &str, c: &S3Config, timeout: Duration) -> Result<Self, DestinationError> {
        let mut b = services::S3::default()
            .bucket(&c.bucket)
            .region(c.region.as_deref().unwrap_or(DEFAULT_REGION));
        if let Some(url) = &c.endpoint_url {
            b = b.endpoint(url);
        }
        if let Some(cred) = &c.credentials {
            b = b
                .access_key_id(&cred.aws_access_key_id)
                .secret_access_key(cred.aws_secret_access_key.expose());
        }
        let op = runtime::block_on(async { Operator::new(b).map(|o| o.finish()) })
            .map_err(|e| store_error(id, "configure", "", e))?;
        Ok(Self {
            id: id.to_string(),
            op,
            timeout,
        })
    }

    /// Runs one request on the shared runtime, failed (not retryable) after `self.timeout`.
    fn call<T, F>(&self, op: &'static str, object: &str, f: F) -> Result<T, DestinationError>
    where
        F: IntoFuture<Output = opendal::Result<T>>,
    {
        let f = f.into_future();
        // The timer must be made inside the runtime.
        match runtime::block_on(async { tokio::time::timeout(self.timeout, f).await }) {
            Ok(r) => r.map_err(|e| self.err(op, object, e)),
            Err(_) => Err(DestinationError::Store {
                destination: self.id.clone(),
                op,
                object: object.to_string(),
                kind: ErrorKind::Other,
                message: format!(
                    "no answer within {} s (stall_timeout)",
                    self.timeout.as_secs()
                ),
            }),
        }
    }
}

/// Maps an opendal error to the typed destination error.
fn store_error(
    destination: &str,
    op: &'static str,
    object: &str,
    e: opendal::Error,
) -> DestinationError {
    let kind = match e.kind() {
        opendal::ErrorKind::NotFound => ErrorKind::NotFound,
        opendal::ErrorKind::PermissionDenied => ErrorKind::Auth,
        opendal::ErrorKind::RateLimited => ErrorKind::Transient,
        _ if e.is_temporary() => ErrorKind::Transient,
        _ => ErrorKind::Other,
    };
    DestinationError::Store {
        destination: destination.to_string(),
        op,
        object: object.to_string(),
        kind,
        message: describe(&e),
    }
}

/// The error in one line: kind, the service's message (S3's error code and text) and the
/// cause (connection errors), without opendal's context dump of response headers.
fn describe(e: &opendal::Error) -> String {
    use std::error::Error as _;
    let mut out = e.kind().to_string();
    if !e.message().is_empty() {
        out.push_str(": ");
        out.push_str(e.message());
    }
    if let Some(source) = e.source() {
        out.push_str(&format!(" ({source})"));
    }
    out
}

/// Object names are relative keys made by `naming`: never absolute, never `..`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl S3Destination {
    fn err(&self, op: &'static str, object: &str, e: opendal::Error) -> DestinationError {
        store_error(&self.id, op, object, e)
    }

    fn check_name(&self, name: &str) -> Result<(), DestinationError> {
        if valid_name(name) {
            Ok(())
        } else {
            Err(DestinationError::Other {
                destination: self.id.clone(),
                message: format!("invalid object name {name:?}"),
            })
        }
    }
}

impl Destination for S3Destination {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "s3"
    }

    /// Lists the bucket (one key at most): proves it exists and the credentials may read it.
    fn check(&self) -> Result<(), DestinationError> {
        self.call("check", "", self.op.list_with("").limit(1))
            .map(|_| ())
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        self.check_name(name)?;
        // No request yet: the upload starts with the first full part. `If-None-Match: *` on
        // its completion keeps a committed object from ever being replaced.
        let writer = self.call(
            "create",
            name,
            self.op
                .writer_with(name)
                .chunk(PART_SIZE)
                .concurrent(CONCURRENT_PARTS)
                .if_not_exists(true),
        )?;
        Ok(Box::new(S3Writer {
            destination: self.id.clone(),
            object: name.to_string(),
            writer: Some(writer),
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        let entries = self.call("list", prefix, self.op.list_with(prefix).recursive(true))?;
        let mut out: Vec<ObjectInfo> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file() && e.path().starts_with(prefix))
            .map(|e| ObjectInfo {
                name: e.path().to_string(),
                size: e.metadata().content_length(),
                modified: e.metadata().last_modified().map(SystemTime::from),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
        self.check_name(name)?;
        let size = self
            .call("open", name, self.op.stat(name))?
            .content_length();
        let reader = self.call("open", name, self.op.reader(name))?;
        Ok(Box::new(S3Reader {
            reader,
            pos: 0,
            size,
            buf: Vec::new(),
            at: 0,
        }))
    }

    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        self.check_name(name)?;
        self.call("delete", name, self.op.delete(name))
    }
}

/// A multipart upload in progress.
struct S3Writer {
    destination: String,
    object: String,
    writer: Option<opendal::Writer>,
}

impl S3Writer {
    /// Aborts the upload on the server (best effort: the server may be the problem).
    fn abort_upload(&mut self) {
        if let Some(mut w) = self.writer.take() {
            if let Err(e) = runtime::block_on(w.abort()) {
                tracing::warn!(destination = %self.destination, object = %self.object,
                    error = %e, "could not abort the multipart upload; a bucket lifecycle rule removes it");
            }
        }
    }
}

impl Write for S3Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(w) = self.writer.as_mut() else {
            return Err(io::Error::other("object already closed"));
        };
        // opendal gathers the bytes into parts and uploads full parts concurrently; this
        // returns once the bytes are buffered or a part slot was free.
        runtime::block_on(w.write(buf.to_vec())).map_err(|e| {
            let kind = if e.is_temporary() {
                io::ErrorKind::ConnectionAborted
            } else {
                io::ErrorKind::Other
            };
            io::Error::new(kind, format!("upload: {}", describe(&e)))
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    /// Uploads the last part and completes the upload; on failure the upload is aborted.
    fn commit(mut self: Box<Self>) -> Result<(), DestinationError> {
        let Some(mut w) = self.writer.take() else {
            return Err(DestinationError::Other {
                destination: self.destination.clone(),
                message: format!("{}: object already closed", self.object),
            });
        };
        match runtime::block_on(w.close()) {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = store_error(&self.destination, "complete upload of", &self.object, e);
                self.writer = Some(w);
                self.abort_upload();
                Err(err)
            }
        }
    }

    fn abort(mut self: Box<Self>) {
        self.abort_upload();
    }
}

impl Drop for S3Writer {
    /// Neither committed nor aborted: abort, so no upload lingers.
    fn drop(&mut self) {
        self.abort_upload();
    }
}

/// Reads an object in [`READ_CHUNK`] ranges.
struct S3Reader {
    reader: opendal::Reader,
    pos: u64,
    size: u64,
    buf: Vec<u8>,
    at: usize,
}

impl Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buf.len() {
            if self.pos >= self.size {
                return Ok(0);
            }
            let end = (self.pos + READ_CHUNK).min(self.size);
            let got = runtime::block_on(self.reader.read(self.pos..end))
                .map_err(|e| io::Error::other(format!("read: {}", describe(&e))))?;
            self.buf = got.to_vec();
            self.at = 0;
            if self.buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the object ended before its listed size",
                ));
            }
            self.pos += self.buf.len() as u64;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_relative_keys_are_refused() {
        for bad in ["", "/a", "a/", "a//b", "a/../b", "./a"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name("db/20240101000000/db.sql.zst.gpg"));
    }

    #[test]
    fn opendal_errors_keep_their_kind() {
        let cases = [
            (opendal::ErrorKind::NotFound, ErrorKind::NotFound),
            (opendal::ErrorKind::PermissionDenied, ErrorKind::Auth),
            (opendal::ErrorKind::RateLimited, ErrorKind::Transient),
            (opendal::ErrorKind::Unexpected, ErrorKind::Other),
        ];
        for (from, want) in cases {
            let e = opendal::Error::new(from, "x");
            assert_eq!(store_error("d", "list", "", e).kind(), want, "{from:?}");
        }
        let temp = opendal::Error::new(opendal::ErrorKind::Unexpected, "reset").set_temporary();
        assert_eq!(
            store_error("d", "list", "", temp).kind(),
            ErrorKind::Transient
        );
    }
}
