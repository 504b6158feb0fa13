//! The command port: how a Linux guest restored from a snapshot gets the
//! command it is to run. virtlab's init asks it right after it marks "user
//! space" on the boot timer, which is where a Linux snapshot pauses: a
//! 32-bit `in` gives the command's length (0: none, use the command file),
//! then one 8-bit `in` per byte gives the command, in the command file's
//! own format (`guest-init/command.rs`). A boot has no command here; a
//! restore may carry one, so one booted snapshot runs any command. In a
//! `warm` snapshot the workload's process asks the port itself, from user
//! mode, with the ports the init opened (`ioperm`, inherited): the same
//! bytes, read without any guest kernel code.

use super::{DeviceContext, PortDevice};
use crate::stop::GuestStop;

/// The port, beside the exit and boot-timer ports.
pub const PORT: u16 = 0x506;

/// Hands the guest its command, once.
#[derive(Debug, Default)]
pub struct CommandPort {
    bytes: Vec<u8>,
    next: usize,
}

impl CommandPort {
    /// A port that hands over `command` (encoded as the command file).
    pub fn with(command: Vec<u8>) -> CommandPort {
        CommandPort { bytes: command, next: 0 }
    }
}

impl PortDevice for CommandPort {
    fn name(&self) -> &'static str {
        "command"
    }

    fn read(&mut self, _offset: u16, data: &mut [u8], _ctx: &mut DeviceContext<'_>) {
        if data.len() == 4 {
            // The length; reading it again starts over.
            self.next = 0;
            data.copy_from_slice(&(self.bytes.len() as u32).to_le_bytes());
            return;
        }
        for b in data.iter_mut() {
            *b = self.bytes.get(self.next).copied().unwrap_or(0);
            self.next += 1;
        }
    }

    fn write(&mut self, _offset: u16, _data: &[u8], _ctx: &mut DeviceContext<'_>) -> Option<GuestStop> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::tests_support::Harness;

    #[test]
    fn length_then_bytes() {
        let mut h = Harness::new();
        let mut p = CommandPort::with(b"ab".to_vec());
        let mut len = [0u8; 4];
        p.read(0, &mut len, &mut h.ctx());
        assert_eq!(u32::from_le_bytes(len), 2);
        let (mut a, mut b, mut c) = ([0u8], [0u8], [0u8]);
        p.read(0, &mut a, &mut h.ctx());
        p.read(0, &mut b, &mut h.ctx());
        p.read(0, &mut c, &mut h.ctx());
        assert_eq!((a, b, c), ([b'a'], [b'b'], [0]));
        let mut none = [0u8; 4];
        CommandPort::default().read(0, &mut none, &mut h.ctx());
        assert_eq!(none, [0; 4]);
    }
}
