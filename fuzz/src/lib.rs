//! Property checks for every parser of untrusted bytes in virtlab, written
//! once and driven two ways:
//!
//! - **property tests** (`tests/props_*.rs`, [proptest]): structured inputs
//!   (valid files with a few bytes changed, sequences of guest port
//!   accesses, tar layers with hostile paths) in the normal `cargo test`,
//!   a bounded number of cases each;
//! - **fuzz targets** (`tests/fuzz_targets.rs`, [bolero]): raw bytes into the
//!   same checks, a second of random inputs in `cargo test`, hours under a
//!   fuzzing engine (see the README's "Fuzzing" section).
//!
//! Each target in [`vmm`] and [`container`] takes bytes and panics only when
//! a property fails: the parser panicked, a round trip gave back something
//! else, an error was not the typed one, or a tar layer wrote outside its
//! directory. The helpers ([`cpio`], [`tarball`], [`tree`], [`Bytes`]) are
//! the test side's own readers and writers.
//!
//! [proptest]: https://docs.rs/proptest
//! [bolero]: https://docs.rs/bolero

pub mod container;
pub mod cpio;
pub mod tarball;
pub mod tree;
pub mod vmm;

/// A cursor over fuzz input that never fails: past the end every number is
/// 0 and every slice is empty, so any input decodes to *some* sequence of
/// operations.
#[derive(Debug, Clone)]
pub struct Bytes<'a> {
    rest: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { rest: data }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }

    /// The rest.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.rest.len())
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let s = self.take(2);
        b[..s.len()].copy_from_slice(s);
        u16::from_le_bytes(b)
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let s = self.take(4);
        b[..s.len()].copy_from_slice(s);
        u32::from_le_bytes(b)
    }

    /// The next eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let s = self.take(8);
        b[..s.len()].copy_from_slice(s);
        u64::from_le_bytes(b)
    }

    /// A length-prefixed piece (one byte of length, so at most 255 bytes).
    pub fn piece(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.take(n)
    }
}

/// `bytes` with `edits` applied: each `(position, value)` overwrites one
/// byte (position taken modulo the length), the way a fuzzer mutates a
/// valid file.
pub fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    let len = bytes.len();
    for &(at, v) in edits {
        bytes[at % len] = v;
    }
    bytes
}

/// Whether this test can do what only root can (give unpacked files their
/// owner uid 0, make whiteout device nodes). When not root it says so on
/// standard error and returns false (once per test), or fails under
/// `VIRTLAB_REQUIRE_ROOT=1`, as CI sets it.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let must = std::env::var("VIRTLAB_REQUIRE_ROOT").is_ok_and(|v| v == "1");
    assert!(!must, "{test}: needs root, and VIRTLAB_REQUIRE_ROOT=1 forbids skipping");
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if !said.iter().any(|t| t == test) {
        // Past the test harness's capture, so that it shows.
        use std::io::Write;
        let why = "unpacking a layer with its owners needs root; run as root (CI sets VIRTLAB_REQUIRE_ROOT=1)";
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
        said.push(test.to_string());
    }
    false
}
