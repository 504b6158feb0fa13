//! What `image ls`, `image history`, `image inspect` and `system df` print:
//! Docker's columns, `-q`, `--no-trunc` and `--format`.

use anyhow::bail;
use serde_json::{json, Value};
use virtlab_container::image::inspect::{self, created_ago, human_size};
use virtlab_container::image::{template, ImageError, ImageName, Store};

use super::LsArgs;

/// A table with left-aligned columns three spaces apart, as Docker prints.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", table_text(headers, rows));
}

/// The text of [`print_table`]'s table, one line each for the headers and
/// every row.
pub(crate) fn table_text(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   "));
            }
        }
        text.push_str(s.trim_end());
        text.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    text
}

/// Prints `rows` (JSON objects) with `format`: `json` for one object per
/// line, a Go template per row, or `None`/`table` for the table `table` draws.
pub(crate) fn print_rows(rows: &[Value], format: Option<&str>, table: impl FnOnce()) -> anyhow::Result<()> {
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

pub(super) fn id_text(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        format!("sha256:{id}")
    } else {
        id[..12].to_string()
    }
}

pub(super) fn ls(store: &Store, args: &LsArgs) -> anyhow::Result<u8> {
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

pub(super) fn history(
    store: &Store,
    name: &str,
    no_trunc: bool,
    quiet: bool,
    format: Option<&str>,
) -> anyhow::Result<u8> {
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

pub(super) fn inspect_images(store: &Store, names: &[String], format: Option<&str>) -> anyhow::Result<u8> {
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

pub(super) fn df(store: &Store, verbose: bool, format: Option<&str>) -> anyhow::Result<u8> {
    let usage = inspect::disk_usage(store)?;
    if format == Some("json") {
        println!("{}", serde_json::to_string_pretty(&usage)?);
        return Ok(0);
    }
    if let Some(f) = format.filter(|f| *f != "table") {
        bail!("--format takes table or json, not {f:?}");
    }
    let saved = usage.size_unshared.saturating_sub(usage.size);
    let containers = virtlab_container::engine::Container::list(store.root())?;
    let running: Vec<bool> =
        containers.iter().map(|c| matches!(c.status(), virtlab_container::engine::Status::Up { .. })).collect();
    let sizes: Vec<u64> = containers.iter().map(|c| c.size()).collect();
    let container_size: u64 = sizes.iter().sum();
    let stopped_size: u64 = sizes.iter().zip(&running).filter(|(_, r)| !**r).map(|(s, _)| s).sum();
    let reclaim = |part: u64, whole: u64| {
        let pct = (part * 100).checked_div(whole).unwrap_or(0);
        format!("{} ({pct}%)", human_size(part))
    };
    // Images: ACTIVE ones have a container; the layers of the others are
    // reclaimable. Containers: the writable layers, reclaimable when stopped.
    print_table(
        &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        &[
            vec![
                "Images".into(),
                usage.images.to_string(),
                usage.active.to_string(),
                human_size(usage.size),
                reclaim(usage.unused, usage.size),
            ],
            vec![
                "Containers".into(),
                containers.len().to_string(),
                running.iter().filter(|r| **r).count().to_string(),
                human_size(container_size),
                reclaim(stopped_size, container_size),
            ],
        ],
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
