//! The image commands that change the store: `rm`, `prune`, `save`,
//! `load` and `build`.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context};
use virtlab_container::image::inspect::human_size;
use virtlab_container::image::{archive, Image, ImageName, Store};

use super::BuildArgs;

pub(super) fn remove(store: &Store, names: &[String], force: bool) -> anyhow::Result<u8> {
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
            let removed = store.remove_with(name, force)?;
            for n in &removed.untagged {
                println!("Untagged: {n}");
                image_event(store, "untag", &image.id, n);
            }
            for id in &removed.deleted {
                println!("Deleted: sha256:{id}");
                image_event(store, "delete", id, name);
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

pub(super) fn save(store: &Store, names: &[String], output: Option<&Path>) -> anyhow::Result<u8> {
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

pub(super) fn load(store: &Store, input: Option<&Path>, quiet: bool) -> anyhow::Result<u8> {
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
        image_event(store, "load", &image.id, &image.name.as_ref().map(ToString::to_string).unwrap_or_default());
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

pub(super) fn build(store: &Store, args: &BuildArgs) -> anyhow::Result<u8> {
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
    let mut from = false;
    let mut progress = |e: BuildEvent<'_>| {
        if quiet {
            return;
        }
        match e {
            BuildEvent::Step { n, total, text } => {
                from = text.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case("FROM"));
                eprintln!("[{n}/{total}] {text}");
            }
            BuildEvent::Done { seconds, layer_size: None } if from => {
                eprintln!("      DONE {seconds:.2}s (the base image: its layers are this image's first)")
            }
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
    if let Some(n) = &built.image.name {
        image_event(store, "tag", &built.image.id, &n.to_string());
    }
    if quiet {
        println!("sha256:{}", built.image.id);
    } else {
        eprintln!(
            "built sha256:{} in {:.2}s: {} layer step{}, {} from the cache",
            built.image.id,
            started.elapsed().as_secs_f64(),
            built.layer_steps,
            if built.layer_steps == 1 { "" } else { "s" },
            built.cached
        );
        if let Some(n) = &built.image.name {
            println!("Successfully tagged {n}");
        }
    }
    Ok(0)
}

pub(super) fn prune(store: &Store) -> anyhow::Result<u8> {
    let mut freed = 0;
    let mut seen = std::collections::BTreeSet::new();
    for image in store.images()?.into_iter().filter(|i| i.name.is_none()) {
        if !seen.insert(image.id.clone()) {
            continue;
        }
        let removed = match store.remove(&image.id) {
            // A running container's image is not garbage yet.
            Err(virtlab_container::image::ImageError::InUse(_)) => continue,
            other => other?,
        };
        for id in &removed.deleted {
            println!("Deleted: sha256:{id}");
            image_event(store, "delete", id, "");
        }
        freed += removed.freed;
    }
    println!("Total reclaimed space: {}", human_size(freed));
    Ok(0)
}

/// Records an image event (`system events --filter type=image`); the event
/// log is a record, so a failure to write it does not fail the command.
pub(super) fn image_event(store: &Store, action: &str, id: &str, name: &str) {
    use virtlab_container::engine::events::{record, Event};
    let _ = record(store.root(), &Event::now("image", action, &format!("sha256:{id}"), &[("name", name)]));
}
