//! The workload binary that virtlab runs in every environment, and the parser
//! of the lines it prints.
//!
//! The program itself lives in `program/main.rs`: a static x86_64 ELF with no
//! libc that uses only raw `syscall` instructions (write, getpid,
//! clock_gettime, mmap, munmap, exit_group). `build.rs` compiles it with the
//! host rustc; this crate embeds the bytes ([`ELF`]) and can put them on disk
//! ([`materialize`]) so that native runs and containers execute the very same
//! file that the VMM loads into a guest.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The workload ELF, byte for byte.
pub const ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/virtlab-workload"));

/// Where `build.rs` wrote the workload in this build tree.
pub const BUILD_PATH: &str = concat!(env!("OUT_DIR"), "/virtlab-workload");

/// The workload modes, in the order the harness runs them.
pub const MODES: &[&str] = &["ready", "cpu", "syscall", "mem", "io"];

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// Writing the embedded workload to disk failed.
    #[error("cannot write the workload binary to {path}")]
    Materialize {
        /// The file that could not be written.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A line that should be a `virtlab.result` line is not one.
    #[error("not a virtlab result line: {0:?}")]
    NotAResult(String),
}

/// A short content hash (FNV-1a) of `bytes`, used to name cached copies.
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Returns a path to an executable file holding exactly [`ELF`].
///
/// The build tree's copy is used when it is still byte-identical; otherwise
/// (an installed `virtlab`, a cleaned target directory) the bytes are written
/// once to `$XDG_CACHE_HOME/virtlab` (or `~/.cache/virtlab`, or the temp dir).
pub fn materialize() -> Result<PathBuf, WorkloadError> {
    materialize_bytes("virtlab-workload", ELF, Path::new(BUILD_PATH))
}

/// Returns a path to an executable file holding exactly `bytes`: `built`
/// when it still holds them, else a copy named `NAME-HASH` in virtlab's
/// cache directory (written once, atomically).
pub fn materialize_bytes(name: &str, bytes: &[u8], built: &Path) -> Result<PathBuf, WorkloadError> {
    if fs::read(built).map(|b| b == bytes).unwrap_or(false) {
        return Ok(built.to_path_buf());
    }
    let dir = cache_dir();
    let path = dir.join(format!("{name}-{}", fingerprint(bytes)));
    if fs::read(&path).map(|b| b == bytes).unwrap_or(false) {
        return Ok(path);
    }
    let err = |source| WorkloadError::Materialize { path: path.clone(), source };
    fs::create_dir_all(&dir).map_err(err)?;
    // Write to a unique name and rename, so concurrent callers never see a
    // half-written executable.
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    fs::write(&tmp, bytes).map_err(err)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(err)?;
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(e)
    })?;
    Ok(path)
}

/// virtlab's cache directory: `$XDG_CACHE_HOME/virtlab`, `~/.cache/virtlab`
/// or the temp dir's `virtlab`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("virtlab");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".cache/virtlab");
    }
    std::env::temp_dir().join("virtlab")
}

/// One `virtlab.result mode=... key=value ...` line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadResult {
    /// The mode that produced it.
    pub mode: String,
    /// Every other `key=value` pair, values kept as text.
    pub fields: BTreeMap<String, String>,
}

impl WorkloadResult {
    /// Parses one line; surrounding whitespace is ignored.
    pub fn parse(line: &str) -> Result<WorkloadResult, WorkloadError> {
        let bad = || WorkloadError::NotAResult(line.to_string());
        let mut words = line.split_whitespace();
        if words.next() != Some("virtlab.result") {
            return Err(bad());
        }
        let mut mode = None;
        let mut fields = BTreeMap::new();
        for w in words {
            let (k, v) = w.split_once('=').ok_or_else(bad)?;
            if k == "mode" {
                mode = Some(v.to_string());
            } else {
                fields.insert(k.to_string(), v.to_string());
            }
        }
        Ok(WorkloadResult { mode: mode.ok_or_else(bad)?, fields })
    }

    /// Finds the last result line in a program's output.
    pub fn find(output: &str) -> Option<WorkloadResult> {
        output.lines().rev().find_map(|l| WorkloadResult::parse(l).ok())
    }

    /// A numeric field, if present and numeric.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.fields.get(key)?.parse().ok()
    }
}

/// The marker the workload prints as soon as it runs.
pub const READY_MARKER: &str = "virtlab.ready";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_is_a_static_x86_64_executable() {
        assert_eq!(&ELF[..4], b"\x7fELF");
        assert_eq!(ELF[4], 2, "64-bit");
        assert_eq!(u16::from_le_bytes([ELF[16], ELF[17]]), 2, "ET_EXEC, not PIE");
        assert_eq!(u16::from_le_bytes([ELF[18], ELF[19]]), 62, "x86_64");
        let phoff = u64::from_le_bytes(ELF[32..40].try_into().unwrap()) as usize;
        let phnum = u16::from_le_bytes([ELF[56], ELF[57]]) as usize;
        for i in 0..phnum {
            let ty = u32::from_le_bytes(ELF[phoff + i * 56..][..4].try_into().unwrap());
            assert_ne!(ty, 3, "PT_INTERP: the workload must not need a dynamic loader");
            assert_ne!(ty, 2, "PT_DYNAMIC: the workload must not be dynamically linked");
        }
    }

    #[test]
    fn parses_result_lines() {
        let r = WorkloadResult::parse("virtlab.result mode=cpu n=10 ns=1234 checksum=0xff").unwrap();
        assert_eq!(r.mode, "cpu");
        assert_eq!(r.get_u64("ns"), Some(1234));
        assert_eq!(r.get_u64("checksum"), None);
        assert!(WorkloadResult::parse("virtlab.ready pid=1").is_err());
        assert!(WorkloadResult::parse("virtlab.result n=1").is_err());
        let out = "virtlab.ready pid=3\nnoise\nvirtlab.result mode=ready pid=3\n";
        assert_eq!(WorkloadResult::find(out).unwrap().mode, "ready");
    }

    #[test]
    fn materialize_gives_identical_bytes() {
        let p = materialize().unwrap();
        assert_eq!(fs::read(p).unwrap(), ELF);
    }
}
