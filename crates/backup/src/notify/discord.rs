//! `discord`: a message to a Discord webhook (`url`), JSON `{content}` as the webhook API
//! documents.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::http::{self, Request, SecretUrl};
use super::{Context, Delivery, Events, Notifier, StartInfo};
use crate::outcome::{RunReport, Verification};
use custos_kit::config::Validate;

/// `type: discord`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discord {
    /// `url`: the webhook URL (its path holds the webhook token).
    pub url: SecretUrl,
}

impl Discord {
    fn post(&self, ctx: &Context, text: &str) -> Result<(), super::NotifyError> {
        // Discord rejects content over 2000 characters.
        let content: String = text.chars().take(2000).collect();
        http::send(
            ctx.client()?,
            ctx.timeout,
            Request::json(
                Method::POST,
                self.url.0.clone(),
                &json!({ "content": content }),
            ),
        )
    }
}

impl Validate for Discord {}

impl Notifier for Discord {
    fn default_events(&self) -> Events {
        Events::NONE
    }

    fn start(&self, ctx: &Context, hostname: &str, sources: &[StartInfo]) -> Delivery {
        Delivery::per_start(sources, |s| self.post(ctx, &super::start_text(s, hostname)))
    }

    fn finish(&self, ctx: &Context, report: &RunReport) -> Delivery {
        Delivery::per_source(report, ctx.events, |s| {
            self.post(ctx, &super::outcome_text(s, &report.hostname))
        })
    }

    fn verified(&self, ctx: &Context, report: &Verification) -> Delivery {
        Delivery::per_verified_source(report, ctx.events, |s| {
            self.post(ctx, &super::verify_text(s, report))
        })
    }
}
