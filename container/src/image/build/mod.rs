//! `virtlab image build`: a Dockerfile made into an image, one instruction
//! at a time, as the course notes' Docker section describes.
//!
//! `FROM` starts from an image of the store (or `scratch`, nothing). `RUN`
//! runs its command in a virtlab container on the layers so far, with a
//! fresh writable layer on top; what the command changed there becomes the
//! step's layer. `COPY` and `ADD` stage the files from the build context
//! and pack them as a layer. The other instructions only change the image's
//! config, and are recorded in its history as steps without a layer.
//!
//! **The build cache.** Every step has a key: the hash of the previous
//! step's key (the base image's ID for the first), the instruction, the
//! build arguments it can see and, for `COPY`/`ADD`, the digest of the
//! files copied. A `RUN` whose key was seen before, and whose layer the
//! store still has, is not run again: its layer is reused and the step says
//! `CACHED`. A `COPY` of unchanged files gives the same layer, which the
//! store has already. So a second build of an unchanged Dockerfile runs
//! nothing; and changing one step invalidates it and every step after it,
//! because their keys include its result.
//!
//! Nothing is written to the store until the last step succeeded: a failed
//! or killed build leaves only its work directory in the store's `tmp/`,
//! removed by the next command, and no image.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use oci_spec::image::{
    Arch, Config, History, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os, RootFsBuilder,
};
use serde::{Deserialize, Serialize};

use super::digest::sha256_hex;
use super::dockerfile::{self, Command, Instruction, Kind};
use super::import::DEFAULT_PATH;
use super::io_err;
use super::layer::{self, PackedLayer, TreeKind};
use super::store::{Image, NewLayer, Store, TempDir};
use super::{run, time, ImageError, ImageName};
use crate::runtime::config::{ContainerConfig, Stdio, User};

mod copy;

/// What to build.
#[derive(Debug)]
pub struct BuildOptions {
    /// The Dockerfile.
    pub dockerfile: PathBuf,
    /// The build context: the directory `COPY` and `ADD` read from.
    pub context: PathBuf,
    /// The name for the image, if any (`-t`).
    pub tag: Option<ImageName>,
    /// `--build-arg NAME=VALUE`.
    pub build_args: BTreeMap<String, String>,
    /// Run every step, whatever the cache has.
    pub no_cache: bool,
    /// How `RUN` steps' output is shown: `Tee` prints it as it comes.
    pub stdio: Stdio,
}

/// What the build reports as it goes, for a progress display.
#[derive(Debug)]
pub enum BuildEvent<'a> {
    /// Step `n` of `total` starts.
    Step { n: usize, total: usize, text: &'a str },
    /// The step's layer came from the cache.
    Cached,
    /// A step of the build explained (the layers stacked, the container run).
    Explain(String),
    /// The step is done: how long it took and the size of its layer, if it made one.
    Done { seconds: f64, layer_size: Option<u64> },
}

/// What a build made.
#[derive(Debug)]
pub struct Built {
    pub image: Image,
    /// Steps that made a layer, and how many of those came from the cache.
    pub layer_steps: usize,
    pub cached: usize,
}

/// A layer of the image being built.
#[derive(Debug)]
struct StepLayer {
    new: NewLayer,
    /// The unpacked tree (in the store, or in the build's work directory).
    tree: PathBuf,
}

/// One entry of the build cache (`ROOT/cache/KEY.json`).
#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    diff_id: String,
    digest: String,
    size: u64,
}

struct State {
    layers: Vec<StepLayer>,
    config: Config,
    history: Vec<History>,
    key: String,
    /// ARGs declared so far, with their values.
    args: BTreeMap<String, String>,
    shell: Vec<String>,
}

fn spec(e: oci_spec::OciSpecError) -> ImageError {
    ImageError::Corrupt { what: "image config".into(), reason: e.to_string() }
}

fn bad(i: &Instruction, reason: impl Into<String>) -> ImageError {
    ImageError::Dockerfile { line: i.line, reason: reason.into() }
}

/// Builds the image `opts` describes, reporting progress to `progress`.
pub fn build(
    store: &Store,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<Built, ImageError> {
    if !opts.context.is_dir() {
        return Err(ImageError::Corrupt {
            what: "the build context".into(),
            reason: format!(
                "{} is not a directory; give the directory the Dockerfile's COPY and ADD read from",
                opts.context.display()
            ),
        });
    }
    let text = fs::read_to_string(&opts.dockerfile)
        .map_err(io_err(format!("read the Dockerfile {}", opts.dockerfile.display())))?;
    let instructions = dockerfile::parse(&text)?;
    let context = fs::canonicalize(&opts.context)
        .map_err(io_err(format!("open the build context {}", opts.context.display())))?;
    if !context.is_dir() {
        return Err(ImageError::Corrupt {
            what: "the build context".into(),
            reason: format!("{} is not a directory", context.display()),
        });
    }
    let work = store.temp_dir("build")?;
    let mut state = State {
        layers: Vec::new(),
        config: Config::default(),
        history: Vec::new(),
        key: String::new(),
        args: BTreeMap::new(),
        shell: vec!["/bin/sh".into(), "-c".into()],
    };
    let (mut layer_steps, mut cached) = (0, 0);
    let total = instructions.len();
    for (n, i) in instructions.iter().enumerate() {
        progress(BuildEvent::Step { n: n + 1, total, text: &i.text });
        let started = Instant::now();
        let outcome = step(store, opts, &context, &work, &mut state, i, progress)?;
        if outcome.made_layer {
            layer_steps += 1;
        }
        if outcome.cached {
            cached += 1;
            progress(BuildEvent::Cached);
        }
        progress(BuildEvent::Done { seconds: started.elapsed().as_secs_f64(), layer_size: outcome.layer_size });
    }
    let image = commit(store, opts, state)?;
    // The steps that ran go into the cache only now that their layers are
    // in the store.
    if let Ok(entries) = fs::read_dir(work.path().join("cache")) {
        for e in entries.flatten() {
            let _ = fs::rename(e.path(), store.root().join("cache").join(e.file_name()));
        }
    }
    Ok(Built { image, layer_steps, cached })
}

#[derive(Debug, Default)]
struct StepOutcome {
    made_layer: bool,
    cached: bool,
    layer_size: Option<u64>,
}

/// Every variable an instruction may use: the ARGs declared so far and the
/// ENV of the image.
fn vars(state: &State) -> BTreeMap<String, String> {
    let mut v = state.args.clone();
    for e in state.config.env().clone().unwrap_or_default() {
        if let Some((k, val)) = e.split_once('=') {
            v.insert(k.to_string(), val.to_string());
        }
    }
    v
}

fn chain(key: &str, parts: &[&str]) -> String {
    let mut s = key.to_string();
    for p in parts {
        s.push('\n');
        s.push_str(p);
    }
    sha256_hex(s.as_bytes())
}

fn step(
    store: &Store,
    opts: &BuildOptions,
    context: &Path,
    work: &TempDir,
    state: &mut State,
    i: &Instruction,
    progress: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<StepOutcome, ImageError> {
    let v = vars(state);
    let x = |s: &str| dockerfile::expand(s, &v, '\\');
    let mut outcome = StepOutcome::default();
    match &i.kind {
        Kind::Arg { name, default } => {
            let value = opts.build_args.get(name).cloned().or_else(|| default.as_deref().map(x)).unwrap_or_default();
            state.args.insert(name.clone(), value);
            if !state.key.is_empty() {
                // After FROM an ARG is a step of the image's history, as in
                // Docker; before it, it only feeds FROM.
                state.key = chain(&state.key, &[&i.text]);
                push_history(state, i, true);
            }
            return Ok(outcome);
        }
        Kind::From { image, .. } => {
            // The base image's history is the start of this one's; FROM
            // itself is not a step of it (Docker records none either).
            from(store, state, &x(image), i)?;
            return Ok(outcome);
        }
        Kind::Env(pairs) => {
            let mut env = state.config.env().clone().unwrap_or_default();
            for (k, val) in pairs {
                let val = x(val);
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={val}"));
            }
            state.config.set_env(Some(env));
        }
        Kind::Label(pairs) => {
            let mut labels = state.config.labels().clone().unwrap_or_default();
            for (k, val) in pairs {
                labels.insert(x(k), x(val));
            }
            state.config.set_labels(Some(labels));
        }
        Kind::Workdir(dir) => {
            let dir = x(dir);
            let abs = if dir.starts_with('/') {
                dir
            } else {
                format!(
                    "{}/{dir}",
                    state.config.working_dir().clone().unwrap_or_else(|| "/".into()).trim_end_matches('/')
                )
            };
            state.config.set_working_dir(Some(abs));
        }
        Kind::User(user) => {
            state.config.set_user(Some(x(user)));
        }
        Kind::Expose(ports) => {
            let mut exposed = state.config.exposed_ports().clone().unwrap_or_default();
            for p in ports {
                let p = x(p);
                exposed.push(if p.contains('/') { p } else { format!("{p}/tcp") });
            }
            state.config.set_exposed_ports(Some(exposed));
        }
        Kind::Volume(paths) => {
            let mut volumes = state.config.volumes().clone().unwrap_or_default();
            volumes.extend(paths.iter().map(|p| x(p)));
            state.config.set_volumes(Some(volumes));
        }
        Kind::StopSignal(sig) => {
            state.config.set_stop_signal(Some(x(sig)));
        }
        Kind::Shell(shell) => state.shell = shell.clone(),
        Kind::Cmd(c) => {
            state.config.set_cmd(Some(argv(&state.shell, c)));
        }
        Kind::Entrypoint(c) => {
            state.config.set_entrypoint(Some(argv(&state.shell, c)));
        }
        Kind::Copy { sources, dest, chown, chmod, add } => {
            let sources: Vec<String> = sources.iter().map(|s| x(s)).collect();
            let staged =
                copy::stage(context, work, state, i, &sources, &x(dest), chown.as_deref(), chmod.as_deref(), *add)?;
            let (packed, blob) = pack(work, &staged, TreeKind::Plain)?;
            let had = store.layer_info(&packed.diff_id).is_ok();
            state.key = chain(&state.key, &[&i.text, &packed.diff_id]);
            let layer = add_layer(store, work, state, packed, blob, progress)?;
            outcome = StepOutcome { made_layer: true, cached: had, layer_size: Some(layer) };
            push_history(state, i, false);
            return Ok(outcome);
        }
        Kind::Run(c) => {
            let args: Vec<String> = state.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let key = chain(&state.key, &[&i.text, &args.join("\n")]);
            if !opts.no_cache {
                if let Some(hit) = cache_lookup(store, &key) {
                    let size = store.layer_info(&hit.diff_id)?.size;
                    state.layers.push(StepLayer {
                        new: NewLayer {
                            packed: PackedLayer {
                                digest: hit.digest.clone(),
                                size: hit.size,
                                diff_id: hit.diff_id.clone(),
                            },
                            blob: store.blob_path(&hit.digest),
                            unpacked: None,
                            size,
                        },
                        tree: store.layer_dir(&hit.diff_id).join("fs"),
                    });
                    state.key = chain(&key, &[&hit.diff_id]);
                    push_history(state, i, false);
                    return Ok(StepOutcome { made_layer: true, cached: true, layer_size: Some(size) });
                }
            }
            let (packed, blob) = run_step(store, work, state, opts, i, c, progress)?;
            let diff_id = packed.diff_id.clone();
            let size = add_layer(store, work, state, packed, blob, progress)?;
            state.key = chain(&key, &[&diff_id]);
            let last = state.layers.last().expect("just added");
            write_cache_later(work, &key, &last.new.packed)?;
            push_history(state, i, false);
            return Ok(StepOutcome { made_layer: true, cached: false, layer_size: Some(size) });
        }
    }
    state.key = chain(&state.key, &[&i.text]);
    push_history(state, i, true);
    Ok(outcome)
}

fn argv(shell: &[String], c: &Command) -> Vec<String> {
    match c {
        Command::Exec(words) => words.clone(),
        Command::Shell(line) => shell.iter().cloned().chain([line.clone()]).collect(),
    }
}

fn push_history(state: &mut State, i: &Instruction, empty: bool) {
    let created_by = match &i.kind {
        Kind::Run(c) => format!("RUN {}", argv(&state.shell, c).join(" ")),
        _ => i.text.clone(),
    };
    let mut h = HistoryBuilder::default()
        .created(time::rfc3339(SystemTime::now()))
        .created_by(created_by)
        .comment("virtlab image build");
    if empty {
        h = h.empty_layer(true);
    }
    if let Ok(h) = h.build() {
        state.history.push(h);
    }
}

fn from(store: &Store, state: &mut State, image: &str, i: &Instruction) -> Result<(), ImageError> {
    if image == "scratch" {
        state.key = sha256_hex(b"scratch");
        return Ok(());
    }
    let base = store.resolve(image).map_err(|e| match e {
        ImageError::NotFound { .. } => bad(i, format!("the base image {image} is not in the store: import or load it first (`virtlab image ls` lists what is there)")),
        other => other,
    })?;
    let dirs = store.layer_dirs(&base)?;
    for (l, tree) in base.manifest.layers().iter().zip(dirs) {
        let diff_id =
            tree.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let size = store.layer_info(&diff_id)?.size;
        let packed = PackedLayer { digest: l.digest().digest().to_string(), size: l.size(), diff_id };
        state.layers.push(StepLayer {
            new: NewLayer { blob: store.blob_path(&packed.digest), packed, unpacked: None, size },
            tree,
        });
    }
    state.config = base.config.config().clone().unwrap_or_default();
    state.history = base.config.history().clone().unwrap_or_default();
    state.key = base.id.clone();
    Ok(())
}

/// Packs `dir` as a layer blob in the work directory.
fn pack(work: &TempDir, dir: &Path, kind: TreeKind) -> Result<(PackedLayer, PathBuf), ImageError> {
    let n = fs::read_dir(work.path()).map(Iterator::count).unwrap_or(0);
    let blob = work.path().join(format!("blob-{n}"));
    let file = File::create(&blob).map_err(io_err(format!("create {}", blob.display())))?;
    let (_, packed) = layer::pack_dir(dir, kind, file)?;
    Ok((packed, blob))
}

/// Adds a packed layer to the image being built: unpacked in the work
/// directory unless the store has it. Returns its content size.
fn add_layer(
    store: &Store,
    work: &TempDir,
    state: &mut State,
    packed: PackedLayer,
    blob: PathBuf,
    progress: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<u64, ImageError> {
    let new = store.prepare_layer(packed, blob, work)?;
    let dir = store.layer_dir(&new.packed.diff_id).join("fs");
    progress(BuildEvent::Explain(match &new.unpacked {
        Some(_) => format!(
            "layer sha256:{} is new: unpacked once, to be {} once the image is stored",
            new.packed.diff_id,
            dir.display()
        ),
        None => format!(
            "layer sha256:{} is in the store already ({}): reused, not unpacked again",
            new.packed.diff_id,
            dir.display()
        ),
    }));
    let tree = match &new.unpacked {
        Some(dir) => dir.join("fs"),
        None => store.layer_dir(&new.packed.diff_id).join("fs"),
    };
    let size = new.size;
    state.layers.push(StepLayer { new, tree });
    Ok(size)
}

fn cache_lookup(store: &Store, key: &str) -> Option<CacheEntry> {
    let bytes = fs::read(store.root().join("cache").join(format!("{key}.json"))).ok()?;
    let entry: CacheEntry = serde_json::from_slice(&bytes).ok()?;
    // Only while the store still has the layer (removing every image that
    // used it frees it).
    (store.layer_info(&entry.diff_id).is_ok() && store.blob_path(&entry.digest).exists()).then_some(entry)
}

/// Notes a cache entry to write once the build is committed.
fn write_cache_later(work: &TempDir, key: &str, packed: &PackedLayer) -> Result<(), ImageError> {
    let dir = work.path().join("cache");
    fs::create_dir_all(&dir).map_err(io_err("create the build cache"))?;
    let entry = CacheEntry { diff_id: packed.diff_id.clone(), digest: packed.digest.clone(), size: packed.size };
    fs::write(dir.join(format!("{key}.json")), serde_json::to_vec(&entry).unwrap_or_default())
        .map_err(io_err("write the build cache"))
}

/// Runs a `RUN` step in a container over the layers so far; returns the
/// layer its changes make.
fn run_step(
    store: &Store,
    work: &TempDir,
    state: &State,
    opts: &BuildOptions,
    i: &Instruction,
    c: &Command,
    progress: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<(PackedLayer, PathBuf), ImageError> {
    let lower: Vec<PathBuf> = state.layers.iter().rev().map(|l| l.tree.clone()).collect();
    let workdir = state.config.working_dir().clone().unwrap_or_else(|| "/".into());
    let prepared = run::prepare_stack(store, lower, Some(&workdir), None)?;
    let argv = argv(&state.shell, c);
    let mut cfg = ContainerConfig::new(&prepared.mount_point, argv.clone());
    cfg.layers = Some(prepared.layers.clone());
    cfg.workdir = PathBuf::from(&workdir);
    cfg.env = state
        .config
        .env()
        .clone()
        .unwrap_or_else(|| vec![DEFAULT_PATH.to_string()])
        .iter()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    cfg.env.extend(state.args.iter().map(|(k, v)| (k.clone(), v.clone())));
    cfg.stdio = opts.stdio;
    cfg.forward_signals = true;
    if let Some(u) = state.config.user().as_deref().filter(|u| !u.is_empty()) {
        cfg.user = Some(User::parse(u).map_err(|_| bad(i, format!("USER {u}: RUN steps take a numeric UID[:GID]")))?);
    }
    progress(BuildEvent::Explain(format!(
        "a container runs {argv:?} on the {} layers so far (overlayfs, top first: {}), its changes going to a fresh upper directory {}",
        prepared.layers.lower.len(),
        prepared.layers.lower.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
        prepared.layers.upper().display()
    )));
    let outcome =
        crate::runtime::launch::run(&cfg).map_err(|e| bad(i, format!("the RUN container could not start: {e}")))?;
    if outcome.exit_code() != 0 {
        let mut output = String::from_utf8_lossy(&outcome.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&outcome.stderr));
        let tail: Vec<&str> = output.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
        let shown = if matches!(opts.stdio, Stdio::Capture) && !tail.is_empty() {
            format!("; its last output:\n{}", tail.join("\n"))
        } else {
            String::new()
        };
        return Err(bad(i, format!("the command {argv:?} exited with status {}{shown}", outcome.exit_code())));
    }
    let kind = match outcome
        .uid_map
        .as_deref()
        .zip(outcome.gid_map.as_deref())
        .and_then(|(u, g)| Some((map_start(u)?, map_start(g)?)))
    {
        Some(((uid_start, count), (gid_start, _))) if uid_start != 0 => {
            TreeKind::ContainerUpper { uid_start, gid_start, count }
        }
        _ => TreeKind::OverlayUpper,
    };
    for deleted in layer::overlay_deletions(&prepared.layers.upper()) {
        let (what, oci) = match deleted.strip_suffix('/') {
            Some(dir) => (
                format!("/{dir} was emptied and refilled: overlayfs marked the directory opaque (xattr trusted.overlay.opaque=y)"),
                format!("{dir}/{}", layer::OPAQUE_MARKER),
            ),
            None => (
                format!("/{deleted} was deleted: overlayfs left a whiteout, a character device 0/0, in the upper directory"),
                whiteout_name(&deleted),
            ),
        };
        progress(BuildEvent::Explain(format!(
            "{what}; the layer stores it as {oci}, and the file stays in the layer below"
        )));
    }
    pack(work, &prepared.layers.upper(), kind)
}

/// The OCI whiteout entry for a deleted `path` (`dir/.wh.name`).
fn whiteout_name(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{}{name}", layer::WHITEOUT_PREFIX),
        None => format!("{}{path}", layer::WHITEOUT_PREFIX),
    }
}

/// The host start and count of a `0 START COUNT` id map line.
fn map_start(line: &str) -> Option<(u32, u32)> {
    let mut w = line.split_whitespace().skip(1);
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

/// Writes the image: its config, its layers (moved into the store), its name.
fn commit(store: &Store, opts: &BuildOptions, state: State) -> Result<Image, ImageError> {
    let diff_ids: Vec<String> = state.layers.iter().map(|l| format!("sha256:{}", l.new.packed.diff_id)).collect();
    let mut config = state.config;
    if config.env().is_none() {
        config.set_env(Some(vec![DEFAULT_PATH.to_string()]));
    }
    let image_config: ImageConfiguration = ImageConfigurationBuilder::default()
        .created(time::rfc3339(SystemTime::now()))
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config)
        .rootfs(RootFsBuilder::default().typ("layers").diff_ids(diff_ids).build().map_err(spec)?)
        .history(state.history)
        .build()
        .map_err(spec)?;
    let layers: Vec<NewLayer> = state.layers.into_iter().map(|l| l.new).collect();
    let name = match &opts.tag {
        Some(n) => n.clone(),
        None => {
            // An untagged build still needs an index entry to exist: it is
            // named after its config and can be tagged later.
            format!("localhost/build:{}", &sha256_hex(&serde_json::to_vec(&image_config).unwrap_or_default())[..12])
                .parse()?
        }
    };
    // A rebuild that changed nothing gives the image the name already has,
    // as Docker's does (only the times would differ).
    if let Ok(existing) = store.resolve(&name.to_string()) {
        if without_times(&existing.config) == without_times(&image_config) {
            return Ok(existing);
        }
    }
    store.commit(&name, &image_config, layers)
}

/// An image config as JSON without its times (the image's and each step's).
fn without_times(config: &ImageConfiguration) -> serde_json::Value {
    let mut v = serde_json::to_value(config).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("created");
        if let Some(history) = o.get_mut("history").and_then(|h| h.as_array_mut()) {
            for h in history {
                if let Some(h) = h.as_object_mut() {
                    h.remove("created");
                }
            }
        }
    }
    v
}
