//! SHA-256 digests of what flows through a reader or writer, so a layer is
//! hashed (compressed and uncompressed) while it is written or read, never
//! read twice.

use std::io::{self, Read, Write};

use oci_spec::image::{Digest, Sha256Digest};
use sha2::{Digest as _, Sha256};

/// The `sha256:HEX` digest of a lowercase hex string of 64 digits.
pub fn digest(hex: &str) -> Digest {
    // A HEX this module made is always valid; anything else is a bug here.
    hex.parse::<Sha256Digest>().map(Digest::from).expect("a sha256 hex string of 64 digits")
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that hashes and counts what passes through it.
#[derive(Debug)]
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> HashWriter<W> {
        HashWriter { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// The inner writer, the hex digest and the byte count of what was written.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex(&self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what is read through it.
#[derive(Debug)]
pub struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> HashReader<R> {
        HashReader { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// Reads what is left (a tar reader stops at its end-of-archive blocks,
    /// but the digest covers the whole stream), then gives the hex digest
    /// and byte count.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((hex(&self.hasher.finalize()), self.bytes))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_hex(b""), empty);
        let mut w = HashWriter::new(Vec::new());
        w.write_all(b"abc").expect("write to a Vec");
        let (out, hex, n) = w.finish();
        assert_eq!(
            (out.as_slice(), hex.as_str(), n),
            (&b"abc"[..], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 3)
        );
        let mut r = HashReader::new(&b"abc"[..]);
        let mut first = [0u8; 1];
        r.read_exact(&mut first).expect("read one byte");
        assert_eq!(r.finish().expect("read the rest"), (hex, 3));
        assert_eq!(digest(empty).to_string(), format!("sha256:{empty}"));
    }
}
