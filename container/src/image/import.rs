//! `virtlab image import`: a root file system as a one-layer image.

use std::fs::{self, File};
use std::path::Path;
use std::time::SystemTime;

use oci_spec::image::{
    Arch, ConfigBuilder, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os, RootFsBuilder,
};

use super::layer::{self, TreeKind};
use super::store::{Image, Store};
use super::{time, ImageError, ImageName};

/// The search path an image gets when it sets none (Docker's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Imports `source` (a directory, or a tar archive, plain or gzip'd) as
/// the one layer of a new image called `name`.
pub fn import(store: &Store, source: &Path, name: &ImageName) -> Result<Image, ImageError> {
    let meta =
        fs::metadata(source).map_err(|e| ImageError::Io { what: format!("read {}", source.display()), cause: e })?;
    let work = store.temp_dir("import")?;
    let blob = work.path().join("layer.tar.gz");
    let out =
        File::create(&blob).map_err(|e| ImageError::Io { what: format!("create {}", blob.display()), cause: e })?;
    let (_, packed) = if meta.is_dir() {
        layer::pack_dir(source, TreeKind::Plain, out)?
    } else if meta.is_file() {
        let input =
            File::open(source).map_err(|e| ImageError::Io { what: format!("read {}", source.display()), cause: e })?;
        layer::pack_tar(input, out)?
    } else {
        return Err(ImageError::NotATree(source.to_path_buf()));
    };
    let new_layer = store.prepare_layer(packed, blob, &work)?;
    let created_by = format!("virtlab image import {}", source.display());
    let config = one_layer_config(&new_layer.packed.diff_id, &created_by)?;
    store.commit(name, &config, vec![new_layer])
}

fn one_layer_config(diff_id: &str, created_by: &str) -> Result<ImageConfiguration, ImageError> {
    let spec = |e: oci_spec::OciSpecError| ImageError::Corrupt { what: "image config".into(), reason: e.to_string() };
    let now = time::rfc3339(SystemTime::now());
    let history = HistoryBuilder::default().created(now.clone()).created_by(created_by).build().map_err(spec)?;
    let rootfs =
        RootFsBuilder::default().typ("layers").diff_ids(vec![format!("sha256:{diff_id}")]).build().map_err(spec)?;
    let config = ConfigBuilder::default().env(vec![DEFAULT_PATH.to_string()]).build().map_err(spec)?;
    ImageConfigurationBuilder::default()
        .created(now)
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config)
        .rootfs(rootfs)
        .history(vec![history])
        .build()
        .map_err(spec)
}
