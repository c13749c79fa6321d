//! `elasticsearch`: one statistics document per source into the index named by
//! `indexpattern` (strftime, local time, as the original's `datetime.now().strftime`), via
//! `POST /<index>/_doc`. Success documents carry the original's fields (`@timestamp`,
//! `status`, `source{id,name}`, `hostname`, `stats{...}`); failure documents the same
//! with `error` (the original left `@timestamp` off, so Kibana could not place them).
//! `backup verify` sends a document per source too, `"event": "verify"`, with every copy
//! read under `verify.copies` ([`verify_document`]).

use chrono::format::{Item, StrftimeItems};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{self, Credentials, Request, SecretUrl};
use super::{Context, Delivery, Events, Notifier};
use crate::outcome::{RunReport, SourceReport, SourceVerification, Verification};
use custos_kit::config::{Invalid, Validate};

/// `type: elasticsearch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Elasticsearch {
    /// `url`: the cluster, e.g. `https://es:9200`.
    pub url: SecretUrl,
    /// `credentials: {username, password}`: HTTP basic auth.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// `indexpattern`, e.g. `backups-%Y`.
    pub indexpattern: String,
}

fn iso(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The document for one source.
pub fn document(s: &SourceReport, hostname: &str) -> Value {
    let mut doc = json!({
        "@timestamp": iso(s.ended),
        "status": if s.succeeded() { "success" } else { "failed" },
        "source": {"id": s.id, "name": s.name, "type": s.kind},
        "hostname": hostname,
    });
    if s.succeeded() {
        doc["stats"] = json!({
            "starttime": iso(s.started),
            "endtime": iso(s.ended),
            "size": s.stored_bytes,
            "input_size": s.input_bytes,
            "dumptime": s.dump.as_secs_f64(),
            "uploadtime": s.upload().as_secs_f64(),
            "retainedfiles": s.retained_good(),
            "sha256": s.sha256,
            "object": s.object,
        });
    } else {
        doc["error"] = Value::String(s.error_text());
    }
    doc
}

/// The document for one source after `backup verify`.
pub fn verify_document(s: &SourceVerification, report: &Verification) -> Value {
    let copies: Vec<Value> = s
        .copies
        .iter()
        .map(|c| {
            json!({
                "destination": c.destination,
                "database": c.database,
                "timestamp": c.stamp.map(|t| t.to_string()),
                "size": c.size,
                "ok": c.result.is_ok(),
                "error": c.result.as_ref().err().map(|f| f.message.clone()),
            })
        })
        .collect();
    let mut doc = json!({
        "@timestamp": iso(std::time::SystemTime::now()),
        "event": "verify",
        "status": if s.succeeded() { "success" } else { "failed" },
        "source": {"id": s.id, "name": s.name, "type": s.kind},
        "hostname": report.hostname,
        "verify": {
            "sample_percent": report.sample,
            "copies": copies,
        },
    });
    if !s.succeeded() {
        doc["error"] = Value::String(s.error_text());
    }
    doc
}

impl Elasticsearch {
    /// `POST /<index>/_doc` with `doc`; the index is `indexpattern` formatted now.
    fn post(&self, ctx: &Context, index: &str, doc: &Value) -> Result<(), super::NotifyError> {
        let mut url = self.url.0.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty().extend([index, "_doc"]);
        }
        let mut req = Request::json(Method::POST, url, doc);
        req.basic = Credentials::given(&self.credentials);
        http::send(ctx.client()?, ctx.timeout, req)
    }

    fn index(&self) -> String {
        chrono::Local::now()
            .format(&self.indexpattern)
            .to_string()
            .to_lowercase()
    }
}

impl Validate for Elasticsearch {
    fn validate(&self) -> Result<(), Invalid> {
        let bad = StrftimeItems::new(&self.indexpattern).any(|i| matches!(i, Item::Error));
        let index = if bad {
            String::new()
        } else {
            chrono::Local::now().format(&self.indexpattern).to_string()
        };
        if index.is_empty()
            || index.contains(['/', '\\', '*', '?', '"', '<', '>', '|', ' ', ',', '#'])
        {
            return Err(Invalid::new(
                "indexpattern",
                &self.indexpattern,
                "not a strftime pattern giving a valid index name",
            ));
        }
        Ok(())
    }
}

impl Notifier for Elasticsearch {
    fn default_events(&self) -> Events {
        Events::OUTCOMES
    }

    fn finish(&self, ctx: &Context, report: &RunReport) -> Delivery {
        let index = self.index();
        Delivery::per_source(report, ctx.events, |s| {
            self.post(ctx, &index, &document(s, &report.hostname))
        })
    }

    fn verified(&self, ctx: &Context, report: &Verification) -> Delivery {
        let index = self.index();
        Delivery::per_verified_source(report, ctx.events, |s| {
            self.post(ctx, &index, &verify_document(s, report))
        })
    }
}
