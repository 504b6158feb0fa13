//! The image `container-image` and `podman` run: made once per comparison,
//! outside the timing, in a private image store under a temporary
//! directory of the run's (never the host's `/var/lib/virtlab`), and
//! removed at the end of the run, whichever way it ends ([`ImageDir`]).
//!
//! Three layers, as an application image has them: the built-in rootfs
//! imported (the workload, and busybox when the host has busybox-static),
//! then a build FROM it with two `COPY` steps, one small file each, so
//! that no step needs a shell in the image. For podman the image is also
//! saved as an OCI archive and loaded into a podman storage of the run's
//! own.
//!
//! ```text
//! TMP/virtlab-compare-image-XXXXXX/
//!   store/        the image store: the image, and each start's writable layer
//!   context/      the build context: Dockerfile, two small files
//!   image.tar     the OCI archive podman loads
//!   podman/       podman's root, runroot and tmpdir
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use virtlab_container::image::build::{self, BuildOptions};
use virtlab_container::image::{archive, import, ImageName, Store};

use crate::launch::{PodmanStorage, RunImage};
use crate::podman;

/// The image's name, in our store and in podman's.
pub const IMAGE_NAME: &str = "localhost/virtlab-compare/workload:latest";

/// The image it is built FROM: the built-in rootfs, imported.
const BASE_NAME: &str = "localhost/virtlab-compare/base:latest";

/// The Dockerfile of the two upper layers.
const DOCKERFILE: &str = "FROM localhost/virtlab-compare/base:latest\n\
                          COPY course.txt /etc/virtlab/course.txt\n\
                          COPY layer.txt /etc/virtlab/layer.txt\n\
                          CMD [\"/virtlab-workload\", \"ready\"]\n";

/// The run's temporary directory: removed on drop, after podman's
/// containers, processes, mounts and cgroups.
#[derive(Debug)]
pub struct ImageDir {
    podman: Option<PodmanStorage>,
    // Dropped after `drop` below has cleared podman's side.
    dir: tempfile::TempDir,
}

impl ImageDir {
    /// A fresh directory (mode 0700) in the system's temporary directory.
    pub fn create() -> anyhow::Result<ImageDir> {
        let dir = tempfile::Builder::new()
            .prefix("virtlab-compare-image-")
            .tempdir()
            .context("cannot create a temporary directory for the image")?;
        Ok(ImageDir { podman: None, dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where podman's storage goes, once [`load_into_podman`] made it.
    pub fn podman_storage(&self) -> PodmanStorage {
        PodmanStorage { dir: self.path().join("podman") }
    }
}

impl Drop for ImageDir {
    fn drop(&mut self) {
        if let Some(storage) = &self.podman {
            podman::remove_all(storage);
        }
        // Anything mounted under it (nothing of ours: the container's
        // overlays are detached mounts) would make the removal fail.
        podman::unmount_under(self.dir.path());
    }
}

/// Imports `rootfs` and builds the three-layer image in `dir`'s store.
pub fn make(dir: &ImageDir, rootfs: &Path) -> anyhow::Result<RunImage> {
    let store = Store::open(dir.path().join("store")).context("cannot open the comparison's image store")?;
    let base: ImageName = BASE_NAME.parse().context("the base image's name")?;
    import::import(&store, rootfs, &base).with_context(|| format!("cannot import {}", rootfs.display()))?;
    let context = dir.path().join("context");
    std::fs::create_dir_all(&context).with_context(|| format!("cannot create {}", context.display()))?;
    for (file, text) in [
        ("Dockerfile", DOCKERFILE),
        ("course.txt", "virtlab: the same workload, on an image of three layers\n"),
        ("layer.txt", "the third layer\n"),
    ] {
        std::fs::write(context.join(file), text).with_context(|| format!("cannot write the build context's {file}"))?;
    }
    let opts = BuildOptions {
        dockerfile: context.join("Dockerfile"),
        context: context.clone(),
        tag: Some(IMAGE_NAME.parse().context("the image's name")?),
        build_args: Default::default(),
        no_cache: false,
        stdio: virtlab_container::Stdio::Capture,
    };
    let built = build::build(&store, &opts, &mut |_| {}).context("cannot build the comparison's image")?;
    let layers = built.image.diff_ids().len();
    anyhow::ensure!(layers == 3, "the comparison's image has {layers} layers, not 3");
    Ok(RunImage { store, image: built.image, name: IMAGE_NAME.to_string(), podman: None })
}

/// Saves `image` as an OCI archive and loads it into a podman storage in
/// `dir`; from then on, dropping `dir` clears that storage too.
pub fn load_into_podman(dir: &mut ImageDir, image: &mut RunImage) -> Result<(), String> {
    let archive_path: PathBuf = dir.path().join("image.tar");
    let out = File::create(&archive_path).map_err(|e| format!("cannot create {}: {e}", archive_path.display()))?;
    archive::save(&image.store, std::slice::from_ref(&image.name), out)
        .map_err(|e| format!("cannot save the image as an OCI archive: {e}"))?;
    let storage = dir.podman_storage();
    dir.podman = Some(storage.clone());
    podman::load(&storage, &archive_path)?;
    let _ = std::fs::remove_file(&archive_path);
    image.podman = Some(storage);
    Ok(())
}
