//! `logs`: what a container wrote, from its json-file log, each line on
//! the stream it came on (stdout or stderr), with `--timestamps` the time
//! it arrived.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use virtlab_container::engine::{Container, Status};
use virtlab_container::runtime::log::{read_from, Entry};
use virtlab_container::time;

use super::events::when;
use super::lifecycle::RootArg;

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    root: RootArg,
    /// Keep printing what the container writes until it exits
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines
    #[arg(short = 'n', long, value_name = "N")]
    tail: Option<usize>,
    /// Begin each line with the time it was written (RFC 3339, nanoseconds)
    #[arg(short, long)]
    timestamps: bool,
    /// Only lines written at or after this time: RFC 3339, or a duration ago (10m, 2h)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

/// `logs`.
pub fn logs(args: &LogsArgs) -> anyhow::Result<u8> {
    let c = Container::find(&args.root.path(), &args.container)?;
    let since = args.since.as_deref().map(when).transpose()?;
    let path = c.log_path();
    if c.config.spec.tty && !path.exists() {
        eprintln!("virtlab: {} ran with -t: its output went to that terminal, not to the log", c.config.name);
        return Ok(0);
    }
    let (entries, mut offset) = read_or_empty(&path, 0)?;
    let from = args.tail.map_or(0, |n| entries.len().saturating_sub(n));
    let out = Printer { timestamps: args.timestamps, since };
    out.print(&entries[from..])?;
    if args.follow {
        loop {
            // Whether it ended is read before the last look at the log, so
            // nothing written before the end is missed.
            let ended = c.exit().is_some() || matches!(c.status(), Status::Dead);
            let (more, next) = read_or_empty(&path, offset)?;
            offset = next;
            out.print(&more)?;
            if ended {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(0)
}

/// The entries from `offset` on; none if the container has not written
/// anything yet.
fn read_or_empty(path: &Path, offset: u64) -> anyhow::Result<(Vec<Entry>, u64)> {
    match read_from(path, offset) {
        Ok(r) => Ok(r),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Vec::new(), offset)),
        Err(e) => Err(e).with_context(|| format!("cannot read the log {}", path.display())),
    }
}

/// Prints entries, each on its own stream.
struct Printer {
    timestamps: bool,
    /// In ns since the epoch.
    since: Option<u128>,
}

impl Printer {
    fn print(&self, entries: &[Entry]) -> anyhow::Result<()> {
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
        for e in entries {
            if let Some(since) = self.since {
                let t = time::parse_rfc3339(&e.time)
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                if t < since {
                    continue;
                }
            }
            let w: &mut dyn Write = if e.is_stderr() { &mut err } else { &mut out };
            let written = if self.timestamps { write!(w, "{} {}", e.time, e.log) } else { write!(w, "{}", e.log) };
            if written.is_err() {
                // The reader went away (`logs | head`): nothing more to do.
                std::process::exit(0);
            }
        }
        let _ = out.flush();
        Ok(())
    }
}
