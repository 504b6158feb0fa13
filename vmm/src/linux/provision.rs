//! Which Linux kernel a guest boots, and why: the fallbacks, in order.
//!
//! 1. An explicit `--kernel` (or `VIRTLAB_GUEST_KERNEL`).
//! 2. virtlab's minimal kernel, built by `scripts/guest-kernel.sh` from
//!    Debian's linux-source-6.1 with `guest/linux/virtlab.config` and the
//!    syscall patch, cached under `~/.cache/virtlab/guest-kernel/current/`.
//! 3. Debian's stock cloud kernel, unpacked by `scripts/guest-kernel.sh
//!    cloud` (apt-get download + dpkg -x) into the cache, never into /boot.
//! 4. The host's own `/boot/vmlinuz-$(uname -r)`, when readable.
//!
//! Only the first two are fast enough to boot on a nested host, and only
//! the minimal kernel carries the patch that lets user space make system
//! calls there; stock kernels are fallbacks for hosts with VT-x/AMD-V.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where a kernel came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Given by the user.
    Explicit,
    /// virtlab's minimal kernel from the cache.
    Minimal,
    /// Debian's cloud kernel from the cache.
    Cloud,
    /// The host's own kernel.
    Host,
}

impl Origin {
    /// Every origin, in the order [`locate`] tries them.
    pub const ALL: [Origin; 4] = [Origin::Explicit, Origin::Minimal, Origin::Cloud, Origin::Host];
}

/// A kernel to boot, and why this one.
#[derive(Debug, Clone, Serialize)]
pub struct KernelChoice {
    /// The image.
    pub path: PathBuf,
    /// Its origin.
    pub origin: Origin,
    /// One line for a person.
    pub why: String,
}

/// Errors finding a kernel.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The explicit kernel is not there.
    #[error("the kernel {0} does not exist")]
    Missing(PathBuf),
    /// Nothing found at all.
    #[error("no Linux guest kernel found: run scripts/guest-kernel.sh (builds the minimal kernel, ~7 min on 2 cores) or scripts/guest-kernel.sh cloud, or pass --kernel")]
    NoneFound,
}

/// The cache directory of guest kernels.
pub fn cache_dir() -> PathBuf {
    virtlab_workload::cache_dir().join("guest-kernel")
}

/// Every candidate in order, with whether it is there.
pub fn candidates() -> Vec<(KernelChoice, bool)> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("VIRTLAB_GUEST_KERNEL").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(p);
        let ok = path.is_file();
        v.push((KernelChoice { path, origin: Origin::Explicit, why: "VIRTLAB_GUEST_KERNEL names it".into() }, ok));
    }
    let minimal = cache_dir().join("current/vmlinux");
    let info = std::fs::read_to_string(cache_dir().join("current/info")).unwrap_or_default();
    let version = info.lines().find_map(|l| l.strip_prefix("version: ")).unwrap_or("unknown version").to_string();
    v.push((
        KernelChoice {
            origin: Origin::Minimal,
            why: format!(
                "virtlab's minimal kernel (Linux {version}, tinyconfig + guest/linux/virtlab.config + the syscall patch), booted as an uncompressed vmlinux through its PVH entry: the fastest to boot when guest kernel code is emulated"
            ),
            path: minimal.clone(),
        },
        minimal.is_file(),
    ));
    let cloud = cache_dir().join("cloud/vmlinuz");
    v.push((
        KernelChoice {
            origin: Origin::Cloud,
            why: "Debian's linux-image-cloud-amd64, unpacked into the cache: a stock kernel, minutes to boot on a nested host, and its user space cannot make system calls there (no syscall patch)".into(),
            path: cloud.clone(),
        },
        cloud.is_file(),
    ));
    if let Some(release) = uname_release() {
        let host = PathBuf::from(format!("/boot/vmlinuz-{release}"));
        let ok = std::fs::File::open(&host).is_ok();
        v.push((
            KernelChoice {
                origin: Origin::Host,
                why: "the host's own kernel from /boot: a last resort, built for hardware rather than for a small VM"
                    .into(),
                path: host,
            },
            ok,
        ));
    }
    v
}

fn uname_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string())
}

/// The kernel to use: `explicit` if given, else the first candidate that
/// is there.
pub fn locate(explicit: Option<&Path>) -> Result<KernelChoice, ProvisionError> {
    if let Some(p) = explicit {
        if !p.is_file() {
            return Err(ProvisionError::Missing(p.into()));
        }
        return Ok(KernelChoice { path: p.into(), origin: Origin::Explicit, why: "given with --kernel".into() });
    }
    candidates().into_iter().find(|(_, ok)| *ok).map(|(c, _)| c).ok_or(ProvisionError::NoneFound)
}

/// The kernel a test boots: the one [`locate`] finds without `--kernel`
/// (so `VIRTLAB_GUEST_KERNEL` first), when its origin is one of `accept`;
/// otherwise why there is none.
pub fn test_kernel(accept: &[Origin]) -> Result<KernelChoice, String> {
    match locate(None) {
        Ok(k) if accept.contains(&k.origin) => Ok(k),
        Ok(k) => Err(format!(
            "only {} is available ({:?}), not a kernel this test boots ({})",
            k.path.display(),
            k.origin,
            accept.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>().join(" or ")
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// For tests that boot Linux: the path of the [`test_kernel`] from
/// `accept`. Without one the test `test` is skipped, loudly (a `SKIPPED`
/// line on stderr saying why and how to get one), and None is returned;
/// but with `VIRTLAB_REQUIRE_LINUX=1` (as CI sets it) a missing kernel
/// panics: there a skip would be a test that lies.
pub fn test_kernel_or_skip(test: &str, accept: &[Origin]) -> Option<PathBuf> {
    let why = match test_kernel(accept) {
        Ok(k) => return Some(k.path),
        Err(why) => why,
    };
    if std::env::var("VIRTLAB_REQUIRE_LINUX").as_deref() == Ok("1") {
        panic!("{test}: VIRTLAB_REQUIRE_LINUX=1 but {why}");
    }
    let hint = if why.contains("scripts/guest-kernel.sh") { "" } else { "run scripts/guest-kernel.sh, or " };
    eprintln!("SKIPPED {test}: {why}; {hint}set VIRTLAB_REQUIRE_LINUX=1 to make this a failure");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_comes_first_and_must_exist() {
        let c = locate(Some(Path::new("/proc/self/exe"))).unwrap();
        assert_eq!(c.origin, Origin::Explicit);
        assert!(matches!(locate(Some(Path::new("/nonexistent/vmlinux"))), Err(ProvisionError::Missing(_))));
        let order: Vec<Origin> =
            candidates().iter().map(|(c, _)| c.origin).filter(|o| *o != Origin::Explicit).collect();
        assert_eq!(&order[..2], &[Origin::Minimal, Origin::Cloud]);
    }

    #[test]
    fn a_test_kernel_must_be_of_an_accepted_origin() {
        let why = test_kernel(&[]).unwrap_err();
        match locate(None) {
            Ok(k) => {
                assert!(why.contains(&k.path.display().to_string()), "{why}");
                assert_eq!(test_kernel(&Origin::ALL).unwrap().path, k.path);
            }
            Err(e) => assert_eq!(why, e.to_string()),
        }
    }
}
