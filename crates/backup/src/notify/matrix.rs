//! `matrix`: an `m.room.message` to a room (`url` of the home server, `access_token`,
//! `room_id`), sent as the client-server API v3 documents: `PUT
//! /_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}` with the token in the
//! `Authorization` header (the original put it in the query string, where proxies log it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::json;

use super::http::{self, Request, SecretUrl};
use super::{Context, Delivery, Events, Notifier, NotifyError};
use crate::outcome::{RunReport, Verification};
use custos_kit::config::Secret;
use custos_kit::config::Validate;

/// `type: matrix`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// `url`: the home server, e.g. `https://matrix.org`.
    pub url: SecretUrl,
    pub access_token: Secret,
    /// `room_id`: `!opaque:server` (an alias `#room:server` is not resolved).
    pub room_id: String,
}

/// Transaction ids must differ per message (the server deduplicates on them).
static TXN: AtomicU64 = AtomicU64::new(0);

impl Matrix {
    fn url(&self) -> Result<Url, NotifyError> {
        let txn = format!(
            "custos-{}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
            TXN.fetch_add(1, Ordering::Relaxed)
        );
        let mut u = self.url.0.clone();
        u.path_segments_mut()
            .map_err(|()| NotifyError::Setup("matrix: url cannot be a base".into()))?
            .pop_if_empty()
            .extend([
                "_matrix",
                "client",
                "v3",
                "rooms",
                &self.room_id,
                "send",
                "m.room.message",
                &txn,
            ]);
        Ok(u)
    }

    /// An `m.text` message.
    fn post(&self, ctx: &Context, text: &str) -> Result<(), NotifyError> {
        let body = json!({"msgtype": "m.text", "body": text});
        let mut req = Request::json(Method::PUT, self.url()?, &body);
        req.bearer = Some(&self.access_token);
        http::send(ctx.client()?, ctx.timeout, req)
    }
}

impl Validate for Matrix {}

impl Notifier for Matrix {
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
