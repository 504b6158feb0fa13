//! The runtime's record of its containers: one directory per container
//! under the runtime's root (`--root`, `/run/virtlab/oci` by default, on
//! a tmpfs so that a reboot forgets them, as runc's `/run/runc`), holding
//! `state.json` in the runtime specification's form.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{OciError, SPEC_VERSION};
use crate::runtime::hooks::{Hook, HookState, LifecycleHooks};

/// The runtime's default root.
pub const DEFAULT_ROOT: &str = "/run/virtlab/oci";

/// A container's state, as `state` prints it (runtime-spec "State").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    /// `creating`, `created`, `running` or `stopped`.
    pub status: String,
    /// The container's process as the host sees it (0 once stopped).
    pub pid: i32,
    /// The bundle, absolute.
    pub bundle: PathBuf,
    /// When it was made (RFC 3339).
    pub created: String,
    /// config.json's annotations.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Whether `id` may name a container (and a directory).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> OciError {
    move |cause| OciError::Io { what, cause }
}

impl State {
    /// A new container `id` of `bundle`, not yet running: its directory is
    /// made (refused if it exists).
    pub fn create(root: &Path, id: &str, bundle: &Path) -> Result<State, OciError> {
        if !valid_id(id) {
            return Err(OciError::BadId(id.to_string()));
        }
        std::fs::create_dir_all(root).map_err(io(format!("create {}", root.display())))?;
        match std::fs::create_dir(root.join(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(OciError::Exists(id.to_string())),
            Err(e) => return Err(io(format!("create {}", root.join(id).display()))(e)),
        }
        let state = State {
            oci_version: SPEC_VERSION.into(),
            id: id.into(),
            status: "creating".into(),
            pid: 0,
            bundle: bundle.to_path_buf(),
            created: crate::time::rfc3339(std::time::SystemTime::now()),
            annotations: Default::default(),
        };
        state.save(root)?;
        Ok(state)
    }

    /// Container `id`'s state, its status brought up to date: a process
    /// that is gone makes it `stopped`.
    pub fn load(root: &Path, id: &str) -> Result<State, OciError> {
        if !valid_id(id) {
            return Err(OciError::BadId(id.to_string()));
        }
        let path = root.join(id).join("state.json");
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => OciError::NotFound(id.to_string()),
            _ => io(format!("read {}", path.display()))(e),
        })?;
        let mut s: State = serde_json::from_slice(&bytes)
            .map_err(|e| OciError::BadConfig { path: path.clone(), cause: e.to_string() })?;
        if (s.status == "running" || s.status == "created") && !crate::engine::container::alive(s.pid) {
            s.status = "stopped".into();
        }
        Ok(s)
    }

    /// Every container under `root`.
    pub fn list(root: &Path) -> Vec<State> {
        let mut out: Vec<State> = std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| State::load(root, &e.file_name().to_string_lossy()).ok())
            .collect();
        out.sort_by(|a, b| a.created.cmp(&b.created));
        out
    }

    /// Writes `state.json` whole (a temporary file renamed).
    pub fn save(&self, root: &Path) -> Result<(), OciError> {
        let path = root.join(&self.id).join("state.json");
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| io("encode the state".into())(e.into()))?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io(format!("write {}", path.display())))
    }

    /// Keeps the container's hooks (and the state they read) with its
    /// record, for `start` (poststart) and `delete` (poststop).
    pub fn save_hooks(root: &Path, id: &str, hooks: &LifecycleHooks) -> Result<(), OciError> {
        let path = root.join(id).join("hooks.json");
        let saved = SavedHooks { hooks: hooks.hooks.clone(), state: hooks.state.clone() };
        let bytes = serde_json::to_vec_pretty(&saved).map_err(|e| io("encode the hooks".into())(e.into()))?;
        std::fs::write(&path, bytes).map_err(io(format!("write {}", path.display())))
    }

    /// The hooks [`State::save_hooks`] kept (none if there are none).
    pub fn load_hooks(root: &Path, id: &str) -> Result<LifecycleHooks, OciError> {
        let path = root.join(id).join("hooks.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LifecycleHooks::default()),
            Err(e) => return Err(io(format!("read {}", path.display()))(e)),
        };
        let saved: SavedHooks = serde_json::from_slice(&bytes)
            .map_err(|e| OciError::BadConfig { path: path.clone(), cause: e.to_string() })?;
        Ok(LifecycleHooks { hooks: saved.hooks, state: saved.state, observer: None })
    }

    /// Removes the container's record.
    pub fn remove(root: &Path, id: &str) -> Result<(), OciError> {
        let dir = root.join(id);
        std::fs::remove_dir_all(&dir).map_err(io(format!("remove {}", dir.display())))
    }
}

/// `hooks.json`: a container's hooks and their state.
#[derive(Serialize, Deserialize)]
struct SavedHooks {
    hooks: Vec<Hook>,
    state: HookState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_a_duplicate_refused() {
        assert!(valid_id("web-1.a_b") && !valid_id("") && !valid_id("../x") && !valid_id(".hidden"));
        let root = tempfile::tempdir().unwrap();
        let s = State::create(root.path(), "c1", Path::new("/b")).unwrap();
        assert_eq!(s.status, "creating");
        assert!(matches!(State::create(root.path(), "c1", Path::new("/b")), Err(OciError::Exists(_))));
        let mut s = State::load(root.path(), "c1").unwrap();
        s.status = "running".into();
        s.pid = i32::MAX;
        s.save(root.path()).unwrap();
        assert_eq!(State::load(root.path(), "c1").unwrap().status, "stopped", "its process is gone");
        assert_eq!(State::list(root.path()).len(), 1);
        State::remove(root.path(), "c1").unwrap();
        assert!(matches!(State::load(root.path(), "c1"), Err(OciError::NotFound(_))));
    }

    #[test]
    fn hooks_are_kept_with_the_record() {
        use crate::runtime::hooks::HookKind;
        let root = tempfile::tempdir().unwrap();
        State::create(root.path(), "h1", Path::new("/b")).unwrap();
        assert!(State::load_hooks(root.path(), "h1").unwrap().hooks.is_empty(), "none kept: none");
        let hooks = LifecycleHooks {
            hooks: vec![Hook {
                kind: HookKind::Poststop,
                index: 0,
                path: "/bin/true".into(),
                args: vec!["true".into()],
                env: vec!["A=1".into()],
                timeout: Some(std::time::Duration::from_secs(3)),
            }],
            state: HookState {
                oci_version: "1.0.2".into(),
                id: "h1".into(),
                bundle: "/b".into(),
                ..Default::default()
            },
            observer: None,
        };
        State::save_hooks(root.path(), "h1", &hooks).unwrap();
        let back = State::load_hooks(root.path(), "h1").unwrap();
        assert_eq!((back.hooks, back.state), (hooks.hooks, hooks.state));
    }
}
