//! Architecture-specific code. virtlab runs on x86_64 only.

pub mod x86_64;
