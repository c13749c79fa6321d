//! `healthchecks`: a dead-man's switch ping (custos, not in the original). `url` is the ping
//! URL of a check: healthchecks.io or a self-hosted instance gets `<url>/start` when the job
//! starts (so it measures the run), `<url>` on success and `<url>/fail` on failure, with the
//! summary table and the run's last log lines (info and above, even when a quiet cron run
//! printed nothing) as the body. A ping that fails on a refused or dropped connection, a
//! timeout or 5xx is retried (3 tries within 15 s, [`http::Retry::PING`]), as `curl --retry`
//! users do; notifiers run at once, so the retries delay no other notifier. An Uptime Kuma push URL (`/api/push/<token>`) gets `?status=up|down&msg=..`.

use reqwest::{Method, Url};
use serde::Deserialize;

use super::http::{self, Request, SecretUrl};
use super::{Context, Delivery, Events, Notifier, StartInfo};
use crate::outcome::RunReport;
use custos_kit::config::Validate;

/// healthchecks.io accepts up to 100 kB of body; keep well below.
const MAX_BODY: usize = 10_000;

/// `type: healthchecks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthchecks {
    /// `url`: the check's ping URL (its UUID or slug is the secret).
    pub url: SecretUrl,
}

impl Healthchecks {
    fn kuma(&self) -> bool {
        self.url.0.path().contains("/api/push/")
    }

    /// `<url>/<suffix>` keeping the query (`?create=1`, `?rid=`).
    fn with_suffix(&self, suffix: &str) -> Url {
        let mut u = self.url.0.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().push(suffix);
        }
        u
    }

    fn ping(&self, ctx: &Context, url: Url, body: String) -> Result<(), super::NotifyError> {
        let body = cut_body(body, MAX_BODY);
        let req = Request {
            method: Method::POST,
            url,
            content_type: Some("text/plain; charset=utf-8"),
            body,
            basic: None,
            bearer: None,
        };
        http::send_retrying(ctx.client()?, ctx.timeout, http::Retry::PING, req)
    }
}

impl Validate for Healthchecks {}

impl Notifier for Healthchecks {
    fn default_events(&self) -> Events {
        Events::ALL
    }

    fn start(&self, ctx: &Context, hostname: &str, sources: &[StartInfo]) -> Delivery {
        let mut d = Delivery::default();
        if self.kuma() {
            return d; // Uptime Kuma has no start signal.
        }
        let ids: Vec<&str> = sources.iter().map(|s| s.id.as_str()).collect();
        let body = format!("backup starting on {hostname}: {}", ids.join(", "));
        d.record(self.ping(ctx, self.with_suffix("start"), body));
        d
    }

    fn finish(&self, ctx: &Context, report: &RunReport) -> Delivery {
        let mut d = Delivery::default();
        let ok = report.backups_succeeded();
        if report.dry_run
            || !(if ok {
                ctx.events.success
            } else {
                ctx.events.failure
            })
        {
            return d;
        }
        let summary = report.table();
        if self.kuma() {
            let mut u = self.url.0.clone();
            let msg = if ok {
                "OK".to_owned()
            } else {
                summary.lines().last().unwrap_or("failed").to_owned()
            };
            let keep: Vec<(String, String)> = u
                .query_pairs()
                .filter(|(k, _)| k != "status" && k != "msg")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            u.query_pairs_mut()
                .clear()
                .extend_pairs(keep)
                .append_pair("status", if ok { "up" } else { "down" })
                .append_pair("msg", &msg);
            let req = Request {
                method: Method::GET,
                url: u,
                content_type: None,
                body: Vec::new(),
                basic: None,
                bearer: None,
            };
            d.record(
                ctx.client()
                    .and_then(|c| http::send_retrying(c, ctx.timeout, http::Retry::PING, req)),
            );
            return d;
        }
        let url = if ok {
            self.url.0.clone()
        } else {
            self.with_suffix("fail")
        };
        let mut body = summary;
        if !report.log_tail.is_empty() {
            body.push_str("\nlog (last lines):\n");
            for l in &report.log_tail {
                body.push_str(l);
                body.push('\n');
            }
        }
        d.record(self.ping(ctx, url, body));
        d
    }
}

/// `body` cut to at most `max` bytes at a character boundary: the ping is declared UTF-8,
/// and the log lines in it hold file names and messages in any language.
fn cut_body(body: String, max: usize) -> Vec<u8> {
    custos_kit::text::prefix(&body, max).as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_body_is_cut_at_a_character_boundary() {
        // `x` then two-byte characters: MAX_BODY falls inside one.
        let body = format!("x{}", "é".repeat(MAX_BODY));
        let cut = cut_body(body, MAX_BODY);
        assert_eq!(cut.len(), MAX_BODY - 1);
        let text = String::from_utf8(cut).expect("valid UTF-8");
        assert!(text.ends_with('é'));
        assert_eq!(cut_body("short".into(), MAX_BODY), b"short");
        assert_eq!(cut_body("€".into(), 2), b"");
    }
}
