use super::*;
use crate::crypto::{Decryption, Passphrase};
use crate::destination::local::LocalDestination;
use crate::destination::{ObjectInfo, ObjectWriter};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A source stream over bytes that may fail mid-way or at `finish`.
struct TestStream {
    data: io::Cursor<Vec<u8>>,
    fail_read_after: Option<u64>,
    fail_finish: bool,
}

impl TestStream {
    fn ok(data: Vec<u8>) -> Box<Self> {
        Box::new(Self {
            data: io::Cursor::new(data),
            fail_read_after: None,
            fail_finish: false,
        })
    }
}

impl Read for TestStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(limit) = self.fail_read_after {
            if self.data.position() >= limit {
                return Err(io::Error::other("disk read error"));
            }
        }
        let max = (buf.len()).min(64 * 1024);
        self.data.read(&mut buf[..max])
    }
}

impl SourceStream for TestStream {
    fn finish(self: Box<Self>) -> Result<(), SourceError> {
        if self.fail_finish {
            Err(SourceError::Unavailable {
                retry: crate::source::Retry::Permanent,
                message: "mysqldump exited with status 2".into(),
            })
        } else {
            Ok(())
        }
    }
}

/// Mixed test data: text-like and random-like parts.
pub(crate) fn sample(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (out.len() / 4096) % 2 == 0 {
            out.extend_from_slice(format!("line {} of some text\n", x % 1000).as_bytes());
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn all_files(root: &std::path::Path) -> Vec<String> {
    let d = LocalDestination::new("probe", root);
    let mut names: Vec<String> = d
        .list("")
        .expect("list")
        .into_iter()
        .map(|o: ObjectInfo| o.name)
        .collect();
    // Also count hidden partial files, which list() skips.
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().contains(".partial-") {
                names.push(e.path().display().to_string());
            }
        }
    }
    names.sort();
    names
}

fn decode(obj: Vec<u8>, enc: Encoding, dec: Option<&Decryption>) -> Vec<u8> {
    let mut r: Box<dyn Read + Send> = Box::new(io::Cursor::new(obj));
    if enc.encrypted {
        r = crypto::decrypt(r, dec.expect("key")).expect("decrypt");
    }
    let mut out = Vec::new();
    match enc.compression {
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(r)
                .expect("zstd")
                .read_to_end(&mut out)
                .expect("read");
        }
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(r)
                .read_to_end(&mut out)
                .expect("read");
        }
        Compression::None => {
            r.read_to_end(&mut out).expect("read");
        }
    }
    out
}

#[test]
fn round_trip_all_layouts_through_local() {
    let data = sample(3 * CHUNK + 12345);
    let pass = Passphrase::new("correct horse");
    let dec = Decryption::Passphrase(pass.clone());
    for plan in [
        Plan::custos(Encryption::Passphrase(pass.clone())),
        Plan::original(Encryption::Passphrase(pass.clone())),
        Plan::compress_only(),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = LocalDestination::new("a", dir.path().join("a"));
        let b = LocalDestination::new("b", dir.path().join("b"));
        std::fs::create_dir_all(a.root()).expect("mkdir");
        std::fs::create_dir_all(b.root()).expect("mkdir");
        let object = format!("src/20240101000000/src.tar{}", plan.encoding.suffix());
        let seen = AtomicU64::new(0);
        let progress = |n: u64| seen.store(n, Ordering::Relaxed);
        let out = run(
            TestStream::ok(data.clone()),
            &plan,
            &object,
            &[&a, &b],
            Some(&progress),
        )
        .expect("pipeline");
        assert!(out.all_ok(), "{out:?}");
        assert_eq!(out.source_bytes, data.len() as u64);
        assert_eq!(seen.load(Ordering::Relaxed), data.len() as u64);
        for d in [&a, &b] {
            let bytes = std::fs::read(d.root().join(&object)).expect("object");
            assert_eq!(bytes.len() as u64, out.size);
            assert_eq!(hex::encode(Sha256::digest(&bytes)), out.sha256);
            let side = std::fs::read_to_string(d.root().join(format!("{object}.sha256")))
                .expect("sidecar");
            assert_eq!(naming::parse_sidecar(&side), Some(out.sha256.clone()));
            assert_eq!(decode(bytes, plan.encoding, Some(&dec)), data);
        }
    }
}

/// A destination whose writer fails after `fail_after` bytes.
struct Flaky {
    inner: LocalDestination,
    fail_after: u64,
}

struct FlakyWriter {
    inner: Box<dyn ObjectWriter>,
    left: u64,
}

impl Write for FlakyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left < buf.len() as u64 {
            return Err(io::Error::from_raw_os_error(28));
        }
        self.left -= buf.len() as u64;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for FlakyWriter {
    fn commit(self: Box<Self>) -> Result<(), DestinationError> {
        self.inner.commit()
    }
    fn abort(self: Box<Self>) {
        self.inner.abort()
    }
}

impl Destination for Flaky {
    fn id(&self) -> &str {
        "flaky"
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }
    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        Ok(Box::new(FlakyWriter {
            inner: self.inner.create(name)?,
            left: self.fail_after,
        }))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        self.inner.list(prefix)
    }
    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
        self.inner.open(name)
    }
    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        self.inner.delete(name)
    }
}

#[test]
fn one_failing_writer_does_not_stop_the_others() {
    let data = sample(4 * CHUNK);
    let dir = tempfile::tempdir().expect("tempdir");
    let good = LocalDestination::new("good", dir.path().join("good"));
    let flaky = Flaky {
        inner: LocalDestination::new("flaky", dir.path().join("flaky")),
        fail_after: 100_000,
    };
    std::fs::create_dir_all(good.root()).expect("mkdir");
    std::fs::create_dir_all(flaky.inner.root()).expect("mkdir");
    let object = "s/20240101000000/s.tar.gz";
    let out = run(
        TestStream::ok(data.clone()),
        &Plan::compress_only(),
        object,
        &[&flaky, &good],
        None,
    )
    .expect("pipeline");
    assert_eq!(out.destinations.len(), 2);
    assert_eq!(out.destinations[0].destination, "flaky");
    let err = out.destinations[0]
        .result
        .as_ref()
        .expect_err("flaky failed");
    assert!(err.to_string().contains("os error 28"), "{err}");
    assert!(out.destinations[1].result.is_ok());
    assert_eq!(
        all_files(flaky.inner.root()),
        Vec::<String>::new(),
        "failed destination keeps nothing"
    );
    let bytes = std::fs::read(good.root().join(object)).expect("object");
    assert_eq!(decode(bytes, Encoding::COMPRESS_ONLY, None), data);
}

#[test]
fn all_writers_failing_is_reported_per_destination() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flaky = Flaky {
        inner: LocalDestination::new("flaky", dir.path()),
        fail_after: 10,
    };
    let out = run(
        TestStream::ok(sample(2 * CHUNK)),
        &Plan::compress_only(),
        "s/20240101000000/s.tar.gz",
        &[&flaky],
        None,
    )
    .expect("pipeline");
    assert!(!out.all_ok());
    assert_eq!(all_files(dir.path()), Vec::<String>::new());
    // Issue 16.6: what was read before the last destination failed (it said 0).
    assert!(out.source_bytes > 0);
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
}

/// A local destination that cannot store sidecars (a disk that fills up just then).
struct NoSidecar(LocalDestination);

impl Destination for NoSidecar {
    fn id(&self) -> &str {
        self.0.id()
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn check(&self) -> Result<(), DestinationError> {
        Ok(())
    }
    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>, DestinationError> {
        if name.ends_with(".sha256") {
            return Err(DestinationError::Io {
                destination: self.id().into(),
                op: "create",
                object: name.into(),
                source: io::Error::from_raw_os_error(28),
            });
        }
        self.0.create(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        self.0.list(prefix)
    }
    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>, DestinationError> {
        self.0.open(name)
    }
    fn delete(&self, name: &str) -> Result<(), DestinationError> {
        self.0.delete(name)
    }
}

/// Issue 16.6: an object whose sidecar cannot be written is no good copy: it is removed,
/// with the directories made for it.
#[test]
fn an_object_without_its_sidecar_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = NoSidecar(LocalDestination::new("disk", dir.path()));
    let out = run(
        TestStream::ok(sample(CHUNK)),
        &Plan::compress_only(),
        "s/20240101000000/s.tar.gz",
        &[&d],
        None,
    )
    .expect("pipeline");
    let err = out.destinations[0].result.as_ref().expect_err("no sidecar");
    assert!(err.to_string().contains("s.tar.gz.sha256"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
}

#[test]
fn source_failure_aborts_everything() {
    let pass = Passphrase::new("pw");
    for (fail_read_after, fail_finish) in [(Some(2 * CHUNK as u64), false), (None, true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = LocalDestination::new("a", dir.path());
        let stream = Box::new(TestStream {
            data: io::Cursor::new(sample(4 * CHUNK)),
            fail_read_after,
            fail_finish,
        });
        let err = run(
            stream,
            &Plan::custos(Encryption::Passphrase(pass.clone())),
            "s/20240101000000/s.sql.zst.gpg",
            &[&a],
            None,
        )
        .expect_err("source failed");
        assert!(matches!(err, PipelineError::Source(_)), "{err}");
        assert_eq!(all_files(dir.path()), Vec::<String>::new(), "{err}");
    }
}

#[test]
fn create_failure_marks_only_that_destination() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = LocalDestination::new("missing", dir.path().join("not-mounted"));
    let ok = LocalDestination::new("ok", dir.path().join("ok"));
    std::fs::create_dir_all(ok.root()).expect("mkdir");
    let out = run(
        TestStream::ok(b"hello".to_vec()),
        &Plan::compress_only(),
        "s/20240101000000/s.sql.gz",
        &[&missing, &ok],
        None,
    )
    .expect("pipeline");
    assert!(out.destinations[0].result.is_err());
    assert!(out.destinations[1].result.is_ok());
}

#[test]
fn inconsistent_plan_is_rejected() {
    let mut plan = Plan::compress_only();
    plan.encoding = Encoding::CUSTOS;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = LocalDestination::new("a", dir.path());
    let err = run(
        TestStream::ok(vec![]),
        &plan,
        "s/20240101000000/s.sql.zst.gpg",
        &[&a],
        None,
    )
    .expect_err("no keys");
    assert!(matches!(err, PipelineError::Plan(_)));
}

#[test]
fn empty_source_makes_a_valid_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = LocalDestination::new("a", dir.path());
    let pass = Passphrase::new("pw");
    let out = run(
        TestStream::ok(vec![]),
        &Plan::custos(Encryption::Passphrase(pass.clone())),
        "s/20240101000000/s.sql.zst.gpg",
        &[&a],
        None,
    )
    .expect("pipeline");
    assert!(out.all_ok());
    let bytes = std::fs::read(dir.path().join("s/20240101000000/s.sql.zst.gpg")).expect("obj");
    assert_eq!(
        decode(bytes, Encoding::CUSTOS, Some(&Decryption::Passphrase(pass))),
        Vec::<u8>::new()
    );
}

#[test]
fn recipient_round_trip_with_generated_key() {
    use pgp::composed::{KeyType, SecretKeyParamsBuilder, SubkeyParamsBuilder};
    let mut rng = rand::thread_rng();
    let params = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("Backup Test <backup@example.org>".into())
        .subkeys(vec![SubkeyParamsBuilder::default()
            .key_type(KeyType::ECDH(
                pgp::crypto::ecc_curve::ECCCurve::Curve25519Legacy,
            ))
            .can_encrypt(pgp::composed::EncryptionCaps::All)
            .build()
            .expect("subkey params")])
        .build()
        .expect("params");
    let secret = params.generate(&mut rng).expect("generate");
    let public = secret.to_public_key();
    let dir = tempfile::tempdir().expect("tempdir");
    let ring = dir.path().join("ring.asc");
    std::fs::write(
        &ring,
        public.to_armored_string(Default::default()).expect("armor"),
    )
    .expect("write ring");
    let keys =
        crypto::load_recipients(&["backup@example.org".into()], Some(&ring)).expect("recipients");
    let dest = LocalDestination::new("d", dir.path());
    let data = sample(CHUNK + 77);
    let object = "k/20240101000000/k.tar.zst.gpg";
    let out = run(
        TestStream::ok(data.clone()),
        &Plan::custos(Encryption::Recipients(keys)),
        object,
        &[&dest],
        None,
    )
    .expect("pipeline");
    assert!(out.all_ok());
    let bytes = std::fs::read(dir.path().join(object)).expect("object");
    let dec = Decryption::SecretKeys {
        keys: vec![secret],
        passphrase: None,
    };
    assert_eq!(decode(bytes.clone(), Encoding::CUSTOS, Some(&dec)), data);
    let wrong = Decryption::Passphrase(Passphrase::new("nope"));
    let err = crypto::decrypt(io::Cursor::new(bytes), &wrong)
        .err()
        .expect("no key for it");
    let _ = Mutex::new(()); // keep the import used in all cfgs
    assert!(!err.to_string().contains("nope"), "{err}");
}
