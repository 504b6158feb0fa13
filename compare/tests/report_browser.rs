//! The HTML page of a recorded run (`tests/golden/full.json`, rendered by
//! `virtlab report`) in a real browser: headless Chromium loads it at
//! 1024x768, in the light and the dark style, with no console message,
//! every chart laid out with a size and nothing wider than the window; and
//! `scripts/screenshot.sh`, which makes README's picture, works.
//!
//! Needs chromium (`scripts/setup.sh` installs it); skips loudly without
//! it, and fails instead under VIRTLAB_REQUIRE_ROOT=1, as CI sets.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const INSTALL: &str = "apt install chromium, or scripts/setup.sh";

fn golden_run() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/full.json")
}

/// Headless Chromium on `page` at 1024x768 with `args`, a profile of its
/// own under `dir`; `timeout` ends a browser that hangs.
fn chromium(dir: &Path, page: &Path, args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .args(["300", "chromium", "--headless", "--disable-gpu", "--no-sandbox", "--window-size=1024,768"])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The width and height a PNG file says it has (its IHDR chunk).
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn the_page_of_a_recorded_run_loads_in_chromium_with_every_chart_drawn() {
    let test = "the_page_of_a_recorded_run_loads_in_chromium_with_every_chart_drawn";
    if !common::tool_or_skip(test, "chromium", INSTALL, &["VIRTLAB_REQUIRE_ROOT"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["report".as_ref(), golden_run().as_os_str(), "-o".as_ref(), page.as_os_str()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for (scheme, style) in [("light", None), ("dark", Some("--force-dark-mode"))] {
        let mut args = vec!["--dump-dom", "--enable-logging=stderr", "--v=0"];
        args.extend(style);
        let out = chromium(dir.path(), &page, &args);
        let dom = String::from_utf8_lossy(&out.stdout);
        let root =
            dom.find("<html").map(|at| &dom[at..]).and_then(|d| d.split_inclusive('>').next()).unwrap_or_default();
        // Six charts: startup, timeline, overhead, system calls, console, many at once.
        let expected = format!(r#"<html lang="en" data-charts="ok 6" data-too-wide="0" data-scheme="{scheme}">"#);
        assert_eq!(root, expected, "{scheme}: the page's own check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
        assert!(console.is_empty(), "{scheme}: the page wrote to the console: {console:#?}");

        let shot = dir.path().join(format!("{scheme}.png"));
        let arg = format!("--screenshot={}", shot.display());
        let mut args = vec![arg.as_str(), "--hide-scrollbars"];
        args.extend(style);
        chromium(dir.path(), &page, &args);
        assert_eq!(png_size(&std::fs::read(&shot).unwrap()), (1024, 768), "{scheme}");
    }

    // README's picture is made by a script, from the same recorded run.
    let shot = dir.path().join("readme.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/screenshot.sh");
    let out = Command::new(script).arg(golden_run()).arg(&shot).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(png_size(&std::fs::read(&shot).unwrap()), (1024, 768));
}

/// The same page without a browser: a console message would need a script
/// error, so the page's script is checked to be the one short check.
#[test]
fn the_page_has_one_short_script_and_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["report".as_ref(), golden_run().as_os_str(), "-o".as_ref(), page.as_os_str()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    let script = html.split("<script>").nth(1).unwrap().split("</script>").next().unwrap();
    assert!(script.lines().count() <= 8, "{script}");
    assert!(!html.contains(" src=") && !html.contains("<link"), "nothing to load");
}
