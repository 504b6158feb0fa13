//! `virtlab report`: a saved run (`virtlab compare --json`) rendered again,
//! without measuring anything: one HTML page, Markdown, CSV or the text
//! report, by the output file's extension.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use virtlab_compare::report::{self, CompareReport};

/// Arguments of `virtlab report`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  virtlab compare --quick --json run.json\n  \
virtlab report run.json -o run.html     # one page for the projector\n  \
virtlab report run.json -o run.md       # Markdown\n  \
virtlab report run.json                 # the text report, on standard output")]
pub struct ReportArgs {
    /// The JSON report `virtlab compare --json` wrote.
    #[arg(value_name = "RUN.json")]
    input: PathBuf,
    /// Write here instead of printing the text report: .html (one
    /// self-contained page), .md (Markdown), .csv (one line per run) or
    /// .txt (the text report).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// What `-o` writes, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Html,
    Markdown,
    Csv,
    Text,
}

impl Format {
    fn of(path: &Path) -> anyhow::Result<Format> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("html" | "htm") => Ok(Format::Html),
            Some("md" | "markdown") => Ok(Format::Markdown),
            Some("csv") => Ok(Format::Csv),
            Some("txt") => Ok(Format::Text),
            _ => anyhow::bail!(
                "-o {}: name the output .html (one page), .md (Markdown), .csv or .txt (the text report)",
                path.display()
            ),
        }
    }

    fn render(self, r: &CompareReport) -> String {
        let command = report::equivalent_command(r);
        match self {
            Format::Html => report::html(r, &command),
            Format::Markdown => report::markdown(r, &command),
            Format::Csv => report::csv(r),
            Format::Text => text(r),
        }
    }
}

/// The text report, with the many-at-once table when the run had one.
fn text(r: &CompareReport) -> String {
    let mut t = report::text(r);
    if !r.scale.is_empty() {
        t += &report::scale_table(r);
    }
    t
}

/// Reads a saved run.
pub fn load(path: &Path) -> anyhow::Result<CompareReport> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    report::from_json(&text).with_context(|| format!("{}: not a run virtlab can render", path.display()))
}

/// Renders the saved run; returns the exit status (0).
pub fn run(args: &ReportArgs) -> anyhow::Result<u8> {
    let format = args.output.as_deref().map(Format::of).transpose()?;
    let r = load(&args.input)?;
    match (&args.output, format) {
        (Some(path), Some(format)) => {
            std::fs::write(path, format.render(&r)).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("virtlab report: wrote {}", path.display());
        }
        _ => print!("{}", text(&r)),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_chooses_the_format() {
        assert_eq!(Format::of(Path::new("a/run.HTML")).unwrap(), Format::Html);
        assert_eq!(Format::of(Path::new("run.md")).unwrap(), Format::Markdown);
        assert_eq!(Format::of(Path::new("run.csv")).unwrap(), Format::Csv);
        assert_eq!(Format::of(Path::new("run.txt")).unwrap(), Format::Text);
        let e = Format::of(Path::new("run")).unwrap_err().to_string();
        assert!(e.starts_with("-o run: name the output .html"), "{e}");
    }
}
