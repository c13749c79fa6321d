//! The `dropbox` destination: objects are files `{folder}/{source id}/{timestamp}/{file}` in
//! the Dropbox of `access_token`. Reading and deleting go through the shared opendal store
//! ([`super::store`]) rooted at `folder`. Listing and uploading do not: opendal 0.57's Dropbox
//! lister names entries by their base name only (wrong below the root) and needs a
//! `client_modified` that folders lack, so `list` is `files/list_folder` (recursive) and
//! `list_folder/continue` here, named by `path_display`; and its writer sends the whole
//! object in one `files/upload` request (held in memory, and Dropbox refuses more than 150 MB
//! that way). Uploads here are upload sessions instead:
//! `upload_session/start`, `append_v2` per [`CHUNK`], `finish` with the last bytes, one chunk
//! in memory whatever the object size; an object smaller than one chunk is one `files/upload`.
//! The file appears only at `finish`, with `mode: add` and no autorename: an existing file is
//! never replaced. An abandoned session holds no visible file and expires at Dropbox (7 days).

use std::time::Duration;

use opendal::services;
use serde::Deserialize;
use serde_json::json;

use super::api::{self, Call};
use super::chunked::{PieceSink, PieceWriter};
use super::store::{Layout, Store};
use super::{Destination, DestinationError, ErrorKind, ObjectInfo, ObjectWriter};
use custos_kit::config::{Invalid, Secret, Validate};

/// Bytes sent per upload-session request (Dropbox takes up to 150 MB; a multiple of 4 MiB).
pub const CHUNK: usize = 8 << 20;
/// `folder` when the config names none (the original's default).
const DEFAULT_FOLDER: &str = "/backups";
const CONTENT_API: &str = "https://content.dropboxapi.com/2/files";
const API: &str = "https://api.dropboxapi.com/2/files";

/// `type: dropbox`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropboxConfig {
    /// `access_token` (long-lived).
    pub access_token: Secret,
    /// `folder`: where in the Dropbox the copies go (default `/backups`).
    #[serde(default)]
    pub folder: Option<String>,
}

impl DropboxConfig {
    /// `folder` as an absolute path without a trailing `/`; `""` for the Dropbox's root (as
    /// the API names it).
    fn folder(&self) -> String {
        let f = self
            .folder
            .as_deref()
            .unwrap_or(DEFAULT_FOLDER)
            .trim_matches('/');
        if f.is_empty() {
            String::new()
        } else {
            format!("/{f}")
        }
    }

    /// The destination this config describes; `stall` bounds each request.
    pub fn build(
        &self,
        id: &str,
        stall: Duration,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        let b = services::Dropbox::default()
            .root(&format!("{}/", self.folder()))
            .access_token(self.access_token.expose());
        Ok(Box::new(Dropbox {
            store: Store::new(id, LAYOUT, b, stall)?,
            folder: self.folder(),
            token: self.access_token.clone(),
            timeout: stall,
        }))
    }
}

impl Validate for DropboxConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.access_token.expose().is_empty() {
            return Err(Invalid::new("access_token", "", "must not be empty"));
        }
        if let Some(f) = &self.folder {
            if !f.starts_with('/') || f.split('/').any(|c| c == "." || c == "..") {
                return Err(Invalid::new(
                    "folder",
                    f,
                    "must be an absolute Dropbox path such as /backups",
                ));
            }
        }
        Ok(())
    }
}

/// For the store's own requests (list, read, delete); uploads do not use it.
const LAYOUT: Layout = Layout {
    kind: "dropbox",
    chunk: None,
    concurrent: 1,
    if_not_exists: false,
};

/// A `dropbox` destination.
struct Dropbox {
    store: Store,
    /// `/folder`.
    folder: String,
    token: Secret,
    timeout: Duration,
}

impl Destination for Dropbox {
    fn id(&self) -> &str {
        self.store.id()
    }

    fn kind(&self) -> &'static str {
        LAYOUT.kind
    }

    fn check(&self) -> Result<(), DestinationError> {
        self.store.check()
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        // The name checks of the store (relative, no `..`) apply here too.
        self.store.check_name(name)?;
        let session = Session {
            destination: self.store.id().to_string(),
            name: name.to_string(),
            path: format!("{}/{name}", self.folder),
            token: self.token.clone(),
            timeout: self.timeout,
            session: None,
            offset: 0,
        };
        Ok(Box::new(PieceWriter::new(session, CHUNK)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        let call = Call {
            destination: self.store.id(),
            op: "list",
            object: prefix,
        };
        // From the deepest folder the prefix names, so a source lists only its own copies.
        let dir = match prefix.rfind('/') {
            Some(i) => format!("{}/{}", self.folder, &prefix[..i]),
            None => self.folder.clone(),
        };
        let http = api::client(&call)?;
        let post = |endpoint: &str, body: serde_json::Value| {
            http.post(format!("{API}/{endpoint}"))
                .bearer_auth(self.token.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
        };
        let mut page: ListPage = match call.json(
            post(
                "list_folder",
                json!({"path": dir, "recursive": true, "limit": 2000}),
            ),
            self.timeout,
        ) {
            Ok(p) => p,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let base = format!("{}/", self.folder.to_lowercase());
        let mut out = Vec::new();
        let mut pages = api::Pages::new(api::MAX_PAGES);
        loop {
            for e in page.entries.drain(..) {
                // Dropbox paths are case-insensitive: strip the folder by `path_lower`,
                // keep the name as stored.
                if e.tag != "file" || !e.path_lower.starts_with(&base) {
                    continue;
                }
                let Some(name) = e.path_display.get(base.len()..) else {
                    continue;
                };
                if name.starts_with(prefix) {
                    out.push(ObjectInfo {
                        name: name.to_string(),
                        size: e.size.unwrap_or(0),
                        modified: e
                            .server_modified
                            .as_deref()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .map(std::time::SystemTime::from),
                    });
                }
            }
            if !page.has_more {
                break;
            }
            pages.next(&call, &page.cursor)?;
            page = call.json(
                post("list_folder/continue", json!({"cursor": page.cursor})),
                self.timeout,
            )?;
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&self, name: &str) -> Result<Box<dyn std::io::Read + Send>, DestinationError> {
        self.store.open(name)
    }

    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        self.store.delete(name)
    }

    /// One: a commit (`upload_session/finish`, `files/upload`, a delete) takes the write
    /// lock of the whole Dropbox, and Dropbox refuses writes that overlap with
    /// `too_many_write_operations` (its performance guide: serialise them or batch them).
    fn max_uploads(&self) -> Option<std::num::NonZeroUsize> {
        super::ONE_UPLOAD
    }
}

/// One answer of `list_folder` / `list_folder/continue`.
#[derive(Deserialize)]
struct ListPage {
    entries: Vec<Entry>,
    cursor: String,
    has_more: bool,
}

/// A file or folder as listed (the fields used here).
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = ".tag")]
    tag: String,
    path_display: String,
    path_lower: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    server_modified: Option<String>,
}

#[derive(Deserialize)]
struct Started {
    session_id: String,
}

/// One object's upload session: pieces of [`CHUNK`] go out as they fill.
struct Session {
    destination: String,
    name: String,
    /// The file's absolute Dropbox path.
    path: String,
    token: Secret,
    timeout: Duration,
    /// Set by `upload_session/start`.
    session: Option<String>,
    /// Bytes the session holds.
    offset: u64,
}

impl Session {
    /// One content request: `endpoint` with `arg` as its `Dropbox-API-Arg`, `body` as data.
    fn post(
        &self,
        op: &'static str,
        endpoint: &str,
        arg: serde_json::Value,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, DestinationError> {
        let call = Call {
            destination: &self.destination,
            op,
            object: &self.name,
        };
        let req = api::client(&call)?
            .post(format!("{CONTENT_API}/{endpoint}"))
            .bearer_auth(self.token.expose())
            .header("Dropbox-API-Arg", api::header_json(&arg))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        call.send(req, self.timeout)
    }
}

impl PieceSink for Session {
    /// Starts the session with the first piece, appends the others.
    fn piece(&mut self, bytes: Vec<u8>) -> Result<(), DestinationError> {
        let len = bytes.len() as u64;
        match &self.session {
            None => {
                let body = self.post(
                    "start upload session of",
                    "upload_session/start",
                    json!({"close": false}),
                    bytes,
                )?;
                let started: Started = serde_json::from_slice(&body).map_err(|e| {
                    Call {
                        destination: &self.destination,
                        op: "start upload session of",
                        object: &self.name,
                    }
                    .error(ErrorKind::Other, format!("unexpected answer: {e}"))
                })?;
                self.session = Some(started.session_id);
            }
            Some(id) => {
                let arg =
                    json!({"cursor": {"session_id": id, "offset": self.offset}, "close": false});
                self.post("upload to", "upload_session/append_v2", arg, bytes)?;
            }
        }
        self.offset += len;
        Ok(())
    }

    /// `finish` with the last bytes, or one `files/upload` for an object under one piece.
    fn finish(&mut self, bytes: Vec<u8>) -> Result<(), DestinationError> {
        let commit = json!({"path": self.path, "mode": "add", "autorename": false, "mute": true});
        match &self.session {
            None => self.post("upload", "upload", commit, bytes)?,
            Some(id) => {
                let arg =
                    json!({"cursor": {"session_id": id, "offset": self.offset}, "commit": commit});
                self.post("finish upload of", "upload_session/finish", arg, bytes)?
            }
        };
        Ok(())
    }

    /// Nothing to undo: an unfinished session is no file and expires at Dropbox.
    fn cancel(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_defaults_to_backups_and_must_be_absolute() {
        let c: DropboxConfig =
            serde_json::from_value(serde_json::json!({"access_token": "t"})).expect("config");
        c.validate().unwrap();
        assert_eq!(c.folder(), "/backups");
        let c: DropboxConfig =
            serde_json::from_value(serde_json::json!({"access_token": "t", "folder": "/a/b/"}))
                .expect("config");
        assert_eq!(c.folder(), "/a/b");
        let c: DropboxConfig =
            serde_json::from_value(serde_json::json!({"access_token": "t", "folder": "/"}))
                .expect("config");
        c.validate().unwrap();
        assert_eq!(c.folder(), "", "the root, as the API names it");
        let c: DropboxConfig =
            serde_json::from_value(serde_json::json!({"access_token": "t", "folder": "a"}))
                .expect("config");
        assert_eq!(c.validate().unwrap_err().key, "folder");
    }
}
