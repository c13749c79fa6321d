//! The bounded channels between the pipeline's threads: a `Write` end that sends whole
//! chunks and a `Read` end that receives them; a broken producer is passed on as an error.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender};

use super::CHUNK;

/// A chunk between the threads; `Err` means the producer side failed.
pub(super) type Chunk = Result<Vec<u8>, ()>;

pub(super) struct ChannelWriter {
    pub(super) tx: SyncSender<Chunk>,
    pub(super) buf: Vec<u8>,
    pub(super) hung_up: bool,
}

impl ChannelWriter {
    pub(super) fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.send(Ok(chunk)).map_err(|_| {
            self.hung_up = true;
            io::Error::new(io::ErrorKind::BrokenPipe, "encryption stage stopped")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.hung_up {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "encryption stage stopped",
            ));
        }
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are only sent when full or at the end: small sends would cost more.
        Ok(())
    }
}

pub(super) struct ChannelReader {
    pub(super) rx: Receiver<Chunk>,
    pub(super) current: Vec<u8>,
    pub(super) pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(())) => {
                    return Err(io::Error::other("source failed; stream aborted"));
                }
                // Sender gone without an error marker: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
