//! Images: root file systems as stacks of layers, stored in the OCI image
//! layout that skopeo, umoci and podman read.
//!
//! The course notes' Docker section, runnable: an image is a read-only
//! blueprint made of layers (an OS at the bottom, then a platform, then an
//! application); a container is a running instance with a writable layer of
//! its own on top. Two images that share a base share its layer, on disk
//! too: each layer is unpacked once, by its diff ID, and overlayfs stacks
//! the unpacked directories for a container.
//!
//! - [`store`]: the OCI layout under a root directory, the unpacked layers,
//!   the lock, names and removal;
//! - [`layer`]: directory trees to gzip'd tar layers and back, whiteouts;
//! - [`import`]: a root file system (a directory or a tar) as a one-layer image;
//! - [`build`]: `image build`, a Dockerfile made into an image, with a build cache;
//! - [`archive`]: `image save` and `image load`, as OCI archives;
//! - [`inspect`]: `image history`, `image inspect` (with `--format`), `system df`;
//! - [`run`]: a container's file system and command from an image;
//! - [`dockerfile`]: the Dockerfile subset the builder understands;
//! - [`reference`]: image names (`busybox`, `docker.io/library/debian:latest`).

pub mod archive;
pub mod build;
pub mod digest;
pub mod dockerfile;
pub mod import;
pub mod inspect;
pub mod layer;
pub mod reference;
pub mod run;
pub mod store;
pub mod template;
pub use crate::time;

use std::io;
use std::path::PathBuf;

pub use reference::ImageName;
pub use store::{default_root, Image, Store, DEFAULT_ROOT};

/// The version of the OCI image specification the store's layout follows.
pub const OCI_IMAGE_SPEC_VERSION: &str = oci_spec::image::VERSION;

/// What can go wrong with images. Each message names the problem and what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot use the image store at {}: {cause} (run as root, or pick another directory with --root DIR or VIRTLAB_ROOT)", root.display())]
    Root { root: PathBuf, cause: io::Error },
    #[error("could not {what}: {cause}")]
    Io { what: String, cause: io::Error },
    #[error("`{name}` is not a valid image name ({reason}); names look like busybox, localhost/app:1.0 or docker.io/library/debian:latest")]
    InvalidName { name: String, reason: String },
    #[error("no image `{name}` in the store at {}; `virtlab image ls` lists the images, `virtlab image import DIR NAME` or `virtlab image load -i FILE.tar` adds one", root.display())]
    NotFound { name: String, root: PathBuf },
    #[error("`{0}` is the start of more than one image ID; give more digits or a name")]
    Ambiguous(String),
    #[error("{what} is corrupt: its digest is {found}, not {expected}; remove it and import or load the image again")]
    DigestMismatch { what: String, expected: String, found: String },
    #[error("{what} is not valid: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("the layer entry `{entry}` {reason}: refusing to unpack a layer that writes outside its directory")]
    UnsafeEntry { entry: String, reason: String },
    #[error("{0} is neither a directory nor a tar archive; import takes a root file system as one of those")]
    NotATree(PathBuf),
    #[error("`{name}` names the registry {registry}, and this machine has no network to reach it; bring the image as a file instead: `virtlab image load -i FILE.tar` (an OCI archive, e.g. from `skopeo copy` or `podman save --format oci-archive`), or import a root file system with `virtlab image import DIR NAME`")]
    NoRegistry { name: String, registry: String },
    #[error("{0}")]
    Template(String),
    #[error("image `{0}` is used by a container (`virtlab ps -a` lists them); remove the container first, or remove the image anyway with --force (its layers stay while a container stands on them)")]
    InUse(String),
    #[error("the image has no command (no CMD or ENTRYPOINT): give one after the image name, e.g. `virtlab container run IMAGE /bin/sh`")]
    NoCommand,
    #[error("Dockerfile line {line}: {reason}")]
    Dockerfile { line: usize, reason: String },
}

/// An [`ImageError::Io`] maker for `map_err`: what was being done.
pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let what = what.into();
    move |cause| ImageError::Io { what, cause }
}

/// An [`ImageError::Corrupt`] maker for the `oci-spec` parsers and builders.
pub(crate) fn spec_err(what: &str) -> impl FnOnce(oci_spec::OciSpecError) -> ImageError + '_ {
    move |e| ImageError::Corrupt { what: what.to_string(), reason: e.to_string() }
}
