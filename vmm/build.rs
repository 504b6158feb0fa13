//! Builds virtlab's /init for Linux guests (`guest-init/init.rs`) into a
//! static, libc-free x86_64 ELF (see `virtlab-freestanding`).
//! `linux::initramfs::INIT_ELF` embeds the file.

fn main() {
    virtlab_freestanding::Program::linux("virtlab_init", "guest-init/init.rs", "virtlab-init").build();
}
