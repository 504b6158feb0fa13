//! Builds the minikernel (`kernel/main.rs`) into a freestanding x86_64 ELF
//! linked by its own script (see `virtlab-freestanding`). The library embeds
//! the result (`virtlab_minikernel::ELF`).

fn main() {
    virtlab_freestanding::Program::kernel(
        "virtlab_minikernel",
        "kernel/main.rs",
        "kernel/link.ld",
        "virtlab-minikernel",
    )
    .watch("abi.rs")
    .build();
}
