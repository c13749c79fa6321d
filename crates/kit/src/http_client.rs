//! The one HTTP client set-up of every custos binary (haproxy's stats source and PRTG sink,
//! backup's notifiers and SaaS stores): reqwest on rustls with the ring provider, installed
//! once per process, a user agent that names the binary, connect and overall timeouts, and
//! the one way a URL is shown in logs and errors ([`redact_userinfo`] keeps the path,
//! [`origin`] only scheme, host and port).
//!
//! reqwest is built without a crypto provider (`rustls-no-provider`): ring is the one the
//! workspace already compiles for burp and lettre, and a client built before a provider is
//! installed fails. Every client therefore starts here.

use std::sync::Once;
use std::time::Duration;

/// Timeouts of a client; a request may still set a shorter overall one of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Until the TCP (and TLS) connection stands.
    pub connect: Duration,
    /// The whole request, answer included; `None` for transfers that may take hours
    /// (uploads to a store), which bound each step themselves.
    pub overall: Option<Duration>,
}

/// Installs rustls' ring provider as the process default, once; later calls do nothing.
/// Everything in the process that makes a rustls config without naming a provider (reqwest,
/// opendal's reqwest) relies on it.
pub fn install_crypto_provider() {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Err only when another provider is installed already: that one serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `custos/<binary> <version>`: what every request says it comes from.
pub fn user_agent(binary: &str, version: &str) -> String {
    format!("custos/{binary} {version}")
}

/// An async client builder with the provider installed, the user agent and `timeouts` set.
/// Callers add what is theirs (their CA, `no_proxy`) and build.
pub fn builder(binary: &str, version: &str, timeouts: Timeouts) -> reqwest::ClientBuilder {
    install_crypto_provider();
    let b = reqwest::Client::builder()
        .user_agent(user_agent(binary, version))
        .connect_timeout(timeouts.connect);
    match timeouts.overall {
        Some(t) => b.timeout(t),
        None => b,
    }
}

/// `scheme://user:pass@host/...` without `user:pass@`, wherever it stands in `text` (a URL or
/// a message quoting one); the rest is kept, path included.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#` or whitespace.
        let auth_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let auth = &tail[..auth_end];
        match auth.rfind('@') {
            Some(at) => out.push_str(&auth[at + 1..]),
            None => out.push_str(auth),
        }
        rest = &tail[auth_end..];
    }
    out.push_str(rest);
    out
}

/// Whether [`origin`] writes the port a scheme implies (`:443` for https).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImpliedPort {
    /// `https://host:443`: every endpoint reads the same (notifier errors).
    Write,
    /// `https://host`: as the URL was written (store errors).
    Omit,
}

/// `scheme://host[:port]` of `url`: where a request went, without credentials, path or query
/// (a path or query can carry a token).
pub fn origin(url: &reqwest::Url, implied: ImpliedPort) -> String {
    let host = url.host_str().unwrap_or("?");
    let port = match implied {
        ImpliedPort::Write => url.port_or_known_default(),
        ImpliedPort::Omit => url.port(),
    };
    match port {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_cut_wherever_a_url_stands() {
        assert_eq!(
            redact_userinfo("http://admin:pw@lb:8080/haproxy?stats;csv"),
            "http://lb:8080/haproxy?stats;csv"
        );
        assert_eq!(redact_userinfo("http://lb/a@b"), "http://lb/a@b");
        assert_eq!(
            redact_userinfo("error sending request for url (https://u:s3cret@x:1/p): refused"),
            "error sending request for url (https://x:1/p): refused"
        );
        assert_eq!(
            redact_userinfo("a http://u:p@one/ and https://v:q@two"),
            "a http://one/ and https://two"
        );
        // Nothing to cut, multi-byte text around it.
        assert_eq!(redact_userinfo("é://ü@ö"), "é://ö");
        assert_eq!(redact_userinfo("no url"), "no url");
    }

    #[test]
    fn origin_keeps_neither_credentials_nor_path_nor_query() {
        let u =
            reqwest::Url::parse("https://u:pw@hooks.example:8443/T0/B1/secret?token=x").unwrap();
        for implied in [ImpliedPort::Write, ImpliedPort::Omit] {
            assert_eq!(origin(&u, implied), "https://hooks.example:8443");
        }
        let u = reqwest::Url::parse("https://hooks.example/services/x").unwrap();
        assert_eq!(origin(&u, ImpliedPort::Write), "https://hooks.example:443");
        assert_eq!(origin(&u, ImpliedPort::Omit), "https://hooks.example");
    }

    /// Two clients in one process (the provider is installed once, the second build finds
    /// it); a request from one reaches a real socket with the user agent naming the binary.
    #[test]
    fn clients_build_once_the_provider_is_installed_and_name_the_binary() {
        use std::io::{BufRead as _, Write as _};
        let t = Timeouts {
            connect: Duration::from_secs(5),
            overall: Some(Duration::from_secs(10)),
        };
        builder("test", "0.0.0", t).build().expect("first client");
        let client = builder("backup", "1.2.3", t)
            .build()
            .expect("second client");
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (c, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            for line in std::io::BufReader::new(&c).lines() {
                let line = line.unwrap();
                if line.is_empty() {
                    break;
                }
                head.push(line.to_ascii_lowercase());
            }
            let _ = (&c).write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            head
        });
        let status = crate::start::block_on(crate::start::Runtime::CurrentThread, async {
            client
                .get(format!("http://127.0.0.1:{port}/"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
        .unwrap()
        .expect("request");
        assert_eq!(status, 204);
        let head = server.join().unwrap();
        assert!(
            head.iter().any(|l| l == "user-agent: custos/backup 1.2.3"),
            "{head:?}"
        );
    }
}
