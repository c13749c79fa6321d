//! The compression stage: zstd, gzip (the original's `compress_only`) or none, writing into
//! the channel to the encryption thread.

use std::io::{self, Write};

use super::channel::ChannelWriter;
use super::{FeedError, Plan};
use crate::naming::Compression;

/// How the object is compressed.
pub(super) enum Compressor {
    Zstd(zstd::stream::write::Encoder<'static, ChannelWriter>),
    Gzip(flate2::write::GzEncoder<ChannelWriter>),
    Plain(ChannelWriter),
}

impl Compressor {
    pub(super) fn new(plan: &Plan, sink: ChannelWriter) -> io::Result<Self> {
        Ok(match plan.encoding.compression {
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(sink, plan.zstd_level)?;
                enc.include_checksum(true)?;
                if plan.zstd_threads > 0 {
                    enc.multithread(plan.zstd_threads)?;
                }
                Compressor::Zstd(enc)
            }
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                sink,
                flate2::Compression::fast(),
            )),
            Compression::None => Compressor::Plain(sink),
        })
    }

    pub(super) fn sink(&self) -> &ChannelWriter {
        match self {
            Compressor::Zstd(e) => e.get_ref(),
            Compressor::Gzip(e) => e.get_ref(),
            Compressor::Plain(w) => w,
        }
    }

    /// A write error: stage 2 hanging up (after `read` source bytes) or compression failing.
    pub(super) fn classify(&self, e: io::Error, read: u64) -> FeedError {
        if self.sink().hung_up {
            FeedError::Downstream { read }
        } else {
            FeedError::Compress(e)
        }
    }

    pub(super) fn finish(self) -> Result<ChannelWriter, (io::Error, bool)> {
        match self {
            Compressor::Zstd(e) => e.finish().map_err(|err| (err, false)),
            Compressor::Gzip(e) => e.finish().map_err(|err| (err, false)),
            Compressor::Plain(w) => Ok(w),
        }
        .map_err(|(err, _)| {
            let hung_up = err.kind() == io::ErrorKind::BrokenPipe;
            (err, hung_up)
        })
    }
}

impl Write for Compressor {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Zstd(e) => e.write(data),
            Compressor::Gzip(e) => e.write(data),
            Compressor::Plain(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
