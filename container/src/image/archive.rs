//! `image save` and `image load`: images as OCI archives, a tar of an OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/...`), the format
//! `skopeo copy oci-archive:FILE` and `podman save --format oci-archive`
//! write and `podman load` reads.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType, OciLayoutBuilder,
    ANNOTATION_REF_NAME,
};
use tar::{Builder, Header};

use super::layer::PackedLayer;
use super::store::{descriptor, strip_sha256, Image, Store, TempDir};
use super::{io_err, spec_err};
use super::{ImageError, ImageName};

/// containerd's (and Docker's) annotation for the full image name, which
/// it sets beside a `ref.name` that holds only the tag.
const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

/// Writes the images `names` name, with their blobs, as one OCI archive.
pub fn save(store: &Store, names: &[String], out: impl Write) -> Result<Vec<Image>, ImageError> {
    let images: Vec<Image> = names.iter().map(|n| store.resolve(n)).collect::<Result<_, _>>()?;
    let mut manifests = Vec::new();
    let mut blobs = BTreeSet::new();
    for image in &images {
        let size = fs::metadata(store.blob_path(&image.manifest_digest)).map_err(io_err("read the manifest"))?.len();
        manifests.push(descriptor(MediaType::ImageManifest, size, &image.manifest_digest, image.name.as_ref())?);
        blobs.insert(image.manifest_digest.clone());
        blobs.insert(image.id.clone());
        blobs.extend(image.manifest.layers().iter().map(|l| l.digest().digest().to_string()));
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(spec_err("index.json"))?;
    let layout = OciLayoutBuilder::default().image_layout_version("1.0.0").build().map_err(spec_err("oci-layout"))?;
    let mut tar = Builder::new(out);
    let failed = io_err("write the archive");
    append_bytes(&mut tar, "oci-layout", &serde_json::to_vec(&layout).unwrap_or_default()).map_err(failed)?;
    append_bytes(&mut tar, "index.json", &serde_json::to_vec(&index).unwrap_or_default())
        .map_err(io_err("write the archive"))?;
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        tar.append_data(&mut h, dir, io::empty()).map_err(io_err("write the archive"))?;
    }
    for hex in &blobs {
        let path = store.blob_path(hex);
        let mut file = File::open(&path).map_err(io_err(format!("read {}", path.display())))?;
        tar.append_file(format!("blobs/sha256/{hex}"), &mut file).map_err(io_err("write the archive"))?;
    }
    tar.into_inner().map_err(io_err("write the archive"))?.flush().map_err(io_err("write the archive"))?;
    Ok(images)
}

fn append_bytes(tar: &mut Builder<impl Write>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(bytes.len() as u64);
    h.set_mtime(0);
    tar.append_data(&mut h, path, bytes)
}

/// Loads every image of the OCI archive `input` (plain or gzip'd) into the
/// store, checking every blob's digest. Returns the images loaded.
pub fn load(store: &Store, input: impl Read) -> Result<Vec<Image>, ImageError> {
    let work = store.temp_dir("load")?;
    let layout = work.path().join("layout");
    extract_layout(input, &layout)?;
    let index_path = layout.join("index.json");
    if !index_path.exists() {
        let reason = if layout.join("manifest.json").exists() {
            "it is a Docker archive (manifest.json, no index.json); save it as an OCI archive (`podman save --format oci-archive`, or `skopeo copy docker-archive:IN oci-archive:OUT`)"
        } else {
            "it has no index.json, so it is not an OCI image layout"
        };
        return Err(ImageError::Corrupt { what: "the archive".into(), reason: reason.into() });
    }
    let index_bytes = fs::read(&index_path).map_err(io_err("read the archive's index.json"))?;
    let index = ImageIndex::from_reader(&index_bytes[..]).map_err(spec_err("the archive's index.json"))?;
    let mut loaded = Vec::new();
    for desc in manifests_of(&layout, store, &index)? {
        loaded.push(load_one(store, &layout, &desc, &work)?);
    }
    if loaded.is_empty() {
        return Err(ImageError::Corrupt { what: "the archive".into(), reason: "its index.json lists no image".into() });
    }
    Ok(loaded)
}

/// Extracts the parts of an OCI layout from a tar: `oci-layout`,
/// `index.json`, `manifest.json` (to recognise a Docker archive) and
/// `blobs/ALG/HEX`, each blob checked against its name. Nothing else is
/// written, so no entry can land outside `dest`.
fn extract_layout(input: impl Read, dest: &Path) -> Result<(), ImageError> {
    let mut input = BufReader::new(input);
    let gzipped = {
        use std::io::BufRead;
        input.fill_buf().map_err(io_err("read the archive"))?.starts_with(&[0x1f, 0x8b])
    };
    let reader: Box<dyn Read> = if gzipped { Box::new(GzDecoder::new(input)) } else { Box::new(input) };
    let corrupt = |e: io::Error| ImageError::Corrupt {
        what: "the archive".into(),
        reason: format!("{e} (is it a tar file, and whole?)"),
    };
    fs::create_dir_all(dest.join("blobs/sha256")).map_err(io_err("create a work directory"))?;
    let mut archive = tar::Archive::new(reader);
    let mut entries = 0;
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        entries += 1;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(corrupt)?.into_owned();
        let parts: Vec<String> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let rel = match parts.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["oci-layout"] | ["index.json"] | ["manifest.json"] => PathBuf::from(&parts[0]),
            ["blobs", "sha256", hex]
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
            {
                PathBuf::from(format!("blobs/sha256/{hex}"))
            }
            _ => continue,
        };
        let target = dest.join(&rel);
        let mut out = File::create(&target).map_err(io_err(format!("create {}", target.display())))?;
        let mut hashed = super::digest::HashWriter::new(&mut out);
        io::copy(&mut entry, &mut hashed).map_err(corrupt)?;
        let (_, found, _) = hashed.finish();
        if let Some(hex) = rel.strip_prefix("blobs/sha256").ok().and_then(|p| p.to_str()) {
            if found != hex {
                return Err(ImageError::Corrupt {
                    what: "the archive".into(),
                    reason: format!("its blob sha256:{hex} does not match its digest (it hashes to sha256:{found}): the archive is damaged or was cut short; save or copy it again"),
                });
            }
        }
    }
    if entries == 0 {
        return Err(ImageError::Corrupt { what: "the archive".into(), reason: "it is empty".into() });
    }
    Ok(())
}

/// The manifests an index lists, following nested indexes (a multi-platform
/// image) to the linux/amd64 one.
fn manifests_of(layout: &Path, store: &Store, index: &ImageIndex) -> Result<Vec<Descriptor>, ImageError> {
    let mut out = Vec::new();
    for d in index.manifests() {
        match d.media_type() {
            MediaType::ImageManifest => out.push(d.clone()),
            MediaType::ImageIndex => {
                let nested = ImageIndex::from_reader(&read_verified(layout, store, d)?[..])
                    .map_err(spec_err("a nested index"))?;
                let pick = nested.manifests().iter().find(|m| {
                    m.platform()
                        .as_ref()
                        .is_none_or(|p| p.architecture().to_string() == "amd64" && p.os().to_string() == "linux")
                });
                let Some(m) = pick else {
                    return Err(ImageError::Corrupt {
                        what: "the archive".into(),
                        reason: "it holds no linux/amd64 image".into(),
                    });
                };
                let mut m = m.clone();
                m.set_annotations(d.annotations().clone());
                out.push(m);
            }
            other => {
                let mt = other.to_string();
                if mt.contains("manifest") {
                    out.push(d.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Where blob `d` of the archive is: in the extracted layout, or, once an
/// earlier image of the same archive moved it there, in the store.
fn blob_file(layout: &Path, d: &Descriptor) -> PathBuf {
    layout.join("blobs/sha256").join(d.digest().digest())
}

fn blob_in(layout: &Path, store: &Store, d: &Descriptor) -> PathBuf {
    let path = blob_file(layout, d);
    if path.exists() {
        path
    } else {
        store.blob_path(d.digest().digest())
    }
}

/// A blob the archive must hold, read whole; the digest was checked when
/// it was extracted.
fn read_verified(layout: &Path, store: &Store, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
    if d.digest().algorithm().to_string() != "sha256" {
        return Err(ImageError::Corrupt {
            what: "the archive".into(),
            reason: format!("blob {} uses a digest other than sha256", d.digest()),
        });
    }
    let path = blob_in(layout, store, d);
    fs::read(&path).map_err(|_| ImageError::Corrupt {
        what: "the archive".into(),
        reason: format!("it lacks blob {} (truncated?)", d.digest()),
    })
}

fn load_one(store: &Store, layout: &Path, desc: &Descriptor, work: &TempDir) -> Result<Image, ImageError> {
    let manifest_json = read_verified(layout, store, desc)?;
    let manifest = ImageManifest::from_reader(&manifest_json[..]).map_err(spec_err("the archive's manifest"))?;
    let config_json = read_verified(layout, store, manifest.config())?;
    let config = ImageConfiguration::from_reader(&config_json[..]).map_err(spec_err("the archive's image config"))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(ImageError::Corrupt {
            what: "the archive's image".into(),
            reason: format!("its manifest lists {} layers and its config {}", manifest.layers().len(), diff_ids.len()),
        });
    }
    let mut blobs = vec![(blob_in(layout, store, manifest.config()), manifest.config().digest().digest().to_string())];
    let mut layers = Vec::new();
    for (l, diff_id) in manifest.layers().iter().zip(diff_ids) {
        // It names the layer's directory in the store: a path or a short
        // string there would lead out of it.
        let hex = diff_id.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(ImageError::Corrupt {
                what: "the archive's image config".into(),
                reason: format!("its layer diff ID {diff_id:?} is not sha256: and 64 hex digits"),
            });
        }
        let path = blob_in(layout, store, l);
        if !path.exists() {
            return Err(ImageError::Corrupt {
                what: "the archive".into(),
                reason: format!("it lacks blob {} (truncated?)", l.digest()),
            });
        }
        let packed = PackedLayer {
            digest: l.digest().digest().to_string(),
            size: l.size(),
            diff_id: strip_sha256(diff_id).to_string(),
        };
        layers.push(store.prepare_layer(packed, path.clone(), work)?);
        blobs.push((path, l.digest().digest().to_string()));
    }
    let name = name_of(desc);
    store.commit_loaded(name.as_ref(), &manifest_json, blobs, layers)
}

/// The image name an archive's entry carries: containerd's full-name
/// annotation, else `ref.name` when it is a whole name (not just a tag).
fn name_of(desc: &Descriptor) -> Option<ImageName> {
    let a = desc.annotations().as_ref()?;
    if let Some(n) = a.get(CONTAINERD_IMAGE_NAME).and_then(|n| n.parse().ok()) {
        return Some(n);
    }
    let r = a.get(ANNOTATION_REF_NAME)?;
    if r.contains('/') {
        r.parse().ok()
    } else {
        None
    }
}
