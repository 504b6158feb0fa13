//! Looking at images: `image history`, `image inspect` and `system df`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{json, Value};

use super::store::{strip_sha256, Image, Store};
use super::{time, ImageError};

/// One line of `image history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    /// The image ID on the top line, `None` (`<missing>`) below it, as
    /// Docker shows a history whose intermediate images are not stored.
    pub id: Option<String>,
    pub created: Option<String>,
    pub created_by: String,
    /// Bytes of file content the step added (0 for steps without a layer).
    pub size: u64,
    pub comment: String,
    /// Whether the step made a layer (RUN, COPY) or only metadata (ENV, CMD).
    pub empty_layer: bool,
    /// The layer's diff ID (hex) for steps that made one.
    pub layer: Option<String>,
}

/// The image's history, newest step first, each step with the size of the
/// layer it made.
pub fn history(store: &Store, image: &Image) -> Result<Vec<HistoryRow>, ImageError> {
    let diff_ids = image.diff_ids();
    let mut layers = diff_ids.iter();
    let mut rows = Vec::new();
    let entries = image.config.history().clone().unwrap_or_default();
    for h in &entries {
        let empty = h.empty_layer().unwrap_or(false);
        let layer = if empty { None } else { layers.next().cloned() };
        let size = match &layer {
            Some(d) => store.layer_info(d)?.size,
            None => 0,
        };
        rows.push(HistoryRow {
            id: None,
            created: h.created().clone(),
            created_by: h.created_by().clone().unwrap_or_default(),
            size,
            comment: h.comment().clone().unwrap_or_default(),
            empty_layer: empty,
            layer,
        });
    }
    // Layers the history does not account for (an image made without one).
    for d in layers {
        rows.push(HistoryRow {
            id: None,
            created: None,
            created_by: String::new(),
            size: store.layer_info(d)?.size,
            comment: String::new(),
            empty_layer: false,
            layer: Some(d.clone()),
        });
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = Some(image.id.clone());
    }
    Ok(rows)
}

/// The image's total size: the content of all its layers.
pub fn image_size(store: &Store, image: &Image) -> Result<u64, ImageError> {
    image.diff_ids().iter().map(|d| store.layer_info(d).map(|i| i.size)).sum()
}

/// `image inspect`'s JSON for one image, with Docker's field names where
/// Docker has the field (`Id`, `RepoTags`, `Created`, `Config`, `RootFS`,
/// `Size`, ...) and the OCI descriptors beside them.
pub fn inspect(store: &Store, image: &Image) -> Result<Value, ImageError> {
    let tags: Vec<String> = store
        .images()?
        .iter()
        .filter(|i| i.id == image.id)
        .filter_map(|i| i.name.as_ref().map(|n| n.to_string()))
        .collect();
    let mut config = serde_json::to_value(image.config.config()).unwrap_or(Value::Null);
    // Every field of Docker's image config is there, null when the image
    // does not set it, so `--format '{{.Config.Cmd}}'` works on any image.
    if let Some(o) = config.as_object_mut() {
        for key in ["User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal"]
        {
            o.entry(key).or_insert(Value::Null);
        }
    } else {
        config = json!({ "User": null, "ExposedPorts": null, "Env": null, "Entrypoint": null, "Cmd": null, "Volumes": null, "WorkingDir": null, "Labels": null, "StopSignal": null });
    }
    let layers: Vec<String> = image.config.rootfs().diff_ids().clone();
    Ok(json!({
        "Id": format!("sha256:{}", image.id),
        "RepoTags": tags,
        "Created": image.config.created(),
        "Author": image.config.author(),
        "Architecture": image.config.architecture().to_string(),
        "Os": image.config.os().to_string(),
        "Config": config,
        "RootFS": { "Type": image.config.rootfs().typ(), "Layers": layers },
        "Size": image_size(store, image)?,
        "History": image.config.history(),
        "Manifest": {
            "Digest": format!("sha256:{}", image.manifest_digest),
            "MediaType": "application/vnd.oci.image.manifest.v1+json",
            "Layers": image.manifest.layers(),
        },
        "Store": {
            "Layout": store.layout(),
            "LayerDirs": store.layer_dirs(image)?,
        },
    }))
}

/// `system df`: what the images take on disk, and how much of it layers
/// shared between images save.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Distinct images (by ID).
    pub images: usize,
    /// Untagged images (not counted as active).
    pub dangling: usize,
    /// Images a container (running or not) stands on.
    pub active: usize,
    /// Bytes in layers no container stands on: what removing every image
    /// without a container would free.
    pub unused: u64,
    /// Unpacked layers on disk.
    pub layers: usize,
    /// Of those, the layers more than one image stands on.
    pub shared_layers: usize,
    /// Bytes of layer content on disk (each layer once).
    pub size: u64,
    /// What the same images would take if none shared a layer.
    pub size_unshared: u64,
    /// Bytes only untagged images use: what removing them frees.
    pub reclaimable: u64,
    /// Per image, Docker's `system df -v` columns.
    pub per_image: Vec<ImageUsage>,
}

/// One image's row of `system df -v`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageUsage {
    pub name: Option<String>,
    pub id: String,
    pub created: Option<String>,
    pub size: u64,
    /// Bytes in layers another image also uses.
    pub shared_size: u64,
    /// Bytes in layers only this image uses.
    pub unique_size: u64,
}

/// Adds up the store's disk use.
pub fn disk_usage(store: &Store) -> Result<DiskUsage, ImageError> {
    let images = store.images()?;
    let mut by_id: BTreeMap<&str, &Image> = BTreeMap::new();
    let mut named: BTreeMap<&str, bool> = BTreeMap::new();
    for i in &images {
        by_id.entry(&i.id).or_insert(i);
        *named.entry(&i.id).or_default() |= i.name.is_some();
    }
    let mut users: BTreeMap<String, usize> = BTreeMap::new();
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let mut named_layers: BTreeMap<String, bool> = BTreeMap::new();
    for (id, image) in &by_id {
        for d in image.diff_ids() {
            *users.entry(d.clone()).or_default() += 1;
            *named_layers.entry(d.clone()).or_default() |= named[id];
            if !sizes.contains_key(&d) {
                sizes.insert(d.clone(), store.layer_info(&d)?.size);
            }
        }
    }
    let (used_images, used_layers) = store.in_use();
    let mut usage = DiskUsage {
        images: by_id.len(),
        active: by_id.keys().filter(|id| used_images.contains(**id)).count(),
        unused: sizes.iter().filter(|(d, _)| !used_layers.contains(*d)).map(|(_, s)| s).sum(),
        dangling: named.values().filter(|n| !**n).count(),
        layers: sizes.len(),
        shared_layers: users.values().filter(|n| **n > 1).count(),
        size: sizes.values().sum(),
        size_unshared: users.iter().map(|(d, n)| sizes[d] * *n as u64).sum(),
        reclaimable: named_layers.iter().filter(|(_, n)| !**n).map(|(d, _)| sizes[d]).sum(),
        per_image: Vec::new(),
    };
    for image in &images {
        let (mut shared, mut unique) = (0, 0);
        for d in image.diff_ids() {
            if users[&d] > 1 {
                shared += sizes[&d];
            } else {
                unique += sizes[&d];
            }
        }
        usage.per_image.push(ImageUsage {
            name: image.name.as_ref().map(|n| n.to_string()),
            id: image.id.clone(),
            created: image.config.created().clone(),
            size: shared + unique,
            shared_size: shared,
            unique_size: unique,
        });
    }
    Ok(usage)
}

/// "2 minutes ago" for an RFC 3339 time, "N/A" if there is none.
pub fn created_ago(created: Option<&str>) -> String {
    created.and_then(time::parse_rfc3339).map_or_else(|| "N/A".into(), |t| time::ago(t, SystemTime::now()))
}

/// A size as Docker prints it (`1.234MB`, `4.1kB`: decimal units, four
/// significant digits).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    // Go's %.4g: four significant digits, trailing zeros dropped.
    let int_digits = if v >= 100.0 {
        3
    } else if v >= 10.0 {
        2
    } else {
        1
    };
    let s = format!("{v:.*}", 4 - int_digits);
    let trimmed = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    format!("{trimmed}{}", UNITS[unit])
}

/// The hex of a `sha256:` digest.
pub fn hex_of(digest: &str) -> &str {
    strip_sha256(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_prints_them() {
        for (b, s) in [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (1234, "1.234kB"),
            (4_404_019, "4.404MB"),
            (12_345_678, "12.35MB"),
            (123_456_789, "123.5MB"),
            (1_500_000_000, "1.5GB"),
        ] {
            assert_eq!(human_size(b), s, "{b}");
        }
    }
}
