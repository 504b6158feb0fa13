#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
//! Runs every command of every chapter and checks its output and exit
//! status, so a renamed flag or a changed output line breaks this test and
//! not a student's afternoon. The block convention (`console` blocks, `$ `
//! lines, `[N]`, `[..]`, `...`, `[exit status: N]`, tags) is documented in
//! `guides/lib.rs` and `guides/README.md`.
//!
//! How `virtlab` is found: the test runs `cargo build -p virtlab-compare`
//! into the same target directory and profile as itself (found from the
//! test binary's own path, `<target>/<profile>/deps/commands-*`), then puts
//! `<target>/<profile>/` first on `PATH` for the chapters' commands. Cargo
//! releases its build lock before it runs tests, so this nested build only
//! waits for a concurrent one.
//!
//! Blocks tagged `root`, `kvm`, `busybox` or `qemu` are skipped, with a line
//! on standard error, where that is missing. `VIRTLAB_REQUIRE_ROOT=1` turns
//! a skip for root or busybox into a failure, `VIRTLAB_REQUIRE_KVM=1` one for
//! KVM or QEMU (CI sets both). `mdbook build` is checked when mdbook is
//! installed; it is never required. `VIRTLAB_BLESS=1` rewrites `src/map.svg`
//! from `map.diagram`.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use virtlab_guides::{output_matches, parse_blocks, Block};

/// Longest a single chapter command may take (the first `cargo run` of an
/// example compiles it).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

fn guides_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn repo_root() -> PathBuf {
    guides_dir().parent().unwrap().to_path_buf()
}

fn must(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// `<target>/<profile>/`, where cargo put this test binary's `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Builds the `virtlab` binary once per test run; returns `<target>/<profile>/`.
fn built() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile = profile_dir();
        let target = profile.parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "virtlab-compare", "--bin", "virtlab", "--target-dir"])
            .arg(target)
            .current_dir(repo_root());
        if profile.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "cargo build -p virtlab-compare failed ({status}): the guides cannot run without it");
        assert!(profile.join("virtlab").is_file(), "no virtlab binary at {}", profile.display());
        profile
    })
}

/// The chapters, in the order of `src/SUMMARY.md`.
fn chapters() -> Vec<PathBuf> {
    let summary = std::fs::read_to_string(guides_dir().join("src/SUMMARY.md")).unwrap();
    summary
        .lines()
        .filter_map(|l| l.split_once("](").map(|(_, r)| r))
        .filter_map(|r| r.split_once(')').map(|(p, _)| p))
        .filter(|p| p.ends_with(".md"))
        .map(|p| guides_dir().join("src").join(p))
        .collect()
}

fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    uid.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Why a block cannot run here, and whether that skip is a failure.
fn unmet(block: &Block) -> Option<(String, bool)> {
    let root = must("VIRTLAB_REQUIRE_ROOT");
    let kvm = must("VIRTLAB_REQUIRE_KVM");
    if block.has("root") && euid() != 0 {
        return Some(("needs root; set VIRTLAB_REQUIRE_ROOT=1 to make this a failure".into(), root));
    }
    if block.has("busybox") && !Path::new("/bin/busybox").exists() {
        return Some(("needs /bin/busybox (apt-get install busybox-static)".into(), root));
    }
    if block.has("kvm") || block.has("qemu") {
        if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
            return Some((format!("needs /dev/kvm ({e}); set VIRTLAB_REQUIRE_KVM=1 to make this a failure"), kvm));
        }
    }
    if block.has("qemu") && !in_path("qemu-system-x86_64") {
        return Some(("needs qemu-system-x86_64 (apt-get install qemu-system-x86)".into(), kvm));
    }
    if block.has("linux") {
        let built = std::process::Command::new(repo_root().join("scripts/guest-kernel.sh"))
            .arg("path")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !built {
            return Some((
                "needs the Linux guest kernel (scripts/guest-kernel.sh); set VIRTLAB_REQUIRE_LINUX=1 to make this a failure"
                    .into(),
                must("VIRTLAB_REQUIRE_LINUX"),
            ));
        }
    }
    None
}

/// Runs one command as the convention says; returns (exit status, output).
fn run(cmd: &str, bin_dir: &Path) -> (i32, String) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(std::env::split_paths(&path))).unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec 2>&1\n{cmd}"))
        .current_dir(repo_root())
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", bin_dir.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            // The whole process group: sh and whatever it started.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            let out = reader.join().unwrap();
            return (-1, format!("{out}\n(killed after {COMMAND_TIMEOUT:?})"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = reader.join().unwrap();
    (status.code().unwrap_or(-1), out)
}

/// Runs every command of a block; returns one message per failed command.
fn run_block(name: &str, block: &Block, bin_dir: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    for c in &block.commands {
        let t = Instant::now();
        let (status, out) = run(&c.cmd, bin_dir);
        eprintln!("{name}:{}: `{}` -> status {status} in {:.2?}", c.line, c.cmd, t.elapsed());
        let mut problems = Vec::new();
        if status != c.status {
            problems.push(format!("exit status {status}, expected {}", c.status));
        }
        if let Err(e) = output_matches(&c.expected, &out) {
            problems.push(e);
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}:{}: `{}`: {}\n--- output ---\n{out}--- expected ---\n{}\n",
                c.line,
                c.cmd,
                problems.join("; "),
                c.expected.join("\n")
            ));
        }
    }
    failures
}

/// Runs every runnable block of one chapter file, in order.
fn run_chapter(file: &str) {
    let path = guides_dir().join("src").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let blocks = parse_blocks(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut failures = Vec::new();
    let (mut ran, mut skipped) = (0, 0);
    for block in &blocks {
        if block.has("no-run") {
            eprintln!("{file}:{}: block marked no-run, not executed", block.line);
            continue;
        }
        if let Some((why, fatal)) = unmet(block) {
            assert!(!fatal, "{file}:{}: {why}, and a must-run variable forbids skipping", block.line);
            eprintln!("SKIPPED {file}:{}: {why}", block.line);
            skipped += 1;
            continue;
        }
        failures.extend(run_block(file, block, built()));
        ran += 1;
    }
    eprintln!("{file}: {ran} block(s) run, {skipped} skipped");
    assert!(failures.is_empty(), "{} command(s) of {file} failed:\n\n{}", failures.len(), failures.join("\n"));
}

macro_rules! chapters {
    ($($test:ident => $file:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                run_chapter($file);
            }
        )*
        const TESTED: &[&str] = &[$($file),*];
    };
}

chapters! {
    introduction => "introduction.md",
    ch01_the_map => "01-the-map.md",
    ch02_first_kvm_guest => "02-first-kvm-guest.md",
    ch03_long_mode => "03-long-mode-and-the-minikernel.md",
    ch04_vm_exits_and_devices => "04-vm-exits-and-devices.md",
    ch05_booting_linux => "05-booting-linux.md",
    ch06_namespaces => "06-namespaces.md",
    ch07_cgroups => "07-cgroups.md",
    ch08_root_filesystems => "08-root-filesystems.md",
    ch09_the_comparison => "09-the-comparison.md",
    ch10_isolation_and_security => "10-isolation-and-security.md",
    ch11_images_and_layers => "11-images-and-layers.md",
    ch12_a_containers_life => "12-a-containers-life.md",
    ch13_snapshots => "13-snapshots.md",
    ch14_escapes_and_defences => "14-escapes-and-defences.md",
}

#[test]
fn every_chapter_of_the_summary_has_a_test() {
    let listed: Vec<String> = chapters()
        .iter()
        .map(|p| p.strip_prefix(guides_dir().join("src")).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, TESTED, "src/SUMMARY.md and the chapters! list above must name the same files");
}

#[test]
fn the_runner_fails_on_a_renamed_flag_a_changed_line_or_a_wrong_status() {
    let bin = built();
    let chapter = "```console\n\
        $ virtlab vm run --serial uart -- ready\n\
        virtlab.ready pid=1 t_ns=[N]\n\
        ...\n\
        $ virtlab --version\n\
        virtlab 0.0.0-not-this-one\n\
        $ virtlab --help\n\
        ...\n\
        [exit status: 3]\n\
        $ virtlab --version\n\
        virtlab [..]\n\
        ```\n";
    let blocks = parse_blocks(chapter).unwrap();
    let failures = run_block("self-test", &blocks[0], bin);
    assert_eq!(failures.len(), 3, "{failures:#?}");
    assert!(failures[0].contains("exit status 2, expected 0"), "{}", failures[0]);
    assert!(failures[0].contains("--serial"), "{}", failures[0]);
    assert!(failures[1].contains("virtlab 0.0.0-not-this-one"), "{}", failures[1]);
    assert!(failures[2].contains("exit status 0, expected 3"), "{}", failures[2]);
}

/// Every `{{#include file:anchor}}` and every relative link of a chapter
/// points at something that exists (mdBook would fail on the first, a
/// code host would show a dead link for the second).
#[test]
fn includes_and_links_resolve() {
    let mut problems = Vec::new();
    for ch in chapters() {
        let text = std::fs::read_to_string(&ch).unwrap();
        let dir = ch.parent().unwrap();
        let name = ch.file_name().unwrap().to_string_lossy().into_owned();
        for inc in text.split("{{#include ").skip(1) {
            let spec = inc.split_once("}}").unwrap().0.trim();
            let (file, anchor) = spec.split_once(':').map_or((spec, None), |(f, a)| (f, Some(a)));
            match std::fs::read_to_string(dir.join(file)) {
                Err(e) => problems.push(format!("{name}: include {file}: {e}")),
                Ok(src) => {
                    if let Some(a) = anchor.filter(|a| !a.chars().all(|c| c.is_ascii_digit() || c == ':')) {
                        let (open, close) = (format!("ANCHOR: {a}"), format!("ANCHOR_END: {a}"));
                        if !src.contains(&open) || !src.contains(&close) {
                            problems.push(format!("{name}: {file} has no anchor {a}"));
                        }
                    } else if anchor.is_some() {
                        problems.push(format!("{name}: include {spec} by line numbers drifts; use an anchor"));
                    }
                }
            }
        }
        for link in text.split("](").skip(1) {
            let target = link.split_once(')').map_or(link, |(t, _)| t);
            let target = target.split_once('#').map_or(target, |(t, _)| t);
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !dir.join(target).exists() {
                problems.push(format!("{name}: link to {target}, which does not exist"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_map_svg_is_generated_from_its_source() {
    let source = std::fs::read_to_string(guides_dir().join("map.diagram")).unwrap();
    let svg = virtlab_guides::diagram::to_svg(&source).unwrap();
    let path = guides_dir().join("src/map.svg");
    if must("VIRTLAB_BLESS") {
        std::fs::write(&path, &svg).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == svg,
        "src/map.svg is not what map.diagram draws: run `VIRTLAB_BLESS=1 cargo test -p virtlab-guides --test commands the_map` to regenerate it"
    );
}

#[test]
fn mdbook_builds_the_book() {
    if !in_path("mdbook") {
        if std::env::var("VIRTLAB_REQUIRE_MDBOOK").as_deref() == Ok("1") {
            panic!("mdbook is required (VIRTLAB_REQUIRE_MDBOOK=1) but not installed");
        }
        eprintln!(
            "SKIPPED mdbook_builds_the_book: mdbook is not installed (`cargo install mdbook` to check the book build)"
        );
        return;
    }
    let out = std::env::temp_dir().join(format!("virtlab-guides-book-{}", std::process::id()));
    let status = Command::new("mdbook").arg("build").arg(guides_dir()).arg("-d").arg(&out).status().unwrap();
    let _ = std::fs::remove_dir_all(&out);
    assert!(status.success(), "mdbook build guides failed: {status}");
}
