//! A real browser loading an exporter's status page: Debian's headless Chromium, run once per
//! call with a throw-away profile, giving the DOM it built or a screenshot.
//!
//! The DOM is the proof a page works as a person sees it: a name the page failed to escape
//! would come back as an element (`<b>`), an escaped one as text (`&lt;b&gt;`).

use crate::process::{require, run_with_deadline};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// How long one Chromium run may take (its first start on a busy 2-core machine takes seconds).
const DEADLINE: Duration = Duration::from_secs(120);

/// Debian's `chromium`, headless.
#[derive(Debug, Clone)]
pub struct Chromium {
    bin: PathBuf,
}

impl Chromium {
    /// The browser, or `None` after a loud SKIP line (a failure with
    /// `CUSTOS_REQUIRE_SERVICES=1`) when it is not installed.
    pub fn find() -> Option<Chromium> {
        require("chromium", "chromium").map(|bin| Chromium { bin })
    }

    fn run(&self, args: &[&str], url: &str) -> Output {
        let profile = tempfile::tempdir().expect("chromium profile dir");
        let out = run_with_deadline(
            Command::new(&self.bin)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--hide-scrollbars",
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .args(args)
                .arg(url)
                .env("HOME", profile.path()),
            DEADLINE,
        );
        assert!(
            out.status.success(),
            "chromium {args:?} {url} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The DOM Chromium built from `url`, serialized.
    pub fn dump_dom(&self, url: &str) -> String {
        let out = self.run(&["--dump-dom"], url);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A PNG of `url` in a 1200x900 window, written to `file`; returns its bytes.
    pub fn screenshot(&self, url: &str, file: &Path) -> Vec<u8> {
        let arg = format!("--screenshot={}", file.display());
        self.run(&[&arg, "--window-size=1200,900"], url);
        let png = std::fs::read(file)
            .unwrap_or_else(|e| panic!("chromium wrote no screenshot {}: {e}", file.display()));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            file.display()
        );
        png
    }
}

/// Screenshots a page for the README when `CUSTOS_SCREENSHOTS` names a directory
/// (scripts/screenshots.sh sets it): `<dir>/<name>.png`. Returns the PNG's size in bytes.
pub fn keep_screenshot(name: &str, png: &[u8]) -> Option<usize> {
    let dir = std::env::var_os("CUSTOS_SCREENSHOTS")?;
    let path = Path::new(&dir).join(format!("{name}.png"));
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    eprintln!("screenshot: {} ({} bytes)", path.display(), png.len());
    Some(png.len())
}
