//! Command-line options, parsed by hand (no argument-parser crate in the root process).
//!
//! Every choice about what root runs lives here, never in anything the exporter sends: the
//! helper reads no input from its clients.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// `--help` text.
pub const USAGE: &str = "\
usage: smart_exporter_helper [options]

Runs smartctl for prometheus_smart_exporter and answers each connection on a UNIX socket
with one frame holding every drive's smartctl JSON. Accepts no input from clients.

options:
  --socket-path PATH      create the socket here (a stale socket is replaced; mode 0660);
                          required unless started by systemd socket activation
  --timeout SECS          exit after SECS without a connection (default: never)
  -v                      more log output (-v warnings, -vv info, -vvv debug)
  --smartctl PATH         the smartctl to run (default: smartctl from PATH)
  --smartctl-arg ARG      one more argument for every per-device smartctl run (repeatable)
  --device 'PATH [-d TYPE]'
                          read this device too, e.g. '/dev/sda -d megaraid,1' (repeatable)
  --include GLOB          read only scanned devices whose path matches (repeatable; * and ?)
  --exclude GLOB          skip scanned devices whose path matches (repeatable)
  --no-scan               read only the --device devices
  --nocheck MODE          never|sleep|standby|idle: skip a drive in this power mode or lower
                          instead of waking it (default: standby)
  --xall                  read everything (smartctl --xall) instead of info, health,
                          attributes, error and self-test logs
  --device-timeout SECS   kill a device's smartctl after SECS (default: 30)
  --jobs N                devices read in parallel (default: 4)
  --client-timeout SECS   a client must take its whole frame within SECS (default: 30)
  --min-interval SECS     clients within SECS of the last sweep share its result instead
                          of starting another (default: 1)
  -h, --help              this text
  -V, --version           the version
";

/// Power-mode policy passed to smartctl's `--nocheck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCheck {
    Never,
    Sleep,
    Standby,
    Idle,
}

impl NoCheck {
    fn parse(s: &str) -> Option<NoCheck> {
        Some(match s {
            "never" => NoCheck::Never,
            "sleep" => NoCheck::Sleep,
            "standby" => NoCheck::Standby,
            "idle" => NoCheck::Idle,
            _ => return None,
        })
    }

    /// The value of smartctl's `--nocheck=`.
    pub fn as_str(self) -> &'static str {
        match self {
            NoCheck::Never => "never",
            NoCheck::Sleep => "sleep",
            NoCheck::Standby => "standby",
            NoCheck::Idle => "idle",
        }
    }
}

/// A device named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualDevice {
    pub path: String,
    pub dev_type: Option<String>,
}

impl ManualDevice {
    /// Parses `PATH` or `PATH -d TYPE`. The path must be absolute and the type made of the
    /// characters smartctl's types use, so nothing can pass for another smartctl option.
    pub fn parse(s: &str) -> Result<ManualDevice, UsageError> {
        let bad = || UsageError(format!("--device {s:?}: expected 'PATH' or 'PATH -d TYPE'"));
        let (path, dev_type) = match s.split_once(" -d ") {
            Some((p, t)) => (p.trim(), Some(t.trim())),
            None => (s.trim(), None),
        };
        if !path.starts_with('/') || path.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        if let Some(t) = dev_type {
            let ok = !t.is_empty()
                && !t.starts_with('-')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ",+/_-".contains(c));
            if !ok {
                return Err(bad());
            }
        }
        Ok(ManualDevice {
            path: path.to_string(),
            dev_type: dev_type.map(str::to_string),
        })
    }
}

/// Everything the helper was told.
#[derive(Debug, Clone)]
pub struct Options {
    pub socket_path: Option<PathBuf>,
    pub idle_timeout: Option<Duration>,
    pub verbosity: u8,
    pub smartctl: PathBuf,
    pub smartctl_args: Vec<String>,
    pub devices: Vec<ManualDevice>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub scan: bool,
    pub nocheck: NoCheck,
    pub xall: bool,
    pub device_timeout: Duration,
    pub jobs: usize,
    /// One deadline for writing a whole frame to one client.
    pub client_timeout: Duration,
    /// A sweep's result is served without a new sweep for this long after it finished.
    pub min_interval: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            socket_path: None,
            idle_timeout: None,
            verbosity: 0,
            smartctl: PathBuf::from("smartctl"),
            smartctl_args: Vec::new(),
            devices: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            scan: true,
            nocheck: NoCheck::Standby,
            xall: false,
            device_timeout: Duration::from_secs(30),
            jobs: 4,
            client_timeout: Duration::from_secs(30),
            min_interval: Duration::from_secs(1),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Options>),
    Help,
    Version,
}

/// A bad command line; printed with a pointer to `--help`, exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see --help)", self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses the arguments after the program name. `--opt=value` and `--opt value` both work.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, UsageError> {
    let mut o = Options::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, UsageError> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| UsageError(format!("{name} needs {what}")))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--socket-path" => o.socket_path = Some(PathBuf::from(value("a path")?)),
            "--timeout" => o.idle_timeout = Some(seconds(&name, &value("seconds")?)?),
            "--smartctl" => o.smartctl = PathBuf::from(value("a path")?),
            "--smartctl-arg" => o.smartctl_args.push(value("an argument")?),
            "--device" => o.devices.push(ManualDevice::parse(&value("a device")?)?),
            "--include" => o.include.push(value("a glob")?),
            "--exclude" => o.exclude.push(value("a glob")?),
            "--no-scan" => o.scan = false,
            "--xall" => o.xall = true,
            "--nocheck" => {
                let v = value("a mode")?;
                o.nocheck = NoCheck::parse(&v).ok_or_else(|| {
                    UsageError(format!(
                        "--nocheck {v:?}: expected never, sleep, standby or idle"
                    ))
                })?;
            }
            "--device-timeout" => o.device_timeout = seconds(&name, &value("seconds")?)?,
            "--client-timeout" => o.client_timeout = seconds(&name, &value("seconds")?)?,
            "--min-interval" => o.min_interval = seconds(&name, &value("seconds")?)?,
            "--jobs" => {
                let v = value("a number")?;
                o.jobs = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| UsageError(format!("--jobs {v:?}: expected 1-64")))?;
            }
            v if v.len() > 1 && v.starts_with('-') && v[1..].chars().all(|c| c == 'v') => {
                o.verbosity = o.verbosity.saturating_add((v.len() - 1) as u8);
            }
            _ => return Err(UsageError(format!("unknown argument {arg:?}"))),
        }
    }
    if !o.scan && o.devices.is_empty() {
        return Err(UsageError("--no-scan needs at least one --device".into()));
    }
    Ok(Command::Run(Box::new(o)))
}

/// A positive number of seconds, fractions allowed (`0.5`).
fn seconds(name: &str, v: &str) -> Result<Duration, UsageError> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            UsageError(format!(
                "{name} {v:?}: expected a positive number of seconds"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, UsageError> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Command::Run(o) => Ok(*o),
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn defaults_and_every_option() {
        let o = run(&[]).unwrap();
        assert!(o.scan && o.nocheck == NoCheck::Standby && o.jobs == 4);
        assert_eq!(o.device_timeout, Duration::from_secs(30));
        let o = run(&[
            "--socket-path=/run/x/ipc",
            "--timeout",
            "60",
            "-vv",
            "-v",
            "--smartctl",
            "/opt/smartctl",
            "--smartctl-arg=-q",
            "--device",
            "/dev/bus/0 -d megaraid,1",
            "--device=/dev/sdb",
            "--include",
            "/dev/sd*",
            "--exclude=/dev/sdz",
            "--nocheck=never",
            "--xall",
            "--device-timeout",
            "0.5",
            "--jobs=8",
            "--client-timeout=2.5",
            "--min-interval",
            "10",
        ])
        .unwrap();
        assert_eq!(o.socket_path.unwrap(), PathBuf::from("/run/x/ipc"));
        assert_eq!(o.idle_timeout, Some(Duration::from_secs(60)));
        assert_eq!(o.verbosity, 3);
        assert_eq!(o.smartctl_args, ["-q"]);
        assert_eq!(
            o.devices,
            [
                ManualDevice {
                    path: "/dev/bus/0".into(),
                    dev_type: Some("megaraid,1".into())
                },
                ManualDevice {
                    path: "/dev/sdb".into(),
                    dev_type: None
                }
            ]
        );
        assert_eq!((o.include.len(), o.exclude.len()), (1, 1));
        assert_eq!(o.nocheck, NoCheck::Never);
        assert!(o.xall);
        assert_eq!(o.device_timeout, Duration::from_millis(500));
        assert_eq!(o.jobs, 8);
        assert_eq!(o.client_timeout, Duration::from_millis(2500));
        assert_eq!(o.min_interval, Duration::from_secs(10));
    }

    #[test]
    fn rejects_what_could_smuggle_options() {
        for bad in [
            "sda",
            "--scan",
            "/dev/sda -d -x",
            "/dev/sda -d megaraid,1 --foo",
            "/dev/sda -d",
        ] {
            assert!(ManualDevice::parse(bad).is_err(), "{bad}");
        }
        assert!(run(&["--jobs", "0"]).is_err());
        assert!(run(&["--timeout", "-1"]).is_err());
        assert!(run(&["--nocheck", "sometimes"]).is_err());
        assert!(run(&["--bogus"]).is_err());
        assert!(run(&["--socket-path"]).is_err());
        assert!(run(&["--no-scan"]).is_err());
        assert!(matches!(parse(["--help".to_string()]), Ok(Command::Help)));
    }

    proptest::proptest! {
        /// Any UTF-8 (multi-byte characters included) is parsed without a panic, and what is
        /// accepted can never reach smartctl as an option.
        #[test]
        fn any_device_text_is_safe(s in "\\PC{0,40}( -d \\PC{0,12})?") {
            if let Ok(d) = ManualDevice::parse(&s) {
                proptest::prop_assert!(d.path.starts_with('/'));
                proptest::prop_assert!(!d.path.chars().any(char::is_whitespace));
                if let Some(t) = d.dev_type {
                    proptest::prop_assert!(!t.starts_with('-') && !t.is_empty());
                }
            }
        }

        #[test]
        fn any_verbosity_like_argument_parses_without_panic(s in "-\\PC{0,6}") {
            let _ = parse([s]);
        }
    }
}
