//! `virtlab oci --explain`: one line per runtime call in a trace file, so a
//! class can watch an engine drive the runtime (podman → conmon → create,
//! start, state, kill, delete). The runtime's standard output and error
//! belong to the engine (conmon reads them), so the trace goes to a file:
//! `ROOT/explain.log` unless `--explain-file` names another, and
//! `virtlab oci explain [-f]` prints it. Calls run at the same time, so
//! each line is appended with one write(2) on an `O_APPEND` file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};

/// The trace file: `--explain-file`, or `ROOT/explain.log`.
pub fn log_path(root: &Path, file: Option<&Path>) -> PathBuf {
    file.map(Path::to_path_buf).unwrap_or_else(|| root.join("explain.log"))
}

/// Global flags that are the same on every call, left out of a line.
const GLOBAL_WITH_VALUE: [&str; 4] = ["--root", "--log", "--log-format", "--explain-file"];
const GLOBAL_FLAGS: [&str; 2] = ["--explain", "--systemd-cgroup"];

/// The call as a reader wants it: the global flags left out, long paths
/// cut to their last two parts, 64-digit container IDs to 12 digits.
pub fn call_text(args: &[String]) -> String {
    let mut out = Vec::new();
    let mut skip_next = false;
    for a in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        let name = a.split('=').next().unwrap_or(a);
        if GLOBAL_WITH_VALUE.contains(&name) {
            skip_next = !a.contains('=');
            continue;
        }
        if GLOBAL_FLAGS.contains(&a.as_str()) {
            continue;
        }
        out.push(shorten(a));
    }
    out.join(" ")
}

fn shorten(arg: &str) -> String {
    if arg.len() == 64 && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return format!("{}…", &arg[..12]);
    }
    if arg.starts_with('/') {
        let parts: Vec<&str> = arg.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() > 3 {
            let tail: Vec<String> = parts[parts.len() - 2..].iter().map(|p| shorten(p)).collect();
            return format!("…/{}", tail.join("/"));
        }
    }
    arg.to_string()
}

/// Who called: the parent's name and PID, its parent's, up to three
/// levels, outermost first (`podman 1234 → conmon 1240 →`). An engine's
/// monitor detaches from the engine (conmon makes a session of its own
/// and is left to PID 1); its `--exit-command` still names the engine,
/// which then heads the chain without a PID (`podman → conmon 1240
/// (detached) →`).
pub fn callers() -> String {
    let mut chain = Vec::new();
    let mut pid = std::os::unix::process::parent_id();
    for _ in 0..3 {
        let Some((comm, ppid)) = proc_stat(pid) else { break };
        if ppid <= 1 {
            match exit_command(pid) {
                Some(engine) => chain.extend([format!("{comm} {pid} (detached)"), engine]),
                None => chain.push(format!("{comm} {pid}")),
            }
            break;
        }
        chain.push(format!("{comm} {pid}"));
        pid = ppid;
    }
    chain.reverse();
    chain.iter().map(|c| format!("{c} → ")).collect()
}

/// The program named by `--exit-command` in a process's command line
/// (conmon's: the engine it runs when the container ends).
fn exit_command(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned());
    args.find(|a| a == "--exit-command")?;
    let program = args.next()?;
    Some(Path::new(&program).file_name()?.to_string_lossy().into_owned())
}

/// A created container's own trace: the calls after `create` (engines
/// pass their runtime flags to some calls only; podman's cleanup passes
/// none) go to the trace its `create` went to.
pub fn marker(root: &Path, id: &str) -> PathBuf {
    root.join(id).join("explain")
}

/// The trace a container's `create` asked for, if any.
pub fn marked(root: &Path, id: &str) -> Option<PathBuf> {
    std::fs::read_to_string(marker(root, id)).ok().map(PathBuf::from)
}

/// A process's name and parent from `/proc/PID/stat` (proc(5)): the name
/// sits between the first `(` and the last `)`, the parent is the second
/// field after it.
fn proc_stat(pid: u32) -> Option<(String, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (text.find('(')?, text.rfind(')')?);
    let comm = text.get(open + 1..close)?.to_string();
    let ppid = text.get(close + 1..)?.split_whitespace().nth(1)?.parse().ok()?;
    Some((comm, ppid))
}

/// `HH:MM:SS.mmm` (UTC) of a time.
pub fn clock(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let day = since.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", day / 3600, day / 60 % 60, day % 60, since.subsec_millis())
}

/// One line: when, who called, the call, its outcome and how long it took.
pub fn line(at: SystemTime, callers: &str, call: &str, outcome: &str, took: Duration) -> String {
    let outcome = outcome.replace('\n', " ");
    format!("{} {callers}{call} ⇒ {outcome} ({:.1} ms)\n", clock(at), took.as_secs_f64() * 1e3)
}

/// Appends `line` to `path` with one write(2), so that lines of calls
/// running at the same time do not mix.
pub fn append(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let n = f.write(line.as_bytes())?;
    if n != line.len() {
        return Err(std::io::Error::other(format!("short write to {}: {n} of {} bytes", path.display(), line.len())));
    }
    Ok(())
}

/// `virtlab oci explain [-f]`: prints the trace; with `follow`, goes on
/// printing what is appended (and waits for the file to appear).
pub fn show(path: &Path, follow: bool) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    let mut file = loop {
        match std::fs::File::open(path) {
            Ok(f) => break f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && follow => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no trace at {}: nothing has run with --explain under this --root yet (podman: `podman --runtime-flag explain run ...`; by hand: `virtlab oci --explain ...`)",
                path.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        }
    };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        file.read_to_end(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if out.write_all(&buf).and_then(|()| out.flush()).is_err() {
            return Ok(0); // the reader went away (a pipe to head)
        }
        if !follow {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(200));
        // A trace removed and made again starts from its beginning.
        let pos = file.stream_position()?;
        if std::fs::metadata(path).is_ok_and(|m| m.len() < pos) {
            file.seek(SeekFrom::Start(0))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_time_callers_call_outcome_and_duration() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(13 * 3_600_000 + 4 * 60_000 + 5_000 + 67);
        let call = call_text(
            &[
                "--root",
                "/run/virtlab-runc",
                "--log=/var/lib/containers/storage/overlay-containers/x/userdata/oci-log",
                "--explain",
                "create",
                "--bundle",
                "/var/lib/containers/storage/overlay-containers/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/userdata",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ]
            .map(String::from),
        );
        let l = line(at, "podman 10 → conmon 12 → ", &call, "created, pid 99", Duration::from_micros(12_340));
        assert_eq!(
            l,
            "13:04:05.067 podman 10 → conmon 12 → create --bundle …/0123456789ab…/userdata 0123456789ab… ⇒ created, pid 99 (12.3 ms)\n"
        );
    }

    #[test]
    fn short_paths_and_plain_words_stay_as_they_are() {
        assert_eq!(call_text(&["start".into(), "demo".into()]), "start demo");
        assert_eq!(call_text(&["delete".into(), "--force".into(), "/tmp/b".into()]), "delete --force /tmp/b");
    }

    #[test]
    fn the_callers_chain_ends_with_this_process_parent() {
        let chain = callers();
        let parent = std::os::unix::process::parent_id();
        assert!(chain.ends_with(&format!(" {parent} → ")), "{chain}");
    }

    #[test]
    fn an_appended_line_is_added_whole() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("sub/explain.log");
        append(&path, "one\n").expect("append");
        append(&path, "two\n").expect("append");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "one\ntwo\n");
    }
}
