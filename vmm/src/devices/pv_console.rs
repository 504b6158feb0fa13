//! The paravirtual console: the guest knows it is virtualized and hands the
//! VMM a whole buffer in one exit, instead of feeding an emulated UART byte
//! by byte. The buffer's guest address and length are in the boot-info page
//! (`BootInfo::pv_addr`, `BootInfo::pv_len`).

use std::mem::offset_of;

use virtlab_minikernel::abi::{BootInfo, BOOT_INFO_ADDR};
use vm_memory::{Bytes, GuestAddress};

use super::{DeviceContext, PortDevice};
use crate::stop::GuestStop;

/// Largest buffer one kick may hand over.
pub const MAX_KICK: u64 = 1 << 20;

/// The paravirtual console port.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct PvConsole {
    /// Buffers handed over (one exit each).
    pub kicks: u64,
    /// Bytes handed over.
    pub bytes: u64,
}

impl PortDevice for PvConsole {
    fn name(&self) -> &'static str {
        "pv-console"
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn read(&mut self, _offset: u16, data: &mut [u8], _ctx: &mut DeviceContext<'_>) {
        // Reading the port tells the guest the device exists: "VL".
        for (i, b) in data.iter_mut().enumerate() {
            *b = *b"VL".get(i).unwrap_or(&0);
        }
    }

    fn write(&mut self, _offset: u16, _data: &[u8], ctx: &mut DeviceContext<'_>) -> Option<GuestStop> {
        let at = |field| GuestAddress(BOOT_INFO_ADDR + field as u64);
        let addr: u64 = match ctx.mem.read_obj(at(offset_of!(BootInfo, pv_addr))) {
            Ok(v) => v,
            Err(_) => return Some(GuestStop::BadPvBuffer { addr: BOOT_INFO_ADDR, len: 0 }),
        };
        let len: u64 = match ctx.mem.read_obj(at(offset_of!(BootInfo, pv_len))) {
            Ok(v) => v,
            Err(_) => return Some(GuestStop::BadPvBuffer { addr: BOOT_INFO_ADDR, len: 0 }),
        };
        if len > MAX_KICK {
            return Some(GuestStop::BadPvBuffer { addr, len });
        }
        let mut buf = vec![0u8; len as usize];
        if ctx.mem.read_slice(&mut buf, GuestAddress(addr)).is_err() {
            return Some(GuestStop::BadPvBuffer { addr, len });
        }
        self.kicks += 1;
        self.bytes += len;
        ctx.console.write(&buf);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::tests_support::Harness;

    fn describe(h: &Harness, addr: u64, len: u64) {
        let base = BOOT_INFO_ADDR;
        h.mem.write_obj(addr, GuestAddress(base + offset_of!(BootInfo, pv_addr) as u64)).unwrap();
        h.mem.write_obj(len, GuestAddress(base + offset_of!(BootInfo, pv_len) as u64)).unwrap();
    }

    #[test]
    fn one_kick_moves_a_whole_buffer() {
        let mut h = Harness::new();
        h.mem.write_slice(b"hello, world\n", GuestAddress(0x20_0000)).unwrap();
        describe(&h, 0x20_0000, 13);
        let mut pv = PvConsole::default();
        assert!(pv.write(0, &[0], &mut h.ctx()).is_none());
        assert_eq!(h.console.output(), b"hello, world\n");
        assert_eq!((pv.kicks, pv.bytes), (1, 13));
    }

    #[test]
    fn a_buffer_outside_guest_memory_stops_the_guest() {
        let mut h = Harness::new();
        describe(&h, Harness::MEM - 4, 100);
        let mut pv = PvConsole::default();
        let stop = pv.write(0, &[0], &mut h.ctx());
        assert!(matches!(stop, Some(GuestStop::BadPvBuffer { len: 100, .. })), "{stop:?}");
        describe(&h, 0x20_0000, MAX_KICK + 1);
        assert!(pv.write(0, &[0], &mut h.ctx()).is_some());
        assert!(h.console.output().is_empty());
    }
}
