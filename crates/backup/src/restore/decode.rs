//! Reading an object back: open -> sha256 -> decrypt -> decompress, as its name's suffixes
//! say, with the checks (sidecar sha256, OpenPGP MDC, compression checksum) that
//! [`Decoded::finish`] completes at the end of the stream.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::select::Member;
use super::unpack::Failure;
use super::{Copy, RestoreError, SidecarCheck};
use crate::crypto::{self, Decryption};
use crate::destination::Destination;
use crate::naming::{Compression, Encoding};

const BUFFER: usize = 1 << 20;

/// Shared between the raw object reader (hashing) and the decoded stream's owner.
#[derive(Default)]
pub(super) struct ReadState {
    hasher: Sha256,
    bytes: u64,
    /// First error reading the object itself (as opposed to decoding it).
    error: Option<String>,
}

pub(super) struct HashingReader {
    inner: Box<dyn Read + Send>,
    state: Arc<Mutex<ReadState>>,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        if let Ok(mut st) = self.state.lock() {
            match &r {
                Ok(n) => {
                    st.hasher.update(&buf[..*n]);
                    st.bytes += *n as u64;
                }
                Err(e) if st.error.is_none() => st.error = Some(e.to_string()),
                Err(_) => {}
            }
        }
        r
    }
}

/// The decoded payload of one object, plus what is needed to check it at the end.
pub(super) struct Decoded {
    reader: Box<dyn Read + Send>,
    state: Arc<Mutex<ReadState>>,
    object: String,
    size: u64,
    /// First decode error seen by a caller (tar hides our reader's errors in its own).
    decode_error: Option<String>,
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.reader.read(buf);
        if let Err(e) = &r {
            if self.decode_error.is_none() {
                self.decode_error = Some(e.to_string());
            }
        }
        r
    }
}

impl Decoded {
    /// Error for a failure while reading the payload: a decode error if one was seen.
    pub(super) fn read_failure(&self, fallback: &io::Error) -> RestoreError {
        let object_error = self.state.lock().ok().and_then(|s| s.error.clone());
        let message = object_error
            .map(|e| format!("reading the object failed: {e}"))
            .or_else(|| self.decode_error.clone())
            .unwrap_or_else(|| fallback.to_string());
        RestoreError::Corrupt {
            object: self.object.clone(),
            message,
        }
    }

    /// Reads what is left (trailing padding, the MDC), then compares with the sidecar.
    pub(super) fn finish(
        mut self,
        expected: Option<&str>,
    ) -> Result<(String, SidecarCheck), RestoreError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_failure(&e)),
            }
        }
        drop(self.reader);
        let state = Arc::try_unwrap(self.state)
            .ok()
            .and_then(|m| m.into_inner().ok())
            .unwrap_or_default();
        let actual = hex::encode(state.hasher.finalize());
        match expected {
            None => Ok((actual, SidecarCheck::Missing)),
            Some(exp) if exp == actual => Ok((actual, SidecarCheck::Match)),
            Some(exp) => Err(RestoreError::ChecksumMismatch {
                object: self.object,
                expected: exp.to_string(),
                actual: if state.bytes == self.size {
                    actual
                } else {
                    format!("{actual} (over {} of {} bytes)", state.bytes, self.size)
                },
            }),
        }
    }
}

/// sha256 of a whole object, `None` when it cannot be read.
pub(super) fn hash_object(d: &dyn Destination, object: &str) -> Option<String> {
    let mut r = d.open(object).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUFFER];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Some(hex::encode(h.finalize())),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// open -> hash -> decrypt -> decompress, as the object's suffixes say.
pub(super) fn open_decoded(
    d: &dyn Destination,
    copy: &Copy,
    decryption: Option<&Decryption>,
    expected: Option<&str>,
) -> Result<Decoded, RestoreError> {
    let object = copy.name.path();
    let raw = d.open(&object)?;
    let state = Arc::new(Mutex::new(ReadState::default()));
    let mut reader: Box<dyn Read + Send> = Box::new(io::BufReader::with_capacity(
        BUFFER,
        HashingReader {
            inner: raw,
            state: state.clone(),
        },
    ));
    let Encoding {
        compression,
        encrypted,
    } = copy.name.encoding;
    if encrypted {
        let Some(how) = decryption else {
            return Err(RestoreError::NeedKey { object });
        };
        reader = match crypto::decrypt(reader, how) {
            Ok(r) => r,
            Err(source) => {
                // Damage and a wrong key can look alike; the sidecar tells them apart.
                if let Some(exp) = expected {
                    if let Some(actual) = hash_object(d, &object) {
                        if actual != exp {
                            return Err(RestoreError::ChecksumMismatch {
                                object,
                                expected: exp.to_string(),
                                actual: format!("{actual} (damaged object: {source})"),
                            });
                        }
                    }
                }
                return Err(RestoreError::Crypto { object, source });
            }
        };
    }
    reader = match compression {
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader).map_err(|e| {
            RestoreError::Corrupt {
                object: object.clone(),
                message: e.to_string(),
            }
        })?),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::None => reader,
    };
    Ok(Decoded {
        reader,
        state,
        object,
        size: copy.size,
        decode_error: None,
    })
}

pub(super) fn copy_payload(
    decoded: &mut Decoded,
    out: &mut dyn Write,
    object: &str,
    path: &Path,
) -> Result<u64, RestoreError> {
    let mut buf = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match decoded.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(decoded.read_failure(&e)),
        };
        out.write_all(&buf[..n]).map_err(|e| RestoreError::Write {
            object: object.to_string(),
            path: path.to_path_buf(),
            source: e,
        })?;
        total += n as u64;
    }
}

/// Counts bytes read through it (the tar stream size).
pub(super) struct Counting<'a, R> {
    pub(super) inner: &'a mut R,
    pub(super) n: u64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// The error for a failed unpack: a damaged stream explains everything after it, so a decode
/// or read error of the object wins over what the unpacker saw.
pub(super) fn stream_failure(decoded: &Decoded, f: Failure) -> RestoreError {
    let object_err = decoded.state.lock().ok().and_then(|s| s.error.clone());
    if let Some(message) = object_err
        .map(|m| format!("reading the object failed: {m}"))
        .or_else(|| decoded.decode_error.clone())
    {
        return RestoreError::Corrupt {
            object: decoded.object.clone(),
            message,
        };
    }
    match f {
        Failure::Restore(e) => e,
        Failure::Read(e) => RestoreError::Corrupt {
            object: decoded.object.clone(),
            message: format!("not a valid tar archive: {}", custos_kit::error::chain(&e)),
        },
    }
}

/// Reads the tar stream of `decoded` to its end without writing anything, handing each
/// member to `each` (`verify` passes a no-op, `ls` prints them); the stream's size. A stream
/// that is no tar archive is [`RestoreError::Corrupt`] saying so.
pub(super) fn walk_tar(
    decoded: &mut Decoded,
    each: &mut dyn FnMut(Member),
) -> Result<u64, RestoreError> {
    let mut counting = Counting {
        inner: decoded,
        n: 0,
    };
    let result = (|| -> io::Result<()> {
        let mut archive = tar::Archive::new(&mut counting);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let member = Member::of(&entry);
            io::copy(&mut entry, &mut io::sink())?;
            each(member);
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(counting.n),
        Err(e) => Err(match counting.inner.read_failure(&e) {
            // No decode error underneath: the payload itself is not a tar archive.
            RestoreError::Corrupt { object, message } if message == e.to_string() => {
                RestoreError::Corrupt {
                    object,
                    message: format!("not a valid tar archive: {}", custos_kit::error::chain(&e)),
                }
            }
            other => other,
        }),
    }
}
