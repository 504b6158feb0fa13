//! The command: where it is looked for inside the container, its
//! environment, the argv and envp arrays execve(2) takes, prepared by the
//! parent, and the exec itself, tried on each candidate like execvp(3).

use std::ffi::CString;

use nix::errno::Errno;

use super::model::cstr;
use crate::runtime::config::{ConfigError, ContainerConfig};
use crate::runtime::sys::{ExecArgs, Sys};

/// The `PATH` inside the container.
pub const DEFAULT_PATH: &str = "/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin";

/// The command's candidate paths inside the container: itself if it holds a
/// `/`, else one per `PATH` entry.
pub fn command_candidates(cmd: &str, path_var: &str) -> Vec<String> {
    if cmd.contains('/') {
        return vec![cmd.to_string()];
    }
    path_var.split(':').filter(|d| !d.is_empty()).map(|d| format!("{}/{cmd}", d.trim_end_matches('/'))).collect()
}

/// The environment of the command: `PATH`, `HOME`, `HOSTNAME`, `TERM` (from
/// the launcher, when set), then the configured variables, later ones winning.
pub fn environment(cfg: &ContainerConfig) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), "/".into()),
        ("HOSTNAME".into(), cfg.hostname.clone()),
    ];
    if let Ok(t) = std::env::var("TERM") {
        env.push(("TERM".into(), t));
    }
    for (k, v) in &cfg.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// The command's candidate paths under the `PATH` of `env` (the
/// container's [`environment`]), [`DEFAULT_PATH`] if it has none.
pub fn command_paths(cmd: &str, env: &[(String, String)]) -> Vec<String> {
    let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or(DEFAULT_PATH);
    command_candidates(cmd, path_var)
}

/// The command ready for execve: its candidate paths, and argv and envp
/// as C strings with the NULL-terminated pointer arrays into them.
#[derive(Debug)]
pub(super) struct Command {
    pub(super) candidates: Vec<CString>,
    pub(super) argv: Vec<CString>,
    pub(super) envp: Vec<CString>,
    pub(super) exec: ExecArgs,
}

/// Prepares the command of `cfg`.
pub(super) fn prepare(cfg: &ContainerConfig) -> Result<Command, ConfigError> {
    let cmd = cfg.argv.first().ok_or(ConfigError::NoCommand)?;
    let env = environment(cfg);
    let candidates = command_paths(cmd, &env).into_iter().map(|c| cstr(c, "command")).collect::<Result<Vec<_>, _>>()?;
    let argv = cfg.argv.iter().map(|a| cstr(a.as_str(), "argument")).collect::<Result<Vec<_>, _>>()?;
    let envp = env.iter().map(|(k, v)| cstr(format!("{k}={v}"), "environment")).collect::<Result<Vec<_>, _>>()?;
    let ptrs = |v: &[CString]| {
        let mut p: Vec<*const libc::c_char> = v.iter().map(|c| c.as_ptr()).collect();
        p.push(std::ptr::null());
        p
    };
    let exec = ExecArgs { argv: ptrs(&argv), envp: ptrs(&envp) };
    Ok(Command { candidates, argv, envp, exec })
}

/// [`Op::Exec`](super::model::Op::Exec): every fd from 3 up marked
/// close-on-exec (unless `close_fds` is off) but the `keep` first
/// (`--preserve-fds`), then execve of each candidate
/// in turn. Returns only on failure, with the most telling error across the
/// candidates.
pub(super) fn exec<S: Sys>(sys: &S, candidates: &[CString], args: &ExecArgs, close_fds: bool, keep: u32) -> Errno {
    if close_fds {
        if let Err(e) = sys.cloexec_above(keep) {
            return e;
        }
    }
    let mut err = Errno::ENOENT;
    for c in candidates {
        match sys.execve(c, args) {
            Errno::ENOENT | Errno::ENOTDIR => {}
            e => err = e,
        }
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::Namespaces;
    use crate::runtime::plan::fake::{cfg, host};
    use crate::runtime::plan::model::{Plan, StdioFds};
    use std::path::Path;

    #[test]
    fn command_lookup_and_environment() {
        assert_eq!(command_candidates("/x/y", "/bin"), vec!["/x/y"]);
        assert_eq!(command_candidates("sh", "/bin:/usr/bin/"), vec!["/bin/sh", "/usr/bin/sh"]);
        let mut c = cfg(Namespaces::ALL);
        c.env = vec![("PATH".into(), "/opt".into()), ("A".into(), "1".into())];
        let env = environment(&c);
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
        assert!(env.contains(&("PATH".into(), "/opt".into())));
        let plan = Plan::build(&c, Path::new("/r"), StdioFds::default(), &[], host()).unwrap();
        assert_eq!(plan.candidates, vec![CString::new("/opt/sh").unwrap()]);
        assert_eq!(plan.exec.argv.len(), 4, "3 arguments and the NULL");
        assert!(plan.exec.argv.last().unwrap().is_null());
    }
}
