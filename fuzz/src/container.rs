//! The container side's parsers: image layers and archives, the store's
//! index, Dockerfiles, OCI `config.json`, the json-file log, the event log,
//! subuid/subgid, image names, times and the command line's units.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use virtlab_container::config::{self, ConfigError, Namespaces, User};
use virtlab_container::engine::events::{self, Event, Filter};
use virtlab_container::idmap::{self, DEFAULT_COUNT};
use virtlab_container::image::{archive, dockerfile, layer, ImageError, ImageName, Store};
use virtlab_container::oci::{bundle, OciError};
use virtlab_container::runtime::log;
use virtlab_container::time;

use sha2::{Digest, Sha256};

use crate::tarball::{self, Kind, TarEntry};
use crate::{tree, Bytes};

/// The command line's units as `virtlab`'s CLI parses them (`--mem 64M`,
/// `--timeout 30s`): the binary's own source file, compiled in here.
#[path = "../../compare/src/cli/units.rs"]
#[allow(dead_code)]
pub mod cli_units;

/// A temporary directory with an extraction target and things around it
/// that no extraction may touch:
///
/// ```text
/// TMP/box/dest/      the destination (empty)
/// TMP/box/outside/   a directory with a file and a subdirectory
/// TMP/box/file       a file beside the destination
/// ```
#[derive(Debug)]
pub struct Sandbox {
    tmp: tempfile::TempDir,
    /// The destination directory.
    pub dest: PathBuf,
    /// A directory beside it (absolute), for hostile link targets.
    pub outside: PathBuf,
    before: BTreeMap<PathBuf, tree::Node>,
}

impl Sandbox {
    /// A fresh sandbox.
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let boxed = tmp.path().join("box");
        let (dest, outside) = (boxed.join("dest"), boxed.join("outside"));
        for d in [&dest, &outside.join("sub")] {
            std::fs::create_dir_all(d).expect("create the sandbox");
        }
        std::fs::write(outside.join("secret"), b"host data").expect("create the sandbox");
        std::fs::write(boxed.join("file"), b"beside").expect("create the sandbox");
        let before = tree::walk(tmp.path(), Some(Path::new("box/dest")));
        Sandbox { tmp, dest, outside, before }
    }

    /// Panics if anything outside the destination was created, removed or
    /// changed (kind, mode, size, owner).
    pub fn check_untouched(&self, what: &str) {
        let after = tree::walk(self.tmp.path(), Some(Path::new("box/dest")));
        if after != self.before {
            let added: Vec<_> = after.keys().filter(|k| !self.before.contains_key(*k)).collect();
            let changed: Vec<_> =
                self.before.iter().filter(|(k, v)| after.get(*k) != Some(v)).map(|(k, _)| k).collect();
            panic!("{what} touched files outside its destination: added {added:?}, changed or removed {changed:?}");
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

/// Unpacks `blob` as an image layer into a sandbox: a typed error or
/// success, and nothing outside the destination touched.
pub fn unpack_layer(blob: &[u8]) -> Result<layer::Unpacked, ImageError> {
    let sandbox = Sandbox::new();
    let result = layer::unpack(blob, None, &sandbox.dest);
    sandbox.check_untouched("a layer");
    if let Ok(u) = &result {
        assert_eq!(u.diff_id.len(), 64, "a diff ID is a SHA-256");
    }
    result
}

/// Whether every link in the tar `blob` is relative and without `..`: only
/// such archives are unpacked from raw fuzz bytes, so that a bug cannot
/// reach outside the sandbox's own temporary directory. (Hostile link
/// targets pointing into the sandbox are made by [`layer_entries`].)
fn links_stay_inside(blob: &[u8]) -> bool {
    let mut archive = tar::Archive::new(blob);
    let Ok(entries) = archive.entries() else { return true };
    for entry in entries {
        let Ok(entry) = entry else { return true };
        if let Some(target) = entry.link_name_bytes() {
            if target.starts_with(b"/") || target.windows(2).any(|w| w == b"..") {
                return false;
            }
        }
    }
    true
}

/// A layer of raw bytes (a plain tar, or gzip'd when it starts so).
pub fn layer_raw(data: &[u8]) {
    if data.starts_with(&[0x1f, 0x8b]) || !links_stay_inside(data) {
        return;
    }
    let _ = unpack_layer(data);
}

/// Entry names of a hostile layer: the first six are harmless alone and
/// combine (generators pick them more often), the rest are refused
/// outright (parents, absolute paths, whiteouts of nothing).
pub fn hostile_names() -> Vec<String> {
    [
        "a",
        "a/b/.wh..wh..opq",
        "a/b",
        "a/b/c",
        "a/.wh.b",
        "b",
        "./a",
        "a/../b",
        "..",
        "../b",
        "../outside",
        "../outside/secret",
        "/",
        "/a",
        ".wh.a",
        ".wh..wh..opq",
        ".wh..",
        ".wh.",
        "c/d",
        "outside",
        "a/outside",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Link targets of a hostile layer: the sandbox's outside directory (by
/// absolute path and through `..`), then names inside.
pub fn hostile_links(outside: &Path) -> Vec<String> {
    let outside = outside.display().to_string();
    [outside.clone(), format!("{outside}/sub"), "../outside".into(), "a".into(), "a/b".into(), "../../box".into()]
        .into_iter()
        .chain(["/", "..", "b", format!("{outside}/secret").as_str(), "../outside/secret"].map(String::from))
        .collect()
}

/// A layer decoded from fuzz bytes as a list of entries built from
/// [`hostile_names`] and [`hostile_links`] (and a few raw names), unpacked into a sandbox.
pub fn layer_entries(data: &[u8]) {
    let sandbox = Sandbox::new();
    let (names, links) = (hostile_names(), hostile_links(&sandbox.outside));
    let mut b = Bytes::new(data);
    let mut entries = Vec::new();
    while !b.is_empty() && entries.len() < 32 {
        let op = b.u8();
        let pick = |list: &[String], i: u8| list[usize::from(i) % list.len()].clone().into_bytes();
        let kind =
            [Kind::File, Kind::Dir, Kind::Symlink, Kind::HardLink, Kind::Fifo, Kind::CharDev][usize::from(op % 6)];
        let name = if op & 0x80 != 0 { b.piece().to_vec() } else { pick(&names, b.u8()) };
        let link = pick(&links, b.u8());
        let mode = u32::from(b.u16());
        let data = b.piece().to_vec();
        entries.push(TarEntry { name, kind, link, mode, data });
    }
    let _ = layer::unpack(&tarball::build(&entries)[..], None, &sandbox.dest);
    sandbox.check_untouched("a layer");
}

/// An image archive (`image load`): loaded into a store in a sandbox,
/// a typed error or images, and nothing written outside the store.
pub fn image_archive(data: &[u8]) {
    let sandbox = Sandbox::new();
    let store = Store::open(sandbox.dest.join("store")).expect("an empty store");
    if archive::load(&store, data).is_ok() {
        store.images().expect("a store that loaded an archive lists its images");
    }
    sandbox.check_untouched("an image archive");
}

/// The store's `index.json` replaced by any bytes: listing and resolving
/// images give a typed error or images, never a panic, and never read a
/// blob outside the store.
pub fn image_index(data: &[u8]) {
    let sandbox = Sandbox::new();
    let store = Store::open(sandbox.dest.join("store")).expect("an empty store");
    std::fs::write(store.layout().join("index.json"), data).expect("write index.json");
    let _ = store.images();
    let _ = store.resolve("busybox");
    let _ = store.resolve("0123");
    sandbox.check_untouched("an image index");
}

/// A Dockerfile: parsed, or refused with the line at fault (a line of
/// the file); `expand` never panics.
pub fn dockerfile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1);
    match dockerfile::parse(&text) {
        Ok(instructions) => {
            assert!(!instructions.is_empty());
            for pair in instructions.windows(2) {
                assert!(pair[0].line < pair[1].line, "instructions in file order");
            }
            assert!(instructions.iter().all(|i| (1..=lines).contains(&i.line)));
        }
        Err(ImageError::Dockerfile { line, .. }) => assert!((1..=lines).contains(&line), "line {line} of {lines}"),
        Err(other) => panic!("a Dockerfile refused with an error of the wrong kind: {other}"),
    }
    let vars: BTreeMap<String, String> = [("A".into(), "x".into()), ("HOME".into(), "/root".into())].into();
    for escape in ['\\', '`'] {
        let _ = dockerfile::expand(&text, &vars, escape);
    }
}

/// An OCI `config.json` of any bytes: read as a runtime spec, converted to
/// a container's configuration, or refused with an `OciError`.
pub fn oci_config(data: &[u8]) {
    let Ok(spec) = serde_json::from_slice::<oci_spec::runtime::Spec>(data) else { return };
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("rootfs")).expect("a root file system directory");
    if let Ok(b) = bundle::convert(dir.path(), &spec) {
        let c = &b.config;
        assert!(!c.argv.is_empty(), "a converted bundle runs something");
        if let Some(p) = &c.cgroup_path {
            assert!(!p.starts_with('/') && !p.split('/').any(|part| part == ".."), "cgroup path {p:?}");
        }
        for (key, _) in &c.sysctl {
            assert!(!key.is_empty() && key.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.'));
        }
    }
    // The whole path too: the file read by oci-spec, then converted.
    std::fs::write(dir.path().join("config.json"), data).expect("write config.json");
    match bundle::load(dir.path()) {
        Ok(_) | Err(OciError::BadConfig { .. } | OciError::Version { .. } | OciError::Unsupported { .. }) => {}
        Err(OciError::Root { .. } | OciError::Config(_) | OciError::Io { .. }) => {}
        Err(other) => panic!("config.json refused with an unexpected error: {other}"),
    }
}

/// The json-file log reader on any file, from any offset: it stops after
/// the last whole line, and returns at most one entry per line.
pub fn log_file(data: &[u8]) {
    let mut b = Bytes::new(data);
    let from = u64::from(b.u16());
    let text = b.rest();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("log");
    std::fs::write(&path, text).expect("write the log");
    for start in [0, from] {
        let (entries, offset) = log::read_from(&path, start).expect("a readable log");
        let len = text.len() as u64;
        if start >= len {
            assert_eq!(offset, start);
            continue;
        }
        assert!(offset >= start && offset <= len);
        let read = &text[start as usize..offset as usize];
        assert!(read.is_empty() || read.ends_with(b"\n"), "stops after a whole line");
        assert!(entries.len() <= read.iter().filter(|&&c| c == b'\n').count());
    }
}

/// The event log and its filters: `Filter::add` refuses unknown keys with
/// a typed error; every event `read` returns passes the filter.
pub fn event_log(data: &[u8]) {
    let mut b = Bytes::new(data);
    let mut filter = Filter::default();
    for _ in 0..usize::from(b.u8() % 4) {
        let _ = filter.add(&String::from_utf8_lossy(b.piece()));
    }
    if b.u8() & 1 == 1 {
        filter.since = Some(u128::from(b.u64()));
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("events.jsonl"), b.rest()).expect("write the event log");
    let got: Vec<Event> = events::read(dir.path(), &filter).expect("reading a log never fails");
    assert!(got.len() <= events::KEEP);
    assert!(got.iter().all(|e| filter.passes(e)));
}

/// subuid(5)/subgid(5) text: a range found is usable (not host root, no
/// wrap past 2^32-1, at most the default count).
pub fn subid(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for user in ["virtlab", "root", ""] {
        if let Some(r) = idmap::parse_subid(&text, user) {
            assert!(r.start > 0 && r.count > 0 && r.count <= DEFAULT_COUNT, "{r:?}");
            assert!(r.start.checked_add(r.count).is_some(), "{r:?} wraps");
            assert_eq!(r.map_line(), format!("0 {} {}", r.start, r.count));
        }
    }
}

/// Image names: a parsed name prints as text that parses to it again.
pub fn image_name(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match ImageName::from_str(&text) {
        Ok(name) => {
            let again = ImageName::from_str(&name.to_string()).expect("a printed name parses");
            assert_eq!(again, name);
            assert!(!name.tag().is_empty() && !name.repository().is_empty());
        }
        Err(ImageError::InvalidName { .. }) => {}
        Err(other) => panic!("an image name refused with an error of the wrong kind: {other}"),
    }
}

/// RFC 3339 times (logs, events, image configs): a parsed time prints
/// as a text that parses back to it.
pub fn rfc3339(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(t) = time::parse_rfc3339(&text) {
        let printed = time::rfc3339(t);
        assert_eq!(time::parse_rfc3339(&printed), Some(t), "{text:?} printed as {printed:?}");
    }
}

/// The launcher's units and lists (`--memory`, `--cpus`, `--pids`,
/// `--ns`, `--user`, `--env`, durations) and the CLI's: none panics, and
/// those with a printed form read back what they print.
pub fn units(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    let _ = config::parse_size(text);
    let _ = config::parse_memory(text);
    if let Ok(c) = config::parse_cpus(text) {
        assert!((0.01..=config::online_cpus() as f64).contains(&c));
    }
    if let Ok(p) = config::parse_pids(text) {
        assert!(p >= 1);
    }
    if let Ok(d) = config::parse_duration(text) {
        assert!(!d.is_zero(), "{text:?} is a duration of zero");
        assert!(d.as_secs_f64() <= 1e9 + 1.0);
    }
    match config::parse_env(text) {
        Ok((k, v)) => assert_eq!(format!("{k}={v}"), text),
        Err(ConfigError::BadEnv { .. }) => {}
        Err(other) => panic!("parse_env: wrong error {other}"),
    }
    if let Ok(ns) = Namespaces::parse(text) {
        assert_eq!(Namespaces::parse(&ns.names()).expect("printed namespaces parse"), ns);
    }
    if let Ok(u) = User::parse(text) {
        assert_eq!(User::parse(&format!("{}:{}", u.uid, u.gid)).expect("a printed user parses"), u);
    }
    let _ = cli_units::parse_size(text);
    if let Ok(d) = cli_units::parse_timeout(text) {
        assert!(!d.is_zero(), "a timeout is positive");
    }
    let _ = cli_units::parse_timeout_or_none(text);
}

/// The hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A regular file entry of a tar.
pub fn file(name: &str, data: &[u8]) -> TarEntry {
    TarEntry { name: name.as_bytes().to_vec(), kind: Kind::File, link: Vec::new(), mode: 0o644, data: data.to_vec() }
}

/// An OCI archive of one image whose one layer is `layer` (a tar), named
/// `fuzz:1`; `digests` replaces, in order, the manifest's digest in the
/// index, the config's and the layer's in the manifest, and the layer's
/// diff ID in the config (None: the right one).
pub fn oci_archive(layer: &[u8], digests: [Option<String>; 4], gzip: bool) -> Vec<u8> {
    let layer = if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(layer).expect("gzip into memory");
        gz.finish().expect("gzip into memory")
    } else {
        layer.to_vec()
    };
    let [index_digest, config_digest, layer_digest, diff_id] = digests;
    let diff_id = diff_id.unwrap_or(format!("sha256:{}", sha256(&tarball_plain(&layer, gzip))));
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let layer_type = if gzip { "tar+gzip" } else { "tar" };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.{layer_type}","digest":"{}","size":{}}}]}}"#,
        config_digest.unwrap_or(format!("sha256:{}", sha256(config.as_bytes()))),
        config.len(),
        layer_digest.unwrap_or(format!("sha256:{}", sha256(&layer))),
        layer.len()
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"localhost/fuzz:1"}}}}]}}"#,
        index_digest.unwrap_or(format!("sha256:{}", sha256(manifest.as_bytes()))),
        manifest.len()
    );
    tarball::build(&[
        file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        file("index.json", index.as_bytes()),
        file(&format!("blobs/sha256/{}", sha256(manifest.as_bytes())), manifest.as_bytes()),
        file(&format!("blobs/sha256/{}", sha256(config.as_bytes())), config.as_bytes()),
        file(&format!("blobs/sha256/{}", sha256(&layer)), &layer),
    ])
}

/// `layer` gunzipped when `gzip`.
pub fn tarball_plain(layer: &[u8], gzip: bool) -> Vec<u8> {
    if !gzip {
        return layer.to_vec();
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(layer), &mut out).expect("gunzip");
    out
}
