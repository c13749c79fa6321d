//! The `gdrive` destination (Google Drive API v3 with a service account): objects are files
//! `{source id}/{timestamp}/{file}` in folders under the Drive folder `folder_id`, as the
//! original lays them out.
//!
//! Not through opendal: its gdrive service starts every path at the account's own "My
//! Drive" (`root`), while `folder_id` is usually a folder another account shared with the
//! service account, which no path from `root` reaches; and it uploads an object in one
//! request held in memory. Here every request is Drive's REST API through [`super::api`]:
//! folders are found by name under their parent id (`files.list`, `q`), an object is a
//! resumable upload (one session, [`CHUNK`]-sized `PUT`s with `Content-Range`, the file
//! exists only once the last one lands), reads are ranged `alt=media` downloads.
//!
//! Access tokens come from the service account's key (`creds_file`, see
//! [`super::service_account`]), renewed before any request when little of one is left, so an
//! upload may outlive any number of tokens.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

use super::api::{self, Call};
use super::chunked::{PieceSink, PieceWriter, RangeReader};
use super::service_account::ServiceAccount;
use super::{Destination, DestinationError, ErrorKind, ObjectInfo, ObjectWriter};
use custos_kit::config::{Invalid, Validate};

/// Bytes per upload request (Drive wants multiples of 256 KiB but for the last).
pub const CHUNK: usize = 8 << 20;
/// Bytes fetched per download request.
const READ_CHUNK: u64 = 8 << 20;
const SCOPE: &str = "https://www.googleapis.com/auth/drive";
const FILES: &str = "https://www.googleapis.com/drive/v3/files";
const UPLOAD: &str = "https://www.googleapis.com/upload/drive/v3/files";
const FOLDER: &str = "application/vnd.google-apps.folder";

/// `type: gdrive`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GdriveConfig {
    /// `creds_file`: the service account's JSON key.
    pub creds_file: PathBuf,
    /// `folder_id`: the Drive folder (shared with the service account) that holds the copies.
    pub folder_id: String,
}

impl Validate for GdriveConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.creds_file.as_os_str().is_empty() {
            return Err(Invalid::new(
                "creds_file",
                "",
                "must name the service account's JSON key",
            ));
        }
        let f = &self.folder_id;
        if f.is_empty()
            || !f
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Invalid::new(
                "folder_id",
                f,
                "must be a Drive folder id (the last part of the folder's URL)",
            ));
        }
        Ok(())
    }
}

impl GdriveConfig {
    /// The destination this config describes; `stall` bounds each request. The key is read
    /// when the first token is needed.
    pub fn build(
        &self,
        id: &str,
        stall: Duration,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        Ok(Box::new(Gdrive {
            id: id.to_string(),
            config: self.clone(),
            timeout: stall,
            tokens: Arc::new(ServiceAccount::new(self.creds_file.clone(), SCOPE)),
        }))
    }
}

/// A file or folder as Drive lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DriveFile {
    id: String,
    name: String,
    mime_type: String,
    /// Decimal, absent for folders.
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    modified_time: Option<String>,
}

impl DriveFile {
    fn is_folder(&self) -> bool {
        self.mime_type == FOLDER
    }

    fn size(&self) -> u64 {
        self.size
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileList {
    files: Vec<DriveFile>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// A `gdrive` destination.
struct Gdrive {
    id: String,
    config: GdriveConfig,
    timeout: Duration,
    /// Shared with the writers and readers of this destination.
    tokens: Arc<ServiceAccount>,
}

/// A string inside a Drive query (`q`), quoted.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn url(base: &str, params: &[(&str, &str)]) -> Url {
    Url::parse_with_params(base, params).expect("static base URL")
}

impl Gdrive {
    fn call<'a>(&'a self, op: &'static str, object: &'a str) -> Call<'a> {
        Call {
            destination: &self.id,
            op,
            object,
        }
    }

    /// A request with a valid token.
    fn request(
        &self,
        method: Method,
        url: Url,
    ) -> Result<reqwest::RequestBuilder, DestinationError> {
        let call = self.call("get an access token for", "");
        let http = api::client(&call)?;
        Ok(http
            .request(method, url)
            .bearer_auth(self.tokens.get(call, self.timeout)?.expose()))
    }

    /// The children of folder `parent` (only those named `name`, only folders), every page.
    fn children(
        &self,
        parent: &str,
        name: Option<&str>,
        folders: bool,
        op: &'static str,
    ) -> Result<Vec<DriveFile>, DestinationError> {
        let mut q = format!("{} in parents and trashed = false", quoted(parent));
        if let Some(n) = name {
            q.push_str(&format!(" and name = {}", quoted(n)));
        }
        if folders {
            q.push_str(&format!(" and mimeType = {}", quoted(FOLDER)));
        }
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        let mut pages = api::Pages::new(api::MAX_PAGES);
        loop {
            let mut params = vec![
                ("q", q.as_str()),
                (
                    "fields",
                    "nextPageToken,files(id,name,mimeType,size,modifiedTime)",
                ),
                ("pageSize", "1000"),
                ("supportsAllDrives", "true"),
                ("includeItemsFromAllDrives", "true"),
            ];
            if let Some(p) = &page {
                params.push(("pageToken", p));
            }
            let call = self.call(op, name.unwrap_or(""));
            let list: FileList = call.json(
                self.request(Method::GET, url(FILES, &params))?,
                self.timeout,
            )?;
            out.extend(list.files);
            match list.next_page_token {
                Some(t) => {
                    pages.next(&call, &t)?;
                    page = Some(t);
                }
                None => return Ok(out),
            }
        }
    }

    /// The id of the folder that holds `name`, from `folder_id` down by name; a missing
    /// folder is made when `create`, else the answer is `None`.
    fn parent_of(
        &self,
        name: &str,
        create: bool,
        op: &'static str,
    ) -> Result<Option<String>, DestinationError> {
        let dirs = name.rsplit_once('/').map_or("", |(d, _)| d);
        let mut parent = self.config.folder_id.clone();
        for d in dirs.split('/').filter(|d| !d.is_empty()) {
            parent = match self
                .children(&parent, Some(d), true, op)?
                .into_iter()
                .next()
            {
                Some(f) => f.id,
                None if create => self.create_folder(&parent, d)?,
                None => return Ok(None),
            };
        }
        Ok(Some(parent))
    }

    /// Makes folder `name` in `parent`; its id.
    fn create_folder(&self, parent: &str, name: &str) -> Result<String, DestinationError> {
        let params = [
            ("supportsAllDrives", "true"),
            ("fields", "id,name,mimeType"),
        ];
        let made: DriveFile = self.call("create folder", name).json(
            self.request(Method::POST, url(FILES, &params))?
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json!({"name": name, "mimeType": FOLDER, "parents": [parent]}).to_string()),
            self.timeout,
        )?;
        Ok(made.id)
    }

    /// The file `name` and its folder's id, if it exists.
    fn resolve(
        &self,
        name: &str,
        op: &'static str,
    ) -> Result<Option<(DriveFile, String)>, DestinationError> {
        let Some(parent) = self.parent_of(name, false, op)? else {
            return Ok(None);
        };
        let file = name.rsplit('/').next().unwrap_or(name);
        let found = self
            .children(&parent, Some(file), false, op)?
            .into_iter()
            .find(|f| !f.is_folder());
        Ok(found.map(|f| (f, parent)))
    }

    fn walk(
        &self,
        parent: &str,
        path: &str,
        prefix: &str,
        out: &mut Vec<ObjectInfo>,
    ) -> Result<(), DestinationError> {
        for f in self.children(parent, None, false, "list")? {
            let p = if path.is_empty() {
                f.name.clone()
            } else {
                format!("{path}/{}", f.name)
            };
            if f.is_folder() {
                let dir = format!("{p}/");
                if dir.starts_with(prefix) || prefix.starts_with(&dir) {
                    self.walk(&f.id, &p, prefix, out)?;
                }
            } else if p.starts_with(prefix) {
                out.push(ObjectInfo {
                    name: p,
                    size: f.size(),
                    modified: f
                        .modified_time
                        .as_deref()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(SystemTime::from),
                });
            }
        }
        Ok(())
    }

    fn check_name(&self, name: &str) -> Result<(), DestinationError> {
        if super::store::valid_name(name) {
            Ok(())
        } else {
            Err(DestinationError::Other {
                destination: self.id.clone(),
                message: format!("invalid object name {name:?}"),
            })
        }
    }
}

impl Destination for Gdrive {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "gdrive"
    }

    /// Reads `folder_id`'s metadata: the key works and the folder is shared with it.
    fn check(&self) -> Result<(), DestinationError> {
        let id = &self.config.folder_id;
        let f: DriveFile = self.call("check", id).json(
            self.request(
                Method::GET,
                url(
                    &format!("{FILES}/{id}"),
                    &[
                        ("fields", "id,name,mimeType"),
                        ("supportsAllDrives", "true"),
                    ],
                ),
            )?,
            self.timeout,
        )?;
        if f.is_folder() {
            Ok(())
        } else {
            Err(self
                .call("check", id)
                .error(ErrorKind::Other, "folder_id is not a folder".into()))
        }
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        self.check_name(name)?;
        let parent = self
            .parent_of(name, true, "create folder")?
            .unwrap_or_else(|| self.config.folder_id.clone());
        let file = name.rsplit('/').next().unwrap_or(name);
        let a = self.call("start upload of", name).exchange(
            self.request(
                Method::POST,
                url(
                    UPLOAD,
                    &[("uploadType", "resumable"), ("supportsAllDrives", "true")],
                ),
            )?
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=UTF-8",
            )
            .header("X-Upload-Content-Type", "application/octet-stream")
            .body(json!({"name": file, "parents": [parent]}).to_string()),
            self.timeout,
        )?;
        if !a.status.is_success() {
            return Err(self
                .call("start upload of", name)
                .status_error(a.status, &a.body));
        }
        let session = a
            .headers
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| Url::parse(l).ok())
            .ok_or_else(|| {
                self.call("start upload of", name)
                    .error(ErrorKind::Other, "no upload session in the answer".into())
            })?;
        let upload = Upload {
            drive: self.clone_handle(),
            name: name.to_string(),
            session: Some(session),
            offset: 0,
        };
        Ok(Box::new(PieceWriter::new(upload, CHUNK)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        let mut out = Vec::new();
        self.walk(&self.config.folder_id, "", prefix, &mut out)?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
        self.check_name(name)?;
        let (f, _) = self.resolve(name, "open")?.ok_or_else(|| {
            self.call("open", name)
                .error(ErrorKind::NotFound, "no such file".into())
        })?;
        let drive = self.clone_handle();
        let name = name.to_string();
        let media = url(
            &format!("{FILES}/{}", f.id),
            &[("alt", "media"), ("supportsAllDrives", "true")],
        );
        let fetch = move |first: u64, last: u64| {
            let req = drive
                .request(Method::GET, media.clone())?
                .header(reqwest::header::RANGE, format!("bytes={first}-{last}"));
            drive.call("read", &name).send(req, drive.timeout)
        };
        Ok(Box::new(RangeReader::new(fetch, f.size(), READ_CHUNK)))
    }

    /// Deletes the file, then its folder when that is left empty (a run's folder).
    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        self.check_name(name)?;
        let Some((f, parent)) = self.resolve(name, "delete")? else {
            return Ok(());
        };
        self.delete_id(&f.id, name)?;
        if parent != self.config.folder_id
            && self.children(&parent, None, false, "delete")?.is_empty()
        {
            let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
            self.delete_id(&parent, dir)?;
        }
        Ok(())
    }
}

impl Gdrive {
    fn delete_id(&self, id: &str, name: &str) -> Result<(), DestinationError> {
        let call = self.call("delete", name);
        let a = call.exchange(
            self.request(
                Method::DELETE,
                url(&format!("{FILES}/{id}"), &[("supportsAllDrives", "true")]),
            )?,
            self.timeout,
        )?;
        match a.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(call.status_error(s, &a.body)),
        }
    }

    /// A second handle on the same account and token cache, for a writer or reader.
    fn clone_handle(&self) -> Arc<Gdrive> {
        Arc::new(Gdrive {
            id: self.id.clone(),
            config: self.config.clone(),
            timeout: self.timeout,
            tokens: self.tokens.clone(),
        })
    }
}

/// One object's resumable upload session: pieces of [`CHUNK`] go out as they fill.
struct Upload {
    drive: Arc<Gdrive>,
    name: String,
    /// The session URI; `None` once finished or cancelled.
    session: Option<Url>,
    /// Bytes the session holds.
    offset: u64,
}

impl Upload {
    /// Sends `bytes` at `offset`; `total` on the last request. Drive answers 308 with the
    /// bytes it holds (`Range: bytes=0-N`) until the last, then 200/201; when it holds
    /// fewer than were sent, the rest is sent again from there (a few times without
    /// progress at most).
    fn put(&mut self, bytes: Vec<u8>, total: Option<u64>) -> Result<(), DestinationError> {
        let call = self.drive.call("upload to", &self.name);
        let Some(session) = self.session.clone() else {
            return Err(call.error(ErrorKind::Other, "upload already closed".into()));
        };
        let total_s = total.map_or("*".to_string(), |t| t.to_string());
        let mut bytes = bytes::Bytes::from(bytes);
        let mut stuck = 0;
        loop {
            let len = bytes.len() as u64;
            let end = self.offset + len;
            let range = if len == 0 {
                format!("bytes */{total_s}")
            } else {
                format!("bytes {}-{}/{total_s}", self.offset, end - 1)
            };
            let a = call.exchange(
                self.drive
                    .request(Method::PUT, session.clone())?
                    .header(reqwest::header::CONTENT_RANGE, range)
                    .body(bytes.clone()),
                self.drive.timeout,
            )?;
            match a.status.as_u16() {
                200 | 201 if total.is_some() => {
                    self.session = None;
                    self.offset = end;
                    return Ok(());
                }
                308 => {
                    // No `Range`: Drive holds nothing yet.
                    let held = a
                        .headers
                        .get(reqwest::header::RANGE)
                        .and_then(|r| r.to_str().ok())
                        .and_then(|r| r.strip_prefix("bytes=0-"))
                        .and_then(|n| n.parse::<u64>().ok())
                        .map_or(0, |last| last + 1);
                    if held == end && total.is_none() {
                        self.offset = end;
                        return Ok(());
                    }
                    if held < self.offset || held >= end {
                        return Err(call.error(
                            ErrorKind::Other,
                            format!("Drive holds {held} bytes, {end} were sent"),
                        ));
                    }
                    stuck = if held == self.offset { stuck + 1 } else { 0 };
                    if stuck > 3 {
                        return Err(call.error(
                            ErrorKind::Transient,
                            format!("Drive takes no more bytes after {held}"),
                        ));
                    }
                    bytes = bytes.slice((held - self.offset) as usize..);
                    self.offset = held;
                }
                _ if !a.status.is_success() => return Err(call.status_error(a.status, &a.body)),
                s => {
                    return Err(call.error(ErrorKind::Other, format!("unexpected answer HTTP {s}")))
                }
            }
        }
    }
}

impl PieceSink for Upload {
    fn piece(&mut self, bytes: Vec<u8>) -> Result<(), DestinationError> {
        self.put(bytes, None)
    }

    /// The last bytes with the total size: the file appears.
    fn finish(&mut self, bytes: Vec<u8>) -> Result<(), DestinationError> {
        let total = self.offset + bytes.len() as u64;
        self.put(bytes, Some(total))
    }

    /// Cancels the session (an unfinished session is no file, and expires anyway).
    fn cancel(&mut self) {
        if let Some(session) = self.session.take() {
            if let Ok(req) = self.drive.request(Method::DELETE, session) {
                let _ = self
                    .drive
                    .call("cancel upload of", &self.name)
                    .exchange(req, self.drive.timeout);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_id_must_be_an_id() {
        let c = |id: &str| GdriveConfig {
            creds_file: "/k.json".into(),
            folder_id: id.into(),
        };
        c("1AbC-d_9").validate().unwrap();
        for bad in ["", "a/b", "a b", "x'y"] {
            assert_eq!(c(bad).validate().unwrap_err().key, "folder_id", "{bad}");
        }
    }

    #[test]
    fn query_strings_are_quoted() {
        assert_eq!(quoted("it's"), r"'it\'s'");
        assert_eq!(quoted(r"a\b"), r"'a\\b'");
    }
}
