//! `slack`: a message to a Slack incoming webhook (`url`), JSON `{username, icon_emoji, text}`
//! as the webhook API documents (the original posted form fields, which Slack ignores).

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::http::{self, Request, SecretUrl};
use super::{Context, Delivery, Events, Notifier, StartInfo};
use crate::outcome::{RunReport, Verification};
use custos_kit::config::Validate;

/// `type: slack`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    /// `url`: the webhook URL (its path is the secret).
    pub url: SecretUrl,
}

impl Slack {
    fn post(&self, ctx: &Context, text: &str, icon: &str) -> Result<(), super::NotifyError> {
        let body = json!({"username": "Backup Agent", "icon_emoji": icon, "text": text});
        http::send(
            ctx.client()?,
            ctx.timeout,
            Request::json(Method::POST, self.url.0.clone(), &body),
        )
    }
}

impl Validate for Slack {}

impl Notifier for Slack {
    fn default_events(&self) -> Events {
        Events::NONE
    }

    fn start(&self, ctx: &Context, hostname: &str, sources: &[StartInfo]) -> Delivery {
        Delivery::per_start(sources, |s| {
            self.post(ctx, &super::start_text(s, hostname), ":+1:")
        })
    }

    fn finish(&self, ctx: &Context, report: &RunReport) -> Delivery {
        Delivery::per_source(report, ctx.events, |s| {
            let icon = if s.succeeded() { ":+1:" } else { ":imp:" };
            self.post(ctx, &super::outcome_text(s, &report.hostname), icon)
        })
    }

    fn verified(&self, ctx: &Context, report: &Verification) -> Delivery {
        Delivery::per_verified_source(report, ctx.events, |s| {
            let icon = if s.succeeded() { ":+1:" } else { ":imp:" };
            self.post(ctx, &super::verify_text(s, report), icon)
        })
    }
}
