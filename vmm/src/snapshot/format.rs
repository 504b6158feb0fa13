//! The files of a snapshot and how they are checked: `snapshot.json` (the
//! description: format, version, sizes, checksums), `state.json` (vCPU,
//! clock and device state) and `memory` (guest RAM, a sparse file).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::SnapshotError;
use crate::config::ConsoleKind;

/// `Manifest::format`.
pub const FORMAT: &str = "virtlab-snapshot";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// The description's file name.
pub const MANIFEST: &str = "snapshot.json";
/// The state file's name.
pub const STATE: &str = "state.json";
/// The guest memory file's name.
pub const MEMORY: &str = "memory";

/// Which guest the snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestKind {
    /// virtlab's minikernel.
    Minikernel,
    /// A Linux kernel with virtlab's init.
    Linux,
}

impl GuestKind {
    /// "minikernel" or "linux".
    pub fn name(self) -> &'static str {
        match self {
            GuestKind::Minikernel => "minikernel",
            GuestKind::Linux => "linux",
        }
    }
}

/// One file of the snapshot, as the description records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name in the directory.
    pub name: String,
    /// Its length.
    pub bytes: u64,
    /// CRC-32 of its contents (for `memory`: of its non-zero pages, each
    /// preceded by its page number, so holes cost nothing to check).
    pub crc32: u32,
}

/// `snapshot.json`: what the snapshot is, and how to check its files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// The guest.
    pub guest: GuestKind,
    /// Where the guest was paused (`ready`).
    pub taken_at: String,
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// The host CPU (CPUID vendor and family/model/stepping).
    pub cpu: String,
    /// Guest memory pages holding data (the rest are holes in the file).
    pub memory_data_bytes: u64,
    /// The files, with their sizes and checksums.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// The entry for file `name`.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// Bytes of a KVM structure, written as hex in the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = String::with_capacity(self.0.len() * 2);
        for b in &self.0 {
            t.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&t)
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hex, D::Error> {
        let t = String::deserialize(d)?;
        if t.len() % 2 != 0 {
            return Err(serde::de::Error::custom("hex string of odd length"));
        }
        // Checked first: slicing a string with other characters could cut
        // one in two, and from_str_radix would take a '+' sign.
        if !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(serde::de::Error::custom("hex string with a character that is not a hex digit"));
        }
        (0..t.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&t[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect::<Result<Vec<u8>, _>>()
            .map(Hex)
    }
}

/// One vCPU's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VcpuState {
    /// `kvm_regs`.
    pub regs: Hex,
    /// `kvm_sregs`.
    pub sregs: Hex,
    /// `kvm_fpu` (legacy FPU/SSE state: the minikernel leaves XSAVE off).
    pub fpu: Hex,
    /// `kvm_xsave`, when the host gave it.
    pub xsave: Option<Hex>,
    /// `kvm_xcrs`, when the host gave it.
    pub xcrs: Option<Hex>,
    /// `kvm_vcpu_events`: pending exceptions, interrupts, NMIs.
    pub events: Option<Hex>,
    /// `kvm_debugregs`.
    pub debug_regs: Option<Hex>,
    /// `kvm_mp_state`.
    pub mp_state: Option<Hex>,
    /// `kvm_lapic_state` (only with an in-kernel irqchip).
    pub lapic: Option<Hex>,
    /// Every MSR KVM lists that the host let us read, as (index, value).
    pub msrs: Vec<(u32, u64)>,
    /// The CPUID the vCPU had: (function, index, eax, ebx, ecx, edx, flags).
    pub cpuid: Vec<[u32; 7]>,
    /// The guest TSC frequency (kHz).
    pub tsc_khz: u32,
}

/// What only a minikernel guest needs to run on after a restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MiniState {
    /// The workload's argv when the snapshot was taken (argv[0] stays, the
    /// rest is what a restore runs when it is given no arguments).
    pub argv: Vec<String>,
    /// The top of the user stack (the VMM rebuilds argv there).
    pub stack_top: u64,
    /// The console the kernel writes to.
    pub console: ConsoleKind,
}

/// `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Every vCPU (one).
    pub vcpus: Vec<VcpuState>,
    /// `kvm_clock_data` (KVM_GET_CLOCK), when the host gave it.
    pub clock: Option<Hex>,
    /// `kvm_irqchip` for the PIC master, PIC slave and IOAPIC (Linux).
    pub irqchip: Option<Vec<Hex>>,
    /// `kvm_pit_state2` (Linux).
    pub pit: Option<Hex>,
    /// Each device's state, by name.
    pub devices: BTreeMap<String, serde_json::Value>,
    /// The minikernel's part.
    pub mini: Option<MiniState>,
    /// What the host refused to save, one line each.
    pub quirks: Vec<String>,
}

/// CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

/// Reads and checks `dir/snapshot.json`: a virtlab snapshot, of this
/// version. The version is read before the rest, so a snapshot of another
/// version is named as such even if its fields differ.
pub fn read_manifest(dir: &Path) -> Result<Manifest, SnapshotError> {
    let path = dir.join(MANIFEST);
    let text = fs::read(&path).map_err(|e| SnapshotError::Read(path.clone(), e))?;
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| SnapshotError::Parse(path.clone(), e))?;
    let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
    if format != FORMAT {
        return Err(SnapshotError::Format(path, format.to_string()));
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        found => return Err(SnapshotError::Version { found: found.unwrap_or(0), expected: VERSION }),
    }
    serde_json::from_value(value).map_err(|e| SnapshotError::Parse(path, e))
}

/// Reads `dir/state.json` and checks it against the manifest's size and
/// checksum.
pub fn read_state(dir: &Path, manifest: &Manifest) -> Result<State, SnapshotError> {
    let path = dir.join(STATE);
    let bytes = fs::read(&path).map_err(|e| SnapshotError::Read(path.clone(), e))?;
    let entry = manifest.file(STATE).ok_or_else(|| missing(&path))?;
    check(entry, bytes.len() as u64, crc32(&bytes))?;
    serde_json::from_slice(&bytes).map_err(|e| SnapshotError::Parse(path, e))
}

/// Whether a file's size and checksum are the recorded ones.
pub fn check(entry: &FileEntry, bytes: u64, crc: u32) -> Result<(), SnapshotError> {
    if bytes != entry.bytes {
        return Err(SnapshotError::Size { name: entry.name.clone(), found: bytes, expected: entry.bytes });
    }
    if crc != entry.crc32 {
        return Err(SnapshotError::Checksum { name: entry.name.clone(), found: crc, expected: entry.crc32 });
    }
    Ok(())
}

/// The error for a file the description does not list.
pub fn missing(path: &Path) -> SnapshotError {
    SnapshotError::Read(
        path.to_path_buf(),
        std::io::Error::new(std::io::ErrorKind::NotFound, "the snapshot description does not list it"),
    )
}

/// A temporary directory beside `dir`, renamed to `dir` when the snapshot
/// is complete and removed if it never is: a snapshot that looks valid is
/// always a whole one.
#[derive(Debug)]
pub struct TempDir {
    /// The temporary directory.
    pub path: PathBuf,
    target: PathBuf,
    done: bool,
}

impl TempDir {
    /// Creates `DIR.tmp-PID` beside `dir` (which must not exist).
    pub fn beside(dir: &Path) -> Result<TempDir, SnapshotError> {
        if dir.exists() {
            return Err(SnapshotError::Exists(dir.to_path_buf()));
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "snapshot".into());
        let path = dir.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).map_err(|e| SnapshotError::Write(dir.to_path_buf(), e))?;
        Ok(TempDir { path, target: dir.to_path_buf(), done: false })
    }

    /// Renames the finished directory to its name.
    pub fn commit(mut self) -> Result<(), SnapshotError> {
        fs::rename(&self.path, &self.target).map_err(|e| SnapshotError::Write(self.target.clone(), e))?;
        self.done = true;
        Ok(())
    }

    /// The error for a failed write, naming the snapshot rather than the
    /// temporary directory.
    pub fn write_error(&self, e: std::io::Error) -> SnapshotError {
        SnapshotError::Write(self.target.clone(), e)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let h = Hex(vec![0, 1, 0xab, 0xff]);
        let s = serde_json::to_string(&h).unwrap();
        assert_eq!(s, "\"0001abff\"");
        assert_eq!(serde_json::from_str::<Hex>(&s).unwrap(), h);
        assert!(serde_json::from_str::<Hex>("\"abc\"").is_err());
        assert!(serde_json::from_str::<Hex>("\"zz\"").is_err());
    }

    #[test]
    fn other_versions_and_formats_are_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(MANIFEST), r#"{"format":"virtlab-snapshot","version":2}"#).unwrap();
        let e = read_manifest(dir.path()).unwrap_err();
        assert!(matches!(e, SnapshotError::Version { found: 2, expected: VERSION }), "{e}");
        fs::write(dir.path().join(MANIFEST), r#"{"format":"firecracker"}"#).unwrap();
        assert!(matches!(read_manifest(dir.path()).unwrap_err(), SnapshotError::Format(..)));
        fs::write(dir.path().join(MANIFEST), "{").unwrap();
        assert!(matches!(read_manifest(dir.path()).unwrap_err(), SnapshotError::Parse(..)));
    }

    #[test]
    fn an_unfinished_snapshot_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("snap");
        let t = TempDir::beside(&target).unwrap();
        fs::write(t.path.join("memory"), b"x").unwrap();
        drop(t);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let t = TempDir::beside(&target).unwrap();
        t.commit().unwrap();
        assert!(target.is_dir());
        assert!(matches!(TempDir::beside(&target), Err(SnapshotError::Exists(_))));
    }
}
