//! Uploads cut into fixed-size pieces, for the stores whose protocol custos drives itself
//! (Dropbox upload sessions, Drive resumable uploads), and reads by ranges, for every remote
//! store (the opendal ones too): one piece in memory whatever the object size, and the
//! protocol only says how a piece is sent or fetched.

use std::io::{self, Read, Write};

use super::{DestinationError, ErrorKind, ObjectWriter};

/// How one store sends the pieces of one object.
pub trait PieceSink: Send {
    /// Sends one full piece.
    fn piece(&mut self, bytes: Vec<u8>) -> Result<(), DestinationError>;
    /// Sends the last (possibly empty) piece and makes the object appear.
    fn finish(&mut self, bytes: Vec<u8>) -> Result<(), DestinationError>;
    /// Gives the upload up (best effort: the server may be the problem).
    fn cancel(&mut self);
}

/// An [`ObjectWriter`] that gathers bytes into pieces of `size` for a [`PieceSink`].
pub struct PieceWriter<S: PieceSink> {
    sink: S,
    size: usize,
    buf: Vec<u8>,
    /// Finished or cancelled: nothing more to do on drop.
    closed: bool,
}

impl<S: PieceSink> PieceWriter<S> {
    pub fn new(sink: S, size: usize) -> Self {
        Self {
            sink,
            size,
            buf: Vec::with_capacity(size),
            closed: false,
        }
    }
}

impl<S: PieceSink> Write for PieceWriter<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.size - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == self.size {
            let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(self.size));
            self.sink.piece(piece).map_err(|e| {
                let kind = if e.kind() == ErrorKind::Transient {
                    io::ErrorKind::ConnectionAborted
                } else {
                    io::ErrorKind::Other
                };
                io::Error::new(kind, e.to_string())
            })?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: PieceSink> ObjectWriter for PieceWriter<S> {
    /// Sends the rest; on failure the upload is cancelled.
    fn commit(mut self: Box<Self>) -> Result<(), DestinationError> {
        let rest = std::mem::take(&mut self.buf);
        let r = self.sink.finish(rest);
        if r.is_err() {
            self.sink.cancel();
        }
        self.closed = true;
        r
    }

    fn abort(mut self: Box<Self>) {
        self.sink.cancel();
        self.closed = true;
    }
}

impl<S: PieceSink> Drop for PieceWriter<S> {
    /// Neither committed nor aborted: cancel, so no upload lingers.
    fn drop(&mut self) {
        if !self.closed {
            self.sink.cancel();
        }
    }
}

/// Reads an object of known `size` by ranges of `chunk` bytes from `fetch(first, last)`
/// (inclusive byte positions).
pub struct RangeReader<F> {
    fetch: F,
    size: u64,
    chunk: u64,
    pos: u64,
    buf: Vec<u8>,
    at: usize,
}

impl<F> RangeReader<F>
where
    F: FnMut(u64, u64) -> Result<Vec<u8>, DestinationError> + Send,
{
    pub fn new(fetch: F, size: u64, chunk: u64) -> Self {
        Self {
            fetch,
            size,
            chunk,
            pos: 0,
            buf: Vec::new(),
            at: 0,
        }
    }
}

impl<F> Read for RangeReader<F>
where
    F: FnMut(u64, u64) -> Result<Vec<u8>, DestinationError> + Send,
{
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buf.len() {
            if self.pos >= self.size {
                return Ok(0);
            }
            let last = (self.pos + self.chunk).min(self.size) - 1;
            self.buf = (self.fetch)(self.pos, last).map_err(io::Error::other)?;
            self.at = 0;
            if self.buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the object ended before its listed size",
                ));
            }
            self.pos += self.buf.len() as u64;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl PieceSink for Log {
        fn piece(&mut self, bytes: Vec<u8>) -> Result<(), DestinationError> {
            self.0
                .lock()
                .unwrap()
                .push(format!("piece {}", bytes.len()));
            Ok(())
        }
        fn finish(&mut self, bytes: Vec<u8>) -> Result<(), DestinationError> {
            self.0
                .lock()
                .unwrap()
                .push(format!("finish {}", bytes.len()));
            Ok(())
        }
        fn cancel(&mut self) {
            self.0.lock().unwrap().push("cancel".into());
        }
    }

    #[test]
    fn pieces_are_full_until_the_last_and_a_dropped_writer_cancels() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut w = Box::new(PieceWriter::new(Log(log.clone()), 4));
        w.write_all(&[1; 10]).unwrap();
        w.commit().unwrap();
        assert_eq!(*log.lock().unwrap(), ["piece 4", "piece 4", "finish 2"]);

        log.lock().unwrap().clear();
        let mut w = PieceWriter::new(Log(log.clone()), 4);
        w.write_all(&[1; 5]).unwrap();
        drop(w);
        assert_eq!(*log.lock().unwrap(), ["piece 4", "cancel"]);
    }

    #[test]
    fn ranges_cover_the_object_once() {
        let data: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let d = data.clone();
        let mut asked = Vec::new();
        let mut r = RangeReader::new(
            |a: u64, b: u64| {
                asked.push((a, b));
                Ok(d[a as usize..=b as usize].to_vec())
            },
            1000,
            300,
        );
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        drop(r);
        assert_eq!(out, data);
        assert_eq!(asked, [(0, 299), (300, 599), (600, 899), (900, 999)]);
    }
}
