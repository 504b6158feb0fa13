//! Inputs the property tests found that made a parser panic or a device
//! break its invariants, each kept as a test of the fix.

use virtlab_fuzz::{container, vmm};
use virtlab_vmm::elf::tiny_executable;
use virtlab_vmm::linux::boot::{self, BootError};
use virtlab_vmm::linux::kernel::{self, Image, KernelError};
use virtlab_vmm::loader::{self, LoadError};
use virtlab_vmm::snapshot::format::Hex;

/// `state.json` hex with a character of several bytes: the decoder sliced
/// the string two bytes at a time and cut the character in two (a panic);
/// a `+` passed as a sign. Both are refused now.
#[test]
fn snapshot_hex_with_other_characters_is_refused() {
    for text in ["\"𐀀\"", "\"a𐀀b\"", "\"é\"", "\"+f+f\"", "\"0g\""] {
        let e = serde_json::from_str::<Hex>(text).expect_err(text).to_string();
        assert!(e.contains("not a hex digit"), "{text}: {e}");
    }
    assert_eq!(serde_json::from_str::<Hex>("\"00ffAb\"").expect("hex"), Hex(vec![0, 0xff, 0xab]));
}

/// A workload linked at the top of the address space: planning its memory
/// overflowed (`end + stack size`) instead of saying it does not fit.
#[test]
fn a_workload_at_the_top_of_the_address_space_does_not_fit() {
    let elf = tiny_executable(u64::MAX - 0x2000, &[0xf4]);
    let image = loader::parse_user_elf(&elf).expect("a well-formed executable");
    let e = loader::plan_user_memory(&image, 64 << 20).expect_err("it cannot fit");
    assert!(matches!(e, LoadError::MemTooSmall { .. }), "{e}");
    vmm::user_elf(&elf);
}

/// A vmlinux whose segment ends at 2^64-1: the "does not fit" message
/// computed end + slack and overflowed.
#[test]
fn a_vmlinux_ending_at_the_top_of_memory_does_not_fit() {
    let mut elf = tiny_executable(0x100_0000, &[0xf4]);
    elf[88..96].copy_from_slice(&u64::MAX.to_le_bytes()); // p_paddr
    let e = kernel::check_elf(&mut Image::from_bytes(&elf), 64 << 20).expect_err("it cannot fit");
    assert!(matches!(e, KernelError::DoesNotFit { .. }), "{e}");
    vmm::linux_kernel(&elf);
}

/// An initrd placed above a kernel said to end at 2^64-1: rounding the
/// end up to a page overflowed.
#[test]
fn an_initrd_above_a_kernel_at_the_top_does_not_fit() {
    let e = boot::place_initrd(u64::MAX, u64::MAX, 4096, u64::MAX).expect_err("no room above");
    assert!(matches!(e, BootError::InitrdDoesNotFit { .. }), "{e}");
}

/// A guest writing in loopback mode grew the UART's receive queue without
/// bound (host memory at the guest's command); it now holds 16 bytes, as a
/// 16550A's FIFO does, and the rest are lost.
#[test]
fn the_uart_fifo_holds_sixteen_bytes_in_loopback() {
    let mut rig = vmm::DeviceRig::new(Vec::new());
    rig.access(vmm::UART + 4, true, &mut [0x10]).expect("the UART's MCR");
    for i in 0..100u8 {
        rig.access(vmm::UART, true, &mut [i]).expect("the UART's THR");
    }
    assert_eq!(rig.uart().input, (0..16).collect::<Vec<u8>>());
    let mut byte = [0u8];
    rig.access(vmm::UART, false, &mut byte).expect("the UART's RBR");
    assert_eq!(byte, [0]);
    assert_eq!(rig.uart().input.len(), 15);
}

/// The sandbox itself notices a write outside the destination (so a
/// passing layer test means something).
#[test]
#[should_panic(expected = "touched files outside its destination")]
fn the_sandbox_sees_a_write_outside() {
    let sandbox = container::Sandbox::new();
    std::fs::write(sandbox.outside.join("planted"), b"x").expect("write beside the destination");
    sandbox.check_untouched("this test");
}

/// An opaque-directory marker under `a/b`, then `a` made a symbolic link
/// to a directory outside: the opaque directories were created after every
/// entry, through the link, outside the layer's directory.
#[test]
fn an_opaque_directory_behind_a_later_link_stays_inside() {
    use virtlab_fuzz::tarball::{self, Kind, TarEntry};
    let sandbox = container::Sandbox::new();
    let entry = |name: &str, kind, link: &str| TarEntry {
        name: name.as_bytes().to_vec(),
        kind,
        link: link.as_bytes().to_vec(),
        mode: 0o755,
        data: Vec::new(),
    };
    let outside = sandbox.outside.display().to_string();
    let tar = tarball::build(&[entry("a/b/.wh..wh..opq", Kind::File, ""), entry("a", Kind::Symlink, &outside)]);
    let result = virtlab_container::image::layer::unpack(&tar[..], None, &sandbox.dest);
    sandbox.check_untouched("a layer");
    let e = result.expect_err("the opaque directory lies behind a link");
    // Without root the link's owner cannot be set, an earlier error.
    if virtlab_fuzz::root_or_skip("an_opaque_directory_behind_a_later_link_stays_inside") {
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }
}

/// An image archive whose config gives a layer a diff ID that is not a
/// SHA-256 (`sha512:abc`, or `sha256:../..`): `image load` cut it to 12
/// bytes for a directory name (a panic on a shorter one), and used it as a
/// path in the store (`layers/DIFF_ID`) before checking the layer's hash.
#[test]
fn an_archive_with_a_diff_id_that_is_no_sha256_is_refused() {
    use virtlab_container::image::{archive, ImageError, Store};
    let sandbox = container::Sandbox::new();
    let layer = virtlab_fuzz::tarball::build(&[container::file("hello", b"hi\n")]);
    for bad in ["sha512:abc", "abc", "sha256:../../../outside", &format!("sha256:{}", "é".repeat(32))] {
        let store = Store::open(sandbox.dest.join("store")).expect("an empty store");
        let tar = container::oci_archive(&layer, [None, None, None, Some(bad.to_string())], false);
        let e = archive::load(&store, &tar[..]).expect_err(bad);
        assert!(matches!(&e, ImageError::Corrupt { reason, .. } if reason.contains("diff ID")), "{bad}: {e}");
        assert!(store.images().expect("the store's images").is_empty());
    }
    sandbox.check_untouched("an image archive");
}

/// A positive duration below a nanosecond (`.000…01`, found by libFuzzer):
/// `parse_duration` (`events --since`) gave a zero duration, where the
/// command line's own `--timeout` parser says "no time at all".
#[test]
fn a_duration_below_a_nanosecond_is_refused() {
    let text = format!(".{}1", "0".repeat(100));
    assert!(virtlab_container::config::parse_duration(&text).is_err());
    assert!(virtlab_container::config::parse_duration("1e-10s").is_err());
    assert_eq!(virtlab_container::config::parse_duration("1e-9s").ok(), Some(std::time::Duration::from_nanos(1)));
    container::units(text.as_bytes());
}
