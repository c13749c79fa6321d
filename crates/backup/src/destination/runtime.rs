//! The one async runtime of the process, for the stores whose clients are async (opendal),
//! and the one HTTP client on it (SaaS store APIs and notifiers). Destinations and notifiers
//! stay synchronous: they `block_on` here from the pipeline's writer threads or the runner,
//! and concurrent part uploads run on the runtime's two workers.

use std::future::IntoFuture;
use std::sync::OnceLock;
use std::time::Duration;

/// Until a connection to a store or a notifier's server stands; each request bounds the
/// whole exchange itself.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The process's one HTTP client (the kit's set-up: rustls on ring, the user agent), made
/// inside the runtime on first use; the error says why the TLS set-up failed.
pub fn http_client() -> Result<&'static reqwest::Client, ClientUnavailable> {
    static CLIENT: OnceLock<Result<reqwest::Client, ClientUnavailable>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            block_on(async {
                custos_kit::http_client::builder(
                    "backup",
                    env!("CARGO_PKG_VERSION"),
                    custos_kit::http_client::Timeouts {
                        connect: CONNECT_TIMEOUT,
                        overall: None,
                    },
                )
                .build()
                .map_err(|e| ClientUnavailable(custos_kit::error::chain(&e)))
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The process's HTTP client could not be built (a TLS set-up that cannot work here); kept
/// once and handed to every caller, so each request fails with it instead of aborting.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot set up the HTTP client: {0}")]
pub struct ClientUnavailable(String);

impl ClientUnavailable {
    /// Why the TLS set-up failed.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

/// Runs `f` to completion on the shared runtime (created on first use).
pub fn block_on<F: IntoFuture>(f: F) -> F::Output {
    handle().block_on(f.into_future())
}

fn handle() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // HTTPS to the stores (opendal's own reqwest clients too) goes through rustls with
        // the ring provider, installed once by the kit.
        custos_kit::http_client::install_crypto_provider();
        custos_kit::start::runtime(custos_kit::start::Runtime::Workers(2), Some("custos-store"))
            .expect("cannot start the async runtime for remote destinations")
    })
}
