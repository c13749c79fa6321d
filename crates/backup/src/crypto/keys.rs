//! Which keys a backup is encrypted to, and the secret keys a restore opens it with: keyring
//! files (armored or binary) or `gpg --export`.

use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::Command;

use custos_process::Spawn;

use pgp::composed::{PublicOrSecret, SignedPublicKey, SignedSecretKey};
use pgp::packet::Signature;
use pgp::types::{KeyDetails, Timestamp};

use super::{CryptoError, RecipientKeys};

/// The newest binding signature of a subkey decides its flags and expiry.
fn newest_signature(sigs: &[Signature]) -> Option<&Signature> {
    sigs.iter()
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
}

fn not_expired(created: Timestamp, sig: &Signature) -> bool {
    match sig.key_expiration_time() {
        Some(d) if d.as_secs() > 0 => {
            u64::from(created.as_secs()) + u64::from(d.as_secs())
                > u64::from(Timestamp::now().as_secs())
        }
        _ => true,
    }
}

/// Valid encryption-capable subkeys of `cert` (all of them: gpg encrypts to the newest, but
/// any one of them opens the message, and a keyring may hold several).
pub(super) fn encryption_subkeys(cert: &SignedPublicKey) -> Vec<pgp::composed::SignedPublicSubKey> {
    let mut subs: Vec<_> = cert
        .public_subkeys
        .iter()
        .filter(|sub| {
            newest_signature(&sub.signatures).is_some_and(|sig| {
                let flags = sig.key_flags();
                (flags.encrypt_comms() || flags.encrypt_storage())
                    && sig.typ() == Some(pgp::packet::SignatureType::SubkeyBinding)
                    && not_expired(sub.key.created_at(), sig)
            })
        })
        .cloned()
        .collect();
    // gpg encrypts to the newest valid encryption subkey only.
    subs.sort_by_key(|s| std::cmp::Reverse(s.key.created_at().as_secs()));
    subs.truncate(1);
    subs
}

pub(super) fn primary_can_encrypt(cert: &SignedPublicKey) -> bool {
    use pgp::crypto::public_key::PublicKeyAlgorithm as A;
    let alg_ok = matches!(
        cert.primary_key.algorithm(),
        A::RSA | A::RSAEncrypt | A::ElgamalEncrypt | A::ECDH
    );
    let sigs: Vec<&Signature> = cert
        .details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .chain(cert.details.direct_signatures.iter())
        .collect();
    let flagged = sigs.iter().any(|s| {
        let f = s.key_flags();
        f.encrypt_comms() || f.encrypt_storage()
    });
    // Old RSA keys carry no key flags at all: gpg then uses the primary key.
    let no_flags = sigs.iter().all(|s| s.key_flags() == Default::default());
    alg_ok && (flagged || no_flags)
}

/// Parses every certificate in a keyring file (armored or binary, one or many keys).
fn read_public_keys(path: &Path) -> Result<Vec<SignedPublicKey>, CryptoError> {
    let file = std::fs::File::open(path).map_err(|e| CryptoError::KeyFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_public_keys(BufReader::new(file)).map_err(|message| CryptoError::KeyFile {
        path: path.to_path_buf(),
        message,
    })
}

fn parse_public_keys<R: BufRead>(input: R) -> Result<Vec<SignedPublicKey>, String> {
    let (iter, _) = PublicOrSecret::from_reader_many_buf(input).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for item in iter {
        match item.map_err(|e| e.to_string())? {
            PublicOrSecret::Public(k) => out.push(k),
            PublicOrSecret::Secret(k) => out.push(k.to_public_key()),
        }
    }
    Ok(out)
}

/// Does `spec` name `cert`, the way gpg's `-r` does: a fingerprint, a long or short key id
/// (of the primary or a subkey; `0x` optional), `<email>` exactly, or a case-insensitive
/// substring of a user id.
fn matches_recipient(spec: &str, cert: &SignedPublicKey) -> bool {
    let trimmed = spec.trim();
    let hexpart = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed)
        .replace(' ', "");
    if !hexpart.is_empty()
        && hexpart.chars().all(|c| c.is_ascii_hexdigit())
        && matches!(hexpart.len(), 8 | 16 | 40 | 64)
    {
        let want = hexpart.to_ascii_uppercase();
        let mut ids: Vec<(String, String)> = vec![(
            hex::encode_upper(cert.fingerprint().as_bytes()),
            hex::encode_upper(cert.legacy_key_id()),
        )];
        for sub in &cert.public_subkeys {
            ids.push((
                hex::encode_upper(sub.key.fingerprint().as_bytes()),
                hex::encode_upper(sub.key.legacy_key_id()),
            ));
        }
        return ids.iter().any(|(fp, kid)| {
            fp == &want || kid == &want || (want.len() == 8 && kid.ends_with(&want))
        });
    }
    let needle = trimmed.to_lowercase();
    // `<email>` is a substring of `Name <email>` too, so one test covers both forms.
    cert.details.users.iter().any(|u| {
        String::from_utf8_lossy(u.id.id())
            .to_lowercase()
            .contains(&needle)
    })
}

/// Resolves each configured recipient to a public key.
///
/// With `keyring` set, keys come from that file (armored or binary, any number of keys);
/// otherwise each recipient is exported from the user's gpg keyring with
/// `gpg --batch --export <recipient>` (GNUPGHOME is honoured). A recipient that matches no key
/// is an error naming it.
pub fn load_recipients(
    recipients: &[String],
    keyring: Option<&Path>,
) -> Result<RecipientKeys, CryptoError> {
    load_recipients_with_gnupg_home(recipients, keyring, None)
}

/// [`load_recipients`] with an explicit gpg home directory for the `gpg --export` fallback
/// (`None`: gpg's default, `$GNUPGHOME` or `~/.gnupg`).
pub fn load_recipients_with_gnupg_home(
    recipients: &[String],
    keyring: Option<&Path>,
    gnupg_home: Option<&Path>,
) -> Result<RecipientKeys, CryptoError> {
    let ring = match keyring {
        Some(path) => Some(read_public_keys(path)?),
        None => None,
    };
    let mut certs = Vec::new();
    for recipient in recipients {
        let candidates = match &ring {
            Some(keys) => keys.clone(),
            None => gpg_export(recipient, gnupg_home)?,
        };
        let cert = candidates
            .into_iter()
            .find(|c| matches_recipient(recipient, c))
            .ok_or_else(|| CryptoError::Recipient {
                recipient: recipient.clone(),
                message: match keyring {
                    Some(p) => format!("no matching public key in {}", p.display()),
                    None => "no matching public key in the gpg keyring".into(),
                },
            })?;
        if encryption_subkeys(&cert).is_empty() && !primary_can_encrypt(&cert) {
            return Err(CryptoError::Recipient {
                recipient: recipient.clone(),
                message: format!(
                    "key {} has no valid encryption (sub)key (expired or sign-only?)",
                    hex::encode_upper(cert.fingerprint().as_bytes())
                ),
            });
        }
        certs.push((recipient.clone(), cert));
    }
    Ok(RecipientKeys { certs })
}

/// The longest `gpg --export` may take (a locked keyring must not stall the run for ever).
const GPG_EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// The most key material read from `gpg --export` for one recipient.
const GPG_EXPORT_MAX: usize = 16 << 20;

pub(super) fn gpg_command(gnupg_home: Option<&Path>) -> Command {
    let mut cmd = Command::new("gpg");
    if let Some(home) = gnupg_home {
        cmd.env("GNUPGHOME", home);
    }
    cmd
}

fn gpg_export(
    recipient: &str,
    gnupg_home: Option<&Path>,
) -> Result<Vec<SignedPublicKey>, CryptoError> {
    let mut cmd = gpg_command(gnupg_home);
    cmd.args(["--batch", "--no-tty", "--export", "--"])
        .arg(recipient);
    let out = custos_process::run(
        Spawn::new("gpg --export", cmd),
        GPG_EXPORT_TIMEOUT,
        GPG_EXPORT_MAX,
    )
    .map_err(|e| CryptoError::Gpg {
        message: format!("gpg --export for recipient {recipient:?}: {e}"),
    })?;
    if !out.exit.success() {
        return Err(CryptoError::Gpg {
            message: format!(
                "gpg --export {recipient:?} failed (exit status: {}): {}",
                out.exit.code,
                out.exit.stderr.trim()
            ),
        });
    }
    if out.stdout.is_empty() {
        return Err(CryptoError::Recipient {
            recipient: recipient.to_string(),
            message: "no public key in the gpg keyring (gpg --export gave nothing)".into(),
        });
    }
    parse_public_keys(io::Cursor::new(out.stdout)).map_err(|message| CryptoError::Gpg {
        message: format!("cannot parse gpg --export output for {recipient:?}: {message}"),
    })
}

/// Reads secret keys (armored or binary, e.g. `gpg --export-secret-keys` output) for restore.
pub fn load_secret_keys(path: &Path) -> Result<Vec<SignedSecretKey>, CryptoError> {
    let key_err = |message: String| CryptoError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| key_err(e.to_string()))?;
    let (iter, _) = PublicOrSecret::from_reader_many_buf(BufReader::new(file))
        .map_err(|e| key_err(e.to_string()))?;
    let mut keys = Vec::new();
    for item in iter {
        if let PublicOrSecret::Secret(k) = item.map_err(|e| key_err(e.to_string()))? {
            keys.push(k);
        }
    }
    if keys.is_empty() {
        return Err(key_err("contains no secret key".into()));
    }
    Ok(keys)
}
