//! `custos-dist-gen OUT_DIR`: writes the man pages (`OUT_DIR/man/*.8`) and shell completions
//! (`OUT_DIR/completions/{bash,zsh,fish}/`) of every custos binary from the binaries' own CLI
//! definitions; `scripts/build-deb.sh` packages them. Exit codes: 0 written, 2 bad usage,
//! 1 a file could not be written.

use clap_complete::Shell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Each binary's `main.rs`, compiled here as a module (see build.rs) so that its private
/// `Cli` is reachable; `command()` is what the binary itself parses with.
macro_rules! binary {
    ($module:ident, $file:literal, $command:expr) => {
        #[allow(dead_code, unused_imports, clippy::all)]
        mod $module {
            include!(concat!(env!("OUT_DIR"), "/", $file));
            pub fn custos_dist_command() -> clap::Command {
                $command
            }
        }
    };
}
binary!(
    burp,
    "burp_exporter_main.rs",
    <Cli as clap::CommandFactory>::command()
);
binary!(
    haproxy,
    "haproxysessionmon_main.rs",
    <Cli as clap::CommandFactory>::command()
);
binary!(
    smart,
    "prometheus_smart_exporter_main.rs",
    <Cli as clap::CommandFactory>::command()
);
// backup adds its run options to the top level (the original's `backup CONFIG` form) itself.
binary!(backup, "backup_main.rs", command());

/// Section 8: system administration commands and daemons.
const SECTION: &str = "8";

/// The clap-based binaries, named as installed, with the description of their own crate.
fn commands() -> Vec<clap::Command> {
    let ours = env!("CARGO_PKG_DESCRIPTION");
    [
        (
            burp::custos_dist_command(),
            env!("CUSTOS_DESC_burp_exporter"),
        ),
        (
            haproxy::custos_dist_command(),
            env!("CUSTOS_DESC_haproxysessionmon"),
        ),
        (
            smart::custos_dist_command(),
            env!("CUSTOS_DESC_prometheus_smart_exporter"),
        ),
        (backup::custos_dist_command(), env!("CUSTOS_DESC_backup")),
    ]
    .into_iter()
    .map(|(cmd, desc)| {
        let name = cmd.get_name().to_owned();
        let cmd = cmd.bin_name(&name);
        // A bare `about` in the derive took this crate's description, not the binary's.
        if cmd.get_about().map(|a| a.to_string()).as_deref() == Some(ours) {
            cmd.about(desc)
        } else {
            cmd
        }
    })
    .collect()
}

/// `NAME.8` for the command and `NAME-SUB.8` for each subcommand, as git does.
fn write_man(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section(SECTION)
        .render(&mut buf)?;
    std::fs::write(dir.join(format!("{}.{SECTION}", cmd.get_name())), buf)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        // clap takes `'static` names (its `string` feature is off); this program runs once.
        let name: &'static str = format!("{}-{}", cmd.get_name(), sub.get_name()).leak();
        let sub = sub
            .clone()
            .name(name)
            .bin_name(format!("{} {}", cmd.get_name(), sub.get_name()))
            .version(env!("CARGO_PKG_VERSION"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub)
            .section(SECTION)
            .render(&mut buf)?;
        std::fs::write(dir.join(format!("{name}.{SECTION}")), buf)?;
    }
    Ok(())
}

/// roff for text shown as is: backslashes doubled, a leading `.` or `'` guarded.
fn roff_verbatim(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// The helper parses its arguments by hand (no clap in the root process): its page is its
/// `--help` text, the same constant it prints.
fn helper_man(version: &str) -> String {
    format!(
        ".TH SMART_EXPORTER_HELPER {SECTION} \"\" \"smart_exporter_helper {version}\"\n\
         .SH NAME\nsmart_exporter_helper \\- runs smartctl for prometheus_smart_exporter (as root)\n\
         .SH SYNOPSIS\n.nf\n{}.fi\n\
         .SH SEE ALSO\nprometheus_smart_exporter(8), smartctl(8)\n",
        roff_verbatim(custos_smart_helper::cli::USAGE)
    )
}

fn generate(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    let shells = [
        (Shell::Bash, "bash"),
        (Shell::Zsh, "zsh"),
        (Shell::Fish, "fish"),
    ];
    for (_, dir) in shells {
        std::fs::create_dir_all(out.join("completions").join(dir))?;
    }
    for cmd in commands() {
        write_man(&cmd, &man)?;
        for (shell, dir) in shells {
            let name = cmd.get_name().to_owned();
            let mut cmd = cmd.clone();
            clap_complete::generate_to(shell, &mut cmd, name, out.join("completions").join(dir))?;
        }
    }
    std::fs::write(
        man.join(format!("smart_exporter_helper.{SECTION}")),
        helper_man(env!("CARGO_PKG_VERSION")),
    )
}

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [out] = args.as_slice() else {
        let _ = writeln!(std::io::stderr(), "usage: custos-dist-gen OUT_DIR");
        return ExitCode::from(2);
    };
    let out = PathBuf::from(out);
    match generate(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "custos-dist-gen: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binary_keeps_its_own_name_and_description() {
        let cmds = commands();
        let names: Vec<_> = cmds.iter().map(|c| c.get_name()).collect();
        assert_eq!(
            names,
            [
                "burp_exporter",
                "haproxysessionmon",
                "prometheus_smart_exporter",
                "backup"
            ]
        );
        for c in &cmds {
            let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(!about.is_empty(), "{}: no description", c.get_name());
            assert_ne!(
                about,
                env!("CARGO_PKG_DESCRIPTION"),
                "{}: took the generator's description",
                c.get_name()
            );
        }
    }

    #[test]
    fn writes_a_page_per_command_and_subcommand_and_completions_for_each_shell() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let page = |n: &str| std::fs::read_to_string(dir.path().join("man").join(n)).unwrap();
        // A flag of the binary's Cli shows, so the page comes from the real definition.
        assert!(page("burp_exporter.8").contains("\\-\\-once"));
        assert!(page("backup-restore.8").contains(".TH backup-restore 8"));
        assert!(page("haproxysessionmon.8").contains("\\-\\-check"));
        let helper = page("smart_exporter_helper.8");
        assert!(helper.contains("\\-\\-device\\-timeout") || helper.contains("--device-timeout"));
        let bash =
            std::fs::read_to_string(dir.path().join("completions/bash/backup.bash")).unwrap();
        assert!(bash.contains("--lock-wait") && bash.contains("restore"));
        assert!(dir
            .path()
            .join("completions/zsh/_prometheus_smart_exporter")
            .exists());
        assert!(dir
            .path()
            .join("completions/fish/haproxysessionmon.fish")
            .exists());
    }

    #[test]
    fn verbatim_roff_guards_control_characters() {
        assert_eq!(roff_verbatim(".x\n'y\na\\b"), "\\&.x\n\\&'y\na\\eb\n");
    }
}
