//! Job files shaped like the original's documentation (rossigee/backups 2.5.0 README and
//! docs/: the root object, the folder/mysql/pgsql/local examples, the "Complete Example"),
//! written anew for these tests; keys, nesting and the trailing commas are the original's.

use super::*;
use crate::source::databases::DbName;

fn parse_ok(text: &str) -> JobConfig {
    let job = parse(Path::new("/etc/backups/job.json"), text).unwrap_or_else(|e| panic!("{e}"));
    job.validate().unwrap_or_else(|e| panic!("{e}"));
    job
}

fn parse_err(text: &str) -> ConfigError {
    match parse(Path::new("/etc/backups/job.json"), text) {
        Err(e) => e,
        Ok(job) => job.validate().expect_err("expected an error"),
    }
}

/// The README's root object plus one source and one destination, with its trailing comma.
const ROOT_WITH_TRAILING_COMMA: &str = r#"{
  "hostname": "my.hostname.com",
  "tmpdir": "/var/tmp/backups",
  "modules": [],
  "sources": [
    {
      "id": "accountsdata",
      "name": "Live Accounts Data",
      "type": "folder",
      "path": "/var/lib/myaccountspkg/data",
      "excludes": [
        "tmp",
        "*~"
      ],
      "passphrase": "64b0c7405f2d8051e2b9f02aa4898acc"
    }
  ],
  "destinations": [
    {
      "id": "local-backup",
      "type": "local",
      "path": "/mnt/backup-drive",
      "retention_copies": 7
    }
  ],
  "notifications": [],
}
"#;

#[test]
fn root_object_with_trailing_comma_parses_and_reports_the_line() {
    let job = parse_ok(ROOT_WITH_TRAILING_COMMA);
    assert_eq!(job.trailing_commas, vec![26]);
    assert_eq!(job.hostname.as_deref(), Some("my.hostname.com"));
    let s = &job.sources[0];
    assert_eq!(
        (s.id.as_str(), s.name.as_str(), s.kind.as_str()),
        ("accountsdata", "Live Accounts Data", "folder")
    );
    let SourceSpec::Folder(f) = &s.spec else {
        panic!("{:?}", s.spec)
    };
    assert_eq!(f.path, Path::new("/var/lib/myaccountspkg/data"));
    assert_eq!(f.excludes, ["tmp", "*~"]);
    assert!(!f.sudo);
    assert_eq!(
        s.protection(),
        Some(Protection::Passphrase(&Secret::new(
            "64b0c7405f2d8051e2b9f02aa4898acc"
        )))
    );
    assert_eq!(s.compression, Compression::Zstd);
    assert_eq!(s.layout, Layout::Custos);
    let d = &job.destinations[0];
    assert_eq!(
        d.retention,
        RetentionPolicy {
            copies: 7,
            ..Default::default()
        }
    );
    let DestinationSpec::Local(l) = &d.spec else {
        panic!()
    };
    assert_eq!(l.path, Path::new("/mnt/backup-drive"));
    assert!(job.holds_secrets);
}

#[test]
fn trailing_commas_are_stripped_only_outside_strings_and_lines_kept() {
    let text = "{\n \"a\": \"x,}\",\n \"b\": [1, 2,\n ],\n}";
    let (clean, lines) = strip_trailing_commas(text);
    assert_eq!(lines, vec![3, 4]);
    assert_eq!(clean.lines().count(), text.lines().count());
    assert!(clean.contains("\"x,}\""));
    let v: Value = serde_json::from_str(&clean).unwrap();
    assert_eq!(v["b"], serde_json::json!([1, 2]));
    // An escaped quote does not end the string.
    let (clean, lines) = strip_trailing_commas(r#"{"a": "q\",]", }"#);
    assert_eq!(lines, vec![1]);
    assert!(clean.contains(r#""q\",]""#));
    // Several on one line (`[1,],}`) name that line once, in order.
    let text = "{\n \"a\": [1,],\n \"b\": {\"c\": [2,],},\n \"d\": 3,\n}";
    let (clean, lines) = strip_trailing_commas(text);
    assert_eq!(lines, vec![2, 3, 4]);
    let v: Value = serde_json::from_str(&clean).unwrap();
    assert_eq!(v["b"]["c"], serde_json::json!([2]));
}

/// The README's "Complete Example", as published: its mysql entry carries a folder's `path`
/// and none of the db keys (the original itself dies on it with KeyError 'dbhost').
const COMPLETE_EXAMPLE: &str = r#"{
  "tmpdir": "/var/tmp/folderdumps",
  "modules": [
    "backups.sources.folder",
    "backups.sources.mysql",
    "backups.destinations.s3",
    "backups.notifications.smtp"
  ],
  "sources": [
    {
      "id": "config",
      "type": "folder",
      "name": "Live server config",
      "path": "/etc",
      "passphrase": "youllneverguesswhat"
    },
    {
      "id": "data",
      "type": "folder",
      "name": "Live server data folder",
      "path": "/data",
      "passphrase": "youllneverguesswhat"
    },
    {
      "id": "db",
      "type": "mysql",
      "name": "Live server database",
      "path": "/data",
      "passphrase": "youllneverguesswhat"
    },
  ],
  "destinations": [
    {
      "id": "myamazon",
      "type": "s3",
      "bucket": "mybucketnamehere",
      "region": "eu-west-1",
      "credentials": {
        "aws_access_key_id": "YOUR_ACCESS_KEY_ID",
        "aws_secret_access_key": "YOUR_SECRET_ACCESS_KEY"
      }
    }
  ],
  "notifications": []
}"#;

#[test]
fn complete_example_as_published_loads_and_names_the_stray_key() {
    let job = parse_ok(COMPLETE_EXAMPLE);
    assert_eq!(job.sources.len(), 3);
    assert!(matches!(job.sources[2].spec, SourceSpec::Mysql(_)));
    let keys: Vec<&str> = job.unknown_keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["sources[2].path"]);
    // No hint: the nearest known key of a mysql source (`name`) is nothing like `path`.
    assert_eq!(job.unknown_keys[0].nearest, None);
    let file = Path::new("/etc/backups/job.json");
    assert!(custos_kit::config::check_unknown(file, &job.unknown_keys, Strictness::Warn).is_ok());
    let e =
        custos_kit::config::check_unknown(file, &job.unknown_keys, Strictness::Strict).unwrap_err();
    assert_eq!(e.key(), Some("sources[2].path"), "{e}");
    assert!(
        e.to_string()
            .starts_with("/etc/backups/job.json: sources[2].path: unknown key"),
        "{e}"
    );
}

#[test]
fn unknown_keys_at_root_and_in_common_parts_are_collected() {
    let text = ROOT_WITH_TRAILING_COMMA
        .replace(r#""tmpdir":"#, r#""hostnmae": "x", "tmpdir":"#)
        .replace(
            r#""retention_copies": 7"#,
            r#""retention_copies": 7, "retention_cpoies": 3"#,
        );
    let job = parse_ok(&text);
    let found: Vec<(&str, Option<&str>)> = job
        .unknown_keys
        .iter()
        .map(|k| (k.key.as_str(), k.nearest.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            ("hostnmae", Some("hostname")),
            ("destinations[0].retention_cpoies", Some("retention_copies")),
        ]
    );
}

#[test]
fn complete_example_with_db_keys_parses_with_its_s3_destination() {
    let fixed = COMPLETE_EXAMPLE.replace(
        r#""name": "Live server database",
      "path": "/data","#,
        r#""name": "Live server database",
      "dbhost": "localhost",
      "dbname": "livecompany",
      "dbuser": "backups",
      "dbpass": "zzzuserwithreadonlyperms","#,
    );
    let job = parse_ok(&fixed);
    assert_eq!(job.sources.len(), 3);
    assert_eq!(job.trailing_commas, vec![33]);
    assert!(matches!(job.sources[2].spec, SourceSpec::Mysql(_)));
    let DestinationSpec::S3(s3) = &job.destinations[0].spec else {
        panic!("{:?}", job.destinations[0].spec)
    };
    assert_eq!(s3.bucket, "mybucketnamehere");
    assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
    assert_eq!(s3.endpoint_url, None);
    let cred = s3.credentials.as_ref().expect("credentials");
    assert_eq!(cred.aws_access_key_id, "YOUR_ACCESS_KEY_ID");
    assert_eq!(
        cred.aws_secret_access_key.expose(),
        "YOUR_SECRET_ACCESS_KEY"
    );
    assert!(matches!(job.destinations[0].spec, DestinationSpec::S3(_)));
    assert!(job.holds_secrets);
    let debug = format!("{job:?}");
    for secret in [
        "youllneverguesswhat",
        "zzzuserwithreadonlyperms",
        "YOUR_SECRET_ACCESS_KEY",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

/// The README's mysql example (compress_only 1 alongside a passphrase).
#[test]
fn mysql_example_compress_only_wins_and_keys_map() {
    let job = parse_ok(
        r#"{"sources": [{
      "id": "livecompanydb",
      "name": "Live Company Data",
      "type": "mysql",
      "dbhost": "localhost",
      "dbname": "livecompany",
      "dbuser": "backups",
      "dbpass": "zzzuserwithreadonlyperms",
      "passphrase": "64b0c7405f2d8051e2b9f02aa4898acc",
      "compress_only": 1
    }], "destinations": [{"id": "l", "type": "local", "path": "/b"}]}"#,
    );
    let s = &job.sources[0];
    assert_eq!(s.protection(), Some(Protection::CompressOnly));
    let SourceSpec::Mysql(m) = &s.spec else {
        panic!()
    };
    assert_eq!(m.dbhost.as_deref(), Some("localhost"));
    assert_eq!(m.dbname, DbName::One("livecompany".into()));
    assert_eq!(m.dbuser.as_deref(), Some("backups"));
    assert_eq!(
        m.dbpass.as_ref().map(Secret::expose),
        Some("zzzuserwithreadonlyperms")
    );
    assert!(!m.noevents && m.options.is_empty() && m.defaults.is_none());
}

#[test]
fn mysql_several_databases_options_noevents_defaults_port() {
    let job = parse_ok(
        r#"{"sources": [
      {"id": "a", "type": "mysql", "dbname": "one two  three", "noevents": 1,
       "options": "--single-transaction --skip-triggers", "passphrase": "p",
       "dbhost": "127.0.0.1", "dbport": "3307", "dbuser": null, "dbpass": null,
       "defaults": "/home/backups/.my.cnf"},
      {"id": "b", "type": "mysql", "dbname": ["x", "y"], "noevents": 0,
       "options": ["--where=id > 5"], "passphrase": "p", "dbport": 3306},
      {"id": "c", "type": "mysql", "passphrase": "p", "noevents": true}
    ], "destinations": [{"id": "l", "type": "local", "path": "/b"}]}"#,
    );
    let m = |i: usize| match &job.sources[i].spec {
        SourceSpec::Mysql(m) => m.clone(),
        other => panic!("{other:?}"),
    };
    let a = m(0);
    assert_eq!(a.dbname, DbName::One("one two  three".into()));
    assert!(a.noevents);
    assert_eq!(a.options, ["--single-transaction", "--skip-triggers"]);
    assert_eq!(a.dbport, Some(3307));
    assert_eq!(a.dbuser, None);
    assert_eq!(
        a.defaults.as_deref(),
        Some(Path::new("/home/backups/.my.cnf"))
    );
    let b = m(1);
    // A list: one object per database (custos).
    assert_eq!(b.dbname, DbName::Each(vec!["x".into(), "y".into()]));
    assert!(!b.noevents);
    assert_eq!(b.options, ["--where=id > 5"]);
    let c = m(2);
    assert!(c.dbname == DbName::Absent && c.noevents);
}

/// The README's pgsql example.
#[test]
fn pgsql_example_parses() {
    let job = parse_ok(
        r#"{"sources": [{
      "id": "livecompanydb",
      "name": "Live Company Data",
      "type": "pgsql",
      "dbhost": "localhost",
      "dbname": "livecompany",
      "dbuser": "backups",
      "dbpass": "zzzuserwithreadonlyperms",
      "passphrase": "64b0c7405f2d8051e2b9f02aa4898acc"
    }], "destinations": [{"id": "l", "type": "local", "path": "/b"}]}"#,
    );
    let SourceSpec::Pgsql(p) = &job.sources[0].spec else {
        panic!()
    };
    assert_eq!(p.dbname, DbName::One("livecompany".into()));
    assert_eq!(p.dbhost.as_deref(), Some("localhost"));
}

#[test]
fn pgsql_without_dbname_names_the_entry_and_field() {
    let e = parse_err(
        r#"{"sources": [{"id": "pg", "type": "pgsql", "dbhost": "h", "passphrase": "p"}],
            "destinations": []}"#,
    );
    assert_eq!(e.key(), Some("sources[0]"), "{e}");
    assert!(e.to_string().contains("missing field `dbname`"), "{e}");
}

#[test]
fn misspelt_key_is_named_with_its_path_and_nearest_known_key() {
    let unknown = |text: &str| -> Vec<(String, Option<String>)> {
        let job = parse(Path::new("j"), text).unwrap_or_else(|e| panic!("{e}"));
        job.unknown_keys
            .into_iter()
            .map(|k| (k.key, k.nearest))
            .collect()
    };
    let pair = |k: &str, n: &str| (k.to_owned(), Some(n.to_owned()));
    assert_eq!(
        unknown(
            r#"{"sources": [{"id": "f", "type": "folder", "path": "/x", "exclude": ["a"],
            "passphrase": "p"}], "destinations": []}"#
        ),
        [pair("sources[0].exclude", "excludes")]
    );
    // A misspelt list: a warning, and then the missing destinations stop the job.
    let text = r#"{"sources": [], "destination": []}"#;
    assert_eq!(unknown(text), [pair("destination", "destinations")]);
    assert_eq!(parse_err(text).key(), Some("sources"));
    assert_eq!(
        unknown(
            r#"{"sources": [{"id": "f", "type": "folder", "path": "/x", "passphrase": "p"}],
            "destinations": [{"id": "l", "type": "local", "path": "/b", "retention_copy": 3}]}"#
        ),
        [pair("destinations[0].retention_copy", "retention_copies")]
    );
}

/// A required key that is missing while a key close to it is present: the typo is named.
#[test]
fn misspelt_required_key_is_named_with_the_key_it_stands_for() {
    let e = parse_err(
        r#"{"sources": [{"id": "f", "type": "folder", "pth": "/x", "passphrase": "p"}],
            "destinations": []}"#,
    );
    assert_eq!(
        e.to_string(),
        "/etc/backups/job.json: sources[0].pth: unknown key `pth`, did you mean `path`? \
         (`path` is required)"
    );
    // A key every entry has (`type`), misspelt: it lands among the type's keys.
    let e = parse_err(
        r#"{"sources": [{"id": "f", "tpye": "folder", "path": "/x", "passphrase": "p"}],
            "destinations": []}"#,
    );
    assert_eq!(e.key(), Some("sources[0].tpye"), "{e}");
    assert!(e.to_string().contains("did you mean `type`?"), "{e}");
    let e = parse_err(
        r#"{"sources": [{"id": "f", "type": "folder", "path": "/x", "passphrase": "p"}],
            "destinations": [{"iid": "d", "type": "local", "path": "/b"}]}"#,
    );
    assert_eq!(e.key(), Some("destinations[0].iid"), "{e}");
    // Nothing close: serde's message stands.
    let e = parse_err(
        r#"{"sources": [{"type": "folder", "path": "/x", "passphrase": "p"}],
            "destinations": []}"#,
    );
    assert!(e.to_string().contains("missing field `id`"), "{e}");
}

#[test]
fn wrong_type_in_a_nested_value_names_its_path() {
    let e = parse_err(
        r#"{"sources": [{"id": "f", "type": "folder", "path": "/x", "excludes": ["a", 3],
            "passphrase": "p"}], "destinations": []}"#,
    );
    assert_eq!(e.key(), Some("sources[0].excludes[1]"), "{e}");
}

#[test]
fn missing_sources_is_an_error() {
    let e = parse_err(r#"{"destinations": []}"#);
    assert!(e.to_string().contains("missing field `sources`"), "{e}");
}

#[test]
fn unknown_type_is_a_config_error_listing_known_types() {
    let e = parse_err(
        r#"{"sources": [{"id": "f", "type": "folders", "path": "/x"}], "destinations": []}"#,
    );
    assert_eq!(e.key(), Some("sources[0].type"), "{e}");
    assert_eq!(
        e.to_string(),
        "/etc/backups/job.json: sources[0].type: invalid value \"folders\": unknown type, did you mean \"folder\"? \
         implemented types: azure-managed-disk, btrfs, folder, folder-ssh, lvm-ssh, mysql, \
         mysql-ssh, pgsql, rds, rds-pgsql, snapshot"
    );
    // The implemented types are listed.
    let e = parse_err(
        r#"{"sources": [{"id": "f", "type": "folder", "path": "/x", "passphrase": "p"}],
            "destinations": [{"id": "d", "type": "ftp"}]}"#,
    );
    assert_eq!(
        e.to_string(),
        "/etc/backups/job.json: destinations[0].type: invalid value \"ftp\": unknown type; implemented types: \
         b2, dropbox, gdrive, gs, local, minio, s3, samba"
    );
}

/// Shapes of the README's other handlers: they parse, whatever their keys, and wait for the
/// issues that implement them.
#[test]
fn handlers_left_to_later_issues_parse_as_unsupported() {
    let job = parse_ok(
        r#"{
  "sources": [
    {"id": "f", "type": "folder", "path": "/etc", "passphrase": "p"},
    {"id": "livecompanydb", "name": "Live Company Data", "type": "rds",
     "instancename": "livedb1", "region": "eu-west-1", "security_group": "sg-xxxxxxxx",
     "instance_class": "db.t3.small", "dbname": "livecompany", "dbuser": "backups",
     "dbpass": "zzz", "passphrase": "p",
     "credentials": {"aws_access_key_id": "A", "aws_secret_access_key": "S"}},
    {"id": "mydisk1", "type": "lvm-ssh", "name": "My Disk 1", "sshhost": "h",
     "sshuser": "root", "vg_name": "ubuntu-vg", "lv_name": "mydisk1", "size": "5G",
     "retain_snapshots": 3, "passphrase": "p"}
  ],
  "destinations": [
    {"id": "l", "type": "local", "path": "/b", "retention_copies": "5", "retention_days": 30},
    {"id": "bigshare", "type": "samba", "host": "server1.local.lan", "share": "TheShare",
     "workgroup": "WORKGROUP", "credentials": {"username": "backups", "password": "x"},
     "suffix": "gpg"},
    {"id": "gcs-backup", "type": "gs", "bucket": "b", "gcs_creds_path": "/etc/x.json",
     "retention_copies": 7, "retention_days": 30}
  ],
  "notifications": [
    {"type": "flagfile", "flagfile": "/backups/gitdata.ok"},
    {"type": "slack", "url": "https://hooks.example.invalid/x", "notify_on_success": 0,
     "notify_on_failure": 1},
    {"id": "logging", "type": "elasticsearch", "url": "https://es:9200",
     "credentials": {"username": "backups", "password": "y"}, "indexpattern": "backups-%Y"}
  ]
}"#,
    );
    // rds is implemented now: the original's example keys parse as its config.
    assert!(matches!(job.sources[1].spec, SourceSpec::Rds(_)));
    assert_eq!(job.sources[1].kind, "rds");
    // lvm-ssh is implemented now: the original README's example keys parse as its config.
    assert!(matches!(&job.sources[2].spec, SourceSpec::LvmSsh(c)
        if c.vg_name == "ubuntu-vg" && c.lv_name == "mydisk1" && c.retain_snapshots == Some(3)));
    assert_eq!(
        job.destinations[0].retention,
        RetentionPolicy {
            copies: 5,
            days: 30,
            ..Default::default()
        }
    );
    // samba is implemented now: the original's example keys parse as its config.
    assert!(matches!(
        job.destinations[1].spec,
        DestinationSpec::Samba(_)
    ));
    assert_eq!(job.destinations[2].retention.copies, 7);
    let kinds: Vec<_> = job.notifications.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(kinds, ["flagfile", "slack", "elasticsearch"]);
    assert_eq!(job.notifications[2].id.as_deref(), Some("logging"));
}

/// The original's minio example becomes the same store as `s3` with an `endpoint_url`;
/// a scheme in `endpoint` or a bad `endpoint_url` is refused naming the key.
#[test]
fn minio_translates_to_s3_and_endpoints_are_checked() {
    let job = parse_ok(
        r#"{"sources": [{"id": "a", "type": "folder", "path": "/a", "passphrase": "p"}],
  "destinations": [
    {"id": "minio-backup", "type": "minio", "endpoint": "nyc3.digitaloceanspaces.com",
     "bucket": "my-backup-bucket", "secure": true,
     "credentials": {"access_key": "AK", "secret_key": "SK-minio"},
     "retention_copies": 5, "retention_days": 30, "stall_timeout": 60,
     "upload_rate_limit": 1048576},
    {"id": "local-minio", "type": "minio", "endpoint": "localhost:9000", "bucket": "b",
     "secure": false, "credentials": {"access_key": "AK", "secret_key": "SK"}},
    {"id": "wasabi", "type": "s3", "bucket": "b", "region": "eu-central-1",
     "endpoint_url": "https://s3.wasabisys.com"}
  ]}"#,
    );
    let s3 = |i: usize| match &job.destinations[i].spec {
        DestinationSpec::S3(c) => c.clone(),
        DestinationSpec::Minio(m) => m.to_s3(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        s3(0).endpoint_url.as_deref(),
        Some("https://nyc3.digitaloceanspaces.com")
    );
    assert_eq!(s3(0).bucket, "my-backup-bucket");
    assert_eq!(
        s3(0)
            .credentials
            .expect("credentials")
            .aws_secret_access_key
            .expose(),
        "SK-minio"
    );
    assert_eq!(
        job.destinations[0].retention,
        RetentionPolicy {
            copies: 5,
            days: 30,
            ..Default::default()
        }
    );
    assert_eq!(job.destinations[0].stall_timeout, Some(60));
    assert_eq!(job.destinations[0].upload_rate_limit, Some(1 << 20));
    assert!(matches!(
        job.destinations[0].spec,
        DestinationSpec::Minio(_)
    ));
    assert_eq!(s3(1).endpoint_url.as_deref(), Some("http://localhost:9000"));
    assert!(s3(2).credentials.is_none(), "the AWS chain is used");
    assert!(!format!("{job:?}").contains("SK-minio"));

    let bad = |dest: &str| {
        parse_err(&format!(
            r#"{{"sources": [{{"id": "a", "type": "folder", "path": "/a", "passphrase": "p"}}],
  "destinations": [{dest}]}}"#
        ))
        .to_string()
    };
    let e = bad(
        r#"{"id": "m", "type": "minio", "endpoint": "http://h:9000", "bucket": "b",
        "credentials": {"access_key": "a", "secret_key": "s"}}"#,
    );
    assert!(e.contains("destinations[0].endpoint:"), "{e}");
    let e = bad(r#"{"id": "s", "type": "s3", "bucket": "b", "endpoint_url": "s3.example.org"}"#);
    assert!(e.contains("destinations[0].endpoint_url:"), "{e}");
    let e = bad(r#"{"id": "s", "type": "s3", "bucket": "a/b"}"#);
    assert!(e.contains("destinations[0].bucket"), "{e}");
}

#[test]
fn a_numeric_secret_is_not_echoed_in_the_error() {
    let e = parse_err(
        r#"{"sources": [{"id": "m", "type": "mysql", "dbpass": 918273645,
            "passphrase": "p"}], "destinations": []}"#,
    );
    assert_eq!(e.key(), Some("sources[0].dbpass"), "{e}");
    assert!(!e.to_string().contains("918273645"), "{e}");
    let e = parse_err(
        r#"{"sources": [{"id": "m", "type": "folder", "path": "/x",
            "passphrase": 55512345}], "destinations": []}"#,
    );
    assert!(!e.to_string().contains("55512345"), "{e}");
}

#[test]
fn compress_only_is_true_only_for_one_or_true() {
    let parse_flag = |v: &str| {
        let job = parse(
            Path::new("j"),
            &format!(
                r#"{{"sources": [{{"id": "f", "type": "folder", "path": "/x",
                    "passphrase": "p", "compress_only": {v}}}]}}"#
            ),
        );
        job.map(|j| j.sources[0].compress_only)
    };
    assert!(parse_flag("1").unwrap());
    assert!(parse_flag("true").unwrap());
    assert!(!parse_flag("0").unwrap());
    assert!(!parse_flag("2").unwrap());
    assert!(!parse_flag("null").unwrap());
    assert!(parse_flag("\"1\"").is_err());
}

#[test]
fn custos_options_inherit_from_root_and_sources_override() {
    let job = parse_ok(
        r#"{"compression": "gzip", "compression_level": 6, "layout": "original",
            "keyring": "/etc/backups/keys.asc", "tmpdir": "/var/tmp",
        "sources": [
          {"id": "a", "type": "folder", "path": "/a", "recipients": ["ops@example.org"]},
          {"id": "b", "type": "folder", "path": "/b", "passphrase": "p",
           "compression": "zstd", "compression_level": 19, "layout": "custos",
           "keyring": "/k", "tmpdir": "/t", "sudo": true}
        ],
        "destinations": [{"id": "l", "type": "local", "path": "/b"}]}"#,
    );
    let (a, b) = (&job.sources[0], &job.sources[1]);
    assert_eq!(
        (a.compression, a.compression_level, a.layout),
        (Compression::Gzip, Some(6), Layout::Original)
    );
    assert_eq!(
        a.keyring.as_deref(),
        Some(Path::new("/etc/backups/keys.asc"))
    );
    assert_eq!(
        a.protection(),
        Some(Protection::Recipients(&["ops@example.org".to_owned()]))
    );
    assert_eq!(
        (b.compression, b.compression_level, b.layout),
        (Compression::Zstd, Some(19), Layout::Custos)
    );
    assert_eq!(b.keyring.as_deref(), Some(Path::new("/k")));
    assert!(matches!(&b.spec, SourceSpec::Folder(f) if f.sudo));
}

#[test]
fn bad_custos_option_values_are_errors() {
    let e = parse_err(
        r#"{"compression": "lz4", "sources": [{"id": "a", "type": "folder", "path": "/a",
            "passphrase": "p"}], "destinations": []}"#,
    );
    assert_eq!(e.key(), Some("compression"), "{e}");
    let e = parse_err(
        r#"{"sources": [{"id": "a", "type": "folder", "path": "/a", "passphrase": "p",
            "compression_level": 40}],
            "destinations": [{"id": "l", "type": "local", "path": "/b"}]}"#,
    );
    assert_eq!(e.key(), Some("sources[0].compression_level"), "{e}");
    assert!(e.to_string().contains("1-19"), "{e}");
}

const ONE_DEST: &str = r#""destinations": [{"id": "l", "type": "local", "path": "/b"}]"#;

#[test]
fn validate_rejects_duplicates_bad_ids_and_missing_protection() {
    let cases = [
        (
            format!(
                r#"{{"sources": [{{"id": "a", "type": "folder", "path": "/a", "passphrase": "p"}},
                {{"id": "a", "type": "folder", "path": "/b", "passphrase": "p"}}], {ONE_DEST}}}"#
            ),
            "sources[1].id",
            "duplicate",
        ),
        (
            format!(
                r#"{{"sources": [{{"id": "a/b", "type": "folder", "path": "/a", "passphrase": "p"}}],
                {ONE_DEST}}}"#
            ),
            "sources[0].id",
            "must not contain /",
        ),
        (
            format!(
                r#"{{"sources": [{{"id": "", "type": "folder", "path": "/a", "passphrase": "p"}}],
                {ONE_DEST}}}"#
            ),
            "sources[0].id",
            "must not be empty",
        ),
        (
            format!(
                r#"{{"sources": [{{"id": "a", "type": "folder", "path": "/a"}}], {ONE_DEST}}}"#
            ),
            "sources[0].passphrase",
            "compress_only",
        ),
        (
            format!(
                r#"{{"sources": [{{"id": "a", "type": "folder", "path": "/a", "passphrase": ""}}],
                {ONE_DEST}}}"#
            ),
            "sources[0].passphrase",
            "no passphrase",
        ),
        (
            format!(
                r#"{{"sources": [{{"id": "a", "type": "folder", "path": "", "passphrase": "p"}}],
                {ONE_DEST}}}"#
            ),
            "sources[0].path",
            "must not be empty",
        ),
        (
            r#"{"sources": [{"id": "a", "type": "folder", "path": "/a", "passphrase": "p"}],
                "destinations": [{"id": "l", "type": "local", "path": "/b"},
                                 {"id": "l", "type": "local", "path": "/c"}]}"#
                .to_owned(),
            "destinations[1].id",
            "duplicate",
        ),
        (
            r#"{"sources": [{"id": "a", "type": "folder", "path": "/a", "passphrase": "p"}]}"#
                .to_owned(),
            "destinations",
            "no destinations",
        ),
        (
            format!(r#"{{"sources": [], {ONE_DEST}}}"#),
            "sources",
            "no sources",
        ),
        (
            format!(
                r#"{{"sources": [{{"id": "m", "type": "mysql", "passphrase": "p",
                    "options": "--defaults-file=/x"}}], {ONE_DEST}}}"#
            ),
            "sources[0].options",
            "first argument",
        ),
    ];
    for (text, key, reason) in cases {
        let e = parse_err(&text);
        assert_eq!(e.key(), Some(key), "{e}");
        assert!(e.to_string().contains(reason), "{e}");
    }
}

#[test]
fn a_snapshot_source_needs_no_protection() {
    // A snapshot source has no payload to encrypt; a streaming one still does.
    parse_ok(&format!(
        r#"{{"sources": [{{"id": "s", "type": "snapshot", "volume_id": "vol-1",
             "availability_zone": "eu-west-1a"}}], {ONE_DEST}}}"#
    ));
    let e = parse_err(&format!(
        r#"{{"sources": [{{"id": "s", "type": "rds", "instancename": "db1",
             "region": "eu-west-1"}}], {ONE_DEST}}}"#
    ));
    assert_eq!(e.key(), Some("sources[0].passphrase"), "{e}");
}

#[test]
fn name_defaults_to_id_and_modules_null_is_accepted() {
    let job = parse_ok(&format!(
        r#"{{"modules": null, "notifications": null,
            "sources": [{{"id": "etc", "type": "folder", "path": "/etc", "passphrase": "p"}}],
            {ONE_DEST}}}"#
    ));
    assert_eq!(job.sources[0].name, "etc");
    assert!(job.notifications.is_empty());
}

#[test]
fn secrets_never_in_debug_output() {
    let job = parse_ok(&format!(
        r#"{{"sources": [
            {{"id": "m", "type": "mysql", "dbpass": "hunter2-db", "passphrase": "hunter2-gpg"}},
            {{"id": "p", "type": "pgsql", "dbname": "x", "dbpass": "hunter2-pg",
              "passphrase": "hunter2-gpg"}}], {ONE_DEST}}}"#
    ));
    let debug = format!("{job:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("<secret>"));
}

#[test]
fn a_job_without_secrets_is_not_flagged() {
    let job = parse_ok(&format!(
        r#"{{"sources": [{{"id": "f", "type": "folder", "path": "/x", "compress_only": 1,
            "passphrase": ""}}], {ONE_DEST}}}"#
    ));
    assert!(!job.holds_secrets);
}

#[test]
fn load_reads_validates_and_reports_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nightly.cfg");
    std::fs::write(&file, ROOT_WITH_TRAILING_COMMA).unwrap();
    let job = load(&file, Strictness::Warn).unwrap();
    assert_eq!(job.file, file);
    let e = load(&dir.path().join("missing.cfg"), Strictness::Warn).unwrap_err();
    assert!(e.to_string().contains("missing.cfg"), "{e}");
    std::fs::write(&file, "{\"sources\": [}").unwrap();
    let e = load(&file, Strictness::Warn).unwrap_err().to_string();
    assert!(e.contains("nightly.cfg") && e.contains("line 1"), "{e}");
}

#[test]
fn hostname_falls_back_to_the_system() {
    let mut job = parse_ok(ROOT_WITH_TRAILING_COMMA);
    assert_eq!(job.hostname(), "my.hostname.com");
    job.hostname = None;
    assert!(!job.hostname().is_empty());
}

/// `max_parallel_sources`: absent means the engine's default; 1 to 64 (also as text, as every
/// count); 0, 65 and a non-number are errors naming the key and the value.
#[test]
fn max_parallel_sources_is_bounded() {
    let with = |v: &str| {
        format!(
            r#"{{"max_parallel_sources": {v},
                "sources": [{{"id": "f", "type": "folder", "path": "/x", "passphrase": "p"}}],
                "destinations": [{{"id": "l", "type": "local", "path": "/b"}}]}}"#
        )
    };
    assert_eq!(parse_ok(&with("null")).max_parallel_sources, None);
    assert_eq!(parse_ok(&with("1")).max_parallel_sources, Some(1));
    assert_eq!(parse_ok(&with("\"4\"")).max_parallel_sources, Some(4));
    assert_eq!(parse_ok(&with("64")).max_parallel_sources, Some(64));
    for (v, shown) in [("0", "\"0\""), ("65", "\"65\"")] {
        let e = parse_err(&with(v));
        assert_eq!(e.key(), Some("max_parallel_sources"), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("invalid value {shown}")) && text.contains("must be 1"),
            "{text}"
        );
    }
    let e = parse_err(&with("-2"));
    assert!(
        e.to_string().contains("max_parallel_sources") && e.to_string().contains("-2"),
        "{e}"
    );
}
