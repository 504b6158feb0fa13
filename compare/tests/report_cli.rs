//! `virtlab report`: a saved run rendered again, and the bad inputs it
//! refuses with a message that says what is wrong (exit status 125).

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden_run() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/full.json")
}

fn report(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virtlab")).arg("report").args(args).output().unwrap()
}

fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_saved_run_renders_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for (name, starts) in
        [("r.html", "<!DOCTYPE html>"), ("r.md", "# virtlab: measured figures"), ("r.csv", "env,"), ("r.txt", "host: ")]
    {
        let path = dir.path().join(name);
        let out = report(&[golden_run().as_os_str(), "-o".as_ref(), path.as_os_str()]);
        assert!(out.status.success(), "{out:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(starts), "{name}: {}", &text[..80.min(text.len())]);
    }
    // A saved run keeps no command line: the page gives one that makes a
    // run like it.
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(html.contains("<pre>virtlab compare --runs 3 --warmup 1 --env native,container,"), "{html}");
    // Without -o, the text report on standard output.
    let out = report(&[golden_run().as_os_str()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("What this run shows about the course notes' claims"));
}

#[test]
fn bad_saved_runs_and_outputs_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let json = std::fs::read_to_string(golden_run()).unwrap();
    std::fs::write(d.join("v2.json"), json.replacen("virtlab.compare/1", "virtlab.compare/2", 1)).unwrap();
    std::fs::write(d.join("cut.json"), &json[..json.len() / 3]).unwrap();
    let page = d.join("page.html");

    let e = refused(&report(&[d.join("v2.json").as_os_str(), "-o".as_ref(), page.as_os_str()]));
    assert!(e.contains("schema version \"virtlab.compare/2\" found, this virtlab reads \"virtlab.compare/1\""), "{e}");
    let e = refused(&report(&[d.join("cut.json").as_os_str(), "-o".as_ref(), page.as_os_str()]));
    assert!(e.contains("not a whole JSON document (a truncated file?)") && e.contains("EOF while parsing"), "{e}");
    let e = refused(&report(&[d.join("missing.json").as_os_str()]));
    assert!(e.contains(&format!("cannot read {}", d.join("missing.json").display())), "{e}");
    let unwritable = d.join("no-such-dir").join("page.html");
    let e = refused(&report(&[golden_run().as_os_str(), "-o".as_ref(), unwritable.as_os_str()]));
    assert!(e.contains(&format!("cannot write {}", unwritable.display())), "{e}");
    let e = refused(&report(&[golden_run().as_os_str(), "-o".as_ref(), "page.pdf".as_ref()]));
    assert!(e.contains("-o page.pdf: name the output .html"), "{e}");
    assert!(!page.exists(), "nothing written for a refused run");
}
