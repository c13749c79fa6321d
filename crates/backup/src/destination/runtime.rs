//! The one async runtime of the process, for the stores whose clients are async (opendal).
//! Destinations stay synchronous: they `block_on` here from the pipeline's writer threads,
//! and concurrent part uploads run on the runtime's two workers.

use std::future::IntoFuture;
use std::sync::OnceLock;

/// Runs `f` to completion on the shared runtime (created on first use).
pub fn block_on<F: IntoFuture>(f: F) -> F::Output {
    handle().block_on(f.into_future())
}

fn handle() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // HTTPS to the stores goes through rustls with the ring provider, as elsewhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("custos-store")
            .enable_all()
            .build()
            .expect("cannot start the async runtime for remote destinations")
    })
}
