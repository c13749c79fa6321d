//! One [`Destination`] over an opendal [`Operator`], shared by every remote type whose store
//! opendal speaks (`s3`, `minio`, ...): a type's module only turns its config into an
//! operator and a [`Layout`]. Objects are keys `{source id}/{timestamp}/{file}` under the
//! operator's root; requests run on the shared runtime ([`super::runtime`]).
//!
//! Uploads stream: bytes go to the store in [`Layout::chunk`] parts (multipart upload,
//! upload session), one part in flight, so memory stays bounded whatever the object size
//! and no temporary file is written. An object becomes visible only when the upload
//! completes ([`ObjectWriter::commit`] checks `close()`); a failed or aborted upload is
//! aborted on the server, so `list`, `restore` and retention never see a half object. What
//! a killed run left half-uploaded is removed by the type's [`AbandonedUploads`], if it has
//! one ([`Destination::remove_abandoned`]).

use std::future::IntoFuture;
use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime};

use opendal::Operator;

use super::cause;
use super::chunked::RangeReader;
use super::multipart::AbandonedUploads;
use super::{runtime, Destination, DestinationError, ErrorKind, ObjectInfo, ObjectWriter};

/// Bytes fetched per request when reading an object back.
const READ_CHUNK: u64 = 8 << 20;

/// What a store type supports and how it wants its uploads cut.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// The config's `type`, for messages and `list`.
    pub kind: &'static str,
    /// Size of one upload part; `None` lets opendal send the object in one request per
    /// write (only for stores without multipart uploads).
    pub chunk: Option<usize>,
    /// Parts uploaded at once. One: with more, opendal 0.57 keeps every finished part's
    /// buffer until the upload completes (its task queue allows 8192 finished tasks), so
    /// memory grew with the object (measured on S3: peak RSS 96, 170, 271 MB for 30, 100,
    /// 200 MB); with one, parts are awaited in line and the peak stays flat.
    pub concurrent: usize,
    /// The store refuses to replace an existing object on request (`If-None-Match: *`):
    /// a committed copy is then never overwritten.
    pub if_not_exists: bool,
}

/// A remote store reached through opendal.
pub struct Store {
    id: String,
    layout: Layout,
    op: Operator,
    /// Longest wait for one request of list, stat, read, delete (the stall timeout): a hung
    /// server fails the operation instead of hanging the run. Not retried: the server had
    /// the whole stall timeout, and retries would multiply the hang.
    timeout: Duration,
    /// Finds and aborts what killed runs left half-uploaded, for stores that keep it.
    abandoned: Option<Box<dyn AbandonedUploads>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("id", &self.id)
            .field("kind", &self.layout.kind)
            .finish()
    }
}

impl Store {
    /// Finishes the operator built by `builder` (on the shared runtime, where opendal's
    /// clients must be made); `timeout` bounds each request that is not part of an upload.
    pub fn new<B: opendal::Builder>(
        id: &str,
        layout: Layout,
        builder: B,
        timeout: Duration,
    ) -> Result<Self, DestinationError> {
        let op = runtime::block_on(async { Operator::new(builder).map(|o| o.finish()) })
            .map_err(|e| store_error(id, "configure", "", e))?;
        Ok(Self {
            id: id.to_string(),
            layout,
            op,
            timeout,
            abandoned: None,
        })
    }

    /// Gives the store the cleanup of uploads killed runs left ([`Destination::remove_abandoned`]).
    pub fn with_abandoned_uploads(mut self, a: impl AbandonedUploads + 'static) -> Self {
        self.abandoned = Some(Box::new(a));
        self
    }

    /// Runs one request on the shared runtime, failed (not retryable) after `self.timeout`.
    fn call<T, F>(&self, op: &'static str, object: &str, f: F) -> Result<T, DestinationError>
    where
        F: IntoFuture<Output = opendal::Result<T>>,
    {
        let f = f.into_future();
        // The timer must be made inside the runtime.
        match runtime::block_on(async { tokio::time::timeout(self.timeout, f).await }) {
            Ok(r) => r.map_err(|e| store_error(&self.id, op, object, e)),
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

    /// Refuses names that are not relative object keys.
    pub(super) fn check_name(&self, name: &str) -> Result<(), DestinationError> {
        if valid_name(name) {
            Ok(())
        } else {
            Err(DestinationError::Other {
                destination: self.id.clone(),
                message: format!("invalid object name {name:?}"),
            })
        }
    }

    /// The operator, for type-specific requests (cleanup of abandoned uploads).
    pub fn operator(&self) -> &Operator {
        &self.op
    }
}

/// Maps an opendal error to the typed destination error.
pub fn store_error(
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

/// The error in one line: for a request that got no answer, where it went and why (refused,
/// DNS, TLS, timeout: [`cause::describe`]); for an error answer, the HTTP status and the
/// service's error code and text; never opendal's context dump of headers.
fn describe(e: &opendal::Error) -> String {
    use std::error::Error as _;
    if let Some(source) = e.source() {
        let why = cause::describe(source);
        // opendal's message (`send http request`) adds nothing to where and why.
        return if why.starts_with("request to ") || e.message().is_empty() {
            why
        } else {
            format!("{}: {why}", e.message())
        };
    }
    let mut out = e.kind().to_string();
    if let Some(status) = cause::opendal_status(e) {
        out = format!("HTTP {status} ({out})");
    }
    if !e.message().is_empty() {
        out.push_str(": ");
        out.push_str(&cause::service_message(e.message()));
    }
    out
}

/// Object names are relative keys made by `naming`: never absolute, never `..`.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Destination for Store {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        self.layout.kind
    }

    /// Lists the root (one entry at most): proves it exists and the credentials may read it.
    fn check(&self) -> Result<(), DestinationError> {
        self.call("check", "", self.op.list_with("").limit(1))
            .map(|_| ())
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        self.check_name(name)?;
        // No request yet: the upload starts with the first full part.
        let mut w = self
            .op
            .writer_with(name)
            .concurrent(self.layout.concurrent)
            .if_not_exists(self.layout.if_not_exists);
        if let Some(chunk) = self.layout.chunk {
            w = w.chunk(chunk);
        }
        let writer = self.call("create", name, w)?;
        Ok(Box::new(StoreWriter {
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
        let (id, object) = (self.id.clone(), name.to_string());
        let fetch = move |first: u64, last: u64| {
            runtime::block_on(reader.read(first..last + 1))
                .map(|b| b.to_vec())
                .map_err(|e| store_error(&id, "read", &object, e))
        };
        Ok(Box::new(RangeReader::new(fetch, size, READ_CHUNK)))
    }

    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        self.check_name(name)?;
        self.call("delete", name, self.op.delete(name))
    }

    fn remove_abandoned(&self, prefix: &str) -> Result<Vec<String>, DestinationError> {
        match &self.abandoned {
            Some(a) => a.remove(prefix),
            None => Ok(Vec::new()),
        }
    }
}

/// An upload in progress.
struct StoreWriter {
    destination: String,
    object: String,
    writer: Option<opendal::Writer>,
}

impl StoreWriter {
    /// Aborts the upload on the server (best effort: the server may be the problem).
    fn abort_upload(&mut self) {
        if let Some(mut w) = self.writer.take() {
            if let Err(e) = runtime::block_on(w.abort()) {
                tracing::warn!(destination = %self.destination, object = %self.object,
                    error = %e, "could not abort the upload; the next run of this job removes it");
            }
        }
    }
}

impl Write for StoreWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(w) = self.writer.as_mut() else {
            return Err(io::Error::other("object already closed"));
        };
        // opendal gathers the bytes into parts and uploads full parts; this returns once
        // the bytes are buffered or a part was sent.
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

impl ObjectWriter for StoreWriter {
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

impl Drop for StoreWriter {
    /// Neither committed nor aborted: abort, so no upload lingers.
    fn drop(&mut self) {
        self.abort_upload();
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
