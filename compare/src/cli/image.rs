//! `virtlab image ...`, `virtlab images` and `virtlab system df`: the image
//! store, with Docker's command names, columns and exit statuses (0, or 1
//! when the command failed).

use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use virtlab_container::image::inspect::{self, created_ago, human_size};
use virtlab_container::image::{archive, import, template, Image, ImageError, ImageName, Store};

/// Where the image store is: `--root DIR`, else `VIRTLAB_ROOT`, else
/// /var/lib/virtlab.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Image store directory [default: $VIRTLAB_ROOT, else /var/lib/virtlab]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
}

impl StoreArgs {
    fn open(&self) -> anyhow::Result<Store> {
        let root = self.root.clone().unwrap_or_else(virtlab_container::image::default_root);
        Ok(Store::open(root)?)
    }
}

/// `virtlab image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: ImageCommand,
}

/// Image subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Make a one-layer image from a root file system: a directory, or a
    /// tar archive (plain or gzip'd). Prints the new image's ID.
    ///
    /// Examples:
    ///   virtlab container rootfs /tmp/rootfs && virtlab image import /tmp/rootfs busybox
    ///   virtlab image import debian-rootfs.tar docker.io/library/debian:bookworm
    #[command(verbatim_doc_comment)]
    Import {
        /// The root file system: a directory or a tar file
        #[arg(value_name = "DIR|TAR")]
        source: PathBuf,
        /// Name for the image, e.g. busybox or localhost/app:1.0
        #[arg(value_name = "NAME[:TAG]")]
        name: String,
    },
    /// Build an image from a Dockerfile: each RUN in a container on the
    /// layers so far, each COPY/ADD from the build context; a second build
    /// of unchanged steps takes them from the cache (CACHED).
    ///
    /// Examples:
    ///   virtlab image build -t course/app:v1 .
    ///   virtlab image build -t app -f Dockerfile.dev --build-arg VERSION=2 ctx/
    #[command(verbatim_doc_comment)]
    Build(BuildArgs),
    /// List images: repository, tag, ID, when created, size.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show how an image was made: each step, newest first, with the size
    /// of the layer it added (0B for steps that only set metadata).
    History {
        #[arg(value_name = "IMAGE")]
        image: String,
        /// Show whole IDs and commands
        #[arg(long)]
        no_trunc: bool,
        /// Print only the image ID
        #[arg(short, long)]
        quiet: bool,
        /// `table` (default), `json`, or a Go template over each row, e.g. '{{.CreatedBy}}'
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
    },
    /// Print images' JSON descriptions (config, layers, manifest).
    ///
    /// --format takes the Go template forms docker inspect is used with:
    ///   virtlab image inspect --format '{{.Config.Cmd}}' busybox
    ///   virtlab image inspect --format '{{json .Config}}' busybox
    ///   virtlab image inspect --format '{{.RootFS.Layers}}' busybox
    #[command(verbatim_doc_comment)]
    Inspect {
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<String>,
        /// A Go template over each image's JSON
        #[arg(short, long, value_name = "FORMAT")]
        format: Option<String>,
    },
    /// Remove images (a name: that name; an ID: the image and its names),
    /// then every layer and blob no image uses any more.
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<String>,
        /// Remove an image ID even if several names point at it
        #[arg(short, long)]
        force: bool,
    },
    /// Remove untagged images (left behind when a name moved to a newer
    /// image) and the layers only they used.
    Prune {
        /// Do not ask (virtlab never asks; accepted for Docker's habit)
        #[arg(short, long)]
        force: bool,
    },
    /// Give an image another name.
    Tag {
        #[arg(value_name = "SOURCE")]
        source: String,
        #[arg(value_name = "TARGET")]
        target: String,
    },
    /// Write images to an OCI archive (a tar of an OCI image layout), which
    /// skopeo, podman and `virtlab image load` read.
    Save {
        #[arg(value_name = "IMAGE", required = true)]
        images: Vec<String>,
        /// Write to this file [default: standard output, if it is not a terminal]
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Load images from an OCI archive (e.g. from `virtlab image save`,
    /// `podman save --format oci-archive` or `skopeo copy ... oci-archive:F`).
    Load {
        /// Read from this file [default: standard input]
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Print only the loaded images' names or IDs
        #[arg(short, long)]
        quiet: bool,
    },
    /// Fetch an image from a registry: this machine reaches none, so it
    /// says so and how to bring the image instead.
    Pull {
        #[arg(value_name = "NAME[:TAG]")]
        name: String,
    },
}

/// `virtlab image build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context: the directory COPY and ADD read from
    #[arg(value_name = "CONTEXT")]
    context: PathBuf,
    /// Name for the image [default: localhost/build:<id>]
    #[arg(short, long, value_name = "NAME[:TAG]")]
    tag: Option<String>,
    /// The Dockerfile [default: CONTEXT/Dockerfile]
    #[arg(short, long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Set a build argument (ARG), repeatable
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    build_args: Vec<String>,
    /// Run every step, whatever the cache holds
    #[arg(long)]
    no_cache: bool,
    /// Print only the image ID (RUN output is not shown)
    #[arg(short, long)]
    quiet: bool,
    /// Explain each step: the layers stacked, the container that runs RUN
    #[arg(long)]
    explain: bool,
}

/// `virtlab image ls` (and `virtlab images`).
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only this repository (e.g. busybox), or NAME:TAG
    #[arg(value_name = "REPOSITORY[:TAG]")]
    repository: Option<String>,
    /// Print only image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show whole image IDs
    #[arg(long)]
    no_trunc: bool,
    /// `table` (default), `json`, or a Go template over each row, e.g. '{{.Repository}}:{{.Tag}}'
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
}

/// `virtlab images`: `virtlab image ls` under Docker's short name.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    ls: LsArgs,
}

/// `virtlab system`.
#[derive(Debug, Args)]
pub struct SystemArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: SystemCommand,
}

/// System subcommands.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show the disk space images take, and what shared layers save.
    Df {
        /// One line per image, with its shared and unique sizes
        #[arg(short, long)]
        verbose: bool,
        /// `table` (default) or `json`
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
    },
}

/// Runs an image command; errors print as every virtlab error does and
/// exit 1, as Docker's image commands do.
pub fn run(args: ImageArgs) -> anyhow::Result<u8> {
    report(image_command(&args.store, args.command))
}

/// `virtlab images`.
pub fn run_images(args: ImagesArgs) -> anyhow::Result<u8> {
    report(args.store.open().and_then(|s| ls(&s, &args.ls)))
}

/// `virtlab system ...`.
pub fn run_system(args: SystemArgs) -> anyhow::Result<u8> {
    report(match args.command {
        SystemCommand::Df { verbose, format } => args.store.open().and_then(|s| df(&s, verbose, format.as_deref())),
    })
}

fn report(result: anyhow::Result<u8>) -> anyhow::Result<u8> {
    result.or_else(|e| {
        eprintln!("virtlab: error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        Ok(1)
    })
}

fn image_command(store: &StoreArgs, command: ImageCommand) -> anyhow::Result<u8> {
    if let ImageCommand::Pull { name: typed } = &command {
        let name: ImageName = typed.parse()?;
        if name.is_local() {
            // `pull busybox` out of Docker's habit: the name is not sent to
            // any registry here, so do not blame the network for localhost.
            bail!(
                "`{typed}` is a local name ({name}): a name without a registry (or under localhost) is one this \
                 machine gave an image it imported, loaded or built, and no registry serves it; bring the image as a file instead: \
                 `virtlab image load -i FILE.tar` (an OCI archive, e.g. from `skopeo copy` or `podman save --format \
                 oci-archive`), or import a root file system with `virtlab image import DIR {typed}`"
            );
        }
        return Err(ImageError::NoRegistry { registry: name.registry().to_string(), name: name.to_string() }.into());
    }
    let store = store.open()?;
    match command {
        ImageCommand::Import { source, name } => {
            let name: ImageName = name.parse()?;
            let image =
                import::import(&store, &source, &name).with_context(|| format!("importing {}", source.display()))?;
            println!("sha256:{}", image.id);
            Ok(0)
        }
        ImageCommand::Build(args) => build(&store, &args),
        ImageCommand::Ls(args) => ls(&store, &args),
        ImageCommand::History { image, no_trunc, quiet, format } => {
            history(&store, &image, no_trunc, quiet, format.as_deref())
        }
        ImageCommand::Inspect { images, format } => inspect_images(&store, &images, format.as_deref()),
        ImageCommand::Rm { images, force } => remove(&store, &images, force),
        ImageCommand::Prune { .. } => prune(&store),
        ImageCommand::Tag { source, target } => {
            store.tag(&source, &target.parse()?)?;
            Ok(0)
        }
        ImageCommand::Save { images, output } => save(&store, &images, output.as_deref()),
        ImageCommand::Load { input, quiet } => load(&store, input.as_deref(), quiet),
        ImageCommand::Pull { .. } => unreachable!("answered above"),
    }
}

/// A table with left-aligned columns three spaces apart, as Docker prints.
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints `rows` (JSON objects) with `format`: `json` for one object per
/// line, a Go template per row, or `None`/`table` for the table `table` draws.
fn print_rows(rows: &[Value], format: Option<&str>, table: impl FnOnce()) -> anyhow::Result<()> {
    match format {
        None | Some("table") => table(),
        Some("json") => rows.iter().for_each(|r| println!("{r}")),
        Some(t) => {
            let t = t.strip_prefix("table ").unwrap_or(t);
            template::check(t)?;
            for r in rows {
                println!("{}", template::render(t, r)?);
            }
        }
    }
    Ok(())
}

fn id_text(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        format!("sha256:{id}")
    } else {
        id[..12].to_string()
    }
}

fn ls(store: &Store, args: &LsArgs) -> anyhow::Result<u8> {
    let mut images = store.images()?;
    if let Some(filter) = &args.repository {
        let wanted: ImageName = filter.parse()?;
        let with_tag = filter.contains(':') && !filter.ends_with(']');
        images.retain(|i| {
            i.name.as_ref().is_some_and(|n| {
                n.full_repository() == wanted.full_repository() && (!with_tag || n.tag() == wanted.tag())
            })
        });
    }
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for i in &images {
            if seen.insert(i.id.clone()) {
                println!("{}", id_text(&i.id, args.no_trunc));
            }
        }
        return Ok(0);
    }
    let rows: Vec<Value> = images
        .iter()
        .map(|i| {
            let size = inspect::image_size(store, i)?;
            let (repo, tag) = i
                .name
                .as_ref()
                .map_or(("<none>".to_string(), "<none>".to_string()), |n| (n.full_repository(), n.tag().to_string()));
            Ok(json!({
                "Repository": repo, "Tag": tag, "ID": id_text(&i.id, args.no_trunc),
                "CreatedAt": i.config.created(), "CreatedSince": created_ago(i.config.created().as_deref()),
                "Size": human_size(size), "Digest": format!("sha256:{}", i.manifest_digest),
            }))
        })
        .collect::<Result<_, ImageError>>()?;
    print_rows(&rows, args.format.as_deref(), || {
        let cells = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| ["Repository", "Tag", "ID", "CreatedSince", "Size"].iter().map(|k| cells(r, k)).collect())
            .collect();
        print_table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &table);
    })?;
    Ok(0)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn history(store: &Store, name: &str, no_trunc: bool, quiet: bool, format: Option<&str>) -> anyhow::Result<u8> {
    let image = store.resolve(name)?;
    let rows = inspect::history(store, &image)?;
    if quiet {
        for r in &rows {
            println!("{}", r.id.as_deref().map_or("<missing>".into(), |id| id_text(id, no_trunc)));
        }
        return Ok(0);
    }
    let values: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "ID": r.id.as_deref().map_or("<missing>".into(), |id| id_text(id, no_trunc)),
                "CreatedAt": r.created, "CreatedSince": created_ago(r.created.as_deref()),
                "CreatedBy": if no_trunc { r.created_by.clone() } else { truncate(&r.created_by, 45) },
                "Size": human_size(r.size), "Comment": r.comment, "EmptyLayer": r.empty_layer,
                "Layer": r.layer.as_ref().map(|l| format!("sha256:{l}")),
            })
        })
        .collect();
    print_rows(&values, format, || {
        let cells = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
        let table: Vec<Vec<String>> = values
            .iter()
            .map(|r| ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"].iter().map(|k| cells(r, k)).collect())
            .collect();
        print_table(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &table);
    })?;
    Ok(0)
}

fn inspect_images(store: &Store, names: &[String], format: Option<&str>) -> anyhow::Result<u8> {
    let mut docs = Vec::new();
    let mut status = 0;
    for name in names {
        match store.resolve(name) {
            Ok(image) => docs.push(inspect::inspect(store, &image)?),
            Err(e @ ImageError::NotFound { .. }) => {
                eprintln!("virtlab: error: {e}");
                status = 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    match format {
        Some(t) => {
            for d in &docs {
                println!("{}", template::render(t, d)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&docs)?),
    }
    Ok(status)
}

fn remove(store: &Store, names: &[String], force: bool) -> anyhow::Result<u8> {
    let mut status = 0;
    for name in names {
        let result = (|| -> anyhow::Result<()> {
            let image = store.resolve(name)?;
            let is_id = name.parse::<ImageName>().ok().is_none_or(|n| image.name.as_ref() != Some(&n));
            let names = store.images()?.iter().filter(|i| i.id == image.id && i.name.is_some()).count();
            if is_id && names > 1 && !force {
                bail!(
                    "image {} has {names} names; remove them by name, or the image and all its names with --force",
                    image.short_id()
                );
            }
            let removed = store.remove(name)?;
            for n in &removed.untagged {
                println!("Untagged: {n}");
            }
            for id in &removed.deleted {
                println!("Deleted: sha256:{id}");
            }
            Ok(())
        })();
        if let Err(e) = result {
            eprintln!("virtlab: error: {e}");
            status = 1;
        }
    }
    Ok(status)
}

fn save(store: &Store, names: &[String], output: Option<&Path>) -> anyhow::Result<u8> {
    match output {
        Some(path) => {
            // Written beside the target and renamed: a failed save leaves no
            // half archive behind, and never clobbers an old one with it.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let tmp = dir.join(format!(
                ".{}.virtlab-save-{}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            let result = (|| -> anyhow::Result<()> {
                let file = File::create(&tmp).with_context(|| format!("cannot write {}", path.display()))?;
                let mut out = io::BufWriter::new(file);
                archive::save(store, names, &mut out)?;
                out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
                Ok(())
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result?;
        }
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal; use -o FILE or redirect standard output");
            }
            let mut out = io::BufWriter::new(stdout.lock());
            archive::save(store, names, &mut out)?;
            out.flush()?;
        }
    }
    Ok(0)
}

fn load(store: &Store, input: Option<&Path>, quiet: bool) -> anyhow::Result<u8> {
    let images: Vec<Image> = match input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            archive::load(store, file).with_context(|| format!("loading {}", path.display()))?
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("nothing to load: give -i FILE, or pipe an archive into standard input");
            }
            archive::load(store, io::stdin().lock())?
        }
    };
    for image in images {
        match (&image.name, quiet) {
            (Some(n), false) => println!("Loaded image: {n}"),
            (None, false) => println!(
                "Loaded image ID: sha256:{} (no name: `virtlab image tag {} NAME` gives it one)",
                image.id,
                image.short_id()
            ),
            (Some(n), true) => println!("{n}"),
            (None, true) => println!("sha256:{}", image.id),
        }
    }
    Ok(0)
}

fn df(store: &Store, verbose: bool, format: Option<&str>) -> anyhow::Result<u8> {
    let usage = inspect::disk_usage(store)?;
    if format == Some("json") {
        println!("{}", serde_json::to_string_pretty(&usage)?);
        return Ok(0);
    }
    if let Some(f) = format.filter(|f| *f != "table") {
        bail!("--format takes table or json, not {f:?}");
    }
    let saved = usage.size_unshared.saturating_sub(usage.size);
    // ACTIVE counts images a container uses; containers do not outlive a
    // `virtlab container run` yet, so none does, and all is reclaimable.
    let pct = if usage.size == 0 { 0 } else { 100 };
    print_table(
        &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        &[vec![
            "Images".into(),
            usage.images.to_string(),
            "0".into(),
            human_size(usage.size),
            format!("{} ({pct}%)", human_size(usage.size)),
        ]],
    );
    println!();
    println!(
        "Layers: {} on disk, {} shared by more than one image; sharing saves {} (the images would take {} without it).",
        usage.layers,
        usage.shared_layers,
        human_size(saved),
        human_size(usage.size_unshared)
    );
    println!("Build cache: {} RUN steps remembered (their layers are the images' own).", store.cache_entries());
    if usage.dangling > 0 {
        println!(
            "Untagged images: {}, using {} that no named image uses.",
            usage.dangling,
            human_size(usage.reclaimable)
        );
    }
    if verbose {
        println!();
        let rows: Vec<Vec<String>> = usage
            .per_image
            .iter()
            .map(|i| {
                let (repo, tag) = i
                    .name
                    .as_deref()
                    .and_then(|n| n.parse::<ImageName>().ok())
                    .map_or(("<none>".into(), "<none>".into()), |n| (n.full_repository(), n.tag().to_string()));
                vec![
                    repo,
                    tag,
                    i.id[..12].to_string(),
                    created_ago(i.created.as_deref()),
                    human_size(i.size),
                    human_size(i.shared_size),
                    human_size(i.unique_size),
                ]
            })
            .collect();
        print_table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE"], &rows);
    }
    Ok(0)
}

fn build(store: &Store, args: &BuildArgs) -> anyhow::Result<u8> {
    use virtlab_container::image::build::{self, BuildEvent, BuildOptions};
    let mut build_args = std::collections::BTreeMap::new();
    for a in &args.build_args {
        let (k, v) = a.split_once('=').with_context(|| format!("--build-arg {a:?} has no '=': write NAME=VALUE"))?;
        build_args.insert(k.to_string(), v.to_string());
    }
    let opts = BuildOptions {
        dockerfile: args.file.clone().unwrap_or_else(|| args.context.join("Dockerfile")),
        context: args.context.clone(),
        tag: args.tag.as_deref().map(str::parse).transpose()?,
        build_args,
        no_cache: args.no_cache,
        stdio: if args.quiet { virtlab_container::Stdio::Capture } else { virtlab_container::Stdio::Tee },
    };
    let (quiet, explain) = (args.quiet, args.explain);
    let started = std::time::Instant::now();
    let mut progress = |e: BuildEvent<'_>| {
        if quiet {
            return;
        }
        match e {
            BuildEvent::Step { n, total, text } => eprintln!("[{n}/{total}] {text}"),
            BuildEvent::Cached => eprintln!("      CACHED"),
            BuildEvent::Explain(what) if explain => eprintln!("      [explain] {what}"),
            BuildEvent::Explain(_) => {}
            BuildEvent::Done { seconds, layer_size } => match layer_size {
                Some(size) => eprintln!("      DONE {seconds:.2}s, layer {}", human_size(size)),
                None => eprintln!("      DONE {seconds:.2}s (config only, no layer)"),
            },
        }
    };
    let built = build::build(store, &opts, &mut progress)?;
    if quiet {
        println!("sha256:{}", built.image.id);
    } else {
        eprintln!(
            "built sha256:{} in {:.2}s: {} layer steps, {} from the cache",
            built.image.id,
            started.elapsed().as_secs_f64(),
            built.layer_steps,
            built.cached
        );
        if let Some(n) = &built.image.name {
            println!("Successfully tagged {n}");
        }
    }
    Ok(0)
}

fn prune(store: &Store) -> anyhow::Result<u8> {
    let mut freed = 0;
    let mut seen = std::collections::BTreeSet::new();
    for image in store.images()?.into_iter().filter(|i| i.name.is_none()) {
        if !seen.insert(image.id.clone()) {
            continue;
        }
        let removed = store.remove(&image.id)?;
        for id in &removed.deleted {
            println!("Deleted: sha256:{id}");
        }
        freed += removed.freed;
    }
    println!("Total reclaimed space: {}", human_size(freed));
    Ok(0)
}
