//! Container launcher: Linux namespaces, cgroups and pivot_root.
