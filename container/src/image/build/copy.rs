//! `COPY` and `ADD`: the files of the build context staged in a directory
//! laid out as the step's layer will be, refusing any path or link that
//! leads outside the context, with fixed directory times so that the same
//! files always give the same layer.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::{bad, State};
use crate::image::dockerfile::Instruction;
use crate::image::store::TempDir;
use crate::image::{io_err, layer, ImageError};
use crate::runtime::config::User;

/// Stages the files of a `COPY`/`ADD` in a directory laid out as the
/// layer will be.
#[allow(clippy::too_many_arguments)]
pub(super) fn stage(
    context: &Path,
    work: &TempDir,
    state: &State,
    i: &Instruction,
    sources: &[String],
    dest: &str,
    chown: Option<&str>,
    chmod: Option<&str>,
    add: bool,
) -> Result<PathBuf, ImageError> {
    let n = fs::read_dir(work.path()).map(Iterator::count).unwrap_or(0);
    let stage = work.path().join(format!("copy-{n}"));
    fs::create_dir_all(&stage).map_err(io_err("create a staging directory"))?;
    let owner = match chown {
        Some(c) => Some(User::parse(c).map_err(|_| bad(i, format!("--chown={c}: give a numeric UID[:GID]")))?),
        None => None,
    };
    let mode = match chmod {
        Some(m) => Some(
            u32::from_str_radix(m, 8).map_err(|_| bad(i, format!("--chmod={m}: give an octal mode such as 755")))?,
        ),
        None => None,
    };
    let workdir = state.config.working_dir().clone().unwrap_or_else(|| "/".into());
    let dest_abs =
        if dest.starts_with('/') { dest.to_string() } else { format!("{}/{dest}", workdir.trim_end_matches('/')) };
    let dest_rel =
        normal_relative(&dest_abs).ok_or_else(|| bad(i, format!("{dest}: the destination climbs out of /")))?;
    let mut files = Vec::new();
    for s in sources {
        files.extend(context_sources(context, s, i)?);
    }
    if files.is_empty() {
        return Err(bad(i, "no source files were given"));
    }
    // A destination is a directory when it says so (a trailing `/`, `.`),
    // when there are several sources, or when the image already has it as one.
    let names_dir = dest.ends_with('/') || dest == "." || dest.ends_with("/.") || dest.is_empty();
    let into_dir = names_dir || files.len() > 1 || state.layers.iter().any(|l| l.tree.join(&dest_rel).is_dir());
    if files.len() > 1 && !names_dir {
        return Err(bad(
            i,
            format!("with more than one source, the destination must be a directory ending in /: {dest}/"),
        ));
    }
    let target_dir = stage.join(&dest_rel);
    for f in &files {
        let meta = fs::metadata(f).map_err(io_err(format!("read {}", f.display())))?;
        if meta.is_dir() {
            copy_tree(f, &target_dir, owner, mode)?;
        } else if add && is_archive(f) {
            fs::create_dir_all(&target_dir).map_err(io_err(format!("create {}", target_dir.display())))?;
            let file = File::open(f).map_err(io_err(format!("read {}", f.display())))?;
            layer::unpack(file, None, &target_dir)?;
        } else {
            let to = if into_dir { target_dir.join(f.file_name().unwrap_or_default()) } else { target_dir.clone() };
            copy_file(f, &to, &meta, owner, mode)?;
        }
    }
    // Directories the copy made or filled get a fixed time, so that the
    // same files give the same layer (and the cache can tell).
    fix_dir_times(&stage)?;
    Ok(stage)
}

/// `path` (absolute) as a relative path without `..`, or `None` if it
/// climbs above `/`.
fn normal_relative(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir if !out.pop() => return None,
            _ => {}
        }
    }
    Some(out)
}

/// The files of the context that source `pattern` names (a path, or a
/// `*`/`?` pattern in its last part), refusing any outside the context.
fn context_sources(context: &Path, pattern: &str, i: &Instruction) -> Result<Vec<PathBuf>, ImageError> {
    let rel = normal_relative(&format!("/{pattern}"))
        .ok_or_else(|| bad(i, format!("{pattern} is outside the build context")))?;
    let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let candidates = if name.contains(['*', '?']) {
        let dir = context.join(rel.parent().unwrap_or(Path::new("")));
        let mut found: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(io_err(format!("read {}", dir.display())))?
            .flatten()
            .filter(|e| glob(&name, &e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        found.sort();
        if found.is_empty() {
            return Err(bad(i, format!("no file in the build context matches {pattern}")));
        }
        found
    } else {
        vec![context.join(&rel)]
    };
    candidates
        .into_iter()
        .map(|p| {
            let real = fs::canonicalize(&p)
                .map_err(|_| bad(i, format!("{pattern}: no such file in the build context {}", context.display())))?;
            if !real.starts_with(context) {
                return Err(bad(i, format!("{pattern} is outside the build context (it leads to {})", real.display())));
            }
            Ok(real)
        })
        .collect()
}

/// Shell-style matching of `*` and `?` in one path component.
fn glob(pattern: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => m(&p[1..], n) || (!n.is_empty() && m(p, &n[1..])),
            (Some('?'), Some(_)) => m(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    !name.starts_with('.') && m(&p, &n)
}

fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 262];
    let Ok(mut f) = File::open(path) else { return false };
    let n = f.read(&mut head).unwrap_or(0);
    head[..n.min(2)] == [0x1f, 0x8b] || (n >= 262 && &head[257..262] == b"ustar")
}

fn copy_file(
    from: &Path,
    to: &Path,
    meta: &fs::Metadata,
    owner: Option<User>,
    mode: Option<u32>,
) -> Result<(), ImageError> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
    }
    fs::copy(from, to).map_err(io_err(format!("copy {}", from.display())))?;
    finish_entry(to, meta, owner, mode)?;
    set_mtime(to, meta.mtime())
}

fn finish_entry(path: &Path, meta: &fs::Metadata, owner: Option<User>, mode: Option<u32>) -> Result<(), ImageError> {
    let perm = mode.unwrap_or(meta.mode() & 0o7777);
    fs::set_permissions(path, fs::Permissions::from_mode(perm))
        .map_err(io_err(format!("set the mode of {}", path.display())))?;
    let (uid, gid) = owner.map_or((0, 0), |u| (u.uid, u.gid));
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(io_err(format!("set the owner of {}", path.display())))
}

/// Copies the contents of directory `from` into `to`, links as links.
fn copy_tree(from: &Path, to: &Path, owner: Option<User>, mode: Option<u32>) -> Result<(), ImageError> {
    fs::create_dir_all(to).map_err(io_err(format!("create {}", to.display())))?;
    let meta = fs::metadata(from).map_err(io_err(format!("read {}", from.display())))?;
    finish_entry(to, &meta, owner, mode)?;
    let mut entries: Vec<_> =
        fs::read_dir(from).map_err(io_err(format!("read {}", from.display())))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let meta = fs::symlink_metadata(&src).map_err(io_err(format!("read {}", src.display())))?;
        if meta.is_dir() {
            copy_tree(&src, &dst, owner, mode)?;
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&src).map_err(io_err(format!("read {}", src.display())))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(io_err(format!("create {}", dst.display())))?;
            let (uid, gid) = owner.map_or((0, 0), |u| (u.uid, u.gid));
            std::os::unix::fs::lchown(&dst, Some(uid), Some(gid))
                .map_err(io_err(format!("set the owner of {}", dst.display())))?;
        } else if meta.is_file() {
            copy_file(&src, &dst, &meta, owner, mode)?;
        }
    }
    Ok(())
}

fn set_mtime(path: &Path, secs: i64) -> Result<(), ImageError> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(secs, 0);
    utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| ImageError::Io { what: format!("set the time of {}", path.display()), cause: e.into() })
}

fn fix_dir_times(dir: &Path) -> Result<(), ImageError> {
    for e in fs::read_dir(dir).map_err(io_err(format!("read {}", dir.display())))?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            fix_dir_times(&e.path())?;
        }
    }
    set_mtime(dir, 0)
}
