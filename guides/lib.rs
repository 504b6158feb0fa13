//! The guides are Markdown in `src/`; this crate holds what keeps them
//! honest: the parser and matcher behind `tests/commands.rs`, which runs
//! every command of every chapter and checks its output, and the generator
//! of the map diagram (`map.diagram` -> `src/map.svg`).
//!
//! # The convention for runnable blocks
//!
//! A fenced code block whose info string starts with `console` is run by the
//! test:
//!
//! ````text
//! ```console,kvm
//! $ virtlab vm run -- cpu 1000
//! virtlab.ready pid=1 t_ns=[N]
//! virtlab.result mode=cpu n=1000 ns=[N] checksum=0x[..]
//! ```
//! ````
//!
//! * A line starting with `$ ` is a command, run by `sh -c` from the
//!   repository's top directory with `target/<profile>/` first on `PATH`
//!   (so `virtlab` is the binary just built), standard input empty (so
//!   `--step` carries on by itself) and standard error merged into standard
//!   output, as a terminal shows them. A command line ending in `\` goes on
//!   on the next line.
//! * The lines after a command, up to the next command or the end of the
//!   block, are its expected output. Runs of spaces count as one, and
//!   leading and trailing spaces are ignored. Inside a line, `[N]` stands
//!   for a number (`42`, `-1`, `3.25`) and `[..]` for any text. A line
//!   holding only `...` stands for any number of lines, none included. No
//!   expected lines means no output. Blank lines at the end of the output
//!   are ignored.
//! * The command must exit with status 0, unless the expected output ends
//!   with a line `[exit status: N]`, which is then the status it must give
//!   (that line is not part of the output).
//! * Tags after the language, separated by commas, say what the block
//!   needs: `root`, `kvm`, `busybox` (`/bin/busybox`, for container
//!   commands), `qemu` (`qemu-system-x86_64`, which also needs `kvm`). A
//!   block whose needs are not met is skipped with a message; see
//!   `tests/commands.rs` for when that is a failure instead.
//! * `no-run` marks a block the test does not run. Each chapter that has
//!   one says why, next to it.

use std::fmt;

/// One command of a chapter, with what it must print and return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// 1-based line number of the `$ ` line in the chapter.
    pub line: usize,
    /// The shell command (continuation lines joined with newlines).
    pub cmd: String,
    /// Expected output lines, patterns included.
    pub expected: Vec<String>,
    /// Expected exit status.
    pub status: i32,
}

/// A `console` block of a chapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// 1-based line number of the opening fence.
    pub line: usize,
    /// The tags after `console` (`root`, `kvm`, `busybox`, `qemu`, `linux`, `no-run`).
    pub tags: Vec<String>,
    /// The commands, in order.
    pub commands: Vec<Command>,
}

impl Block {
    /// Whether the block carries `tag`.
    pub fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Tags a `console` block may carry.
pub const KNOWN_TAGS: &[&str] = &["root", "kvm", "busybox", "qemu", "linux", "no-run"];

/// A chapter that breaks the convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// Finds every `console` block of a Markdown text.
pub fn parse_blocks(markdown: &str) -> Result<Vec<Block>, ParseError> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_start();
        let Some(fence) = ["````", "```"].into_iter().find(|f| trimmed.starts_with(f)) else {
            continue;
        };
        let info = trimmed[fence.len()..].trim();
        let mut words = info.split(',').map(str::trim);
        let lang = words.next().unwrap_or("");
        let mut body = Vec::new();
        let mut closed = false;
        for (m, l) in lines.by_ref() {
            if l.trim_start().starts_with(fence) && l.trim() == fence {
                closed = true;
                break;
            }
            body.push((m, l));
        }
        if !closed {
            return Err(ParseError { line: n, msg: "code block is never closed".into() });
        }
        if lang != "console" {
            continue;
        }
        let tags: Vec<String> = words.filter(|w| !w.is_empty()).map(String::from).collect();
        if let Some(bad) = tags.iter().find(|t| !KNOWN_TAGS.contains(&t.as_str())) {
            return Err(ParseError { line: n, msg: format!("unknown tag {bad:?} (known: {KNOWN_TAGS:?})") });
        }
        let commands = parse_commands(&body)?;
        if commands.is_empty() {
            return Err(ParseError { line: n, msg: "console block without a `$ ` command".into() });
        }
        blocks.push(Block { line: n, tags, commands });
    }
    Ok(blocks)
}

fn parse_commands(body: &[(usize, &str)]) -> Result<Vec<Command>, ParseError> {
    let mut commands: Vec<Command> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let (n, l) = body[i];
        i += 1;
        if let Some(first) = l.strip_prefix("$ ") {
            let mut cmd = first.to_string();
            while cmd.ends_with('\\') && i < body.len() {
                cmd.push('\n');
                cmd.push_str(body[i].1);
                i += 1;
            }
            commands.push(Command { line: n, cmd, expected: Vec::new(), status: 0 });
        } else if let Some(c) = commands.last_mut() {
            c.expected.push(l.to_string());
        } else if !l.trim().is_empty() {
            return Err(ParseError { line: n, msg: "output before the first `$ ` command".into() });
        }
    }
    for c in &mut commands {
        while c.expected.last().is_some_and(|l| l.trim().is_empty()) {
            c.expected.pop();
        }
        if let Some(last) = c.expected.last() {
            if let Some(s) = last.trim().strip_prefix("[exit status: ").and_then(|s| s.strip_suffix(']')) {
                c.status = s.parse().map_err(|_| ParseError { line: c.line, msg: format!("bad exit status {s:?}") })?;
                c.expected.pop();
            }
        }
    }
    Ok(commands)
}

/// Runs of whitespace become one space; leading and trailing space go.
fn normalize(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(char),
    Any,
    Num,
}

fn pieces(pattern: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("[..]") {
            out.push(Piece::Any);
            rest = r;
        } else if let Some(r) = rest.strip_prefix("[N]") {
            out.push(Piece::Num);
            rest = r;
        } else {
            let c = rest.chars().next().expect("rest is not empty");
            out.push(Piece::Lit(c));
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Lengths (in chars) of the numbers that start `s`: `-?\d+(\.\d+)?`.
fn number_lengths(s: &[char]) -> Vec<usize> {
    let mut i = usize::from(s.first() == Some(&'-'));
    let start = i;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
    }
    if i == start {
        return Vec::new();
    }
    let mut lens = vec![i];
    if i + 1 < s.len() && s[i] == '.' && s[i + 1].is_ascii_digit() {
        let mut j = i + 1;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        lens.push(j);
    }
    lens
}

fn match_pieces(p: &[Piece], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(Piece::Lit(c)) => s.first() == Some(c) && match_pieces(&p[1..], &s[1..]),
        Some(Piece::Any) => (0..=s.len()).any(|k| match_pieces(&p[1..], &s[k..])),
        Some(Piece::Num) => number_lengths(s).into_iter().any(|k| match_pieces(&p[1..], &s[k..])),
    }
}

/// Whether one output line matches one expected line (see the crate doc).
pub fn line_matches(expected: &str, actual: &str) -> bool {
    let p = pieces(&normalize(expected));
    let s: Vec<char> = normalize(actual).chars().collect();
    match_pieces(&p, &s)
}

/// Checks output lines against expected lines; on a mismatch, says where.
pub fn output_matches(expected: &[String], actual: &str) -> Result<(), String> {
    let mut actual: Vec<&str> = actual.lines().collect();
    // Trailing blank lines count as little in the output as in the chapter.
    while actual.last().is_some_and(|l| l.trim().is_empty()) {
        actual.pop();
    }
    let (m, n) = (expected.len(), actual.len());
    // ok[i][j]: expected[i..] matches actual[j..].
    let mut ok = vec![vec![false; n + 1]; m + 1];
    ok[m][n] = true;
    for i in (0..m).rev() {
        let gap = expected[i].trim() == "...";
        for j in (0..=n).rev() {
            ok[i][j] = if gap {
                ok[i + 1][j] || (j < n && ok[i][j + 1])
            } else {
                j < n && line_matches(&expected[i], actual[j]) && ok[i + 1][j + 1]
            };
        }
    }
    if ok[0][0] {
        return Ok(());
    }
    // Explain: the longest run of expected lines matched greedily.
    let (mut i, mut j) = (0, 0);
    while i < m {
        if expected[i].trim() == "..." {
            if i + 1 == m {
                break;
            }
            match (j..n).find(|&k| line_matches(&expected[i + 1], actual[k])) {
                Some(k) => {
                    j = k;
                    i += 1;
                }
                None => break,
            }
        } else if j < n && line_matches(&expected[i], actual[j]) {
            i += 1;
            j += 1;
        } else {
            break;
        }
    }
    let want = expected.get(i).map_or("(end of the expected output)".to_string(), |l| format!("{l:?}"));
    let got = actual.get(j).map_or("(end of the output)".to_string(), |l| format!("{l:?}"));
    Err(format!("expected line {} {want}, got output line {} {got}", i + 1, j + 1))
}

/// The map diagram: a small text format drawn as SVG, so the picture in
/// chapter 1 is generated from a source file in the repository.
///
/// One element per line; a line starting with `#` is a comment:
///
/// ```text
/// size W H
/// box X Y W H FILL "line one|line two"
/// arrow X1 Y1 X2 Y2
/// text X Y "words|next line"
/// ```
pub mod diagram {
    use std::fmt::Write as _;

    /// Draws the diagram source as an SVG document.
    pub fn to_svg(source: &str) -> Result<String, String> {
        let mut body = String::new();
        let (mut w, mut h) = (800, 600);
        for (n, raw) in source.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |m: &str| format!("map.diagram line {}: {m}: {raw}", n + 1);
            let (head, label) = match line.split_once('"') {
                Some((a, b)) => (a, Some(b.strip_suffix('"').ok_or_else(|| err("unclosed quote"))?)),
                None => (line, None),
            };
            let words: Vec<&str> = head.split_whitespace().collect();
            let num = |i: usize| -> Result<i32, String> {
                words.get(i).and_then(|v| v.parse().ok()).ok_or_else(|| err("expected a number"))
            };
            match words.first().copied() {
                Some("size") => (w, h) = (num(1)?, num(2)?),
                Some("box") => {
                    let (x, y, bw, bh) = (num(1)?, num(2)?, num(3)?, num(4)?);
                    let fill = words.get(5).ok_or_else(|| err("expected a fill colour"))?;
                    let _ = writeln!(
                        body,
                        r##"  <rect x="{x}" y="{y}" width="{bw}" height="{bh}" rx="6" fill="{fill}" stroke="#333"/>"##
                    );
                    let lines: Vec<&str> = label.unwrap_or("").split('|').collect();
                    let top = y + bh / 2 - (lines.len() as i32 - 1) * 8 + 5;
                    for (k, t) in lines.iter().enumerate() {
                        let ty = top + 16 * k as i32;
                        let weight = if k == 0 { r#" font-weight="bold""# } else { "" };
                        let _ = writeln!(
                            body,
                            r#"  <text x="{}" y="{ty}" text-anchor="middle"{weight}>{}</text>"#,
                            x + bw / 2,
                            escape(t)
                        );
                    }
                }
                Some("arrow") => {
                    let (x1, y1, x2, y2) = (num(1)?, num(2)?, num(3)?, num(4)?);
                    let _ = writeln!(
                        body,
                        r##"  <line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#333" stroke-width="2" marker-end="url(#arrow)"/>"##
                    );
                }
                Some("text") => {
                    let (x, y) = (num(1)?, num(2)?);
                    for (k, t) in label.unwrap_or("").split('|').enumerate() {
                        let _ = writeln!(
                            body,
                            r#"  <text x="{x}" y="{}" font-style="italic">{}</text>"#,
                            y + 16 * k as i32,
                            escape(t)
                        );
                    }
                }
                _ => return Err(err("unknown element")),
            }
        }
        Ok(format!(
            concat!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" ",
                "font-family=\"sans-serif\" font-size=\"13\">\n",
                "  <!-- generated from guides/map.diagram by guides/lib.rs; do not edit -->\n",
                "  <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" ",
                "markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#333\"/></marker></defs>\n",
                "  <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n",
                "{body}</svg>\n"
            ),
            w = w,
            h = h,
            body = body
        ))
    }

    fn escape(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;

    const CHAPTER: &str = "Intro\n\n```console,kvm\n$ virtlab vm run -- fault pf\nvirtlab.ready pid=1 t_ns=[N]\n...\n[exit status: 139]\n$ echo a \\\n  b\na b\n```\n\n```sh\nnot run\n```\n";

    #[test]
    fn parses_commands_expected_output_status_and_tags() {
        let b = parse_blocks(CHAPTER).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].line, b[0].tags.clone()), (3, vec!["kvm".to_string()]));
        let c = &b[0].commands;
        assert_eq!(c[0].cmd, "virtlab vm run -- fault pf");
        assert_eq!((c[0].line, c[0].status), (4, 139));
        assert_eq!(c[0].expected, vec!["virtlab.ready pid=1 t_ns=[N]", "..."]);
        assert_eq!(c[1].cmd, "echo a \\\n  b");
        assert_eq!((c[1].status, c[1].expected.clone()), (0, vec!["a b".to_string()]));
    }

    #[test]
    fn rejects_unknown_tags_unclosed_blocks_and_stray_output() {
        assert!(parse_blocks("```console,kvmm\n$ true\n```\n").unwrap_err().msg.contains("unknown tag"));
        assert!(parse_blocks("```console\n$ true\n").is_err());
        assert!(parse_blocks("```console\noutput\n$ true\n```\n").is_err());
        assert!(parse_blocks("```console\n```\n").is_err());
    }

    #[test]
    fn placeholders_match_numbers_and_text_but_not_changed_words() {
        assert!(line_matches("took: [N] us -> KVM API version [N]", "        took: 22.4 us -> KVM API version 12"));
        assert!(line_matches("a   b", "a b  "));
        assert!(line_matches("rip 0x[..]: write", "rip 0x40485f: write"));
        assert!(!line_matches("[N] exits", "many exits"));
        assert!(!line_matches("--console uart", "--serial uart"));
        assert!(line_matches("[N]x", "-3.5x"));
    }

    #[test]
    fn ellipsis_lines_skip_any_number_of_lines() {
        let exp: Vec<String> = ["first", "...", "last"].iter().map(|s| s.to_string()).collect();
        assert!(output_matches(&exp, "first\nlast\n").is_ok());
        assert!(output_matches(&exp, "first\n1\n2\nlast\n").is_ok());
        assert!(output_matches(&exp, "first\n1\n").is_err());
        assert!(output_matches(&[], "").is_ok());
        let e = output_matches(&[], "something\n").unwrap_err();
        assert!(e.contains("end of the expected output"), "{e}");
        let e = output_matches(&exp, "frist\nlast\n").unwrap_err();
        assert!(e.contains("expected line 1"), "{e}");
    }

    #[test]
    fn the_diagram_format_draws_boxes_arrows_and_text() {
        let svg =
            diagram::to_svg("size 100 50\nbox 0 0 10 10 #eef \"A|b\"\narrow 1 2 3 4\ntext 5 6 \"x<y\"\n").unwrap();
        assert!(svg.contains(r#"width="100" height="50""#));
        assert!(svg.contains(">A</text>") && svg.contains(">b</text>"));
        assert!(svg.contains("x&lt;y"));
        assert!(diagram::to_svg("circle 1 2").is_err());
    }
}
