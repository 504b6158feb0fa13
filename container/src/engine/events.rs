//! The event log: what happened to containers and images, the last 1000
//! events kept (the oldest dropped first, as the course notes describe
//! Docker's), as JSON lines in `ROOT/events.jsonl`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::{io_err, EngineError};

/// How many events the log keeps.
pub const KEEP: usize = 1000;

/// The size of the file at which it is trimmed to the last [`KEEP`]
/// events: about twice what 1000 events take.
const TRIM_AT: u64 = 512 * 1024;

/// One event, with Docker's field names (`docker events --format '{{json .}}'`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub time: u64,
    #[serde(rename = "timeNano")]
    pub time_nano: u128,
}

/// What the event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl Event {
    /// An event of `kind` (`container`, `image`) now.
    pub fn now(kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) -> Event {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Event {
            kind: kind.into(),
            action: action.into(),
            actor: Actor {
                id: id.into(),
                attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            },
            time: t.as_secs(),
            time_nano: t.as_nanos(),
        }
    }
}

/// Appends `event` to the log of the store at `root`, dropping the oldest
/// beyond [`KEEP`].
pub fn record(root: &Path, event: &Event) -> Result<(), EngineError> {
    let path = root.join("events.jsonl");
    let lock_path = root.join(".events.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(format!("open {}", lock_path.display())))?;
    let _lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io_err("lock the event log")(e.into()))?;
    let line = serde_json::to_string(event).map_err(|e| io_err("encode an event")(e.into()))?;
    let mut out =
        OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(format!("open {}", path.display())))?;
    writeln!(out, "{line}").map_err(io_err(format!("write {}", path.display())))?;
    let size = out.metadata().map_or(0, |m| m.len());
    drop(out);
    // The file is trimmed once it may hold twice what is kept, not at every
    // event (reading it whole each time would slow every command that
    // records one); readers only ever see the last KEEP.
    if size < TRIM_AT {
        return Ok(());
    }
    let text = fs::read_to_string(&path).map_err(io_err(format!("read {}", path.display())))?;
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() > KEEP {
        let kept = lines[lines.len() - KEEP..].join("\n") + "\n";
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, kept)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(io_err(format!("trim {}", path.display())))?;
    }
    Ok(())
}

/// Which events `events` prints (`--since`, `--until`, `--filter`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<u128>,
    pub until: Option<u128>,
    pub kinds: Vec<String>,
    pub actions: Vec<String>,
    /// Container names or IDs (prefixes).
    pub containers: Vec<String>,
}

impl Filter {
    /// Adds a `--filter KEY=VALUE`.
    pub fn add(&mut self, text: &str) -> Result<(), EngineError> {
        let (k, v) = text.split_once('=').ok_or_else(|| {
            EngineError::Filter(format!(
                "--filter {text:?}: write KEY=VALUE, e.g. type=container, event=start, container=NAME"
            ))
        })?;
        match k {
            "type" if v == "container" || v == "image" => self.kinds.push(v.into()),
            "type" => return Err(EngineError::Filter(format!("--filter type={v}: the types are container and image"))),
            "event" => self.actions.push(v.into()),
            "container" => self.containers.push(v.into()),
            other => {
                return Err(EngineError::Filter(format!(
                    "--filter {other}=...: the filters are type, event and container"
                )))
            }
        }
        Ok(())
    }

    /// Whether `e` passes.
    pub fn passes(&self, e: &Event) -> bool {
        let name = e.actor.attributes.get("name").map(String::as_str).unwrap_or("");
        self.since.is_none_or(|s| e.time_nano >= s)
            && self.until.is_none_or(|u| e.time_nano <= u)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            // `exec_start: sh -c ...` is an `exec_start`, as Docker filters it.
            && (self.actions.is_empty()
                || self.actions.iter().any(|a| e.action == *a || e.action.strip_prefix(a.as_str()).is_some_and(|r| r.starts_with(':'))))
            && (self.containers.is_empty()
                || self.containers.iter().any(|c| c == name || e.actor.id.starts_with(c.as_str())))
    }
}

/// The events of the log that pass `filter`, oldest first.
pub fn read(root: &Path, filter: &Filter) -> Result<Vec<Event>, EngineError> {
    let path = root.join("events.jsonl");
    let Ok(text) = fs::read_to_string(&path) else { return Ok(Vec::new()) };
    let lines: Vec<&str> = text.lines().collect();
    let kept = &lines[lines.len().saturating_sub(KEEP)..];
    Ok(kept.iter().filter_map(|l| serde_json::from_str::<Event>(l).ok()).filter(|e| filter.passes(e)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_last_thousand_and_filters() {
        let dir = std::env::temp_dir().join(format!("virtlab-events-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("a temporary directory");
        for i in 0..(KEEP + 5) {
            let action = if i % 2 == 0 { "start" } else { "die" };
            record(&dir, &Event::now("container", action, &format!("{i:064}"), &[("name", &format!("c{i}"))]))
                .expect("record");
        }
        let all = read(&dir, &Filter::default()).expect("read");
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].actor.attributes["name"], "c5", "the oldest five were dropped");
        let mut f = Filter::default();
        f.add("event=die").expect("a good filter");
        f.add("container=c7").expect("a good filter");
        let some = read(&dir, &f).expect("read");
        assert_eq!(some.len(), 1);
        assert!(Filter::default().add("colour=blue").is_err() && Filter::default().add("type=volume").is_err());
        // The file itself is trimmed to the last KEEP once it grows large.
        let mut i = KEEP + 5;
        while fs::metadata(dir.join("events.jsonl")).expect("the log").len() < TRIM_AT - 4096 {
            record(&dir, &Event::now("image", "tag", &format!("{i:064}"), &[])).expect("record");
            i += 1;
        }
        for _ in 0..100 {
            record(&dir, &Event::now("image", "tag", &format!("{i:064}"), &[])).expect("record");
            i += 1;
        }
        let lines = fs::read_to_string(dir.join("events.jsonl")).expect("the log").lines().count();
        assert!(lines < KEEP + 100, "trimmed to the last {KEEP} when it passed {TRIM_AT} bytes: {lines} lines");
        assert_eq!(
            read(&dir, &Filter::default()).expect("read").last().map(|e| e.actor.id.clone()),
            Some(format!("{:064}", i - 1))
        );
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
