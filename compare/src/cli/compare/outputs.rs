//! The output files of `virtlab compare` (`--json`, `--csv`, `--markdown`,
//! `--html`, `--svg`): checked and opened before measuring, filled with the report
//! at the end, and removed again if the run ends without filling them.

use std::fs::File;
use std::io::{Seek as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use virtlab_compare::report::{self, CompareReport};
use virtlab_compare::svg;

use super::CompareArgs;

/// The SVG charts `--svg DIR` writes, in this order.
const SVG_CHARTS: [&str; 3] = ["startup.svg", "overhead.svg", "timeline.svg"];

/// An output file, opened before measuring so that a path that cannot be
/// written fails at once rather than after the whole run. An existing file
/// is opened without truncating it: it keeps its content until the report
/// replaces it.
pub(super) struct OutputFile {
    path: PathBuf,
    file: File,
    /// Made by the check, so removed again if the run ends without
    /// writing it.
    created: bool,
}

impl OutputFile {
    /// Replaces the file's content with `body`.
    fn write(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let path = self.path.display();
        self.file.set_len(0).with_context(|| format!("cannot write {path}"))?;
        self.file.rewind().with_context(|| format!("cannot write {path}"))?;
        self.file.write_all(body).with_context(|| format!("cannot write {path}"))
    }
}

/// Every output of the run (`--json`, `--csv`, `--markdown`, `--html`, `--svg`),
/// checked and opened before measuring. Dropped on any way out: the files
/// and directories the check made and the run did not fill are removed, so
/// a run that fails early leaves nothing behind.
#[derive(Default)]
pub(super) struct Outputs {
    json: Option<OutputFile>,
    csv: Option<OutputFile>,
    markdown: Option<OutputFile>,
    html: Option<OutputFile>,
    svg: Vec<OutputFile>,
    /// Directories made for `--svg`, outermost first.
    created_dirs: Vec<PathBuf>,
}

impl Outputs {
    pub(super) fn open(args: &CompareArgs) -> anyhow::Result<Outputs> {
        // Built up in place: when one check fails, what the earlier ones
        // made goes with `outputs`.
        let mut outputs = Outputs::default();
        if let Some(p) = args.json.as_deref().filter(|p| *p != Path::new("-")) {
            outputs.json = Some(Outputs::file(p, "--json")?);
        }
        if let Some(p) = &args.csv {
            outputs.csv = Some(Outputs::file(p, "--csv")?);
        }
        if let Some(p) = &args.markdown {
            outputs.markdown = Some(Outputs::file(p, "--markdown")?);
        }
        if let Some(p) = &args.html {
            outputs.html = Some(Outputs::file(p, "--html")?);
        }
        if let Some(dir) = &args.svg {
            // The directories that are not there yet, innermost first.
            let missing: Vec<PathBuf> = dir
                .ancestors()
                .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
                .map(Path::to_path_buf)
                .collect();
            outputs.created_dirs.extend(missing.into_iter().rev());
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--svg: cannot create the directory {}", dir.display()))?;
            for name in SVG_CHARTS {
                let f = Outputs::file(&dir.join(name), "--svg")?;
                outputs.svg.push(f);
            }
        }
        Ok(outputs)
    }

    /// Writes `report` into every output asked for: `--json` (on standard
    /// output for `--json -`), `--markdown`, `--html`, `--csv`, `--svg`.
    pub(super) fn write_report(&mut self, report: &CompareReport, json: bool) -> anyhow::Result<()> {
        if json {
            let json = serde_json::to_string_pretty(report).context("cannot serialize the report")?;
            match &mut self.json {
                Some(f) => f.write((json + "\n").as_bytes())?,
                None => println!("{json}"),
            }
        }
        if let Some(f) = &mut self.markdown {
            f.write(report::markdown(report, &command_without("--markdown")).as_bytes())?;
        }
        if let Some(f) = &mut self.html {
            f.write(report::html(report, &command_without("--html")).as_bytes())?;
        }
        if let Some(f) = &mut self.csv {
            f.write(report::csv(report).as_bytes())?;
        }
        // The charts in SVG_CHARTS's order.
        let charts = [svg::startup_chart(report), svg::overhead_chart(report), svg::timeline_chart(report)];
        for (f, body) in self.svg.iter_mut().zip(charts) {
            f.write(body.as_bytes())?;
        }
        Ok(())
    }

    /// Opens `path` for writing, creating it when missing.
    fn file(path: &Path, option: &str) -> anyhow::Result<OutputFile> {
        let existed = path.exists();
        let file = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("{option}: cannot write {}", path.display()))?;
        Ok(OutputFile { path: path.to_path_buf(), file, created: !existed })
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        let files = self.json.iter().chain(&self.csv).chain(&self.markdown).chain(&self.html).chain(&self.svg);
        for f in files.filter(|f| f.created) {
            // Only a file still empty: never what a report put there.
            if f.file.metadata().is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(&f.path);
            }
        }
        for d in self.created_dirs.iter().rev() {
            // remove_dir only removes an empty directory.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The command that made the report, less the output option `option`
/// (`--markdown`, `--html`) and its file.
fn command_without(option: &str) -> String {
    let mut words = vec!["virtlab".to_string()];
    let mut args_iter = std::env::args().skip(1);
    while let Some(a) = args_iter.next() {
        if a == option {
            args_iter.next();
        } else if !a.starts_with(&format!("{option}=")) {
            words.push(a);
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CompareArgs,
    }

    fn args(words: &[&std::ffi::OsStr]) -> CompareArgs {
        Cli::parse_from(std::iter::once("compare".as_ref()).chain(words.iter().copied())).args
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = walk(dir).iter().map(|p| p.strip_prefix(dir).unwrap().display().to_string()).collect();
        v.sort();
        v
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                v.extend(walk(&p));
            }
            v.push(p);
        }
        v
    }

    #[test]
    fn outputs_made_for_the_check_go_when_the_run_ends_without_writing_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("old.csv"), "an earlier run\n").unwrap();
        let (json, csv, svg) = (d.join("r.json"), d.join("old.csv"), d.join("a").join("b"));
        let html = d.join("r.html");
        let a = args(&[
            "--json".as_ref(),
            json.as_os_str(),
            "--csv".as_ref(),
            csv.as_os_str(),
            "--svg".as_ref(),
            svg.as_os_str(),
            "--html".as_ref(),
            html.as_os_str(),
        ]);

        // A run that fails early (after the check): nothing of it is left,
        // the existing file is as it was.
        let outputs = Outputs::open(&a).unwrap();
        assert_eq!(
            names(d),
            ["a", "a/b", "a/b/overhead.svg", "a/b/startup.svg", "a/b/timeline.svg", "old.csv", "r.html", "r.json"]
        );
        drop(outputs);
        assert_eq!(names(d), ["old.csv"]);
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), "an earlier run\n");

        // A run that writes its report keeps it, replacing what was there.
        let mut outputs = Outputs::open(&a).unwrap();
        outputs.json.as_mut().unwrap().write(b"{}\n").unwrap();
        outputs.csv.as_mut().unwrap().write(b"x\n").unwrap();
        for f in &mut outputs.svg {
            f.write(b"<svg/>").unwrap();
        }
        outputs.html.as_mut().unwrap().write(b"<!DOCTYPE html>\n").unwrap();
        drop(outputs);
        assert_eq!(names(d).len(), 8);
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), "x\n");
        assert_eq!(std::fs::read_to_string(&json).unwrap(), "{}\n");
    }

    #[test]
    fn a_failed_check_takes_back_what_the_earlier_ones_made() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (json, svg, csv) = (d.join("r.json"), d.join("new").join("charts"), d.join("missing").join("r.csv"));
        let a = args(&[
            "--json".as_ref(),
            json.as_os_str(),
            "--svg".as_ref(),
            svg.as_os_str(),
            "--csv".as_ref(),
            csv.as_os_str(),
        ]);
        let e = Outputs::open(&a).err().unwrap();
        assert!(format!("{e:#}").starts_with(&format!("--csv: cannot write {}: ", csv.display())), "{e:#}");
        assert!(names(d).is_empty(), "{:?}", names(d));
        // Standard output is no file to check.
        assert!(Outputs::open(&args(&["--json".as_ref(), "-".as_ref()])).unwrap().json.is_none());
    }
}
