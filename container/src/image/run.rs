//! Running an image: its layers stacked under a fresh writable layer, and
//! the command, environment, working directory and user its config gives,
//! unless the command line says otherwise (as `docker run` does).

use std::fs;
use std::path::{Path, PathBuf};

use super::store::{Image, Store, TempDir};
use super::ImageError;
use crate::runtime::overlay::LayeredRootfs;

/// A container's file system from an image: the image's layers, top first,
/// and a fresh directory for its writable layer, removed when this is
/// dropped (a killed run's is removed by the next store command).
#[derive(Debug)]
pub struct Prepared {
    /// The stack, for [`crate::ContainerConfig::layers`].
    pub layers: LayeredRootfs,
    /// The empty directory the stack is attached at inside the container's
    /// mount namespace, for [`crate::ContainerConfig::rootfs`].
    pub mount_point: PathBuf,
    _work: Option<TempDir>,
}

/// Prepares a fresh writable layer over `image`'s layers. `workdir`, if
/// given, is made in it (Docker makes a missing working directory too).
pub fn prepare(store: &Store, image: &Image, workdir: Option<&str>) -> Result<Prepared, ImageError> {
    let mut lower = store.layer_dirs(image)?;
    lower.reverse();
    prepare_stack(store, lower, workdir, Some(&image.id))
}

/// Prepares a fresh writable layer over `lower` (unpacked layers, top
/// first), as [`prepare`] does for an image.
pub fn prepare_stack(
    store: &Store,
    lower: Vec<PathBuf>,
    workdir: Option<&str>,
    image: Option<&str>,
) -> Result<Prepared, ImageError> {
    let work = store.temp_dir("container")?;
    let (layers, mount_point) = stack_in(store, work.path(), lower, workdir, image)?;
    Ok(Prepared { layers, mount_point, _work: Some(work) })
}

/// A container's file system from `image` in a directory of the caller's
/// (an engine container's own), which stays when this returns.
pub fn prepare_in(store: &Store, image: &Image, workdir: Option<&str>, dir: &Path) -> Result<Prepared, ImageError> {
    let mut lower = store.layer_dirs(image)?;
    lower.reverse();
    let (layers, mount_point) = stack_in(store, dir, lower, workdir, Some(&image.id))?;
    Ok(Prepared { layers, mount_point, _work: None })
}

/// Makes the writable layer in `dir` over `lower` and records what it
/// stands on.
fn stack_in(
    store: &Store,
    dir: &Path,
    mut lower: Vec<PathBuf>,
    workdir: Option<&str>,
    image: Option<&str>,
) -> Result<(LayeredRootfs, PathBuf), ImageError> {
    // The store's layers this container stands on (a build's own new
    // layers, still in its work directory, are not the store's).
    let layers: Vec<String> = lower
        .iter()
        .filter(|l| l.parent().and_then(Path::parent) == Some(&store.root().join("layers")))
        .filter_map(|l| l.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()))
        .collect();
    store.mark_in_use(dir, image, &layers)?;
    let mount_point = dir.join("merged");
    let upper = dir.join("upper");
    for d in [&mount_point, &upper, &dir.join("work")] {
        fs::create_dir_all(d).map_err(|e| ImageError::Io { what: format!("create {}", d.display()), cause: e })?;
    }
    if let Some(w) = workdir.map(|w| w.trim_start_matches('/')).filter(|w| !w.is_empty()) {
        if w.split('/').any(|c| c == "..") {
            return Err(ImageError::Corrupt {
                what: "the working directory".into(),
                reason: format!("{w:?} climbs out of the root"),
            });
        }
        // Only where no layer has it: an upper directory over a lower one
        // would be an empty copy-up, harmless but not needed.
        if !lower.iter().any(|l| l.join(w).is_dir()) {
            fs::create_dir_all(upper.join(w))
                .map_err(|e| ImageError::Io { what: format!("create the working directory {w}"), cause: e })?;
        }
    }
    if lower.is_empty() {
        // overlayfs needs a lower layer: an image made FROM scratch with no
        // layer yet stands on an empty one.
        let empty = dir.join("empty");
        fs::create_dir_all(&empty).map_err(|e| ImageError::Io { what: "create an empty layer".into(), cause: e })?;
        lower.push(empty);
    }
    Ok((LayeredRootfs { lower, dir: dir.to_path_buf() }, mount_point))
}

/// The command a container of `image` runs: the entrypoint (the image's,
/// or `entrypoint` if given) followed by `cmd` if given, else the image's
/// CMD, as Docker combines them.
pub fn command(image: &Image, entrypoint: Option<Vec<String>>, cmd: &[String]) -> Result<Vec<String>, ImageError> {
    let config = image.config.config().clone().unwrap_or_default();
    let mut argv = entrypoint.unwrap_or_else(|| config.entrypoint().clone().unwrap_or_default());
    if cmd.is_empty() {
        argv.extend(config.cmd().clone().unwrap_or_default());
    } else {
        argv.extend(cmd.iter().cloned());
    }
    if argv.is_empty() {
        return Err(ImageError::NoCommand);
    }
    Ok(argv)
}

/// The image's environment (`ENV`), as pairs.
pub fn environment(image: &Image) -> Vec<(String, String)> {
    let env = image.config.config().as_ref().and_then(|c| c.env().clone()).unwrap_or_default();
    env.iter()
        .map(|e| e.split_once('=').map_or((e.clone(), String::new()), |(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// The image's working directory (`WORKDIR`), if it sets one.
pub fn workdir(image: &Image) -> Option<String> {
    image.config.config().as_ref().and_then(|c| c.working_dir().clone()).filter(|w| !w.is_empty())
}

/// The image's user (`USER`), if it sets one.
pub fn user(image: &Image) -> Option<String> {
    image.config.config().as_ref().and_then(|c| c.user().clone()).filter(|u| !u.is_empty())
}
