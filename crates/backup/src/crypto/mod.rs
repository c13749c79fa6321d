//! OpenPGP encryption and decryption of backup streams.
//!
//! Public API (used by [`crate::engine::pipeline`], [`crate::restore`] and the runner):
//! - [`Passphrase`]: a secret string; `Debug` prints `<secret>`, memory is zeroized on drop.
//! - [`Encryption`]: how to encrypt: [`Encryption::Passphrase`] (SKESK, S2K iterated+salted
//!   SHA-256, AES-256) or [`Encryption::Recipients`] (PKESK to the keys from
//!   [`load_recipients`]: a keyring file, armored or binary, or `gpg --export <recipient>`).
//! - [`encrypt`]: streams `Read -> OpenPGP message -> Write` (SEIPD v1 + MDC, partial body
//!   packets of 1 MiB: memory stays bounded whatever the input size). With `zlib_inside`
//!   the literal data is ZLIB-compressed inside the message, as `gpg --symmetric` does.
//! - [`Decryption`] and [`decrypt`]: turn an object stream back into plaintext (passphrase,
//!   secret key file from [`load_secret_keys`], or the user's own `gpg` and its agent).
//!   Reads what `gpg --symmetric` / `gpg --encrypt` produced (compressed inside or not).
//!
//! Why rPGP (`pgp` 0.21) and not sequoia-openpgp: pure Rust with RustCrypto backends that
//! detect AES-NI / SHA-NI at run time (`cpufeatures`), no nettle/openssl system library, and a
//! small build: the whole `custos-backup` library with rPGP, zstd and tar builds from scratch
//! in 1 min 19 s of wall time on the 2-core builder (sequoia with `crypto-rust` pulls a much
//! larger dependency tree). Both were verified to write streams gpg 2.2 decrypts.
//!
//! gpg 2.2 compatibility choices: SEIPD v1 (gpg 2.2 cannot read v2/AEAD-v6 messages),
//! SKESK v4 with S2K iterated+salted (gpg 2.2 cannot read Argon2), AES-256.
//!
//! Restore decrypts SEIPD v1 in streaming mode: plaintext is released before the MDC at the
//! end of the message is checked, so memory stays bounded. A tampered message still fails at
//! its end (MDC mismatch) and restore reports the error; the sha256 sidecar check covers the
//! ciphertext as well.

mod decrypt;
mod keys;

pub use decrypt::{decrypt, Decryption};
#[cfg(test)]
pub use keys::load_recipients_with_gnupg_home;
pub use keys::{load_recipients, load_secret_keys};

use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;

use pgp::composed::{MessageBuilder, SignedPublicKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{CompressionAlgorithm, KeyDetails, Password, StringToKey};
use zeroize::Zeroizing;

use keys::{encryption_subkeys, primary_can_encrypt};

/// Partial body chunk size of written messages: large chunks mean few packet headers.
const PARTIAL_CHUNK_SIZE: u32 = 1 << 20;

/// S2K iteration count byte: 224 hashes 16 MiB (gpg 2.2 calibrates to a similar order).
const S2K_COUNT: u8 = 224;

/// Buffer for reading object streams during decryption.
pub(crate) const READ_BUFFER: usize = 1 << 20;

/// An OpenPGP operation failed. Messages never contain passphrases.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The passphrase does not open the message: it is wrong, or the copy was encrypted with
    /// another passphrase (or to public keys only). rPGP's own words for it ("Unsupported
    /// symmetric algorithm Other(167)": the garbage a wrong key decrypts to) are left out.
    /// (gpg-style messages cannot tell a wrong passphrase from damage at the very start; the
    /// restore path checks the sha256 sidecar to tell them apart.)
    #[error("wrong passphrase, or the copy is not encrypted with this passphrase")]
    WrongPassphrase,
    /// None of the given secret keys matches a recipient of the message.
    #[error("no usable secret key for this OpenPGP message ({detail})")]
    NoMatchingKey { detail: String },
    /// The data is not an OpenPGP message, or it is damaged.
    #[error("not a valid OpenPGP message or the data is corrupted: {detail}")]
    Corrupt { detail: String },
    /// A recipient could not be resolved to a public encryption key.
    #[error("recipient {recipient:?}: {message}")]
    Recipient { recipient: String, message: String },
    /// A key file could not be read or parsed.
    #[error("key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    /// Running `gpg` failed.
    #[error("gpg: {message}")]
    Gpg { message: String },
    /// Encryption of the stream failed (the reader or writer side failed, or rPGP did).
    #[error("OpenPGP encryption failed: {detail}")]
    Encrypt { detail: String },
}

/// A passphrase: never printed, zeroized when dropped.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase taken from the job config or a prompt.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// The secret itself, for handing to OpenPGP or writing into a child's pipe.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn password(&self) -> Password {
        Password::from(self.expose())
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl From<String> for Passphrase {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// Public keys resolved for the `recipients` of a source, one certificate per recipient.
#[derive(Clone)]
pub struct RecipientKeys {
    certs: Vec<(String, SignedPublicKey)>,
}

impl RecipientKeys {
    /// `(recipient as configured, primary key fingerprint in hex)` for logs and reports.
    pub fn summary(&self) -> Vec<(String, String)> {
        self.certs
            .iter()
            .map(|(r, k)| (r.clone(), hex::encode_upper(k.fingerprint().as_bytes())))
            .collect()
    }
}

impl fmt::Debug for RecipientKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.summary()).finish()
    }
}

/// How a stream is encrypted.
#[derive(Debug, Clone)]
pub enum Encryption {
    /// Symmetric, like `gpg --symmetric`.
    Passphrase(Passphrase),
    /// To public keys, like `gpg --encrypt -r ...`.
    Recipients(RecipientKeys),
}

/// Encrypts `input` into one OpenPGP message written to `output`, streaming.
///
/// `zlib_inside` compresses the literal data with ZLIB inside the message, which is what
/// `gpg --symmetric` does by default (the original's `.tar.gpg` layout); custos' own layout
/// compresses with zstd before and leaves it off. Errors of `input` or `output` end the
/// message early and come back as [`CryptoError::Encrypt`]; callers that need to know which
/// side failed record it in their reader/writer.
pub fn encrypt<R: Read, W: Write>(
    how: &Encryption,
    zlib_inside: bool,
    input: R,
    output: W,
) -> Result<(), CryptoError> {
    let mut rng = rand::thread_rng();
    let mut builder =
        MessageBuilder::from_reader("", input).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
    builder
        .partial_chunk_size(PARTIAL_CHUNK_SIZE)
        .map_err(encrypt_error)?;
    if zlib_inside {
        builder.compression(CompressionAlgorithm::ZLIB);
    }
    match how {
        Encryption::Passphrase(pass) => {
            let s2k = StringToKey::new_iterated(
                &mut rng,
                pgp::crypto::hash::HashAlgorithm::Sha256,
                S2K_COUNT,
            );
            builder
                .encrypt_with_password(s2k, &pass.password())
                .map_err(encrypt_error)?;
        }
        Encryption::Recipients(keys) => {
            for (recipient, cert) in &keys.certs {
                let subkeys = encryption_subkeys(cert);
                if subkeys.is_empty() {
                    if primary_can_encrypt(cert) {
                        builder
                            .encrypt_to_key(&mut rng, cert)
                            .map_err(|e| recipient_error(recipient, e))?;
                    } else {
                        return Err(CryptoError::Recipient {
                            recipient: recipient.clone(),
                            message: "key has no valid encryption (sub)key".into(),
                        });
                    }
                }
                for sub in subkeys {
                    builder
                        .encrypt_to_key(&mut rng, &sub)
                        .map_err(|e| recipient_error(recipient, e))?;
                }
            }
        }
    }
    builder.to_writer(&mut rng, output).map_err(encrypt_error)
}

pub(crate) fn encrypt_error(e: pgp::errors::Error) -> CryptoError {
    CryptoError::Encrypt {
        detail: e.to_string(),
    }
}

fn recipient_error(recipient: &str, e: pgp::errors::Error) -> CryptoError {
    CryptoError::Recipient {
        recipient: recipient.to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod gpg_test;
#[cfg(test)]
mod tests;
