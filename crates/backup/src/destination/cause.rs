//! Why a request to a remote store failed, in one line. opendal and reqwest put the useful
//! part at the bottom of a `source()` chain (`send http request` -> `error sending request
//! for url` -> `client error (Connect)` -> `tcp connect error` -> `Connection refused`) and
//! their top-level messages say nothing a sysadmin can act on; this walks the chain and
//! names the cause (refused, DNS, TLS, timeout, reset) and where the request went, and for an
//! error answer the HTTP status with the service's error code.

use std::error::Error;

/// `request to <scheme://host:port> failed: <cause>` (just the cause when no URL is known);
/// the URL's path and query are left out (a query can carry a token).
pub fn describe(e: &(dyn Error + 'static)) -> String {
    let levels = chain(e);
    let endpoint = levels.iter().find_map(|l| {
        let url = l.downcast_ref::<reqwest::Error>()?.url()?;
        Some(match proxy_for(url) {
            Some(proxy) => format!("{} (through proxy {proxy})", origin(url)),
            None => origin(url),
        })
    });
    let bottom = levels.last().copied().unwrap_or(e);
    let mut cause = match bottom.downcast_ref::<reqwest::Error>() {
        // reqwest's own message (no deeper cause) names the whole URL: keep the origin only.
        Some(r) => match r.url() {
            Some(url) => r.to_string().replace(url.as_str(), &origin(url)),
            None => r.to_string(),
        },
        None => lower_first(&bottom.to_string()),
    };
    if levels.iter().any(|l| is_tls(*l)) {
        cause = format!("TLS: {cause}");
    } else if levels.iter().any(|l| l.to_string() == "dns error") {
        cause = format!("DNS lookup failed: {cause}");
    } else if levels.iter().any(|l| {
        l.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
    }) && !cause.contains("timed out")
    {
        cause = format!("timed out: {cause}");
    }
    match endpoint {
        Some(to) => format!("request to {to} failed: {cause}"),
        None => cause,
    }
}

/// The error and its sources, outermost first (at most 32: a chain is never that deep, a
/// cycle would be).
fn chain<'a>(e: &'a (dyn Error + 'static)) -> Vec<&'a (dyn Error + 'static)> {
    let mut out = vec![e];
    let mut cur = e.source();
    while let Some(next) = cur {
        if out.len() == 32 {
            break;
        }
        out.push(next);
        cur = next.source();
    }
    out
}

/// A rustls error, itself or inside an `io::Error` (whose `source()` skips the error it wraps).
fn is_tls(e: &(dyn Error + 'static)) -> bool {
    e.downcast_ref::<rustls::Error>().is_some()
        || e.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

/// The proxy the environment names for `url`'s scheme (as reqwest and opendal read it), as
/// its origin (no credentials): a refused connection is then the proxy's. `NO_PROXY` lists
/// are not matched; its `*` is.
fn proxy_for(url: &reqwest::Url) -> Option<String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if env("NO_PROXY").or_else(|| env("no_proxy")).as_deref() == Some("*") {
        return None;
    }
    let names: &[&str] = match url.scheme() {
        "https" => &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"],
        _ => &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"],
    };
    let proxy = names.iter().find_map(|k| env(k))?;
    let parsed = reqwest::Url::parse(&proxy)
        .or_else(|_| reqwest::Url::parse(&format!("http://{proxy}")))
        .ok()?;
    Some(origin(&parsed))
}

/// `scheme://host[:port]` of a URL, as written: the kit's one URL redaction.
fn origin(url: &reqwest::Url) -> String {
    custos_kit::http_client::origin(url, custos_kit::http_client::ImpliedPort::Omit)
}

/// `Connection refused (os error 111)` -> `connection refused (os error 111)`: the cause reads
/// as the tail of a sentence.
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) if f.is_ascii_uppercase() && c.clone().next().is_some_and(|n| n.is_lowercase()) => {
            f.to_ascii_lowercase().to_string() + c.as_str()
        }
        _ => s.to_string(),
    }
}

/// The HTTP status of an error answer as opendal records it in its context
/// (`response: Parts { status: 404, ... }`), which it offers only through `Display`.
pub fn opendal_status(e: &opendal::Error) -> Option<u16> {
    let text = e.to_string();
    let at = text.find("response: Parts { status: ")? + "response: Parts { status: ".len();
    let digits = text.get(at..at + 3)?;
    digits.parse().ok().filter(|s| (100..=599).contains(s))
}

/// An S3-style error body as opendal formats it (`S3Error { code: "NoSuchBucket", message:
/// "The specified bucket does not exist", ... }`) as `NoSuchBucket: The specified ...`;
/// other messages unchanged.
pub fn service_message(message: &str) -> String {
    let field = |name: &str| {
        let start = message.find(&format!("{name}: \""))? + name.len() + 3;
        let rest = message.get(start..)?;
        let end = rest.find("\", ")?;
        rest.get(..end).map(str::to_owned)
    };
    match (
        message.contains("Error { code: "),
        field("code"),
        field("message"),
    ) {
        (true, Some(code), Some(text)) if text.is_empty() => code,
        (true, Some(code), Some(text)) => format!("{code}: {text}"),
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// A refused connection through opendal (the real client, a closed port): the line names
    /// the refusal and the endpoint, not the URL's path.
    #[test]
    fn a_refused_connection_is_named_with_its_endpoint() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let b = opendal::services::S3::default()
            .bucket("bk")
            .region("us-east-1")
            .endpoint(&format!("http://127.0.0.1:{port}"))
            .access_key_id("x")
            .secret_access_key("y");
        let op = super::super::runtime::block_on(async {
            opendal::Operator::new(b).map(|o| o.finish())
        })
        .expect("operator");
        let e = super::super::runtime::block_on(op.stat("a/b?token=s3cr3t")).expect_err("refused");
        let line = describe(&e);
        assert!(
            line.contains(&format!(
                "request to http://127.0.0.1:{port} failed: connection refused"
            )),
            "{line}"
        );
        assert!(!line.contains("s3cr3t") && !line.contains("/bk/"), "{line}");
    }

    #[test]
    fn dns_and_tls_failures_say_so() {
        #[derive(Debug)]
        struct Named(&'static str, io::Error);
        impl std::fmt::Display for Named {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl Error for Named {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.1)
            }
        }
        let dns = Named(
            "dns error",
            io::Error::other("failed to lookup address information"),
        );
        assert_eq!(
            describe(&dns),
            "DNS lookup failed: failed to lookup address information"
        );
        let tls = Named(
            "client error (Connect)",
            io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ),
        );
        assert!(
            describe(&tls).starts_with("TLS: invalid peer certificate"),
            "{}",
            describe(&tls)
        );
    }

    #[test]
    fn an_error_answer_keeps_status_and_service_code() {
        let e = opendal::Error::new(
            opendal::ErrorKind::NotFound,
            r#"S3Error { code: "NoSuchBucket", message: "The specified bucket does not exist", resource: "", request_id: "" }"#,
        )
        .with_context("response", "Parts { status: 404, version: HTTP/1.1 }");
        assert_eq!(opendal_status(&e), Some(404));
        assert_eq!(
            service_message(e.message()),
            "NoSuchBucket: The specified bucket does not exist"
        );
        assert_eq!(service_message("plain text"), "plain text");
        assert_eq!(
            opendal_status(&opendal::Error::new(opendal::ErrorKind::Unexpected, "x")),
            None
        );
    }
}
