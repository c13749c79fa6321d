//! `hipchat`: a room notification (`url`, the v2 integration URL with its `auth_token`),
//! JSON `{from, message, message_format, notify, color}` as the original sent it.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::http::{self, Request, SecretUrl};
use super::{Context, Delivery, Events, Notifier};
use crate::outcome::RunReport;
use custos_kit::config::Validate;

/// `type: hipchat`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hipchat {
    /// `url`: the integration URL (its `auth_token` query is the secret).
    pub url: SecretUrl,
}

impl Validate for Hipchat {}

impl Notifier for Hipchat {
    fn default_events(&self) -> Events {
        Events::NONE
    }

    fn finish(&self, ctx: &Context, report: &RunReport) -> Delivery {
        Delivery::per_source(report, ctx.events, |s| {
            let ok = s.succeeded();
            let body = json!({
                "from": "Backup Agent",
                "message": super::outcome_text(s, &report.hostname),
                "message_format": "text",
                "notify": !ok,
                "color": if ok { "green" } else { "red" },
            });
            http::send(
                ctx.client()?,
                ctx.timeout,
                Request::json(Method::POST, self.url.0.clone(), &body),
            )
        })
    }
}
