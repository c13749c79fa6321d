//! Notifications: views of the [`RunReport`] sent to people and monitoring, and of a
//! `backup verify`'s [`Verification`] (chat, mail, push gateway, Elasticsearch; a flag file,
//! a dead-man's switch and the textfile, which speak of runs, skip it).
//!
//! Each type lives in its own module with its config struct (the keys of the original's README
//! plus a few custos keys) and its [`Notifier`] implementation; [`HANDLERS`] maps the config's
//! `type` to the module. Adding a type touches its module and one line of that table.
//!
//! Delivery rules: a notifier that fails is logged and reported (the run's exit code becomes 1),
//! never hides the backup's own result, and never stops the other notifiers; each request has
//! the notifier's `timeout`; errors name the endpoint as `scheme://host:port` only, because
//! webhook paths, bot tokens and query strings are secrets.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use custos_kit::config::ConfigError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::outcome::{
    clock, size_description, Failure, NotificationReport, RunReport, SourceReport,
    SourceVerification, Stage, Verification,
};
use custos_kit::config::{Entry, Invalid, Validate};

pub mod discord;
pub mod elasticsearch;
pub mod flagfile;
pub mod healthchecks;
pub mod hipchat;
pub mod http;
pub mod matrix;
pub mod metrics;
pub mod prometheus;
pub mod slack;
pub mod smtp;
pub mod telegram;
pub mod textfile;

pub use http::NotifyError;

/// Builds a notifier from the keys of its type (the common keys already removed).
type Parse = fn(Entry<'_>) -> Result<Arc<dyn Notifier>, ConfigError>;

/// `type` -> its module. The one place that knows every notification type.
pub const HANDLERS: &[(&str, Parse)] = &[
    ("smtp", parse::<smtp::Smtp>),
    ("slack", parse::<slack::Slack>),
    ("discord", parse::<discord::Discord>),
    ("matrix", parse::<matrix::Matrix>),
    ("telegram", parse::<telegram::Telegram>),
    ("hipchat", parse::<hipchat::Hipchat>),
    ("flagfile", parse::<flagfile::Flagfile>),
    ("prometheus", parse::<prometheus::Prometheus>),
    ("elasticsearch", parse::<elasticsearch::Elasticsearch>),
    ("healthchecks", parse::<healthchecks::Healthchecks>),
    ("textfile", parse::<textfile::Textfile>),
];

/// Keys every notification accepts, whatever its type.
pub const COMMON_KEYS: &[&str] = &[
    "id",
    "type",
    "notify_on_start",
    "notify_on_success",
    "notify_on_failure",
    "timeout",
];

/// Deserializes a type's keys (path-prefixed errors, unknown keys collected) and validates
/// them.
fn parse<T: DeserializeOwned + Notifier + 'static>(
    e: Entry<'_>,
) -> Result<Arc<dyn Notifier>, ConfigError> {
    let (file, at) = (e.file, e.at);
    let n: T = e.take()?;
    n.validate().map_err(|i| i.into_error(file, at))?;
    Ok(Arc::new(n))
}

/// Which events a notifier reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    pub start: bool,
    pub success: bool,
    pub failure: bool,
}

impl Events {
    /// Nothing unless configured: the original's default for chat notifiers.
    pub const NONE: Events = Events {
        start: false,
        success: false,
        failure: false,
    };
    /// Success and failure.
    pub const OUTCOMES: Events = Events {
        start: false,
        success: true,
        failure: true,
    };
    /// Start, success and failure.
    pub const ALL: Events = Events {
        start: true,
        success: true,
        failure: true,
    };
}

/// What a notifier is handed: the run's context and which events to report.
pub struct Context {
    pub events: Events,
    /// Per request (connect included).
    pub timeout: Duration,
}

impl Context {
    /// The process's one HTTP client, which the stores use too (built on first use).
    pub fn client(&self) -> Result<&'static reqwest::Client, NotifyError> {
        crate::destination::runtime::http_client()
            .map_err(|e| NotifyError::Setup(e.reason().to_string()))
    }
}

/// A notification type. Implementations hold their parsed config; nothing is connected
/// until a run reports.
pub trait Notifier: Validate + fmt::Debug + Send + Sync {
    /// Events reported when `notify_on_*` is absent (the original's per-type defaults).
    fn default_events(&self) -> Events;
    /// The job is starting (only called when `events.start`); returns messages sent.
    fn start(&self, _ctx: &Context, _hostname: &str, _sources: &[StartInfo]) -> Delivery {
        Delivery::default()
    }
    /// The run is over: report it.
    fn finish(&self, ctx: &Context, report: &RunReport) -> Delivery;
    /// `backup verify` is over: report it, as a run's outcome (`notify_on_success`,
    /// `notify_on_failure`). By default nothing is sent: a notifier that speaks of runs
    /// only (a flag of the last good run, a dead-man's switch) must not take a verify for one.
    fn verified(&self, _ctx: &Context, _report: &Verification) -> Delivery {
        Delivery::default()
    }
}

/// A source about to be backed up (for start messages).
#[derive(Debug, Clone)]
pub struct StartInfo {
    pub id: String,
    pub name: String,
    pub kind: String,
}

/// What a notifier delivered, and what failed (it keeps going after a failure).
#[derive(Debug, Default)]
pub struct Delivery {
    pub sent: usize,
    pub errors: Vec<NotifyError>,
}

impl Delivery {
    /// Counts one attempt.
    pub fn record(&mut self, r: Result<(), NotifyError>) {
        match r {
            Ok(()) => self.sent += 1,
            Err(e) => self.errors.push(e),
        }
    }

    /// One start message per source.
    pub fn per_start(
        sources: &[StartInfo],
        mut send: impl FnMut(&StartInfo) -> Result<(), NotifyError>,
    ) -> Delivery {
        let mut d = Delivery::default();
        for s in sources {
            d.record(send(s));
        }
        d
    }

    /// One attempt per source whose outcome is among `events`.
    pub fn per_source(
        report: &RunReport,
        events: Events,
        send: impl FnMut(&SourceReport) -> Result<(), NotifyError>,
    ) -> Delivery {
        Self::per_outcome(&report.sources, SourceReport::succeeded, events, send)
    }

    /// One attempt per verified source whose outcome is among `events`.
    pub fn per_verified_source(
        report: &Verification,
        events: Events,
        send: impl FnMut(&SourceVerification) -> Result<(), NotifyError>,
    ) -> Delivery {
        Self::per_outcome(&report.sources, SourceVerification::succeeded, events, send)
    }

    fn per_outcome<T>(
        items: &[T],
        succeeded: impl Fn(&T) -> bool,
        events: Events,
        mut send: impl FnMut(&T) -> Result<(), NotifyError>,
    ) -> Delivery {
        let mut d = Delivery::default();
        for s in items {
            let wanted = if succeeded(s) {
                events.success
            } else {
                events.failure
            };
            if wanted {
                d.record(send(s));
            }
        }
        d
    }
}

/// One configured notification.
#[derive(Debug, Clone)]
pub struct NotificationConfig {
    /// `type` as written.
    pub kind: String,
    /// `id` when given (the original does not require one).
    pub id: Option<String>,
    /// `notify_on_*` resolved against the type's defaults.
    pub events: Events,
    /// custos `timeout` in seconds (default 30): per request.
    pub timeout: Duration,
    pub handler: Arc<dyn Notifier>,
}

impl NotificationConfig {
    /// `id`, else `type`: how logs and the summary name it.
    pub fn label(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.kind)
    }
}

/// The keys every notification shares.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonKeys {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "flag")]
    pub notify_on_start: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    pub notify_on_success: Option<bool>,
    #[serde(default, deserialize_with = "flag")]
    pub notify_on_failure: Option<bool>,
    #[serde(default)]
    pub timeout: Option<f64>,
}

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a notification from its common keys and the keys of its type.
pub fn build(common: CommonKeys, e: Entry<'_>) -> Result<NotificationConfig, ConfigError> {
    let (file, at) = (e.file, e.at);
    let Some((_, parse)) = HANDLERS.iter().find(|(k, _)| *k == common.kind) else {
        return Err(ConfigError::invalid(
            file,
            format!("{at}.type"),
            &common.kind,
            format!("unknown type; known types: {}", known_types().join(", ")),
        ));
    };
    let handler = parse(e)?;
    let d = handler.default_events();
    let timeout = match common.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) if t > 0.0 && t <= 3600.0 => Duration::from_secs_f64(t),
        Some(t) => {
            return Err(
                Invalid::new("timeout", t, "expected seconds, 0 < t <= 3600").into_error(file, at),
            )
        }
    };
    let n = NotificationConfig {
        events: Events {
            start: common.notify_on_start.unwrap_or(d.start),
            success: common.notify_on_success.unwrap_or(d.success),
            failure: common.notify_on_failure.unwrap_or(d.failure),
        },
        kind: common.kind,
        id: common.id.filter(|i| !i.is_empty()),
        timeout,
        handler,
    };
    if !(n.events.start || n.events.success || n.events.failure) {
        tracing::warn!(
            file = %file.display(),
            "{at} ({}): notify_on_success and notify_on_failure are both off, so it never \
             sends (set \"notify_on_failure\": 1)",
            n.kind
        );
    }
    Ok(n)
}

/// The known type names, sorted (for "unknown type" errors).
pub fn known_types() -> Vec<&'static str> {
    let mut v: Vec<&str> = HANDLERS.iter().map(|(k, _)| *k).collect();
    v.sort_unstable();
    v
}

/// Sends every notifier's start event (those with `notify_on_start`); one entry per
/// notification, `None` where nothing was to be sent. Notifiers run at once, so a slow or
/// retrying one (a ping that retries) does not delay the others.
pub fn start(
    notifications: &[NotificationConfig],
    hostname: &str,
    sources: &[StartInfo],
) -> Vec<Option<NotificationReport>> {
    each(notifications, |n| {
        n.events.start.then(|| {
            let ctx = Context {
                events: n.events,
                timeout: n.timeout,
            };
            conclude(n, n.handler.start(&ctx, hostname, sources), "start")
        })
    })
}

/// Reports the run to every notifier at once; each failure is logged and recorded, and
/// never stops or delays the others; results come back in config order. `started` is what
/// [`start`] returned: a failed start ping counts for its notifier too. `cap` shortens every
/// timeout (a run stopped by SIGTERM still reports, but within the service manager's
/// patience).
pub fn finish(
    notifications: &[NotificationConfig],
    report: &RunReport,
    started: Vec<Option<NotificationReport>>,
    cap: Option<Duration>,
) -> Vec<NotificationReport> {
    let finished = each(notifications, |n| {
        let ctx = Context {
            events: n.events,
            timeout: cap.map_or(n.timeout, |c| c.min(n.timeout)),
        };
        conclude(n, n.handler.finish(&ctx, report), "finish")
    });
    let mut started = started.into_iter();
    finished
        .into_iter()
        .map(|mut r| {
            if let Some(Some(s)) = started.next() {
                r.sent += s.sent;
                if r.result.is_ok() {
                    r.result = s.result;
                }
            }
            r
        })
        .collect()
}

/// Reports a `backup verify` to every notifier at once, as [`finish`] reports a run.
pub fn verified(
    notifications: &[NotificationConfig],
    report: &Verification,
) -> Vec<NotificationReport> {
    each(notifications, |n| {
        let ctx = Context {
            events: n.events,
            timeout: n.timeout,
        };
        conclude(n, n.handler.verified(&ctx, report), "verify")
    })
}

/// `f` for every notification, each on its own thread; the results in config order.
fn each<T: Send>(
    notifications: &[NotificationConfig],
    f: impl Fn(&NotificationConfig) -> T + Sync,
) -> Vec<T> {
    let f = &f;
    std::thread::scope(|s| {
        let running: Vec<_> = notifications
            .iter()
            .map(|n| s.spawn(move || f(n)))
            .collect();
        running
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn conclude(n: &NotificationConfig, d: Delivery, phase: &str) -> NotificationReport {
    for e in &d.errors {
        tracing::error!(notification = n.label(), kind = %n.kind, phase, "notification failed: {e}");
    }
    if d.errors.is_empty() && d.sent > 0 {
        tracing::info!(notification = n.label(), kind = %n.kind, phase, sent = d.sent, "notified");
    }
    let result = match d.errors.first() {
        None => Ok(()),
        Some(e) => {
            let more = d.errors.len() - 1;
            let message = if more > 0 {
                format!("{e} (and {more} more)")
            } else {
                e.to_string()
            };
            Err(Failure::new(
                Stage::Notify,
                message,
                d.errors.iter().all(NotifyError::retryable),
            ))
        }
    };
    NotificationReport {
        label: n.label().to_owned(),
        sent: d.sent,
        result,
    }
}

/// The original's success text, with the time the source took:
/// `Backup of 'Web' (folder) on 'host' was successful [size: 12.1 KB] in 0:00:02.`
pub fn success_text(s: &SourceReport, hostname: &str) -> String {
    format!(
        "Backup of '{}' ({}) on '{}' was successful [size: {}] in {}.",
        s.name,
        s.kind,
        hostname,
        size_description(s.stored_bytes.unwrap_or(0) as f64),
        clock(s.ended.duration_since(s.started).unwrap_or_default())
    )
}

/// The original's failure text: `Backup of 'Web' (folder) on 'host' failed: {err}`.
pub fn failure_text(s: &SourceReport, hostname: &str) -> String {
    format!(
        "Backup of '{}' ({}) on '{}' failed: {}",
        s.name,
        s.kind,
        hostname,
        s.error_text()
    )
}

/// The original's start text (Slack's `notify_start`).
pub fn start_text(s: &StartInfo, hostname: &str) -> String {
    format!(
        "Backup of '{}' ({}) on '{}' beginning.",
        s.name, s.kind, hostname
    )
}

/// The text for a source in the report: success or failure.
pub fn outcome_text(s: &SourceReport, hostname: &str) -> String {
    if s.succeeded() {
        success_text(s, hostname)
    } else {
        failure_text(s, hostname)
    }
}

/// A verified source's text: `Verify of 'Web' (folder) on 'host' was successful: 3 copies
/// read at disk, s3, a 10 % sample.`, or `... failed (3 copies read at disk, s3):
/// disk 20261207020000: {err}`.
pub fn verify_text(s: &SourceVerification, report: &Verification) -> String {
    let head = format!(
        "Verify of '{}' ({}) on '{}'",
        s.name, s.kind, report.hostname
    );
    let summary = s.summary(report.sample);
    if s.succeeded() {
        format!("{head} was successful: {summary}.")
    } else {
        format!("{head} failed ({summary}): {}", s.error_text())
    }
}

/// `notify_on_*`: the original calls `bool()`, so `1`, `true`, `"1"` mean yes and `0`,
/// `false`, `""` mean no.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(Value::Number(n)) => Some(n.as_f64() != Some(0.0)),
        Some(Value::String(s)) => Some(!s.is_empty() && s != "0"),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected 1, 0, true or false, got {other}"
            )))
        }
    })
}

/// Writes `body` to `path` atomically: a temporary file in the same directory, fsynced,
/// mode 0644 (monitoring agents run as other users), renamed over `path`.
pub fn write_atomically(path: &Path, body: &[u8]) -> Result<(), NotifyError> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let err = |source: std::io::Error| NotifyError::File {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".custos-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(body).map_err(err)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests;
