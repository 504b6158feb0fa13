//! The image store, checked against the real tools that read the same
//! formats: skopeo reads our OCI layout and archives, umoci unpacks our
//! images to the same tree as ours, podman loads what we save and we load
//! what it saves.
//!
//! Unpacking layers keeps owners and makes device nodes and overlayfs
//! whiteouts, so most tests need root: without it they skip loudly, and with
//! `VIRTLAB_REQUIRE_ROOT=1` (set in CI) a skip is a failure. The same goes
//! for skopeo, umoci and podman (`scripts/setup.sh` installs them).

// Test code: a failed set-up step should panic right there.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use virtlab_container::image::layer::{self, TreeKind};
use virtlab_container::image::{archive, import, inspect, ImageError, ImageName, Store};

fn must_run() -> bool {
    std::env::var("VIRTLAB_REQUIRE_ROOT").is_ok_and(|v| v == "1")
}

fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

fn root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(!must_run(), "{test}: needs root, and VIRTLAB_REQUIRE_ROOT=1 forbids skipping");
    skip(&format!("{test}: needs root (layer owners, device nodes, whiteouts)"));
    false
}

/// The host's busybox, when the test can run as root with it.
fn root_and_busybox(test: &str) -> Option<PathBuf> {
    if !root(test) {
        return None;
    }
    let found = virtlab_container::rootfs::host_busybox();
    if found.is_none() {
        assert!(!must_run(), "{test}: needs busybox-static (scripts/setup.sh installs it)");
        skip(&format!("{test}: needs busybox-static"));
    }
    found
}

fn tool(test: &str, name: &str) -> bool {
    let found = Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !must_run(),
            "{test}: needs {name} (scripts/setup.sh installs it), and VIRTLAB_REQUIRE_ROOT=1 forbids skipping"
        );
        skip(&format!("{test}: needs {name}; `apt-get install {name}` or scripts/setup.sh"));
    }
    found
}

fn name(s: &str) -> ImageName {
    s.parse().unwrap()
}

/// A small root file system with one of each kind of entry.
fn sample_tree(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("etc/empty")).unwrap();
    fs::write(dir.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(dir.join("bin/tool"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(dir.join("etc/hostname"), b"virtlab\n").unwrap();
    fs::hard_link(dir.join("etc/hostname"), dir.join("etc/hostname.link")).unwrap();
    symlink("/bin/tool", dir.join("bin/absolute")).unwrap();
    symlink("tool", dir.join("bin/relative")).unwrap();
    let long = dir.join("a".repeat(60)).join("b".repeat(60));
    fs::create_dir_all(&long).unwrap();
    fs::write(long.join("deep-file-with-a-long-path"), b"deep").unwrap();
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(dir.join("etc/hostname"), Some(1000), Some(1000)).unwrap();
        nix::unistd::mkfifo(&dir.join("etc/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    }
}

/// Every entry under `dir`: kind, mode, owner, content or link target.
fn describe(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                stack.push(p.clone());
                "dir".into()
            } else if ft.is_file() {
                format!("file {:?}", fs::read(&p).unwrap())
            } else if ft.is_char_device() {
                format!("char {}", m.rdev())
            } else if ft.is_fifo() {
                "fifo".into()
            } else {
                "other".into()
            };
            let mode = if ft.is_symlink() { 0 } else { m.mode() & 0o7777 };
            out.insert(
                p.strip_prefix(dir).unwrap().display().to_string(),
                format!("{what} mode {mode:o} owner {}:{}", m.uid(), m.gid()),
            );
        }
    }
    out
}

fn store_in(tmp: &TempDir) -> Store {
    Store::open(tmp.path().join("store")).unwrap()
}

fn blob_count(store: &Store) -> usize {
    fs::read_dir(store.layout().join("blobs/sha256")).unwrap().count()
}

fn dir_count(path: PathBuf) -> usize {
    fs::read_dir(path).unwrap().count()
}

#[test]
fn an_imported_image_is_an_oci_layout_that_skopeo_and_umoci_read() {
    const TEST: &str = "an_imported_image_is_an_oci_layout_that_skopeo_and_umoci_read";
    if !root(TEST) || !tool(TEST, "skopeo") || !tool(TEST, "umoci") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    sample_tree(&tree);
    let store = store_in(&tmp);
    let image = import::import(&store, &tree, &name("course/sample:v1")).unwrap();
    let unpacked = &store.layer_dirs(&image).unwrap()[0];
    assert_eq!(describe(unpacked), describe(&tree), "our unpacked layer is not the tree we imported");

    let reference = format!("oci:{}:localhost/course/sample:v1", store.layout().display());
    let out = Command::new("skopeo").args(["inspect", &reference]).output().unwrap();
    assert!(out.status.success(), "skopeo inspect {reference}: {}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["Digest"], format!("sha256:{}", image.manifest_digest));
    assert_eq!(seen["Layers"][0], image.manifest.layers()[0].digest().to_string());
    assert_eq!(seen["Architecture"], "amd64");

    let bundle = tmp.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:localhost/course/sample:v1", store.layout().display())])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(describe(&bundle.join("rootfs")), describe(unpacked), "umoci's unpack differs from ours");
}

#[test]
fn images_share_layers_and_removal_frees_what_none_uses() {
    const TEST: &str = "images_share_layers_and_removal_frees_what_none_uses";
    if !root(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (tree, other) = (tmp.path().join("tree"), tmp.path().join("other"));
    sample_tree(&tree);
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("only-here"), vec![7u8; 5000]).unwrap();
    let store = store_in(&tmp);
    let a = import::import(&store, &tree, &name("a")).unwrap();
    let b = import::import(&store, &tree, &name("b:2")).unwrap();
    import::import(&store, &other, &name("c")).unwrap();
    assert_eq!(a.diff_ids(), b.diff_ids(), "the same tree gives the same layer");
    assert_eq!(dir_count(store.root().join("layers")), 2, "the shared layer is unpacked once");

    let usage = inspect::disk_usage(&store).unwrap();
    let shared = store.layer_info(&a.diff_ids()[0]).unwrap().size;
    assert_eq!((usage.images, usage.layers, usage.shared_layers), (3, 2, 1));
    assert_eq!(usage.size_unshared - usage.size, shared, "sharing saves one copy of the shared layer");
    let row = usage.per_image.iter().find(|i| i.name.as_deref() == Some("localhost/a:latest")).unwrap();
    assert_eq!((row.shared_size, row.unique_size), (shared, 0));

    let removed = store.remove("a").unwrap();
    assert_eq!(removed.untagged, vec!["localhost/a:latest".to_string()]);
    assert_eq!(dir_count(store.root().join("layers")), 2, "b still uses the layer");
    store.remove("localhost/b:2").unwrap();
    store.remove("c").unwrap();
    assert_eq!(dir_count(store.root().join("layers")), 0);
    assert_eq!(blob_count(&store), 0);
    assert!(store.index().unwrap().manifests().is_empty());
    assert!(matches!(store.resolve("a"), Err(ImageError::NotFound { .. })));
}

#[test]
fn a_name_moves_to_the_new_image_and_the_old_one_stays_untagged() {
    const TEST: &str = "a_name_moves_to_the_new_image_and_the_old_one_stays_untagged";
    if !root(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("version"), "1").unwrap();
    let store = store_in(&tmp);
    let old = import::import(&store, &tree, &name("app")).unwrap();
    fs::write(tree.join("version"), "2").unwrap();
    let new = import::import(&store, &tree, &name("app")).unwrap();
    assert_ne!(old.id, new.id);
    let images = store.images().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(store.resolve("app").unwrap().id, new.id);
    let dangling = store.resolve(&old.id[..8]).unwrap();
    assert_eq!((dangling.id.as_str(), dangling.name.is_none()), (old.id.as_str(), true));
    let removed = store.remove(&old.id).unwrap();
    assert_eq!(removed.deleted, vec![old.id.clone()]);
    assert_eq!(store.images().unwrap().len(), 1);
    store.tag("app", &name("app:v2")).unwrap();
    assert_eq!(store.resolve("app:v2").unwrap().id, new.id);
}

/// A tar with one entry whose header is written by hand, so that names tar
/// builders refuse (`../x`, `/x`) can be made.
fn tar_with(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(if kind.is_file() { 2 } else { 0 });
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if !link.is_empty() {
            h.set_link_name_literal(link).unwrap();
        }
        h.set_cksum();
        let data: &[u8] = if kind.is_file() { b"x\n" } else { b"" };
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn layers_that_write_outside_their_directory_are_refused_and_leave_nothing() {
    const TEST: &str = "layers_that_write_outside_their_directory_are_refused_and_leave_nothing";
    if !root(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(&tmp);
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let target = outside.display().to_string();
    use tar::EntryType as T;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dot-dot", tar_with(&[("../../escaped", T::Regular, "")]), "`..`"),
        ("absolute", tar_with(&[("/tmp/escaped", T::Regular, "")]), "absolute"),
        (
            "through-link",
            tar_with(&[("out", T::Symlink, &target), ("out/escaped", T::Regular, "")]),
            "symbolic link out",
        ),
        ("hard-link", tar_with(&[("h", T::Link, "../../etc/passwd")]), "hard link"),
        ("whiteout-of-nothing", tar_with(&[(".wh..", T::Regular, "")]), "whiteout of nothing"),
    ];
    for (what, bytes, says) in cases {
        let file = tmp.path().join(format!("{what}.tar"));
        fs::write(&file, bytes).unwrap();
        let err = import::import(&store, &file, &name(what)).unwrap_err();
        assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{what}: {err}");
        assert!(err.to_string().contains(says), "{what}: {err}");
    }
    assert_eq!(dir_count(outside.clone()), 0, "something was written outside");
    assert!(!Path::new("/tmp/escaped").exists());
    assert_eq!(dir_count(store.root().join("layers")), 0);
    assert_eq!(dir_count(store.root().join("tmp")), 0);
    assert_eq!(blob_count(&store), 0);
    assert!(store.index().unwrap().manifests().is_empty());
}

#[test]
fn whiteouts_become_overlayfs_whiteouts_and_back() {
    const TEST: &str = "whiteouts_become_overlayfs_whiteouts_and_back";
    if !root(TEST) {
        return;
    }
    use tar::EntryType as T;
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tar_with(&[
        ("etc/", T::Directory, ""),
        ("etc/.wh.passwd", T::Regular, ""),
        ("opt/", T::Directory, ""),
        ("opt/.wh..wh..opq", T::Regular, ""),
        ("opt/keep", T::Regular, ""),
    ]);
    let dest = tmp.path().join("fs");
    fs::create_dir(&dest).unwrap();
    let unpacked = layer::unpack(&bytes[..], None, &dest).unwrap();
    assert_eq!(unpacked.whiteouts, 2);
    let passwd = fs::symlink_metadata(dest.join("etc/passwd")).unwrap();
    assert!(passwd.file_type().is_char_device() && passwd.rdev() == 0, "etc/passwd is not an overlayfs whiteout");
    assert_eq!(
        xattr(&dest.join("opt"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..]),
        "opt is not an opaque directory"
    );
    assert!(!dest.join("etc/.wh.passwd").exists() && !dest.join("opt/.wh..wh..opq").exists());

    // Packed as an overlay upper directory, they are OCI whiteouts again.
    let blob = File::create(tmp.path().join("layer.tar.gz")).unwrap();
    let (_, packed) = layer::pack_dir(&dest, TreeKind::OverlayUpper, blob).unwrap();
    let mut names = Vec::new();
    let mut gz = flate2::read::GzDecoder::new(File::open(tmp.path().join("layer.tar.gz")).unwrap());
    let mut raw = Vec::new();
    gz.read_to_end(&mut raw).unwrap();
    for e in tar::Archive::new(&raw[..]).entries().unwrap() {
        let e = e.unwrap();
        names.push((e.path().unwrap().display().to_string(), e.header().entry_type()));
    }
    assert!(names.contains(&("etc/.wh.passwd".into(), T::Regular)), "{names:?}");
    assert!(names.contains(&("opt/.wh..wh..opq".into(), T::Regular)), "{names:?}");
    assert!(!names.iter().any(|(_, t)| t.is_character_special()), "{names:?}");
    assert_eq!(packed.diff_id, virtlab_container::image::digest::sha256_hex(&raw));
}

#[test]
fn save_then_load_gives_the_same_images_and_corruption_is_named() {
    const TEST: &str = "save_then_load_gives_the_same_images_and_corruption_is_named";
    if !root(TEST) || !tool(TEST, "skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    sample_tree(&tree);
    let store = store_in(&tmp);
    let a = import::import(&store, &tree, &name("a")).unwrap();
    let b = import::import(&store, &tree, &name("docker.io/library/b:1")).unwrap();
    let saved = tmp.path().join("two.tar");
    archive::save(&store, &["a".into(), "docker.io/library/b:1".into()], File::create(&saved).unwrap()).unwrap();

    let other = Store::open(tmp.path().join("other")).unwrap();
    let loaded = archive::load(&other, File::open(&saved).unwrap()).unwrap();
    let got: Vec<(String, String)> =
        loaded.iter().map(|i| (i.name.as_ref().unwrap().to_string(), i.id.clone())).collect();
    assert_eq!(got, vec![("localhost/a:latest".into(), a.id.clone()), ("docker.io/library/b:1".into(), b.id.clone())]);
    assert_eq!(describe(&other.layer_dirs(&loaded[0]).unwrap()[0]), describe(&tree));

    // skopeo reads one image of it, and writes an archive we load.
    let one = tmp.path().join("one.tar");
    archive::save(&store, &["a".into()], File::create(&one).unwrap()).unwrap();
    let out = Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", one.display())).output().unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    let by_skopeo = tmp.path().join("by-skopeo.tar");
    let out = Command::new("skopeo")
        .args([
            "copy",
            &format!("oci:{}:localhost/a:latest", store.layout().display()),
            &format!("oci-archive:{}:localhost/copied:1", by_skopeo.display()),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    let third = Store::open(tmp.path().join("third")).unwrap();
    let copied = archive::load(&third, File::open(&by_skopeo).unwrap()).unwrap();
    assert_eq!(copied[0].name.as_ref().map(ToString::to_string).as_deref(), Some("localhost/copied:1"));
    assert_eq!(copied[0].diff_ids(), a.diff_ids());

    // A flipped byte in the layer blob, and a truncated archive.
    let mut bytes = fs::read(&saved).unwrap();
    let layer_hex = a.manifest.layers()[0].digest().digest().to_string();
    let at = find(&bytes, format!("blobs/sha256/{layer_hex}").as_bytes()).unwrap() + 512 + 100;
    bytes[at] ^= 0xff;
    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    let err = archive::load(&fresh, &bytes[..]).unwrap_err();
    assert!(
        matches!(err, ImageError::Corrupt { .. })
            && err.to_string().contains(&layer_hex)
            && err.to_string().contains("damaged"),
        "{err}"
    );
    let full = fs::read(&saved).unwrap();
    let err = archive::load(&fresh, &full[..full.len() / 2]).unwrap_err();
    assert!(err.to_string().contains("archive"), "{err}");
    let err = archive::load(&fresh, &b"not a tar at all"[..]).unwrap_err();
    assert!(err.to_string().contains("archive"), "{err}");
    assert!(fresh.index().unwrap().manifests().is_empty());
    assert_eq!(dir_count(fresh.root().join("tmp")), 0);
    assert_eq!(dir_count(fresh.root().join("layers")), 0);
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: NUL-terminated strings and a writable buffer of its length.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn podman_loads_what_we_save_and_we_load_what_podman_saves() {
    const TEST: &str = "podman_loads_what_we_save_and_we_load_what_podman_saves";
    if !root(TEST) || !tool(TEST, "podman") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    sample_tree(&tree);
    let store = store_in(&tmp);
    let image = import::import(&store, &tree, &name("course/podman-check:1")).unwrap();
    let ours = tmp.path().join("ours.tar");
    archive::save(&store, &["course/podman-check:1".into()], File::create(&ours).unwrap()).unwrap();
    // A podman storage of the test's own, so the host's is left alone.
    let podman = |args: &[&str]| {
        let out = Command::new("podman")
            .arg("--root")
            .arg(tmp.path().join("podman-root"))
            .arg("--runroot")
            .arg(tmp.path().join("podman-run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    podman(&["load", "-i", ours.to_str().unwrap()]);
    let listed = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(listed.contains("localhost/course/podman-check:1"), "{listed}");
    let theirs = tmp.path().join("theirs.tar");
    podman(&["save", "--format", "oci-archive", "-o", theirs.to_str().unwrap(), "localhost/course/podman-check:1"]);
    let other = Store::open(tmp.path().join("other")).unwrap();
    let loaded = archive::load(&other, File::open(&theirs).unwrap()).unwrap();
    assert_eq!(loaded[0].diff_ids(), image.diff_ids(), "podman's copy has other layers");
    assert_eq!(describe(&other.layer_dirs(&loaded[0]).unwrap()[0]), describe(&tree));
}

#[test]
fn parallel_imports_and_removals_keep_the_store_whole() {
    const TEST: &str = "parallel_imports_and_removals_keep_the_store_whole";
    if !root(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(&tmp);
    let trees: Vec<PathBuf> = (0..6)
        .map(|i| {
            let t = tmp.path().join(format!("tree{i}"));
            fs::create_dir_all(&t).unwrap();
            fs::write(t.join("n"), i.to_string()).unwrap();
            t
        })
        .collect();
    import::import(&store, &trees[0], &name("victim")).unwrap();
    std::thread::scope(|s| {
        for (i, t) in trees.iter().enumerate() {
            let store = store.clone();
            s.spawn(move || import::import(&store, t, &name(&format!("img{i}"))).unwrap());
        }
        let store = store.clone();
        s.spawn(move || store.remove("victim").unwrap());
    });
    let names: Vec<String> = store.images().unwrap().iter().map(|i| i.name.as_ref().unwrap().to_string()).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    for i in 0..6 {
        let image = store.resolve(&format!("img{i}")).unwrap();
        assert_eq!(fs::read(store.layer_dirs(&image).unwrap()[0].join("n")).unwrap(), i.to_string().as_bytes());
    }
    assert_eq!(dir_count(store.root().join("tmp")), 0);
}

#[test]
fn work_left_by_a_killed_command_is_removed_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(&tmp);
    // A process that has exited: its pid names no live process.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let left = store.root().join("tmp").join(format!("{dead}-0-import"));
    fs::create_dir_all(left.join("layer-x/fs")).unwrap();
    let live = store.root().join("tmp").join(format!("{}-99-import", std::process::id()));
    fs::create_dir_all(&live).unwrap();
    let mut f = File::create(left.join("layer.tar.gz")).unwrap();
    f.write_all(b"half a layer").unwrap();
    let _again = Store::open(store.root()).unwrap();
    assert!(!left.exists(), "a dead command's work was kept");
    assert!(live.exists(), "a live command's work was removed");
    fs::remove_dir_all(live).unwrap();
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(&tmp);
    let err = import::import(&store, Path::new("/nonexistent/rootfs"), &name("x")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/rootfs"), "{err}");
    let err = import::import(&store, Path::new("/dev/null"), &name("x")).unwrap_err();
    assert!(matches!(err, ImageError::NotATree(_)), "{err}");
    let garbage = tmp.path().join("garbage.tar");
    fs::write(&garbage, vec![0x55u8; 3000]).unwrap();
    let err = import::import(&store, &garbage, &name("x")).unwrap_err();
    assert!(err.to_string().contains("layer"), "{err}");
    assert!("Not/Valid".parse::<ImageName>().is_err());
    let err = store.resolve("missing").unwrap_err();
    assert!(err.to_string().contains("virtlab image import"), "{err}");
    assert_eq!(dir_count(store.root().join("tmp")), 0);
    assert_eq!(blob_count(&store), 0);
}

/// A two-layer image: the busybox rootfs, then a layer that adds
/// /app/hello and deletes /etc/hostname (a whiteout).
fn two_layer_image(store: &Store, tmp: &Path, busybox: &Path) -> virtlab_container::image::Image {
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder, RootFsBuilder};
    let base = tmp.join("base");
    virtlab_container::rootfs::build(&base, Some(busybox)).unwrap();
    fs::write(base.join("etc/hostname"), "from-the-base\n").unwrap();
    let top = tmp.join("top");
    fs::create_dir_all(top.join("app")).unwrap();
    fs::create_dir_all(top.join("etc")).unwrap();
    fs::write(top.join("app/hello"), "hello from the top layer\n").unwrap();
    fs::write(top.join("etc/.wh.hostname"), "").unwrap();
    let work = store.temp_dir("test").unwrap();
    let mut layers = Vec::new();
    for (i, dir) in [&base, &top].into_iter().enumerate() {
        let blob = work.path().join(format!("l{i}"));
        let (_, packed) = layer::pack_dir(dir, TreeKind::Plain, File::create(&blob).unwrap()).unwrap();
        layers.push(store.prepare_layer(packed, blob, &work).unwrap());
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{}", l.packed.diff_id)).collect();
    let config = ImageConfigurationBuilder::default()
        .config(
            ConfigBuilder::default()
                .cmd(vec!["/bin/sh".to_string()])
                .env(vec![import::DEFAULT_PATH.to_string()])
                .working_dir("/app")
                .build()
                .unwrap(),
        )
        .rootfs(RootFsBuilder::default().typ("layers").diff_ids(diff_ids).build().unwrap())
        .build()
        .unwrap();
    store.commit(&name("two-layers"), &config, layers).unwrap()
}

#[test]
fn an_image_runs_on_its_stacked_layers_which_stay_unchanged() {
    const TEST: &str = "an_image_runs_on_its_stacked_layers_which_stay_unchanged";
    let Some(busybox) = root_and_busybox(TEST) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(&tmp);
    let image = two_layer_image(&store, tmp.path(), &busybox);
    let prepared = virtlab_container::image::run::prepare(&store, &image, Some("/app")).unwrap();
    let script = "cat hello; test -e /etc/hostname && echo still-there || echo deleted; id -u; echo made > /made; rm /app/hello; stat -c '%u %n' /bin/busybox /made; pwd";
    let argv =
        virtlab_container::image::run::command(&image, None, &["/bin/sh".into(), "-c".into(), script.into()]).unwrap();
    let mut cfg = virtlab_container::ContainerConfig::new(&prepared.mount_point, argv);
    cfg.layers = Some(prepared.layers.clone());
    cfg.workdir = "/app".into();
    cfg.env = virtlab_container::image::run::environment(&image);
    cfg.stdio = virtlab_container::Stdio::Capture;
    let out = virtlab_container::run(&cfg).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.exit_code(), 0, "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.rootfs_idmapped, "the layers were not idmapped: {:?}", out.warnings);
    assert_eq!(
        stdout,
        "hello from the top layer\ndeleted\n0\n0 /bin/busybox\n0 /made\n/app\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the container wrote is in its own layer, owned by container
    // root's host id (never host root); its deletion of a lower file is a
    // whiteout there.
    let upper = prepared.layers.upper();
    let made = fs::metadata(upper.join("made")).unwrap();
    let container_root = virtlab_container::idmap::IdRanges::lookup().uid.start;
    assert_ne!(container_root, 0);
    assert_eq!((made.uid(), fs::read_to_string(upper.join("made")).unwrap().as_str()), (container_root, "made\n"));
    let gone = fs::symlink_metadata(upper.join("app/hello")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0, "no whiteout for the deleted file");
    // The image's layers are as they were.
    let layers = store.layer_dirs(&image).unwrap();
    assert_eq!(fs::read_to_string(layers[1].join("app/hello")).unwrap(), "hello from the top layer\n");
    assert!(!layers[0].join("made").exists() && !layers[1].join("made").exists());
    drop(prepared);
    assert_eq!(dir_count(store.root().join("tmp")), 0, "the container's layer was not removed");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&store.root().display().to_string()), "a mount was left behind");
}

#[test]
fn an_image_a_container_runs_is_kept_until_it_is_gone() {
    const TEST: &str = "an_image_a_container_runs_is_kept_until_it_is_gone";
    let Some(busybox) = root_and_busybox(TEST) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(&tmp);
    let tree = tmp.path().join("bb");
    virtlab_container::rootfs::build(&tree, Some(&busybox)).unwrap();
    let image = import::import(&store, &tree, &name("busy")).unwrap();
    let layer = store.layer_dirs(&image).unwrap().remove(0);
    let prepared = virtlab_container::image::run::prepare(&store, &image, None).unwrap();
    let mut cfg = virtlab_container::ContainerConfig::new(&prepared.mount_point, vec!["/bin/sleep".into(), "1".into()]);
    cfg.layers = Some(prepared.layers.clone());
    cfg.stdio = virtlab_container::Stdio::Capture;
    let running = std::thread::spawn(move || virtlab_container::run(&cfg).unwrap().exit_code());
    let err = store.remove("busy").unwrap_err();
    assert!(matches!(err, ImageError::InUse(_)), "{err}");
    let removed = store.remove_with("busy", true).unwrap();
    assert_eq!(removed.untagged, vec!["localhost/busy:latest".to_string()]);
    assert!(layer.join("bin/busybox").exists(), "the running container's layer was removed");
    assert_eq!(running.join().unwrap(), 0);
    drop(prepared);
    // The next removal collects what only the finished container held.
    import::import(&store, &tree, &name("again")).unwrap();
    store.remove("again").unwrap();
    assert!(!layer.exists(), "the layer outlived the container and the image");
}
