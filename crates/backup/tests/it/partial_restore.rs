//! `restore --path` (one file, one directory, a pattern that matches nothing) and `backup ls`
//! against a real folder copy; hostile archives through `--path` are in hostile_restore.rs.

use crate::common;

use std::fs;

use common::*;

#[test]
fn restore_path_takes_one_file_or_one_directory_and_ls_lists_members() {
    let t = tempfile::tempdir().expect("tempdir");
    let data = t.path().join("data");
    for (p, body) in [
        ("etc/hosts", "127.0.0.1 localhost\n"),
        ("etc/nginx/nginx.conf", "worker_processes 1;\n"),
        ("etc/nginx/conf.d/site.conf", "server {}\n"),
        ("var/log/big.log", "x\n"),
    ] {
        let f = data.join(p);
        fs::create_dir_all(f.parent().unwrap()).expect("mkdir");
        fs::write(&f, body).expect("write");
    }
    let dest = t.path().join("dest");
    fs::create_dir_all(&dest).expect("mkdir");
    let mut source = folder_source("files", &data);
    source["passphrase"] = "partial-restore-test".into();
    let mut job = Job::new(t.path());
    job.source(source)
        .destination(local_destination("disk", &dest));
    let cfg = job.write();
    run_job(&cfg).assert_code(0);

    // One file.
    let one = t.path().join("one");
    let r = backup([
        "restore".as_ref(),
        cfg.as_os_str(),
        "--source".as_ref(),
        "files".as_ref(),
        "--to".as_ref(),
        one.as_os_str(),
        "--path".as_ref(),
        "data/etc/hosts".as_ref(),
    ]);
    r.assert_code(0);
    assert_eq!(files_under(&one), ["data/etc/hosts"], "{}", r.describe());
    assert_eq!(
        fs::read(one.join("data/etc/hosts")).unwrap(),
        fs::read(data.join("etc/hosts")).unwrap()
    );

    // One directory, with everything below it.
    let dir = t.path().join("dir");
    let r = backup([
        "restore".as_ref(),
        cfg.as_os_str(),
        "--source".as_ref(),
        "files".as_ref(),
        "--to".as_ref(),
        dir.as_os_str(),
        "--path".as_ref(),
        "./data/etc/nginx/".as_ref(),
    ]);
    r.assert_code(0);
    assert_eq!(
        files_under(&dir),
        [
            "data/etc/nginx/conf.d/site.conf",
            "data/etc/nginx/nginx.conf"
        ],
        "{}",
        r.describe()
    );

    // A pattern that matches nothing restores nothing and says which.
    let none = t.path().join("none");
    let r = backup([
        "restore".as_ref(),
        cfg.as_os_str(),
        "--source".as_ref(),
        "files".as_ref(),
        "--to".as_ref(),
        none.as_os_str(),
        "--path".as_ref(),
        "data/etc/hosts".as_ref(),
        "--path".as_ref(),
        "data/etc/passwd".as_ref(),
    ]);
    r.assert_code(1);
    assert!(
        r.stderr_text()
            .contains("no member matches --path data/etc/passwd"),
        "{}",
        r.describe()
    );
    assert!(
        !none.exists() || files_under(&none).is_empty(),
        "nothing restored"
    );

    // ls: every member with its size, nothing written.
    let r = backup([
        "ls".as_ref(),
        cfg.as_os_str(),
        "--source".as_ref(),
        "files".as_ref(),
    ]);
    r.assert_code(0);
    let out = r.stdout_text();
    let row = out
        .lines()
        .find(|l| l.ends_with("data/etc/nginx/nginx.conf"))
        .unwrap_or_else(|| panic!("no row:\n{out}"));
    let words: Vec<&str> = row.split_whitespace().collect();
    let size = fs::metadata(data.join("etc/nginx/nginx.conf"))
        .unwrap()
        .len();
    assert_eq!(
        (words[0], words[1]),
        ("-", size.to_string().as_str()),
        "{row}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("d ") && l.ends_with("data/etc/")),
        "{out}"
    );
}
