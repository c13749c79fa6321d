//! The `b2` destination (Backblaze B2, native API): objects are file names
//! `{source id}/{timestamp}/{file}` in `bucket`, written through the shared opendal store
//! ([`super::store`]) as B2 large files of [`PART_SIZE`] parts (`b2_start_large_file`,
//! `b2_upload_part`, `b2_finish_large_file`); an object smaller than one part is one
//! `b2_upload_file`. A failed upload is cancelled (`b2_cancel_large_file`).
//!
//! The config names the bucket, opendal needs its id: the first operation resolves it
//! (`b2_authorize_account`, whose `allowed.bucketId` answers for a key restricted to the
//! bucket, else `b2_list_buckets`), so a network failure then is retried like any other.
//!
//! Deleting (retention) hides the file (`b2_hide_file`, what opendal does): B2 keeps hidden
//! versions until the bucket's lifecycle rule removes them (B2's default rule keeps all
//! versions; set "keep only the last version" to get the space back).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opendal::services;
use serde::Deserialize;

use super::api::Call;
use super::store::{Layout, Store};
use super::{api, Destination, DestinationError, ObjectInfo, ObjectWriter};
use custos_kit::config::{Invalid, Secret, Validate};

/// Size of one large-file part (B2's minimum is 5 MB, except for the last part).
pub const PART_SIZE: usize = 8 << 20;

/// B2's account API, where every session starts.
const AUTHORIZE_URL: &str = "https://api.backblazeb2.com/b2api/v2/b2_authorize_account";

/// `type: b2`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct B2Config {
    /// `bucket` (name).
    pub bucket: String,
    /// `credentials`.
    pub credentials: B2Credentials,
}

/// `credentials` of a `b2` destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct B2Credentials {
    /// `application_key_id`.
    pub application_key_id: String,
    /// `application_key`.
    pub application_key: Secret,
}

impl Validate for B2Config {
    fn validate(&self) -> Result<(), Invalid> {
        // B2 bucket names: 6-63 letters, digits and '-'.
        let b = &self.bucket;
        if b.len() < 6 || b.len() > 63 || !b.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Invalid::new(
                "bucket",
                b,
                "must be a B2 bucket name (6-63 letters, digits, '-')",
            ));
        }
        if self.credentials.application_key_id.is_empty() {
            return Err(Invalid::new(
                "credentials.application_key_id",
                "",
                "must not be empty",
            ));
        }
        Ok(())
    }
}

impl B2Config {
    /// The destination this config describes; `stall` bounds each request.
    pub fn build(
        &self,
        id: &str,
        stall: Duration,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        Ok(Box::new(B2 {
            id: id.to_string(),
            config: self.clone(),
            timeout: stall,
            store: Mutex::new(None),
        }))
    }
}

/// How B2 uploads are cut: large-file parts, one in flight. B2 has no conditional upload:
/// names carry the run's timestamp, so a committed copy is not written twice.
const LAYOUT: Layout = Layout {
    kind: "b2",
    chunk: Some(PART_SIZE),
    concurrent: 1,
    if_not_exists: false,
};

/// A `b2` destination: the opendal store, made once the bucket id is known.
struct B2 {
    id: String,
    config: B2Config,
    timeout: Duration,
    store: Mutex<Option<Arc<Store>>>,
}

/// What `b2_authorize_account` tells (the fields used here).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Authorization {
    account_id: String,
    authorization_token: String,
    api_url: String,
    #[serde(default)]
    allowed: Option<Allowed>,
}

/// The bucket a restricted key is limited to.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Allowed {
    bucket_id: Option<String>,
    bucket_name: Option<String>,
}

#[derive(Deserialize)]
struct Buckets {
    buckets: Vec<Bucket>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bucket {
    bucket_id: String,
    bucket_name: String,
}

impl B2 {
    /// The store, resolving the bucket id on first use.
    fn store(&self) -> Result<Arc<Store>, DestinationError> {
        let mut slot = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let bucket_id = self.bucket_id()?;
        let c = &self.config;
        let b = services::B2::default()
            .bucket(&c.bucket)
            .bucket_id(&bucket_id)
            .application_key_id(&c.credentials.application_key_id)
            .application_key(c.credentials.application_key.expose());
        let s = Arc::new(Store::new(&self.id, LAYOUT, b, self.timeout)?);
        *slot = Some(s.clone());
        Ok(s)
    }

    fn bucket_id(&self) -> Result<String, DestinationError> {
        let c = &self.config;
        let call = Call {
            destination: &self.id,
            op: "find bucket",
            object: &c.bucket,
        };
        let http = api::client(&call)?;
        let auth: Authorization = call.json(
            http.get(AUTHORIZE_URL).basic_auth(
                &c.credentials.application_key_id,
                Some(c.credentials.application_key.expose()),
            ),
            self.timeout,
        )?;
        if let Some(Allowed {
            bucket_id: Some(id),
            bucket_name: Some(name),
        }) = &auth.allowed
        {
            if *name == c.bucket {
                return Ok(id.clone());
            }
        }
        let found: Buckets = call.json(
            http.post(format!("{}/b2api/v2/b2_list_buckets", auth.api_url))
                .header(reqwest::header::AUTHORIZATION, &auth.authorization_token)
                .body(
                    serde_json::json!({"accountId": auth.account_id, "bucketName": c.bucket})
                        .to_string(),
                ),
            self.timeout,
        )?;
        found
            .buckets
            .into_iter()
            .find(|b| b.bucket_name == c.bucket)
            .map(|b| b.bucket_id)
            .ok_or_else(|| DestinationError::Store {
                destination: self.id.clone(),
                op: "find bucket",
                object: c.bucket.clone(),
                kind: super::ErrorKind::NotFound,
                message: "no such bucket for this application key".into(),
            })
    }
}

impl Destination for B2 {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        LAYOUT.kind
    }

    fn check(&self) -> Result<(), DestinationError> {
        self.store()?.check()
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        self.store()?.create(name)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        self.store()?.list(prefix)
    }

    fn open(&self, name: &str) -> Result<Box<dyn std::io::Read + Send>, DestinationError> {
        self.store()?.open(name)
    }

    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        self.store()?.delete(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: serde_json::Value) -> Result<B2Config, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn keys_are_checked_by_name() {
        let good = serde_json::json!({"bucket": "my-backup-bucket",
            "credentials": {"application_key_id": "k", "application_key": "s"}});
        config(good.clone()).unwrap().validate().unwrap();
        let mut bad = good.clone();
        bad["bucket"] = "a/b".into();
        assert_eq!(config(bad).unwrap().validate().unwrap_err().key, "bucket");
        let mut bad = good.clone();
        bad["credentials"]["application_key_id"] = "".into();
        let e = config(bad).unwrap().validate().unwrap_err();
        assert_eq!(e.key, "credentials.application_key_id");
        let mut unknown = good;
        unknown["credentials"]["key"] = "x".into();
        assert!(config(unknown).is_err());
    }
}
