//! Asking the helper: one connection per refresh, on a fixed interval in the background; a
//! frame per device as the helper reads it, then the end of the sweep.
//!
//! A scrape never waits for this: it serves what the last refresh published. A refresh that
//! fails leaves every drive's last good data in place (their ages keep growing) and sets
//! `smart_system_error`.

use crate::attrmap::AttrMap;
use crate::collector::{Published, SmartStore};
use crate::devicedb::DeviceDb;
use crate::error::Error;
use crate::metrics;
use crate::state::State;
use custos_smart_wire::{
    check_count, decode_payload, parse_header, DeviceReport, Event, Summary, WireError, HEADER_LEN,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

/// What the refresher needs.
#[derive(Debug)]
pub struct Refresher {
    pub socket: PathBuf,
    /// Longest wait for the helper's answer (its sweep runs while we wait).
    pub timeout: Duration,
    pub db: Arc<DeviceDb>,
    pub map: Arc<AttrMap>,
}

/// Reads one frame: the header is checked before anything else is read, so a peer that is
/// not the helper (or a helper of another version) costs 9 bytes; the payload is read only up
/// to the length the header announced, growing with what actually arrives.
async fn read_event(stream: &mut UnixStream) -> Result<Event, WireError> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    (&mut *stream)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .await
        .map_err(WireError::Io)?;
    let Some(h) = header.first_chunk::<HEADER_LEN>() else {
        return Err(WireError::Truncated {
            expected: HEADER_LEN as u64,
            got: header.len() as u64,
        });
    };
    let len = parse_header(h)?;
    let mut body = Vec::new();
    (&mut *stream)
        .take(len)
        .read_to_end(&mut body)
        .await
        .map_err(WireError::Io)?;
    decode_payload(len, &body)
}

/// Connects to the helper at `socket` and reads its sweep, all within `timeout`: each device
/// goes to `on_device` as soon as it arrives; returns the end of the sweep.
pub async fn fetch(
    socket: &Path,
    timeout: Duration,
    mut on_device: impl FnMut(DeviceReport),
) -> Result<Summary, Error> {
    let wire = |source| Error::Wire {
        path: socket.to_path_buf(),
        source,
    };
    let work = async {
        let mut stream = UnixStream::connect(socket)
            .await
            .map_err(|source| Error::Connect {
                path: socket.to_path_buf(),
                source,
            })?;
        let mut received = 0;
        loop {
            match read_event(&mut stream).await.map_err(wire)? {
                Event::Device(d) => {
                    received += 1;
                    on_device(d);
                }
                Event::Done(summary) => {
                    check_count(&summary, received).map_err(wire)?;
                    return Ok(summary);
                }
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::Timeout {
            path: socket.to_path_buf(),
            secs: timeout.as_secs(),
        })?
}

impl Refresher {
    /// One refresh: ask the helper, publish each drive as it arrives (a hung drive delays
    /// only itself), then the end of the sweep.
    pub async fn refresh(&self, state: &mut State, store: &SmartStore) {
        let t0 = Instant::now();
        let result = fetch(&self.socket, self.timeout, |dev| {
            state.apply_device(dev, SystemTime::now());
            self.publish(state, store);
        })
        .await;
        let now = SystemTime::now();
        match result {
            Ok(summary) => {
                tracing::info!(
                    drives = summary.devices,
                    helper_ms = summary.duration_ms,
                    "refreshed"
                );
                state.finish_sweep(summary, now, t0.elapsed());
            }
            Err(e) => {
                tracing::error!("{e}");
                state.fail(e.to_string(), now, t0.elapsed());
            }
        }
        self.publish(state, store);
    }

    fn publish(&self, state: &State, store: &SmartStore) {
        let families = metrics::families(state, &self.db, &self.map);
        store.publish(Published {
            state: state.clone(),
            families,
        });
    }

    /// Refreshes every `interval` (the first at once) for ever.
    pub async fn run(self, interval: Duration, store: Arc<SmartStore>) {
        let mut ticks = custos_kit::poll::fixed_rate(interval);
        let mut state = State::default();
        loop {
            ticks.tick().await;
            self.refresh(&mut state, &store).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that is not the helper (here it speaks HTTP and never closes) is refused on its
    /// header, without waiting for or buffering the rest.
    #[tokio::test]
    async fn a_bad_header_is_refused_before_the_payload_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipc");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            // Then megabytes more, and the connection is held open.
            let junk = vec![b'x'; 1024 * 1024];
            for _ in 0..64 {
                if s.write_all(&junk).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let t = Instant::now();
        let e = fetch(&path, Duration::from_secs(20), |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Wire {
                    source: WireError::UnknownVersion(b'H'),
                    ..
                }
            ),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        server.abort();
    }

    /// A header announcing the cap followed by a few bytes and EOF: truncated, not a 64 MiB
    /// buffer.
    #[tokio::test]
    async fn a_short_payload_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipc");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut frame =
                custos_smart_wire::frame::header(custos_smart_wire::MAX_PAYLOAD).to_vec();
            frame.extend_from_slice(b"{}");
            let _ = s.write_all(&frame).await;
        });
        let e = fetch(&path, Duration::from_secs(20), |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Wire {
                    source: WireError::Truncated { got: 2, .. },
                    ..
                }
            ),
            "{e}"
        );
    }

    /// A drive is published as soon as its frame arrives, while the sweep still runs (a hung
    /// drive elsewhere); the end of the sweep then removes a drive it no longer lists.
    #[tokio::test]
    async fn each_drive_is_published_as_it_arrives() {
        use custos_smart_wire::{encode, Scan, Source};
        use serde_json::value::RawValue;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipc");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let dev = DeviceReport {
                name: "/dev/sda".into(),
                dev_type: None,
                source: Source::Scan,
                outcome: custos_smart_wire::Outcome::Ok,
                exit_status: Some(0),
                error: None,
                elapsed_ms: 1,
                smartctl: Some(
                    RawValue::from_string(
                        r#"{"smartctl":{"exit_status":0},"temperature":{"current":31}}"#.into(),
                    )
                    .unwrap(),
                ),
            };
            s.write_all(&encode(&Event::Device(dev)).unwrap())
                .await
                .unwrap();
            // The rest of the sweep waits for a hung drive.
            let _ = released.await;
            let done = Summary {
                helper_version: "t".into(),
                started: 0,
                duration_ms: 1,
                scan: Scan::default(),
                devices: 1,
            };
            s.write_all(&encode(&Event::Done(done)).unwrap())
                .await
                .unwrap();
        });
        let store = crate::collector::store();
        let refresher = Refresher {
            socket: path,
            timeout: Duration::from_secs(20),
            db: Arc::new(DeviceDb::default()),
            map: Arc::new(AttrMap::builtin()),
        };
        let mut state = State::default();
        // A drive from an earlier sweep that this one will not list.
        state.apply(
            custos_smart_wire::Report {
                helper_version: "t".into(),
                started: 0,
                duration_ms: 1,
                scan: Scan::default(),
                devices: vec![DeviceReport {
                    name: "/dev/gone".into(),
                    dev_type: None,
                    source: Source::Scan,
                    outcome: custos_smart_wire::Outcome::Timeout,
                    exit_status: None,
                    error: Some("x".into()),
                    elapsed_ms: 1,
                    smartctl: None,
                }],
            },
            SystemTime::now(),
            Duration::ZERO,
        );
        let watch = Arc::clone(&store);
        let refresh = tokio::spawn(async move {
            refresher.refresh(&mut state, &watch).await;
            state
        });
        let ports = |store: &SmartStore| -> Vec<String> {
            store.get(crate::collector::KEY).map_or_else(Vec::new, |p| {
                p.state.drives.iter().map(|d| d.port.clone()).collect()
            })
        };
        let t = Instant::now();
        while !ports(&store).contains(&"/dev/sda".to_string()) {
            assert!(t.elapsed() < Duration::from_secs(10), "never published");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!refresh.is_finished(), "published before the sweep's end");
        release.send(()).unwrap();
        let state = refresh.await.unwrap();
        assert!(!state.system_error);
        assert_eq!(ports(&store), ["/dev/sda"]);
    }
}
