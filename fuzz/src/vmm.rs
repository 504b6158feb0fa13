//! The VMM's parsers and the devices a guest drives: each function takes
//! untrusted bytes and panics only when a property of virtlab fails.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use virtlab_minikernel::abi::{BootInfo, BOOT_INFO_ADDR, USER_BASE};
use virtlab_vmm::console::{Console, ConsoleSink};
use virtlab_vmm::devices::boot_timer::BootTimer;
use virtlab_vmm::devices::command_port::CommandPort;
use virtlab_vmm::devices::exit_port::{ExitPort, FaultPort};
use virtlab_vmm::devices::i8042::I8042;
use virtlab_vmm::devices::pv_console::PvConsole;
use virtlab_vmm::devices::serial::{IrqLine, Serial, SerialState};
use virtlab_vmm::devices::uart::{Uart, UartState};
use virtlab_vmm::devices::{DeviceContext, PortBus, PortDevice};
use virtlab_vmm::elf::ElfHeader;
use virtlab_vmm::linux::boot::{self, ZeroPageInput};
use virtlab_vmm::linux::command::{self, format};
use virtlab_vmm::linux::kernel::{self, Format, Image};
use virtlab_vmm::loader::{self, LoadError};
use virtlab_vmm::snapshot::format::{self as snap, Hex, Manifest, State};
use virtlab_vmm::snapshot::SnapshotAt;
use virtlab_vmm::stop::GuestStop;
use vm_memory::{Bytes as _, GuestAddress, GuestMemoryMmap};

use crate::Bytes;

/// Guest memory of `size` bytes at address 0 (anonymous, so untouched
/// pages cost nothing).
pub fn guest_memory(size: u64) -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).expect("an anonymous mapping for guest memory")
}

/// The workload loader: `parse_user_elf` and the memory plan never panic;
/// an accepted image is self-consistent and loads into memory the plan
/// says it fits in; every refusal is a `BadWorkload` naming the problem.
pub fn user_elf(data: &[u8]) {
    let image = match loader::parse_user_elf(data) {
        Ok(image) => image,
        Err(LoadError::BadWorkload(_)) => return,
        Err(other) => panic!("parse_user_elf refused with an error of the wrong kind: {other}"),
    };
    let len = data.len() as u64;
    assert!(!image.segments.is_empty());
    assert_eq!(image.end % 4096, 0, "the end is page-aligned");
    for s in &image.segments {
        assert!(s.offset + s.filesz <= len && s.filesz <= s.memsz, "{s:?} of a {len}-byte file");
        assert!(s.vaddr + s.memsz <= image.end, "{s:?} ends past {:#x}", image.end);
    }
    assert!(image.segments.iter().any(|s| (s.vaddr..s.vaddr + s.memsz).contains(&image.entry)));
    const MEM: u64 = 16 << 20;
    for mem_size in [MEM, 1 << 30, u64::MAX] {
        let Ok(plan) = loader::plan_user_memory(&image, mem_size) else { continue };
        assert!(plan.heap_start <= plan.heap_end && plan.heap_end <= plan.stack_top && plan.stack_top <= mem_size);
        for s in &image.segments {
            assert!(s.vaddr >= USER_BASE && s.vaddr + s.memsz <= plan.heap_end, "{s:?} outside {plan:?}");
        }
        if mem_size == MEM {
            let mem = guest_memory(MEM);
            loader::load_user(&mem, &image, data).expect("an image that fits the plan loads");
        }
    }
}

/// The minikernel loader: `check_kernel` never panics, and neither does
/// loading what it accepts (linux-loader included) into 16 MiB.
pub fn kernel_elf(data: &[u8]) {
    if loader::check_kernel(data).is_err() {
        return;
    }
    let mem = guest_memory(16 << 20);
    if let Ok(k) = loader::load_kernel(&mem, data) {
        assert!(k.end <= USER_BASE, "a kernel ending at {:#x} was loaded", k.end);
    }
}

/// The ELF header reader on its own, for any declared file length.
pub fn elf_header(data: &[u8]) {
    let mut b = Bytes::new(data);
    let file_len = b.u64();
    let head = b.rest();
    if let Ok(h) = ElfHeader::parse_x86_64_exec(head, file_len) {
        let (off, size) = h.program_headers(file_len).expect("a parsed header has a usable table");
        assert!(off + size <= file_len);
    }
}

/// The Linux kernel loader: format detection, the ELF and bzImage header
/// checks for any memory size, and loading into 32 MiB never panic; an
/// image that loads fits the memory it was checked against.
pub fn linux_kernel(data: &[u8]) {
    let _ = kernel::is_linux(data);
    let Ok(format) = kernel::detect(data, "fuzz") else { return };
    for mem_size in [0, 32 << 20, 1 << 30, u64::MAX] {
        let mut image = Image::from_bytes(data);
        let _ = match format {
            Format::Elf => kernel::check_elf(&mut image, mem_size),
            Format::BzImage => kernel::check_bzimage(&image.head, image.len, mem_size),
        };
    }
    const MEM: u64 = 32 << 20;
    let mem = guest_memory(MEM);
    let Ok(k) = kernel::load(&mem, &mut Image::from_bytes(data), MEM, "fuzz") else { return };
    assert!(k.end <= MEM, "a kernel ending at {:#x} loaded into {MEM} bytes", k.end);
    // What the boot protocol then builds from the image's header.
    let e820 = boot::e820_map(MEM);
    let page = boot::zero_page(&ZeroPageInput {
        setup_header: k.setup_header.as_deref(),
        cmdline: (boot::layout::CMDLINE, k.cmdline_max),
        initrd: Some((0x100_0000, 4096)),
        e820: &e820,
    });
    assert_eq!(page.len(), 4096);
    let _ = boot::check_cmdline("console=ttyS0", k.cmdline_max);
    let _ = boot::place_initrd(MEM, k.end, 4096, k.initrd_addr_max);
}

/// The boot protocol's builders for any numbers: the initrd lands page
/// aligned, above the kernel and inside the limits; the zero page is one
/// page and the PVH structures have their fixed sizes.
pub fn boot_protocol(data: &[u8]) {
    let mut b = Bytes::new(data);
    let (mem_size, kernel_end, size, addr_max) = (b.u64(), b.u64(), b.u64(), b.u64());
    if let Ok(at) = boot::place_initrd(mem_size, kernel_end, size, addr_max) {
        assert_eq!(at % 4096, 0);
        assert!(at >= kernel_end, "initrd at {at:#x} below the kernel's end {kernel_end:#x}");
        assert!(at + size <= mem_size && at + size <= addr_max.saturating_add(1));
    }
    let max = usize::from(b.u16()).max(1);
    let line = String::from_utf8_lossy(b.piece()).into_owned();
    assert_eq!(boot::check_cmdline(&line, max).is_ok(), line.len() < max);
    let e820 = boot::e820_map(mem_size);
    let header = b.rest();
    let initrd = (size != 0).then_some((kernel_end, size));
    let page =
        boot::zero_page(&ZeroPageInput { setup_header: Some(header), cmdline: (addr_max, max), initrd, e820: &e820 });
    assert_eq!(page.len(), 4096);
    let (info, memmap, modlist) = boot::pvh_start_info(addr_max, initrd, &e820);
    assert_eq!((info.len(), memmap.len(), modlist.len()), (56, 24 * e820.len(), 32 * usize::from(initrd.is_some())));
}

/// The guest's command file: `parse` never panics, and what it accepts is
/// written back byte for byte by the VMM's encoder (the other direction is
/// a property test).
pub fn command_file(data: &[u8]) {
    let Ok(cmd) = format::parse(data) else { return };
    assert_eq!(cmd.env.count(), cmd.env_len);
    assert_eq!(cmd.argv.count(), cmd.argc);
    assert!(cmd.argc >= 1 && cmd.env_len + cmd.argc <= format::MAX_ENTRIES);
    let text = |f: &[u8]| String::from_utf8(f.to_vec()).ok();
    let argv: Option<Vec<String>> = cmd.argv.map(text).collect();
    let env: Option<Vec<String>> = cmd.env.map(text).collect();
    let workdir = if cmd.workdir.is_empty() { Some(None) } else { text(cmd.workdir).map(Some) };
    let (Some(argv), Some(env), Some(workdir)) = (argv, env, workdir) else { return };
    let _ = format::lookup(cmd.env, b"PATH");
    let again = command::encode(&argv, &env, workdir.as_deref()).expect("a parsed command file encodes");
    assert_eq!(again, data, "encode(parse(file)) is the file");
}

/// What the guest-facing devices share: a bus with every device, guest
/// memory and a captured console.
#[derive(Debug)]
pub struct DeviceRig {
    /// The minikernel's devices, at their ports.
    pub bus: PortBus,
    /// A Linux guest's UART, the one with an interrupt line (on a bus of its
    /// own: it saves under the same name as the other UART).
    pub linux_bus: PortBus,
    /// That UART's state.
    pub serial: Arc<Mutex<SerialState>>,
    /// 16 MiB of guest memory.
    pub mem: GuestMemoryMmap,
    /// What the guest wrote to its consoles.
    pub console: Console,
    /// Boot-timer marks.
    pub milestones: Vec<(u8, Instant)>,
}

/// The port of the UART on the rig.
pub const UART: u16 = 0x3f8;
/// The port of the UART with an interrupt line.
pub const SERIAL: u16 = 0x2f8;
/// The ports of the devices on the rig (base, length): the UART, pv
/// console, boot timer, exit, fault, command and i8042 ports, and the UART
/// with an interrupt line.
pub const PORTS: [(u16, u16); 8] =
    [(UART, 8), (0x510, 1), (0x440, 1), (0x501, 1), (0x502, 1), (0x506, 1), (0x60, 5), (SERIAL, 8)];

/// An interrupt line that goes nowhere (the serial device's edges).
#[derive(Debug, Default)]
pub struct NoLine;

impl IrqLine for NoLine {
    fn trigger(&self) -> std::io::Result<()> {
        Ok(())
    }
}

impl DeviceRig {
    /// Every device at its port; the command port holds `command`.
    pub fn new(command: Vec<u8>) -> DeviceRig {
        let mut bus = PortBus::new();
        let devices: [Box<dyn PortDevice>; 7] = [
            Box::new(Uart::new()),
            Box::new(PvConsole::default()),
            Box::new(BootTimer),
            Box::new(ExitPort),
            Box::new(FaultPort),
            Box::new(CommandPort::with(command)),
            Box::new(I8042::default()),
        ];
        for ((base, len), d) in PORTS.into_iter().zip(devices) {
            bus.insert(base, len, d).expect("the rig's ports do not overlap");
        }
        let serial = Serial::new(Arc::new(NoLine));
        let (state, _) = serial.handle();
        let mut linux_bus = PortBus::new();
        linux_bus.insert(SERIAL, 8, Box::new(serial)).expect("an empty bus");
        DeviceRig {
            bus,
            linux_bus,
            serial: state,
            mem: guest_memory(16 << 20),
            console: Console::new(ConsoleSink::Capture),
            milestones: Vec::new(),
        }
    }

    /// One port access of `data.len()` bytes; None for a port no device
    /// owns, else what the device said (a read's bytes are in `data`).
    pub fn access(&mut self, port: u16, write: bool, data: &mut [u8]) -> Option<Option<GuestStop>> {
        let (device, offset) = match self.bus.find(port) {
            Some(found) => found,
            None => self.linux_bus.find(port)?,
        };
        let mut ctx = DeviceContext { mem: &self.mem, console: &mut self.console, milestones: &mut self.milestones };
        Some(if write {
            device.write(offset, data, &mut ctx)
        } else {
            device.read(offset, data, &mut ctx);
            None
        })
    }

    /// The registers of the UART at `base` ([`UART`] or [`SERIAL`]).
    pub fn uart_at(&self, base: u16) -> UartState {
        if base == SERIAL {
            return self.serial.lock().unwrap_or_else(|p| p.into_inner()).uart.state();
        }
        let saved = self.bus.save().remove("uart").expect("the rig has a UART");
        serde_json::from_value(saved).expect("the UART's saved state reads back")
    }

    /// The registers of the UART at [`UART`].
    pub fn uart(&self) -> UartState {
        self.uart_at(UART)
    }
}

/// The most bytes the guest can queue in the UART's receive FIFO by
/// writing in loopback mode (a 16550A's FIFO).
pub const UART_FIFO: usize = 16;

/// Any sequence of port reads and writes, of any width and value, on every
/// guest-facing device: nothing panics, and the UART keeps its invariants
/// (register read-back, LSR and IIR values, a bounded FIFO).
pub fn devices(data: &[u8]) {
    let mut b = Bytes::new(data);
    let command = b.piece().to_vec();
    let mut rig = DeviceRig::new(command);
    // The pv console and fault port read what the guest left at BOOT_INFO.
    let boot_info = b.take(std::mem::size_of::<BootInfo>()).to_vec();
    rig.mem.write_slice(&boot_info, GuestAddress(BOOT_INFO_ADDR)).expect("BOOT_INFO is in guest memory");
    while !b.is_empty() {
        let op = b.u8();
        let (base, len) = PORTS[usize::from(op >> 4) % PORTS.len()];
        let port = base + u16::from(op & 0x7) % len;
        let port = if op & 0x08 != 0 && b.u8() == 0xff { b.u16() } else { port };
        let write = b.u8() & 1 == 1;
        let width = usize::from(b.u8() % 9);
        let mut buf = b.take(width).to_vec();
        buf.resize(width, 0);
        let uart = [UART, SERIAL].into_iter().find(|&u| port.wrapping_sub(u) < 8);
        let before = uart.map(|u| rig.uart_at(u));
        let value = buf.first().copied();
        let stop = rig.access(port, write, &mut buf);
        if let (Some(u), Some(before)) = (uart, &before) {
            let after = rig.uart_at(u);
            check_uart(port - u, write, value, &buf, before, &after);
            assert!(after.input.len() <= UART_FIFO, "the guest grew the UART's FIFO to {} bytes", after.input.len());
        }
        if let Some(Some(stop)) = stop {
            let _ = (stop.describe(), stop.exit_status());
        }
    }
}

fn check_uart(offset: u16, write: bool, value: Option<u8>, data: &[u8], before: &UartState, after: &UartState) {
    let dlab = before.lcr & 0x80 != 0;
    if !write {
        assert!(data.iter().skip(1).all(|&x| x == 0), "a wide read fills only its first byte: {data:?}");
        let Some(&got) = data.first() else { return };
        let expect = match (offset, dlab) {
            (0, true) => Some(before.divisor as u8),
            (1, true) => Some((before.divisor >> 8) as u8),
            (1, false) => Some(before.ier),
            (3, _) => Some(before.lcr),
            (4, _) => Some(before.mcr),
            (7, _) => Some(before.scr),
            (0, false) => Some(before.input.first().copied().unwrap_or(0)),
            _ => None,
        };
        if let Some(e) = expect {
            assert_eq!(got, e, "reading UART register {offset} (dlab {dlab})");
        }
        match offset {
            5 => {
                assert_eq!(got & 0x60, 0x60, "LSR: the transmitter is always empty");
                assert_eq!(got & 1 != 0, !before.input.is_empty(), "LSR data-ready is the FIFO's state");
            }
            2 => assert!(matches!(got & 0x0f, 1 | 2 | 4), "IIR {got:#x}"),
            _ => {}
        }
    } else if let Some(v) = value {
        match (offset, dlab) {
            (3, _) => assert_eq!(after.lcr, v),
            (7, _) => assert_eq!(after.scr, v),
            (1, false) => assert_eq!(after.ier, v & 0x0f),
            (4, _) => assert_eq!(after.mcr, v & 0x1f),
            (0, true) => assert_eq!(after.divisor as u8, v),
            (1, true) => assert_eq!((after.divisor >> 8) as u8, v),
            _ => {}
        }
    }
    assert!(after.ier <= 0x0f && after.mcr <= 0x1f);
}

/// A UART restored from any snapshot state, then driven by the guest: no
/// panic (a snapshot's device state is read back with serde, then used as
/// it is), for the plain UART and for the one with an interrupt line.
pub fn uart_state(data: &[u8]) {
    let mut rig = DeviceRig::new(Vec::new());
    let mut ctx = DeviceContext { mem: &rig.mem, console: &mut rig.console, milestones: &mut rig.milestones };
    let mut devices: Vec<Box<dyn PortDevice>> = Vec::new();
    if let Ok(state) = serde_json::from_slice::<UartState>(data) {
        let uart = Uart::from_state(state.clone());
        assert_eq!(uart.state(), state, "from_state keeps every register");
        devices.push(Box::new(uart));
    }
    let saved = serde_json::from_slice::<serde_json::Value>(data).unwrap_or_default();
    let wrapped = serde_json::json!({ "uart": saved, "out2": true, "dlab": false, "line_high": true });
    for value in [&saved, &wrapped] {
        let serial = Serial::new(Arc::new(NoLine));
        if serial.restore(value).is_ok() {
            devices.push(Box::new(serial));
        }
    }
    for mut device in devices {
        for offset in 0..8 {
            let mut b = [0u8; 1];
            device.read(offset, &mut b, &mut ctx);
            device.write(offset, &b, &mut ctx);
        }
    }
}

/// The snapshot description and state files: any bytes are refused with a
/// typed error or read; `Hex` reads only even-length hex and writes back
/// what it read.
pub fn snapshot_json(data: &[u8]) {
    let _ = serde_json::from_slice::<Manifest>(data);
    if let Ok(state) = serde_json::from_slice::<State>(data) {
        let again = serde_json::to_vec(&state).expect("a state serializes");
        let back: State = serde_json::from_slice(&again).expect("a written state reads back");
        assert_eq!(back.vcpus.len(), state.vcpus.len());
    }
    if let Ok(h) = serde_json::from_slice::<Hex>(data) {
        let text = serde_json::to_string(&h).expect("hex serializes");
        assert_eq!(serde_json::from_str::<Hex>(&text).expect("written hex reads back"), h);
    }
}

/// A whole snapshot directory of fuzzed files: `inspect` (which reads and
/// checks all three) returns a typed error or an inspection, never panics.
pub fn snapshot_dir(data: &[u8]) {
    let mut b = Bytes::new(data);
    let manifest = b.take(usize::from(b.clone().u16()) + 2).get(2..).unwrap_or_default().to_vec();
    let state = b.take(usize::from(b.clone().u16()) + 2).get(2..).unwrap_or_default().to_vec();
    let memory = b.rest().to_vec();
    snapshot_files(&manifest, &state, &memory);
}

/// [`snapshot_dir`] with its three files given apart.
pub fn snapshot_files(manifest: &[u8], state: &[u8], memory: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join(snap::MANIFEST), manifest).expect("write snapshot.json");
    std::fs::write(dir.path().join(snap::STATE), state).expect("write state.json");
    std::fs::write(dir.path().join(snap::MEMORY), memory).expect("write memory");
    if let Ok(i) = virtlab_vmm::snapshot::inspect(dir.path()) {
        assert_eq!(i.manifest.format, snap::FORMAT);
        assert_eq!(i.manifest.mem_size, memory.len() as u64);
    }
}

/// The result line a workload prints on the guest's console (which
/// `virtlab compare` reads): a parsed line, printed again, parses to the
/// same result; `find` never panics on any output.
pub fn workload_result(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = virtlab_workload::WorkloadResult::find(&text);
    let Ok(r) = virtlab_workload::WorkloadResult::parse(&text) else { return };
    let mut line = format!("virtlab.result mode={}", r.mode);
    for (k, v) in &r.fields {
        line.push_str(&format!(" {k}={v}"));
    }
    assert_eq!(virtlab_workload::WorkloadResult::parse(&line).expect("a printed result parses"), r);
    for k in r.fields.keys() {
        let _ = r.get_u64(k);
    }
}

/// `--snapshot-at`: `ready`, `init` or a duration; a duration it prints
/// (in whole milliseconds) parses back to itself.
pub fn snapshot_at(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(at) = SnapshotAt::parse(&text) else { return };
    let name = at.name();
    if let SnapshotAt::After(d) = at {
        if d.as_millis() > u128::from(u64::MAX) {
            return; // printed in milliseconds, it no longer fits the parser's u64
        }
    }
    let again = SnapshotAt::parse(&name).expect("a printed snapshot point parses");
    assert_eq!(again.name(), name);
}
