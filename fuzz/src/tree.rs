//! What a directory tree holds, to tell whether an extraction touched
//! anything outside its destination.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One file's kind, mode and size (what a write outside would change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `S_IFMT` bits and permissions (st_mode).
    pub mode: u32,
    /// Size in bytes.
    pub len: u64,
    /// Owner.
    pub uid: u32,
}

/// Every path under `root` (without following symbolic links), relative to
/// it, with its node; `skip` (relative to `root`) is not entered.
pub fn walk(root: &Path, skip: Option<&Path>) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    visit(root, root, skip, &mut out);
    out
}

fn visit(root: &Path, dir: &Path, skip: Option<&Path>, out: &mut BTreeMap<PathBuf, Node>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        if Some(rel.as_path()) == skip {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(&path) else { continue };
        out.insert(rel, Node { mode: m.mode(), len: m.len(), uid: m.uid() });
        if m.file_type().is_dir() {
            visit(root, &path, skip, out);
        }
    }
}
