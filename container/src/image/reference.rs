//! Image names: `busybox`, `localhost/app:1.0`,
//! `docker.io/library/debian:latest`.
//!
//! The grammar and its checks are the `oci-spec` crate's (a port of the
//! reference package Docker and its registry use). The one choice made here
//! is where a short name lives: Docker would send `busybox` to Docker Hub,
//! but this store is local and no registry is reachable, so, as podman does
//! for images it built or loaded, a name without a registry domain is
//! `localhost/NAME:latest`. A name that does name a domain is kept as it is,
//! so `docker.io/library/debian:latest` is stored and shown as such.

use std::fmt;
use std::str::FromStr;

use oci_spec::distribution::Reference;

use super::ImageError;

/// The registry that short names belong to.
pub const LOCAL_REGISTRY: &str = "localhost";

/// A parsed, normalised image name with a tag (`REGISTRY/REPOSITORY:TAG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    registry: String,
    repository: String,
    tag: String,
}

impl ImageName {
    /// The registry part (`localhost` for short names).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository within the registry (`busybox`, `library/debian`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag (`latest` when the name gave none).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `REGISTRY/REPOSITORY`, the REPOSITORY column of `image ls`.
    pub fn full_repository(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether the name is served by this machine (no registry to pull from).
    pub fn is_local(&self) -> bool {
        self.registry == LOCAL_REGISTRY
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

impl ImageName {
    /// A name as the store wrote it in its index (`REGISTRY/REPOSITORY:TAG`,
    /// checked when it was stored), split without the full grammar: the
    /// grammar's regular expression takes longer to compile than a container
    /// takes to start, and every command reads every name of the index.
    pub(crate) fn from_stored(stored: &str) -> Option<ImageName> {
        let (registry, rest) = stored.split_once('/')?;
        let (repository, tag) = rest.rsplit_once(':')?;
        if registry.is_empty() || repository.is_empty() || tag.is_empty() || tag.contains('/') || stored.contains('@') {
            return None;
        }
        Some(ImageName { registry: registry.into(), repository: repository.into(), tag: tag.into() })
    }

    /// What `name` (as a user types it) stands for, normalised the way
    /// [`FromStr`] does, to look it up among stored names without the full
    /// grammar. Only a name the store has is ever accepted this way.
    pub(crate) fn normalized_text(name: &str) -> String {
        let full = if names_a_domain(name) { name.to_string() } else { format!("{LOCAL_REGISTRY}/{name}") };
        let last = full.rsplit('/').next().unwrap_or("");
        if last.contains(':') || full.contains('@') {
            full
        } else {
            format!("{full}:latest")
        }
    }
}

/// Whether the first path component of `name` is a registry domain, by the
/// rule Docker's reference package uses: it contains a `.` or a `:` (a
/// port), or it is `localhost`.
fn names_a_domain(name: &str) -> bool {
    match name.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == LOCAL_REGISTRY,
        None => false,
    }
}

impl FromStr for ImageName {
    type Err = ImageError;

    fn from_str(name: &str) -> Result<ImageName, ImageError> {
        let invalid = |reason: String| ImageError::InvalidName { name: name.to_string(), reason };
        let full = if names_a_domain(name) { name.to_string() } else { format!("{LOCAL_REGISTRY}/{name}") };
        // The repository part (not the domain, not the tag) is lower case;
        // the grammar would only call it "invalid".
        let path = full.split_once('/').map_or("", |(_, p)| p);
        let path = path.split(['@']).next().unwrap_or(path);
        let path = match path.rsplit_once(':') {
            Some((p, tag)) if !tag.contains('/') => p,
            _ => path,
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository names must be lower case".into()));
        }
        let reference = Reference::from_str(&full).map_err(|e| invalid(e.to_string()))?;
        if reference.digest().is_some() {
            return Err(invalid("a digest names content, not a name to store an image under; use the image ID".into()));
        }
        Ok(ImageName {
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            tag: reference.tag().unwrap_or("latest").to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> String {
        s.parse::<ImageName>().map(|n| n.to_string()).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn short_names_are_local_and_full_names_are_kept() {
        assert_eq!(parse("busybox"), "localhost/busybox:latest");
        assert_eq!(parse("busybox:1.36"), "localhost/busybox:1.36");
        assert_eq!(parse("course/app:v2"), "localhost/course/app:v2");
        assert_eq!(parse("localhost/app"), "localhost/app:latest");
        assert_eq!(parse("docker.io/library/debian:latest"), "docker.io/library/debian:latest");
        assert_eq!(parse("registry.example:5000/team/app:1"), "registry.example:5000/team/app:1");
        let n: ImageName = "docker.io/library/debian:bookworm".parse().expect("valid");
        assert_eq!(
            (n.full_repository().as_str(), n.tag(), n.is_local()),
            ("docker.io/library/debian", "bookworm", false)
        );
    }

    #[test]
    fn stored_names_split_and_typed_names_normalise_as_parsing_does() {
        for typed in [
            "busybox",
            "busybox:1.36",
            "course/app:v2",
            "localhost/app",
            "docker.io/library/debian:latest",
            "registry.example:5000/team/app",
        ] {
            let parsed = typed.parse::<ImageName>().expect("valid");
            assert_eq!(ImageName::normalized_text(typed), parsed.to_string(), "{typed}");
            assert_eq!(ImageName::from_stored(&parsed.to_string()), Some(parsed), "{typed}");
        }
        assert_eq!(ImageName::from_stored("nocolon"), None);
        assert_eq!(ImageName::from_stored("a/b:c/d"), None);
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        for bad in ["", "Busybox", "app:", "a b", "app:-x", "/app", "app@sha256:00"] {
            assert!(parse(bad).starts_with("error: "), "{bad:?} was accepted as {}", parse(bad));
        }
        assert!(parse(&format!("app@sha256:{}", "a".repeat(64))).contains("digest"));
        assert!(parse("Not/Valid").contains("lower case"));
        assert_eq!(parse("localhost/app:Tag1"), "localhost/app:Tag1");
    }
}
