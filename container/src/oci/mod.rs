//! The OCI runtime side: an OCI **bundle** (a root file system and the
//! `config.json` of the runtime specification, read with the `oci-spec`
//! crate) turned into the launcher's [`ContainerConfig`], so that the
//! launcher runs what an engine (or `runc spec`) describes. Every field
//! virtlab cannot honour is an error naming it ([`OciError::Unsupported`]),
//! never a field silently skipped.
//!
//! `state.rs` keeps the runtime's own record of each container
//! (`ROOT/ID/state.json`, the specification's state: ociVersion, id,
//! status, pid, bundle, annotations) and its hooks (`ROOT/ID/hooks.json`).

pub mod bundle;
pub mod state;

use std::path::PathBuf;

pub use bundle::{load, Bundle};

/// The runtime-spec versions virtlab reads: 1.x.
pub const SPEC_MAJOR: &str = "1.";

/// The version of the runtime specification virtlab writes.
pub const SPEC_VERSION: &str = "1.0.2";

/// What can be wrong with a bundle or a container's state.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{bundle} has no config.json: a bundle is a directory with config.json and the root file system it names (`virtlab oci spec` writes a config.json to start from)")]
    NoConfig { bundle: PathBuf },
    #[error("{path} is not a valid runtime-spec config.json: {cause}")]
    BadConfig { path: PathBuf, cause: String },
    #[error("config.json is for runtime-spec {found}; virtlab reads 1.x")]
    Version { found: String },
    #[error("config.json: {field}: {why}")]
    Unsupported { field: String, why: String },
    #[error("config.json: root.path {path} is not a directory (it is relative to the bundle, or absolute): make the root file system there")]
    Root { path: PathBuf },
    #[error("config.json: {0}")]
    Config(#[from] crate::runtime::config::ConfigError),
    #[error("config.json: {0}")]
    Seccomp(Box<crate::runtime::seccomp_profile::ProfileError>),
    #[error("container {0} already exists: choose another ID, or `virtlab oci delete {0}` it first")]
    Exists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("\"{0}\" is not a valid container ID: use letters, digits, _ . and -")]
    BadId(String),
    #[error("could not {what}: {cause}")]
    Io { what: String, cause: std::io::Error },
}

pub(crate) fn unsupported(field: impl Into<String>, why: impl Into<String>) -> OciError {
    OciError::Unsupported { field: field.into(), why: why.into() }
}
