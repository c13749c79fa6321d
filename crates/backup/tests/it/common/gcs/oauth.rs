//! The service-account side of the fake: keys generated with `openssl` and the OAuth token
//! endpoint, which verifies a JWT-bearer grant's claims and RS256 signature.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::{parse_query, FakeGcs, Reply};

/// A service-account key made for a test: its JSON file and its public key.
pub struct ServiceAccount {
    pub json: PathBuf,
    pub public_pem: PathBuf,
    pub email: String,
}

impl ServiceAccount {
    /// Generates an RSA key with `openssl` and writes a service-account JSON key whose
    /// `token_uri` is `token_uri`.
    pub fn generate(dir: &Path, name: &str, token_uri: &str) -> ServiceAccount {
        let key = dir.join(format!("{name}.pem"));
        let public_pem = dir.join(format!("{name}.pub.pem"));
        crate::common::run_ok(
            Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                ])
                .arg(&key),
        );
        crate::common::run_ok(
            Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&key)
                .arg("-out")
                .arg(&public_pem),
        );
        let email = format!("{name}@custos-test.iam.gserviceaccount.com");
        let pem = std::fs::read_to_string(&key).expect("key");
        let json_key = json!({
            "type": "service_account",
            "project_id": "custos-test",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": email,
            "client_id": "1",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        });
        let json = dir.join(format!("{name}.json"));
        crate::common::write_private(&json, json_key.to_string().as_bytes());
        ServiceAccount {
            json,
            public_pem,
            email,
        }
    }

    /// Rewrites the key's `client_email` (a key that claims another account).
    pub fn set_email(&self, email: &str) {
        let mut v: Value =
            serde_json::from_slice(&std::fs::read(&self.json).expect("json")).unwrap();
        v["client_email"] = json!(email);
        crate::common::write_private(&self.json, v.to_string().as_bytes());
    }

    /// A line from the middle of the private key: must never appear in output.
    pub fn private_fragment(&self) -> String {
        let v: Value = serde_json::from_slice(&std::fs::read(&self.json).expect("json")).unwrap();
        let pem = v["private_key"].as_str().expect("pem").to_string();
        pem.lines().nth(3).expect("key line").to_string()
    }
}

impl FakeGcs {
    /// The OAuth token endpoint: a JWT-bearer grant signed by the trusted key.
    pub(super) fn token(&self, body: &[u8]) -> Reply {
        let form = parse_query(&String::from_utf8_lossy(body));
        let refuse = |why: &str| {
            self.state.lock().unwrap().token_refusals += 1;
            let v = json!({"error": "invalid_grant", "error_description": why});
            (400, "application/json", vec![], v.to_string().into_bytes())
        };
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return refuse("grant_type");
        }
        let jwt = form.get("assertion").cloned().unwrap_or_default();
        let pieces: Vec<&str> = jwt.split('.').collect();
        if pieces.len() != 3 {
            return refuse("not a JWT");
        }
        let header: Value = serde_json::from_slice(&b64url(pieces[0])).unwrap_or_default();
        let claims: Value = serde_json::from_slice(&b64url(pieces[1])).unwrap_or_default();
        let Some((email, public)) = self.state.lock().unwrap().account.clone() else {
            return refuse("no key trusted");
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let iat = claims["iat"].as_u64().unwrap_or(0);
        let exp = claims["exp"].as_u64().unwrap_or(0);
        if header["alg"] != "RS256"
            || claims["iss"] != email.as_str()
            || claims["aud"] != self.token_uri().as_str()
            || !claims["scope"]
                .as_str()
                .unwrap_or_default()
                .split(' ')
                .any(|s| s == "https://www.googleapis.com/auth/devstorage.read_write")
            || iat > now + 60
            || exp <= now
            || exp > iat + 3600
        {
            return refuse(&format!("claims {claims}"));
        }
        // The signature, checked by openssl with the public key.
        let n = {
            let mut st = self.state.lock().unwrap();
            st.next_id += 1;
            st.next_id
        };
        let input = self.dir.path().join(format!("jwt-{n}.in"));
        let sig = self.dir.path().join(format!("jwt-{n}.sig"));
        std::fs::write(&input, format!("{}.{}", pieces[0], pieces[1])).expect("write");
        std::fs::write(&sig, b64url(pieces[2])).expect("write");
        let ok = Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&public)
            .arg("-signature")
            .arg(&sig)
            .arg(&input)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return refuse("Invalid JWT Signature.");
        }
        let token = format!("ya29.fake-token-{n}-Tk9qLmRc");
        self.state.lock().unwrap().tokens.push(token.clone());
        let v = json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"});
        (200, "application/json", vec![], v.to_string().into_bytes())
    }
}

/// Base64url without padding (JWT pieces).
fn b64url(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' | b'+' => 62,
            _ => 63,
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
