//! `hipchat`: a room notification (`url`, the v2 integration URL with its `auth_token`),
//! JSON `{from, message, message_format, notify, color}` as the original sent it.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::http::{self, Request, SecretUrl};
use super::{Context, Delivery, Events, Notifier};
use crate::outcome::{RunReport, Verification};
use custos_kit::config::Validate;

/// `type: hipchat`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hipchat {
    /// `url`: the integration URL (its `auth_token` query is the secret).
    pub url: SecretUrl,
}

impl Hipchat {
    /// A room notification: green and quiet when `ok`, red and notifying otherwise.
    fn post(&self, ctx: &Context, message: &str, ok: bool) -> Result<(), super::NotifyError> {
        let body = json!({
            "from": "Backup Agent",
            "message": message,
            "message_format": "text",
            "notify": !ok,
            "color": if ok { "green" } else { "red" },
        });
        http::send(
            ctx.client()?,
            ctx.timeout,
            Request::json(Method::POST, self.url.0.clone(), &body),
        )
    }
}

impl Validate for Hipchat {}

impl Notifier for Hipchat {
    fn default_events(&self) -> Events {
        Events::NONE
    }

    fn finish(&self, ctx: &Context, report: &RunReport) -> Delivery {
        Delivery::per_source(report, ctx.events, |s| {
            self.post(
                ctx,
                &super::outcome_text(s, &report.hostname),
                s.succeeded(),
            )
        })
    }

    fn verified(&self, ctx: &Context, report: &Verification) -> Delivery {
        Delivery::per_verified_source(report, ctx.events, |s| {
            self.post(ctx, &super::verify_text(s, report), s.succeeded())
        })
    }
}
