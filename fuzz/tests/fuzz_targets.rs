//! Fuzz targets: raw bytes into each check of `virtlab_fuzz`.
//!
//! Under `cargo test` each target runs a bounded number of random inputs
//! (bolero's random engine) plus any inputs saved under
//! `tests/__fuzz__/TARGET/{corpus,crashes}`; with `BOLERO_RANDOM_ITERATIONS`
//! set, as many as it says; under `cargo bolero test` a coverage-guided
//! engine runs it for as long as it is given. The README's "Fuzzing"
//! section has the commands.

use virtlab_fuzz::{container, vmm};

/// Random inputs per target in a plain `cargo test` (bolero's
/// `BOLERO_RANDOM_ITERATIONS` overrides it).
const QUICK: usize = 256;
/// The same for the targets that create a directory tree per input.
const QUICK_FS: usize = 64;

macro_rules! target {
    ($name:ident, $check:path, $iterations:expr) => {
        #[test]
        fn $name() {
            bolero::check!().with_iterations($iterations).for_each(|data: &[u8]| $check(data));
        }
    };
}

target!(user_elf, vmm::user_elf, QUICK);
target!(kernel_elf, vmm::kernel_elf, QUICK);
target!(elf_header, vmm::elf_header, QUICK);
target!(linux_kernel, vmm::linux_kernel, QUICK);
target!(boot_protocol, vmm::boot_protocol, QUICK);
target!(command_file, vmm::command_file, QUICK);
target!(devices, vmm::devices, QUICK);
target!(uart_state, vmm::uart_state, QUICK);
target!(workload_result, vmm::workload_result, QUICK);
target!(snapshot_at, vmm::snapshot_at, QUICK);
target!(snapshot_json, vmm::snapshot_json, QUICK);
target!(snapshot_dir, vmm::snapshot_dir, QUICK_FS);
target!(layer_raw, container::layer_raw, QUICK_FS);
target!(layer_entries, container::layer_entries, QUICK_FS);
target!(image_archive, container::image_archive, QUICK_FS);
target!(image_index, container::image_index, QUICK_FS);
target!(dockerfile, container::dockerfile, QUICK);
target!(oci_config, container::oci_config, QUICK);
target!(log_file, container::log_file, QUICK_FS);
target!(event_log, container::event_log, QUICK_FS);
target!(subid, container::subid, QUICK);
target!(image_name, container::image_name, QUICK);
target!(rfc3339, container::rfc3339, QUICK);
target!(units, container::units, QUICK);
