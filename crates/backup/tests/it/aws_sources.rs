//! `rds`, `rds-pgsql` and `snapshot` with the real binary against moto's RDS and EC2
//! (scripts/moto-aws-test-server.py: a restored instance's address is 127.0.0.1, its port is
//! the source instance's, it reports `creating` for its first polls) and the real local
//! MariaDB and PostgreSQL, so the dump of the "restored instance" is real: round trips into
//! fresh databases, the temporary instance deleted after a failed dump, after SIGTERM, and
//! (by the next run) after `kill -9`; SigV4 and IAM checked by moto: a wrong secret and a
//! missing permission fail clearly, the README's minimal policy passes; EBS snapshots tagged,
//! kept per `retain_snapshots`, other snapshots untouched, no object at the destination.
//!
//! Fixtures and inspection go through boto3 (tests/it/aws_fixture.py), never through the
//! code under test.

use crate::common;
use crate::databases::{
    drop_mysql, drop_pg, mysql_fingerprint, mysql_seed, pg_fingerprint, pg_seed, pipe_into,
    restore_stdout,
};

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::moto::Moto;
use common::*;
use serde_json::{json, Value};

/// A moto server with the patched RDS model; `polls` is the file that says for how many
/// polls a restored instance reports `creating` (changed between runs by some tests).
struct Aws {
    moto: Moto,
    polls: tempfile::NamedTempFile,
}

impl Aws {
    fn start(test: &str, creating_polls: u32) -> Option<Aws> {
        let polls = tempfile::NamedTempFile::new().expect("polls file");
        std::fs::write(polls.path(), creating_polls.to_string()).expect("write polls");
        let mut cmd = Command::new("python3");
        cmd.arg(repo_root().join("scripts/moto-aws-test-server.py"))
            .env("MOTO_RDS_CREATING_POLLS", polls.path());
        let moto = common::moto::start(test, cmd)?;
        Some(Aws { moto, polls })
    }

    fn set_creating_polls(&self, n: u32) {
        std::fs::write(self.polls.path(), n.to_string()).expect("write polls");
    }

    /// Runs the fixture helper with the given credentials; its JSON answer.
    fn fixture_as(&self, key: (&str, &str), args: &[&str]) -> Value {
        let out = run_ok(
            Command::new("python3")
                .arg(repo_root().join("crates/backup/tests/it/aws_fixture.py"))
                .arg(self.moto.url())
                .args(args)
                .env("AWS_ACCESS_KEY_ID", key.0)
                .env("AWS_SECRET_ACCESS_KEY", key.1)
                .env_remove("AWS_ENDPOINT_URL")
                .stdin(Stdio::null()),
        );
        serde_json::from_slice(&out.stdout).expect("fixture JSON")
    }

    fn fixture(&self, args: &[&str]) -> Value {
        self.fixture_as(("testing", "testing"), args)
    }

    /// Identifiers of the DB instances.
    fn instances(&self) -> Vec<String> {
        ids(&self.fixture(&["instances"]))
    }
}

fn ids(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect();
    v.sort();
    v
}

fn setup(test: &str, creating_polls: u32) -> Option<(Services, Aws)> {
    let s = services(test)?;
    if !require_tools(test, &["mysql", "mysqldump", "psql", "pg_dump", "python3"]) {
        return None;
    }
    let aws = Aws::start(test, creating_polls)?;
    Some((s, aws))
}

/// An `rds` (or `rds-pgsql`) source entry of the original's keys for `instance`, reaching
/// moto at `url` with static credentials.
fn rds_source(s: &Services, kind: &str, instance: &str, db: &str, url: &str) -> Value {
    json!({"id": "orders", "name": "Orders DB", "type": kind, "instancename": instance,
           "region": "eu-west-1", "security_group": "sg-12345678", "dbhost": "ignored.invalid",
           "dbuser": s.user, "dbpass": s.pass, "dbname": db, "passphrase": PASSPHRASE,
           "credentials": {"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "s3cr3t-aws"},
           "endpoint_url": url, "poll_interval": 0.2, "wait_timeout": 60})
}

fn job_with(t: &Path, source: Value) -> std::path::PathBuf {
    let mut job = Job::new(t);
    job.source(source)
        .destination(local_destination("disk", &t.join("dest")));
    job.write()
}

#[test]
fn rds_restores_the_newest_snapshot_dumps_it_and_deletes_the_instance() {
    let Some((s, aws)) = setup(
        "rds_restores_the_newest_snapshot_dumps_it_and_deletes_the_instance",
        3,
    ) else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let db = unique_db("rds");
    mysql_seed(&s, &db);
    let want = mysql_fingerprint(&s, &db);
    // The "RDS instance" is the local MariaDB: a restore gets its port.
    aws.fixture(&[
        "rds-source",
        "mysql",
        "orders-primary",
        &s.mysql_port.to_string(),
    ]);
    let cfg = job_with(
        t.path(),
        rds_source(&s, "rds", "orders-primary", &db, &aws.moto.url()),
    );
    // A dry run finds the snapshot and creates nothing.
    backup(["--dry-run".as_ref(), cfg.as_os_str()]).assert_code(0);
    assert_eq!(aws.instances(), ["orders-primary"]);
    let r = backup(["-v".as_ref(), cfg.as_os_str()]);
    r.assert_code(0);
    let log = r.all_text();
    // It waited through `creating` (moto says so for the first polls) before dumping.
    assert!(log.contains("status=creating"), "{log}");
    assert!(log.contains("status=available"), "{log}");
    assert!(log.contains("tmp-orders-primary-"), "{log}");
    assert!(
        !log.contains("s3cr3t-aws") && !log.contains(&s.pass),
        "{log}"
    );
    assert_eq!(
        aws.instances(),
        ["orders-primary"],
        "the temporary instance was deleted"
    );

    let dump = restore_stdout(&cfg, "orders");
    drop_mysql(&s, &db);
    pipe_into(s.mysql(""), &dump);
    assert_eq!(mysql_fingerprint(&s, &db), want, "restored rows differ");
    drop_mysql(&s, &db);
}

#[test]
fn rds_pgsql_round_trips_through_the_restored_endpoints_port() {
    let Some((s, aws)) = setup(
        "rds_pgsql_round_trips_through_the_restored_endpoints_port",
        2,
    ) else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let db = unique_db("rdspg");
    let fresh = unique_db("rdspgfresh");
    pg_seed(&s, &db);
    // Not 5432: the dump must use the restored endpoint's port (the original assumed 5432).
    assert_ne!(s.pgsql_port, 5432);
    aws.fixture(&[
        "rds-source",
        "postgres",
        "pgmain",
        &s.pgsql_port.to_string(),
    ]);
    let cfg = job_with(
        t.path(),
        rds_source(&s, "rds-pgsql", "pgmain", &db, &aws.moto.url()),
    );
    run_job(&cfg).assert_code(0);
    assert_eq!(aws.instances(), ["pgmain"]);

    let dump = restore_stdout(&cfg, "orders");
    s.psql_sql("postgres", &format!("CREATE DATABASE {fresh}"));
    pipe_into(s.psql(&fresh), &dump);
    assert_eq!(pg_fingerprint(&s, &fresh), pg_fingerprint(&s, &db));
    drop_pg(&s, &db);
    drop_pg(&s, &fresh);
}

#[test]
fn a_failed_dump_still_deletes_the_temporary_instance() {
    let Some((s, aws)) = setup("a_failed_dump_still_deletes_the_temporary_instance", 1) else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    aws.fixture(&["rds-source", "mysql", "orders", &s.mysql_port.to_string()]);
    let mut source = rds_source(&s, "rds", "orders", &s.db, &aws.moto.url());
    source["dbpass"] = json!("wrong-password");
    let cfg = job_with(t.path(), source);
    let r = run_job(&cfg);
    r.assert_code(1);
    let text = r.all_text();
    assert!(text.contains("Access denied"), "{text}");
    assert!(!text.contains("wrong-password"), "{text}");
    assert_eq!(
        aws.instances(),
        ["orders"],
        "the temporary instance was deleted"
    );
    assert!(files_under(&t.path().join("dest")).is_empty());
}

#[test]
fn sigterm_while_waiting_deletes_the_temporary_instance() {
    let Some((s, aws)) = setup(
        "sigterm_while_waiting_deletes_the_temporary_instance",
        100_000,
    ) else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    aws.fixture(&["rds-source", "mysql", "orders", &s.mysql_port.to_string()]);
    let cfg = job_with(
        t.path(),
        rds_source(&s, "rds", "orders", &s.db, &aws.moto.url()),
    );
    let child = Command::new(bin())
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backup");
    wait_until(
        Duration::from_secs(60),
        "the temporary instance exists",
        || aws.instances().len() == 2,
    );
    let pid = child.id().to_string();
    run_ok(Command::new("kill").args(["-TERM", &pid]));
    let out = wait_with_deadline(child, Duration::from_secs(60), "backup after SIGTERM");
    let text = format!("{}{}", lossy(&out.stdout), lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(143), "{text}");
    assert!(text.contains("interrupted"), "{text}");
    assert_eq!(
        aws.instances(),
        ["orders"],
        "deleted after SIGTERM:\n{text}"
    );
}

#[test]
fn the_next_run_deletes_what_a_killed_run_left() {
    let Some((s, aws)) = setup("the_next_run_deletes_what_a_killed_run_left", 100_000) else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    aws.fixture(&["rds-source", "mysql", "orders", &s.mysql_port.to_string()]);
    let cfg = job_with(
        t.path(),
        rds_source(&s, "rds", "orders", &s.db, &aws.moto.url()),
    );
    // Another job's temporary instance of the same source id and instance: never touched.
    let other_dir = t.path().join("other");
    std::fs::create_dir_all(&other_dir).expect("mkdir");
    let other = job_with(
        &other_dir,
        rds_source(&s, "rds", "orders", &s.db, &aws.moto.url()),
    );
    kill_during_upload(&other, &[], || aws.instances().len() == 2);
    let others = aws.instances();

    // The killed run names the job file relatively, the next one absolutely: the same job.
    let cwd = std::env::current_dir().expect("cwd");
    let relative = Path::new(&"../".repeat(cwd.components().count() - 1))
        .join(cfg.strip_prefix("/").expect("absolute"));
    kill_during_upload(&relative, &[], || aws.instances().len() == 3);
    let left = aws.fixture(&["instances"]);
    let ours: Vec<&Value> = left
        .as_array()
        .expect("list")
        .iter()
        .filter(|i| !others.contains(&i["id"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(ours.len(), 1, "{left}");
    let leftover = ours[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(ours[0]["tags"]["custos:source"], "orders");
    assert!(
        ours[0]["tags"]["custos:job"]
            .as_str()
            .is_some_and(|j| j.starts_with("testhost:") && j.ends_with("job.json")),
        "{left}"
    );

    aws.set_creating_polls(1);
    let r = run_job(&cfg);
    r.assert_code(0);
    assert!(r.all_text().contains(&leftover), "{}", r.describe());
    assert_eq!(
        aws.instances(),
        others,
        "only the other job's leftover remains"
    );
}

/// The minimal IAM policy of the README (the JSON block after "Minimal IAM policy").
fn readme_policy() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let at = readme
        .find("Minimal IAM policy")
        .expect("README: Minimal IAM policy");
    let rest = &readme[at..];
    let start = rest.find("```json\n").expect("json block") + "```json\n".len();
    let end = rest[start..].find("```").expect("end of block");
    let policy = rest[start..start + end].to_owned();
    serde_json::from_str::<Value>(&policy).expect("the README's policy is JSON");
    policy
}

#[test]
fn moto_checks_sigv4_and_iam_wrong_secret_and_missing_permission_fail_clearly() {
    let Some((s, aws)) = setup(
        "moto_checks_sigv4_and_iam_wrong_secret_and_missing_permission_fail_clearly",
        1,
    ) else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    aws.fixture(&["rds-source", "mysql", "orders", &s.mysql_port.to_string()]);
    let policy = readme_policy();
    let minimal = aws.fixture(&["user", "minimal", &policy]);
    let mut narrow: Value = serde_json::from_str(&policy).expect("policy");
    for st in narrow["Statement"].as_array_mut().expect("statements") {
        if let Some(actions) = st["Action"].as_array_mut() {
            actions.retain(|a| a != "rds:RestoreDBInstanceFromDBSnapshot");
        }
    }
    let narrow = aws.fixture(&["user", "narrow", &narrow.to_string()]);
    let mut keeps: Value = serde_json::from_str(&policy).expect("policy");
    for st in keeps["Statement"].as_array_mut().expect("statements") {
        if let Some(actions) = st["Action"].as_array_mut() {
            actions.retain(|a| a != "rds:DeleteDBInstance");
        }
    }
    let keeps = aws.fixture(&["user", "keeps", &keeps.to_string()]);
    let admin = aws.fixture(&[
        "user",
        "admin",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}"#,
    ]);
    aws.fixture(&["auth-on"]);
    let admin = (
        admin["key"].as_str().expect("key"),
        admin["secret"].as_str().expect("secret"),
    );
    let instances = || ids(&aws.fixture_as(admin, &["instances"]));
    let run_as = |key: &str, secret: &str| {
        let mut source = rds_source(&s, "rds", "orders", &s.db, &aws.moto.url());
        source["credentials"] = json!({"aws_access_key_id": key, "aws_secret_access_key": secret});
        run_job(&job_with(t.path(), source))
    };

    let key = minimal["key"].as_str().expect("key");
    let r = run_as(key, "not-the-secret");
    r.assert_code(1);
    let text = r.all_text();
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    assert!(text.contains("rds DescribeDBSnapshots"), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");

    let r = run_as(
        narrow["key"].as_str().expect("key"),
        narrow["secret"].as_str().expect("secret"),
    );
    r.assert_code(1);
    let text = r.all_text();
    assert!(
        text.contains("rds RestoreDBInstanceFromDBSnapshot: AccessDenied"),
        "{text}"
    );
    assert_eq!(instances(), ["orders"]);

    run_as(key, minimal["secret"].as_str().expect("secret")).assert_code(0);
    assert_eq!(instances(), ["orders"]);

    // A temporary instance that cannot be deleted fails the run, named, though the dump
    // was stored.
    let r = run_as(
        keeps["key"].as_str().expect("key"),
        keeps["secret"].as_str().expect("secret"),
    );
    r.assert_code(1);
    let left: Vec<String> = instances().into_iter().filter(|i| i != "orders").collect();
    assert_eq!(left.len(), 1);
    let text = r.all_text();
    assert!(
        text.contains(&format!(
            "orders -> cleanup: source 'orders': cleanup: RDS instance {} in eu-west-1: not deleted: rds DeleteDBInstance: AccessDenied",
            left[0]
        )),
        "{text}"
    );
}

#[test]
fn a_restore_that_outlasts_wait_timeout_fails_and_is_deleted() {
    let Some((s, aws)) = setup(
        "a_restore_that_outlasts_wait_timeout_fails_and_is_deleted",
        100_000,
    ) else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    aws.fixture(&["rds-source", "mysql", "orders", &s.mysql_port.to_string()]);
    let mut source = rds_source(&s, "rds", "orders", &s.db, &aws.moto.url());
    source["wait_timeout"] = json!(1);
    let r = run_job(&job_with(t.path(), source));
    r.assert_code(1);
    let text = r.all_text();
    assert!(
        text.contains("not ready after 1 s (wait_timeout), last status creating"),
        "{text}"
    );
    assert_eq!(aws.instances(), ["orders"], "deleted after the timeout");
}

#[test]
fn ebs_snapshots_are_tagged_retained_per_volume_and_others_left_alone() {
    let test = "ebs_snapshots_are_tagged_retained_per_volume_and_others_left_alone";
    if !require_tools(test, &["python3"]) {
        return;
    }
    let Some(aws) = Aws::start(test, 0) else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let volumes: Vec<String> = serde_json::from_value(aws.fixture(&["volumes", "2"])).expect("ids");
    // Someone else's snapshots of the same volume: untagged, and another job's with our id.
    let foreign = [
        aws.fixture(&["snapshot", &volumes[0]]),
        aws.fixture(&[
            "snapshot",
            &volumes[0],
            "custos:source=ebs",
            "custos:job=otherhost:/x.json",
        ]),
    ];
    let mut job = Job::new(t.path());
    // The original's keys; the endpoint and credentials come from the standard environment.
    job.source(
        json!({"id": "ebs", "name": "Data volumes", "type": "snapshot",
                      "volume_id": volumes, "availability_zone": "eu-west-1a",
                      "retain_snapshots": 2, "poll_interval": 0.2}),
    )
    .destination(local_destination("disk", &t.path().join("dest")));
    let cfg = job.write();
    let url = aws.moto.url();
    let env: [(&str, &OsStr); 3] = [
        ("AWS_ENDPOINT_URL", url.as_ref()),
        ("AWS_ACCESS_KEY_ID", "AKIDENV".as_ref()),
        ("AWS_SECRET_ACCESS_KEY", "env-secret".as_ref()),
    ];
    let mut made = Vec::new();
    for _ in 0..3 {
        // moto stamps a snapshot's startTime to the second (AWS to the millisecond): each
        // run starts in a second of its own, so "newest" is defined.
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        wait_until(Duration::from_secs(5), "the next second", || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .is_ok_and(|d| d.as_secs() > second)
        });
        let r = backup_with(["-v".as_ref(), cfg.as_os_str()], &env, None);
        r.assert_code(0);
        // The summary names the snapshots this run made.
        let ids: Vec<String> = r
            .stdout_text()
            .lines()
            .find_map(|l| l.strip_prefix("ebs made: "))
            .map(|m| m.split(' ').map(str::to_owned).collect())
            .unwrap_or_default();
        assert_eq!(ids.len(), 2, "{}", r.describe());
        made.push(ids);
    }
    // moto holds snapshots of its own AMIs too: only those of these volumes count.
    let all = Value::Array(
        aws.fixture(&["snapshots"])
            .as_array()
            .expect("list")
            .iter()
            .filter(|s| volumes.iter().any(|v| s["volume"] == v.as_str()))
            .cloned()
            .collect(),
    );
    let now = ids(&all);
    for f in &foreign {
        assert!(now.contains(&f.as_str().expect("id").to_owned()), "{all}");
    }
    // Per volume the two newest of ours: runs 2 and 3; run 1's are gone.
    let mut want: Vec<String> = made[1..].concat();
    want.extend(foreign.iter().map(|f| f.as_str().expect("id").to_owned()));
    want.sort();
    assert_eq!(now, want, "{all}");
    for snap in all.as_array().expect("list") {
        if made[1..]
            .concat()
            .contains(&snap["id"].as_str().expect("id").to_owned())
        {
            assert_eq!(snap["tags"]["custos:source"], "ebs");
            assert!(snap["tags"]["custos:job"]
                .as_str()
                .is_some_and(|j| j.starts_with("testhost:")));
        }
    }
    assert!(
        files_under(&t.path().join("dest")).is_empty(),
        "no object for a snapshot"
    );
}

#[test]
fn without_credentials_keys_the_shared_credentials_file_is_used_or_a_clear_error() {
    let test = "without_credentials_keys_the_shared_credentials_file_is_used_or_a_clear_error";
    if !require_tools(test, &["python3"]) {
        return;
    }
    let Some(aws) = Aws::start(test, 0) else {
        return;
    };
    let t = tempfile::tempdir().expect("tempdir");
    let volumes: Vec<String> = serde_json::from_value(aws.fixture(&["volumes", "1"])).expect("ids");
    let user = aws.fixture(&["user", "snapshots", &readme_policy()]);
    aws.fixture(&["auth-on"]);
    // moto now checks every signature: only the file's key can pass.
    let file = t.path().join("credentials");
    write_private(
        &file,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            user["key"].as_str().expect("key"),
            user["secret"].as_str().expect("secret")
        )
        .as_bytes(),
    );
    let mut job = Job::new(t.path());
    job.source(
        json!({"id": "ebs", "type": "snapshot", "volume_id": volumes[0],
                      "region": "eu-west-1", "endpoint_url": aws.moto.url(), "poll_interval": 0.2}),
    )
    .destination(local_destination("disk", &t.path().join("dest")));
    let cfg = job.write();
    let missing = t.path().join("none");
    let r = backup_with(
        [&cfg],
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", missing.as_os_str()),
            ("AWS_CONFIG_FILE", missing.as_os_str()),
            ("HOME", t.path().as_os_str()),
            // Not an instance role of the machine the tests run on.
            ("AWS_EC2_METADATA_DISABLED", "true".as_ref()),
        ],
        None,
    );
    r.assert_code(1);
    assert!(
        r.all_text()
            .contains("ec2 CreateSnapshot: credentials: no usable AWS credentials"),
        "{}",
        r.describe()
    );
    let r = backup_with(
        ["-v".as_ref(), cfg.as_os_str()],
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", file.as_os_str()),
            ("AWS_CONFIG_FILE", t.path().join("none").as_os_str()),
            ("HOME", t.path().as_os_str()),
        ],
        None,
    );
    r.assert_code(0);
    assert!(
        r.stdout_text().contains("ebs made: snap-"),
        "{}",
        r.describe()
    );
}
