//! Azure Resource Manager over REST: a client-credentials token from the authority (Entra ID),
//! requests with that bearer token on the process's one HTTP client and runtime, long-running
//! operations (`Azure-AsyncOperation` / `Location` polling), and listings paged by `nextLink`.
//!
//! Nothing secret reaches a message: the client secret travels only in the token request's
//! body, the bearer token only in a header, and errors name the call and the origin of the
//! endpoint, never a URL's query (a SAS or a skip token).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use custos_kit::config::Secret;
use serde_json::Value;

use super::error::AzureError;
use crate::cancel::Cancel;
use crate::destination::api::{self, Fetched};
use crate::destination::{cause, runtime};

/// The api-version of every Microsoft.Compute call (disks, snapshots, their operations).
pub const COMPUTE_API: &str = "2023-04-02";
/// Longest answer read into memory (a listing page, an operation status).
const MAX_ANSWER: usize = 16 << 20;
/// Longest single request/answer exchange with ARM or the authority.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// A token is renewed this long before the authority says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// Pages one listing may take: an end to a server that never stops answering `nextLink`.
const MAX_PAGES: usize = 1_000;
/// Wait between polls of an operation that sends no `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// Shortest and longest wait between polls, whatever `Retry-After` says.
const MIN_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(60);

/// The service principal: tenant, client id and secret.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub tenant: String,
    pub client_id: String,
    pub secret: Secret,
}

/// A server's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (an empty body is `null`).
    pub fn json(&self, what: &str) -> Result<Value, AzureError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| AzureError::Answer {
            what: what.to_owned(),
            detail: format!("not JSON: {e}"),
        })
    }

    /// `Retry-After` in seconds, bounded.
    fn retry_after(&self) -> Duration {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_POLL, |s| Duration::from_secs(s.min(3600)))
            .clamp(MIN_POLL, MAX_POLL)
    }
}

/// ARM with one service principal: endpoints, credentials and the cached token.
pub struct Arm {
    /// `https://management.azure.com` (no trailing `/`).
    endpoint: String,
    /// `https://login.microsoftonline.com` (no trailing `/`).
    authority: String,
    credentials: Credentials,
    token: Mutex<Option<(Secret, Instant)>>,
    /// Stops waits for operations on SIGINT/SIGTERM.
    cancel: Cancel,
}

impl Arm {
    pub fn new(endpoint: &str, authority: &str, credentials: Credentials, cancel: Cancel) -> Self {
        Arm {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            authority: authority.trim_end_matches('/').to_owned(),
            credentials,
            token: Mutex::new(None),
            cancel,
        }
    }

    /// `{endpoint}{path}?api-version=...` for a Microsoft.Compute path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}?api-version={COMPUTE_API}", self.endpoint)
    }

    /// A bearer token for ARM, fetched again when the cached one is about to expire (a
    /// revoke after a download of hours needs a fresh one).
    fn token(&self) -> Result<Secret, AzureError> {
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, until)) = cached.as_ref() {
            if Instant::now() + TOKEN_MARGIN < *until {
                return Ok(t.clone());
            }
        }
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority, self.credentials.tenant
        );
        let scope = format!("{}/.default", self.endpoint);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.credentials.client_id.as_str()),
            ("client_secret", self.credentials.secret.expose()),
            ("scope", scope.as_str()),
        ];
        let what = "getting an access token";
        let client = client()?;
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_escape(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = client
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        let a = exchange(what, req)?;
        if a.status != 200 {
            return Err(status_error(what, &a));
        }
        let v = a.json(what)?;
        let token = v["access_token"]
            .as_str()
            .ok_or_else(|| AzureError::Answer {
                what: what.into(),
                detail: "no access_token in the answer".into(),
            })?;
        let lifetime = v["expires_in"]
            .as_u64()
            .or_else(|| v["expires_in"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(3600)
            .min(86_400);
        let token = Secret::new(token);
        *cached = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        Ok(token)
    }

    /// Sends `method url` with the bearer token (and `body` as JSON) and returns the answer,
    /// whatever its status; only a transport failure is an error.
    pub fn call(
        &self,
        what: &str,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, AzureError> {
        self.check_origin(what, url)?;
        let token = self.token()?;
        let mut req = client()?.request(method, url).bearer_auth(token.expose());
        req = match body {
            Some(b) => req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string()),
            // A POST action without a body still says its length (ARM wants one).
            None => req.header(reqwest::header::CONTENT_LENGTH, "0"),
        };
        exchange(what, req)
    }

    /// [`Arm::call`] that must answer `ok`; the answer's JSON.
    pub fn expect(
        &self,
        what: &str,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
        ok: &[u16],
    ) -> Result<Answer, AzureError> {
        let a = self.call(what, method, url, body)?;
        if ok.contains(&a.status) {
            Ok(a)
        } else {
            Err(status_error(what, &a))
        }
    }

    /// Our bearer token goes to the ARM endpoint only: a `nextLink` or operation URL that
    /// points elsewhere (a broken or hostile answer) is refused.
    fn check_origin(&self, what: &str, url: &str) -> Result<(), AzureError> {
        let ours = url
            .strip_prefix(&self.endpoint)
            .is_some_and(|rest| rest.starts_with('/'));
        if ours {
            Ok(())
        } else {
            Err(AzureError::Answer {
                what: what.to_owned(),
                detail: format!(
                    "refusing to send the token to {} (not the ARM endpoint {})",
                    origin(url),
                    self.endpoint
                ),
            })
        }
    }

    /// Waits for the long-running operation `started` began, for at most `budget`; the
    /// final answer's JSON (`null` when it has none). `Azure-AsyncOperation` is polled until
    /// its status is terminal, and then `Location` (if any) is read for the result; with
    /// `Location` alone it is polled until it stops answering 202. An operation that ends
    /// `Failed` or `Canceled` is an error with Azure's code and message.
    pub fn wait(
        &self,
        what: &str,
        started: &Answer,
        budget: Duration,
        on_signal: OnSignal,
    ) -> Result<Value, AzureError> {
        let deadline = Instant::now() + budget;
        let async_op = started.header("azure-asyncoperation").map(str::to_owned);
        let location = started.header("location").map(str::to_owned);
        let mut pause = started.retry_after();
        if let Some(op) = async_op {
            loop {
                sleep_until_next(what, &pause, deadline, budget, on_signal, self.cancel)?;
                let a = self.expect(what, reqwest::Method::GET, &op, None, &[200])?;
                let v = a.json(what)?;
                match v["status"].as_str().unwrap_or("") {
                    "Succeeded" => break,
                    "Failed" | "Canceled" | "Cancelled" => return Err(operation_error(what, &v)),
                    _ => pause = a.retry_after(),
                }
            }
            return match location {
                Some(loc) => {
                    let a = self.expect(what, reqwest::Method::GET, &loc, None, &[200, 204])?;
                    a.json(what)
                }
                None => Ok(Value::Null),
            };
        }
        let Some(loc) = location else {
            // Finished at once (200/201 with the result, 204).
            return started.json(what);
        };
        loop {
            sleep_until_next(what, &pause, deadline, budget, on_signal, self.cancel)?;
            let a = self.call(what, reqwest::Method::GET, &loc, None)?;
            match a.status {
                202 => pause = a.retry_after(),
                200 | 201 | 204 => return a.json(what),
                _ => return Err(status_error(what, &a)),
            }
        }
    }

    /// Every item of a listing that pages with `nextLink`.
    pub fn list(&self, what: &str, url: &str) -> Result<Vec<Value>, AzureError> {
        let mut items = Vec::new();
        let mut next = Some(url.to_owned());
        let mut seen = std::collections::HashSet::new();
        while let Some(url) = next.take() {
            if !seen.insert(url.clone()) || seen.len() > MAX_PAGES {
                return Err(AzureError::Answer {
                    what: what.to_owned(),
                    detail: format!(
                        "the listing repeats a page or exceeds {MAX_PAGES} pages; stopped"
                    ),
                });
            }
            let v = self
                .expect(what, reqwest::Method::GET, &url, None, &[200])?
                .json(what)?;
            match v["value"].as_array() {
                Some(page) => items.extend(page.iter().cloned()),
                None => {
                    return Err(AzureError::Answer {
                        what: what.to_owned(),
                        detail: "no `value` list in the answer".into(),
                    })
                }
            }
            next = v["nextLink"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
        }
        Ok(items)
    }
}

/// What a SIGINT/SIGTERM does to a wait for an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSignal {
    /// Stop waiting (making a snapshot, granting access: the run is over).
    Stop,
    /// Keep waiting within the budget (revoking access must finish even then).
    Finish,
}

/// Sleeps `pause`, or fails when the operation's `budget` would pass or (with
/// [`OnSignal::Stop`]) the run was cancelled.
fn sleep_until_next(
    what: &str,
    pause: &Duration,
    deadline: Instant,
    budget: Duration,
    on_signal: OnSignal,
    cancel: Cancel,
) -> Result<(), AzureError> {
    let now = Instant::now();
    if now + *pause > deadline {
        return Err(AzureError::Timeout {
            what: what.to_owned(),
            seconds: budget.as_secs(),
        });
    }
    let end = now + *pause;
    while Instant::now() < end {
        if on_signal == OnSignal::Stop && cancel.signal().is_some() {
            return Err(AzureError::Cancelled {
                what: what.to_owned(),
            });
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
    Ok(())
}

/// `v` percent-encoded for a form body or a query: all but RFC 3986's unreserved characters.
pub fn form_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The process's one HTTP client.
pub fn client() -> Result<&'static reqwest::Client, AzureError> {
    runtime::http_client().map_err(|e| AzureError::Client(e.reason().to_owned()))
}

/// Sends `req` on the shared runtime and reads the whole (bounded) answer.
fn exchange(what: &str, req: reqwest::RequestBuilder) -> Result<Answer, AzureError> {
    match api::fetch(req, CALL_TIMEOUT, MAX_ANSWER) {
        Fetched::TimedOut => Err(AzureError::Timeout {
            what: what.to_owned(),
            seconds: CALL_TIMEOUT.as_secs(),
        }),
        Fetched::Failed(e) => Err(AzureError::Request {
            what: what.to_owned(),
            cause: cause::describe(&e),
        }),
        Fetched::TooLarge => Err(AzureError::Answer {
            what: what.to_owned(),
            detail: format!("answer larger than {} MiB; refused", MAX_ANSWER >> 20),
        }),
        Fetched::Answer(a) => Ok(Answer {
            status: a.status.as_u16(),
            headers: a.headers,
            body: a.body,
        }),
    }
}

/// The error for an unexpected status: Azure's `error.code` and `error.message` (or the
/// token endpoint's `error` and `error_description`), cut short.
pub fn status_error(what: &str, a: &Answer) -> AzureError {
    let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
    let (code, message) = match &v["error"] {
        Value::Object(_) => (
            v["error"]["code"].as_str().unwrap_or(""),
            v["error"]["message"].as_str().unwrap_or(""),
        ),
        Value::String(code) => (code.as_str(), v["error_description"].as_str().unwrap_or("")),
        _ => ("", ""),
    };
    AzureError::Status {
        what: what.to_owned(),
        status: a.status,
        code: custos_kit::text::prefix(code, 100).to_owned(),
        message: custos_kit::text::prefix(message, 300).to_owned(),
    }
}

fn operation_error(what: &str, v: &Value) -> AzureError {
    AzureError::Operation {
        what: what.to_owned(),
        status: custos_kit::text::prefix(v["status"].as_str().unwrap_or(""), 50).to_owned(),
        code: custos_kit::text::prefix(v["error"]["code"].as_str().unwrap_or(""), 100).to_owned(),
        message: custos_kit::text::prefix(v["error"]["message"].as_str().unwrap_or(""), 300)
            .to_owned(),
    }
}

/// `scheme://host[:port]` of a URL for messages (never its path or query).
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => custos_kit::http_client::origin(&u, custos_kit::http_client::ImpliedPort::Omit),
        Err(_) => "an unparsable URL".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm() -> Arm {
        Arm::new(
            "https://management.azure.com/",
            "https://login.microsoftonline.com",
            Credentials {
                tenant: "t".into(),
                client_id: "c".into(),
                secret: Secret::new("s3cret"),
            },
            Cancel::new(),
        )
    }

    /// The bearer token never leaves for another host, whatever a nextLink says.
    #[test]
    fn token_goes_to_the_arm_endpoint_only() {
        let a = arm();
        a.check_origin("x", "https://management.azure.com/subscriptions/1")
            .unwrap();
        for bad in [
            "https://management.azure.com.evil.example/subscriptions/1",
            "https://evil.example/https://management.azure.com/",
            "http://management.azure.com/subscriptions/1",
        ] {
            let e = a.check_origin("listing snapshots", bad).unwrap_err();
            assert!(e.to_string().contains("refusing to send the token"), "{e}");
        }
    }

    #[test]
    fn errors_carry_azure_code_and_message_cut_between_characters() {
        let body = serde_json::json!({"error": {"code": "AuthorizationFailed",
            "message": "é".repeat(400)}});
        let a = Answer {
            status: 403,
            headers: Default::default(),
            body: body.to_string().into_bytes(),
        };
        match status_error("getting disk d", &a) {
            AzureError::Status {
                status,
                code,
                message,
                ..
            } => {
                assert_eq!((status, code.as_str()), (403, "AuthorizationFailed"));
                assert_eq!(message.len(), 300);
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_escape("a~b.c_d-e"), "a~b.c_d-e");
        assert_eq!(form_escape("p&q=r+s/é"), "p%26q%3Dr%2Bs%2F%C3%A9");
    }

    #[test]
    fn retry_after_is_bounded() {
        let mut a = Answer {
            status: 202,
            headers: Default::default(),
            body: vec![],
        };
        assert_eq!(a.retry_after(), DEFAULT_POLL);
        a.headers.insert("retry-after", "0".parse().unwrap());
        assert_eq!(a.retry_after(), MIN_POLL);
        a.headers
            .insert("retry-after", "99999999999".parse().unwrap());
        assert_eq!(a.retry_after(), MAX_POLL);
    }
}
