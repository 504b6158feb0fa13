//! `container top` and `container stats`, as Docker's: a container's
//! processes as the host sees them, and what its cgroups count, live.

use std::collections::HashMap;
use std::io::{ErrorKind, IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};
use virtlab_container::engine::stats::{self, Sample, Stats};
use virtlab_container::engine::{Container, Status};
use virtlab_container::image::template;

use super::image::view::table_text;
use super::lifecycle::RootArg;

/// How long the first sample of a container waits for its second, the CPU
/// % being a rate (`--no-stream`, and a stream's first table).
const FIRST_INTERVAL: Duration = Duration::from_millis(500);

/// How often a stream draws its table, as Docker's.
const INTERVAL: Duration = Duration::from_secs(1);

/// `top`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
The processes are those of the container's cgroup, with their host PIDs and
the host's view of their user: container root is an unprivileged uid there.
The parent of the container's PID 1 is its monitor.

Examples:
  virtlab run -d --name web busybox sh -c 'sleep 600 & sleep 600'
  virtlab top web
  virtlab container top web")]
pub struct TopArgs {
    #[command(flatten)]
    root: RootArg,
    /// The container: a name, an ID or a unique prefix of one
    #[arg(value_name = "CONTAINER")]
    container: String,
}

/// `stats`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Columns: CPU % is the CPU time the container's cgroup used over the wall time
between two samples (100% = one CPU busy); MEM USAGE is the cgroup's memory
less the file cache it could drop at once, over its --memory limit or, without
one, the host's memory; NET I/O is what the container's own network namespace
received / sent on interfaces other than lo (0B / 0B: it has no other); BLOCK
I/O what its cgroup read / wrote on block devices; PIDS its processes and
threads. A container that is not running shows zeros, a figure that could not
be read `--`.

Without --no-stream the table is drawn again every second (the screen cleared
on a terminal, one table after another otherwise) until Ctrl-C.

Examples:
  virtlab stats
  virtlab stats --no-stream web
  virtlab stats -a --no-stream --format 'table {{.Name}}\\t{{.CPUPerc}}\\t{{.MemUsage}}'
  virtlab container stats --no-stream --format '{{json .}}' web")]
pub struct StatsArgs {
    #[command(flatten)]
    root: RootArg,
    /// Show every container [default: running ones]
    #[arg(short, long)]
    all: bool,
    /// Print one table and exit (from two samples 500 ms apart)
    #[arg(long)]
    no_stream: bool,
    /// Show whole container IDs
    #[arg(long)]
    no_trunc: bool,
    /// `table` (default), `json`, or a Go template over each row, e.g.
    /// '{{.Name}} {{.CPUPerc}}' ('table ...' adds the headers); fields:
    /// .Container .ID .Name .CPUPerc .MemUsage .MemPerc .NetIO .BlockIO .PIDs
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Containers to show [default: every running one, or every one with -a]
    #[arg(value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// `top CONTAINER`.
pub fn top(args: &TopArgs) -> anyhow::Result<u8> {
    let c = Container::find(&args.root.path(), &args.container)?;
    let top = stats::top(&c, &args.container)?;
    let titles: Vec<&str> = top.titles.iter().map(String::as_str).collect();
    print!("{}", table_text(&titles, &top.processes));
    Ok(0)
}

/// How each frame is printed.
#[derive(Debug)]
enum Format {
    /// Docker's columns.
    Table,
    /// One JSON object per container.
    Json,
    /// A template per container, after one with the headers if `table`.
    Template { text: String, table: bool },
}

impl Format {
    fn parse(format: Option<&str>) -> anyhow::Result<Format> {
        Ok(match format {
            None | Some("table") => Format::Table,
            Some("json") => Format::Json,
            Some(t) => {
                let (text, table) = match t.strip_prefix("table") {
                    Some(rest) => (rest, true),
                    None => (t, false),
                };
                // As Docker's: `\t` and `\n` written out in the template.
                let text = text.trim().replace("\\t", "\t").replace("\\n", "\n");
                template::check(&text)?;
                Format::Template { text, table }
            }
        })
    }
}

/// Docker's column titles, by template field.
const HEADERS: [(&str, &str); 9] = [
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// The columns of the default table, by template field.
const TABLE: [&str; 8] = ["ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"];

/// One container's row, with Docker's field names.
fn row(label: &str, c: &Container, s: &Stats, no_trunc: bool) -> Value {
    json!({
        "Container": label,
        "ID": if no_trunc { c.config.id.as_str() } else { c.short_id() },
        "Name": c.config.name,
        "CPUPerc": s.cpu_perc(),
        "MemUsage": s.mem_usage(),
        "MemPerc": s.mem_perc(),
        "NetIO": s.net_io_text(),
        "BlockIO": s.block_io_text(),
        "PIDs": s.pids_text(),
    })
}

/// A frame's text.
fn frame(rows: &[Value], format: &Format) -> anyhow::Result<String> {
    let cell = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
    Ok(match format {
        Format::Table => {
            let headers: Vec<&str> =
                TABLE.iter().map(|k| HEADERS.iter().find(|(f, _)| f == k).map_or(*k, |(_, h)| *h)).collect();
            let cells: Vec<Vec<String>> = rows.iter().map(|r| TABLE.iter().map(|k| cell(r, k)).collect()).collect();
            table_text(&headers, &cells)
        }
        Format::Json => rows.iter().map(|r| format!("{r}\n")).collect(),
        Format::Template { text, table: false } => {
            rows.iter().map(|r| Ok(format!("{}\n", template::render(text, r)?))).collect::<anyhow::Result<_>>()?
        }
        Format::Template { text, table: true } => {
            // The header is the template over the column titles; cells are
            // what the tabs separate, aligned as the default table's.
            let titles: serde_json::Map<String, Value> =
                HEADERS.iter().map(|(f, h)| (f.to_string(), Value::from(*h))).collect();
            let split = |line: String| -> Vec<String> { line.split('\t').map(str::to_string).collect() };
            let header = split(template::render(text, &Value::Object(titles))?);
            let cells =
                rows.iter().map(|r| Ok(split(template::render(text, r)?))).collect::<anyhow::Result<Vec<_>>>()?;
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            table_text(&header, &cells)
        }
    })
}

/// `stats [CONTAINER...]`.
pub fn stats(args: &StatsArgs) -> anyhow::Result<u8> {
    let root = args.root.path();
    let format = Format::parse(args.format.as_deref())?;
    // Named containers are looked up once; an unknown one is an error
    // before anything is drawn, as in Docker.
    let named: Vec<(String, Container)> =
        args.containers.iter().map(|n| Ok((n.clone(), Container::find(&root, n)?))).collect::<anyhow::Result<_>>()?;
    let terminal = std::io::stdout().is_terminal();
    let mut before: HashMap<String, Sample> = HashMap::new();
    loop {
        // Without names, the list is looked at again for every table, so
        // a container started meanwhile appears.
        let shown: Vec<(String, Container)> = if named.is_empty() {
            Container::list(&root)?
                .into_iter()
                .filter(|c| args.all || matches!(c.status(), Status::Up { .. }))
                .map(|c| (c.config.id.clone(), c))
                .collect()
        } else {
            named.clone()
        };
        before.retain(|id, _| shown.iter().any(|(_, c)| c.config.id == *id));
        // A container seen for the first time needs a first sample.
        let mut fresh = false;
        for (_, c) in &shown {
            if !before.contains_key(&c.config.id) {
                if let Some(s) = stats::sample(c)? {
                    before.insert(c.config.id.clone(), s);
                    fresh = true;
                }
            }
        }
        if fresh {
            std::thread::sleep(FIRST_INTERVAL);
        }
        let mut rows = Vec::new();
        for (label, c) in &shown {
            let now = stats::sample(c)?;
            let s = match (before.get(&c.config.id), &now) {
                (Some(b), Some(a)) => Stats::of(b, a),
                // Started since the first samples: no rate yet.
                (None, Some(a)) => Stats::of(a, a),
                (_, None) => Stats::stopped(),
            };
            match now {
                Some(a) => before.insert(c.config.id.clone(), a),
                None => before.remove(&c.config.id),
            };
            rows.push(row(label, c, &s, args.no_trunc));
        }
        let mut text = frame(&rows, &format)?;
        if terminal && !args.no_stream {
            // Clear the screen and go home, as Docker redraws.
            text.insert_str(0, "\x1b[2J\x1b[H");
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {}
            // The reader went (`| head`): the end of the stream, not an error.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(0),
            Err(e) => return Err(e.into()),
        }
        if args.no_stream {
            return Ok(0);
        }
        std::thread::sleep(INTERVAL);
    }
}
