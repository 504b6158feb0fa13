//! Builds the workload program (`program/main.rs`) into a static, libc-free
//! x86_64 ELF (see `virtlab-freestanding`). The library then embeds the file
//! (`virtlab_workload::ELF`).

fn main() {
    virtlab_freestanding::Program::linux("virtlab_workload", "program/main.rs", "virtlab-workload").build();
}
