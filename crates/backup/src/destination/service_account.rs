//! OAuth access tokens of a Google service account, from its JSON key file: an RS256 JWT
//! (signed with `reqsign-core`, which opendal's gcs service already builds) exchanged at the
//! key's `token_uri` (the JWT-bearer grant). A token is kept and handed out until less than
//! [`MARGIN`] of it is left, then the next caller gets a new one, so work that outlasts a
//! token (a long upload) simply continues with the next.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde_json::json;

use super::api::{self, Call};
use super::{DestinationError, ErrorKind};
use crate::config::Secret;

/// A token with less than this left is replaced before the next request.
pub const MARGIN: Duration = Duration::from_secs(60);
/// Where tokens come from when the key names no `token_uri`.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Lifetime asked for in the JWT (Google's maximum).
const JWT_LIFETIME: u64 = 3600;

/// The fields of a service account key used here.
#[derive(Deserialize)]
struct Key {
    client_email: String,
    private_key: Secret,
    #[serde(default)]
    token_uri: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

struct Token {
    value: Secret,
    expires: Instant,
}

/// The tokens of one key file, for one scope.
pub struct ServiceAccount {
    creds_file: PathBuf,
    scope: &'static str,
    token: Mutex<Option<Token>>,
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
        let auth = |message: String| call.error(ErrorKind::Auth, message);
        let text =
            std::fs::read(&self.creds_file).map_err(|e| auth(format!("creds_file {path}: {e}")))?;
        // serde names the field that is wrong, and `Secret` never shows its value.
        let key: Key = serde_json::from_slice(&text)
            .map_err(|e| auth(format!("creds_file {path}: not a service account key: {e}")))?;
        let token_uri = key.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI);
        let iat = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let jwt = reqsign_core::jwt::encode_rs256_pem(
            &json!({"alg": "RS256", "typ": "JWT"}),
            &json!({"iss": key.client_email, "scope": self.scope, "aud": token_uri,
                    "iat": iat, "exp": iat + JWT_LIFETIME}),
            key.private_key.expose().as_bytes(),
        )
        .map_err(|e| auth(format!("creds_file {path}: private_key: {e}")))?;
        // The JWT is base64url and dots: nothing to escape.
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}"
        );
        let a = call.exchange(
            api::client()
                .post(token_uri)
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
