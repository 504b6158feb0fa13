//! The image store: an OCI image layout plus the unpacked layers.
//!
//! ```text
//! ROOT/                       /var/lib/virtlab, or --root / VIRTLAB_ROOT
//!   images/                   an OCI image layout, as skopeo and umoci read it
//!     oci-layout              {"imageLayoutVersion": "1.0.0"}
//!     index.json              one manifest descriptor per name; the name in
//!                             the annotation org.opencontainers.image.ref.name
//!     blobs/sha256/HEX        manifests, configs, gzip'd tar layers
//!   layers/HEX/               one unpacked layer per diff ID, shared by every
//!     fs/                     image that has it: an overlayfs lower directory
//!     layer.json              its diff ID, blob digest and content size
//!   cache/KEY.json            the build cache: a RUN step's key, the layer it made
//!   tmp/PID-N-WHAT/           work in progress, renamed into place when done
//!   lock                      flock(2): one writer of index.json at a time
//! ```
//!
//! Every change is made in `tmp/` and renamed into place, and index.json is
//! rewritten whole and renamed, under the lock, so a reader sees the store
//! before or after a change, never half of it, and a process killed in the
//! middle leaves only its `tmp/` directory, which the next command removes.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{
    Descriptor, DescriptorBuilder, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType,
    OciLayoutBuilder, ANNOTATION_REF_NAME,
};
use serde::{Deserialize, Serialize};

use super::digest::{digest, sha256_hex, HashReader};
use super::layer::{self, PackedLayer};
use super::reference::ImageName;
use super::{io_err, spec_err, ImageError};

mod removal;

pub use removal::Removed;

/// Where the store lives when neither `--root` nor `VIRTLAB_ROOT` says.
pub const DEFAULT_ROOT: &str = "/var/lib/virtlab";

/// The store root: `VIRTLAB_ROOT` if set, else [`DEFAULT_ROOT`].
pub fn default_root() -> PathBuf {
    std::env::var_os("VIRTLAB_ROOT")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from)
}

/// An image store under one root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// One image the index names (or an untagged one).
#[derive(Debug, Clone)]
pub struct Image {
    /// The name the index entry carries; `None` for an untagged image.
    pub name: Option<ImageName>,
    /// Hex digest of the manifest.
    pub manifest_digest: String,
    pub manifest: ImageManifest,
    /// Hex digest of the config: the image ID, as Docker counts it.
    pub id: String,
    pub config: ImageConfiguration,
}

impl Image {
    /// The first 12 hex digits of the ID, as `image ls` shows it.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// The layers' diff IDs (hex), bottom first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.config.rootfs().diff_ids().iter().map(|d| strip_sha256(d).to_string()).collect()
    }
}

/// What the store knows of one unpacked layer (`layers/HEX/layer.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Hex diff ID (SHA-256 of the uncompressed tar).
    pub diff_id: String,
    /// Hex digest of the compressed blob it came from.
    pub blob: String,
    /// Bytes of file content in the layer.
    pub size: u64,
}

/// A layer made in `tmp/`, ready to be committed with an image.
#[derive(Debug)]
pub struct NewLayer {
    pub packed: PackedLayer,
    /// The compressed blob, in the store's `tmp/`.
    pub blob: PathBuf,
    /// The unpacked tree (`fs/` inside) and its `layer.json`, in `tmp/`;
    /// `None` when the store already has the layer.
    pub unpacked: Option<PathBuf>,
    pub size: u64,
}

/// A directory under the store's `tmp/`, removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The lock on the store's index, released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _lock: Flock<File>,
}

pub(crate) fn strip_sha256(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens the store at `root`, creating an empty one if there is none,
    /// and removes what killed commands left in `tmp/`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, ImageError> {
        let store = Store { root: root.into() };
        for dir in [
            store.layout(),
            store.layout().join("blobs/sha256"),
            store.root.join("layers"),
            store.root.join("tmp"),
            store.root.join("cache"),
        ] {
            fs::create_dir_all(&dir).map_err(|source| ImageError::Root { root: store.root.clone(), cause: source })?;
        }
        if !store.layout().join("index.json").exists() {
            let _lock = store.lock()?;
            if !store.layout().join("index.json").exists() {
                let layout = OciLayoutBuilder::default()
                    .image_layout_version("1.0.0")
                    .build()
                    .map_err(spec_err("oci-layout"))?;
                let json = serde_json::to_vec(&layout).map_err(|e| io_err("write oci-layout")(e.into()))?;
                store.write_atomic(&store.layout().join("oci-layout"), &json)?;
                store.write_index(&empty_index()?)?;
            }
        }
        store.clean_stale_temps();
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI image layout directory (`skopeo inspect oci:THIS:NAME`).
    pub fn layout(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The path of blob HEX.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.layout().join("blobs/sha256").join(hex)
    }

    /// The directory of unpacked layer HEX (its tree is `fs/` inside).
    pub fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(diff_id)
    }

    /// Takes the store's lock (waiting for another command to finish).
    pub fn lock(&self) -> Result<StoreLock, ImageError> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("open {}", path.display())))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err(format!("lock {}", path.display()))(e.into()))?;
        Ok(StoreLock { _lock: lock })
    }

    /// A fresh directory under `tmp/`, named after this process so that
    /// the next command can tell it from live work if this one is killed.
    pub fn temp_dir(&self, what: &str) -> Result<TempDir, ImageError> {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = self.root.join("tmp").join(format!("{}-{seq}-{what}", std::process::id()));
        fs::create_dir(&path).map_err(io_err(format!("create {}", path.display())))?;
        Ok(TempDir { path })
    }

    /// Removes `tmp/` entries whose process is gone.
    fn clean_stale_temps(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new("/proc").join(p.to_string()).exists());
            if !alive {
                let _ = fs::remove_dir_all(entry.path()).or_else(|_| fs::remove_file(entry.path()));
            }
        }
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        let tmp = self.root.join("tmp").join(format!(
            "{}-{}-write",
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io_err(format!("write {}", path.display())))
    }

    /// The layout's index.
    pub fn index(&self) -> Result<ImageIndex, ImageError> {
        let path = self.layout().join("index.json");
        // Read whole: the parser reads byte by byte from what it is given.
        let bytes = fs::read(&path).map_err(io_err(format!("read {}", path.display())))?;
        ImageIndex::from_reader(&bytes[..]).map_err(spec_err("index.json"))
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), ImageError> {
        let mut json = serde_json::to_vec_pretty(index).map_err(|e| io_err("write index.json")(e.into()))?;
        json.push(b'\n');
        self.write_atomic(&self.layout().join("index.json"), &json)
    }

    /// Stores `bytes` as a blob (a config or manifest); returns its hex digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, ImageError> {
        let hex = sha256_hex(bytes);
        let path = self.blob_path(&hex);
        if !path.exists() {
            self.write_atomic(&path, bytes)?;
        }
        Ok(hex)
    }

    /// Reads blob HEX whole, checking its digest.
    pub fn read_blob(&self, hex: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(hex);
        let bytes = fs::read(&path).map_err(io_err(format!("read blob sha256:{hex}")))?;
        let found = sha256_hex(&bytes);
        if found != hex {
            return Err(ImageError::DigestMismatch {
                what: path.display().to_string(),
                expected: format!("sha256:{hex}"),
                found: format!("sha256:{found}"),
            });
        }
        Ok(bytes)
    }

    /// Every image in the index, in index order.
    pub fn images(&self) -> Result<Vec<Image>, ImageError> {
        self.index()?.manifests().iter().map(|d| self.image_of(d)).collect()
    }

    fn image_of(&self, desc: &Descriptor) -> Result<Image, ImageError> {
        let name = desc
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REF_NAME))
            .and_then(|n| ImageName::from_stored(n));
        let manifest_digest = desc.digest().digest().to_string();
        let manifest =
            ImageManifest::from_reader(&self.read_blob(&manifest_digest)?[..]).map_err(spec_err("manifest"))?;
        let id = manifest.config().digest().digest().to_string();
        let config = ImageConfiguration::from_reader(&self.read_blob(&id)?[..]).map_err(spec_err("image config"))?;
        Ok(Image { name, manifest_digest, manifest, id, config })
    }

    /// The image a user names: a name (`busybox`, `localhost/app:1`), or an
    /// image ID or a unique prefix of one (at least 4 hex digits).
    pub fn resolve(&self, what: &str) -> Result<Image, ImageError> {
        let images = self.images()?;
        let wanted = ImageName::normalized_text(what);
        if let Some(image) = images.iter().find(|i| i.name.as_ref().is_some_and(|n| n.to_string() == wanted)) {
            return Ok(image.clone());
        }
        let hex = strip_sha256(what);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let ids: BTreeSet<&str> = images.iter().filter(|i| i.id.starts_with(hex)).map(|i| i.id.as_str()).collect();
            match ids.len() {
                1 => return Ok(images.into_iter().find(|i| i.id.starts_with(hex)).expect("just found")),
                0 => {}
                _ => return Err(ImageError::Ambiguous(what.to_string())),
            }
        }
        Err(ImageError::NotFound { name: what.to_string(), root: self.root.clone() })
    }

    /// Makes `layer` (packed into `blob`, a file in `tmp/`) ready to commit:
    /// unpacks it unless the store has it already.
    pub fn prepare_layer(&self, packed: PackedLayer, blob: PathBuf, work: &TempDir) -> Result<NewLayer, ImageError> {
        let existing = self.layer_dir(&packed.diff_id);
        if let Ok(info) = read_layer_info(&existing) {
            return Ok(NewLayer { packed, blob, unpacked: None, size: info.size });
        }
        let dir = work.path().join(format!("layer-{}", &packed.diff_id[..12]));
        fs::create_dir_all(dir.join("fs")).map_err(io_err(format!("create {}", dir.display())))?;
        let file = File::open(&blob).map_err(io_err(format!("read {}", blob.display())))?;
        let unpacked = layer::unpack(file, Some(&packed.diff_id), &dir.join("fs"))?;
        let info =
            LayerInfo { diff_id: packed.diff_id.clone(), blob: packed.digest.clone(), size: unpacked.content_size };
        let json = serde_json::to_vec_pretty(&info).map_err(|e| io_err("write layer.json")(e.into()))?;
        fs::write(dir.join("layer.json"), json).map_err(io_err("write layer.json"))?;
        Ok(NewLayer { packed, blob, unpacked: Some(dir), size: info.size })
    }

    /// The unpacked layers an image stands on, bottom first, checking each
    /// is present (they are unpacked when the image enters the store).
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        image
            .diff_ids()
            .iter()
            .map(|d| {
                let dir = self.layer_dir(d);
                read_layer_info(&dir).map(|_| dir.join("fs")).map_err(|_| ImageError::Corrupt {
                    what: format!("layer sha256:{d}"),
                    reason: "its unpacked directory is missing; remove the image and import or load it again".into(),
                })
            })
            .collect()
    }

    /// What the store knows of unpacked layer HEX.
    pub fn layer_info(&self, diff_id: &str) -> Result<LayerInfo, ImageError> {
        read_layer_info(&self.layer_dir(diff_id))
    }

    /// Commits an image: moves its layers and blobs into place, writes its
    /// config and manifest, and points `name` at it (the image that had the
    /// name before keeps its place in the index, untagged, as Docker's
    /// dangling `<none>` images do).
    pub fn commit(
        &self,
        name: &ImageName,
        config: &ImageConfiguration,
        layers: Vec<NewLayer>,
    ) -> Result<Image, ImageError> {
        let config_json = serde_json::to_vec(config).map_err(|e| io_err("write the image config")(e.into()))?;
        let _lock = self.lock()?;
        let mut descriptors = Vec::new();
        for l in &layers {
            let dest = self.blob_path(&l.packed.digest);
            if !dest.exists() {
                fs::rename(&l.blob, &dest).map_err(io_err(format!("move {} into the store", l.blob.display())))?;
            }
            self.install_layer_locked(l)?;
            descriptors.push(descriptor(MediaType::ImageLayerGzip, l.packed.size, &l.packed.digest, None)?);
        }
        let config_hex = self.put_blob(&config_json)?;
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(MediaType::ImageConfig, config_json.len() as u64, &config_hex, None)?)
            .layers(descriptors)
            .build()
            .map_err(spec_err("manifest"))?;
        let manifest_json = serde_json::to_vec(&manifest).map_err(|e| io_err("write the manifest")(e.into()))?;
        let manifest_hex = self.put_blob(&manifest_json)?;
        let entry = descriptor(MediaType::ImageManifest, manifest_json.len() as u64, &manifest_hex, Some(name))?;
        self.tag_locked(entry, name)?;
        Ok(Image {
            name: Some(name.clone()),
            manifest_digest: manifest_hex,
            manifest,
            id: config_hex,
            config: config.clone(),
        })
    }

    /// Puts a new layer's unpacked tree in place, with the lock held. A
    /// layer that was already in the store when it was prepared may have
    /// been removed since by a concurrent `image rm`; it is unpacked again
    /// from its blob, which by now is in the store.
    fn install_layer_locked(&self, l: &NewLayer) -> Result<(), ImageError> {
        let dest = self.layer_dir(&l.packed.diff_id);
        if read_layer_info(&dest).is_ok() {
            return Ok(());
        }
        let _ = fs::remove_dir_all(&dest);
        if let Some(dir) = &l.unpacked {
            return fs::rename(dir, &dest).map_err(io_err(format!("move {} into the store", dir.display())));
        }
        let work = self.temp_dir("relayer")?;
        let blob = self.blob_path(&l.packed.digest);
        let again = self.prepare_layer(l.packed.clone(), blob, &work)?;
        let dir = again.unpacked.ok_or_else(|| ImageError::Corrupt {
            what: format!("layer sha256:{}", l.packed.diff_id),
            reason: "it vanished while being installed".into(),
        })?;
        fs::rename(&dir, &dest).map_err(io_err(format!("move {} into the store", dir.display())))
    }

    /// Points `name` at the manifest `entry` describes, under the lock.
    fn tag_locked(&self, entry: Descriptor, name: &ImageName) -> Result<(), ImageError> {
        let mut index = self.index()?;
        let name_str = name.to_string();
        let mut manifests: Vec<Descriptor> = Vec::new();
        for mut d in index.manifests().iter().cloned() {
            if ref_name(&d).as_deref() == Some(name_str.as_str()) {
                // The name moves: the old image stays, untagged, unless it is
                // the same manifest or another entry still names it.
                if d.digest() == entry.digest() {
                    continue;
                }
                d.set_annotations(None);
            }
            manifests.push(d);
        }
        manifests.push(entry);
        // One untagged entry per manifest at most, and none for a manifest
        // that also has a name.
        let named: BTreeSet<String> =
            manifests.iter().filter(|d| ref_name(d).is_some()).map(|d| d.digest().to_string()).collect();
        let mut untagged = BTreeSet::new();
        manifests.retain(|d| {
            ref_name(d).is_some()
                || (!named.contains(&d.digest().to_string()) && untagged.insert(d.digest().to_string()))
        });
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// Adds name `to` for the image `from` names.
    pub fn tag(&self, from: &str, to: &ImageName) -> Result<Image, ImageError> {
        let image = self.resolve(from)?;
        let _lock = self.lock()?;
        let bytes = self.read_blob(&image.manifest_digest)?;
        let entry = descriptor(MediaType::ImageManifest, bytes.len() as u64, &image.manifest_digest, Some(to))?;
        self.tag_locked(entry, to)?;
        Ok(Image { name: Some(to.clone()), ..image })
    }

    /// How many steps the build cache holds.
    pub fn cache_entries(&self) -> usize {
        fs::read_dir(self.root.join("cache")).map(|d| d.count()).unwrap_or(0)
    }

    /// Copies blob `hex` of `size` bytes from `source` into the store,
    /// checking digest and size on the way. Returns its path.
    pub fn copy_blob_in(
        &self,
        mut source: impl Read,
        hex: &str,
        size: u64,
        work: &TempDir,
    ) -> Result<PathBuf, ImageError> {
        let dest = self.blob_path(hex);
        if dest.exists() {
            return Ok(dest);
        }
        let tmp = work.path().join(format!("blob-{hex}"));
        let mut reader = HashReader::new(&mut source);
        let mut out = File::create(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
        io::copy(&mut reader, &mut out).map_err(io_err(format!("copy blob sha256:{hex}")))?;
        let (found, n) = reader.finish().map_err(io_err(format!("copy blob sha256:{hex}")))?;
        if found != hex || n != size {
            return Err(ImageError::DigestMismatch {
                what: format!("blob sha256:{hex} ({n} bytes, {size} expected)"),
                expected: format!("sha256:{hex}"),
                found: format!("sha256:{found}"),
            });
        }
        Ok(tmp)
    }

    /// Commits an image whose config and manifest blobs came from elsewhere
    /// (a loaded archive): `blobs` are (path in tmp, hex) for every blob,
    /// layers already unpacked in `layers`.
    pub fn commit_loaded(
        &self,
        name: Option<&ImageName>,
        manifest_json: &[u8],
        blobs: Vec<(PathBuf, String)>,
        layers: Vec<NewLayer>,
    ) -> Result<Image, ImageError> {
        let _lock = self.lock()?;
        for (path, hex) in blobs {
            let dest = self.blob_path(&hex);
            if path != dest && !dest.exists() {
                fs::rename(&path, &dest).map_err(io_err(format!("move {} into the store", path.display())))?;
            }
        }
        for l in &layers {
            self.install_layer_locked(l)?;
        }
        let manifest_hex = self.put_blob(manifest_json)?;
        let entry = descriptor(MediaType::ImageManifest, manifest_json.len() as u64, &manifest_hex, name)?;
        match name {
            Some(name) => self.tag_locked(entry, name)?,
            None => {
                let mut index = self.index()?;
                if !index.manifests().iter().any(|d| d.digest() == entry.digest()) {
                    let mut manifests = index.manifests().clone();
                    manifests.push(entry);
                    index.set_manifests(manifests);
                    self.write_index(&index)?;
                }
            }
        }
        let image = self
            .images()?
            .into_iter()
            .find(|i| i.manifest_digest == manifest_hex && (name.is_none() || i.name.as_ref() == name));
        image.ok_or_else(|| ImageError::Corrupt {
            what: "index.json".into(),
            reason: "the loaded image is not in it".into(),
        })
    }
}

fn read_layer_info(dir: &Path) -> Result<LayerInfo, ImageError> {
    let path = dir.join("layer.json");
    let bytes = fs::read(&path).map_err(io_err(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::Corrupt { what: path.display().to_string(), reason: e.to_string() })
}

fn ref_name(d: &Descriptor) -> Option<String> {
    d.annotations().as_ref().and_then(|a| a.get(ANNOTATION_REF_NAME)).cloned()
}

fn empty_index() -> Result<ImageIndex, ImageError> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .map_err(spec_err("index.json"))
}

/// A descriptor of blob HEX, annotated with `name` if given.
pub(crate) fn descriptor(
    media_type: MediaType,
    size: u64,
    hex: &str,
    name: Option<&ImageName>,
) -> Result<Descriptor, ImageError> {
    let mut b = DescriptorBuilder::default().media_type(media_type).size(size).digest(digest(hex));
    if let Some(name) = name {
        b = b.annotations(
            [(ANNOTATION_REF_NAME.to_string(), name.to_string())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    b.build().map_err(spec_err("descriptor"))
}
