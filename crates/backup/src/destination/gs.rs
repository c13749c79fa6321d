//! The `gs` destination (Google Cloud Storage): objects are keys
//! `{source id}/{timestamp}/{file}` in a bucket, written through the shared opendal store
//! ([`super::store`]). opendal sends an object larger than one part as an XML-API multipart
//! upload of [`PART_SIZE`] parts, which becomes an object only when completed; the upload of
//! a run killed with `kill -9` is aborted by the job's next run ([`super::multipart`]).
//!
//! Authentication is the service-account JSON key of `gcs_creds_path`: a JWT signed with its
//! key is exchanged for an access token at the key's `token_uri`, as Google's client
//! libraries do (reqsign's own exchange always posts to Google's endpoint, so custos makes
//! the exchange itself, [`ServiceAccountToken`]). `STORAGE_EMULATOR_HOST` (the variable
//! Google's client libraries honor) points the requests at another endpoint.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opendal::services;
use reqsign_core::time::Timestamp;
use reqsign_core::{Context, ProvideCredential};
use reqsign_google::{Credential, RequestSigner, Token};
use serde::Deserialize;

use super::multipart::MultipartUploads;
use super::service_account::{Key, TokenAnswer, MARGIN};
use super::store::{Layout, Store};
use super::{Destination, DestinationError};
use custos_kit::config::{Invalid, Validate};

/// Size of one multipart part (GCS's minimum is 5 MiB, except for the last part).
pub const PART_SIZE: usize = 8 << 20;
/// Where requests go without `STORAGE_EMULATOR_HOST`.
const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
/// The environment variable naming another endpoint (an emulator), as for Google's libraries.
pub const EMULATOR_ENV: &str = "STORAGE_EMULATOR_HOST";
/// The token endpoint when the key file names none.
/// Read and write objects, nothing else.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

/// `type: gs`: objects are keys `{source id}/{timestamp}/{file}` in `bucket`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GsConfig {
    /// `bucket`.
    pub bucket: String,
    /// `gcs_creds_path`: the service account's JSON key file.
    pub gcs_creds_path: PathBuf,
}

impl Validate for GsConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return Err(Invalid::new(
                "bucket",
                &self.bucket,
                "must be a bucket name (no /)",
            ));
        }
        if self.gcs_creds_path.as_os_str().is_empty() {
            return Err(Invalid::new(
                "gcs_creds_path",
                "",
                "must be the path of a service-account JSON key",
            ));
        }
        Ok(())
    }
}

/// How GCS uploads are cut: multipart parts, one at a time; a single-request upload is
/// refused when the object exists (`ifGenerationMatch=0`).
const LAYOUT: Layout = Layout {
    kind: "gs",
    chunk: Some(PART_SIZE),
    concurrent: 1,
    if_not_exists: true,
};

impl GsConfig {
    /// The destination this config describes; `stall` bounds each request. Reads the key
    /// file now, so a missing or malformed key fails before anything is uploaded.
    pub fn build(
        &self,
        id: &str,
        stall: Duration,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        let key = Key::load(&self.gcs_creds_path).map_err(|e| DestinationError::Other {
            destination: id.to_string(),
            message: format!("gcs_creds_path {}: {e}", self.gcs_creds_path.display()),
        })?;
        let cache = Arc::new(Mutex::new(None));
        let token = || ServiceAccountToken {
            destination: id.to_string(),
            key: key.clone(),
            cache: cache.clone(),
        };
        let endpoint = endpoint(std::env::var(EMULATOR_ENV).ok().as_deref());
        let b = services::Gcs::default()
            .bucket(&self.bucket)
            .endpoint(&endpoint)
            .scope(SCOPE)
            .disable_config_load()
            .disable_vm_metadata()
            .credential_provider(token());
        let store = Store::new(id, LAYOUT, b, stall)?;
        let uploads = MultipartUploads::new(
            id,
            format!("{endpoint}/{}", self.bucket),
            store.operator(),
            token(),
            RequestSigner::new("storage").with_scope(SCOPE),
            stall,
        );
        Ok(Box::new(store.with_abandoned_uploads(uploads)))
    }
}

/// The endpoint for a `STORAGE_EMULATOR_HOST` value (`host:port` or a URL), or Google's.
fn endpoint(emulator: Option<&str>) -> String {
    match emulator.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) if h.starts_with("http://") || h.starts_with("https://") => {
            h.trim_end_matches('/').to_string()
        }
        Some(h) => format!("http://{}", h.trim_end_matches('/')),
        None => DEFAULT_ENDPOINT.to_string(),
    }
}

/// Exchanges a JWT signed with the service account's key for an access token at the key's
/// `token_uri` (RFC 7523), as Google's client libraries do. The signer calls it again when
/// the token is about to expire, so runs longer than a token's hour keep working.
#[derive(Debug)]
struct ServiceAccountToken {
    destination: String,
    key: Key,
    /// The last token, shared by the store's signer and the cleanup's, so a run exchanges
    /// the key once (reqsign's `Token` hides the token from `Debug`).
    cache: Arc<Mutex<Option<Token>>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenRefusal {
    error: String,
    error_description: String,
}

impl ServiceAccountToken {
    async fn exchange(&self, ctx: &Context) -> Result<Token, String> {
        let uri = self.key.token_uri();
        let body = self.key.token_request(SCOPE).map_err(|e| e.to_string())?;
        let req = http::Request::post(uri)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(bytes::Bytes::from(body))
            .map_err(|e| format!("token_uri {uri:?}: {e}"))?;
        let started = Timestamp::now();
        let resp = ctx
            .http_send(req)
            .await
            .map_err(|e| format!("token request to {uri} failed: {e}"))?;
        if resp.status() != http::StatusCode::OK {
            let r: TokenRefusal = serde_json::from_slice(resp.body()).unwrap_or_default();
            return Err(format!(
                "token endpoint {uri} refused the key of {}: {} {} {}",
                self.key.client_email,
                resp.status(),
                r.error,
                r.error_description
            ));
        }
        let a: TokenAnswer = serde_json::from_slice(resp.body())
            .map_err(|_| format!("token endpoint {uri}: not a token answer"))?;
        if a.access_token.is_empty() || a.expires_in == 0 {
            return Err(format!("token endpoint {uri}: empty token"));
        }
        Ok(Token {
            access_token: a.access_token,
            expires_at: Some(started + Duration::from_secs(a.expires_in)),
        })
    }
}

impl ProvideCredential for ServiceAccountToken {
    type Credential = Credential;

    async fn provide_credential(&self, ctx: &Context) -> reqsign_core::Result<Option<Credential>> {
        let cached = self.cache.lock().ok().and_then(|c| c.clone());
        if let Some(t) = cached.filter(|t| {
            t.expires_at
                .is_some_and(|at| at > Timestamp::now() + MARGIN)
        }) {
            return Ok(Some(Credential::with_token(t)));
        }
        match self.exchange(ctx).await {
            Ok(token) => {
                if let Ok(mut c) = self.cache.lock() {
                    *c = Some(token.clone());
                }
                Ok(Some(Credential::with_token(token)))
            }
            Err(message) => {
                // reqsign reports a failed provider only as "failed to load signing
                // credential": say why here. The message holds no key and no token.
                tracing::error!(destination = %self.destination, "{message}");
                Err(reqsign_core::Error::credential_invalid(message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulator_variable_takes_host_port_or_a_url() {
        assert_eq!(endpoint(None), DEFAULT_ENDPOINT);
        assert_eq!(endpoint(Some("")), DEFAULT_ENDPOINT);
        assert_eq!(endpoint(Some("127.0.0.1:4443")), "http://127.0.0.1:4443");
        assert_eq!(
            endpoint(Some("https://gcs.example:8443/")),
            "https://gcs.example:8443"
        );
    }

    #[test]
    fn a_bad_key_file_is_named_without_its_content() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("key.json");
        std::fs::write(
            &p,
            r#"{"type": "service_account", "private_key": "SECRET-PEM"#,
        )
        .expect("write");
        let build = |path: &std::path::Path| {
            let c = GsConfig {
                bucket: "b".into(),
                gcs_creds_path: path.to_path_buf(),
            };
            match c.build("gcs", Duration::from_secs(5)) {
                Ok(_) => panic!("built with a bad key file"),
                Err(e) => e.to_string(),
            }
        };
        let e = build(&p);
        assert!(e.contains("key.json") && !e.contains("SECRET"), "{e}");
        std::fs::write(
            &p,
            r#"{"type": "authorized_user", "client_email": "a", "private_key": "SECRET-PEM"}"#,
        )
        .expect("write");
        let e = build(&p);
        assert!(
            e.contains("key.json") && e.contains("authorized_user") && !e.contains("SECRET"),
            "{e}"
        );
        let e = build(&t.path().join("none.json"));
        assert!(
            e.contains("gcs_creds_path") && e.contains("none.json"),
            "{e}"
        );
    }

    /// The example of the original's docs/destinations/gs.md, unchanged.
    #[test]
    fn the_originals_example_loads() {
        let text = r#"{
  "sources": [{"id": "f", "type": "folder", "path": "/etc", "passphrase": "p"}],
  "destinations": [
{
  "id": "gcs-backup",
  "type": "gs",
  "bucket": "my-backup-bucket",
  "gcs_creds_path": "/etc/backups/gcs-service-account.json",
  "retention_copies": 7,
  "retention_days": 30
}
  ]
}"#;
        let job =
            crate::job::parse(std::path::Path::new("/etc/backups/job.json"), text).expect("parse");
        job.validate().expect("valid");
        let d = &job.destinations[0];
        assert_eq!((d.retention.copies, d.retention.days), (7, 30));
        let super::super::DestinationSpec::Gs(c) = &d.spec else {
            panic!("not gs: {:?}", d.spec);
        };
        assert_eq!(c.bucket, "my-backup-bucket");
        assert_eq!(
            c.gcs_creds_path,
            PathBuf::from("/etc/backups/gcs-service-account.json")
        );
    }

    #[test]
    fn the_token_uri_defaults_to_googles() {
        let k: Key = serde_json::from_str(
            r#"{"type": "service_account", "client_email": "a@b", "private_key": "k"}"#,
        )
        .expect("key");
        assert_eq!(
            k.token_uri(),
            super::super::service_account::DEFAULT_TOKEN_URI
        );
    }
}
