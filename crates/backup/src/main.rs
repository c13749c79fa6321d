//! `backup`: runs the original's JSON job files (`backup [-v] [-d] CONFIG`, as cron runs it),
//! and gets backups back (`list`, `restore`, `verify`).
//!
//! Exit codes: 0 everything succeeded, 1 something failed (a source, a destination, a
//! restore, a verify), 2 bad usage or config.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use custos_backup::config::{self, JobConfig, Protection};
use custos_backup::crypto::{self, Decryption};
use custos_backup::destination::Destination;
use custos_backup::naming::RunStamp;
use custos_backup::restore::{self, RestoreOptions, RestoreTarget, SidecarCheck};
use custos_backup::runner::{self, size_description};

/// Backs up folders and databases as the job file says: stream, compress, encrypt, store.
#[derive(Debug, Parser)]
#[command(name = "backup", version, about, long_about = None)]
#[command(after_help = "The original's form `backup [-v] [-d] CONFIG` is `backup run`.")]
struct Cli {
    /// Log what happens (info level); without it only warnings and errors are printed.
    #[arg(short = 'v', long = "verbose", global = true)]
    verbose: bool,
    /// Log everything (debug level).
    #[arg(short = 'd', long = "debug", global = true)]
    debug: bool,
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
    },
    /// List the stored copies per source and destination (size, age, checksum).
    List {
        config: PathBuf,
        /// Only this source id.
        #[arg(long)]
        source: Option<String>,
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
        /// Target directory (created if missing), or `-` for the raw tar/dump on stdout.
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Read the newest copy of each source end to end and check its sha256 sidecar.
    Verify {
        config: PathBuf,
        /// Only these source ids.
        #[arg(long)]
        source: Vec<String>,
        #[command(flatten)]
        keys: KeyArgs,
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

const SUBCOMMANDS: &[&str] = &["run", "list", "restore", "verify", "help"];

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
    let cli = Cli::parse_from(with_default_subcommand(std::env::args_os().collect()));
    let level = if cli.debug {
        "debug"
    } else if cli.verbose {
        "info"
    } else {
        "warn"
    };
    custos_kit::logging::init_level(level, false);
    match execute(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("backup: {e:#}");
            ExitCode::from(e.downcast_ref::<Usage>().map_or(1, |_| 2))
        }
    }
}

/// An error of usage or config: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

fn load(path: &Path) -> anyhow::Result<JobConfig> {
    config::load(path).map_err(|e| Usage(e.to_string()).into())
}

fn execute(cli: &Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Run { config, dry_run } => {
            let job = load(config)?;
            let report = runner::run(
                &job,
                &runner::Options {
                    dry_run: *dry_run,
                    progress_bar: std::io::stderr().is_terminal(),
                },
            );
            // Quiet on success under cron (it mails any output); the table on a terminal,
            // with -v, on --dry-run, and whenever something failed.
            if !report.success() || cli.verbose || *dry_run || std::io::stdout().is_terminal() {
                print!("{}", report.table());
            }
            Ok(report.exit_code() as u8)
        }
        Command::List { config, source } => {
            let job = load(config)?;
            list(&job, source.as_deref())
        }
        Command::Restore {
            config,
            source,
            at,
            destination,
            to,
            keys,
        } => {
            let job = load(config)?;
            let at = match at {
                Some(s) => Some(RunStamp::parse(s).ok_or_else(|| {
                    Usage(format!(
                        "--at {s:?}: expected YYYYmmddHHMMSS, as `backup list` shows"
                    ))
                })?),
                None => None,
            };
            let decryption = decryption_for(&job, source, keys)?;
            let (dests, skipped) = destinations(&job);
            for m in &skipped {
                tracing::warn!("{m}");
            }
            let refs: Vec<&dyn Destination> = dests.iter().map(|d| d.as_ref()).collect();
            let target = if to.as_os_str() == "-" {
                RestoreTarget::Writer(Box::new(std::io::stdout().lock()))
            } else {
                RestoreTarget::Directory(to.clone())
            };
            let done = restore::restore(
                &refs,
                RestoreOptions {
                    source_id: source.clone(),
                    at,
                    destination: destination.clone(),
                    target,
                    decryption,
                },
            )
            .with_context(|| format!("restoring source {source:?}"))?;
            let check = match done.sidecar {
                SidecarCheck::Match => "sha256 matches its sidecar",
                SidecarCheck::Missing => "no sidecar to check (made by the original?)",
            };
            eprintln!(
                "restored {} from {} ({} of payload) to {}; {check}",
                done.copy.name.path(),
                done.copy.destination,
                size_description(done.payload_bytes as f64),
                done.written_to
                    .as_deref()
                    .map_or("stdout".to_owned(), |p| p.display().to_string()),
            );
            Ok(0)
        }
        Command::Verify {
            config,
            source,
            keys,
        } => {
            let job = load(config)?;
            verify(&job, source, keys)
        }
    }
}

/// Destinations of the job; those not implemented yet come back as messages.
fn destinations(job: &JobConfig) -> (Vec<Box<dyn Destination>>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for d in &job.destinations {
        match runner::build_destination(d) {
            Ok(b) => out.push(b),
            Err(m) => skipped.push(m),
        }
    }
    (out, skipped)
}

/// How to open a source's objects: its passphrase from the config; for recipients (or a
/// source no longer in the config) a `--key` file, else the user's gpg and its agent.
fn decryption_for(
    job: &JobConfig,
    source_id: &str,
    keys: &KeyArgs,
) -> anyhow::Result<Option<Decryption>> {
    if let Some(file) = &keys.key {
        let secret = crypto::load_secret_keys(file)?;
        let passphrase = match &keys.key_passphrase_env {
            Some(var) => Some(crypto::Passphrase::new(std::env::var(var).map_err(
                |_| Usage(format!("--key-passphrase-env: variable {var} is not set")),
            )?)),
            None => None,
        };
        return Ok(Some(Decryption::SecretKeys {
            keys: secret,
            passphrase,
        }));
    }
    let source = job.sources.iter().find(|s| s.id == source_id);
    Ok(match source.and_then(|s| s.protection()) {
        Some(Protection::Passphrase(p)) => {
            Some(Decryption::Passphrase(crypto::Passphrase::new(p.expose())))
        }
        // compress_only objects are not encrypted; one made before the config changed still
        // can be opened by gpg.
        Some(Protection::CompressOnly) | Some(Protection::Recipients(_)) | None => {
            Some(Decryption::Gpg {
                gnupg_home: keys.gnupg_home.clone(),
            })
        }
    })
}

fn list(job: &JobConfig, source: Option<&str>) -> anyhow::Result<u8> {
    let (dests, skipped) = destinations(job);
    let refs: Vec<&dyn Destination> = dests.iter().map(|d| d.as_ref()).collect();
    let listing = restore::list(&refs, source);
    let mut rows = vec![[
        "SOURCE".to_owned(),
        "TIMESTAMP".to_owned(),
        "DESTINATION".to_owned(),
        "SIZE".to_owned(),
        "AGE".to_owned(),
        "SHA256".to_owned(),
        "OBJECT".to_owned(),
    ]];
    for c in &listing.copies {
        rows.push([
            c.name.source_id.clone(),
            c.name.stamp.to_string(),
            c.destination.clone(),
            size_description(c.size as f64),
            age(c.age()),
            if c.has_sidecar { "yes" } else { "none" }.to_owned(),
            c.name.path(),
        ]);
    }
    print!("{}", columns(&rows, &[3]));
    if listing.copies.is_empty() {
        println!("(no copies)");
    }
    let mut failed = false;
    for m in skipped {
        eprintln!("backup: {m}");
        failed = true;
    }
    for e in listing.errors {
        eprintln!("backup: {e}");
        failed = true;
    }
    Ok(u8::from(failed))
}

fn verify(job: &JobConfig, only: &[String], keys: &KeyArgs) -> anyhow::Result<u8> {
    for id in only {
        if !job.sources.iter().any(|s| &s.id == id) {
            return Err(Usage(format!("--source {id:?}: no such source in the config")).into());
        }
    }
    let ids: Vec<String> = job
        .sources
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.id))
        .map(|s| s.id.clone())
        .collect();
    let mut resolved = Vec::new();
    for id in &ids {
        resolved.push((id.clone(), decryption_for(job, id, keys)?));
    }
    let (dests, skipped) = destinations(job);
    let refs: Vec<&dyn Destination> = dests.iter().map(|d| d.as_ref()).collect();
    let keys_for = |id: &str| {
        resolved
            .iter()
            .find(|(i, _)| i == id)
            .and_then(|(_, d)| d.clone())
    };
    let reports = restore::verify(&refs, &ids, &keys_for);
    let mut rows = vec![[
        "SOURCE".to_owned(),
        "DESTINATION".to_owned(),
        "STATUS".to_owned(),
        "TIMESTAMP".to_owned(),
        "SIZE".to_owned(),
        "SHA256".to_owned(),
    ]];
    let mut failures = Vec::new();
    for r in &reports {
        match &r.result {
            Ok(v) => rows.push([
                r.source_id.clone(),
                r.destination.clone(),
                "ok".to_owned(),
                v.copy.name.stamp.to_string(),
                size_description(v.copy.size as f64),
                match v.sidecar {
                    SidecarCheck::Match => "matches".to_owned(),
                    SidecarCheck::Missing => "no sidecar".to_owned(),
                },
            ]),
            Err(e) => {
                rows.push([
                    r.source_id.clone(),
                    r.destination.clone(),
                    "FAILED".to_owned(),
                    "-".to_owned(),
                    "-".to_owned(),
                    "-".to_owned(),
                ]);
                failures.push(format!("{} -> {}: {e}", r.source_id, r.destination));
            }
        }
    }
    print!("{}", columns(&rows, &[4]));
    for f in &failures {
        println!("{f}");
    }
    for m in &skipped {
        println!("{m}");
    }
    Ok(u8::from(!failures.is_empty() || !skipped.is_empty()))
}

/// `3d 4h`, `5h 12m`, `42m`.
fn age(d: chrono::TimeDelta) -> String {
    let mins = d.num_minutes().max(0);
    let (days, hours, m) = (mins / 1440, (mins / 60) % 24, mins % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {m}m")
    } else {
        format!("{m}m")
    }
}

/// Aligns rows into columns; `right` lists the right-aligned column indices.
fn columns<const N: usize>(rows: &[[String; N]], right: &[usize]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            if right.contains(&i) {
                line.push_str(&format!("{c:>w$}"));
            } else {
                line.push_str(&format!("{c:<w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let Command::Run { config, dry_run } = &cli.command else {
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
        assert_eq!(to, Path::new("-"));
        let cli = parse(&[
            "backup", "verify", "job.json", "--source", "a", "--source", "b",
        ]);
        assert!(matches!(&cli.command, Command::Verify { source, .. } if source.len() == 2));
        let cli = parse(&["backup", "list", "-v", "job.json"]);
        assert!(cli.verbose && matches!(cli.command, Command::List { .. }));
    }

    #[test]
    fn restore_needs_source_and_to() {
        assert!(
            Cli::try_parse_from(args(&["backup", "restore", "job.json", "--to", "/x"])).is_err()
        );
        assert!(
            Cli::try_parse_from(args(&["backup", "restore", "job.json", "--source", "a"])).is_err()
        );
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

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(chrono::TimeDelta::minutes(42)), "42m");
        assert_eq!(age(chrono::TimeDelta::minutes(5 * 60 + 12)), "5h 12m");
        assert_eq!(age(chrono::TimeDelta::hours(76)), "3d 4h");
    }
}
