//! `virtlab race`: the same workload started natively, in a container and
//! in VMs side by side, each launcher's steps drawn as they happen, then a
//! table of when each got ready and ended.
//!
//! [`run`] starts one lane per environment ([`lane`]: a child process in a
//! process group of its own, its narration read as it comes), then shows
//! them: a live screen in a terminal ([`tui`]), plain lines otherwise
//! ([`plain`]). With `--step` the lanes still run at full speed, so that
//! their times stay true, and the screen reveals their steps one at a time.
//! Whatever way the race ends (finished, `q`, Ctrl-C,
//! SIGTERM), every lane still running is asked to stop with SIGTERM, which
//! the launchers pass on to their container or guest before cleaning up,
//! and the race waits for each process group to be gone.

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use clap::Args;
use virtlab_compare::launch::{Env, Workload};
use virtlab_compare::report::fmt_us;

mod lane;
mod plain;
mod tui;

use lane::{Event, Kind, Running, Setup};

/// Arguments of `virtlab race`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sudo virtlab race                         # native, container, both minikernel VMs, a Linux VM \
if a kernel is present\n  \
sudo virtlab race native container vm-mini-pv\n  \
sudo virtlab race --step container vm-mini-pv   # shown one step at a time: space (or Enter) for the next\n  \
sudo virtlab race native vm-mini-pv | cat        # plain lines, as in a pipe or a log\n\n\
Keys: q (or Ctrl-C) stops every lane, cleans up and leaves; with --step, space or Enter shows every\n\
lane's next step. Exit status: 0 every lane finished with status 0; 1 one did not; 130 stopped early;\n\
125 virtlab itself failed (e.g. a terminal too small: it says the size it needs)."
)]
pub struct RaceArgs {
    /// The workload each lane runs: ready, cpu, syscall, mem or io, with
    /// a size after `=` (the sizes of `compare --quick` by default).
    #[arg(long, value_name = "MODE", default_value = "ready")]
    workload: String,
    /// Show the steps one at a time, every lane's next one at each space
    /// or Enter (in plain mode: each line of standard input). The lanes
    /// run at full speed all the same, so their times are not changed.
    #[arg(long)]
    step: bool,
    /// The lanes: native, container, vm-mini (both consoles), vm-mini-uart,
    /// vm-mini-pv, vm-linux [default: native, container, vm-mini-pv and, if
    /// a Linux guest kernel is present, vm-linux].
    #[arg(value_name = "ENV")]
    envs: Vec<String>,
}

/// Set by SIGINT or SIGTERM: stop every lane and leave.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether SIGINT or SIGTERM asked the race to stop.
fn stop_asked() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// What one lane has done so far.
#[derive(Debug, Clone)]
struct LaneState {
    /// Its environment.
    env: Env,
    /// Each step and when it began.
    phases: Vec<(String, Duration)>,
    /// When the workload printed its ready line.
    ready: Option<Duration>,
    /// When it ended, and its status.
    exit: Option<(Duration, i32)>,
    /// With `--step`: where the steps shown so far end (the start of the
    /// first one not shown yet).
    cut: Option<Duration>,
    /// The last line it said that names an error (shown when it fails).
    said: Option<String>,
    /// Stopped by the race (q, Ctrl-C) before it ended by itself.
    stopped: bool,
    /// When it started, for the clock of a lane still running.
    started: Instant,
}

impl LaneState {
    /// Its time so far, or to its end.
    fn elapsed(&self) -> Duration {
        self.exit.map(|(at, _)| at).or(self.cut).unwrap_or_else(|| self.started.elapsed())
    }

    /// The lane as `--step` shows it with `k` steps revealed: those steps,
    /// up to where the next one begins.
    fn upto(&self, k: usize) -> LaneState {
        let Some(&(_, cut)) = self.phases.get(k) else { return self.clone() };
        LaneState {
            phases: self.phases[..k].to_vec(),
            ready: self.ready.filter(|r| *r < cut),
            exit: None,
            said: None,
            cut: Some(cut),
            ..self.clone()
        }
    }

    /// One event of this lane. Its time is when the race read the line,
    /// from two pipes and the exit read by different threads: kept in
    /// order, so that nothing shows as happening before what came first.
    fn apply(&mut self, at: Duration, kind: Kind) {
        let at = at.max(self.phases.last().map(|(_, t)| *t).unwrap_or_default());
        match kind {
            // The container launcher names some steps twice in a row.
            Kind::Phase(name) if self.phases.last().is_some_and(|(last, _)| *last == name) => {}
            Kind::Phase(name) => self.phases.push((name, at)),
            // The workload's first line comes through another pipe than
            // the launcher's steps, so it is no step of the bar, except
            // for native, which has no other.
            Kind::Ready if self.ready.is_none() => {
                self.ready = Some(at);
                if self.env == Env::Native {
                    self.phases.push(("ready".into(), at));
                }
            }
            Kind::Ready => {}
            Kind::Said(line) => self.said = Some(line),
            Kind::Exit(status) => self.exit = Some((at, status)),
        }
    }

    /// One word on how it is doing.
    fn status(&self) -> String {
        match (self.exit, self.phases.last()) {
            (Some((at, 0)), _) => format!("done in {}", fmt_us(at.as_secs_f64() * 1e6)),
            (Some((_, code)), _) if self.stopped => format!("stopped ({code}), cleaned up"),
            (Some((_, code)), _) => {
                format!("failed ({code}){}", self.said.as_deref().map(|s| format!(": {s}")).unwrap_or_default())
            }
            (None, Some((name, _))) if self.cut.is_some() => format!("> {name} (space: the next step)"),
            (None, _) if self.ready.is_some() && self.cut.is_none() => {
                format!("workload running (ready at {})", fmt_us(self.ready.unwrap_or_default().as_secs_f64() * 1e6))
            }
            (None, Some((name, _))) => format!("> {name}"),
            (None, None) => "starting".into(),
        }
    }
}

/// The race: its lanes' states and processes.
struct Race {
    /// What each lane did.
    lanes: Vec<LaneState>,
    /// The lanes' processes (None once ended).
    running: Vec<Option<Running>>,
    events: Receiver<Event>,
    /// `--step`: how many steps of each lane are shown.
    shown: Option<usize>,
    /// The workload's words, for the title.
    workload: String,
}

impl Race {
    /// Starts every lane at once.
    fn start(envs: &[Env], workload: &Workload, setup: &Setup, step: bool) -> anyhow::Result<Race> {
        let (tx, events) = channel();
        let mut race = Race {
            lanes: Vec::new(),
            running: Vec::new(),
            events,
            shown: step.then_some(1),
            workload: workload.label(),
        };
        let commands: Vec<_> = envs.iter().map(|&e| lane::command(e, workload, setup)).collect::<Result<_, _>>()?;
        for (i, (env, command)) in envs.iter().zip(commands).enumerate() {
            race.lanes.push(LaneState {
                env: *env,
                phases: Vec::new(),
                ready: None,
                exit: None,
                said: None,
                stopped: false,
                cut: None,
                started: Instant::now(),
            });
            // If one cannot start, `race` is dropped: the others stop.
            race.running.push(Some(lane::start(i, command, &tx)?));
        }
        Ok(race)
    }

    /// Takes in every event that has come, waiting up to `wait` for the
    /// first; returns the events (for plain lines).
    fn pump(&mut self, wait: Duration) -> Vec<Event> {
        let mut got = Vec::new();
        if let Ok(e) = self.events.recv_timeout(wait) {
            got.push(e);
            got.extend(self.events.try_iter());
        }
        for e in &got {
            self.lanes[e.lane].apply(e.at, e.kind.clone());
            if matches!(e.kind, Kind::Exit(_)) {
                self.running[e.lane] = None;
            }
        }
        got
    }

    /// Whether every lane has ended.
    fn finished(&self) -> bool {
        self.lanes.iter().all(|l| l.exit.is_some())
    }

    /// Lane `i` as the screen shows it (with `--step`, its steps so far).
    fn view(&self, i: usize) -> LaneState {
        match self.shown {
            Some(k) => self.lanes[i].upto(k),
            None => self.lanes[i].clone(),
        }
    }

    /// Whether the screen shows everything (always, without `--step`).
    fn all_shown(&self) -> bool {
        self.finished() && self.shown.is_none_or(|k| self.lanes.iter().all(|l| l.phases.len() <= k))
    }

    /// `--step`: shows every lane's next step.
    fn show_next(&mut self) {
        if let Some(k) = &mut self.shown {
            *k += 1;
        }
    }

    /// Stops every lane still running: SIGTERM to its process group, then
    /// SIGKILL for one still there after a grace time; returns once every
    /// group is gone.
    fn stop(&mut self) {
        let groups: Vec<libc::pid_t> = self.running.iter().flatten().map(|r| r.pid).collect();
        for (lane, r) in self.lanes.iter_mut().zip(&self.running) {
            lane.stopped = r.is_some();
        }
        for r in self.running.iter().flatten() {
            r.terminate();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while groups.iter().any(|&g| lane::group_alive(g)) && Instant::now() < deadline {
            self.pump(Duration::from_millis(20));
        }
        for r in self.running.iter().flatten() {
            r.kill();
        }
        while groups.iter().any(|&g| lane::group_alive(g)) {
            self.pump(Duration::from_millis(20));
        }
        // The exits that are still on their way.
        while !self.finished() && self.running.iter().any(Option::is_some) {
            if self.pump(Duration::from_millis(200)).is_empty() {
                break;
            }
        }
        self.running.iter_mut().for_each(|r| *r = None);
    }

    /// The table at the end: each lane's ready and exit times and status.
    fn table(&self) -> String {
        let mut t = format!("{:<14} {:>11} {:>11} {:>7}  {}\n", "lane", "ready", "exit", "steps", "status");
        for l in &self.lanes {
            let us = |d: Duration| fmt_us(d.as_secs_f64() * 1e6);
            t += &format!(
                "{:<14} {:>11} {:>11} {:>7}  {}\n",
                l.env.name(),
                l.ready.map(us).unwrap_or_else(|| "-".into()),
                l.exit.map(|(at, _)| us(at)).unwrap_or_else(|| "-".into()),
                l.phases.len(),
                l.status()
            );
        }
        t
    }
}

impl Drop for Race {
    fn drop(&mut self) {
        if self.running.iter().any(Option::is_some) {
            self.stop();
        }
    }
}

/// The lanes asked for, or the default set.
fn lanes(words: &[String], kernel: bool) -> anyhow::Result<Vec<Env>> {
    if words.is_empty() {
        let mut v = vec![Env::Native, Env::Container, Env::VmMiniPv];
        if kernel {
            v.push(Env::VmLinux);
        }
        return Ok(v);
    }
    let envs = Env::parse_list(&words.join(",")).map_err(anyhow::Error::msg)?;
    if let Some(e) = envs
        .iter()
        .find(|e| !matches!(e, Env::Native | Env::Container | Env::VmMiniUart | Env::VmMiniPv | Env::VmLinux))
    {
        anyhow::bail!(
            "{} cannot race: give native, container, vm-mini, vm-mini-uart, vm-mini-pv or vm-linux",
            e.name()
        );
    }
    if envs.contains(&Env::VmLinux) && !kernel {
        anyhow::bail!("vm-linux: no Linux guest kernel here (`virtlab guest kernel --all` says where it looks)");
    }
    Ok(envs)
}

/// Runs the race; returns the exit status.
pub fn run(args: &RaceArgs) -> anyhow::Result<u8> {
    let workload = Workload::parse_list(&args.workload, true).map_err(anyhow::Error::msg)?;
    let [workload] = workload.as_slice() else { anyhow::bail!("--workload: give one workload") };
    let kernel = lane::linux_kernel();
    let envs = lanes(&args.envs, kernel.is_some())?;
    let terminal = std::io::stdout().is_terminal();
    if terminal {
        tui::check_size(envs.len())?;
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: signal(2) with a valid signal number; the handler only
        // stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
    let setup = Setup { virtlab: lane::this_virtlab()?, workload_file: lane::workload_file()?, kernel };
    let mut race = Race::start(&envs, workload, &setup, args.step)?;
    let stopped = if terminal { tui::show(&mut race)? } else { plain::show(&mut race) };
    race.stop();
    let _ = std::io::stdout().write_all(race.table().as_bytes());
    if stopped {
        eprintln!("virtlab race: stopped; every lane was ended and cleaned up");
        return Ok(130);
    }
    Ok(if race.lanes.iter().all(|l| l.exit.is_some_and(|(_, s)| s == 0)) { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_default_and_refused() {
        assert_eq!(lanes(&[], false).unwrap(), [Env::Native, Env::Container, Env::VmMiniPv]);
        assert_eq!(lanes(&[], true).unwrap().last(), Some(&Env::VmLinux));
        assert_eq!(lanes(&["vm-mini".into()], false).unwrap(), [Env::VmMiniUart, Env::VmMiniPv]);
        assert!(lanes(&["qemu-tcg".into()], false).unwrap_err().to_string().starts_with("qemu-tcg cannot race"));
        assert!(lanes(&["vm-linux".into()], false).unwrap_err().to_string().contains("no Linux guest kernel"));
    }

    #[test]
    fn a_lane_takes_its_events_in_order() {
        let mut l = LaneState {
            env: Env::Container,
            phases: vec![],
            ready: None,
            exit: None,
            said: None,
            stopped: false,
            cut: None,
            started: Instant::now(),
        };
        let ms = Duration::from_millis;
        l.apply(ms(0), Kind::Phase("spawn".into()));
        l.apply(ms(1), Kind::Phase("user_maps".into()));
        l.apply(ms(2), Kind::Phase("user_maps".into()));
        assert_eq!(l.status(), "> user_maps");
        l.apply(ms(3), Kind::Ready);
        assert_eq!(l.status(), "workload running (ready at 3.00 ms)");
        l.apply(ms(4), Kind::Phase("exit".into()));
        l.apply(ms(4), Kind::Exit(0));
        assert_eq!(l.phases.len(), 3);
        assert_eq!((l.ready, l.elapsed()), (Some(ms(3)), ms(4)));
        assert_eq!(l.status(), "done in 4.00 ms");
        // --step with two steps shown: up to where the third (exit) begins.
        let shown = l.upto(2);
        assert_eq!((shown.phases.len(), shown.elapsed(), shown.ready), (2, ms(4), Some(ms(3))));
        assert_eq!(shown.status(), "> user_maps (space: the next step)");
        assert_eq!(l.upto(3).status(), "done in 4.00 ms");
        l.apply(ms(5), Kind::Said("virtlab: error: no".into()));
        l.apply(ms(5), Kind::Exit(125));
        assert_eq!(l.status(), "failed (125): virtlab: error: no");
    }
}
