//! Tar archives with any names and link targets, `..` and absolute paths
//! included: what a hostile image layer holds. (`tar::Builder`'s path
//! setters refuse such names, so the header's name fields are written
//! directly.)

use tar::{EntryType, Header};

/// The kind of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to `link`.
    Symlink,
    /// A hard link to `link`.
    HardLink,
    /// A FIFO.
    Fifo,
    /// A character device (0, 0): what a whiteout is on disk.
    CharDev,
}

/// One entry: a raw name (at most 99 bytes are kept), its kind, a link
/// target, its mode and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// The path as stored.
    pub name: Vec<u8>,
    /// Its kind.
    pub kind: Kind,
    /// The link target (links only).
    pub link: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Content (regular files only).
    pub data: Vec<u8>,
}

/// A plain (uncompressed) tar of `entries`, in order.
pub fn build(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_old();
        let old = h.as_old_mut();
        let n = e.name.len().min(99);
        old.name[..n].copy_from_slice(&e.name[..n]);
        let l = e.link.len().min(99);
        old.linkname[..l].copy_from_slice(&e.link[..l]);
        h.set_entry_type(match e.kind {
            Kind::File => EntryType::Regular,
            Kind::Dir => EntryType::Directory,
            Kind::Symlink => EntryType::Symlink,
            Kind::HardLink => EntryType::Link,
            Kind::Fifo => EntryType::Fifo,
            Kind::CharDev => EntryType::Char,
        });
        h.set_mode(e.mode & 0o7777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let data: &[u8] = if e.kind == Kind::File { &e.data } else { &[] };
        h.set_size(data.len() as u64);
        h.set_cksum();
        // Writing into a Vec cannot fail.
        out.append(&h, data).expect("a tar entry into memory");
    }
    out.into_inner().expect("a tar into memory")
}
