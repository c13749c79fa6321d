//! A dry run's check of hooks: nothing is started; a `command`'s program must be an
//! executable file (on PATH unless it holds a `/`) and a `shell` script must parse (`sh -n`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use custos_process::Spawn;

use super::log_failure;
use crate::job::{HookCommand, Hooks};
use crate::outcome::{Failure, Stage};

/// `sh -n` (the syntax check of a `shell` hook) may take this long.
const SYNTAX_CHECK: Duration = Duration::from_secs(10);

/// A dry run's check of every hook in `hooks` (none is started): a `command`'s program is
/// an executable file (on PATH unless it holds a `/`), a `shell` script parses (`sh -n`).
pub(crate) fn check(hooks: &Hooks, who: &str) -> Vec<Failure> {
    let failures: Vec<Failure> = hooks
        .all()
        .filter_map(|h| {
            let problem = match &h.run {
                HookCommand::Argv(_) => {
                    let program = h.run.program();
                    (!on_path(program)).then(|| {
                        if program.contains('/') {
                            format!("{program}: no such executable file")
                        } else {
                            format!("{program}: not found on PATH")
                        }
                    })
                }
                HookCommand::Shell(script) => shell_syntax(&h.at, script),
            }?;
            Some(Failure::new(
                Stage::Hook,
                format!("{who}: hook {}: {problem}", h.at),
                false,
            ))
        })
        .collect();
    for f in &failures {
        log_failure(who, f);
    }
    failures
}

/// Whether `program` names an executable file, as `execvp` would find it.
fn on_path(program: &str) -> bool {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| executable(&dir.join(program)))
    })
}

/// Why `sh -n` rejects `script`, if it does.
fn shell_syntax(at: &str, script: &str) -> Option<String> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-n").arg("-c").arg(script);
    let spawn = Spawn::new(format!("{at} (sh -n)"), cmd);
    match custos_process::run(spawn, SYNTAX_CHECK, 4096) {
        Ok(out) if out.exit.success() => None,
        Ok(out) => Some(format!(
            "not valid for /bin/sh: {}",
            custos_process::one_line(&out.exit.stderr)
        )),
        Err(e) => Some(e.to_string()),
    }
}
