//! What `top` and `stats` show of a running container, read from the host
//! as Docker's daemon reads it: the container is ordinary host processes,
//! and the kernel already counts what they use.
//!
//! Both start from the container's first process (its PID 1, a host PID in
//! [`Status::Up`]). Its `/proc/PID/cgroup` names the container's cgroups
//! ([`CgroupDirs::of_process`]); their `cgroup.procs` list every process
//! of the container, which `top` reads from `/proc` as `ps -ef` does; their
//! control files give what `stats` shows: CPU time, memory, block I/O,
//! number of processes. Network I/O is not a cgroup's: it is read from
//! `/proc/PID/net/dev`, which shows the interfaces of the process's own
//! network namespace.
//!
//! CPU % is a rate, so it takes two [`Sample`]s: the CPU time the cgroup
//! used between them over the wall time between them (100% = one CPU
//! busy), which is what Docker's formula (the cgroup's share of the host's
//! CPU time, times the number of CPUs) comes to.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{io_err, Container, EngineError, Status};
use crate::runtime::cgroup::{self, CgroupDirs, CgroupUsage};
use crate::runtime::config::host_memory_bytes;

/// `docker top`'s columns: those of `ps -ef`.
pub const TOP_TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// A container's cgroups: those of its first process `pid` that are its
/// own (not its monitor's, which launched it).
fn own_cgroups(c: &Container, pid: i32) -> Result<CgroupDirs, EngineError> {
    let root = Path::new(cgroup::DEFAULT_ROOT);
    let dirs = cgroup::detect(root)
        .and_then(|mode| CgroupDirs::of_process(root, mode, pid, c.monitor().map(|m| m.pid)))
        .map_err(|source| EngineError::Cgroup { container: c.config.name.clone(), source })?;
    Ok(dirs)
}

/// The first process of a running container, or `NotRunning` naming it
/// as the user did.
fn running_pid(c: &Container, what: &str) -> Result<i32, EngineError> {
    match c.status() {
        Status::Up { pid, .. } => Ok(pid),
        _ => Err(EngineError::NotRunning(what.to_string())),
    }
}

// ---------------------------------------------------------------- top

/// A process as the host's `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Its PID on the host.
    pub pid: i32,
    /// Its parent's PID on the host (the monitor, for the container's PID 1).
    pub ppid: i32,
    /// Its effective uid on the host: container root is an unprivileged
    /// host uid when the container has a user namespace.
    pub uid: u32,
    /// Its controlling terminal (`tty_nr` of /proc/PID/stat), 0 for none.
    pub tty_nr: u32,
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// When it started, in clock ticks after boot.
    pub start_ticks: u64,
    /// Its command line, or `[comm]` when it has none (as ps shows it).
    pub cmd: String,
}

impl Process {
    /// Reads process `pid`, or `None` if it is gone.
    pub fn read(pid: i32) -> Option<Process> {
        let dir = format!("/proc/{pid}");
        let stat = fs::read_to_string(format!("{dir}/stat")).ok()?;
        let status = fs::read_to_string(format!("{dir}/status")).ok()?;
        let cmdline = fs::read(format!("{dir}/cmdline")).ok()?;
        Process::parse(pid, &stat, &status, &cmdline)
    }

    /// A process from the text of its `stat`, `status` and `cmdline`.
    pub fn parse(pid: i32, stat: &str, status: &str, cmdline: &[u8]) -> Option<Process> {
        // `PID (COMM) STATE PPID ...`: COMM may hold spaces and parentheses.
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Field N of proc(5) is f[N - 3].
        let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.parse().ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some(Process {
            pid,
            ppid: i32::try_from(num(4)?).ok()?,
            uid,
            tty_nr: u32::try_from(num(7)?).ok()?,
            cpu_ticks: num(14)?.saturating_add(num(15)?),
            start_ticks: num(22)?,
            cmd: if args.is_empty() { format!("[{comm}]") } else { args.join(" ") },
        })
    }
}

/// The host's clock as ps reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    pub hz: u64,
    /// Boot time, seconds since the epoch (`btime` of /proc/stat).
    pub boot: i64,
    /// Seconds since boot (/proc/uptime).
    pub uptime: u64,
    /// Now, seconds since the epoch.
    pub now: i64,
}

impl Clock {
    /// Reads this host's.
    pub fn host() -> Result<Clock, EngineError> {
        // SAFETY: sysconf(3) has no preconditions.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
        let stat = fs::read_to_string("/proc/stat").map_err(io_err("read /proc/stat"))?;
        let boot = stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok());
        let uptime = fs::read_to_string("/proc/uptime").map_err(io_err("read /proc/uptime"))?;
        let uptime = uptime.split(['.', ' ']).next().and_then(|s| s.parse().ok());
        let (Some(boot), Some(uptime)) = (boot, uptime) else {
            return Err(EngineError::Corrupt("/proc/stat".into(), "no btime, or /proc/uptime unreadable".into()));
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        Ok(Clock { hz, boot, uptime, now })
    }
}

/// A time of day as localtime(3) gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    pub yday: i32,
    /// 0 = January.
    pub month: i32,
    pub mday: i32,
    pub hour: i32,
    pub min: i32,
}

impl LocalTime {
    /// `secs` since the epoch, in the local time zone.
    pub fn of(secs: i64) -> Option<LocalTime> {
        let t: libc::time_t = secs;
        // SAFETY: libc::tm is a C struct of integers and one pointer
        // (tm_zone), for all of which zero is a valid value.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: localtime_r(3) reads `t` and writes `tm`, both valid for
        // the call and not shared; it returns NULL on failure, checked.
        let r = unsafe { libc::localtime_r(&t, &mut tm) };
        (!r.is_null()).then_some(LocalTime {
            year: tm.tm_year + 1900,
            yday: tm.tm_yday,
            month: tm.tm_mon,
            mday: tm.tm_mday,
            hour: tm.tm_hour,
            min: tm.tm_min,
        })
    }
}

/// ps's STIME: `HH:MM` today, `MonDD` this year, else the year.
pub fn stime(start: LocalTime, now: LocalTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    if start.year != now.year {
        start.year.to_string()
    } else if start.yday != now.yday {
        let month = usize::try_from(start.month).ok().and_then(|m| MONTHS.get(m)).unwrap_or(&"???");
        format!("{month}{:02}", start.mday)
    } else {
        format!("{:02}:{:02}", start.hour, start.min)
    }
}

/// ps's TIME: CPU time as `[DD-]HH:MM:SS`.
pub fn cpu_time_text(secs: u64) -> String {
    let (dd, hh, mm, ss) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if dd > 0 {
        format!("{dd}-{hh:02}:{mm:02}:{ss:02}")
    } else {
        format!("{hh:02}:{mm:02}:{ss:02}")
    }
}

/// ps's C: CPU time over lifetime, in percent, at most 99.
pub fn cpu_utilisation(p: &Process, clock: &Clock) -> u64 {
    let lived = clock.uptime.saturating_sub(p.start_ticks / clock.hz);
    if lived == 0 {
        return 0;
    }
    (p.cpu_ticks * 100 / clock.hz / lived).min(99)
}

/// ps's TTY: `pts/N`, `ttyN`, `ttySN`, or `?` for none.
pub fn tty_name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        5 if minor == 0 => "tty".into(),
        5 if minor == 1 => "console".into(),
        _ => "?".into(),
    }
}

/// User names by uid, from /etc/passwd (a uid without one shows as its number).
fn user_names() -> HashMap<u32, String> {
    let text = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut names = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if let (Some(name), Some(Ok(uid))) = (f.first(), f.get(2).map(|u| u.parse::<u32>())) {
            names.entry(uid).or_insert_with(|| name.to_string());
        }
    }
    names
}

/// One `ps -ef` row of `p`.
pub fn ps_row(p: &Process, clock: &Clock, users: &HashMap<u32, String>) -> Vec<String> {
    let start = clock.boot + i64::try_from(p.start_ticks / clock.hz).unwrap_or(0);
    let stime = match (LocalTime::of(start), LocalTime::of(clock.now)) {
        (Some(s), Some(n)) => stime(s, n),
        _ => "?".into(),
    };
    vec![
        users.get(&p.uid).cloned().unwrap_or_else(|| p.uid.to_string()),
        p.pid.to_string(),
        p.ppid.to_string(),
        cpu_utilisation(p, clock).to_string(),
        stime,
        tty_name(p.tty_nr),
        cpu_time_text(p.cpu_ticks / clock.hz),
        p.cmd.clone(),
    ]
}

/// What `docker top` gives: the titles, and a row per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// The processes of container `c` (named `what` by the user), as `ps -ef`
/// shows them on the host, in the order of their PIDs.
pub fn top(c: &Container, what: &str) -> Result<Top, EngineError> {
    let pid = running_pid(c, what)?;
    let mut pids = own_cgroups(c, pid)?.procs();
    // A container the launcher could give no cgroup (none exists as root).
    if pids.is_empty() {
        pids.push(pid);
    }
    let clock = Clock::host()?;
    let users = user_names();
    let processes = pids.into_iter().filter_map(Process::read).map(|p| ps_row(&p, &clock, &users)).collect();
    Ok(Top { titles: TOP_TITLES.iter().map(|t| t.to_string()).collect(), processes })
}

// ---------------------------------------------------------------- stats

/// One reading of a running container's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The first process it was read through.
    pub pid: i32,
    pub at: Instant,
    pub usage: CgroupUsage,
    /// Bytes received and sent by its network namespace's interfaces
    /// other than `lo`; `None` if it shares the host's.
    pub net: Option<(u64, u64)>,
}

/// Reads container `c`'s counters now; `None` if it is not running (or
/// stopped while being read).
pub fn sample(c: &Container) -> Result<Option<Sample>, EngineError> {
    let Status::Up { pid, .. } = c.status() else { return Ok(None) };
    let dirs = match own_cgroups(c, pid) {
        Ok(d) => d,
        Err(_) if !matches!(c.status(), Status::Up { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let at = Instant::now();
    Ok(Some(Sample { pid, at, usage: dirs.usage(), net: net_io(pid) }))
}

/// Bytes received and sent on the interfaces of `pid`'s network namespace
/// but `lo`, or `None` if that namespace is this process's own (the
/// host's figures would not be the container's).
fn net_io(pid: i32) -> Option<(u64, u64)> {
    let theirs = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    if fs::read_link("/proc/self/ns/net").ok()? == theirs {
        return None;
    }
    Some(net_dev_bytes(&fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?))
}

/// Received and sent bytes of every interface but `lo`, from the text of
/// `/proc/net/dev`: two header lines, then `NAME: RX(8 fields) TX(8 fields)`.
pub fn net_dev_bytes(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0u64, 0u64);
    for (name, fields) in text.lines().skip(2).filter_map(|l| l.split_once(':')) {
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = fields.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
        rx = rx.saturating_add(f.first().copied().unwrap_or(0));
        tx = tx.saturating_add(f.get(8).copied().unwrap_or(0));
    }
    (rx, tx)
}

/// Docker's figures for one container. `None` is a figure that could not
/// be read, shown as `--`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stats {
    /// CPU time over wall time between two samples, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    /// Memory in use (less the inactive file cache).
    pub memory: Option<u64>,
    /// The cgroup's memory limit, or the host's memory if that is less
    /// (an unlimited cgroup).
    pub memory_limit: Option<u64>,
    /// Bytes received, sent.
    pub net_io: Option<(u64, u64)>,
    /// Bytes read, written.
    pub block_io: Option<(u64, u64)>,
    pub pids: Option<u64>,
}

impl Stats {
    /// The figures from `before` to `after`, two samples of one container;
    /// `host_memory` stands for the limit of a container without one.
    pub fn between(before: &Sample, after: &Sample, host_memory: u64) -> Stats {
        let wall = after.at.saturating_duration_since(before.at).as_secs_f64();
        let cpu = match (before.usage.cpu_time, after.usage.cpu_time) {
            // A PID 1 that changed is another container's run.
            (Some(b), Some(a)) if wall > 0.0 && before.pid == after.pid => {
                Some(a.saturating_sub(b).as_secs_f64() / wall * 100.0)
            }
            _ => None,
        };
        let u = &after.usage;
        Stats {
            cpu_percent: cpu,
            memory: u.memory,
            memory_limit: u.memory.map(|_| u.memory_limit.map_or(host_memory, |l| l.min(host_memory))),
            net_io: after.net,
            block_io: u.block_io,
            pids: u.pids,
        }
    }

    /// [`Stats::between`] with this host's memory.
    pub fn of(before: &Sample, after: &Sample) -> Stats {
        Stats::between(before, after, host_memory_bytes())
    }

    /// What Docker shows for a container that is not running: zeros.
    pub fn stopped() -> Stats {
        Stats {
            cpu_percent: Some(0.0),
            memory: Some(0),
            memory_limit: Some(0),
            net_io: Some((0, 0)),
            block_io: Some((0, 0)),
            pids: Some(0),
        }
    }

    /// Memory in use over the limit, in percent.
    pub fn memory_percent(&self) -> Option<f64> {
        match (self.memory, self.memory_limit) {
            (Some(_), Some(0)) => Some(0.0),
            (Some(m), Some(l)) => Some(m as f64 / l as f64 * 100.0),
            _ => None,
        }
    }

    /// `CPU %`: `12.34%`.
    pub fn cpu_perc(&self) -> String {
        self.cpu_percent.map_or("--".into(), |p| format!("{p:.2}%"))
    }

    /// `MEM USAGE / LIMIT`: `1.195MiB / 64MiB`.
    pub fn mem_usage(&self) -> String {
        match (self.memory, self.memory_limit) {
            (Some(m), Some(l)) => format!("{} / {}", binary_size(m), binary_size(l)),
            _ => "-- / --".into(),
        }
    }

    /// `MEM %`.
    pub fn mem_perc(&self) -> String {
        self.memory_percent().map_or("--".into(), |p| format!("{p:.2}%"))
    }

    /// `NET I/O`: received / sent, `0B / 0B`.
    pub fn net_io_text(&self) -> String {
        pair(self.net_io)
    }

    /// `BLOCK I/O`: read / written.
    pub fn block_io_text(&self) -> String {
        pair(self.block_io)
    }

    /// `PIDS`.
    pub fn pids_text(&self) -> String {
        self.pids.map_or("--".into(), |n| n.to_string())
    }
}

fn pair(v: Option<(u64, u64)>) -> String {
    v.map_or("--".into(), |(a, b)| format!("{} / {}", decimal_size(a, 3), decimal_size(b, 3)))
}

// ---------------------------------------------------------------- units

/// Docker's memory sizes (go-units `BytesSize`): powers of 1024, four
/// significant digits, `B KiB MiB GiB TiB PiB`: `64MiB`, `1.195MiB`.
pub fn binary_size(bytes: u64) -> String {
    scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"], 4)
}

/// Docker's I/O sizes (go-units `HumanSizeWithPrecision`): powers of 1000,
/// `precision` significant digits, `B kB MB GB TB PB`: `0B`, `1.5kB`.
pub fn decimal_size(bytes: u64, precision: usize) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB", "EB"], precision)
}

fn scaled(bytes: u64, base: f64, units: &[&str], precision: usize) -> String {
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    format!("{}{}", go_g(v, precision), units[i])
}

/// Go's `%.{prec}g` of a non-negative number: `prec` significant digits,
/// trailing zeros dropped, an exponent when it is `prec` or more
/// (`1e+03`, as Docker really prints 999.6 kB at three digits).
pub fn go_g(v: f64, prec: usize) -> String {
    let prec = prec.max(1);
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    // Rounded to `prec` significant digits: "d.ddde±x".
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let nd = digits.len();
    if exp < -4 || exp >= prec as i32 {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        return format!("{first}{dot}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    }
    // Fixed: the digits with the point after `exp + 1` of them.
    let point = exp + 1;
    if point <= 0 {
        return format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize));
    }
    let point = point as usize;
    if nd <= point {
        format!("{digits}{}", "0".repeat(point - nd))
    } else {
        format!("{}.{}", &digits[..point], &digits[point..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_g_is_gos() {
        for (v, p, want) in [
            (0.0, 4, "0"),
            (64.0, 4, "64"),
            (1.1953125, 4, "1.195"),
            (1023.0, 4, "1023"),
            (1.5, 3, "1.5"),
            (100.0, 3, "100"),
            (999.6, 3, "1e+03"),
            (1500.0, 3, "1.5e+03"),
            (15.5625, 4, "15.56"),
            (0.5, 3, "0.5"),
            (0.00001234, 3, "1.23e-05"),
        ] {
            assert_eq!(go_g(v, p), want, "%.{p}g of {v}");
        }
    }

    #[test]
    fn dockers_units() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1023), "1023B");
        assert_eq!(binary_size(1024), "1KiB");
        assert_eq!(binary_size(64 << 20), "64MiB");
        assert_eq!(binary_size(1_253_376), "1.195MiB");
        assert_eq!(binary_size(16_709_000_000), "15.56GiB");
        assert_eq!(decimal_size(0, 3), "0B");
        assert_eq!(decimal_size(1500, 3), "1.5kB");
        assert_eq!(decimal_size(4_096_000, 3), "4.1MB");
        assert_eq!(decimal_size(999_600, 3), "1e+03kB");
    }

    fn sample(pid: i32, at: Instant, cpu_ms: u64, memory: u64, limit: Option<u64>) -> Sample {
        let usage = CgroupUsage {
            cpu_time: Some(Duration::from_millis(cpu_ms)),
            memory: Some(memory),
            memory_limit: limit,
            block_io: Some((4096, 0)),
            pids: Some(3),
        };
        Sample { pid, at, usage, net: Some((0, 0)) }
    }

    #[test]
    fn stats_between_two_samples() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(500);
        let s = Stats::between(
            &sample(7, t0, 1000, 1, Some(64 << 20)),
            &sample(7, t1, 1250, 2 << 20, Some(64 << 20)),
            1 << 34,
        );
        assert_eq!(s.cpu_perc(), "50.00%", "250 ms of CPU in 500 ms");
        assert_eq!(s.mem_usage(), "2MiB / 64MiB");
        assert_eq!(s.mem_perc(), "3.12%");
        assert_eq!(
            (s.net_io_text(), s.block_io_text(), s.pids_text()),
            ("0B / 0B".into(), "4.1kB / 0B".into(), "3".into())
        );
        // No limit (or v1's huge number): the host's memory.
        let s = Stats::between(&sample(7, t0, 0, 0, None), &sample(7, t1, 0, 1 << 20, Some(u64::MAX >> 1)), 1 << 34);
        assert_eq!(s.mem_usage(), "1MiB / 16GiB");
        // Another first process: no rate.
        let s = Stats::between(&sample(7, t0, 0, 0, None), &sample(8, t1, 900, 0, None), 1 << 34);
        assert_eq!(s.cpu_perc(), "--");
        let z = Stats::stopped();
        let cols = [z.cpu_perc(), z.mem_usage(), z.mem_perc(), z.net_io_text(), z.block_io_text(), z.pids_text()];
        assert_eq!(cols, ["0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"]);
        let u = Stats::default();
        assert_eq!((u.cpu_perc(), u.mem_usage(), u.pids_text()), ("--".into(), "-- / --".into(), "--".into()));
    }

    #[test]
    fn net_dev_leaves_out_lo() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
                    face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  \
                    eth0:    2000      20    0    0    0     0          0         0     3000      30    0    0    0     0       0          0\n";
        assert_eq!(net_dev_bytes(text), (2000, 3000));
    }

    #[test]
    fn a_process_from_proc() {
        let stat =
            "4242 (my (odd) cmd) S 4200 4242 4242 34817 4242 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 1000 100";
        let status = "Name:\tsh\nUid:\t1073741824\t1073741825\t1073741824\t1073741824\nGid:\t0\t0\t0\t0\n";
        let p = Process::parse(4242, stat, status, b"sh\0-c\0sleep 60\0").unwrap();
        assert_eq!(
            p,
            Process {
                pid: 4242,
                ppid: 4200,
                uid: 1073741825,
                tty_nr: 34817,
                cpu_ticks: 300,
                start_ticks: 12345,
                cmd: "sh -c sleep 60".into()
            }
        );
        assert_eq!(Process::parse(1, stat, status, b"").unwrap().cmd, "[my (odd) cmd]");
        assert_eq!(tty_name(p.tty_nr), "pts/1");
        assert_eq!(
            (tty_name(0), tty_name(4 << 8 | 1), tty_name(4 << 8 | 65)),
            ("?".into(), "tty1".into(), "ttyS1".into())
        );
        // 3 s of CPU over the 100 s it lived: C is 3.
        let clock = Clock { hz: 100, boot: 0, uptime: 223, now: 0 };
        assert_eq!(cpu_utilisation(&p, &clock), 3);
        assert_eq!(cpu_utilisation(&Process { cpu_ticks: 1 << 40, ..p.clone() }, &clock), 99);
        assert_eq!(cpu_time_text(3), "00:00:03");
        assert_eq!(cpu_time_text(2 * 86400 + 3661), "2-01:01:01");
        let users = HashMap::from([(1073741825, "dockremap".to_string())]);
        let row = ps_row(&p, &clock, &users);
        assert_eq!(row[..4], ["dockremap", "4242", "4200", "3"]);
        assert_eq!(row[5..], ["pts/1", "00:00:03", "sh -c sleep 60"]);
    }

    #[test]
    fn stime_like_ps() {
        let at = |year, yday, month, mday, hour, min| LocalTime { year, yday, month, mday, hour, min };
        let now = at(2026, 332, 10, 29, 15, 0);
        assert_eq!(stime(at(2026, 332, 10, 29, 9, 5), now), "09:05");
        assert_eq!(stime(at(2026, 300, 9, 28, 9, 5), now), "Oct28");
        assert_eq!(stime(at(2025, 332, 10, 29, 9, 5), now), "2025");
    }
}
