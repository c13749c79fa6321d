//! `type: prtg`: one HTTP Push Data Advanced request per server and poll, a channel per proxy
//! with its current sessions (`scur`). PRTG keeps at most 50 channels per sensor: forward
//! fewer rows (`include`/`exclude`) for bigger HAProxies.

use super::SinkError;
use crate::config::{PrtgBackend, PrtgMethod};
use crate::sample::{Batch, RowType, Sample};
use crate::source::error_chain;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug)]
pub struct PrtgSink {
    cfg: PrtgBackend,
    client: reqwest::Client,
}

impl PrtgSink {
    pub fn new(cfg: PrtgBackend) -> Result<PrtgSink, SinkError> {
        let client = crate::source::http_client()
            .build()
            .map_err(|e| SinkError::Http {
                what: "PRTG HTTP client".into(),
                reason: error_chain(&e.without_url()),
            })?;
        Ok(PrtgSink { cfg, client })
    }

    /// Pushes the batch to the sensor of its server.
    pub async fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let url = self.cfg.url_for(&batch.server);
        let what = format!("PRTG push for {}", batch.server);
        let http = |e: reqwest::Error| SinkError::Http {
            what: what.clone(),
            reason: error_chain(&e.without_url()),
        };
        let body = content(batch).to_string();
        let timeout = Duration::from_secs_f64(self.cfg.timeout);
        let req = match self.cfg.method {
            PrtgMethod::Post => self
                .client
                .post(&url)
                .header("content-type", "application/json")
                .body(body),
            PrtgMethod::Get => {
                let mut u = reqwest::Url::parse(&url).map_err(|e| SinkError::Http {
                    what: what.clone(),
                    reason: e.to_string(),
                })?;
                u.query_pairs_mut().append_pair("content", &body);
                self.client.get(u)
            }
        };
        let resp = match tokio::time::timeout(timeout, req.timeout(timeout).send()).await {
            Err(_) => return Err(SinkError::Timeout { what, timeout }),
            Ok(r) => r.map_err(http)?,
        };
        let status = resp.status();
        if !status.is_success() {
            let mut body = resp.text().await.unwrap_or_default();
            body.truncate(200);
            return Err(SinkError::Status {
                what,
                status: status.as_u16(),
                body,
            });
        }
        Ok(())
    }
}

/// The channel name of a sample: the proxy for backends (the default rows), qualified for the
/// other row types so they never collide.
pub fn channel(s: &Sample) -> String {
    match s.row_type {
        RowType::Backend => s.proxy.clone(),
        RowType::Frontend => format!("{} (frontend)", s.proxy),
        RowType::Server => format!("{}/{}", s.proxy, s.svname),
        RowType::Listener => format!("{}/{} (listener)", s.proxy, s.svname),
    }
}

/// The push document: `{"prtg":{"result":[{"channel":..,"value":scur,..}]}}`; rows whose
/// session count is unknown get no channel value this time.
pub fn content(batch: &Batch) -> Value {
    let result: Vec<Value> = batch
        .samples
        .iter()
        .filter_map(|s| {
            s.counts.scur.map(|v| {
                json!({
                    "channel": channel(s),
                    "value": v,
                    "unit": "Custom",
                    "customunit": "sessions",
                })
            })
        })
        .collect();
    if result.is_empty() {
        return json!({"prtg": {"error": 1, "text": "HAProxy reported no session counts"}});
    }
    json!({ "prtg": { "result": result } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Counts;
    use std::time::SystemTime;

    #[test]
    fn a_channel_per_proxy() {
        let s = |proxy: &str, svname: &str, row_type, scur| Sample {
            proxy: proxy.into(),
            svname: svname.into(),
            row_type,
            status: None,
            counts: Counts {
                scur,
                ..Counts::default()
            },
        };
        let b = Batch {
            server: "lb".into(),
            endpoint: "e".into(),
            time: SystemTime::now(),
            samples: vec![
                s("be_app", "BACKEND", RowType::Backend, Some(4)),
                s("fe", "FRONTEND", RowType::Frontend, Some(1)),
                s("be_app", "app1", RowType::Server, Some(2)),
                s("be_x", "BACKEND", RowType::Backend, None),
            ],
        };
        let c = content(&b);
        let r = c["prtg"]["result"].as_array().unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0]["channel"], "be_app");
        assert_eq!(r[0]["value"], 4);
        assert_eq!(r[1]["channel"], "fe (frontend)");
        assert_eq!(r[2]["channel"], "be_app/app1");
        let empty = Batch {
            samples: vec![],
            ..b
        };
        assert_eq!(content(&empty)["prtg"]["error"], 1);
    }
}
