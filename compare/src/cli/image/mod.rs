//! `virtlab image ...`, `virtlab images` and `virtlab system df`: the image
//! store, with Docker's command names, columns and exit statuses (0, or 1
//! when the command failed).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use virtlab_container::image::{import, ImageError, ImageName, Store};

mod change;
pub(crate) mod view;

/// Where the image store is: `--root DIR`, else `VIRTLAB_ROOT`, else
/// /var/lib/virtlab.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Image store directory [default: $VIRTLAB_ROOT, else /var/lib/virtlab]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
}

impl StoreArgs {
    /// The `--root` given, if any.
    pub fn root(&self) -> Option<PathBuf> {
        self.root.clone()
    }

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
    /// Print the event log: what happened to containers and images (the
    /// last 1000 events), filtered by time, type, event and container.
    Events(super::events::EventsArgs),
    /// Where virtlab keeps things and what this host can do: containers,
    /// images, storage, cgroups, namespaces, KVM.
    Info,
}

/// Runs an image command; errors print as every virtlab error does and
/// exit 1, as Docker's image commands do.
pub fn run(args: ImageArgs) -> anyhow::Result<u8> {
    report(image_command(&args.store, args.command))
}

/// `virtlab images`.
pub fn run_images(args: ImagesArgs) -> anyhow::Result<u8> {
    report(args.store.open().and_then(|s| view::ls(&s, &args.ls)))
}

/// `virtlab system ...`.
pub fn run_system(args: SystemArgs) -> anyhow::Result<u8> {
    report(match args.command {
        SystemCommand::Info => {
            return super::lifecycle::exit1(super::inspect::info(&super::lifecycle::RootArg::from_path(
                args.store.root(),
            )))
        }
        SystemCommand::Events(a) => return super::lifecycle::exit1(super::events::events(&a)),
        SystemCommand::Df { verbose, format } => {
            args.store.open().and_then(|s| view::df(&s, verbose, format.as_deref()))
        }
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
            change::image_event(&store, "import", &image.id, &name.to_string());
            Ok(0)
        }
        ImageCommand::Build(args) => change::build(&store, &args),
        ImageCommand::Ls(args) => view::ls(&store, &args),
        ImageCommand::History { image, no_trunc, quiet, format } => {
            view::history(&store, &image, no_trunc, quiet, format.as_deref())
        }
        ImageCommand::Inspect { images, format } => view::inspect_images(&store, &images, format.as_deref()),
        ImageCommand::Rm { images, force } => change::remove(&store, &images, force),
        ImageCommand::Prune { .. } => change::prune(&store),
        ImageCommand::Tag { source, target } => {
            let tagged = store.tag(&source, &target.parse()?)?;
            change::image_event(&store, "tag", &tagged.id, &target);
            Ok(0)
        }
        ImageCommand::Save { images, output } => change::save(&store, &images, output.as_deref()),
        ImageCommand::Load { input, quiet } => change::load(&store, input.as_deref(), quiet),
        ImageCommand::Pull { .. } => unreachable!("answered above"),
    }
}
