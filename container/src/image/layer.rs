//! Layers: a directory tree packed into a gzip'd tar (an OCI layer blob),
//! and a blob unpacked into a directory that overlayfs can stack.
//!
//! Two digests name a layer: the blob's (of the compressed bytes, what the
//! manifest lists) and its **diff ID** (of the uncompressed tar, what the
//! image config's `rootfs.diff_ids` lists). Both are computed while the
//! bytes stream through, never by reading a file twice.
//!
//! Deletions travel in a layer as **whiteouts**, in the OCI form: an empty
//! file `.wh.NAME` hides NAME of the layers below, and `.wh..wh..opq` in a
//! directory hides everything below it in that directory. overlayfs writes
//! them its own way (a character device 0/0, and the xattr
//! `trusted.overlay.opaque=y`), so packing an overlay upper directory turns
//! the one form into the other, and unpacking turns it back: an unpacked
//! layer is ready to be an overlayfs lower directory as it stands.
//!
//! Unpacking refuses, with the entry's name, anything that would write
//! outside the layer's directory: an absolute path, a `..` component, a path
//! through a symbolic link (`link -> /etc` then `link/passwd`) and a hard
//! link to a file outside. Symbolic links themselves may point anywhere,
//! absolute or relative, as in any root file system: they are only ever
//! followed inside the container, whose root they cannot leave.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use tar::{Builder, EntryType, Header, HeaderMode};

use super::digest::{HashReader, HashWriter};
use super::{io_err, ImageError};

/// gzip level of layer blobs: the fastest. Layers stay on this machine (no
/// registry to push to), so packing time counts more than size: the busybox
/// rootfs makes a 1.19 MB blob at level 1 against 1.04 MB at level 6.
const LEVEL: u32 = 1;

/// The OCI whiteout prefix.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// overlayfs's opaque-directory attribute.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What a packed layer is: its two digests and sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedLayer {
    /// Hex SHA-256 of the compressed blob (the manifest's layer digest).
    pub digest: String,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// Hex SHA-256 of the uncompressed tar (the config's diff ID).
    pub diff_id: String,
}

/// What kind of directory is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKind {
    /// A plain root file system: every file as it is.
    Plain,
    /// An overlayfs upper directory: its whiteouts (character devices 0/0)
    /// and opaque directories become OCI whiteouts.
    OverlayUpper,
    /// The upper directory of a container that ran in a user namespace: as
    /// `OverlayUpper`, and its files, owned by the container's host ids
    /// (`start` is container root's), are stored with the container's own
    /// ids, as a layer's files are.
    ContainerUpper { uid_start: u32, gid_start: u32, count: u32 },
}

impl TreeKind {
    fn overlay(self) -> bool {
        self != TreeKind::Plain
    }

    /// The owner a layer records for a file owned by `uid`/`gid` here.
    fn owner(self, uid: u32, gid: u32) -> (u32, u32) {
        match self {
            TreeKind::ContainerUpper { uid_start, gid_start, count } => {
                let back = |id: u32, start: u32| if id >= start && id - start < count { id - start } else { id };
                (back(uid, uid_start), back(gid, gid_start))
            }
            _ => (uid, gid),
        }
    }
}

/// Packs the tree under `dir` into `out` as a gzip'd tar layer.
///
/// Entries are written in name order with their owners, modes and times,
/// so the same tree gives the same diff ID. Sockets are left out (a tar
/// cannot hold them); files with several names become hard links.
pub fn pack_dir(dir: &Path, kind: TreeKind, out: File) -> Result<(File, PackedLayer), ImageError> {
    let gz = GzEncoder::new(HashWriter::new(BufWriter::new(out)), Compression::new(LEVEL));
    let mut tar = Builder::new(HashWriter::new(gz));
    tar.mode(HeaderMode::Complete);
    tar.follow_symlinks(false);
    let mut walker = Walker { tar: &mut tar, kind, links: HashMap::new() };
    walker.walk(dir, Path::new(""))?;
    finish(tar)
}

/// Packs a tar stream (plain or gzip'd, as `virtlab image import FILE.tar`
/// takes it) into `out` as a gzip'd layer, entries unchanged.
pub fn pack_tar(input: impl Read, out: File) -> Result<(File, PackedLayer), ImageError> {
    let mut source = decompressed(input)?;
    let gz = GzEncoder::new(HashWriter::new(BufWriter::new(out)), Compression::new(LEVEL));
    let mut hashed = HashWriter::new(gz);
    io::copy(&mut source, &mut hashed).map_err(io_err("read the archive (is it a tar file?)"))?;
    let (gz, diff_id, _) = hashed.finish();
    let (file, digest, size) = gz.finish().map_err(io_err("compress the layer"))?.finish();
    let file = file.into_inner().map_err(|e| io_err("write the layer")(e.into_error()))?;
    Ok((file, PackedLayer { digest, size, diff_id }))
}

fn finish(tar: Builder<HashWriter<GzEncoder<HashWriter<BufWriter<File>>>>>) -> Result<(File, PackedLayer), ImageError> {
    let (gz, diff_id, _) = tar.into_inner().map_err(io_err("write the layer"))?.finish();
    let (file, digest, size) = gz.finish().map_err(io_err("compress the layer"))?.finish();
    let file = file.into_inner().map_err(|e| io_err("write the layer")(e.into_error()))?;
    file.sync_all().map_err(io_err("write the layer to disk"))?;
    Ok((file, PackedLayer { digest, size, diff_id }))
}

struct Walker<'a, W: Write> {
    tar: &'a mut Builder<W>,
    kind: TreeKind,
    /// (device, inode) of files with several names, and the first name.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Walker<'_, W> {
    fn walk(&mut self, dir: &Path, rel: &Path) -> Result<(), ImageError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(io_err(format!("read {}", dir.display())))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(format!("read {}", dir.display())))?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = rel.join(&name);
            let meta = fs::symlink_metadata(&path).map_err(io_err(format!("read {}", path.display())))?;
            self.entry(&path, &rel, &meta)?;
            if meta.is_dir() {
                self.walk(&path, &rel)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, rel: &Path, meta: &fs::Metadata) -> Result<(), ImageError> {
        let failed = io_err(format!("add {} to the layer", path.display()));
        let ft = meta.file_type();
        if self.kind.overlay() && ft.is_char_device() && meta.rdev() == 0 {
            // overlayfs's whiteout: the OCI one is an empty file `.wh.NAME`.
            let name = format!("{WHITEOUT_PREFIX}{}", rel.file_name().unwrap_or_default().to_string_lossy());
            return self.empty_file(&rel.with_file_name(name), meta).map_err(failed);
        }
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(meta, HeaderMode::Complete);
        let (uid, gid) = self.kind.owner(meta.uid(), meta.gid());
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(gid));
        if ft.is_socket() {
            return Ok(());
        } else if ft.is_dir() {
            header.set_size(0);
            self.tar.append_data(&mut header, rel, io::empty()).map_err(failed)?;
            if self.kind.overlay() && is_opaque(path) {
                self.empty_file(&rel.join(OPAQUE_MARKER), meta).map_err(io_err(format!("add {}", path.display())))?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_err(format!("read the link {}", path.display())))?;
            header.set_size(0);
            self.tar.append_link(&mut header, rel, target).map_err(failed)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                    header.set_entry_type(EntryType::Link);
                    header.set_size(0);
                    let first = first.clone();
                    return self.tar.append_link(&mut header, rel, first).map_err(failed);
                }
                self.links.insert((meta.dev(), meta.ino()), rel.to_path_buf());
            }
            let file = File::open(path).map_err(io_err(format!("read {}", path.display())))?;
            self.tar.append_data(&mut header, rel, file).map_err(failed)?;
        } else {
            // Character and block devices, FIFOs: a header alone.
            let rdev = meta.rdev();
            header.set_size(0);
            header.set_device_major(nix::sys::stat::major(rdev) as u32).map_err(io_err("set a device number"))?;
            header.set_device_minor(nix::sys::stat::minor(rdev) as u32).map_err(io_err("set a device number"))?;
            self.tar.append_data(&mut header, rel, io::empty()).map_err(failed)?;
        }
        Ok(())
    }

    fn empty_file(&mut self, rel: &Path, like: &fs::Metadata) -> io::Result<()> {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(like.mtime().max(0) as u64);
        self.tar.append_data(&mut header, rel, io::empty())
    }
}

/// The deletions an overlayfs upper directory records, as paths relative
/// to it: whiteouts (`NAME`, a character device 0/0) and opaque
/// directories (`DIR/`).
pub fn overlay_deletions(upper: &Path) -> Vec<String> {
    fn walk(dir: &Path, rel: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let (path, rel) = (e.path(), rel.join(e.file_name()));
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if meta.file_type().is_char_device() && meta.rdev() == 0 {
                out.push(rel.display().to_string());
            } else if meta.is_dir() {
                if is_opaque(&path) {
                    out.push(format!("{}/", rel.display()));
                }
                walk(&path, &rel, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(upper, Path::new(""), &mut out);
    out
}

fn is_opaque(dir: &Path) -> bool {
    get_xattr(dir, OVERLAY_OPAQUE_XATTR).is_some_and(|v| v == b"y")
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = CString::new(name).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: both strings are NUL-terminated and buf is writable for its
    // length; lgetxattr writes at most that many bytes.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: both strings are NUL-terminated and value is readable for its length.
    let r = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What unpacking a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Hex SHA-256 of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of file content (what `image history` shows as the size).
    pub content_size: u64,
    /// Whiteouts and opaque directories found.
    pub whiteouts: usize,
}

/// `input` uncompressed: gunzipped if it starts with gzip's magic, as it
/// is (a plain tar) otherwise.
fn decompressed<'a>(input: impl Read + 'a) -> Result<Box<dyn Read + 'a>, ImageError> {
    use std::io::BufRead;
    let mut input = BufReader::new(input);
    let gzipped = input.fill_buf().map_err(io_err("read the layer"))?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzipped { Box::new(GzDecoder::new(input)) } else { Box::new(input) })
}

/// Unpacks a tar layer (gzip'd or plain) into `dest` (an empty directory), owners,
/// modes and times kept, whiteouts made overlayfs's. If `diff_id` is given,
/// the uncompressed stream must hash to it.
pub fn unpack(blob: impl Read, diff_id: Option<&str>, dest: &Path) -> Result<Unpacked, ImageError> {
    let mut archive = tar::Archive::new(HashReader::new(decompressed(blob)?));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    let corrupt = |e: io::Error| ImageError::Corrupt { what: "layer".into(), reason: e.to_string() };
    let mut opaque = Vec::new();
    let mut content_size = 0;
    let mut whiteouts = 0;
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let rel = safe_relative(&path)?;
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        let parent = rel.parent().unwrap_or(Path::new(""));
        no_links_on_the_way(dest, parent, &path)?;
        let kind = entry.header().entry_type();
        if name == OPAQUE_MARKER {
            opaque.push(parent.to_path_buf());
            whiteouts += 1;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(unsafe_entry(&path, "is a whiteout of nothing"));
            }
            make_node(dest, &parent.join(hidden), SFlag::S_IFCHR, 0, 0, 0o000)?;
            whiteouts += 1;
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let h = entry.header();
            let flag = if kind.is_fifo() {
                SFlag::S_IFIFO
            } else if kind.is_block_special() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFCHR
            };
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            let mode = h.mode().map_err(corrupt)?;
            make_node(dest, &rel, flag, major, minor, mode)?;
            let (uid, gid) = (h.uid().map_err(corrupt)?, h.gid().map_err(corrupt)?);
            std::os::unix::fs::lchown(dest.join(&rel), Some(uid as u32), Some(gid as u32))
                .map_err(io_err(format!("give {} its owner", rel.display())))?;
        } else {
            let at = dest.join(&rel);
            if let Some(parent) = at.parent() {
                // No component on the way is a link (checked above).
                fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
            }
            let failed = |e: io::Error| ImageError::Io { what: format!("unpack {}", path.display()), cause: e };
            if kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| unsafe_entry(&path, "is a hard link to nothing"))?;
                let target = safe_relative(&target)
                    .map_err(|_| unsafe_entry(&path, "is a hard link to a file outside the layer"))?;
                no_links_on_the_way(dest, &target, &path)?;
                if fs::symlink_metadata(&at).is_ok_and(|m| !m.is_dir()) {
                    fs::remove_file(&at).map_err(failed)?;
                }
                fs::hard_link(dest.join(&target), &at).map_err(failed)?;
            } else {
                if kind.is_file() {
                    content_size += entry.size();
                }
                // The path was checked entry by entry above, so tar's own
                // unpack_in (which resolves every parent again) is not needed.
                entry.unpack(&at).map_err(failed)?;
            }
        }
    }
    for dir in opaque {
        // Checked again: a later entry may have made a part of the path a
        // symbolic link, which create_dir_all would follow out of `dest`.
        no_links_on_the_way(dest, &dir, &dir.join(OPAQUE_MARKER))?;
        let at = dest.join(&dir);
        fs::create_dir_all(&at).map_err(io_err(format!("create {}", at.display())))?;
        set_xattr(&at, OVERLAY_OPAQUE_XATTR, b"y")
            .map_err(io_err(format!("mark {} opaque (needs root)", at.display())))?;
    }
    let (found, _) = archive.into_inner().finish().map_err(corrupt)?;
    if let Some(expected) = diff_id {
        if found != expected {
            return Err(ImageError::DigestMismatch {
                what: "layer (uncompressed)".into(),
                expected: format!("sha256:{expected}"),
                found: format!("sha256:{found}"),
            });
        }
    }
    Ok(Unpacked { diff_id: found, content_size, whiteouts })
}

fn unsafe_entry(entry: &Path, reason: &str) -> ImageError {
    ImageError::UnsafeEntry { entry: entry.display().to_string(), reason: reason.to_string() }
}

/// `path` as a relative path of normal components (a leading `./` is fine).
fn safe_relative(path: &Path) -> Result<PathBuf, ImageError> {
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(part) => rel.push(part),
            Component::RootDir | Component::Prefix(_) => return Err(unsafe_entry(path, "is an absolute path")),
            Component::ParentDir => return Err(unsafe_entry(path, "has a `..` component")),
        }
    }
    Ok(rel)
}

/// Refuses `rel` (under `dest`) if any existing component of it is a
/// symbolic link: writing there would follow the link out of `dest`.
fn no_links_on_the_way(dest: &Path, rel: &Path, entry: &Path) -> Result<(), ImageError> {
    let mut at = dest.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(unsafe_entry(
                    entry,
                    &format!("goes through the symbolic link {}", at.strip_prefix(dest).unwrap_or(&at).display()),
                ));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

fn make_node(dest: &Path, rel: &Path, kind: SFlag, major: u32, minor: u32, mode: u32) -> Result<(), ImageError> {
    let at = dest.join(rel);
    if let Some(parent) = at.parent() {
        fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
    }
    match fs::symlink_metadata(&at) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&at),
        Ok(_) => fs::remove_file(&at),
        Err(_) => Ok(()),
    }
    .map_err(io_err(format!("replace {}", at.display())))?;
    mknod(&at, kind, Mode::from_bits_truncate(mode & 0o7777), makedev(u64::from(major), u64::from(minor))).map_err(
        |e| io_err(format!("create the node {} (device nodes and whiteouts need root)", at.display()))(e.into()),
    )
}
