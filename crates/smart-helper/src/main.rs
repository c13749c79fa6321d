//! `smart_exporter_helper`: exit codes 0 (idle timeout), 1 (no socket), 2 (bad usage).

use custos_smart_helper::{cli, listen, log, serve};
use std::process::ExitCode;

fn main() -> ExitCode {
    // First, before anything opens a descriptor: adopt systemd's socket (fd 3), if any.
    let activated = listen::from_systemd();
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(cli::Command::Run(o)) => *o,
        Ok(cli::Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(cli::Command::Version) => {
            println!("smart_exporter_helper {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("smart_exporter_helper: {e}");
            return ExitCode::from(2);
        }
    };
    log::set_verbosity(opts.verbosity);
    let (listener, socket) = match (activated, &opts.socket_path) {
        (Ok(Some(l)), _) => (l, None),
        (Ok(None), Some(path)) => match listen::bind(path) {
            Ok((l, file)) => (l, Some(file)),
            Err(e) => {
                eprintln!("smart_exporter_helper: {e}");
                return ExitCode::from(1);
            }
        },
        (Ok(None), None) => {
            eprintln!(
                "smart_exporter_helper: not started by systemd socket activation; \
                 --socket-path is required"
            );
            return ExitCode::from(2);
        }
        (Err(e), _) => {
            eprintln!("smart_exporter_helper: {e}");
            return ExitCode::from(1);
        }
    };
    serve::serve(listener, &opts, socket);
    ExitCode::SUCCESS
}
