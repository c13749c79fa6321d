//! `telegram`: a Bot API `sendMessage` (`api_token`, `chat_id`), JSON `{chat_id, text}`.
//! custos `api_url` points at another Bot API server (self-hosted, tests).

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{self, Request};
use super::{Context, Delivery, Events, Notifier, NotifyError};
use crate::outcome::{RunReport, Verification};
use custos_kit::config::Secret;
use custos_kit::config::{Invalid, Validate};

/// `type: telegram`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telegram {
    /// `api_token`: the bot token (part of the request path, so never logged).
    pub api_token: Secret,
    /// `chat_id`: a number or `@channelname` (the original's examples quote numbers).
    pub chat_id: Value,
    /// custos `api_url`: the Bot API server.
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    "https://api.telegram.org".to_owned()
}

impl Telegram {
    fn url(&self) -> Result<Url, NotifyError> {
        let base = self.api_url.trim_end_matches('/');
        Url::parse(&format!(
            "{base}/bot{}/sendMessage",
            self.api_token.expose()
        ))
        .map_err(|_| {
            NotifyError::Setup("telegram: api_url with api_token is not a valid URL".into())
        })
    }

    /// A `sendMessage` to the chat.
    fn post(&self, ctx: &Context, text: &str) -> Result<(), NotifyError> {
        let body = json!({"chat_id": self.chat_id, "text": text});
        http::send(
            ctx.client()?,
            ctx.timeout,
            Request::json(Method::POST, self.url()?, &body),
        )
    }
}

impl Validate for Telegram {
    fn validate(&self) -> Result<(), Invalid> {
        match &self.chat_id {
            Value::Number(_) => {}
            Value::String(s) if !s.trim().is_empty() => {}
            other => return Err(Invalid::new("chat_id", other, "expected a chat id")),
        }
        match Url::parse(&self.api_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(Invalid::new(
                    "api_url",
                    &self.api_url,
                    "expected an http(s) URL",
                ))
            }
        }
        if self.api_token.expose().is_empty() || self.api_token.expose().contains(['/', '?', '#']) {
            return Err(Invalid::new("api_token", "<secret>", "not a bot token"));
        }
        Ok(())
    }
}

impl Notifier for Telegram {
    fn default_events(&self) -> Events {
        Events::NONE
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
