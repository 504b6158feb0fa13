//! minikernel.
