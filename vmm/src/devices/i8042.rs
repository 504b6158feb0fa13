//! The i8042 keyboard controller, reduced to what a PC's reset line needs:
//! Linux's `reboot=k` writes command 0xfe (pulse the CPU reset line) to
//! port 0x64, which ends the VM. Reads say "no data, input buffer empty",
//! so the kernel never waits on it.

use super::{DeviceContext, PortDevice};
use crate::stop::GuestStop;

/// The data port (0x60); the command/status port is 4 above it.
pub const BASE: u16 = 0x60;
/// Ports covered: 0x60-0x64 (0x61-0x63 belong to nobody and read as 0xff).
pub const LEN: u16 = 5;
const DATA: u16 = 0;
const COMMAND: u16 = 4;
const CMD_RESET_CPU: u8 = 0xfe;
/// KVM_SYSTEM_EVENT_RESET: the stop reported for a reset.
pub const RESET_EVENT: u32 = kvm_bindings::KVM_SYSTEM_EVENT_RESET;

/// The keyboard controller's reset line.
#[derive(Debug, Default)]
pub struct I8042 {
    /// Commands written to port 0x64.
    pub commands: u64,
}

impl PortDevice for I8042 {
    fn name(&self) -> &'static str {
        "i8042"
    }

    fn read(&mut self, offset: u16, data: &mut [u8], _ctx: &mut DeviceContext<'_>) {
        // Status 0: output buffer empty, input buffer empty; data reads 0.
        data.fill(if matches!(offset, DATA | COMMAND) { 0 } else { 0xff });
    }

    fn write(&mut self, offset: u16, data: &[u8], _ctx: &mut DeviceContext<'_>) -> Option<GuestStop> {
        if offset != COMMAND {
            return None;
        }
        self.commands += 1;
        (data.first() == Some(&CMD_RESET_CPU)).then_some(GuestStop::SystemEvent { event: RESET_EVENT })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::tests_support::Harness;

    #[test]
    fn the_reset_command_ends_the_vm() {
        let mut h = Harness::new();
        let mut k = I8042::default();
        let mut status = [0xaau8];
        k.read(COMMAND, &mut status, &mut h.ctx());
        assert_eq!(status[0], 0, "never busy");
        assert!(k.write(DATA, &[0xfe], &mut h.ctx()).is_none(), "0xfe on the data port is a key, not a reset");
        assert!(k.write(COMMAND, &[0xaa], &mut h.ctx()).is_none());
        assert_eq!(k.write(COMMAND, &[0xfe], &mut h.ctx()), Some(GuestStop::SystemEvent { event: RESET_EVENT }));
        assert_eq!(k.commands, 2);
    }
}
