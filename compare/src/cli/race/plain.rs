//! The race as plain lines, when standard output is no terminal (a pipe,
//! a log, a test): one line per step as it happens, the lane's clock first.
//! With `--step`, the lanes run at full speed first, then their steps are
//! printed one round at a time: every lane's next step at each line of
//! standard input (all at once when it is empty or closed).

use std::io::{BufRead as _, Write as _};
use std::time::Duration;

use virtlab_compare::report::fmt_us;

use super::lane::Kind;
use super::{stop_asked, Race};

/// Writes `line` and a newline on standard output; a reader that has
/// gone (`| head`) only ends the listing.
fn say(line: String) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// One line: when, which lane, what.
fn line(at: Duration, lane: &str, what: &str) -> String {
    format!("{:>11}  {lane:<13} {what}", fmt_us(at.as_secs_f64() * 1e6))
}

/// Shows the race until every lane has ended, or SIGINT/SIGTERM; returns
/// whether it was stopped early.
pub(super) fn show(race: &mut Race) -> bool {
    let names: Vec<&str> = race.lanes.iter().map(|l| l.env.name()).collect();
    say(format!("virtlab race: `{}` in {}", race.workload, names.join(", ")));
    let step = race.shown.is_some();
    while !race.finished() {
        if stop_asked() {
            return true;
        }
        for e in race.pump(Duration::from_millis(50)) {
            let name = race.lanes[e.lane].env.name();
            let what = match e.kind {
                Kind::Phase(p) => p,
                Kind::Ready => "READY (the workload's first line)".into(),
                Kind::Exit(0) => "exit".into(),
                Kind::Exit(code) => format!("exit, status {code}"),
                Kind::Said(_) => continue,
            };
            if !step {
                say(line(e.at, name, &what));
            }
        }
    }
    if step {
        say("virtlab race: every lane has ended; Enter shows each lane's next step".into());
        let mut input = std::io::stdin().lock().lines();
        let mut waiting = true;
        let rounds = race.lanes.iter().map(|l| l.phases.len()).max().unwrap_or(0);
        for k in 0..rounds {
            // Without more input, the rest at once.
            waiting = waiting && (k == 0 || matches!(input.next(), Some(Ok(_))));
            say(format!("step {}:", k + 1));
            for l in &race.lanes {
                if let Some((name, at)) = l.phases.get(k) {
                    say(line(*at, l.env.name(), name));
                }
            }
            if stop_asked() {
                return false;
            }
        }
    }
    say(String::new());
    false
}
