//! Files that end in a CRC-32 (u32 LE) of every byte before it, written
//! and synced in one go: the id filter saved beside the log (`idfilter`)
//! and klaxon-raft's snapshots of the log. Each reader checks the sum its
//! own way (while decoding, or over the whole file first).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Creates (or truncates) `path`, lets `body` write the content through a
/// [`CrcWriter`], appends the CRC-32 of everything it wrote and syncs the
/// file. Renaming it into place (and syncing the folder) is the caller's.
pub fn write_synced(path: &Path, body: impl FnOnce(&mut CrcWriter) -> io::Result<()>) -> io::Result<()> {
    let mut out =
        CrcWriter { inner: BufWriter::with_capacity(1 << 16, File::create(path)?), crc: crc32fast::Hasher::new() };
    body(&mut out)?;
    let crc = out.crc.finalize();
    out.inner.write_all(&crc.to_le_bytes())?;
    out.inner.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// A buffered file writer that sums what goes through it (see
/// [`write_synced`]).
pub struct CrcWriter {
    inner: BufWriter<File>,
    crc: crc32fast::Hasher,
}

impl Write for CrcWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
