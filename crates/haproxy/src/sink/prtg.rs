//! `type: prtg`: one HTTP Push Data Advanced request per server and poll, a channel per proxy
//! with its current sessions (`scur`). PRTG keeps at most 50 channels per sensor: forward
//! fewer rows (`include`/`exclude`) for bigger HAProxies.

use super::{missing, Built, Context, Delivered, Sink, SinkConfig, SinkError, TaskSink, Write};
use crate::config::{
    check_http_url, check_seconds, redact_userinfo, DEFAULT_TIMEOUT, TIMEOUT_RANGE,
};
use crate::sample::{Batch, RowType, Sample};
use crate::source::error_chain;
use custos_kit::config::{values, Invalid, Validate};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// PRTG push method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PrtgMethod {
    Get,
    Post,
}

/// `type: prtg`: an HTTP Push Data Advanced sensor per HAProxy server.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Keys")]
pub struct PrtgBackend {
    /// The probe's push URL up to the token, e.g. `https://prtg.local:5051/`.
    pub base_url: String,
    /// The sensor's identification token; `{server}` is replaced by the server id (default:
    /// the server id alone, so each HAProxy feeds its own sensor).
    pub token: Option<String>,
    /// The original's name for the token (it never used it); used when `token` is absent.
    pub key: Option<String>,
    pub method: PrtgMethod,
    /// Seconds a push may take.
    pub timeout: f64,
}

/// The keys as written (`~` reads as absent, as the original's `.get()`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    #[serde(default, rename = "base-url")]
    base_url: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    key: Option<String>,
    /// The original's sensor group id: accepted for compatibility, not used.
    #[serde(default)]
    #[allow(dead_code)]
    gid: Option<values::AnyValue>,
    #[serde(default)]
    method: Option<PrtgMethod>,
    #[serde(default, deserialize_with = "values::opt_seconds")]
    timeout: Option<f64>,
}

impl TryFrom<Keys> for PrtgBackend {
    type Error = String;

    fn try_from(k: Keys) -> Result<PrtgBackend, String> {
        Ok(PrtgBackend {
            base_url: k.base_url.ok_or_else(|| missing("base-url"))?,
            token: k.token,
            key: k.key,
            method: k.method.unwrap_or(PrtgMethod::Post),
            timeout: k.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

impl PrtgBackend {
    /// The push URL for `server`.
    pub fn url_for(&self, server: &str) -> String {
        let token = self
            .token
            .as_deref()
            .or(self.key.as_deref())
            .unwrap_or("{server}")
            .replace("{server}", server);
        format!("{}/{}", self.base_url.trim_end_matches('/'), token)
    }
}

impl Validate for PrtgBackend {
    fn validate(&self) -> Result<(), Invalid> {
        if let Err(reason) = check_http_url(&self.base_url) {
            return Err(Invalid::new(
                "base-url",
                redact_userinfo(&self.base_url),
                reason,
            ));
        }
        if let Err(reason) = check_seconds(self.timeout, TIMEOUT_RANGE) {
            return Err(Invalid::new("timeout", self.timeout, reason));
        }
        Ok(())
    }
}

impl SinkConfig for PrtgBackend {
    fn build(&self, _: &Context) -> Result<Built, SinkError> {
        Ok(Built::Sink(Sink::Task(Box::new(PrtgSink::new(
            self.clone(),
        )?))))
    }
}

impl TaskSink for PrtgSink {
    fn write<'a>(&'a mut self, batch: &'a Batch) -> Write<'a> {
        Box::pin(async move {
            PrtgSink::write(self, batch)
                .await
                .map(|()| Delivered::default())
        })
    }
}

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
            let body = error_excerpt(resp, timeout).await;
            return Err(SinkError::Status {
                what,
                status: status.as_u16(),
                body,
            });
        }
        Ok(())
    }
}

/// Bytes of an error answer quoted in the log.
pub const ERROR_EXCERPT: usize = 200;

/// The start of an error answer for the log: at most [`ERROR_EXCERPT`] bytes are read (a
/// probe's error page can be large), cut at a character boundary, never inside one (a cut
/// inside a multi-byte character used to abort the process).
async fn error_excerpt(mut resp: reqwest::Response, timeout: Duration) -> String {
    let mut bytes = Vec::new();
    let read = async {
        while bytes.len() <= ERROR_EXCERPT {
            match resp.chunk().await {
                Ok(Some(c)) => bytes.extend_from_slice(&c),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    excerpt(&bytes, ERROR_EXCERPT)
}

/// `bytes` as text (invalid UTF-8 replaced), at most `max` bytes long and cut only between
/// characters.
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max + 4)]);
    custos_kit::text::prefix(&text, max).to_string()
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
    fn error_excerpt_cuts_between_characters() {
        // The audit's reply: byte 200 falls inside the two bytes of "é".
        let body = format!("{}é{}", "a".repeat(199), "tail");
        assert_eq!(excerpt(body.as_bytes(), 200), "a".repeat(199));
        assert_eq!(excerpt("ééé".as_bytes(), 3), "é");
        assert_eq!(excerpt(b"short", 200), "short");
        assert_eq!(excerpt(&[0xff, b'x'], 200), "\u{fffd}x");
    }

    proptest::proptest! {
        #[test]
        fn excerpt_of_any_text_is_a_prefix_within_the_limit(s in ".*", max in 0usize..64) {
            let e = excerpt(s.as_bytes(), max);
            proptest::prop_assert!(e.len() <= max);
            proptest::prop_assert!(s.starts_with(&e));
        }
    }

    /// A PRTG probe answering 500 with a body whose byte 200 is inside "é": the push fails
    /// with the status and the start of the body, and nothing panics.
    #[tokio::test]
    async fn error_reply_with_a_multibyte_character_at_the_cut() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let body = format!("{}é{}", "a".repeat(199), "tail");
        tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let _ = c.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 500 Oops\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            c.write_all(resp.as_bytes()).await.unwrap();
        });
        let mut sink = PrtgSink::new(PrtgBackend {
            base_url: format!("http://127.0.0.1:{port}/"),
            token: None,
            key: None,
            method: PrtgMethod::Post,
            timeout: 5.0,
        })
        .unwrap();
        let b = Batch {
            server: "lb".into(),
            endpoint: "e".into(),
            time: SystemTime::now(),
            samples: vec![],
        };
        match sink.write(&b).await {
            Err(SinkError::Status { status, body, .. }) => {
                assert_eq!(status, 500);
                assert_eq!(body, "a".repeat(199));
            }
            other => panic!("{other:?}"),
        }
    }

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
