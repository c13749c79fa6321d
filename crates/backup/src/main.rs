//! `backup`: runs the original's JSON job files (`backup [-v] [-d] CONFIG`, as cron runs it),
//! and gets backups back (`list`, `restore`, `verify`).
//!
//! Exit codes: 0 everything succeeded, 1 something failed (a source, a destination, a
//! restore, a verify, listing a destination), 2 bad usage or config, 3 `list --check`: a
//! copy is missing at a destination (and every destination could be listed).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use custos_backup::commands::{
    self, CommandError, Keys, ListRequest, LsRequest, Outcome, PruneRequest, RestoreRequest,
    RunRequest, ScheduleRequest, Signals, StatusRequest, VerifyRequest,
};
use custos_kit::config::Strictness;
use custos_kit::start::Failure;
use std::time::Duration;

/// Backs up folders and databases as the job file says: stream, compress, encrypt, store.
#[derive(Debug, Parser)]
#[command(name = "backup", version, about, long_about = None)]
struct Cli {
    /// Log what happens (info level); without it only warnings and errors are printed.
    #[arg(short = 'v', long = "verbose", global = true)]
    verbose: bool,
    /// Log everything (debug level).
    #[arg(short = 'd', long = "debug", global = true)]
    debug: bool,
    /// A key in the job file that nothing reads is an error, not a warning (with --dry-run:
    /// checks a job file in CI).
    #[arg(long, global = true)]
    strict: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the job: back up every source to every destination, then apply retention.
    Run {
        /// The JSON job file.
        config: PathBuf,
        /// Check the config and reach every source and destination; write nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Wait up to SECONDS for another run of this job to finish (default: fail at once).
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        lock_wait: u64,
    },
    /// List the stored copies: a row per copy, a column per destination; a copy that a
    /// destination lacks (and its retention would keep) is MISSING there.
    List {
        config: PathBuf,
        /// Only this source id.
        #[arg(long)]
        source: Option<String>,
        /// A row per copy per destination, with object name, age and sha256 sidecar.
        #[arg(long, short = 'l')]
        long: bool,
        /// Exit 3 when a copy is missing at a destination (for monitoring scripts).
        #[arg(long, conflicts_with = "long")]
        check: bool,
    },
    /// Stream a copy back: decrypt, decompress, then untar into DIR or write the dump.
    Restore {
        config: PathBuf,
        /// Source id to restore.
        #[arg(long)]
        source: String,
        /// Run timestamp (YYYYmmddHHMMSS, as in `backup list`); the newest copy if absent.
        #[arg(long)]
        at: Option<String>,
        /// Destination id to read from; the first one (config order) that has the copy if absent.
        #[arg(long)]
        destination: Option<String>,
        /// Target directory (created if missing), or `-` for the raw tar/dump on stdout;
        /// required unless --database loads the dump into the source's server.
        #[arg(long, required_unless_present = "database")]
        to: Option<PathBuf>,
        /// One database of a per-database source (`dbname: all` or a list); without --to,
        /// its dump is loaded into the source's server.
        #[arg(long, value_name = "NAME")]
        database: Option<String>,
        /// Load into this database (created if missing) instead of NAME.
        #[arg(
            long = "as",
            value_name = "NEW",
            requires = "database",
            conflicts_with = "to"
        )]
        into: Option<String>,
        /// Load even into a database that exists and holds tables.
        #[arg(long, requires = "database", conflicts_with = "to")]
        force: bool,
        /// Only this file or directory of a folder copy (repeatable), e.g. etc/nginx; read
        /// from the stream, nothing else is unpacked.
        #[arg(long = "path", value_name = "PATTERN", requires = "to")]
        paths: Vec<String>,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// List the members of a folder copy (type, size, time, path) without writing them.
    Ls {
        config: PathBuf,
        /// Source id.
        #[arg(long)]
        source: String,
        /// Run timestamp (YYYYmmddHHMMSS); the newest copy if absent.
        #[arg(long)]
        at: Option<String>,
        /// Destination id to read from; the first that has the copy if absent.
        #[arg(long)]
        destination: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Read the newest copy of each source end to end and check its sha256 sidecar (with
    /// --sample, a random share of all copies); the result goes to the job's notifiers.
    Verify {
        config: PathBuf,
        /// Only these source ids.
        #[arg(long)]
        source: Vec<String>,
        /// Read this percentage (0 < PERCENT <= 100) of every source's copies at each
        /// destination, chosen at random (at least one), instead of the newest.
        #[arg(long, value_name = "PERCENT")]
        sample: Option<commands::Percent>,
        /// Seed of the --sample choice: the same seed reads the same copies again.
        #[arg(long, value_name = "N", requires = "sample")]
        seed: Option<u64>,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Apply each destination's retention now, without a run: a row per copy, what happens to
    /// it and which rules keep it (the newest good copy always stays).
    Prune {
        config: PathBuf,
        /// Only this source id.
        #[arg(long)]
        source: Option<String>,
        /// Say what would be deleted and why the rest stays; delete nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Per source and destination: the newest good copy, its age and size, the last verify;
    /// exit 1 when one is older than max_age or missing (a Nagios/Icinga check).
    Status {
        config: PathBuf,
        /// JSON instead of the summary line and table.
        #[arg(long)]
        json: bool,
        /// Also write the status for node_exporter's textfile collector to FILE.
        #[arg(long, value_name = "FILE")]
        textfile: Option<PathBuf>,
    },
    /// Print the systemd service and timer (or a crontab line) that run the job on a
    /// schedule; --install writes them.
    Schedule {
        config: PathBuf,
        /// hourly, daily, weekly, monthly, yearly, or a systemd calendar expression
        /// ('*-*-* 02:30', 'Mon..Fri *-*-* 01:00').
        #[arg(long, value_name = "WHEN")]
        on: String,
        /// Spread the start over up to SECONDS (RandomizedDelaySec).
        #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
        randomized_delay: u32,
        /// The user the job runs as (it must read the job file; as the shipped units).
        #[arg(long, default_value = "backups")]
        user: String,
        /// An /etc/cron.d line instead of systemd units.
        #[arg(long, conflicts_with = "install")]
        cron: bool,
        /// Write the units into DIR and enable the timer when DIR is /etc/systemd/system.
        #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = commands::SYSTEM_UNIT_DIR)]
        install: Option<PathBuf>,
    },
}

/// How to open objects encrypted to `recipients` (passphrase sources use the config).
#[derive(Debug, Args)]
struct KeyArgs {
    /// Secret key file (armored or binary) for objects encrypted to recipients.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Environment variable holding the passphrase that unlocks --key.
    #[arg(long, value_name = "VAR", requires = "key")]
    key_passphrase_env: Option<String>,
    /// gpg home for objects opened by gpg (recipients without --key); default $GNUPGHOME.
    #[arg(long, value_name = "DIR")]
    gnupg_home: Option<PathBuf>,
}

const SUBCOMMANDS: &[&str] = &[
    "run", "list", "restore", "ls", "verify", "prune", "schedule", "status", "help",
];

/// The CLI, with the options of `run` listed in the top-level help: the original's form
/// `backup [-n] CONFIG` takes them without the word `run`, so `backup --help` shows them.
fn command() -> clap::Command {
    let cmd = Cli::command();
    let mut text = String::from(
        "The original's form `backup [-v] [-d] [OPTIONS] CONFIG` is `backup run`; its options:\n",
    );
    if let Some(run) = cmd.find_subcommand("run") {
        for arg in run
            .get_arguments()
            .filter(|a| !a.is_positional() && !a.is_hide_set())
        {
            let mut flag = match (arg.get_short(), arg.get_long()) {
                (Some(s), Some(l)) => format!("-{s}, --{l}"),
                (None, Some(l)) => format!("    --{l}"),
                (Some(s), None) => format!("-{s}"),
                (None, None) => continue,
            };
            if arg.get_action().takes_values() {
                for v in arg.get_value_names().unwrap_or_default() {
                    flag.push_str(&format!(" <{v}>"));
                }
            }
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            text.push_str(&format!("  {flag:<25}  {help}\n"));
        }
    }
    cmd.after_help(text)
}

/// The original's `backup [-v] [-d] CONFIG`: a first positional that is not a subcommand
/// name means `run`.
fn with_default_subcommand(args: Vec<OsString>) -> Vec<OsString> {
    let first_positional = args
        .iter()
        .skip(1)
        .find(|a| !a.to_string_lossy().starts_with('-'));
    match first_positional {
        Some(p) if !SUBCOMMANDS.contains(&p.to_string_lossy().as_ref()) => {
            let mut out = args.clone();
            out.insert(1.min(out.len()), OsString::from("run"));
            out
        }
        _ => args,
    }
}

fn main() -> ExitCode {
    // Passphrases and database passwords live in this process's memory: no core dumps, no
    // ptrace by other processes of the same user. Children get the default back at exec.
    let dumpable =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let matches =
        command().get_matches_from(with_default_subcommand(std::env::args_os().collect()));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let level = if cli.debug {
        "debug"
    } else if cli.verbose {
        "info"
    } else {
        "warn"
    };
    let log_tail = custos_kit::logging::LogTail::new(LOG_TAIL_LINES);
    custos_kit::logging::init_with_tail(level, false, Some(log_tail.clone()));
    if let Err(e) = dumpable {
        tracing::warn!("cannot mark the process non-dumpable (prctl): {e}");
    }
    let signals = Signals::new();
    custos_kit::start::main("backup", || {
        execute(&cli, log_tail, signals).map_err(|e| {
            let code = match signals.exit_code() {
                Some(c) => c,
                None if e.is_usage() => custos_kit::start::USAGE,
                None => custos_kit::start::FAILED,
            };
            Failure::with_code(code, e)
        })
    })
}

impl KeyArgs {
    fn keys(&self) -> Keys {
        Keys {
            key: self.key.clone(),
            key_passphrase_env: self.key_passphrase_env.clone(),
            gnupg_home: self.gnupg_home.clone(),
        }
    }
}

/// Prints what a command has to say; its exit code.
fn report(outcome: &Outcome) -> u8 {
    print!("{}", outcome.stdout);
    eprint!("{}", outcome.stderr);
    u8::from(outcome.failed)
}

/// `list --check`: a copy is missing at a destination.
const MISSING_COPY_EXIT: u8 = 3;

/// Log lines a run keeps for notifiers that carry them (healthchecks pings).
const LOG_TAIL_LINES: usize = 40;

fn execute(
    cli: &Cli,
    log_tail: custos_kit::logging::LogTail,
    signals: Signals,
) -> Result<u8, CommandError> {
    let strictness = Strictness::from_flag(cli.strict);
    match &cli.command {
        Command::Run {
            config,
            dry_run,
            lock_wait,
        } => {
            // A dry run validates exactly as a run does: it answers "would this run?".
            let job = commands::load(config, strictness)?;
            let done = commands::run(
                &job,
                RunRequest {
                    config,
                    dry_run: *dry_run,
                    lock_wait: Duration::from_secs(*lock_wait),
                    progress_bar: std::io::stderr().is_terminal(),
                    log_tail: Some(log_tail),
                },
                signals,
            )?;
            // Quiet on success under cron (it mails any output); the table on a terminal,
            // with -v, on --dry-run, and whenever something failed.
            if !done.success || cli.verbose || *dry_run || std::io::stdout().is_terminal() {
                print!("{}", done.table);
            }
            Ok(done.exit_code)
        }
        Command::List {
            config,
            source,
            long,
            check,
        } => {
            let job = commands::load(config, strictness)?;
            let request = ListRequest {
                source: source.as_deref(),
                long: *long,
            };
            let outcome = commands::list(&job, request);
            let code = report(&outcome);
            // Not being able to list (1) says more than a gap in what could be listed.
            Ok(if code == 0 && *check && outcome.missing_copies {
                MISSING_COPY_EXIT
            } else {
                code
            })
        }
        Command::Restore {
            config,
            source,
            at,
            destination,
            to,
            database,
            into,
            force,
            paths,
            keys,
        } => {
            let job = commands::load(config, strictness)?;
            let request = RestoreRequest {
                paths,
                source,
                at: at.as_deref(),
                destination: destination.as_deref(),
                to: to.as_deref(),
                database: database.as_deref(),
                into: into.as_deref(),
                force: *force,
                keys: &keys.keys(),
            };
            Ok(report(&commands::restore(&job, request, signals)?))
        }
        Command::Ls {
            config,
            source,
            at,
            destination,
            keys,
        } => {
            let job = commands::load(config, strictness)?;
            let request = LsRequest {
                source,
                at: at.as_deref(),
                destination: destination.as_deref(),
                keys: &keys.keys(),
            };
            Ok(report(&commands::ls(&job, request)?))
        }
        Command::Verify {
            config,
            source,
            sample,
            seed,
            keys,
        } => {
            let job = commands::load(config, strictness)?;
            let request = VerifyRequest {
                only: source,
                keys: &keys.keys(),
                sample: *sample,
                seed: *seed,
            };
            Ok(report(&commands::verify(&job, request)?))
        }
        Command::Prune {
            config,
            source,
            dry_run,
        } => {
            let job = commands::load(config, strictness)?;
            let request = PruneRequest {
                config,
                source: source.as_deref(),
                dry_run: *dry_run,
            };
            Ok(report(&commands::prune(&job, request)?))
        }
        Command::Status {
            config,
            json,
            textfile,
        } => {
            let job = commands::load(config, strictness)?;
            let request = StatusRequest {
                json: *json,
                textfile: textfile.as_deref(),
            };
            Ok(report(&commands::status(&job, request)))
        }
        Command::Schedule {
            config,
            on,
            randomized_delay,
            user,
            cron,
            install,
        } => {
            // A job that does not load would fail at every tick: refuse it now.
            commands::load(config, strictness)?;
            let request = ScheduleRequest {
                config,
                on,
                randomized_delay: *randomized_delay,
                user,
                cron: *cron,
                install: install.as_deref(),
            };
            Ok(report(&commands::schedule(request)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn parse(a: &[&str]) -> Cli {
        Cli::try_parse_from(with_default_subcommand(args(a))).unwrap()
    }

    #[test]
    fn the_originals_command_lines_mean_run() {
        for line in [
            &["backup", "/home/backups/nightly.cfg"][..],
            &["backup", "-v", "/home/backups/nightly.cfg"],
            &["backup", "-v", "-d", "/home/backups/nightly.cfg"],
            &["backup", "/home/backups/nightly.cfg", "-v"],
        ] {
            let cli = parse(line);
            let Command::Run {
                config, dry_run, ..
            } = &cli.command
            else {
                panic!("{line:?}: {cli:?}")
            };
            assert_eq!(config, Path::new("/home/backups/nightly.cfg"));
            assert!(!dry_run);
        }
        let cli = parse(&["backup", "-v", "-d", "job.json"]);
        assert!(cli.verbose && cli.debug);
    }

    #[test]
    fn subcommands_parse() {
        let cli = parse(&["backup", "run", "--dry-run", "job.json"]);
        assert!(matches!(cli.command, Command::Run { dry_run: true, .. }));
        let cli = parse(&["backup", "--dry-run", "job.json"]);
        assert!(matches!(cli.command, Command::Run { dry_run: true, .. }));
        let cli = parse(&[
            "backup",
            "restore",
            "job.json",
            "--source",
            "www",
            "--at",
            "20240102030405",
            "--destination",
            "disk",
            "--to",
            "-",
        ]);
        let Command::Restore {
            source,
            at,
            destination,
            to,
            ..
        } = &cli.command
        else {
            panic!()
        };
        assert_eq!(
            (source.as_str(), at.as_deref(), destination.as_deref()),
            ("www", Some("20240102030405"), Some("disk"))
        );
        assert_eq!(to.as_deref(), Some(Path::new("-")));
        let cli = parse(&[
            "backup", "verify", "job.json", "--source", "a", "--source", "b",
        ]);
        assert!(matches!(&cli.command, Command::Verify { source, .. } if source.len() == 2));
        let cli = parse(&["backup", "list", "-v", "job.json"]);
        assert!(cli.verbose && matches!(cli.command, Command::List { long: false, .. }));
        let cli = parse(&["backup", "list", "-l", "job.json"]);
        assert!(matches!(cli.command, Command::List { long: true, .. }));
        let cli = parse(&["backup", "list", "--check", "job.json"]);
        assert!(matches!(cli.command, Command::List { check: true, .. }));
        let cli = parse(&["backup", "prune", "-n", "job.json"]);
        assert!(matches!(cli.command, Command::Prune { dry_run: true, .. }));
    }

    #[test]
    fn restore_needs_source_and_to() {
        assert!(
            Cli::try_parse_from(args(&["backup", "restore", "job.json", "--to", "/x"])).is_err()
        );
        assert!(
            Cli::try_parse_from(args(&["backup", "restore", "job.json", "--source", "a"])).is_err()
        );
        // --database alone loads into the server; --as and --force only with it, never
        // with --to.
        let ok = |a: &[&str]| Cli::try_parse_from(args(a)).is_ok();
        let base = ["backup", "restore", "job.json", "--source", "a"];
        assert!(ok(&[&base[..], &["--database", "shop"]].concat()));
        assert!(ok(&[
            &base[..],
            &["--database", "shop", "--as", "x", "--force"]
        ]
        .concat()));
        assert!(ok(
            &[&base[..], &["--database", "shop", "--to", "-"]].concat()
        ));
        assert!(!ok(&[&base[..], &["--to", "-", "--as", "x"]].concat()));
        assert!(!ok(&[
            &base[..],
            &["--database", "s", "--to", "-", "--force"]
        ]
        .concat()));
    }

    /// The flags (`-n`, `--dry-run`) of the arguments of `cmd` that are not hidden.
    fn flags(cmd: &clap::Command) -> Vec<String> {
        cmd.get_arguments()
            .filter(|a| !a.is_positional() && !a.is_hide_set())
            .flat_map(|a| {
                let short = a.get_short().map(|s| format!("-{s}"));
                let long = a.get_long().map(|l| format!("--{l}"));
                short.into_iter().chain(long)
            })
            .collect()
    }

    /// Whether `help` names `flag` as a word (`-n,` names `-n`; `--no-x` does not).
    fn names(help: &str, flag: &str) -> bool {
        help.split(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '='))
            .any(|w| w == flag)
    }

    /// Every flag clap knows is in the help of its command, and the flags of `run` are in the
    /// top-level help too (the original's form takes them without `run`).
    #[test]
    fn every_flag_is_in_the_help() {
        let mut cmd = command();
        cmd.build();
        let top = [
            cmd.render_help().to_string(),
            cmd.render_long_help().to_string(),
        ];
        let mut checked = 0;
        for f in flags(&cmd) {
            assert!(top.iter().all(|h| names(h, &f)), "{f} not in:\n{}", top[0]);
            checked += 1;
        }
        for sub in cmd.get_subcommands() {
            let mut sub = sub.clone();
            let own = [
                sub.render_help().to_string(),
                sub.render_long_help().to_string(),
            ];
            for f in flags(&sub) {
                assert!(own.iter().all(|h| names(h, &f)), "{f} not in:\n{}", own[0]);
                if sub.get_name() == "run" {
                    assert!(top.iter().all(|h| names(h, &f)), "{f} not in:\n{}", top[0]);
                }
                checked += 1;
            }
        }
        // -v -d --strict -h -V at the top; run's -n --dry-run --lock-wait among the rest.
        assert!(checked > 20, "only {checked} flags checked");
        assert!(
            names(&top[0], "--dry-run") && names(&top[0], "-n"),
            "{}",
            top[0]
        );
        assert!(names(&top[0], "--lock-wait"), "{}", top[0]);
    }

    #[test]
    fn version_and_help_are_not_taken_for_a_config() {
        assert_eq!(
            with_default_subcommand(args(&["backup", "--version"])),
            args(&["backup", "--version"])
        );
        assert_eq!(
            with_default_subcommand(args(&["backup", "help"])),
            args(&["backup", "help"])
        );
    }
}
