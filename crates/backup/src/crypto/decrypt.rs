//! Turning an object stream back into plaintext: rPGP with a passphrase or secret keys, or
//! the user's own `gpg` and its agent.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ChildStdout;
use std::thread::JoinHandle;

use custos_process::{Child, ProcessError, Spawn, Stdin};

use pgp::composed::{Message, SignedSecretKey, TheRing};
use pgp::types::{Password, Seipdv1ReadMode};

use super::keys::gpg_command;
use super::{CryptoError, Passphrase, READ_BUFFER};

/// How an encrypted object is opened for restore and verify.
#[derive(Debug, Clone)]
pub enum Decryption {
    /// The source's `passphrase` (symmetric messages).
    Passphrase(Passphrase),
    /// Secret keys from a file; `passphrase` unlocks them if they are protected.
    SecretKeys {
        keys: Vec<SignedSecretKey>,
        passphrase: Option<Passphrase>,
    },
    /// Let the user's `gpg` (and its agent, pinentry, smartcard) decrypt: for objects
    /// encrypted to `recipients` whose secret key lives in the gpg keyring.
    /// `gnupg_home` overrides `$GNUPGHOME`.
    Gpg { gnupg_home: Option<PathBuf> },
}

/// Wraps the object stream for rPGP's parser, which wants `BufRead + Debug`.
struct ObjectReader<R>(BufReader<R>);

impl<R> fmt::Debug for ObjectReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjectReader")
    }
}

impl<R: Read> Read for ObjectReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> BufRead for ObjectReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.0.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.0.consume(amt)
    }
}

/// Plaintext of a decrypted message; read errors (MDC mismatch, truncation) say what broke.
struct Plaintext<'a> {
    message: Message<'a>,
}

impl Read for Plaintext<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.message.read(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("OpenPGP data is corrupted or truncated: {e}"),
            )
        })
    }
}

/// Opens an OpenPGP message read from `input` and returns its plaintext as a stream.
///
/// Decompresses what is compressed inside (gpg's ZLIB/ZIP/BZip2). A wrong passphrase is
/// [`CryptoError::WrongPassphrase`], data that is no OpenPGP message [`CryptoError::Corrupt`];
/// damage later in the stream surfaces as an `io::Error` from `read`.
pub fn decrypt<R: Read + Send + 'static>(
    input: R,
    how: &Decryption,
) -> Result<Box<dyn Read + Send>, CryptoError> {
    if let Decryption::Gpg { gnupg_home } = how {
        return Ok(Box::new(GpgDecrypt::start(input, gnupg_home.as_deref())?));
    }
    let mut input = input;
    let prefix = read_prefix(&mut input).map_err(|e| CryptoError::Corrupt {
        detail: format!("reading the object: {e}"),
    })?;
    // Check the passphrase ourselves first (see `passphrase_session_key`).
    let session_key = match how {
        Decryption::Passphrase(pass) => Some(passphrase_session_key(&prefix, pass)?),
        _ => None,
    };
    let reader = ObjectReader(BufReader::with_capacity(
        READ_BUFFER,
        io::Cursor::new(prefix).chain(input),
    ));
    let (message, _) = Message::from_reader(reader).map_err(|e| CryptoError::Corrupt {
        detail: e.to_string(),
    })?;
    if !message.is_encrypted() {
        return Err(CryptoError::Corrupt {
            detail: "the message is not encrypted".into(),
        });
    }
    let options =
        pgp::composed::DecryptionOptions::new().set_seipdv1_read_mode(Seipdv1ReadMode::Streaming);
    let message = match how {
        Decryption::Passphrase(_) => {
            let ring = TheRing {
                session_keys: session_key.into_iter().collect(),
                decrypt_options: options,
                ..Default::default()
            };
            message
                .decrypt_the_ring(ring, true)
                .map_err(|e| classify(e, |_| CryptoError::WrongPassphrase))?
                .0
        }
        Decryption::SecretKeys { keys, passphrase } => {
            let pw = passphrase
                .as_ref()
                .map(Passphrase::password)
                .unwrap_or_else(Password::empty);
            let ring = TheRing {
                secret_keys: keys.iter().collect(),
                key_passwords: vec![&pw],
                decrypt_options: options,
                ..Default::default()
            };
            message
                .decrypt_the_ring(ring, true)
                .map_err(|e| classify(e, |detail| CryptoError::NoMatchingKey { detail }))?
                .0
        }
        Decryption::Gpg { .. } => unreachable_gpg()?,
    };
    let mut message = message;
    while message.is_compressed() {
        message = message.decompress().map_err(|e| CryptoError::Corrupt {
            detail: e.to_string(),
        })?;
    }
    Ok(Box::new(Plaintext { message }))
}

/// How much of an object is looked at before decryption starts: the session key packets and
/// the start of the encrypted data are far smaller.
const PREFIX_LEN: usize = 64 * 1024;

fn read_prefix<R: Read>(input: &mut R) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(PREFIX_LEN);
    input.take(PREFIX_LEN as u64).read_to_end(&mut prefix)?;
    Ok(prefix)
}

/// One OpenPGP packet header: (tag, header length, body length of the first chunk).
fn packet_header(data: &[u8]) -> Option<(u8, usize, usize)> {
    let b0 = *data.first()?;
    if b0 & 0x80 == 0 {
        return None;
    }
    if b0 & 0x40 != 0 {
        let tag = b0 & 0x3f;
        let o1 = *data.get(1)? as usize;
        match o1 {
            0..=191 => Some((tag, 2, o1)),
            192..=223 => Some((tag, 3, ((o1 - 192) << 8) + *data.get(2)? as usize + 192)),
            255 => {
                let b = data.get(2..6)?;
                Some((
                    tag,
                    6,
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
                ))
            }
            _ => Some((tag, 2, 1usize << (o1 & 0x1f))),
        }
    } else {
        let tag = (b0 >> 2) & 0x0f;
        match b0 & 3 {
            0 => Some((tag, 2, *data.get(1)? as usize)),
            1 => {
                let b = data.get(1..3)?;
                Some((tag, 3, u16::from_be_bytes([b[0], b[1]]) as usize))
            }
            2 => {
                let b = data.get(1..5)?;
                Some((
                    tag,
                    5,
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
                ))
            }
            _ => Some((tag, 1, data.len().saturating_sub(1))),
        }
    }
}

/// Derives the session key from the passphrase and checks it against the "quick check"
/// bytes at the start of the SEIPD v1 data, so that a wrong passphrase is reported as such
/// (rPGP itself skips the quick check, and gpg-style SKESKs without an encrypted session key
/// would otherwise just decrypt to garbage). Only the outcome of our own check is exposed.
fn passphrase_session_key(
    prefix: &[u8],
    pass: &Passphrase,
) -> Result<pgp::composed::PlainSessionKey, CryptoError> {
    use pgp::composed::PlainSessionKey;
    use pgp::packet::{Packet, PacketParser};
    let corrupt = |detail: &str| CryptoError::Corrupt {
        detail: detail.to_string(),
    };
    let mut skesks = Vec::new();
    let mut pos = 0usize;
    let seipd = loop {
        let Some((tag, hlen, blen)) = packet_header(&prefix[pos..]) else {
            return Err(corrupt("no OpenPGP packet header where one was expected"));
        };
        let body = pos + hlen;
        match tag {
            // SKESK: parse the whole packet with rPGP.
            3 => {
                let end = body
                    .checked_add(blen)
                    .filter(|e| *e <= prefix.len())
                    .ok_or_else(|| corrupt("truncated session key packet"))?;
                if let Some(Ok(Packet::SymKeyEncryptedSessionKey(p))) =
                    PacketParser::new(&prefix[pos..end]).next()
                {
                    skesks.push(p);
                }
                pos = end;
            }
            // PKESK, marker: skip.
            1 | 10 => {
                pos = body
                    .checked_add(blen)
                    .filter(|e| *e <= prefix.len())
                    .ok_or_else(|| corrupt("truncated packet before the encrypted data"))?;
            }
            18 => break prefix.get(body..body + blen.min(prefix.len() - body)),
            _ => return Err(corrupt("unexpected packet before the encrypted data")),
        }
    };
    if skesks.is_empty() {
        return Err(CryptoError::NoMatchingKey {
            detail: "the object is encrypted to public keys (recipients), not with a \
                     passphrase: restore it with a secret key or gpg"
                .into(),
        });
    }
    let pw = pass.password();
    // A packet this build cannot use at all (not a key problem); reported only when no
    // session key packet opened.
    let mut unusable: Option<String> = None;
    for skesk in &skesks {
        let sk = match open_skesk(skesk, &pw) {
            Ok(Some(sk)) => sk,
            // This passphrase does not open this packet: try the next.
            Ok(None) => continue,
            Err(detail) => {
                unusable = Some(detail);
                continue;
            }
        };
        let PlainSessionKey::V3_4 { sym_alg, key } = &sk else {
            // v6 (AEAD) session keys authenticate themselves; let rPGP decide.
            return Ok(sk);
        };
        // SEIPD v1: version byte 1, then CFB(prefix of block size + 2 repeated bytes).
        // A block cipher has blocks of 8 or 16 bytes; anything smaller (a plaintext "cipher"
        // named by a hostile copy) has no check bytes to compare: let rPGP refuse it.
        let bs = sym_alg.block_size();
        let Some(data) = seipd.filter(|d| bs >= 8 && d.first() == Some(&1) && d.len() > bs + 2)
        else {
            return Ok(sk);
        };
        let mut check = data[1..bs + 3].to_vec();
        let iv = vec![0u8; bs];
        if sym_alg
            .decrypt_with_iv_regular(key.as_ref(), &iv, &mut check)
            .is_ok()
            && check[bs - 2..bs] == check[bs..bs + 2]
        {
            return Ok(sk);
        }
    }
    Err(match unusable {
        Some(detail) => CryptoError::Corrupt { detail },
        None => CryptoError::WrongPassphrase,
    })
}

/// Opens one v4 SKESK with a passphrase as rPGP's `decrypt_session_key_with_password` does,
/// but keeps apart what it lumps together: `Ok(None)` when the key derived from the passphrase
/// does not decrypt the packet's session key (a wrong passphrase: the decrypted bytes name no
/// cipher, or a key of the wrong length), `Err` when the packet itself cannot be
/// used (unknown version, plaintext cipher, unsupported S2K).
fn open_skesk(
    skesk: &pgp::packet::SymKeyEncryptedSessionKey,
    pw: &Password,
) -> Result<Option<pgp::composed::PlainSessionKey>, String> {
    use pgp::crypto::sym::SymmetricKeyAlgorithm;
    use pgp::types::SkeskVersion;
    let (Some(alg), Some(s2k)) = (skesk.sym_algorithm(), skesk.s2k()) else {
        return Err(format!(
            "unsupported session key packet version {:?}",
            skesk.version()
        ));
    };
    if skesk.version() != SkeskVersion::V4 {
        // v5/v6 (AEAD; neither gpg 2.2 nor custos writes them): rPGP checks these packets
        // itself, and a failure is nearly always the AEAD tag refusing the derived key.
        return Ok(pgp::composed::decrypt_session_key_with_password(skesk, pw).ok());
    }
    if alg == SymmetricKeyAlgorithm::Plaintext {
        return Err("session key packet with a plaintext cipher".into());
    }
    let key = s2k
        .derive_key(&pw.read(), alg.key_size())
        .map_err(|e| format!("session key packet: {e}"))?;
    match skesk.encrypted_key() {
        // No encrypted session key: the derived key is the session key (gpg -c); the quick
        // check decides.
        Some(esk) if esk.is_empty() => Ok(Some(pgp::composed::PlainSessionKey::V3_4 {
            key,
            sym_alg: alg,
        })),
        Some(_) => Ok(skesk.decrypt(&key).ok()),
        None => Err(format!(
            "unsupported session key packet version {:?}",
            skesk.version()
        )),
    }
}

/// rPGP does not use the "quick check" bytes (an oracle), so a wrong passphrase on a gpg-style
/// SKESK shows as garbage; only an MDC failure is known to be damage rather than the key.
fn classify(e: pgp::errors::Error, key_error: impl FnOnce(String) -> CryptoError) -> CryptoError {
    let detail = e.to_string();
    if is_mdc_failure(&e) {
        CryptoError::Corrupt { detail }
    } else {
        key_error(detail)
    }
}

/// Whether `e` is, or wraps, an MDC failure: rPGP's streaming decryptor reports it as an
/// `io::Error` carrying `Error::MdcError`, which reaches us inside `Error::IO`. Decided from
/// the error's type, never its text (which a library update may reword).
fn is_mdc_failure(e: &pgp::errors::Error) -> bool {
    match e {
        pgp::errors::Error::MdcError => true,
        pgp::errors::Error::IO { source, .. } => source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<pgp::errors::Error>())
            .is_some_and(is_mdc_failure),
        _ => false,
    }
}

/// `Decryption::Gpg` returns before rPGP is involved; keeps the match exhaustive without panic.
fn unreachable_gpg<T>() -> Result<T, CryptoError> {
    Err(CryptoError::Gpg {
        message: "internal: gpg decryption reached the rPGP path".into(),
    })
}

/// `gpg --decrypt` as a child (custos-process: its own group, stderr's tail): a thread feeds
/// the object to its stdin, we read its stdout, and its exit status is checked at end of
/// stream (a failed decryption never looks complete). Dropped early, its group is killed.
struct GpgDecrypt {
    child: Child,
    stdout: ChildStdout,
    feeder: Option<JoinHandle<io::Result<()>>>,
    done: bool,
}

impl GpgDecrypt {
    fn start<R: Read + Send + 'static>(
        mut input: R,
        gnupg_home: Option<&Path>,
    ) -> Result<Self, CryptoError> {
        let mut cmd = gpg_command(gnupg_home);
        cmd.args(["--batch", "--no-tty", "--quiet", "--decrypt"]);
        let mut child = Spawn::new("gpg --decrypt", cmd)
            .stdin(Stdin::Piped)
            .spawn()
            .map_err(|e| CryptoError::Gpg {
                message: match e {
                    ProcessError::NotFound { source, .. }
                    | ProcessError::PermissionDenied { source, .. }
                    | ProcessError::Io { source, .. } => {
                        format!("cannot run gpg --decrypt: {source}")
                    }
                    e => e.to_string(),
                },
            })?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin(), child.stdout()) else {
            return Err(CryptoError::Gpg {
                message: "cannot open pipes to gpg".into(),
            });
        };
        let feeder = std::thread::spawn(move || -> io::Result<()> {
            let mut buf = vec![0u8; READ_BUFFER];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if let Err(e) = stdin.write_all(&buf[..n]) {
                    // gpg stopped reading: its exit status tells why.
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(e);
                }
            }
        });
        Ok(Self {
            child,
            stdout,
            feeder: Some(feeder),
            done: false,
        })
    }
}

impl Read for GpgDecrypt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 {
            self.done = true;
            self.finish()?;
        }
        Ok(n)
    }
}

impl GpgDecrypt {
    fn finish(&mut self) -> io::Result<()> {
        let exit = self
            .child
            .wait()
            .map_err(|e| io::Error::other(e.to_string()))?;
        let fed = self.feeder.take().map(|h| h.join());
        if !exit.success() {
            let tail: String = exit
                .stderr
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(io::Error::other(format!(
                "gpg --decrypt failed (exit status: {}): {tail}",
                exit.code
            )));
        }
        match fed {
            Some(Ok(Err(e))) => Err(io::Error::new(
                e.kind(),
                format!("reading the object for gpg: {e}"),
            )),
            Some(Err(_)) => Err(io::Error::other("gpg input thread panicked")),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_mdc_failure;
    use pgp::errors::Error;

    #[test]
    fn an_mdc_failure_is_recognised_by_type_also_inside_an_io_error() {
        assert!(is_mdc_failure(&Error::MdcError));
        let wrapped = Error::IO {
            source: std::io::Error::other(Error::MdcError),
            backtrace: None,
        };
        assert!(is_mdc_failure(&wrapped));
        // Text that merely mentions it is not one (the check used to match on the message).
        let lookalike = Error::IO {
            source: std::io::Error::other("Modification Detection Code error"),
            backtrace: None,
        };
        assert!(!is_mdc_failure(&lookalike));
        assert!(!is_mdc_failure(&Error::MissingKey));
    }
}
