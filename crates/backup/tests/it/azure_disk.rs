//! `azure-managed-disk` with the real binary against a fake of Entra ID, Resource Manager and
//! the blob endpoint (`common/azure_fake.py`; there is no local Azure). The binary reaches the
//! fake as it reaches Azure, through `HTTPS_PROXY` with a test CA as its only trusted root, so
//! the default public endpoints are the ones exercised (and the sovereign-cloud keys in one
//! test). The fake checks every request (bearer token it issued for that ARM host,
//! api-version, subscription, the snapshot's body and tags, the grant's body) and the tests
//! assert it saw no bad request, the calls made, and what is left in the resource group.

use crate::common;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
const CLIENT_SECRET: &str = "Zx8Q~fake.client-SECRET_value~42";
const SUBSCRIPTION: &str = "00000000-1111-2222-3333-444444444444";
const DISK_RG: &str = "prod-rg";
const DISK: &str = "web01_OsDisk_1";
const SNAP_RG: &str = "backup-rg";
const BLOB_HOST: &str = "md-fake0001.blob.core.windows.net";
/// The hosts the fake's certificate is valid for: public Azure and US Government.
const HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "management.azure.com",
    "management.usgovcloudapi.net",
    BLOB_HOST,
];

/// The running fake, killed when dropped.
struct Fake {
    child: Child,
    port: u16,
    certs: tempfile::TempDir,
    disk: Vec<u8>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A disk image: mostly zeros with random stretches (as a real disk), not a multiple of
/// any range size.
fn disk_image() -> Vec<u8> {
    let mut d = vec![0u8; (12 << 20) + 4099];
    for (i, at) in [0usize, 3 << 20, 7 << 20, (12 << 20) - 100]
        .iter()
        .enumerate()
    {
        let chunk = pseudo_random(200_000.min(d.len() - at), i as u64 + 7);
        d[*at..at + chunk.len()].copy_from_slice(&chunk);
    }
    d
}

impl Fake {
    fn start() -> Fake {
        let certs = tempfile::tempdir().expect("tempdir");
        let (_, cert, key) = saas::pki(certs.path(), HOSTS);
        std::fs::create_dir(certs.path().join("no-dir")).expect("mkdir");
        let disk = disk_image();
        let disk_file = certs.path().join("disk.img");
        std::fs::write(&disk_file, &disk).expect("write disk");
        let mut args: Vec<OsString> = vec![cert.into(), key.into()];
        args.extend(
            [
                "--tenant",
                TENANT,
                "--subscription",
                SUBSCRIPTION,
                "--snapshots",
                SNAP_RG,
                "--client",
                &format!("{CLIENT_ID}:{CLIENT_SECRET}"),
                "--disk",
                &format!("{DISK_RG}/{DISK}:{}", disk_file.display()),
            ]
            .map(OsString::from),
        );
        let (child, port) = saas::start_fake("azure_fake.py", &args, "/_control/state");
        Fake {
            child,
            port,
            certs,
            disk,
        }
    }

    fn ctl(&self, method: &str, path: &str, body: &Value) -> Value {
        let (status, v) = saas::control(self.port, method, path, body.to_string().as_bytes())
            .unwrap_or_else(|| panic!("control {path} failed"));
        assert_eq!(status, 200, "control {path}: {v}");
        v
    }

    fn state(&self) -> Value {
        self.ctl("GET", "/_control/state", &Value::Null)
    }

    fn requests(&self) -> Vec<Value> {
        match self.ctl("GET", "/_control/requests", &Value::Null) {
            Value::Array(a) => a,
            v => panic!("requests: {v}"),
        }
    }

    fn fault(&self, f: Value) {
        self.ctl("POST", "/_control/fault", &f);
    }

    /// A snapshot in the destination group, as an earlier run (or someone else) made it.
    fn seed(&self, name: &str, tags: Value, disk_state: &str) {
        self.seed_as(name, tags, disk_state, "Succeeded");
    }

    /// [`Fake::seed`] in provisioning state `state`.
    fn seed_as(&self, name: &str, tags: Value, disk_state: &str, state: &str) {
        self.ctl(
            "POST",
            "/_control/snapshot",
            &json!({"name": name, "tags": tags, "diskState": disk_state, "state": state}),
        );
    }

    /// The proxy, the test CA as the only root, and the credentials under `names`
    /// (tenant, client id, secret variables) with `secret`.
    fn env(&self, names: [&'static str; 3], secret: &str) -> Vec<(&'static str, OsString)> {
        let mut env = saas::proxy_env(self.port, self.certs.path());
        env.extend([
            (names[0], TENANT.into()),
            (names[1], CLIENT_ID.into()),
            (names[2], secret.into()),
        ]);
        env
    }

    /// `backup -d ARGS` with the original's variable names and the right secret.
    fn backup(&self, args: &[&OsStr]) -> Run {
        self.backup_env(args, &self.env(ORIGINAL_NAMES, CLIENT_SECRET))
    }

    fn backup_env(&self, args: &[&OsStr], env: &[(&'static str, OsString)]) -> Run {
        let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        let mut all: Vec<&OsStr> = vec!["-d".as_ref()];
        all.extend_from_slice(args);
        backup_with(all, &env, None)
    }

    /// Asserts the fake rejected nothing: every request was well-formed and authorised.
    #[track_caller]
    fn assert_no_bad_requests(&self) {
        let errors = &self.state()["errors"];
        assert_eq!(errors, &json!([]), "the fake rejected requests");
    }

    /// `(method, path suffix)` of the ARM calls on snapshots, in order.
    fn snapshot_calls(&self) -> Vec<(String, String)> {
        self.requests()
            .iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("/snapshots/"))
            })
            .map(|r| {
                let p = r["path"].as_str().unwrap_or_default();
                let tail = p.rsplit("/snapshots/").next().unwrap_or_default();
                (
                    r["method"].as_str().unwrap_or_default().to_owned(),
                    tail.to_owned(),
                )
            })
            .collect()
    }
}

const ORIGINAL_NAMES: [&str; 3] = ["TENANT_ID", "CLIENT_ID", "CLIENT_KEY"];
const SDK_NAMES: [&str; 3] = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"];

/// The original's keys for this disk, plus `extra`.
fn source(extra: Value) -> Value {
    let mut s = json!({
        "id": "vmdisk", "name": "web01 OS disk", "type": "azure-managed-disk",
        "subscription_id": SUBSCRIPTION, "source_resource_group": DISK_RG,
        "destination_resource_group": SNAP_RG, "disk_name": DISK, "retain_snapshots": 3,
        "passphrase": PASSPHRASE,
    });
    if let (Value::Object(s), Value::Object(e)) = (&mut s, extra) {
        s.extend(e);
    }
    s
}

fn job(dir: &Path, extra: Value) -> (PathBuf, PathBuf) {
    let dest = dir.join("dest");
    let mut job = Job::new(dir);
    job.source(source(extra))
        .destination(local_destination("disk", &dest));
    (job.write(), dest)
}

/// The snapshot this run made (named `{disk}-{14 digits}`, not seeded).
fn new_snapshot(state: &Value, seeded: &[&str]) -> String {
    let names: Vec<String> = state["snapshots"]
        .as_object()
        .expect("snapshots")
        .keys()
        .filter(|n| {
            n.strip_prefix(&format!("{DISK}-"))
                .is_some_and(|ts| ts.len() == 14 && ts.bytes().all(|b| b.is_ascii_digit()))
                && !seeded.contains(&n.as_str())
        })
        .cloned()
        .collect();
    assert_eq!(names.len(), 1, "not one new snapshot: {names:?}");
    names[0].clone()
}

/// Asserts no output line carries a credential: the client secret, a bearer token, a SAS.
#[track_caller]
fn assert_no_secrets(run: &Run) {
    let text = run.all_text();
    for secret in [CLIENT_SECRET, "fake-arm-token", "sig="] {
        assert!(
            !text.contains(secret),
            "{secret:?} reached the output\n{}",
            run.describe()
        );
    }
}

fn tags(ts: &str) -> Value {
    json!({"source_resource_group": DISK_RG, "source_disk_name": DISK, "timestamp": ts,
           "created_by": "backups"})
}

/// The whole sequence: the disk streams byte-identical (through a dropped connection,
/// resumed where it broke), access to the new snapshot is revoked, an open grant a killed run
/// left is revoked, and retention deletes only this disk's tagged snapshots beyond
/// `retain_snapshots` (the new one counted and never deleted; a failed one not counted and
/// deleted), across listing pages.
#[test]
fn disk_round_trips_and_prunes_only_tagged_older_snapshots() {
    let fake = Fake::start();
    let old = [
        "web01_OsDisk_1-20200101000000",
        "web01_OsDisk_1-20210101000000",
        "web01_OsDisk_1-20220101000000",
        "web01_OsDisk_1-20230101000000",
    ];
    fake.seed(old[0], tags("1577836800.0"), "Unattached");
    fake.seed(old[1], tags("1609459200.0"), "Unattached");
    fake.seed(old[2], tags("1640995200.0"), "Unattached");
    // What a kill -9 during the download of an earlier run leaves: an open grant.
    fake.seed(old[3], tags("1672531200.0"), "ActiveSAS");
    // An earlier run whose snapshot creation failed: newest, but it holds nothing.
    let failed = "web01_OsDisk_1-20240101000000";
    fake.seed_as(failed, tags("1704067200.0"), "Unattached", "Failed");
    // Not ours: no tags, another disk, no timestamp. All older than everything above.
    fake.seed("web01-manual-copy", Value::Null, "Unattached");
    let mut other = tags("1000000000.0");
    other["source_disk_name"] = json!("db01_OsDisk_1");
    fake.seed("db01_OsDisk_1-20190101000000", other, "Unattached");
    let mut no_ts = tags("");
    no_ts.as_object_mut().expect("tags").remove("timestamp");
    fake.seed("web01_OsDisk_1-untimed", no_ts, "Unattached");
    // The download's connection dies 1000 bytes into the data at 3 MiB: the rest is asked
    // for from there.
    let drop_at = (3 << 20) + 1000;
    fake.fault(json!({"kind": "blobdrop", "at": drop_at, "times": 1}));

    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = job(t.path(), json!({}));
    let run = fake.backup(&[cfg.as_os_str()]);
    run.assert_code(0);
    assert_no_secrets(&run);
    fake.assert_no_bad_requests();

    let state = fake.state();
    let new = new_snapshot(&state, &[old[0], old[1], old[2], old[3], failed]);
    let mut left: Vec<&str> = state["snapshots"]
        .as_object()
        .expect("snapshots")
        .keys()
        .map(String::as_str)
        .collect();
    left.sort_unstable();
    let mut want = vec![
        "db01_OsDisk_1-20190101000000",
        old[2],
        old[3],
        new.as_str(),
        "web01-manual-copy",
        "web01_OsDisk_1-untimed",
    ];
    want.sort_unstable();
    assert_eq!(left, want, "retention kept the wrong snapshots");
    for (name, s) in state["snapshots"].as_object().expect("snapshots") {
        assert_eq!(
            s["sas"],
            json!(false),
            "read access to {name} is still open"
        );
    }
    assert_eq!(state["snapshots"][&new]["tags"]["created_by"], "backups");

    let calls = fake.snapshot_calls();
    let grants: Vec<&str> = calls
        .iter()
        .filter(|(_, p)| p.ends_with("/beginGetAccess"))
        .map(|(_, p)| p.as_str())
        .collect();
    assert_eq!(grants, [format!("{new}/beginGetAccess")]);
    let mut deleted: Vec<&str> = calls
        .iter()
        .filter(|(m, _)| m == "DELETE")
        .map(|(_, p)| p.as_str())
        .collect();
    deleted.sort_unstable();
    assert_eq!(deleted, [old[0], old[1], failed]);
    // The new snapshot's access is revoked after the read (the last snapshot call).
    assert_eq!(
        calls.last().map(|(m, p)| (m.as_str(), p.as_str())),
        Some(("POST", format!("{new}/endGetAccess").as_str()))
    );
    // Only the written pages were downloaded (the page list followed across its parts),
    // and the range that broke was resumed at the byte reached.
    let blob: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r["host"] == BLOB_HOST)
        .collect();
    assert!(
        blob.iter()
            .any(|r| r["query"]["comp"] == "pagelist" && r["query"]["marker"].is_string()),
        "the page list's NextMarker was not followed"
    );
    let ranges: Vec<(u64, u64)> = blob
        .iter()
        .filter(|r| r["method"] == "GET" && r["query"]["comp"].is_null())
        .filter_map(|r| {
            let (a, b) = r["headers"]["range"]
                .as_str()?
                .strip_prefix("bytes=")?
                .split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    let asked: u64 = ranges.iter().map(|(a, b)| b - a + 1).sum();
    assert!(
        asked < fake.disk.len() as u64 / 10,
        "{asked} bytes asked for of a {}-byte image mostly zeros: {ranges:?}",
        fake.disk.len()
    );
    assert!(ranges.iter().any(|r| r.0 == 3 << 20), "{ranges:?}");
    assert!(
        ranges.iter().any(|r| r.0 == drop_at),
        "not resumed: {ranges:?}"
    );

    let object = only_object(&dest, "vmdisk");
    assert!(object.to_string_lossy().ends_with("vmdisk.disk.zst.gpg"));
    let target = t.path().join("restored");
    restore_to(&cfg, "vmdisk", &target).assert_code(0);
    let restored = std::fs::read(target.join("vmdisk.disk")).expect("restored image");
    assert!(
        restored == fake.disk,
        "restored image differs ({} vs {} bytes)",
        restored.len(),
        fake.disk.len()
    );
}

/// A download that keeps failing (the connection dies, then the blob service answers 503)
/// fails the source naming the status and the snapshot, stores nothing, and still revokes
/// the read access.
#[test]
fn a_503_mid_download_commits_nothing_and_revokes_access() {
    let fake = Fake::start();
    let drop_at = (3 << 20) + 100_000;
    fake.fault(json!({"kind": "blobdrop", "at": drop_at, "times": 1}));
    fake.fault(json!({"kind": "blob503", "from": drop_at, "times": 100}));
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = job(t.path(), json!({}));
    let run = fake.backup(&[cfg.as_os_str()]);
    run.assert_code(1);
    assert_no_secrets(&run);
    let text = run.all_text();
    let new = new_snapshot(&fake.state(), &[]);
    assert!(
        text.contains("503") && text.contains("ServerBusy") && text.contains(&new),
        "{}",
        run.describe()
    );
    assert!(
        text.contains(&format!("at byte {drop_at}")),
        "{}",
        run.describe()
    );
    assert!(
        objects(&dest, "vmdisk").is_empty(),
        "{:?}",
        files_under(&dest)
    );
    assert_eq!(files_under(&dest), Vec::<String>::new());
    assert_eq!(fake.state()["snapshots"][&new]["sas"], json!(false));
    fake.assert_no_bad_requests();
}

/// A snapshot whose creation ends `Failed` fails the source with Azure's code and message;
/// no access is ever granted and nothing is stored.
#[test]
fn a_failed_snapshot_operation_fails_the_source_clearly() {
    let fake = Fake::start();
    fake.fault(json!({"kind": "createfail"}));
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = job(t.path(), json!({}));
    let run = fake.backup(&[cfg.as_os_str()]);
    run.assert_code(1);
    let text = run.all_text();
    assert!(
        text.contains("creating snapshot web01_OsDisk_1-")
            && text.contains("Failed")
            && text.contains("InternalDiskManagementError"),
        "{}",
        run.describe()
    );
    assert!(
        !fake
            .snapshot_calls()
            .iter()
            .any(|(_, p)| p.ends_with("GetAccess")),
        "access was asked for after the snapshot failed"
    );
    assert!(objects(&dest, "vmdisk").is_empty());
    fake.assert_no_bad_requests();
}

/// A grant whose operation fails: the source fails and the (possibly half-made) grant is
/// revoked all the same.
#[test]
fn a_failed_grant_is_revoked_and_fails_the_source() {
    let fake = Fake::start();
    fake.fault(json!({"kind": "grantfail"}));
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = job(t.path(), json!({}));
    let run = fake.backup(&[cfg.as_os_str()]);
    run.assert_code(1);
    assert!(
        run.all_text().contains("InternalExecutionError"),
        "{}",
        run.describe()
    );
    let new = new_snapshot(&fake.state(), &[]);
    let calls = fake.snapshot_calls();
    assert_eq!(
        calls.last().map(|(m, p)| (m.as_str(), p.as_str())),
        Some(("POST", format!("{new}/endGetAccess").as_str()))
    );
    assert!(objects(&dest, "vmdisk").is_empty());
}

/// The Azure SDKs' variable names and a sovereign cloud's endpoints (US Government): every
/// request goes to those hosts, and the token is scoped to that ARM. Without
/// `retain_snapshots` (optional in the original's docs) no snapshot is deleted.
#[test]
fn sovereign_cloud_endpoints_and_azure_variable_names() {
    let fake = Fake::start();
    let old = "web01_OsDisk_1-20200101000000";
    fake.seed(old, tags("1577836800.0"), "Unattached");
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = job(
        t.path(),
        json!({"authority_host": "https://login.microsoftonline.us",
               "arm_endpoint": "https://management.usgovcloudapi.net",
               "retain_snapshots": null}),
    );
    let run = fake.backup_env(&[cfg.as_os_str()], &fake.env(SDK_NAMES, CLIENT_SECRET));
    run.assert_code(0);
    fake.assert_no_bad_requests();
    let hosts: std::collections::BTreeSet<String> = fake
        .requests()
        .iter()
        .map(|r| r["host"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        hosts.into_iter().collect::<Vec<_>>(),
        [
            "login.microsoftonline.us",
            "management.usgovcloudapi.net",
            BLOB_HOST
        ]
    );
    assert_eq!(objects(&dest, "vmdisk").len(), 1);
    assert_eq!(
        fake.state()["snapshots"].as_object().map(|s| s.len()),
        Some(2)
    );
    assert!(!fake.snapshot_calls().iter().any(|(m, _)| m == "DELETE"));
}

/// A wrong client secret fails with Entra ID's reason, never showing the secret; a missing
/// variable names both spellings.
#[test]
fn credential_errors_are_clear_and_show_no_secret() {
    let fake = Fake::start();
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, _) = job(t.path(), json!({}));
    let wrong = "Wr0ng~secret.VALUE";
    let run = fake.backup_env(&[cfg.as_os_str()], &fake.env(ORIGINAL_NAMES, wrong));
    run.assert_code(1);
    let text = run.all_text();
    assert!(
        text.contains("getting an access token")
            && text.contains("invalid_client")
            && text.contains("AADSTS7000215"),
        "{}",
        run.describe()
    );
    assert!(!text.contains(wrong), "the secret reached the output");

    let mut env = fake.env(ORIGINAL_NAMES, CLIENT_SECRET);
    env.retain(|(k, _)| *k != "CLIENT_KEY");
    env.push(("AZURE_CLIENT_SECRET", OsString::new()));
    let run = fake.backup_env(&[cfg.as_os_str()], &env);
    run.assert_code(1);
    assert!(
        run.all_text()
            .contains("CLIENT_KEY or AZURE_CLIENT_SECRET is not set"),
        "{}",
        run.describe()
    );
}

/// SIGTERM while the disk downloads: the run stops (143), stores nothing, and the read
/// access to the new snapshot is revoked before the process exits.
#[test]
fn sigterm_during_the_download_revokes_access() {
    let fake = Fake::start();
    fake.fault(json!({"kind": "blobstall", "times": 1}));
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = job(t.path(), json!({}));
    let mut cmd = Command::new(bin());
    cmd.arg(&cfg)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in fake.env(ORIGINAL_NAMES, CLIENT_SECRET) {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn backup");
    wait_until(Duration::from_secs(60), "the download to start", || {
        fake.requests().iter().any(|r| r["host"] == BLOB_HOST)
    });
    let new = new_snapshot(&fake.state(), &[]);
    assert_eq!(fake.state()["snapshots"][&new]["sas"], json!(true));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    let run = Run::from(wait_with_deadline(
        child,
        Duration::from_secs(60),
        "interrupted backup",
    ));
    run.assert_code(143);
    assert_eq!(
        fake.state()["snapshots"][&new]["sas"],
        json!(false),
        "read access still open after SIGTERM\n{}",
        run.describe()
    );
    assert_eq!(files_under(&dest), Vec::<String>::new());
}

/// Tokens that expire during the run (here after 2 s; in real runs, a download of hours
/// before the revoke) are renewed before they lapse: the fake refuses expired ones.
#[test]
fn tokens_are_renewed_before_they_expire() {
    let fake = Fake::start();
    fake.ctl("POST", "/_control/lifetime", &json!({"seconds": 2}));
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, dest) = job(t.path(), json!({}));
    let run = fake.backup(&[cfg.as_os_str()]);
    run.assert_code(0);
    fake.assert_no_bad_requests();
    let reqs = fake.requests();
    let tokens = reqs
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/token")))
        .count();
    let arm = reqs
        .iter()
        .filter(|r| r["host"] == "management.azure.com")
        .count();
    assert!(
        tokens > 1 && tokens == arm,
        "{tokens} tokens for {arm} ARM calls"
    );
    assert_eq!(objects(&dest, "vmdisk").len(), 1);
}

/// `--dry-run` proves credentials, endpoint and names by reading the disk, and makes
/// nothing: no snapshot, no grant.
#[test]
fn dry_run_reads_the_disk_and_makes_nothing() {
    let fake = Fake::start();
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, _) = job(t.path(), json!({}));
    fake.backup(&["--dry-run".as_ref(), cfg.as_os_str()])
        .assert_code(0);
    let calls: Vec<(String, String)> = fake
        .requests()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or_default().to_owned(),
                r["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].1.ends_with("/oauth2/v2.0/token"), "{calls:?}");
    assert!(calls[1].1.ends_with(&format!("/disks/{DISK}")), "{calls:?}");
    assert_eq!(fake.state()["snapshots"], json!({}));
}

/// A blob service that refuses to list page ranges: every byte is read, and the image is
/// the same.
#[test]
fn without_a_page_list_every_byte_is_read() {
    let fake = Fake::start();
    fake.fault(json!({"kind": "nopagelist"}));
    let t = tempfile::tempdir().expect("tempdir");
    let (cfg, _) = job(t.path(), json!({}));
    fake.backup(&[cfg.as_os_str()]).assert_code(0);
    let asked: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r["host"] == BLOB_HOST && r["method"] == "GET" && r["query"]["comp"].is_null())
        .map(|r| r["headers"]["range"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(asked, [format!("bytes=0-{}", fake.disk.len() - 1)]);
    let target = t.path().join("restored");
    restore_to(&cfg, "vmdisk", &target).assert_code(0);
    let restored = std::fs::read(target.join("vmdisk.disk")).expect("restored image");
    assert!(restored == fake.disk, "restored image differs");
}
