//! The AWS Query API (RDS, EC2) for the `rds`, `rds-pgsql` and `snapshot` sources: a form
//! POST signed with SigV4 by reqsign (as the S3 store signs), sent with the process's one
//! HTTP client on its one runtime ([`crate::destination::runtime`]), the XML reply read
//! with quick-xml. The official SDK would need a newer rustc and ~140 more packages for the
//! seven calls used (docs/ARCHITECTURE.md).
//!
//! Credentials: the `credentials` keys of the original (`aws_access_key_id`,
//! `aws_secret_access_key`), else the standard chain (environment, `~/.aws/credentials` and
//! `config`, web identity, container and instance roles). Endpoint: `endpoint_url`, else
//! `AWS_ENDPOINT_URL_<SERVICE>` / `AWS_ENDPOINT_URL` (tests, AWS-compatible clouds), else
//! the service's regional endpoint.

use crate::cancel::Cancel;
use std::time::Duration;

use bytes::Bytes;
use custos_kit::config::{Invalid, Secret};
use reqsign_aws_v4::StaticCredentialProvider;
use reqsign_aws_v4::{Credential, DefaultCredentialProvider, RequestSigner};
use reqsign_core::{Context, HttpSend, OsEnv, ProvideCredentialChain, Signer};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Retry, SourceError};
use crate::destination::multipart::query;
use crate::destination::runtime;

/// How long one API request may take before it fails (retryable).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Pages of a listing read before giving up (a server that never stops paging).
pub const MAX_PAGES: usize = 1_000;
/// The longest piece of a reply quoted in an error.
const QUOTE: usize = 300;

/// `credentials` of an AWS source (the original's keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsCredentials {
    /// `aws_access_key_id`.
    pub aws_access_key_id: String,
    /// `aws_secret_access_key`.
    pub aws_secret_access_key: Secret,
}

/// Checks an `endpoint_url` value: an http(s) URL with a host.
pub fn check_endpoint(url: &str) -> Result<(), Invalid> {
    let ok = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    match ok {
        Some(_) => Ok(()),
        None => Err(Invalid::new(
            "endpoint_url",
            url,
            "must be an http:// or https:// URL with a host",
        )),
    }
}

/// Checks a `region` value (`eu-west-1`): letters, digits and dashes.
pub fn check_region(region: &str) -> Result<(), Invalid> {
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Invalid::new(
            "region",
            region,
            "must be an AWS region name such as eu-west-1",
        ));
    }
    Ok(())
}

/// A failed API call; the message names the service, the action and AWS's error code.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// AWS answered with an error (`<Error><Code>`).
    #[error("{service} {action}: {code}: {message}")]
    Api {
        service: &'static str,
        action: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: connection refused, timeout, TLS.
    #[error("{service} {action}: {message}")]
    Transport {
        service: &'static str,
        action: &'static str,
        message: String,
    },
    /// An answer that is not the XML expected.
    #[error("{service} {action}: unreadable reply: {message}")]
    Reply {
        service: &'static str,
        action: &'static str,
        message: String,
    },
    /// No credentials found, or they could not be used to sign.
    #[error("{service} {action}: credentials: {message}")]
    Credentials {
        service: &'static str,
        action: &'static str,
        message: String,
    },
}

impl AwsError {
    /// AWS's error code, when AWS answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether running again may help: throttling, AWS's own faults, no answer.
    pub fn retry(&self) -> Retry {
        match self {
            AwsError::Api { status, code, .. } => {
                let busy = matches!(
                    code.as_str(),
                    "Throttling"
                        | "ThrottlingException"
                        | "RequestLimitExceeded"
                        | "ServiceUnavailable"
                        | "InternalFailure"
                        | "InternalError"
                );
                if busy || *status >= 500 {
                    Retry::Transient
                } else {
                    Retry::Permanent
                }
            }
            AwsError::Transport { .. } => Retry::Transient,
            AwsError::Reply { .. } | AwsError::Credentials { .. } => Retry::Permanent,
        }
    }
}

/// Where and how to reach one AWS service.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `rds`, `ec2` (signing name and host prefix).
    pub service: &'static str,
    /// The Query API version (`2014-10-31` for RDS, `2016-11-15` for EC2).
    pub version: &'static str,
    pub region: String,
    /// `endpoint_url` from the config, if any.
    pub url: Option<String>,
}

/// A signed Query API client of one service in one region.
pub struct Api {
    endpoint: Endpoint,
    url: String,
    signer: Signer<Credential>,
    client: &'static reqwest::Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("url", &self.url).finish()
    }
}

/// reqsign's HTTP for credential sources that need one (instance roles, STS): the process's
/// one client.
#[derive(Debug)]
struct SharedClient(&'static reqwest::Client);

impl HttpSend for SharedClient {
    async fn http_send(
        &self,
        req: http::Request<Bytes>,
    ) -> reqsign_core::Result<http::Response<Bytes>> {
        let fail = |e: reqwest::Error| reqsign_core::Error::unexpected(e.to_string());
        let req = reqwest::Request::try_from(req).map_err(fail)?;
        let resp = self.0.execute(req).await.map_err(fail)?;
        let mut out = http::Response::builder().status(resp.status());
        if let Some(h) = out.headers_mut() {
            *h = resp.headers().clone();
        }
        let body = resp.bytes().await.map_err(fail)?;
        out.body(body)
            .map_err(|e| reqsign_core::Error::unexpected(e.to_string()))
    }
}

impl Api {
    /// A client of `endpoint` with `credentials` (else the standard chain).
    pub fn new(endpoint: Endpoint, credentials: Option<&AwsCredentials>) -> Result<Api, AwsError> {
        let client = runtime::http_client().map_err(|e| AwsError::Transport {
            service: endpoint.service,
            action: "set-up",
            message: e.to_string(),
        })?;
        let url = endpoint.url.clone().unwrap_or_else(|| {
            let var = format!("AWS_ENDPOINT_URL_{}", endpoint.service.to_ascii_uppercase());
            std::env::var(var)
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "https://{}.{}.amazonaws.com",
                        endpoint.service, endpoint.region
                    )
                })
        });
        let ctx = Context::new()
            .with_file_read(reqsign_file_read_tokio::TokioFileRead)
            .with_http_send(SharedClient(client))
            .with_env(OsEnv);
        let mut chain = ProvideCredentialChain::new().push(DefaultCredentialProvider::new());
        if let Some(c) = credentials {
            chain = chain.push_front(StaticCredentialProvider::new(
                &c.aws_access_key_id,
                c.aws_secret_access_key.expose(),
            ));
        }
        let signer = Signer::new(
            ctx,
            chain,
            RequestSigner::new(endpoint.service, &endpoint.region),
        );
        Ok(Api {
            url,
            endpoint,
            signer,
            client,
        })
    }

    /// The region, for messages naming a resource.
    pub fn region(&self) -> &str {
        &self.endpoint.region
    }

    /// Calls `action` with `params`; the reply's XML read as `T` (its root element is
    /// ignored, so `T` is the `<{action}Response>`'s content).
    pub fn call<T: DeserializeOwned>(
        &self,
        action: &'static str,
        params: &[(String, String)],
    ) -> Result<T, AwsError> {
        let body = self.send(action, params)?;
        quick_xml::de::from_str(&body).map_err(|e| AwsError::Reply {
            service: self.endpoint.service,
            action,
            message: format!("{e}: {}", custos_kit::text::prefix(&body, QUOTE)),
        })
    }

    /// Sends one signed request; the body of a 2xx reply, else the typed error.
    fn send(&self, action: &'static str, params: &[(String, String)]) -> Result<String, AwsError> {
        let service = self.endpoint.service;
        let mut form = format!("Action={action}&Version={}", self.endpoint.version);
        for (k, v) in params {
            form.push_str(&format!("&{}={}", query(k), query(v)));
        }
        let hash = hex::encode(Sha256::digest(form.as_bytes()));
        let req = http::Request::post(&self.url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            // The payload's hash, signed: botocore and AWS take it from this header.
            .header("x-amz-content-sha256", hash)
            .body(form)
            .map_err(|e| AwsError::Reply {
                service,
                action,
                message: format!("cannot build the request to {}: {e}", self.url),
            })?;
        let (mut parts, form) = req.into_parts();
        let fut = async {
            let signed = self.signer.sign(&mut parts, None).await;
            if let Err(e) = signed.as_ref().map_err(|e| e.to_string()).and_then(|()| {
                match parts.headers.contains_key(http::header::AUTHORIZATION) {
                    true => Ok(()),
                    false => Err("none found".to_owned()),
                }
            }) {
                return Err(AwsError::Credentials {
                    service,
                    action,
                    message: format!(
                        "no usable AWS credentials ({e}): set the source's `credentials` \
                         (aws_access_key_id, aws_secret_access_key), or AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, an instance role"
                    ),
                });
            }
            let req = reqwest::Request::try_from(http::Request::from_parts(parts, form)).map_err(
                |e| AwsError::Transport {
                    service,
                    action,
                    message: e.to_string(),
                },
            )?;
            let transport = |e: reqwest::Error| AwsError::Transport {
                service,
                action,
                message: custos_kit::error::chain(&e),
            };
            let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.execute(req))
                .await
                .map_err(|_| AwsError::Transport {
                    service,
                    action,
                    message: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
                })?
                .map_err(transport)?;
            let status = resp.status();
            let text = resp.text().await.map_err(transport)?;
            Ok::<_, AwsError>((status, text))
        };
        let (status, text) = runtime::block_on(fut)?;
        if status.is_success() {
            return Ok(text);
        }
        let (code, message) = error_of(&text);
        Err(AwsError::Api {
            service,
            action,
            status: status.as_u16(),
            code: code.unwrap_or_else(|| format!("HTTP {}", status.as_u16())),
            message: message.unwrap_or_else(|| custos_kit::text::prefix(&text, QUOTE).to_owned()),
        })
    }
}

/// `<Code>` and `<Message>` of an error reply: RDS's `<ErrorResponse><Error>`, EC2's
/// `<Response><Errors><Error>`.
fn error_of(xml: &str) -> (Option<String>, Option<String>) {
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(rename = "Code")]
        code: Option<String>,
        #[serde(rename = "Message")]
        message: Option<String>,
    }
    #[derive(Deserialize, Default)]
    struct Errors {
        #[serde(rename = "Error", default)]
        error: Vec<Body>,
    }
    #[derive(Deserialize, Default)]
    struct Doc {
        #[serde(rename = "Error")]
        error: Option<Body>,
        #[serde(rename = "Errors")]
        errors: Option<Errors>,
    }
    let doc: Doc = quick_xml::de::from_str(xml).unwrap_or_default();
    let body = doc
        .error
        .or_else(|| doc.errors.and_then(|e| e.error.into_iter().next()))
        .unwrap_or_default();
    let message = body
        .message
        .map(|m| custos_kit::text::prefix(&m, QUOTE).to_owned());
    (body.code, message)
}

/// One request parameter.
pub fn param(key: &str, value: impl Into<String>) -> (String, String) {
    (key.to_owned(), value.into())
}

/// A reply whose content is not needed (its success is).
#[derive(Debug, Deserialize)]
pub struct Ignored {}

impl From<AwsError> for SourceError {
    fn from(e: AwsError) -> Self {
        SourceError::Unavailable {
            retry: e.retry(),
            message: e.to_string(),
        }
    }
}

/// Checks an optional number of seconds: above 0, at most `max`.
pub fn check_seconds(key: &str, v: Option<f64>, max: f64) -> Result<(), Invalid> {
    match v {
        Some(s) if !(s.is_finite() && s > 0.0 && s <= max) => Err(Invalid::new(
            key,
            s,
            format!("must be a number of seconds above 0 and at most {max}"),
        )),
        _ => Ok(()),
    }
}

/// Waiting for AWS to finish something (a restore, a snapshot): `wait_timeout` in all,
/// a check every `poll_interval`, and an end as soon as SIGINT/SIGTERM cancels the run.
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    pub timeout: Duration,
    pub poll: Duration,
    /// The run's token: a signal ends the wait.
    pub cancel: Cancel,
}

impl Waiting {
    /// Calls `check` until it gives a value (or fails); `what` names the resource in the
    /// error of a timeout or an interruption; `status` says where it was last.
    pub fn until<T>(
        &self,
        what: &str,
        mut check: impl FnMut() -> Result<Result<T, String>, SourceError>,
    ) -> Result<T, SourceError> {
        let started = std::time::Instant::now();
        loop {
            let status = match check()? {
                Ok(v) => return Ok(v),
                Err(status) => status,
            };
            if started.elapsed() + self.poll > self.timeout {
                return Err(SourceError::Unavailable {
                    retry: Retry::Transient,
                    message: format!(
                        "{what}: not ready after {} s (wait_timeout), last status {status}",
                        self.timeout.as_secs()
                    ),
                });
            }
            let end = std::time::Instant::now() + self.poll;
            while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
                if self.cancel.is_cancelled() {
                    return Err(SourceError::Unavailable {
                        retry: Retry::Transient,
                        message: format!("{what}: interrupted while waiting (status {status})"),
                    });
                }
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(100)));
            }
        }
    }
}

/// Numbered list parameters: `prefix.1`, `prefix.2`... (`Filter.1.Value.1`).
pub fn numbered(prefix: &str, values: &[String]) -> Vec<(String, String)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("{prefix}.{}", i + 1), v.clone()))
        .collect()
}

/// The tags that mark what a source creates as its owner's ([`super::Owner`]). AWS allows
/// 256 characters and a limited set in tag values: anything else becomes `_`.
pub fn owner_tags(owner: &super::Owner) -> [(&'static str, String); 2] {
    [
        (TAG_JOB, tag_value(&owner.job)),
        (TAG_SOURCE, tag_value(&owner.source)),
    ]
}

/// Tag key: the job (host name and job file) that created a resource.
pub const TAG_JOB: &str = "custos:job";
/// Tag key: the source id that created a resource.
pub const TAG_SOURCE: &str = "custos:source";

fn tag_value(v: &str) -> String {
    // AWS counts a tag value's 256 in characters.
    v.chars()
        .take(256)
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A `<Tag><Key/><Value/></Tag>` (RDS) or `<item><key/><value/></item>` (EC2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Tag {
    #[serde(alias = "key", rename = "Key", default)]
    pub key: String,
    #[serde(alias = "value", rename = "Value", default)]
    pub value: String,
}

/// Whether `tags` carry exactly `owner`'s marks.
pub fn owned_by(tags: &[Tag], owner: &super::Owner) -> bool {
    owner_tags(owner)
        .iter()
        .all(|(k, v)| tags.iter().any(|t| t.key == *k && t.value == *v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_of_rds_and_ec2_give_code_and_message() {
        let rds = r#"<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>DBInstanceNotFound</Code><Message>DBInstance a&amp;b not found.</Message></Error><RequestId>x</RequestId></ErrorResponse>"#;
        assert_eq!(
            error_of(rds),
            (
                Some("DBInstanceNotFound".into()),
                Some("DBInstance a&b not found.".into())
            )
        );
        let ec2 = "<Response><Errors><Error><Code>AccessDenied</Code><Message>User: arn:aws:iam::1:user/b is not authorized to perform: ec2:CreateSnapshot</Message></Error></Errors><RequestID>r</RequestID></Response>";
        assert_eq!(error_of(ec2).0.as_deref(), Some("AccessDenied"));
        assert_eq!(error_of("not xml <<"), (None, None));
        let long = format!(
            "<ErrorResponse><Error><Code>X</Code><Message>{}é</Message></Error></ErrorResponse>",
            "a".repeat(299)
        );
        assert_eq!(error_of(&long).1.unwrap().len(), 299);
    }

    #[test]
    fn throttling_and_server_faults_are_retryable_denials_are_not() {
        let api = |status, code: &str| AwsError::Api {
            service: "rds",
            action: "DescribeDBInstances",
            status,
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(api(400, "Throttling").retry(), Retry::Transient);
        assert_eq!(api(503, "Unavailable").retry(), Retry::Transient);
        assert_eq!(api(403, "AccessDenied").retry(), Retry::Permanent);
        assert_eq!(api(403, "SignatureDoesNotMatch").retry(), Retry::Permanent);
    }

    #[test]
    fn tag_values_keep_allowed_characters_and_256_of_them() {
        let owner = super::super::Owner {
            job: format!("db1:/etc/backups/{}ü$(x).json", "n".repeat(300)),
            source: "orders db".into(),
        };
        let [(jk, job), (sk, source)] = owner_tags(&owner);
        assert_eq!((jk, sk), (TAG_JOB, TAG_SOURCE));
        assert_eq!(job.chars().count(), 256);
        assert!(job.starts_with("db1:/etc/backups/nnn"));
        assert_eq!(source, "orders db");
        let tags = [
            Tag {
                key: TAG_JOB.into(),
                value: job.clone(),
            },
            Tag {
                key: TAG_SOURCE.into(),
                value: source,
            },
        ];
        assert!(owned_by(&tags, &owner));
        let other = super::super::Owner {
            source: "orders".into(),
            ..owner
        };
        assert!(!owned_by(&tags, &other));
        assert_eq!(tag_value("a$b(ü)"), "a_b_ü_");
    }

    #[test]
    fn endpoints_and_regions_are_checked() {
        assert!(check_endpoint("http://127.0.0.1:5000").is_ok());
        assert!(check_endpoint("ftp://x").is_err());
        assert!(check_endpoint("127.0.0.1:5000").is_err());
        assert!(check_region("eu-west-1").is_ok());
        assert!(check_region("eu west").is_err());
        assert!(check_region("").is_err());
    }

    #[test]
    fn list_parameters_are_numbered_from_one() {
        assert_eq!(
            numbered("VolumeId", &["vol-1".into(), "vol-2".into()]),
            [
                ("VolumeId.1".to_string(), "vol-1".to_string()),
                ("VolumeId.2".to_string(), "vol-2".to_string())
            ]
        );
    }
}
