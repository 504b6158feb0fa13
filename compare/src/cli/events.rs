//! `system events` (and `events`): the store's event log, the last 1000
//! kept, filtered, printed as lines or JSON, and followed as it grows.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use virtlab_container::engine::events::{self, Event, Filter};
use virtlab_container::image::template;
use virtlab_container::time;

use super::lifecycle::{failed, RootArg};

/// `system events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    root: RootArg,
    /// Show the kept events from this time on: RFC 3339, or a duration ago
    /// (10m, 2h) [default: only new events, or all kept ones with --until]
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Stop at this time (as --since; `0s` is now) [default: keep printing
    /// new events until Ctrl-C]
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// type=container|image, event=start|die|..., container=NAME (repeatable)
    #[arg(long = "filter", short = 'f', value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// `json` or a Go template over each event, e.g. '{{json .}}'
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
}

/// A time for --since/--until: RFC 3339, or a duration ago (`10m`), in ns
/// since the epoch.
pub fn when(text: &str) -> anyhow::Result<u128> {
    if let Some(t) = time::parse_rfc3339(text) {
        return Ok(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
    }
    // `0s` (now) is a duration too, though not a timeout.
    let zero = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !zero.is_empty() && zero.bytes().all(|b| b == b'0') {
        return Ok(now_ns());
    }
    let ago = virtlab_container::config::parse_duration(text).map_err(|_| {
        anyhow::anyhow!("{text:?} is not a time: give RFC 3339 (2026-11-29T10:00:00Z) or a duration ago (10m, 2h)")
    })?;
    Ok(SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos())
}

/// `system events`.
pub fn events(args: &EventsArgs) -> anyhow::Result<u8> {
    let mut filter = Filter::default();
    let parsed = (|| -> anyhow::Result<()> {
        for f in &args.filters {
            filter.add(f)?;
        }
        filter.since = args.since.as_deref().map(when).transpose()?;
        filter.until = args.until.as_deref().map(when).transpose()?;
        if let Some(t) = args.format.as_deref().filter(|f| *f != "json") {
            template::check(t)?;
        }
        Ok(())
    })();
    if let Err(e) = parsed {
        return Ok(failed(&e, 1));
    }
    let now = now_ns();
    if filter.since.is_none() && filter.until.is_none() {
        // Docker's: without --since, only what happens from now on.
        filter.since = Some(now);
    }
    let root = args.root.path();
    // What was printed, among the (at most 1000) events kept: two commands
    // may append in the other order than their times, so the time of the
    // last one printed is not enough.
    let mut printed = std::collections::HashSet::new();
    loop {
        let until_passed = filter.until.is_some_and(|u| now_ns() > u);
        let kept = events::read(&root, &filter)?;
        let keys: std::collections::HashSet<_> = kept.iter().map(key).collect();
        for e in kept {
            if printed.contains(&key(&e)) {
                continue;
            }
            let line = match args.format.as_deref() {
                Some("json") => serde_json::to_value(&e)?.to_string(),
                Some(t) => template::render(t, &serde_json::to_value(&e)?)?,
                None => event_line(&e),
            };
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                // The reader went away (`events | head`).
                return Ok(0);
            }
        }
        printed = keys;
        if until_passed {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What tells one event from another.
fn key(e: &Event) -> (u128, String, String) {
    (e.time_nano, e.actor.id.clone(), e.action.clone())
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// Docker's default event line: time, type, action, ID, (attributes).
fn event_line(e: &Event) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(u64::try_from(e.time_nano).unwrap_or(u64::MAX));
    let attrs: Vec<String> = e.actor.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{} {} {} {} ({})", time::rfc3339(t), e.kind, e.action, e.actor.id, attrs.join(", "))
}
