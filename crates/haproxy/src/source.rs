//! Where a stats page comes from: the `;csv` HTTP page (basic auth, timeout, optional custom CA)
//! or the runtime API socket (`show stat`).

use crate::config::Server;
use custos_kit::config::Secret;
use custos_kit::http_client::redact_userinfo;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest stats page read (its rows beyond `max-rows` are only counted); a 2,000-server
/// HAProxy writes about 1.5 MB.
pub const MAX_PAGE: usize = 32 << 20;

/// Why a fetch failed. Messages name the endpoint without credentials.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{endpoint}: no answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("{endpoint}: cannot connect: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("{endpoint}: HTTP {status} (check username and password)")]
    Auth { endpoint: String, status: u16 },
    #[error("{endpoint}: HTTP {status}")]
    Status { endpoint: String, status: u16 },
    #[error("{endpoint}: reading the answer failed: {reason}")]
    Read { endpoint: String, reason: String },
    #[error("{endpoint}: answer larger than {max} bytes")]
    TooLarge { endpoint: String, max: usize },
    #[error("{endpoint}: cannot set up the HTTP client: {reason}")]
    Setup { endpoint: String, reason: String },
}

impl FetchError {
    /// The `kind` label of `haproxysessionmon_fetch_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Timeout { .. } => "timeout",
            FetchError::Connect { .. } => "connect",
            FetchError::Auth { .. } => "auth",
            FetchError::Status { .. } => "http",
            FetchError::Read { .. } | FetchError::TooLarge { .. } => "read",
            FetchError::Setup { .. } => "setup",
        }
    }
}

/// The kit's HTTP client builder (one provider, user agent, connect timeout) without proxies:
/// HAProxy's stats page is on the local network.
pub fn http_client() -> reqwest::ClientBuilder {
    custos_kit::http_client::builder(
        "haproxysessionmon",
        env!("CARGO_PKG_VERSION"),
        custos_kit::http_client::Timeouts {
            connect: Duration::from_secs_f64(crate::config::DEFAULT_TIMEOUT),
            overall: None,
        },
    )
    .no_proxy()
}

/// The client of every server without its own TLS options: one connection pool and one TLS
/// setup (root store) for all, instead of one per server.
fn shared_client() -> Result<reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            http_client()
                .build()
                .map_err(|e| error_chain(&e.without_url()))
        })
        .clone()
}

/// One server's stats source.
#[derive(Debug)]
pub enum Source {
    Http {
        client: reqwest::Client,
        /// Parsed once: reqwest would parse the text again at every fetch.
        url: reqwest::Url,
        endpoint: String,
        auth: Option<(String, Secret)>,
    },
    Socket {
        path: PathBuf,
        endpoint: String,
    },
}

impl Source {
    /// The source for a validated server config.
    pub fn new(server: &Server) -> Result<Source, FetchError> {
        let endpoint = server.endpoint_display();
        if let Some(path) = server.endpoint.strip_prefix("unix://") {
            return Ok(Source::Socket {
                path: PathBuf::from(path),
                endpoint,
            });
        }
        let setup = |reason: String| FetchError::Setup {
            endpoint: endpoint.clone(),
            reason,
        };
        let client = if server.ca_file.is_none() && !server.insecure {
            shared_client().map_err(setup)?
        } else {
            own_client(server).map_err(setup)?
        };
        let url = reqwest::Url::parse(&server.endpoint).map_err(|e| setup(e.to_string()))?;
        Ok(Source::Http {
            client,
            url,
            endpoint,
            auth: server.username.clone().map(|u| {
                (
                    u,
                    server.password.clone().unwrap_or_else(|| Secret::new("")),
                )
            }),
        })
    }

    /// The endpoint without credentials.
    pub fn endpoint(&self) -> &str {
        match self {
            Source::Http { endpoint, .. } | Source::Socket { endpoint, .. } => endpoint,
        }
    }

    /// Fetches one whole page within `timeout`, feeding its bytes to `page` as they arrive
    /// (the page is never held whole).
    pub async fn fetch(
        &self,
        timeout: Duration,
        page: &mut crate::csv::Reader,
    ) -> Result<(), FetchError> {
        let endpoint = self.endpoint().to_string();
        let work = async {
            match self {
                Source::Http {
                    client, url, auth, ..
                } => fetch_http(client, url, auth.as_ref(), &endpoint, page).await,
                Source::Socket { path, .. } => fetch_socket(path, &endpoint, page).await,
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout { endpoint, timeout }),
        }
    }
}

async fn fetch_http(
    client: &reqwest::Client,
    url: &reqwest::Url,
    auth: Option<&(String, Secret)>,
    endpoint: &str,
    page: &mut crate::csv::Reader,
) -> Result<(), FetchError> {
    let mut req = client.get(url.clone());
    if let Some((user, pass)) = auth {
        req = req.basic_auth(user, Some(pass.expose()));
    }
    let mut resp = req.send().await.map_err(|e| FetchError::Connect {
        endpoint: endpoint.to_string(),
        reason: error_chain(&e.without_url()),
    })?;
    let status = resp.status().as_u16();
    match status {
        200 => {}
        401 | 403 => {
            return Err(FetchError::Auth {
                endpoint: endpoint.to_string(),
                status,
            })
        }
        _ => {
            return Err(FetchError::Status {
                endpoint: endpoint.to_string(),
                status,
            })
        }
    }
    let mut total = 0usize;
    while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Read {
        endpoint: endpoint.to_string(),
        reason: error_chain(&e.without_url()),
    })? {
        total += chunk.len();
        if total > MAX_PAGE {
            return Err(FetchError::TooLarge {
                endpoint: endpoint.to_string(),
                max: MAX_PAGE,
            });
        }
        page.feed(&chunk);
    }
    Ok(())
}

/// `show stat` on the runtime API: one command per connection, HAProxy closes after the answer.
async fn fetch_socket(
    path: &std::path::Path,
    endpoint: &str,
    page: &mut crate::csv::Reader,
) -> Result<(), FetchError> {
    let mut s = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| FetchError::Connect {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
    let read_err = |e: std::io::Error| FetchError::Read {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    };
    s.write_all(b"show stat\n").await.map_err(read_err)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0usize;
    loop {
        let n = s.read(&mut buf).await.map_err(read_err)?;
        if n == 0 {
            return Ok(());
        }
        total += n;
        if total > MAX_PAGE {
            return Err(FetchError::TooLarge {
                endpoint: endpoint.to_string(),
                max: MAX_PAGE,
            });
        }
        page.feed(&buf[..n]);
    }
}

/// A client with the server's own TLS options (`ca-file`, `insecure`).
fn own_client(server: &Server) -> Result<reqwest::Client, String> {
    let mut b = http_client();
    if let Some(ca) = &server.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        b = b.tls_certs_only(certs);
    }
    if server.insecure {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| error_chain(&e.without_url()))
}

/// The kit's error chain with any `user:password@` of a URL cut out.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    redact_userinfo(&custos_kit::error::chain(e))
}
