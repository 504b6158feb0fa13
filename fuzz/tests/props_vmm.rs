//! Property tests of the VMM's parsers and guest-facing devices: valid
//! inputs with fields set to any value, in the normal test run.

use proptest::prelude::*;
use proptest::test_runner::Config;
use virtlab_fuzz::{cpio, mutate, vmm};
use virtlab_vmm::devices::uart::UartState;
use virtlab_vmm::elf::tiny_executable;
use virtlab_vmm::linux::boot::zp;
use virtlab_vmm::linux::command::{self, format, CommandError};
use virtlab_vmm::linux::initramfs::CpioWriter;
use virtlab_vmm::snapshot::error::SnapshotError;
use virtlab_vmm::snapshot::format::{self as snap, FileEntry, GuestKind, Hex, Manifest, State, VcpuState};
use virtlab_vmm::snapshot::{memory, vcpu};

/// 256 cases (PROPTEST_CASES overrides it, for a longer run); failures
/// are kept as regression tests in `regressions.rs`, not in files.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Offsets of the ELF header's and first program header's fields that the
/// loaders read (entry, phoff, phentsize/phnum, p_type, p_offset, p_vaddr,
/// p_paddr, p_filesz, p_memsz).
const ELF_FIELDS: [usize; 9] = [24, 32, 54, 56, 64, 72, 80, 88, 96];

/// A field write: one of [`ELF_FIELDS`] set to a value (often an extreme one).
fn field_write() -> impl Strategy<Value = (usize, u64)> {
    let value = prop_oneof![
        any::<u64>(),
        Just(u64::MAX),
        Just(u64::MAX - 0xfff),
        Just(1 << 63),
        0u64..0x1000,
        0x40_0000u64..0x50_0000,
    ];
    (prop::sample::select(&ELF_FIELDS[..]), value)
}

fn put_field(mut b: Vec<u8>, writes: &[(usize, u64)]) -> Vec<u8> {
    for &(at, v) in writes {
        let width = if at == 54 || at == 56 {
            2
        } else if at == 64 {
            4
        } else {
            8
        };
        if let Some(dst) = b.get_mut(at..at + width) {
            dst.copy_from_slice(&v.to_le_bytes()[..width]);
        }
    }
    b
}

/// A small ELF executable at any base, with fields rewritten, bytes
/// changed, and maybe cut short.
fn elf_file() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(0x40_0000u64), any::<u64>(), Just(u64::MAX - 0x2000)],
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(field_write(), 0..4),
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        prop::option::of(0usize..200),
    )
        .prop_map(|(base, code, fields, edits, cut)| {
            let mut b = mutate(put_field(tiny_executable(base, &code), &fields), &edits);
            if let Some(n) = cut {
                b.truncate(n);
            }
            b
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_workload_loader_takes_any_elf(b in elf_file()) {
        vmm::user_elf(&b);
        vmm::elf_header(&b);
    }

    #[test]
    fn the_minikernel_loader_takes_any_elf(
        fields in prop::collection::vec(field_write(), 0..4),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        vmm::kernel_elf(&mutate(put_field(virtlab_minikernel::ELF.to_vec(), &fields), &edits));
    }

    #[test]
    fn the_linux_loader_takes_any_elf(b in elf_file()) {
        vmm::linux_kernel(&b);
    }

    #[test]
    fn the_linux_loader_takes_any_bzimage_header(
        setup_sects in any::<u8>(),
        syssize in prop_oneof![any::<u32>(), 0u32..0x100],
        version in prop_oneof![any::<u16>(), Just(0x020f_u16)],
        xloadflags in any::<u16>(),
        jump in any::<u8>(),
        init_size in any::<u32>(),
        cmdline_size in any::<u32>(),
        addr_max in any::<u32>(),
        len in 0usize..0x4000,
    ) {
        let mut b = vec![0u8; len.max(zp::INIT_SIZE + 4)];
        b[zp::HDR] = setup_sects;
        b[0x1f4..0x1f8].copy_from_slice(&syssize.to_le_bytes());
        b[zp::HEADER..zp::HEADER + 4].copy_from_slice(b"HdrS");
        b[zp::VERSION..zp::VERSION + 2].copy_from_slice(&version.to_le_bytes());
        b[zp::XLOADFLAGS..zp::XLOADFLAGS + 2].copy_from_slice(&(xloadflags | 1).to_le_bytes());
        b[zp::JUMP + 1] = jump;
        b[zp::INIT_SIZE..zp::INIT_SIZE + 4].copy_from_slice(&init_size.to_le_bytes());
        b[zp::CMDLINE_SIZE..zp::CMDLINE_SIZE + 4].copy_from_slice(&cmdline_size.to_le_bytes());
        b[zp::INITRD_ADDR_MAX..zp::INITRD_ADDR_MAX + 4].copy_from_slice(&addr_max.to_le_bytes());
        b.truncate(len.max(zp::HEADER + 4));
        vmm::linux_kernel(&b);
    }

    #[test]
    fn the_boot_protocol_takes_any_numbers(
        numbers in prop::array::uniform4(prop_oneof![any::<u64>(), 0u64..(1 << 32), Just(u64::MAX)]),
        tail in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut data: Vec<u8> = numbers.iter().flat_map(|n| n.to_le_bytes()).collect();
        data.extend(tail);
        vmm::boot_protocol(&data);
    }

    #[test]
    fn a_command_file_reads_back_what_was_written(
        program in "[^\0]{1,12}",
        args in prop::collection::vec("[^\0]{0,12}", 0..6),
        env in prop::collection::vec("[A-Za-z_][^\0=]{0,6}=[^\0]{0,10}", 0..6),
        workdir in prop::option::of("/[^\0]{0,16}"),
    ) {
        let argv: Vec<String> = std::iter::once(program).chain(args).collect();
        let file = command::encode(&argv, &env, workdir.as_deref()).expect("a valid command encodes");
        let cmd = format::parse(&file).expect("what virtlab writes, its init reads");
        let text = |f: &[u8]| String::from_utf8(f.to_vec()).expect("UTF-8 in, UTF-8 out");
        prop_assert_eq!(cmd.argv.map(text).collect::<Vec<_>>(), argv);
        prop_assert_eq!(cmd.env.map(text).collect::<Vec<_>>(), env);
        prop_assert_eq!(cmd.workdir, workdir.as_deref().unwrap_or("").as_bytes());
        vmm::command_file(&file);
    }

    #[test]
    fn a_bad_command_is_refused_with_its_field(
        argv in prop::collection::vec("[a-z\0]{0,4}", 0..4),
        env in prop::collection::vec("[A-Z=\0]{0,4}", 0..4),
        workdir in prop::option::of("[/a\0]{0,4}"),
    ) {
        match command::encode(&argv, &env, workdir.as_deref()) {
            Ok(file) => prop_assert!(format::parse(&file).is_ok()),
            Err(CommandError::EmptyProgram) => prop_assert!(argv.first().is_none_or(|p| p.is_empty())),
            Err(CommandError::ArgumentNul { index }) => prop_assert!(argv[index].contains('\0')),
            Err(CommandError::BadEnv { entry, .. }) => prop_assert!(env.contains(&entry)),
            Err(CommandError::BadWorkdir { dir, .. }) => prop_assert_eq!(Some(dir), workdir),
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }

    #[test]
    fn a_changed_command_file_never_panics_the_init(
        edits in prop::collection::vec((any::<usize>(), prop_oneof![Just(0u8), Just(b'='), Just(b'/'), any::<u8>()]), 1..4),
        cut in 0usize..80,
    ) {
        let argv = vec!["sh".to_string(), "-c".to_string(), "echo hi".to_string()];
        let env = vec!["A=b".to_string(), "PATH=/bin".to_string()];
        let mut file = mutate(command::encode(&argv, &env, Some("/tmp")).expect("a valid command"), &edits);
        file.truncate(cut.max(1));
        vmm::command_file(&file);
    }

    #[test]
    fn an_initramfs_reads_back_entry_by_entry(
        entries in prop::collection::vec(
            (0u8..4, "/?[a-z0-9_.-]{1,8}(/[a-z0-9_.-]{1,8}){0,2}", any::<u16>(), prop::collection::vec(any::<u8>(), 0..40), any::<u16>()),
            0..12,
        ),
    ) {
        let mut w = CpioWriter::new();
        let mut expect = Vec::new();
        for (kind, name, perm, data, dev) in entries {
            let perm = u32::from(perm) & 0o7777;
            let (major, minor) = (u32::from(dev >> 8), u32::from(dev & 0xff));
            let (mode, data, rdev) = match kind {
                0 => { w.dir(&name, perm); (0o040000 | perm, Vec::new(), (0, 0)) }
                1 => { w.file(&name, perm, &data); (0o100000 | perm, data, (0, 0)) }
                2 => {
                    let target = String::from_utf8_lossy(&data).into_owned();
                    w.symlink(&name, &target);
                    (0o120777, target.into_bytes(), (0, 0))
                }
                _ => { w.char_dev(&name, perm, major, minor); (0o020000 | perm, Vec::new(), (major, minor)) }
            };
            let name = name.trim_start_matches('/').to_string();
            expect.push(cpio::Entry { name, mode, rdev, data });
        }
        let archive = w.finish();
        prop_assert_eq!(archive.len() % 4, 0);
        prop_assert_eq!(cpio::read(&archive), Ok(expect));
    }

    #[test]
    fn the_devices_take_any_port_io(ops in prop::collection::vec(device_op(), 0..64), command in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut data = vec![command.len() as u8];
        data.extend(&command);
        data.extend(std::iter::repeat_n(0u8, std::mem::size_of::<virtlab_minikernel::abi::BootInfo>()));
        for (device, offset, write, bytes) in ops {
            data.push((device << 4) | (offset & 7));
            data.push(u8::from(write));
            data.push(bytes.len() as u8);
            data.extend(bytes);
        }
        vmm::devices(&data);
    }

    #[test]
    fn the_uart_fifo_stays_bounded_in_loopback(
        writes in prop::collection::vec((any::<u8>(), any::<bool>()), 0..80),
        linux in any::<bool>(),
    ) {
        // MCR: loopback on; then data writes (each one loops back into the
        // receive FIFO) and, now and then, a data read.
        let mut data = vec![0u8];
        data.extend(std::iter::repeat_n(0u8, std::mem::size_of::<virtlab_minikernel::abi::BootInfo>()));
        // Device 0 is the plain UART, 7 the one with an interrupt line.
        let d = if linux { 7 << 4 } else { 0 };
        data.extend([d | 4, 1, 1, 0x10]);
        for (v, read) in writes {
            data.extend(if read { [d, 0, 1, 0] } else { [d, 1, 1, v] });
        }
        vmm::devices(&data);
    }

    #[test]
    fn the_pv_console_and_fault_port_take_any_boot_info(boot_info in prop::collection::vec(any::<u8>(), 0..400), kicks in 1usize..4) {
        let mut data = vec![0u8];
        let size = std::mem::size_of::<virtlab_minikernel::abi::BootInfo>();
        let mut info = boot_info;
        info.resize(size, 0);
        data.extend(info);
        for _ in 0..kicks {
            data.extend([1u8 << 4, 1, 1, 0, 4 << 4, 1, 1, 14]);
        }
        vmm::devices(&data);
    }

    #[test]
    fn a_uart_restored_from_any_state_keeps_working(
        regs in prop::array::uniform6(any::<u8>()),
        divisor in any::<u16>(),
        thre in any::<bool>(),
        input in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let s = UartState { ier: regs[0], lcr: regs[1], mcr: regs[2], scr: regs[3], fcr: regs[4], divisor, thre_pending: thre, input, tx_bytes: u64::from(regs[5]) };
        vmm::uart_state(&serde_json::to_vec(&s).expect("a UART state serializes"));
    }

    #[test]
    fn a_workload_result_line_reads_back(line in "(virtlab.result)?( [a-z_=]{0,6}=[a-z0-9=.]{0,6}| mode=[a-z]{0,5}| ){0,6}") {
        vmm::workload_result(line.as_bytes());
    }

    #[test]
    fn a_snapshot_point_reads_back(text in "ready|init|[0-9]{1,22}(ms|s|m|)|[a-z0-9 ]{0,6}") {
        vmm::snapshot_at(text.as_bytes());
    }

    #[test]
    fn hex_in_a_snapshot_takes_any_string(s in ".{0,12}") {
        vmm::snapshot_json(&serde_json::to_vec(&s).expect("a string serializes"));
        let state = format!(r#"{{"vcpus":[],"clock":{},"irqchip":null,"pit":null,"devices":{{}},"mini":null,"quirks":[]}}"#,
            serde_json::to_string(&s).expect("a string serializes"));
        vmm::snapshot_json(state.as_bytes());
    }

    #[test]
    fn a_changed_snapshot_is_refused_with_a_typed_error(
        pages in prop::collection::vec((0u64..16, any::<u8>()), 0..4),
        which in 0usize..4,
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        size_pages in 0u64..20,
    ) {
        let (manifest, state, memory) = snapshot_of(&pages, size_pages);
        let (mut manifest, mut state, mut memory) = (manifest, state, memory);
        match which {
            0 => manifest = mutate(manifest, &edits),
            1 => state = mutate(state, &edits),
            2 => memory = mutate(memory, &edits),
            _ => {}
        }
        vmm::snapshot_files(&manifest, &state, &memory);
    }

    #[test]
    fn a_state_blob_of_the_wrong_size_is_refused(len in 0usize..1200, byte in any::<u8>()) {
        let h = Hex(vec![byte; len]);
        let want = std::mem::size_of::<kvm_bindings::kvm_regs>();
        match vcpu::from_hex::<kvm_bindings::kvm_regs>(&h) {
            Ok(regs) => {
                prop_assert_eq!(len, want);
                prop_assert_eq!(&vcpu::to_hex(&regs), &h);
            }
            Err(SnapshotError::StateSize { found, expected, .. }) => prop_assert_eq!((found, expected), (len, want)),
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
        prop_assert_eq!(vcpu::from_hex::<kvm_bindings::kvm_fpu>(&h).is_ok(), len == std::mem::size_of::<kvm_bindings::kvm_fpu>());
    }

    #[test]
    fn an_initramfs_of_a_tree_holds_the_tree(
        paths in prop::collection::btree_map("[a-z]{1,4}(/[a-z]{1,4}){0,2}", (0u8..3, "[ -~]{0,20}"), 0..10),
    ) {
        let root = tempfile::tempdir().expect("a temporary directory");
        let mut want = std::collections::BTreeMap::new();
        for (path, (kind, content)) in &paths {
            let at = root.path().join(path);
            // A path under an earlier file or link cannot be made: skip it.
            if at.ancestors().skip(1).any(|a| a.symlink_metadata().is_ok_and(|m| !m.is_dir())) || at.symlink_metadata().is_ok() {
                continue;
            }
            std::fs::create_dir_all(at.parent().expect("a parent")).expect("create the parents");
            match kind {
                0 => { std::fs::create_dir(&at).expect("a directory"); }
                1 => { std::fs::write(&at, content).expect("a file"); want.insert(path.clone(), content.clone().into_bytes()); }
                _ => { std::os::unix::fs::symlink(if content.is_empty() { "x" } else { content }, &at).expect("a link"); }
            }
        }
        let mut w = CpioWriter::new();
        w.tree(root.path()).expect("a tree of UTF-8 names");
        let entries = cpio::read(&w.finish()).expect("the archive reads back");
        let files: std::collections::BTreeMap<String, Vec<u8>> =
            entries.iter().filter(|e| e.mode & 0o170000 == 0o100000).map(|e| (e.name.clone(), e.data.clone())).collect();
        prop_assert_eq!(files, want);
        let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let all = names.len();
        names.dedup();
        prop_assert_eq!(names.len(), all, "each path once");
    }

    #[test]
    fn the_memory_file_checksum_is_the_one_written(pages in prop::collection::vec((0u64..32, any::<u8>()), 0..8)) {
        let size = 32 * memory::PAGE as u64;
        let mem = vmm::guest_memory(size);
        for (page, byte) in &pages {
            use vm_memory::Bytes;
            mem.write_slice(&[*byte], vm_memory::GuestAddress(page * memory::PAGE as u64 + 7)).expect("in guest memory");
        }
        let file = tempfile::tempfile().expect("a temporary file");
        let (written, data) = memory::write_memory(&mem, size, &file).expect("write the memory file");
        let (read, data_again) = memory::memory_crc(&file, size).expect("read the memory file");
        prop_assert_eq!((written, data), (read, data_again));
    }
}

/// One port access: device index on the rig (UART most often), register
/// offset, direction, the bytes written or the width read.
fn device_op() -> impl Strategy<Value = (u8, u8, bool, Vec<u8>)> {
    let device = prop_oneof![3 => Just(0u8), 1 => Just(7u8), 1 => 0u8..8];
    let bytes = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 1..2),
        1 => prop::collection::vec(any::<u8>(), 0..9),
        1 => prop::collection::vec(prop_oneof![Just(0x80u8), Just(0x10), Just(0x1f), Just(0x0f), Just(0xfe)], 1..2),
    ];
    (device, 0u8..8, any::<bool>(), bytes)
}

/// A well-formed snapshot of `pages` (page index, a non-zero byte) in
/// `size_pages` pages of memory: manifest, state and memory files.
fn snapshot_of(pages: &[(u64, u8)], size_pages: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let size = size_pages as usize * memory::PAGE;
    let mut mem = vec![0u8; size];
    for &(page, byte) in pages {
        if let Some(b) = mem.get_mut(page as usize * memory::PAGE + 1) {
            *b = byte;
        }
    }
    let file = tempfile::tempfile().expect("a temporary file");
    std::os::unix::fs::FileExt::write_all_at(&file, &mem, 0).expect("write the memory");
    let (crc, data) = memory::memory_crc(&file, size as u64).expect("checksum the memory");
    let state = State {
        vcpus: vec![VcpuState { regs: Hex(vec![1, 2, 3]), ..VcpuState::default() }],
        clock: Some(Hex(vec![0xab; 4])),
        irqchip: None,
        pit: None,
        devices: [("uart".to_string(), serde_json::json!({"ier": 0}))].into(),
        mini: None,
        quirks: vec!["none".into()],
    };
    let state = serde_json::to_vec(&state).expect("a state serializes");
    let manifest = Manifest {
        format: snap::FORMAT.into(),
        version: snap::VERSION,
        guest: GuestKind::Linux,
        taken_at: "ready".into(),
        mem_size: size as u64,
        vcpus: 1,
        cpu: "test".into(),
        memory_data_bytes: data,
        files: vec![
            FileEntry { name: snap::STATE.into(), bytes: state.len() as u64, crc32: snap::crc32(&state) },
            FileEntry { name: snap::MEMORY.into(), bytes: size as u64, crc32: crc },
        ],
    };
    (serde_json::to_vec(&manifest).expect("a manifest serializes"), state, mem)
}

/// A well-formed snapshot is read whole (the property tests above change
/// it; this shows the unchanged one passes every check).
#[test]
fn an_unchanged_snapshot_is_inspected() {
    let (manifest, state, memory) = snapshot_of(&[(1, 7), (3, 9)], 4);
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join(snap::MANIFEST), manifest).expect("write");
    std::fs::write(dir.path().join(snap::STATE), state).expect("write");
    std::fs::write(dir.path().join(snap::MEMORY), memory).expect("write");
    let i = virtlab_vmm::snapshot::inspect(dir.path()).expect("a whole snapshot");
    assert_eq!(i.manifest.memory_data_bytes, 2 * memory::PAGE as u64);
    assert_eq!(i.vcpu_parts[0], ("regs".to_string(), 3));
}
