//! The `s3` destination (and `minio`, which the config translates to it): objects are keys
//! `{source id}/{timestamp}/{file}` in a bucket, written through the shared opendal store
//! ([`super::store`]) as S3 multipart uploads of [`PART_SIZE`] parts. A run killed with
//! `kill -9` leaves an incomplete multipart upload, invisible to `list` but holding space:
//! the next run of the job aborts it ([`super::multipart`]).

use std::time::Duration;

use opendal::services;
use serde::Deserialize;

use reqsign_aws_v4::{DefaultCredentialProvider, RequestSigner, StaticCredentialProvider};
use reqsign_core::ProvideCredentialChain;

use super::multipart::MultipartUploads;
use super::store::{Layout, Store};
use super::{Destination, DestinationError};
use custos_kit::config::{Invalid, Secret, Validate};

/// Size of one multipart part (S3's minimum is 5 MiB, except for the last part).
pub const PART_SIZE: usize = 8 << 20;
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
        Ok(Box::new(store(id, self, stall)?))
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

/// How S3 uploads are cut: multipart parts, and `If-None-Match: *` on completion so a
/// committed object is never replaced.
const LAYOUT: Layout = Layout {
    kind: "s3",
    chunk: Some(PART_SIZE),
    concurrent: 1,
    if_not_exists: true,
};

/// The store of an `s3`/`minio` config; `timeout` bounds each request that is not part of an
/// upload. Without credentials the standard AWS chain (environment, `~/.aws/credentials`,
/// instance role) is used.
pub fn store(id: &str, c: &S3Config, timeout: Duration) -> Result<Store, DestinationError> {
    let region = c.region.as_deref().unwrap_or(DEFAULT_REGION);
    let mut b = services::S3::default().bucket(&c.bucket).region(region);
    if let Some(url) = &c.endpoint_url {
        b = b.endpoint(url);
    }
    let mut loader = ProvideCredentialChain::new().push(DefaultCredentialProvider::new());
    if let Some(cred) = &c.credentials {
        b = b
            .access_key_id(&cred.aws_access_key_id)
            .secret_access_key(cred.aws_secret_access_key.expose());
        loader = loader.push_front(StaticCredentialProvider::new(
            &cred.aws_access_key_id,
            cred.aws_secret_access_key.expose(),
        ));
    }
    let store = Store::new(id, LAYOUT, b, timeout)?;
    let uploads = MultipartUploads::new(
        id,
        format!("{}/{}", endpoint(c, region), c.bucket),
        store.operator(),
        loader,
        RequestSigner::new("s3", region),
        timeout,
    );
    Ok(store.with_abandoned_uploads(uploads))
}

/// The endpoint opendal 0.57 sends path-style requests to (its `build_endpoint`): the
/// `endpoint_url` without a bucket host prefix, default port or trailing `/`, and AWS's
/// global endpoint made regional.
fn endpoint(c: &S3Config, region: &str) -> String {
    let url = c
        .endpoint_url
        .as_deref()
        .unwrap_or("https://s3.amazonaws.com")
        .replace(&format!("//{}.", c.bucket), "//");
    let mut url = url.trim_end_matches('/').to_string();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if let Some(rest) = url.strip_prefix(scheme) {
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            if let Some(h) = host.strip_suffix(port) {
                url = format!("{scheme}{h}{path}");
            }
        }
    }
    if url == "https://s3.amazonaws.com" {
        url = format!("https://s3.{region}.amazonaws.com");
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cleanup_uses_the_endpoint_opendal_uses() {
        let c = |url: Option<&str>| S3Config {
            bucket: "bk".into(),
            region: None,
            credentials: None,
            endpoint_url: url.map(str::to_owned),
        };
        assert_eq!(
            endpoint(&c(None), "eu-west-1"),
            "https://s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(&c(Some("http://127.0.0.1:9000/")), "us-east-1"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            endpoint(&c(Some("https://bk.s3.wasabisys.com:443")), "us-east-1"),
            "https://s3.wasabisys.com"
        );
    }
}
