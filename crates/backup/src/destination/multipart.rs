//! Incomplete multipart uploads that a killed run (`kill -9`) left behind, found and aborted
//! for [`super::Destination::remove_abandoned`]. S3 and GCS's XML API speak the same two
//! requests: ListMultipartUploads (`GET /{bucket}?uploads&prefix=`) and AbortMultipartUpload
//! (`DELETE /{bucket}/{key}?uploadId=`). opendal has neither, so they are signed here with
//! the store's own reqsign signer and sent with opendal's HTTP client.
//!
//! Such an upload is invisible to `list`, `restore` and retention (it is no object) but the
//! store keeps its parts, and bills for them, until it is aborted. The job's lock guarantees
//! no live run of the same job is writing under the prefix, so every upload found there
//! belongs to a dead writer.

use std::time::Duration;

use opendal::raw::{percent_encode_path, AccessDyn, AccessorInfoHttpSend, HttpClient};
use opendal::{Buffer, Operator};
use reqsign_core::{Context, OsEnv, ProvideCredential, SignRequest, Signer, SigningCredential};

use super::{runtime, DestinationError, ErrorKind};

/// Removes a store's abandoned uploads under a prefix (see the module doc).
pub trait AbandonedUploads: Send + Sync {
    /// Aborts every incomplete upload under `prefix`; returns their object names.
    fn remove(&self, prefix: &str) -> Result<Vec<String>, DestinationError>;
}

/// The ListMultipartUploads / AbortMultipartUpload client of one bucket.
pub struct MultipartUploads<K: SigningCredential> {
    destination: String,
    /// `{endpoint}/{bucket}` (path-style addressing, as opendal uses).
    bucket_url: String,
    signer: Signer<K>,
    http: HttpClient,
    timeout: Duration,
}

impl<K: SigningCredential> MultipartUploads<K> {
    /// A client for `bucket_url` that signs with `loader`'s credentials and `builder`'s
    /// scheme, over the HTTP client of the store's operator `op`.
    pub fn new(
        destination: &str,
        bucket_url: String,
        op: &Operator,
        loader: impl ProvideCredential<Credential = K>,
        builder: impl SignRequest<Credential = K>,
        timeout: Duration,
    ) -> Self {
        let info = op.inner().info_dyn();
        let ctx = Context::new()
            .with_file_read(reqsign_file_read_tokio::TokioFileRead)
            .with_http_send(AccessorInfoHttpSend::new(info.clone()))
            .with_env(OsEnv);
        Self {
            destination: destination.to_string(),
            bucket_url,
            signer: Signer::new(ctx, loader, builder),
            http: info.http_client(),
            timeout,
        }
    }

    fn fail(
        &self,
        op: &'static str,
        object: &str,
        kind: ErrorKind,
        message: String,
    ) -> DestinationError {
        DestinationError::Store {
            destination: self.destination.clone(),
            op,
            object: object.to_string(),
            kind,
            message,
        }
    }

    /// Sends one signed request with an empty body; the status and body.
    async fn send(
        &self,
        op: &'static str,
        object: &str,
        method: http::Method,
        url: &str,
    ) -> Result<(http::StatusCode, String), DestinationError> {
        let req = http::Request::builder()
            .method(method)
            .uri(url)
            .header(http::header::CONTENT_LENGTH, 0)
            .body(Buffer::new())
            .map_err(|e| self.fail(op, object, ErrorKind::Other, e.to_string()))?;
        let (mut parts, body) = req.into_parts();
        self.signer.sign(&mut parts, None).await.map_err(|e| {
            // The reason, never the credential (reqsign's messages hold none).
            self.fail(op, object, ErrorKind::Auth, format!("signing: {e}"))
        })?;
        let sent = self.http.send(http::Request::from_parts(parts, body));
        let resp = tokio::time::timeout(self.timeout, sent)
            .await
            .map_err(|_| {
                self.fail(
                    op,
                    object,
                    ErrorKind::Other,
                    format!(
                        "no answer within {} s (stall_timeout)",
                        self.timeout.as_secs()
                    ),
                )
            })?
            .map_err(|e| super::store::store_error(&self.destination, op, object, e))?;
        let status = resp.status();
        let text = String::from_utf8_lossy(&resp.into_body().to_bytes()).into_owned();
        Ok((status, text))
    }

    async fn remove_all(&self, prefix: &str) -> Result<Vec<String>, DestinationError> {
        let mut removed = Vec::new();
        let mut markers: Option<(String, String)> = None;
        let mut pages = 0;
        loop {
            pages += 1;
            if pages > super::api::MAX_PAGES {
                return Err(self.fail(
                    "list incomplete uploads",
                    prefix,
                    ErrorKind::Other,
                    format!(
                        "listing not finished after {} pages; stopped",
                        super::api::MAX_PAGES
                    ),
                ));
            }
            let mut url = format!("{}?uploads&prefix={}", self.bucket_url, query(prefix));
            if let Some((key, id)) = &markers {
                url.push_str(&format!(
                    "&key-marker={}&upload-id-marker={}",
                    query(key),
                    query(id)
                ));
            }
            let (status, body) = self
                .send("list incomplete uploads", prefix, http::Method::GET, &url)
                .await?;
            if !status.is_success() {
                return Err(self.fail(
                    "list incomplete uploads",
                    prefix,
                    status_kind(status),
                    format!("HTTP {status}: {}", error_code(&body)),
                ));
            }
            let page = parse_uploads(&body);
            for (key, id) in &page.uploads {
                // The listing is already limited to `prefix`; this guards a server that
                // ignored it, so nothing outside this source is ever touched.
                if !key.starts_with(prefix) {
                    continue;
                }
                let url = format!(
                    "{}/{}?uploadId={}",
                    self.bucket_url,
                    percent_encode_path(key),
                    query(id)
                );
                let (status, body) = self
                    .send("abort upload of", key, http::Method::DELETE, &url)
                    .await?;
                // 404: gone meanwhile (completed or aborted by a lifecycle rule).
                if !status.is_success() && status != http::StatusCode::NOT_FOUND {
                    return Err(self.fail(
                        "abort upload of",
                        key,
                        status_kind(status),
                        format!("HTTP {status}: {}", error_code(&body)),
                    ));
                }
                tracing::info!(destination = %self.destination, object = %key,
                    "aborted an upload a killed run left incomplete");
                removed.push(key.clone());
            }
            match page.next {
                Some(next) if page.truncated && markers.as_ref() != Some(&next) => {
                    markers = Some(next)
                }
                _ => break,
            }
        }
        Ok(removed)
    }
}

impl<K: SigningCredential> AbandonedUploads for MultipartUploads<K> {
    /// Each request waits at most the stall timeout, as the store's own requests.
    fn remove(&self, prefix: &str) -> Result<Vec<String>, DestinationError> {
        runtime::block_on(self.remove_all(prefix))
    }
}

fn status_kind(status: http::StatusCode) -> ErrorKind {
    match status.as_u16() {
        404 => ErrorKind::NotFound,
        401 | 403 => ErrorKind::Auth,
        429 | 500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

/// `<Code>` of an XML error body, if any.
fn error_code(body: &str) -> String {
    tag(body, "Code").map(unescape).unwrap_or_default()
}

/// A query-string value: everything but RFC 3986's unreserved characters encoded.
pub(crate) fn query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One page of ListMultipartUploads.
#[derive(Debug, Default, PartialEq)]
struct UploadsPage {
    /// (key, upload id).
    uploads: Vec<(String, String)>,
    truncated: bool,
    /// `NextKeyMarker`, `NextUploadIdMarker`.
    next: Option<(String, String)>,
}

/// Reads the few elements needed from a ListMultipartUploadsResult.
fn parse_uploads(xml: &str) -> UploadsPage {
    let uploads = xml
        .split("<Upload>")
        .skip(1)
        .filter_map(|u| {
            let u = u.split("</Upload>").next()?;
            Some((unescape(tag(u, "Key")?), unescape(tag(u, "UploadId")?)))
        })
        .collect();
    let next = match (tag(xml, "NextKeyMarker"), tag(xml, "NextUploadIdMarker")) {
        (Some(k), Some(i)) if !k.is_empty() => Some((unescape(k), unescape(i))),
        _ => None,
    };
    UploadsPage {
        uploads,
        truncated: tag(xml, "IsTruncated") == Some("true"),
        next,
    }
}

/// The text of the first `<name>...</name>` in `xml`.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let rest = &xml[xml.find(&open)? + open.len()..];
    Some(&rest[..rest.find(&format!("</{name}>"))?])
}

/// XML's five entities and numeric references.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(end) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let entity = &after[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e => e
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| e.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => out.push(c),
            None => out.push_str(&after[..=end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_gives_keys_ids_and_the_next_markers() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult><Bucket>b</Bucket><KeyMarker></KeyMarker>
<NextKeyMarker>db/2/x&amp;y</NextKeyMarker><NextUploadIdMarker>id2</NextUploadIdMarker>
<IsTruncated>true</IsTruncated>
<Upload><Key>db/1/a.tar</Key><UploadId>id1</UploadId><Initiated>2024-01-01T00:00:00Z</Initiated></Upload>
<Upload><Key>db/2/x&amp;y</Key><UploadId>id2</UploadId></Upload>
</ListMultipartUploadsResult>"#;
        assert_eq!(
            parse_uploads(xml),
            UploadsPage {
                uploads: vec![
                    ("db/1/a.tar".into(), "id1".into()),
                    ("db/2/x&y".into(), "id2".into())
                ],
                truncated: true,
                next: Some(("db/2/x&y".into(), "id2".into())),
            }
        );
        let empty = "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>";
        assert_eq!(parse_uploads(empty), UploadsPage::default());
    }

    #[test]
    fn values_are_encoded_and_entities_decoded() {
        assert_eq!(query("db/a b+c"), "db%2Fa%20b%2Bc");
        assert_eq!(unescape("a&lt;b&#62;&#x26;&bogus;"), "a<b>&&bogus;");
        assert_eq!(
            error_code("<Error><Code>AccessDenied</Code></Error>"),
            "AccessDenied"
        );
    }
}
