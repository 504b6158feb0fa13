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

/// A user's image to base the comparison's image on (`--image`), and the
/// workload file to copy into it.
#[derive(Debug)]
pub struct Base {
    pub store: Store,
    pub image: virtlab_container::image::Image,
    pub workload: PathBuf,
}

/// The Dockerfile on a user's base image: the workload as one more layer.
const DOCKERFILE_ON_BASE: &str = "FROM localhost/virtlab-compare/base:latest\n\
                                  COPY virtlab-workload /virtlab-workload\n\
                                  COPY course.txt /etc/virtlab/course.txt\n\
                                  CMD [\"/virtlab-workload\", \"ready\"]\n";

/// Builds the comparison's image in `dir`'s store: on the built-in rootfs
/// imported (three layers), or, with `base`, on a copy of that image with
/// the workload added (its layers and two more).
pub fn make(dir: &ImageDir, rootfs: &Path, base: Option<Base>) -> anyhow::Result<RunImage> {
    let store = Store::open(dir.path().join("store")).context("cannot open the comparison's image store")?;
    let base_name: ImageName = BASE_NAME.parse().context("the base image's name")?;
    let context = dir.path().join("context");
    std::fs::create_dir_all(&context).with_context(|| format!("cannot create {}", context.display()))?;
    let (dockerfile, expected) = match &base {
        None => {
            import::import(&store, rootfs, &base_name)
                .with_context(|| format!("cannot import {}", rootfs.display()))?;
            (DOCKERFILE, 3)
        }
        Some(b) => {
            // The user's image, copied into the private store through an
            // OCI archive, as any other store would take it.
            let tar = dir.path().join("base.tar");
            let name = b.image.name.as_ref().map_or_else(|| b.image.id.clone(), ToString::to_string);
            archive::save(
                &b.store,
                std::slice::from_ref(&name),
                File::create(&tar).context("cannot write the base image's archive")?,
            )
            .with_context(|| format!("cannot save {name}"))?;
            let loaded = archive::load(&store, File::open(&tar).context("cannot read the base image's archive")?)
                .with_context(|| format!("cannot copy {name} into the comparison's store"))?;
            let _ = std::fs::remove_file(&tar);
            store.tag(&loaded[0].id, &base_name).context("cannot name the base image")?;
            std::fs::copy(&b.workload, context.join("virtlab-workload"))
                .context("cannot copy the workload into the build context")?;
            (DOCKERFILE_ON_BASE, b.image.diff_ids().len() + 2)
        }
    };
    for (file, text) in [
        ("Dockerfile", dockerfile),
        ("course.txt", "virtlab: the same workload, on an image of layers\n"),
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
    anyhow::ensure!(layers == expected, "the comparison's image has {layers} layers, not {expected}");
    Ok(RunImage { store, image: built.image, name: IMAGE_NAME.to_string(), podman: None })
}

/// Saves `image` as an OCI archive and loads it into a podman storage in
/// `dir`; from then on, dropping `dir` clears that storage too.
/// Links `virtlab-runc` in `storage`'s directory to the running virtlab
/// binary: podman's `--runtime` for `podman+virtlab` (the name is what
/// makes virtlab the OCI runtime). It goes with the directory.
pub fn link_virtlab_runtime(storage: &PodmanStorage) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the virtlab binary: {e}"))?;
    let link = storage.virtlab_runtime();
    std::os::unix::fs::symlink(&exe, &link)
        .map_err(|e| format!("cannot link {} to {}: {e}", link.display(), exe.display()))
}

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
