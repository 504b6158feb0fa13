//! Property tests of the container side's parsers: hostile image layers
//! and archives, Dockerfiles, `config.json`, logs, events, subuid files,
//! names, times and units, in the normal test run.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::Config;
use virtlab_container::config::{self, Namespaces, User};
use virtlab_container::engine::events::{self, Actor, Event, Filter};
use virtlab_container::idmap;
use virtlab_container::image::dockerfile::{self, Command, Kind as Instruction};
use virtlab_container::image::{layer, Store};
use virtlab_container::runtime::log::{self, LogWriter, Stream};
use virtlab_container::time;
use virtlab_fuzz::container::{self, cli_units, file, oci_archive, sha256, Sandbox};
use virtlab_fuzz::mutate;
use virtlab_fuzz::tarball::{self, Kind, TarEntry};

/// 256 cases (PROPTEST_CASES overrides it, for a longer run); failures
/// are kept as regression tests in `regressions.rs`, not in files.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Fewer cases for the tests that build a store per case.
fn config_fs() -> Config {
    let c = config();
    Config { cases: c.cases / 4, ..c }
}

/// One hostile layer entry, as [`container::layer_entries`] decodes it:
/// kind, name and link target (indexes into its name list), mode, content.
fn layer_op() -> impl Strategy<Value = [Vec<u8>; 2]> {
    (
        0u8..6,
        prop_oneof![7 => 0u8..6, 1 => any::<u8>()],
        prop_oneof![3 => 0u8..6, 1 => any::<u8>()],
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(kind, name, link, mode, data)| [vec![kind, name, link, mode as u8, (mode >> 8) as u8], data])
}

fn encode_ops(ops: Vec<[Vec<u8>; 2]>) -> Vec<u8> {
    let mut out = Vec::new();
    for [head, data] in ops {
        out.extend(head);
        out.push(data.len() as u8);
        out.extend(data);
    }
    out
}

/// A digest an attacker would write: wrong, of another algorithm, or
/// shaped like a path.
fn hostile_digest() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(format!("sha256:{}", "0".repeat(64)))),
        1 => Just(Some("sha256:../../../outside/secret".to_string())),
        1 => Just(Some(format!("sha256:../{}", "a".repeat(61)))),
        1 => Just(Some("sha512:abc".to_string())),
        1 => Just(Some("md5:..".to_string())),
        1 => Just(Some("sha256:abc".to_string())),
        1 => Just(Some(format!("sha256:{}", "é".repeat(8)))),
        1 => "[a-z0-9:./+_-]{0,20}".prop_map(Some),
    ]
}

/// The files of a Dockerfile line: a keyword (any case) and arguments
/// with the characters its grammar cares about.
fn dockerfile_text() -> impl Strategy<Value = String> {
    let keyword = prop::sample::select(vec![
        "FROM",
        "from",
        "RUN",
        "CMD",
        "ENTRYPOINT",
        "COPY",
        "ADD",
        "ENV",
        "ARG",
        "WORKDIR",
        "USER",
        "LABEL",
        "EXPOSE",
        "VOLUME",
        "STOPSIGNAL",
        "SHELL",
        "HEALTHCHECK",
        "ONBUILD",
        "MAINTAINER",
        "# escape=`",
        "# escape=\\",
        "#",
        "",
    ]);
    let arg = "[a-z0-9 =$:{}\\[\\]\"',\\\\`/.+-]{0,16}";
    let line = (keyword, arg, prop::bool::weighted(0.2)).prop_map(|(k, a, cont)| {
        let cont = if cont { " \\" } else { "" };
        format!("{k} {a}{cont}")
    });
    prop::collection::vec(line, 0..8).prop_map(|lines| lines.join("\n"))
}

/// A change to a JSON document: a path of keys and a value to put there.
fn json_edit() -> impl Strategy<Value = (Vec<&'static str>, serde_json::Value)> {
    let key = prop::sample::select(vec![
        "ociVersion",
        "root",
        "path",
        "readonly",
        "process",
        "args",
        "env",
        "cwd",
        "user",
        "uid",
        "gid",
        "umask",
        "additionalGids",
        "capabilities",
        "bounding",
        "effective",
        "permitted",
        "ambient",
        "rlimits",
        "type",
        "hard",
        "soft",
        "linux",
        "namespaces",
        "uidMappings",
        "gidMappings",
        "resources",
        "memory",
        "limit",
        "cpu",
        "quota",
        "period",
        "pids",
        "devices",
        "cgroupsPath",
        "sysctl",
        "mounts",
        "destination",
        "source",
        "options",
        "hostname",
        "hooks",
        "maskedPaths",
        "readonlyPaths",
        "seccomp",
        "noNewPrivileges",
        "terminal",
        "containerID",
        "hostID",
        "size",
        "0",
    ]);
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u32>().prop_map(serde_json::Value::from),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(u64::MAX)),
        "[a-zA-Z0-9_/.:=-]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!(["CAP_SYS_ADMIN", "CAP_NOPE", "CAP_LAST_CAP"])),
        Just(serde_json::json!([{"type": "user"}, {"type": "pid", "path": "/proc/1/ns/pid"}])),
        Just(serde_json::json!([{"containerID": 0, "hostID": 4294967295u32, "size": 4294967295u32}])),
        Just(
            serde_json::json!([{"destination": "/x", "type": "bind", "source": "rel", "options": ["rbind", "shared"]}])
        ),
        Just(serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": u64::MAX, "soft": 0}])),
        Just(serde_json::json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "": "x"})),
    ];
    (prop::collection::vec(key, 1..4), value)
}

fn apply_edit(doc: &mut serde_json::Value, path: &[&str], value: serde_json::Value) {
    let mut at = doc;
    for key in &path[..path.len() - 1] {
        if !at.is_object() {
            *at = serde_json::json!({});
        }
        at = at.as_object_mut().expect("just made an object").entry(key.to_string()).or_insert(serde_json::json!({}));
    }
    if !at.is_object() {
        *at = serde_json::json!({});
    }
    at.as_object_mut().expect("just made an object").insert(path[path.len() - 1].to_string(), value);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_hostile_layer_never_writes_outside_its_directory(ops in prop::collection::vec(layer_op(), 0..8)) {
        container::layer_entries(&encode_ops(ops));
    }

    #[test]
    fn a_dockerfile_parses_or_names_its_line(text in dockerfile_text()) {
        container::dockerfile(text.as_bytes());
    }

    #[test]
    fn exec_form_commands_read_back(
        runs in prop::collection::vec(prop::collection::vec("[ -~é]{0,8}", 1..4), 1..5),
        keyword in prop::sample::select(vec!["RUN", "run", "CMD", "Entrypoint"]),
    ) {
        let mut text = "FROM scratch\n".to_string();
        for args in &runs {
            // JSON's escapes keep every word whole; a line never ends in `\`.
            let json = serde_json::to_string(args).expect("JSON");
            text.push_str(&format!("{keyword} {json}\n"));
        }
        let parsed = dockerfile::parse(&text).expect("a valid Dockerfile");
        prop_assert_eq!(parsed.len(), runs.len() + 1);
        for (i, args) in parsed[1..].iter().zip(&runs) {
            let got = match &i.kind {
                Instruction::Run(c) | Instruction::Cmd(c) | Instruction::Entrypoint(c) => c.clone(),
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(got, Command::Exec(args.clone()));
        }
    }

    #[test]
    fn any_config_json_converts_or_is_refused(edits in prop::collection::vec(json_edit(), 0..4)) {
        let mut doc = serde_json::to_value(oci_spec::runtime::Spec::default()).expect("the default spec");
        for (path, value) in edits {
            apply_edit(&mut doc, &path, value);
        }
        container::oci_config(&serde_json::to_vec(&doc).expect("JSON"));
    }

    #[test]
    fn the_log_reads_back_what_was_written(chunks in prop::collection::vec((any::<bool>(), "[ -~\n]{0,40}"), 0..12)) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path).expect("open the log");
        let mut expect = [String::new(), String::new()];
        for (err, chunk) in &chunks {
            let stream = if *err { Stream::Stderr } else { Stream::Stdout };
            w.write(stream, chunk.as_bytes()).expect("write the log");
            expect[usize::from(*err)].push_str(chunk);
        }
        w.finish().expect("finish the log");
        let (entries, offset) = log::read_from(&path, 0).expect("read the log");
        prop_assert_eq!(offset, std::fs::metadata(&path).expect("the log").len());
        let mut got = [String::new(), String::new()];
        for e in &entries {
            got[usize::from(e.is_stderr())].push_str(&e.log);
            prop_assert!(time::parse_rfc3339(&e.time).is_some());
        }
        prop_assert_eq!(got, expect);
    }

    #[test]
    fn any_log_file_is_read_up_to_its_last_line(
        lines in prop::collection::vec(prop_oneof![
            Just(r#"{"log":"a\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}"#.to_string()),
            "[ -~]{0,30}",
        ], 0..8),
        from in 0u16..200,
        torn in any::<bool>(),
    ) {
        let mut text = lines.join("\n");
        if !torn {
            text.push('\n');
        }
        let mut data = from.to_le_bytes().to_vec();
        data.extend(text.as_bytes());
        container::log_file(&data);
    }

    #[test]
    fn the_event_log_returns_what_passes_the_filter(
        kept in prop::collection::vec((prop::sample::select(vec!["container", "image"]), prop::sample::select(vec!["start", "die", "exec_start: sh", "tag"]), "[0-9a-f]{4}", 0u128..100), 0..10),
        noise in prop::collection::vec("[ -~]{0,20}", 0..4),
        filters in prop::collection::vec("(type|event|container|colour)=[a-z0-9_:]{0,6}", 0..3),
    ) {
        let root = tempfile::tempdir().expect("a temporary directory");
        let mut list = Vec::new();
        for (kind, action, id, t) in kept {
            let e = Event {
                kind: kind.into(),
                action: action.into(),
                actor: Actor { id: id.clone(), attributes: [("name".to_string(), format!("c{id}"))].into() },
                time: 0,
                time_nano: t,
            };
            events::record(root.path(), &e).expect("record an event");
            list.push(e);
        }
        let mut log = std::fs::OpenOptions::new().append(true).open(root.path().join("events.jsonl"))
            .or_else(|_| std::fs::File::create(root.path().join("events.jsonl"))).expect("the event log");
        for n in &noise {
            writeln!(log, "{n}").expect("append noise");
        }
        let mut filter = Filter::default();
        for f in &filters {
            let known = ["type=container", "type=image"].contains(&f.as_str()) || f.starts_with("event=") || f.starts_with("container=");
            prop_assert_eq!(filter.add(f).is_ok(), known, "{}", f);
        }
        let got = events::read(root.path(), &filter).expect("read the event log");
        let want: Vec<Event> = list.into_iter().filter(|e| filter.passes(e)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn subid_files_give_a_usable_range(
        lines in prop::collection::vec((prop::sample::select(vec!["virtlab", "root", "#virtlab", " virtlab", "virtlab2"]), prop_oneof![any::<u32>().prop_map(|n| n.to_string()), "[0-9 -]{0,12}"], prop_oneof![any::<u32>().prop_map(|n| n.to_string()), "[0-9 x]{0,12}"]), 0..5),
    ) {
        let text: String = lines.iter().map(|(u, s, c)| format!("{u}:{s}:{c}\n")).collect();
        container::subid(text.as_bytes());
    }

    #[test]
    fn a_subid_line_reads_back(start in 1u32..u32::MAX, count in 1u32..u32::MAX) {
        let r = idmap::parse_subid(&format!("# ids\nother:1:2\nvirtlab:{start}:{count}\n"), "virtlab");
        let fits = start.checked_add(count).is_some();
        prop_assert_eq!(r, fits.then_some(idmap::IdRange { start, count: count.min(idmap::DEFAULT_COUNT) }));
    }

    #[test]
    fn sizes_read_back(n in 0u64..(1 << 40), unit in 0usize..5) {
        let (suffix, shift) = [("", 0), ("K", 10), ("M", 20), ("G", 30), ("T", 40)][unit];
        let text = format!("{n}{suffix}");
        let want = n.checked_mul(1 << shift);
        prop_assert_eq!(cli_units::parse_size(&text).ok(), want);
        if let Some(w) = want.filter(|w| *w < (1 << 53)) {
            prop_assert_eq!(config::parse_size(&text).ok(), Some(w));
        }
        container::units(text.as_bytes());
    }

    #[test]
    fn units_and_lists_never_panic(text in "[0-9.eE+ -]{0,6}[a-zA-Z]{0,4}|[a-z,: =]{0,24}|[0-9:]{0,22}") {
        container::units(text.as_bytes());
    }

    #[test]
    fn namespaces_and_users_read_back(bits in any::<u8>(), uid in 0u32..u32::MAX, gid in 0u32..u32::MAX) {
        let names: Vec<&str> = Namespaces::NAMES.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, n)| *n).collect();
        let ns = Namespaces::parse(&names.join(",")).expect("known names");
        prop_assert_eq!(ns.names(), names.join(","));
        prop_assert_eq!(User::parse(&format!("{uid}:{gid}")).expect("ids"), User { uid, gid });
    }

    #[test]
    fn image_names_read_back(text in "([a-z0-9.-]{1,8}(:[0-9]{1,4})?/)?[a-z0-9._/-]{1,16}(:[A-Za-z0-9._-]{1,8})?(@sha256:[0-9a-f]{4})?") {
        container::image_name(text.as_bytes());
    }

    #[test]
    fn times_read_back(secs in 0u64..253_402_300_799, nanos in 0u32..1_000_000_000) {
        let t = UNIX_EPOCH + Duration::new(secs, nanos);
        prop_assert_eq!(time::parse_rfc3339(&time::rfc3339(t)), Some(t));
    }

    #[test]
    fn any_time_text_never_panics(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:[0-9]{2}|.{0,3})|.{0,24}") {
        container::rfc3339(text.as_bytes());
    }
}

proptest! {
    #![proptest_config(config_fs())]

    #[test]
    fn a_layer_of_plain_entries_unpacks_them(names in prop::collection::btree_set("[a-z]{1,6}", 1..6), gzip in any::<bool>()) {
        if !virtlab_fuzz::root_or_skip("a_layer_of_plain_entries_unpacks_them") {
            return Ok(());
        }
        let entries: Vec<TarEntry> = names.iter().map(|n| file(n, n.as_bytes())).collect();
        let tar = tarball::build(&entries);
        let sandbox = Sandbox::new();
        let blob = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).expect("gzip into memory");
            gz.finish().expect("gzip into memory")
        } else {
            tar.clone()
        };
        let u = layer::unpack(&blob[..], Some(&sha256(&tar)), &sandbox.dest).expect("a plain layer unpacks");
        prop_assert_eq!(u.content_size, names.iter().map(|n| n.len() as u64).sum::<u64>());
        for n in &names {
            prop_assert_eq!(std::fs::read(sandbox.dest.join(n)).expect("an unpacked file"), n.as_bytes());
        }
        sandbox.check_untouched("a plain layer");
    }

    #[test]
    fn a_changed_layer_is_refused_or_unpacked_inside(
        names in prop::collection::btree_set("[a-z]{1,6}", 1..4),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let entries: Vec<TarEntry> = names.iter().map(|n| file(n, b"data")).collect();
        container::layer_raw(&mutate(tarball::build(&entries), &edits));
    }

    #[test]
    fn a_hostile_image_archive_loads_only_into_the_store(
        ops in prop::collection::vec(layer_op(), 0..6),
        digests in prop::array::uniform4(hostile_digest()),
        gzip in any::<bool>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..2),
    ) {
        let sandbox = Sandbox::new();
        let (names, links) = (container::hostile_names(), container::hostile_links(&sandbox.outside));
        // The layer's entries, from the same list as the layer test's.
        let mut entries = Vec::new();
        for [head, data] in ops {
            let kind = [Kind::File, Kind::Dir, Kind::Symlink, Kind::HardLink, Kind::Fifo, Kind::CharDev][usize::from(head[0] % 6)];
            let name = names[usize::from(head[1]) % names.len()].clone().into_bytes();
            let link = links[usize::from(head[2]) % links.len()].clone().into_bytes();
            entries.push(TarEntry { name, kind, link, mode: u32::from(head[3]) | 0o700, data });
        }
        let archive = mutate(oci_archive(&tarball::build(&entries), digests, gzip), &edits);
        let root = sandbox.dest.join("store");
        let store = Store::open(&root).expect("an empty store");
        if let Ok(images) = virtlab_container::image::archive::load(&store, &archive[..]) {
            for image in &images {
                for d in image.diff_ids() {
                    prop_assert!(d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()), "diff ID {}", d);
                }
                for dir in store.layer_dirs(image).expect("a loaded image's layers") {
                    prop_assert!(dir.starts_with(root.join("layers")), "layer {}", dir.display());
                }
            }
        }
        let _ = store.images();
        sandbox.check_untouched("an image archive");
    }

    #[test]
    fn a_hostile_index_is_refused_or_read(digest in hostile_digest(), media in prop::sample::select(vec!["application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json", "text/plain", ""])) {
        let d = digest.unwrap_or(format!("sha256:{}", "1".repeat(64)));
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{media}","digest":"{d}","size":2}}]}}"#);
        container::image_index(index.as_bytes());
    }
}

/// The archive builder above makes an archive that loads (so the hostile
/// variants start from a valid one).
#[test]
fn a_well_formed_archive_loads() {
    if !virtlab_fuzz::root_or_skip("a_well_formed_archive_loads") {
        return;
    }
    let sandbox = Sandbox::new();
    let layer = tarball::build(&[file("hello", b"hi\n")]);
    for gzip in [false, true] {
        let store = Store::open(sandbox.dest.join(format!("store-{gzip}"))).expect("an empty store");
        let images =
            virtlab_container::image::archive::load(&store, &oci_archive(&layer, [None, None, None, None], gzip)[..])
                .expect("a well-formed archive loads");
        assert_eq!(images.len(), 1);
        assert_eq!(store.images().expect("the store's images").len(), 1);
        assert!(store.resolve("fuzz:1").is_ok());
    }
    sandbox.check_untouched("a well-formed archive");
}
