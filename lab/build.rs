//! Builds the attacker (`attacker/main.rs`) into a static, libc-free x86_64
//! ELF (see `virtlab-freestanding`); the library embeds it
//! (`virtlab_lab::ATTACKER`).

fn main() {
    virtlab_freestanding::Program::linux("virtlab_attacker", "attacker/main.rs", "virtlab-attacker").build();
}
