//! Google service-account keys (`gs`, `gdrive`): the JSON key file, read and checked with
//! errors that name the file but never its content, and the token request made from it: an
//! RS256 JWT (signed with `reqsign-core`, which opendal's gcs service already builds)
//! for the key's `token_uri` (the JWT-bearer grant of RFC 7523), as Google's client
//! libraries do. [`ServiceAccount`] keeps a token and hands it out until less than
//! [`MARGIN`] of it is left, then the next caller gets a new one, so work that outlasts a
//! token (a long upload) simply continues with the next.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde_json::json;

use super::api::{self, Call};
use super::{DestinationError, ErrorKind};
use custos_kit::config::Secret;

/// A token with less than this left is replaced before the next request.
pub const MARGIN: Duration = Duration::from_secs(300);
/// Where tokens come from when the key names no `token_uri`.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Lifetime asked for in the JWT (Google's maximum).
const JWT_LIFETIME: u64 = 3600;

/// A key file that cannot be used. Never holds the key's content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// serde_json's messages may quote a value: the position only.
    #[error("not a service-account JSON key (line {line} column {column})")]
    NotJson { line: usize, column: usize },
    #[error("a key of type {0:?}, not \"service_account\"")]
    WrongType(String),
    #[error("client_email or private_key is empty")]
    Empty,
    #[error("private_key is not a PKCS#8 PEM RSA key")]
    PrivateKey,
}

/// What custos uses of a service-account JSON key.
#[derive(Debug, Clone, Deserialize)]
pub struct Key {
    #[serde(rename = "type")]
    kind: String,
    pub client_email: String,
    private_key: Secret,
    #[serde(default)]
    token_uri: Option<String>,
}

impl Key {
    /// Reads and checks the key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(KeyError::Read)?;
        let key: Key = serde_json::from_slice(&bytes).map_err(|e| KeyError::NotJson {
            line: e.line(),
            column: e.column(),
        })?;
        if key.kind != "service_account" {
            return Err(KeyError::WrongType(key.kind));
        }
        if key.client_email.is_empty() || key.private_key.expose().is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(key)
    }

    /// Where the token request goes.
    pub fn token_uri(&self) -> &str {
        self.token_uri
            .as_deref()
            .filter(|u| !u.is_empty())
            .unwrap_or(DEFAULT_TOKEN_URI)
    }

    /// The form body that asks [`Key::token_uri`] for a token of `scope`: a JWT signed with
    /// the key, valid from now.
    pub fn token_request(&self, scope: &str) -> Result<String, KeyError> {
        let iat = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let jwt = reqsign_core::jwt::encode_rs256_pem(
            &json!({"alg": "RS256", "typ": "JWT"}),
            &json!({"iss": self.client_email, "scope": scope, "aud": self.token_uri(),
                    "iat": iat, "exp": iat + JWT_LIFETIME}),
            self.private_key.expose().as_bytes(),
        )
        .map_err(|_| KeyError::PrivateKey)?;
        // The JWT is base64url and dots: nothing to escape.
        Ok(format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}"
        ))
    }
}

/// A token endpoint's answer.
#[derive(Deserialize)]
pub struct TokenAnswer {
    pub access_token: String,
    pub expires_in: u64,
}

/// The tokens of one key file, for one scope, fetched with the blocking client ([`api`]).
pub struct ServiceAccount {
    creds_file: PathBuf,
    scope: &'static str,
    token: Mutex<Option<Token>>,
}

struct Token {
    value: Secret,
    expires: Instant,
}

impl ServiceAccount {
    /// Reads nothing yet: the key file is read when the first token is needed.
    pub fn new(creds_file: PathBuf, scope: &'static str) -> Self {
        Self {
            creds_file,
            scope,
            token: Mutex::new(None),
        }
    }

    /// A token with at least [`MARGIN`] left; `call` names the failing operation.
    pub fn get(&self, call: Call<'_>, timeout: Duration) -> Result<Secret, DestinationError> {
        let mut slot = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = slot.as_ref() {
            if t.expires > Instant::now() + MARGIN {
                return Ok(t.value.clone());
            }
        }
        let path = self.creds_file.display();
        let auth = |e: KeyError| call.error(ErrorKind::Auth, format!("creds_file {path}: {e}"));
        let key = Key::load(&self.creds_file).map_err(auth)?;
        let form = key.token_request(self.scope).map_err(auth)?;
        let a = call.exchange(
            api::client(&call)?
                .post(key.token_uri())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form),
            timeout,
        )?;
        if !a.status.is_success() {
            let mut e = call.status_error(a.status, &a.body);
            // A refused key or account is a 400 (`invalid_grant`, `invalid_client`).
            if let DestinationError::Store { kind, .. } = &mut e {
                if *kind == ErrorKind::Other {
                    *kind = ErrorKind::Auth;
                }
            }
            return Err(e);
        }
        let t: TokenAnswer = serde_json::from_slice(&a.body)
            .map_err(|e| call.error(ErrorKind::Other, format!("unexpected token answer: {e}")))?;
        let value = Secret::new(t.access_token);
        *slot = Some(Token {
            value: value.clone(),
            expires: Instant::now() + Duration::from_secs(t.expires_in),
        });
        Ok(value)
    }
}
