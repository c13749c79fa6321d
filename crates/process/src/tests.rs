//! The crate against real children (`sh`, `sleep`, `yes`).

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{run, Child, ProcessError, Registry, SecretFile, Spawn, Stdin};

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

fn spawn(name: &str, script: &str) -> Child {
    Spawn::new(name, sh(script)).spawn().expect("spawn sh")
}

/// Whether process `pid` still exists (and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn streams_stdout_and_exits_zero() {
    let mut c = spawn("sh", "printf hello");
    let mut out = String::new();
    c.stdout().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "hello");
    let exit = c.wait().unwrap();
    assert!(exit.success());
    assert_eq!(exit.clone().require_success().unwrap(), exit);
}

#[test]
fn exit_status_and_stderr_tail_are_typed() {
    let mut c = spawn(
        "dumper",
        "printf partial; echo 'first line' >&2; echo 'boom: disk on fire' >&2; exit 3",
    );
    let mut out = Vec::new();
    c.stdout().unwrap().read_to_end(&mut out).unwrap();
    let e = c.wait().unwrap().require_success().unwrap_err();
    assert!(
        matches!(&e, ProcessError::Exited { code: 3, stderr, .. } if stderr.contains("boom")),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "dumper exited with status 3: first line; boom: disk on fire"
    );
}

#[test]
fn a_signal_is_its_own_kind() {
    let mut c = spawn("sh", "printf x; kill -9 $$");
    let mut out = Vec::new();
    c.stdout().unwrap().read_to_end(&mut out).unwrap();
    let e = c.wait().unwrap_err();
    assert!(
        matches!(e, ProcessError::Signaled { signal: 9, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("killed by signal 9"), "{e}");
}

/// A wrapper that forks (`sleep & sleep`) holds the pipes: the deadline must kill the
/// whole group, children included, and say it timed out.
#[test]
fn the_deadline_kills_the_whole_group() {
    let t = Instant::now();
    let mut c = spawn("wrapper", "sleep 30 & echo $! >&2; sleep 30");
    let e = c.wait_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let ProcessError::TimedOut { after, stderr, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(*after, Duration::from_millis(300));
    let grandchild: u32 = stderr.trim().parse().expect("pid on stderr");
    // SIGKILL reached the whole group at once, but another process dies when it is next
    // scheduled: wait for that (bounded), not for its own 30 s.
    let killed = Instant::now();
    while alive(grandchild) {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the wrapper's child outlived the deadline"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(e.to_string().contains("timeout of 0.3 s"), "{e}");
}

#[test]
fn spawn_failures_say_not_found_or_permission_denied() {
    let e = Spawn::new("nope", Command::new("/nonexistent/custos-no-such-program"))
        .spawn()
        .err()
        .unwrap();
    assert!(matches!(e, ProcessError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("custos-no-such-program"), "{e}");

    let dir = std::env::temp_dir().join(format!("custos-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let e = Spawn::new("x", Command::new(&file)).spawn().err().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // No x bit: EACCES, for root too.
    assert!(matches!(e, ProcessError::PermissionDenied { .. }), "{e:?}");
}

#[test]
fn run_returns_any_status_with_stdout() {
    let out = run(
        Spawn::new("sh", sh("echo '{}'; echo warn >&2; exit 4")),
        Duration::from_secs(10),
        1024,
    )
    .unwrap();
    assert_eq!(out.exit.code, 4);
    assert_eq!(out.stdout, b"{}\n");
    assert_eq!(out.exit.stderr, "warn\n");
}

#[test]
fn run_refuses_endless_output_at_once() {
    let t = Instant::now();
    let e = run(
        Spawn::new("yes", sh("exec yes")),
        Duration::from_secs(20),
        4096,
    )
    .unwrap_err();
    assert!(
        matches!(e, ProcessError::OutputTooLarge { limit: 4096, .. }),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn run_times_out_a_hanging_command() {
    let t = Instant::now();
    let e = run(
        Spawn::new("sh", sh("exec sleep 30")),
        Duration::from_millis(200),
        1024,
    )
    .unwrap_err();
    assert!(matches!(e, ProcessError::TimedOut { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn dropping_a_running_child_kills_it() {
    let c = spawn("sleep", "exec sleep 30");
    let pid = c.id();
    let t = Instant::now();
    drop(c);
    assert!(t.elapsed() < Duration::from_secs(5));
    // Reaped by the drop: gone, not a zombie.
    assert!(!alive(pid));
}

#[test]
fn waiting_before_the_end_of_stdout_does_not_hang() {
    // More than a pipe holds; waiting early closes our end and the writer gets EPIPE.
    let mut c = spawn("yes", "yes | head -c 10000000");
    let t = Instant::now();
    let _ = c.wait();
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn long_stderr_is_cut_to_the_tail() {
    let mut c = spawn(
        "sh",
        "i=0; while [ $i -lt 2000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; exit 2",
    );
    let err = c.wait().unwrap().into_error().to_string();
    assert!(err.contains("line 1999"), "{err}");
    assert!(!err.contains("line 10;"), "{err}");
    assert!(err.len() < 3000, "{}", err.len());
}

#[test]
fn cancelling_a_registry_kills_running_and_later_children() {
    static REG: Registry = Registry::new();
    let mut running = Spawn::new("sleep", sh("exec sleep 30"))
        .registry(&REG)
        .spawn()
        .unwrap();
    let t = Instant::now();
    assert_eq!(REG.cancel(), 1);
    assert!(matches!(
        running.wait(),
        Err(ProcessError::Signaled { signal: 9, .. })
    ));
    let mut later = Spawn::new("sleep", sh("exec sleep 30"))
        .registry(&REG)
        .spawn()
        .unwrap();
    assert!(later.wait().is_err());
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn has_exited_does_not_reap() {
    let mut c = spawn("sh", "exit 7");
    let t = Instant::now();
    while !c.has_exited().unwrap() {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.wait().unwrap().code, 7);
    let running = spawn("sleep", "exec sleep 30");
    assert!(!running.has_exited().unwrap());
}

/// The child finds the secret as a regular 0600 file at /dev/fd/0 (what libpq and
/// MariaDB's option reader require), readable more than once, and no path on disk.
#[test]
fn a_secret_is_a_0600_regular_file_at_dev_fd_0() {
    let s = SecretFile::new("custos-test", "password=\"x\"\n").unwrap();
    let script = "stat -L -c '%a %F' /dev/fd/0; readlink /dev/fd/0; cat /dev/fd/0; cat /dev/fd/0";
    let out = run(
        Spawn::new("sh", sh(script)).stdin(Stdin::Secret(s)),
        Duration::from_secs(10),
        4096,
    )
    .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("600 regular file"), "{out}");
    assert!(
        lines
            .next()
            .unwrap_or_default()
            .starts_with("/memfd:custos-test"),
        "{out}"
    );
    assert_eq!(
        lines.collect::<Vec<_>>(),
        ["password=\"x\"", "password=\"x\""],
        "{out}"
    );
}

/// A child that reads stdin as a stream (ssh forwarding it to another host) gets the whole
/// text, not an empty file at the offset where writing it ended.
#[test]
fn a_secret_read_as_a_stream_starts_at_its_beginning() {
    let s = SecretFile::new("custos-test-stream", "[client]\npassword=x\n").unwrap();
    let out = run(
        Spawn::new("cat", Command::new("cat")).stdin(Stdin::Secret(s)),
        Duration::from_secs(10),
        4096,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[client]\npassword=x\n"
    );
}

/// Device and inode of every descriptor `pid` holds.
fn open_files(pid: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(st) = rustix::fs::stat(e.path()) {
            out.push((st.st_dev, st.st_ino));
        }
    }
    out
}

/// This process holds no copy once the child runs, and a child spawned meanwhile (by any
/// thread) does not inherit it: only the child it was given to has it, as stdin.
#[test]
fn a_secret_is_closed_after_spawn_and_reaches_no_other_child() {
    let s = SecretFile::new("custos-test-leak", "secret").unwrap();
    let id = s.identity().unwrap();
    assert!(open_files("self").contains(&id));
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    let seen = open_files(&other.id().to_string());
    let _ = other.kill();
    let _ = other.wait();
    assert!(!seen.is_empty());
    assert!(!seen.contains(&id), "another child inherited the secret");

    let holder = Spawn::new("sleep", sh("exec sleep 30"))
        .stdin(Stdin::Secret(s))
        .spawn()
        .unwrap();
    assert!(
        !open_files("self").contains(&id),
        "the parent still holds the secret after spawn"
    );
    assert!(open_files(&holder.id().to_string()).contains(&id));
}

/// A child that exited within its deadline but is waited for only later (its caller was
/// still reading the pipe) ended in time: its status, not a timeout.
#[test]
fn a_child_that_exited_in_time_is_not_timed_out_by_a_late_wait() {
    let mut c = spawn("sh", "exit 5");
    c.set_deadline(Duration::from_millis(100));
    let t = Instant::now();
    while !c.has_exited().unwrap() {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.wait().unwrap().code, 5);
}

#[test]
fn merged_output_keeps_both_streams_in_order_and_goes_to_the_line_hook() {
    static LINES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    fn hook(program: &str, line: &str) {
        LINES.lock().unwrap().push(format!("{program}: {line}"));
    }
    let mut child = Spawn::new("merged", sh("echo one; echo two >&2; echo three; exit 3"))
        .merge_output()
        .on_stderr_line(hook)
        .spawn()
        .unwrap();
    assert!(child.stdout().is_none(), "stdout goes to the merged pipe");
    let exit = child.wait().unwrap();
    assert_eq!(exit.code, 3);
    assert_eq!(exit.stderr, "one\ntwo\nthree\n");
    assert_eq!(
        *LINES.lock().unwrap(),
        ["merged: one", "merged: two", "merged: three"]
    );
}

#[test]
fn a_background_process_holding_stderr_does_not_hang_wait() {
    // The child exits at once; the `sleep` it leaves (in a new session, so killing the group
    // does not reach it) keeps stderr's write end open for 30 s.
    let mut child = spawn(
        "leaves",
        "echo before >&2; setsid sleep 30 >/dev/null & echo after >&2",
    );
    let started = Instant::now();
    let exit = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(exit.code, 0);
    assert_eq!(exit.stderr, "before\nafter\n");
}
