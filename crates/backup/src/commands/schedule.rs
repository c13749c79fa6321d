//! `backup schedule`: the systemd units (or crontab line) that run the job.

use std::path::Path;
use std::time::Duration;

use super::{CommandError, Outcome};
use crate::schedule::{self, Schedule};

/// What `backup schedule` is asked for.
#[derive(Debug, Clone)]
pub struct ScheduleRequest<'a> {
    /// The job file (made absolute).
    pub config: &'a Path,
    /// `OnCalendar=`: `daily`, `weekly`, ... or a systemd calendar expression.
    pub on: &'a str,
    /// `RandomizedDelaySec=` in seconds.
    pub randomized_delay: u32,
    /// The user the job runs as.
    pub user: &'a str,
    /// A crontab line instead of systemd units.
    pub cron: bool,
    /// Write the units into this directory (and enable the timer when it is systemd's).
    pub install: Option<&'a Path>,
}

/// Where `--install` writes units when not told otherwise; only there is the timer enabled.
pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// `backup schedule`: prints (or installs) the service template and the job's timer, or a
/// crontab line.
pub fn schedule(request: ScheduleRequest<'_>) -> Result<Outcome, CommandError> {
    let usage = |e: &dyn std::fmt::Display| CommandError::Usage(e.to_string());
    let job = std::fs::canonicalize(request.config)
        .map_err(|e| CommandError::Usage(format!("{}: {e}", request.config.display())))?;
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| CommandError::Usage(format!("cannot tell where this binary is: {e}")))?;
    let s = Schedule {
        job,
        on: request.on.to_owned(),
        randomized_delay: request.randomized_delay,
        user: request.user.to_owned(),
        exe,
    };
    s.validate().map_err(|e| usage(&e))?;
    if request.cron {
        return Ok(Outcome {
            stdout: s.cron().map_err(|e| usage(&e))?,
            ..Outcome::default()
        });
    }
    let timer_name = s.timer_name();
    let units = [
        (schedule::TEMPLATE.to_owned(), s.service()),
        (timer_name.clone(), s.timer()),
    ];
    let enable = format!("systemctl daemon-reload && systemctl enable --now '{timer_name}'");
    let Some(dir) = request.install else {
        let mut stdout = String::new();
        for (name, text) in &units {
            stdout.push_str(&format!("# {SYSTEM_UNIT_DIR}/{name}\n{text}\n"));
        }
        stdout.push_str(&format!("# then: {enable}\n"));
        return Ok(Outcome {
            stdout,
            ..Outcome::default()
        });
    };
    let mut stdout = String::new();
    for (name, text) in &units {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| CommandError::Usage(format!("{}: {e}", path.display())))?;
        stdout.push_str(&format!("wrote {}\n", path.display()));
    }
    if dir == Path::new(SYSTEM_UNIT_DIR) && Path::new("/run/systemd/system").is_dir() {
        for args in [&["daemon-reload"][..], &["enable", "--now", &timer_name]] {
            systemctl(args).map_err(|e| CommandError::Usage(e.to_string()))?;
        }
        stdout.push_str(&format!("enabled and started {timer_name}\n"));
    } else {
        stdout.push_str(&format!("to enable it: {enable}\n"));
    }
    Ok(Outcome {
        stdout,
        ..Outcome::default()
    })
}

fn systemctl(args: &[&str]) -> Result<(), custos_process::ProcessError> {
    let mut cmd = std::process::Command::new("systemctl");
    cmd.args(args);
    custos_process::Spawn::new("systemctl", cmd)
        .spawn()?
        .wait_timeout(Duration::from_secs(60))?
        .require_success()
        .map(drop)
}
