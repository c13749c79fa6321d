//! Folder -> local -> restore round trips with the real binary, and interoperability of the
//! objects with the real tools (`gpg`, `zstd`, `tar`, `gzip`) in both directions.

use crate::common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

/// A job with one folder source `files` backing up `dir/src/<name>` to `dir/dest`.
fn folder_job(dir: &Path, folder: &Path) -> (Job, PathBuf) {
    let dest = dir.join("dest");
    let mut job = Job::new(dir);
    job.source(folder_source("files", folder))
        .destination(local_destination("disk", &dest));
    (job, dest)
}

/// Asserts the custos object name shape `files/YYYYmmddHHMMSS/files.<suffix>`.
#[track_caller]
fn assert_object_name(dest: &Path, object: &Path, id: &str, suffix: &str) {
    let rel = object
        .strip_prefix(dest)
        .expect("under dest")
        .to_string_lossy()
        .into_owned();
    let parts: Vec<&str> = rel.split('/').collect();
    assert_eq!(parts.len(), 3, "object name {rel:?} is not id/stamp/file");
    assert_eq!(parts[0], id, "object {rel:?}");
    assert!(
        parts[1].len() == 14 && parts[1].bytes().all(|b| b.is_ascii_digit()),
        "timestamp part of {rel:?} is not YYYYmmddHHMMSS"
    );
    assert_eq!(parts[2], format!("{id}.{suffix}"), "file part of {rel:?}");
}

#[test]
fn tricky_tree_round_trips_byte_identical() {
    if !require_tools(
        "tricky_tree_round_trips_byte_identical",
        &["tar", "sha256sum", "mkfifo"],
    ) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = tricky_tree(&t.path().join("src"), "tree");
    let (job, dest) = folder_job(t.path(), &src);
    let cfg = job.write();

    run_job(&cfg).assert_code(0);

    let object = only_object(&dest, "files");
    assert_object_name(&dest, &object, "files", "tar.zst.gpg");
    // The sidecar is in sha256sum format and checks out with the real tool.
    let sidecar = PathBuf::from(format!("{}.sha256", object.display()));
    assert!(sidecar.is_file(), "no sidecar {}", sidecar.display());
    run_ok(
        Command::new("sha256sum")
            .arg("-c")
            .arg(sidecar.file_name().expect("name"))
            .current_dir(object.parent().expect("dir")),
    );
    // Credentials/temp files are gone, and nothing else was left behind in the destination.
    assert_eq!(
        files_under(&job.tmpdir()),
        Vec::<String>::new(),
        "tmpdir not cleaned"
    );
    assert_eq!(
        files_under(&dest).len(),
        2,
        "destination holds more than object + sidecar: {:?}",
        files_under(&dest)
    );

    let target = t.path().join("restore");
    restore_to(&cfg, "files", &target).assert_code(0);
    assert_same_tree(&src, &restored_root(&target, "tree"), false);
}

/// `backup restore` run as root gives files back to their owners, as `tar -x` does for root.
#[test]
fn restore_as_root_keeps_owners() {
    if !is_root() {
        eprintln!("SKIP: restore_as_root_keeps_owners: not root");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/owned");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    fs::write(src.join("a"), b"a").expect("write");
    fs::write(src.join("sub/b"), b"b").expect("write");
    std::os::unix::fs::symlink("a", src.join("l")).expect("symlink");
    run_ok(Command::new("chown").arg("1234:5678").arg(src.join("a")));
    run_ok(
        Command::new("chown")
            .arg("-h")
            .arg("4321:8765")
            .arg(src.join("l")),
    );
    run_ok(Command::new("chown").arg("2000:2000").arg(src.join("sub")));
    let (job, _dest) = folder_job(t.path(), &src);
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let target = t.path().join("restore");
    restore_to(&cfg, "files", &target).assert_code(0);
    assert_same_tree(&src, &restored_root(&target, "owned"), true);
    let l = fs::symlink_metadata(restored_root(&target, "owned").join("l")).expect("lstat");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (l.uid(), l.gid()),
        (4321, 8765),
        "symlink owner not restored"
    );
}

/// A 3 GB file that is almost all hole: cheap to archive (tar finds the holes), cheap to
/// store, restored with the same bytes and (GNU sparse format) as a sparse file again.
#[test]
fn sparse_3gb_file_round_trips() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/sparse");
    fs::create_dir_all(&src).expect("mkdir");
    let big = src.join("disk.img");
    {
        use std::io::{Seek, SeekFrom};
        let mut f = fs::File::create(&big).expect("create");
        f.set_len(3 << 30).expect("truncate 3G");
        for (off, seed) in [(0u64, 11u64), (1 << 30, 12), ((3 << 30) - (1 << 20), 13)] {
            f.seek(SeekFrom::Start(off)).expect("seek");
            f.write_all(&pseudo_random(1 << 20, seed)).expect("write");
        }
    }
    fs::write(src.join("small.txt"), b"beside the sparse file\n").expect("write");
    let (job, dest) = folder_job(t.path(), &src);
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let object = only_object(&dest, "files");
    let size = fs::metadata(&object).expect("stat").len();
    assert!(
        size < 16 << 20,
        "object for a 3 MB-of-data sparse file is {size} bytes: holes were archived as data"
    );

    let target = t.path().join("restore");
    restore_to(&cfg, "files", &target).assert_code(0);
    let got = restored_root(&target, "sparse");
    // Content first (digest_file is hole-aware, so this is fast for a sparse copy).
    assert_same_tree(&src, &got, false);
    let alloc = allocated(&got.join("disk.img"));
    assert!(
        alloc < 64 << 20,
        "restored 3 GB sparse file occupies {alloc} bytes on disk: restore is not sparse-aware"
    );
}

/// The default object is a standard OpenPGP message: real gpg decrypts it with the
/// passphrase, `zstd -d` and `tar -x` unpack it into the original tree.
#[test]
fn default_object_opens_with_gpg_zstd_and_tar() {
    if !require_tools(
        "default_object_opens_with_gpg_zstd_and_tar",
        &["gpg", "zstd", "tar"],
    ) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = tricky_tree(&t.path().join("src"), "tree");
    let (job, dest) = folder_job(t.path(), &src);
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let object = only_object(&dest, "files");

    let home = GnupgHome::new();
    let plain = gpg_decrypt_passphrase(&home, &object, PASSPHRASE);
    let zst = t.path().join("payload.tar.zst");
    fs::write(&zst, &plain).expect("write");
    let out = t.path().join("untar");
    fs::create_dir_all(&out).expect("mkdir");
    sh(&format!(
        "zstd -dc '{}' | tar -x -f - -C '{}'",
        zst.display(),
        out.display()
    ));
    assert_same_tree(&src, &out.join("tree"), false);
    // Members are ./tree/... as the original's `tar cf - ./<basename>`.
    let list = sh(&format!(
        "zstd -dc '{}' | tar -t -f - | sed -n 1p",
        zst.display()
    ));
    assert_eq!(lossy(&list.stdout).trim(), "./tree/", "first tar member");
}

/// `recipients` + `keyring`: encrypted to a public key from a keyring file; real gpg with the
/// secret key decrypts it; `backup restore` with the secret key restores it.
#[test]
fn recipient_object_opens_with_gpg_secret_key() {
    if !require_tools(
        "recipient_object_opens_with_gpg_secret_key",
        &["gpg", "gpgconf", "zstd", "tar"],
    ) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = tricky_tree(&t.path().join("src"), "tree");
    let home = GnupgHome::new();
    home.gen_key("Backup Test <backup-test@example.org>");
    let keyring = t.path().join("pubring.gpg");
    home.export_public("backup-test@example.org", &keyring);

    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    job.source(
        json!({"id": "files", "name": "files", "type": "folder", "path": src,
                      "recipients": ["backup-test@example.org"], "keyring": keyring}),
    )
    .destination(local_destination("disk", &dest));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let object = only_object(&dest, "files");
    assert_object_name(&dest, &object, "files", "tar.zst.gpg");

    let out = t.path().join("untar");
    fs::create_dir_all(&out).expect("mkdir");
    let mut gpg = home.gpg();
    gpg.arg("--decrypt").arg(&object).stdout(Stdio::piped());
    let decrypted = run_ok(&mut gpg).stdout;
    let zst = t.path().join("payload.tar.zst");
    fs::write(&zst, &decrypted).expect("write");
    sh(&format!(
        "zstd -dc '{}' | tar -x -f - -C '{}'",
        zst.display(),
        out.display()
    ));
    assert_same_tree(&src, &out.join("tree"), false);

    // backup restore, decrypting through the user's gpg (GNUPGHOME holds the secret key).
    let target = t.path().join("restore");
    let r = backup_with(
        [
            "restore".as_ref(),
            cfg.as_os_str(),
            "--source".as_ref(),
            "files".as_ref(),
            "--to".as_ref(),
            target.as_os_str(),
        ],
        &[("GNUPGHOME", home.path().as_os_str())],
        None,
    );
    r.assert_code(0);
    assert_same_tree(&src, &restored_root(&target, "tree"), false);

    // backup restore with the secret key exported to a file (no gpg involved).
    let secret = t.path().join("secret.asc");
    home.export_secret("backup-test@example.org", &secret);
    let target = t.path().join("restore-key");
    restore_with(
        &cfg,
        "files",
        &["--key".as_ref(), secret.as_os_str()],
        &target,
    )
    .assert_code(0);
    assert_same_tree(&src, &restored_root(&target, "tree"), false);
    // verify with the key file.
    backup([
        "verify".as_ref(),
        cfg.as_os_str(),
        "--key".as_ref(),
        secret.as_os_str(),
    ])
    .assert_code(0);
}

/// `"layout": "original"`: `files.tar.gpg` whose `gpg -d` output is the tar itself.
#[test]
fn original_layout_is_a_tar_after_gpg_decrypt() {
    if !require_tools(
        "original_layout_is_a_tar_after_gpg_decrypt",
        &["gpg", "tar"],
    ) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = tricky_tree(&t.path().join("src"), "tree");
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    let mut s = folder_source("files", &src);
    s["layout"] = json!("original");
    job.source(s).destination(local_destination("disk", &dest));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let object = only_object(&dest, "files");
    assert_object_name(&dest, &object, "files", "tar.gpg");

    let home = GnupgHome::new();
    let plain = gpg_decrypt_passphrase(&home, &object, PASSPHRASE);
    let tarfile = t.path().join("payload.tar");
    fs::write(&tarfile, &plain).expect("write");
    let out = t.path().join("untar");
    fs::create_dir_all(&out).expect("mkdir");
    sh(&format!(
        "tar -x -f '{}' -C '{}'",
        tarfile.display(),
        out.display()
    ));
    assert_same_tree(&src, &out.join("tree"), false);

    let target = t.path().join("restore");
    restore_to(&cfg, "files", &target).assert_code(0);
    assert_same_tree(&src, &restored_root(&target, "tree"), false);
}

/// `compress_only: 1`: compressed, not encrypted, no passphrase needed. With
/// `"layout": "original"` exactly the original's `files.tar.gz` (readable by `tar xz`); in the
/// custos layout the compression is named in the suffix (`files.tar.zst`, `zstd -d | tar x`).
#[test]
fn compress_only_is_a_plain_compressed_tar() {
    if !require_tools(
        "compress_only_is_a_plain_compressed_tar",
        &["tar", "gzip", "zstd"],
    ) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = tricky_tree(&t.path().join("src"), "tree");
    for (layout, suffix, untar) in [
        ("original", "tar.gz", "tar -x -z -f"),
        ("custos", "tar.zst", "tar -x --zstd -f"),
    ] {
        let dir = t.path().join(layout);
        fs::create_dir_all(&dir).expect("mkdir");
        let dest = dir.join("dest");
        let mut job = Job::new(&dir);
        job.source(json!({"id": "files", "name": "files", "type": "folder", "path": src, "compress_only": 1, "layout": layout}))
            .destination(local_destination("disk", &dest));
        let cfg = job.write();
        run_job(&cfg).assert_code(0);
        let object = only_object(&dest, "files");
        assert_object_name(&dest, &object, "files", suffix);
        let out = dir.join("untar");
        fs::create_dir_all(&out).expect("mkdir");
        sh(&format!(
            "{untar} '{}' -C '{}'",
            object.display(),
            out.display()
        ));
        assert_same_tree(&src, &out.join("tree"), false);

        let target = dir.join("restore");
        restore_to(&cfg, "files", &target).assert_code(0);
        assert_same_tree(&src, &restored_root(&target, "tree"), false);
    }
}

/// FIFOs are archived as FIFOs by tar; a restore must recreate them as FIFOs (as `tar -x`
/// does), not as empty regular files.
#[test]
fn fifo_round_trips_as_a_fifo() {
    if !require_tools("fifo_round_trips_as_a_fifo", &["mkfifo", "tar"]) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/special");
    fs::create_dir_all(&src).expect("mkdir");
    run_ok(
        Command::new("mkfifo")
            .arg("-m")
            .arg("0640")
            .arg(src.join("queue.fifo")),
    );
    fs::write(src.join("regular"), b"r").expect("write");
    let (job, _dest) = folder_job(t.path(), &src);
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let target = t.path().join("restore");
    restore_to(&cfg, "files", &target).assert_code(0);
    assert_same_tree(&src, &restored_root(&target, "special"), false);
}

/// Objects made by the original's own pipeline, placed where it puts them, restore with
/// `backup restore`: `tar cf - ./dir | gpg --symmetric --cipher-algo AES256` (gpg's zlib
/// inside, no sidecar) and `compress_only`'s gzip.
#[test]
fn restores_objects_made_by_the_originals_pipeline() {
    if !require_tools(
        "restores_objects_made_by_the_originals_pipeline",
        &["gpg", "tar", "gzip"],
    ) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let parent = t.path().join("src");
    let src = tricky_tree(&parent, "tree");
    let dest = t.path().join("dest");
    let home = GnupgHome::new();
    let passfile = t.path().join("pass");
    write_private(&passfile, PASSPHRASE.as_bytes());

    // gpg: the original's encrypted layout. `--s2k-count 65536` only keeps the test fast:
    // gpg's calibrated default (tens of millions of SHA-1 rounds) costs ~10 s per key
    // derivation in an unoptimised test build; the message format is the same.
    let obj_dir = dest.join("files/20240102030405");
    fs::create_dir_all(&obj_dir).expect("mkdir");
    sh(&format!(
        "cd '{}' && tar cf - ./tree | GNUPGHOME='{}' gpg --batch --quiet --pinentry-mode loopback --passphrase-file '{}' --s2k-count 65536 --symmetric --cipher-algo AES256 -o '{}'",
        parent.display(),
        home.path().display(),
        passfile.display(),
        obj_dir.join("files.tar.gpg").display()
    ));

    // gzip: the original's compress_only layout, for source `plain`.
    let gz_dir = dest.join("plain/20240102030405");
    fs::create_dir_all(&gz_dir).expect("mkdir");
    sh(&format!(
        "cd '{}' && tar cf - ./tree | gzip --fast > '{}'",
        parent.display(),
        gz_dir.join("plain.tar.gz").display()
    ));

    let mut job = Job::new(t.path());
    job.source(folder_source("files", &src))
        .source(json!({"id": "plain", "name": "plain", "type": "folder", "path": src, "compress_only": 1}))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();

    let list = list(&cfg);
    list.assert_code(0);
    assert!(
        list.stdout_text().contains("20240102030405") || list.stdout_text().contains("2024-01-02"),
        "list does not show the original's copies:\n{}",
        list.describe()
    );

    for id in ["files", "plain"] {
        let target = t.path().join(format!("restore-{id}"));
        restore_to(&cfg, id, &target).assert_code(0);
        assert_same_tree(&src, &restored_root(&target, "tree"), false);
    }
    // verify accepts objects without a sidecar (the original writes none).
    verify(&cfg).assert_code(0);
}

/// `--at` picks an older copy; without it the newest is restored. `--to -` writes the tar.
#[test]
fn restore_at_timestamp_and_to_stdout() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/data");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("version.txt"), b"one\n").expect("write");
    let (job, dest) = folder_job(t.path(), &src);
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    // Make the first copy an old one (local destinations are plain trees), then back up again.
    let first = only_object(&dest, "files");
    let stamp_dir = first.parent().expect("stamp dir").to_owned();
    fs::rename(&stamp_dir, dest.join("files/20200101000000")).expect("rename");
    fs::write(src.join("version.txt"), b"two\n").expect("write");
    run_job(&cfg).assert_code(0);
    assert_eq!(objects(&dest, "files").len(), 2);

    let old = t.path().join("old");
    restore_with(
        &cfg,
        "files",
        &["--at".as_ref(), "20200101000000".as_ref()],
        &old,
    )
    .assert_code(0);
    assert_eq!(
        fs::read(old.join("data/version.txt")).expect("read"),
        b"one\n"
    );
    let new = t.path().join("new");
    restore_with(
        &cfg,
        "files",
        &["--destination".as_ref(), "disk".as_ref()],
        &new,
    )
    .assert_code(0);
    assert_eq!(
        fs::read(new.join("data/version.txt")).expect("read"),
        b"two\n"
    );

    let r = restore_to(&cfg, "files", Path::new("-"));
    r.assert_code(0);
    let tarfile = t.path().join("out.tar");
    fs::write(&tarfile, &r.stdout).expect("write");
    let listing = sh(&format!("tar -t -f '{}'", tarfile.display()));
    assert!(
        lossy(&listing.stdout).contains("./data/version.txt"),
        "--to - is not the tar stream: {}",
        lossy(&listing.stdout)
    );

    // An unknown timestamp or source is an error that says so.
    let r = restore_with(
        &cfg,
        "files",
        &["--at".as_ref(), "20190101000000".as_ref()],
        &t.path().join("x"),
    );
    assert_ne!(
        r.code(),
        Some(0),
        "restore of a missing timestamp succeeded:\n{}",
        r.describe()
    );
    assert!(
        r.all_text().contains("20190101000000"),
        "message does not name the timestamp:\n{}",
        r.describe()
    );
    let r = restore_to(&cfg, "nosuch", &t.path().join("y"));
    assert_ne!(
        r.code(),
        Some(0),
        "restore of an unknown source succeeded:\n{}",
        r.describe()
    );
    assert!(
        r.all_text().contains("nosuch"),
        "message does not name the source:\n{}",
        r.describe()
    );
}

/// Two folder sources backed up to two local destinations (`run` is the same as no
/// subcommand); returns the job file and the run's timestamp.
fn two_sources_two_disks(t: &Path) -> (PathBuf, String) {
    let a = t.join("src/a");
    let b = t.join("src/b");
    fs::create_dir_all(&a).expect("mkdir");
    fs::create_dir_all(&b).expect("mkdir");
    fs::write(a.join("f"), b"a").expect("write");
    fs::write(b.join("f"), b"b").expect("write");
    let mut job = Job::new(t);
    job.source(folder_source("alpha", &a))
        .source(folder_source("beta", &b))
        .destination(local_destination("disk1", &t.join("d1")))
        .destination(local_destination("disk2", &t.join("d2")));
    let cfg = job.write();
    backup(["run".as_ref(), cfg.as_os_str()]).assert_code(0);
    for d in ["d1", "d2"] {
        for id in ["alpha", "beta"] {
            only_object(&t.join(d), id);
        }
    }
    let stamp = only_object(&t.join("d1"), "alpha")
        .parent()
        .and_then(Path::file_name)
        .expect("stamp dir")
        .to_string_lossy()
        .into_owned();
    (cfg, stamp)
}

/// The table row (whitespace-split cells) of `source` in `list` output.
fn list_row(out: &str, source: &str) -> Vec<String> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(source))
        .unwrap_or_else(|| panic!("no row for {source}:\n{out}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `list` shows one row per copy with a column per destination (size when present, and
/// no `MISSING` when every destination has every copy); `--long` one row per copy per
/// destination with its object name.
#[test]
fn list_shows_copies_side_by_side_per_destination() {
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, stamp) = two_sources_two_disks(t.path());
    let r = list(&cfg);
    r.assert_code(0);
    let text = r.stdout_text();
    let header: Vec<&str> = text
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["SOURCE", "TIMESTAMP", "AGE", "disk1", "disk2"],
        "{}",
        r.describe()
    );
    for source in ["alpha", "beta"] {
        let row = list_row(&text, source);
        assert_eq!(row[1], stamp, "{}", r.describe());
        // Two sizes ("1.2 KB", "812.0 bytes"), no marker.
        assert_eq!(
            row.iter()
                .filter(|c| ["bytes", "KB"].contains(&c.as_str()))
                .count(),
            2,
            "{}",
            r.describe()
        );
    }
    assert!(
        !text.contains("MISSING") && !text.contains("missing:"),
        "{}",
        r.describe()
    );
    backup(["list".as_ref(), "--check".as_ref(), cfg.as_os_str()]).assert_code(0);

    let l = backup(["list".as_ref(), "--long".as_ref(), cfg.as_os_str()]);
    l.assert_code(0);
    for d in ["disk1", "disk2"] {
        for id in ["alpha", "beta"] {
            let object = format!("{id}/{stamp}/{id}.tar.zst.gpg");
            assert!(
                l.stdout_text()
                    .lines()
                    .any(|line| line.contains(d) && line.contains(&object)),
                "--long lacks {object} on {d}:\n{}",
                l.describe()
            );
        }
    }
}

/// A copy deleted by hand from one destination shows as `MISSING` in that destination's
/// column, with a `missing:` line naming it; `--check` turns that into exit code 3.
#[test]
fn list_marks_a_copy_missing_on_one_destination() {
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, stamp) = two_sources_two_disks(t.path());
    let gone = only_object(&t.path().join("d2"), "beta");
    fs::remove_dir_all(gone.parent().expect("stamp dir")).expect("delete the copy");
    let r = list(&cfg);
    r.assert_code(0);
    let text = r.stdout_text();
    let beta = list_row(&text, "beta");
    assert_eq!(
        beta.last().map(String::as_str),
        Some("MISSING"),
        "{}",
        r.describe()
    );
    assert!(
        !list_row(&text, "alpha").contains(&"MISSING".to_owned()),
        "{}",
        r.describe()
    );
    let missing: Vec<&str> = text.lines().filter(|l| l.starts_with("missing:")).collect();
    assert_eq!(
        missing,
        [format!("missing: beta {stamp} on disk2")],
        "{}",
        r.describe()
    );
    let c = backup(["list".as_ref(), "--check".as_ref(), cfg.as_os_str()]);
    c.assert_code(3);
    assert_eq!(c.stdout_text(), text, "--check prints the same table");
}

/// Excludes (tar glob patterns) leave matching members out.
#[test]
fn excludes_leave_members_out() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/site");
    fs::create_dir_all(src.join("cache")).expect("mkdir");
    fs::create_dir_all(src.join("keep")).expect("mkdir");
    fs::write(src.join("cache/junk"), b"junk").expect("write");
    fs::write(src.join("keep/a.log"), b"log").expect("write");
    fs::write(src.join("keep/a.txt"), b"txt").expect("write");
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    let mut s = folder_source("files", &src);
    s["excludes"] = json!(["*.log", "./site/cache"]);
    job.source(s).destination(local_destination("disk", &dest));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let target = t.path().join("restore");
    restore_to(&cfg, "files", &target).assert_code(0);
    let got = restored_root(&target, "site");
    assert!(got.join("keep/a.txt").is_file());
    assert!(!got.join("keep/a.log").exists(), "*.log was not excluded");
    assert!(!got.join("cache").exists(), "./site/cache was not excluded");
}

/// Keep the permissions helper honest: restore must not widen a 0700 target's contents.
#[test]
fn restore_into_existing_empty_directory() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src/d");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("f"), b"x").expect("write");
    fs::set_permissions(src.join("f"), fs::Permissions::from_mode(0o640)).expect("chmod");
    let (job, _dest) = folder_job(t.path(), &src);
    let cfg = job.write();
    run_job(&cfg).assert_code(0);
    let target = t.path().join("existing");
    fs::create_dir_all(&target).expect("mkdir");
    restore_to(&cfg, "files", &target).assert_code(0);
    assert_same_tree(&src, &restored_root(&target, "d"), false);
}

/// A hostile archive (a `../` member; a symlink to a directory outside followed by a member
/// through it) placed in the destination must not write outside the restore target.
#[test]
fn restore_refuses_members_escaping_the_target() {
    if !require_tools(
        "restore_refuses_members_escaping_the_target",
        &["tar", "gzip"],
    ) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let work = t.path().join("craft");
    let outside = t.path().join("outside");
    fs::create_dir_all(work.join("tree")).expect("mkdir");
    fs::create_dir_all(&outside).expect("mkdir");
    fs::write(work.join("f"), b"pwned\n").expect("write");
    std::os::unix::fs::symlink(&outside, work.join("tree/ln")).expect("symlink");
    let dest = t.path().join("dest");
    for id in ["dotdot", "viasymlink"] {
        fs::create_dir_all(dest.join(id).join("20240101000000")).expect("mkdir");
    }
    sh(&format!(
        "cd '{w}' && tar -c -P --transform='s,^f,../escaped,' -f - f | gzip > '{d}/dotdot/20240101000000/dotdot.tar.gz' \
         && tar -c -f evil.tar tree/ln && tar -r -P --transform='s,^f,tree/ln/pwned,' -f evil.tar f \
         && gzip -c evil.tar > '{d}/viasymlink/20240101000000/viasymlink.tar.gz'",
        w = work.display(),
        d = dest.display()
    ));
    let mut job = Job::new(t.path());
    for id in ["dotdot", "viasymlink"] {
        job.source(json!({"id": id, "name": id, "type": "folder", "path": work, "compress_only": 1, "layout": "original"}));
    }
    job.destination(local_destination("disk", &dest));
    let cfg = job.write();
    for id in ["dotdot", "viasymlink"] {
        let target = t.path().join(format!("restore-{id}/inner"));
        let r = restore_to(&cfg, id, &target);
        assert!(
            !t.path().join(format!("restore-{id}/escaped")).exists(),
            "{id}: `../escaped` was written outside the target\n{}",
            r.describe()
        );
        assert!(
            !outside.join("pwned").exists(),
            "{id}: a member was written through a symlink to {}\n{}",
            outside.display(),
            r.describe()
        );
        assert_ne!(
            r.code(),
            Some(0),
            "{id}: restore of a hostile archive reported success\n{}",
            r.describe()
        );
        assert!(
            r.stderr_text().contains("unsafe") || r.stderr_text().contains("outside"),
            "{id}: the error does not say the archive is unsafe\n{}",
            r.describe()
        );
    }
}

/// `path` may be a single file (member `./<name>`) or end in `/` (the original then archives
/// `./`, the folder's contents): both restore to what was backed up.
#[test]
fn single_file_and_trailing_slash_sources() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("src/folder");
    fs::create_dir_all(dir.join("sub")).expect("mkdir");
    fs::write(dir.join("sub/inner.txt"), b"inner").expect("write");
    let single = t.path().join("src/single file.conf");
    fs::write(&single, b"just one file\n").expect("write");
    let dest = t.path().join("dest");
    let mut job = Job::new(t.path());
    job.source(folder_source("single", &single))
        .source(json!({"id": "slash", "name": "slash", "type": "folder",
                       "path": format!("{}/", dir.display()), "passphrase": PASSPHRASE}))
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);

    let target = t.path().join("restore-single");
    restore_to(&cfg, "single", &target).assert_code(0);
    assert_eq!(
        fs::read(target.join("single file.conf")).expect("restored single file"),
        b"just one file\n"
    );

    let target = t.path().join("restore-slash");
    restore_to(&cfg, "slash", &target).assert_code(0);
    assert_eq!(
        fs::read(target.join("sub/inner.txt")).expect("restored contents of folder/"),
        b"inner"
    );
}
