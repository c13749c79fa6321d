//! `prometheus`: pushes each source's metrics (see [`super::metrics`]) to a push gateway
//! (`url`, optional `credentials`) into the group `job=<source id>` (plus custos `instance`
//! when set; the original pushed none, which the gateway shows as `instance=""`).
//!
//! A success replaces the group (`PUT`, as the original's `push_to_gateway`); a failure
//! replaces only `backup_success` and `backup_last_failure_timestamp_seconds` (`POST`), so
//! the group keeps the last success's time and statistics for a staleness alert.
//!
//! `backup verify` pushes [`metrics::of_verification`] into a group of its own,
//! `job=<source id>` plus `command="verify"`: a run's `PUT` replaces its whole group, which
//! would wipe a weekly verify's result the next night. The same rule holds there: a passed
//! verify replaces the group, a failed one only its own samples.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::Deserialize;

use super::http::{self, Credentials, Request, SecretUrl};
use super::{metrics, Context, Delivery, Events, Notifier};
use crate::outcome::{RunReport, Verification};
use custos_kit::config::Validate;

/// `type: prometheus`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prometheus {
    /// `url`: the push gateway, without `/metrics`.
    pub url: SecretUrl,
    /// `credentials: {username, password}`: HTTP basic auth.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// custos `instance`: a grouping label value (absent: none, as the original).
    #[serde(default)]
    pub instance: Option<String>,
}

/// The text format a push gateway takes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Prometheus {
    /// Pushes `body` to the group of source `id` (with `extra` grouping labels): replacing
    /// the group on success, only these samples otherwise.
    fn push(
        &self,
        ctx: &Context,
        id: &str,
        extra: &[&str],
        body: String,
        success: bool,
    ) -> Result<(), super::NotifyError> {
        let mut url = self.url.0.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty().extend(["metrics", "job", id]);
            if let Some(i) = self.instance.as_deref().filter(|i| !i.is_empty()) {
                p.extend(["instance", i]);
            }
            p.extend(extra);
        }
        let req = Request {
            method: if success { Method::PUT } else { Method::POST },
            url,
            content_type: Some(CONTENT_TYPE),
            body: body.into_bytes(),
            basic: Credentials::given(&self.credentials),
            bearer: None,
        };
        http::send(ctx.client()?, ctx.timeout, req)
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl Validate for Prometheus {}

impl Notifier for Prometheus {
    fn default_events(&self) -> Events {
        Events::OUTCOMES
    }

    fn finish(&self, ctx: &Context, report: &RunReport) -> Delivery {
        if report.dry_run {
            return Delivery::default();
        }
        let now = now();
        Delivery::per_source(report, ctx.events, |s| {
            let body = metrics::render(&[(String::new(), metrics::of_source(s, now, None))]);
            self.push(ctx, &s.id, &[], body, s.succeeded())
        })
    }

    fn verified(&self, ctx: &Context, report: &Verification) -> Delivery {
        let now = now();
        Delivery::per_verified_source(report, ctx.events, |s| {
            let body = metrics::render(&[(String::new(), metrics::of_verification(s, now))]);
            self.push(ctx, &s.id, &["command", "verify"], body, s.succeeded())
        })
    }
}
