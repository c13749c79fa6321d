//! Hooks run as real `/bin/sh` children that append to a file (the run itself is the
//! integration tests' part: `tests/it/hooks.rs`).

use super::*;
use crate::job::parse;
use crate::outcome::DestinationReport;
use std::path::PathBuf;

/// A job whose one source has `source_hooks` and whose root has `job_hooks`.
fn job(dir: &Path, job_hooks: &str, source_hooks: &str) -> JobConfig {
    let text = format!(
        r#"{{"hooks": {job_hooks},
            "sources": [{{"id": "www", "type": "folder", "path": "{d}", "compress_only": 1,
                          "hooks": {source_hooks}}}],
            "destinations": [{{"id": "disk", "type": "local", "path": "{d}"}}]}}"#,
        d = dir.display()
    );
    let j = parse(Path::new("job.json"), &text).unwrap_or_else(|e| panic!("{e}"));
    j.validate().unwrap_or_else(|e| panic!("{e}"));
    j
}

/// A hook appending `$CUSTOS_HOOK:$CUSTOS_SOURCE:$CUSTOS_STATUS` to `log`, then exiting
/// with `code`.
fn record(log: &Path, code: i32) -> String {
    format!(
        r#"{{"shell": "echo \"$CUSTOS_HOOK:${{CUSTOS_SOURCE-}}:${{CUSTOS_STATUS-}}\" >> '{}'; exit {code}"}}"#,
        log.display()
    )
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn stored(s: &SourceConfig) -> SourceReport {
    let mut r = SourceReport::new(&s.id, &s.name, &s.kind);
    r.object = Some("www/20260101000000/www.tar.zst".into());
    r.stored_bytes = Some(42);
    r.destinations.push(DestinationReport {
        id: "disk".into(),
        upload: Duration::ZERO,
        result: Ok(()),
        retention: None,
    });
    r
}

fn start(job: &JobConfig, cancel: Cancel) -> RunHooks<'_> {
    RunHooks::start(
        job,
        Path::new("/etc/custos/job.json"),
        RunStamp::now(),
        "host",
        false,
        cancel,
    )
}

#[test]
fn a_successful_source_runs_before_then_after_and_no_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let all = |code| {
        format!(
            r#"{{"before": [{r}], "after": [{r}], "on_error": [{r}]}}"#,
            r = record(&log, code)
        )
    };
    let job = job(dir.path(), &all(0), &all(0));
    let hooks = start(&job, Cancel::new());
    let s = &job.sources[0];
    let mut reports = vec![hooks.around_source(s, || {
        std::fs::write(dir.path().join("ran"), b"").unwrap();
        stored(s)
    })];
    hooks.finish(&mut reports);
    assert!(reports[0].succeeded(), "{:?}", reports[0]);
    assert!(dir.path().join("ran").exists());
    assert_eq!(
        lines(&log),
        ["before::", "before:www:", "after:www:ok", "after::ok"]
    );
}

#[test]
fn a_failing_before_skips_its_source_and_on_error_runs_before_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let source = format!(
        r#"{{"before": [{bad}, {ok}], "after": [{ok}], "on_error": [{ok}]}}"#,
        bad = record(&log, 3),
        ok = record(&log, 0)
    );
    let job = job(
        dir.path(),
        &format!(r#"{{"on_error": [{}]}}"#, record(&log, 0)),
        &source,
    );
    let hooks = start(&job, Cancel::new());
    let s = &job.sources[0];
    let mut reports = vec![hooks.around_source(s, || panic!("the source ran"))];
    hooks.finish(&mut reports);
    let f = reports[0].failure.as_ref().expect("a failure");
    assert_eq!(f.stage, Stage::Hook);
    assert!(
        f.message.starts_with(
            "source 'www': before hook sources[0].hooks.before[0] (sh) exited with status 3"
        ),
        "{}",
        f.message
    );
    assert_eq!(
        lines(&log),
        [
            "before:www:",
            "on_error:www:failed",
            "after:www:failed",
            "on_error::failed"
        ]
    );
}

#[test]
fn a_failing_after_fails_the_source_but_keeps_its_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let job = job(
        dir.path(),
        &format!(r#"{{"after": [{}]}}"#, record(&log, 1)),
        r#"{"after": [{"shell": "echo first >&2; echo 'second é' >&2; exit 4"}]}"#,
    );
    let hooks = start(&job, Cancel::new());
    let s = &job.sources[0];
    let mut reports = vec![hooks.around_source(s, || stored(s))];
    hooks.finish(&mut reports);
    let r = &reports[0];
    assert!(!r.succeeded());
    assert_eq!(r.object.as_deref(), Some("www/20260101000000/www.tar.zst"));
    assert!(r.destinations[0].result.is_ok());
    let messages: Vec<&str> = r.hooks.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "source 'www': after hook sources[0].hooks.after[0] (sh) exited with status 4: \
             first; second é",
            "job: after hook hooks.after[0] (sh) exited with status 1"
        ]
    );
}

#[test]
fn after_a_signal_no_before_starts_but_after_hooks_run() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let both = format!(
        r#"{{"before": [{r}], "after": [{r}]}}"#,
        r = record(&log, 0)
    );
    let job = job(dir.path(), "{}", &both);
    let cancel = Cancel::new();
    cancel.cancel(15);
    let hooks = start(&job, cancel);
    let s = &job.sources[0];
    let r = hooks.around_source(s, || panic!("the source ran"));
    assert_eq!(
        r.failure.as_ref().map(|f| f.message.as_str()),
        Some("source 'www': before hook sources[0].hooks.before[0] not started: interrupted by signal 15")
    );
    assert_eq!(lines(&log), ["after:www:interrupted"]);
}

#[test]
fn a_timeout_kills_the_hook_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(
        dir.path(),
        r#"{"before": [{"shell": "echo waiting; sleep 30", "timeout": 1}]}"#,
        "{}",
    );
    let started = std::time::Instant::now();
    let hooks = start(&job, Cancel::new());
    assert!(started.elapsed() < Duration::from_secs(20));
    let f = hooks.blocked.as_ref().expect("the job's before failed");
    assert!(f.retryable);
    assert_eq!(
        f.message,
        "job: before hook hooks.before[0] (sh) did not finish within its timeout of 1 s; \
         its process group was killed: waiting"
    );
    let r = hooks.around_source(&job.sources[0], || panic!("the source ran"));
    assert!(r.failure.as_ref().is_some_and(|f| f
        .message
        .starts_with("source 'www' not run: job: before hook")));
}

#[test]
fn environment_names_the_run_and_the_stored_copy_argv_is_not_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("env");
    let job = job(
        dir.path(),
        "{}",
        &format!(
            r#"{{"after": [{{"command": ["sh", "-c", "env | grep ^CUSTOS_ | sort > \"$0\"; printf '%s' \"$1\" >> \"$0\"", "{}", "$(id)"]}}]}}"#,
            out.display()
        ),
    );
    let hooks = start(&job, Cancel::new());
    let s = &job.sources[0];
    let r = hooks.around_source(s, || stored(s));
    assert!(r.succeeded(), "{:?}", r.hooks);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut want: Vec<String> = vec![
        "CUSTOS_DESTINATIONS=disk".into(),
        "CUSTOS_HOOK=after".into(),
        "CUSTOS_HOST=host".into(),
        "CUSTOS_JOB=/etc/custos/job.json".into(),
        "CUSTOS_OBJECT=www/20260101000000/www.tar.zst".into(),
    ];
    let run = text
        .lines()
        .find(|l| l.starts_with("CUSTOS_RUN="))
        .expect("CUSTOS_RUN");
    want.push(run.to_owned());
    want.extend([
        "CUSTOS_SIZE=42".into(),
        "CUSTOS_SOURCE=www".into(),
        "CUSTOS_STATUS=ok".into(),
        "$(id)".into(),
    ]);
    // Variables of the hook's own set; other inherited `CUSTOS_*` ones (the test harness's
    // CUSTOS_REQUIRE_SERVICES) pass through like the rest of the environment.
    let ours = |l: &&str| {
        !l.starts_with("CUSTOS_") || super::VARS.iter().any(|v| l.starts_with(&format!("{v}=")))
    };
    assert_eq!(text.lines().filter(ours).collect::<Vec<_>>(), want);
    assert_eq!(run.len(), "CUSTOS_RUN=".len() + 14, "{run}");
}

#[test]
fn a_dry_run_checks_programs_and_scripts_without_running_them() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let job = job(
        dir.path(),
        &format!(
            r#"{{"before": [{{"command": ["sh", "-c", "touch '{}'"]}}, {{"command": ["no-such-program-custos"]}}],
                "after": [{{"command": ["/nonexistent/bin/x"]}}, {{"shell": "if then fi"}}, {{"shell": "touch '{}'"}}]}}"#,
            marker.display(),
            marker.display()
        ),
        "{}",
    );
    let failures = check(&job.hooks, "job");
    let messages: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(
        messages[0],
        "job: hook hooks.before[1]: no-such-program-custos: not found on PATH"
    );
    assert_eq!(
        messages[1],
        "job: hook hooks.after[0]: /nonexistent/bin/x: no such executable file"
    );
    assert!(
        messages[2].starts_with("job: hook hooks.after[1]: not valid for /bin/sh: "),
        "{}",
        messages[2]
    );
    assert!(!marker.exists(), "a dry run started a hook");
}

/// Sources may run on threads of their own: one `RunHooks` serves them all.
#[test]
fn run_hooks_can_be_shared_between_threads() {
    fn shared<T: Sync>() {}
    shared::<RunHooks<'static>>();
}
