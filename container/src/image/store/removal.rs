//! Removal: names and images out of the index, then the garbage no image
//! and no running container uses; and the in-use records that keep a
//! running container's layers.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{read_layer_info, ref_name, Store};
use crate::image::{io_err, ImageError, ImageName};

/// The in-use record in a container's work directory.
const IN_USE: &str = "in-use.json";

#[derive(Debug, Serialize, Deserialize)]
struct InUse {
    image: Option<String>,
    layers: Vec<String>,
}

/// What [`Store::remove`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Names removed.
    pub untagged: Vec<String>,
    /// Image IDs no name refers to any more, deleted.
    pub deleted: Vec<String>,
    /// Bytes of layer content freed, as `system df` counts an image's size
    /// (the compressed blobs beside it go too).
    pub freed: u64,
}

impl Store {
    /// Records, under the lock, that a live container stands on `layers`
    /// (diff IDs) of image `image`: a removal then keeps those layers, and
    /// `image rm` refuses the image without `--force`. The record is a file
    /// in the container's work directory, gone with it (or, if the process
    /// was killed, ignored once its PID is gone).
    pub fn mark_in_use(&self, dir: &Path, image: Option<&str>, layers: &[String]) -> Result<(), ImageError> {
        let _lock = self.lock()?;
        for d in layers {
            // A removal may have taken a layer since the image was resolved.
            read_layer_info(&self.layer_dir(d)).map_err(|_| ImageError::Corrupt {
                what: format!("layer sha256:{d}"),
                reason: "it was removed while the container was being prepared; run it again".into(),
            })?;
        }
        let record = InUse { image: image.map(str::to_string), layers: layers.to_vec() };
        let json = serde_json::to_vec(&record).map_err(|e| io_err("write in-use.json")(e.into()))?;
        fs::write(dir.join(IN_USE), json).map_err(io_err("write in-use.json"))
    }

    /// What live containers stand on: (image IDs, layer diff IDs).
    pub(crate) fn in_use(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let (mut images, mut layers) = (BTreeSet::new(), BTreeSet::new());
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else { return (images, layers) };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let alive = name
                .split('-')
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| Path::new("/proc").join(p.to_string()).exists());
            let record =
                fs::read(entry.path().join(IN_USE)).ok().and_then(|b| serde_json::from_slice::<InUse>(&b).ok());
            if let (true, Some(r)) = (alive, record) {
                images.extend(r.image);
                layers.extend(r.layers);
            }
        }
        // A container of the engine holds its image until it is removed,
        // running or not, as Docker's do.
        for entry in fs::read_dir(self.root.join("containers")).into_iter().flatten().flatten() {
            if let Some(r) =
                fs::read(entry.path().join(IN_USE)).ok().and_then(|b| serde_json::from_slice::<InUse>(&b).ok())
            {
                images.extend(r.image);
                layers.extend(r.layers);
            }
        }
        (images, layers)
    }

    /// Removes the name `what` (or, for an ID, the image and all its names),
    /// then whatever blobs and layers no image refers to any more. Returns
    /// the names removed and the IDs deleted.
    pub fn remove(&self, what: &str) -> Result<Removed, ImageError> {
        self.remove_with(what, false)
    }

    /// [`Store::remove`]; with `force`, also an image a running container
    /// uses (its layers stay until the container is gone).
    pub fn remove_with(&self, what: &str, force: bool) -> Result<Removed, ImageError> {
        let image = self.resolve(what)?;
        let wanted = ImageName::normalized_text(what);
        let by_name = image.name.clone().filter(|n| n.to_string() == wanted);
        let _lock = self.lock()?;
        let last_name =
            by_name.is_none() || self.images()?.iter().filter(|i| i.id == image.id && i.name.is_some()).count() <= 1;
        if !force && last_name && self.in_use().0.contains(&image.id) {
            return Err(ImageError::InUse(what.to_string()));
        }
        let mut index = self.index()?;
        let mut removed = Removed::default();
        let mut kept = Vec::new();
        for d in index.manifests().iter().cloned() {
            let same_manifest = d.digest().digest() == image.manifest_digest;
            let this_entry = match &by_name {
                Some(n) => ref_name(&d).as_deref() == Some(n.to_string().as_str()),
                None => same_manifest,
            };
            if this_entry {
                removed.untagged.extend(ref_name(&d));
            } else {
                kept.push(d);
            }
        }
        if !kept.iter().any(|d| d.digest().digest() == image.manifest_digest) {
            removed.deleted.push(image.id.clone());
        }
        index.set_manifests(kept);
        self.write_index(&index)?;
        removed.freed = self.collect_garbage()?;
        Ok(removed)
    }

    /// Deletes blobs and unpacked layers that no image in the index uses.
    /// Called with the lock held. Returns the layer content freed.
    fn collect_garbage(&self) -> Result<u64, ImageError> {
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for image in self.images()? {
            blobs.insert(image.manifest_digest.clone());
            blobs.insert(image.id.clone());
            blobs.extend(image.manifest.layers().iter().map(|l| l.digest().digest().to_string()));
            layers.extend(image.diff_ids());
        }
        // Layers a running container or build stands on stay, whatever the index says.
        layers.extend(self.in_use().1);
        let mut freed = 0;
        for entry in fs::read_dir(self.layout().join("blobs/sha256")).map_err(io_err("read the blobs"))?.flatten() {
            if !blobs.contains(&*entry.file_name().to_string_lossy()) {
                fs::remove_file(entry.path()).map_err(io_err(format!("remove {}", entry.path().display())))?;
            }
        }
        for entry in fs::read_dir(self.root.join("layers")).map_err(io_err("read the layers"))?.flatten() {
            if !layers.contains(&*entry.file_name().to_string_lossy()) {
                freed += read_layer_info(&entry.path()).map(|i| i.size).unwrap_or(0);
                fs::remove_dir_all(entry.path()).map_err(io_err(format!("remove {}", entry.path().display())))?;
            }
        }
        // Build cache entries whose layer went with the last image using it.
        for entry in fs::read_dir(self.root.join("cache")).into_iter().flatten().flatten() {
            let layer = fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["diff_id"].as_str().map(str::to_string));
            if layer.is_none_or(|d| !layers.contains(&d)) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(freed)
    }
}
