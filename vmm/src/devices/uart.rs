//! A 16550A UART (COM1), the "emulated hardware" half of the full- versus
//! para-virtualization experiment: every byte the guest sends is one `out`
//! instruction, so one VM exit.
//!
//! Registers (offset from the base port; DLAB is bit 7 of LCR):
//! 0 THR/RBR (DLL when DLAB), 1 IER (DLM when DLAB), 2 IIR/FCR, 3 LCR,
//! 4 MCR, 5 LSR, 6 MSR, 7 SCR.

use std::collections::VecDeque;

use super::{DeviceContext, PortDevice};
use crate::stop::GuestStop;

const DATA: u16 = 0;
const IER: u16 = 1;
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCR: u16 = 7;

const LCR_DLAB: u8 = 0x80;
const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_IDLE: u8 = 0x40;
const IER_RX: u8 = 0x01;
const IER_THRE: u8 = 0x02;
const IIR_NONE: u8 = 0x01;
const IIR_THRE: u8 = 0x02;
const IIR_RX: u8 = 0x04;
const IIR_FIFO: u8 = 0xc0;
const MCR_LOOP: u8 = 0x10;
/// The 16550A's receive FIFO, in bytes.
const RX_FIFO: usize = 16;
/// DCD, DSR, CTS asserted: a terminal is attached.
const MSR_CONNECTED: u8 = 0xb0;

/// The 16550A's register state. Transmission is instantaneous, so the
/// transmitter is always empty.
#[derive(Debug)]
pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    fcr: u8,
    divisor: u16,
    thre_pending: bool,
    input: VecDeque<u8>,
    /// Bytes the guest transmitted.
    pub tx_bytes: u64,
}

impl Default for Uart {
    fn default() -> Uart {
        Uart {
            ier: 0,
            lcr: 0x03,
            mcr: 0x08,
            scr: 0,
            fcr: 0,
            divisor: 12, // 9600 baud
            thre_pending: false,
            input: VecDeque::new(),
            tx_bytes: 0,
        }
    }
}

/// A UART's registers and receive FIFO, as a snapshot keeps them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UartState {
    /// Interrupt enable register.
    pub ier: u8,
    /// Line control register.
    pub lcr: u8,
    /// Modem control register.
    pub mcr: u8,
    /// Scratch register.
    pub scr: u8,
    /// FIFO control register (as last written).
    pub fcr: u8,
    /// Baud-rate divisor.
    pub divisor: u16,
    /// A THR-empty interrupt not yet acknowledged.
    pub thre_pending: bool,
    /// Bytes waiting for the guest to read.
    pub input: Vec<u8>,
    /// Bytes transmitted so far.
    pub tx_bytes: u64,
}

impl Uart {
    /// A UART in its reset state.
    pub fn new() -> Uart {
        Uart::default()
    }

    /// Its registers and FIFO.
    pub fn state(&self) -> UartState {
        UartState {
            ier: self.ier,
            lcr: self.lcr,
            mcr: self.mcr,
            scr: self.scr,
            fcr: self.fcr,
            divisor: self.divisor,
            thre_pending: self.thre_pending,
            input: self.input.iter().copied().collect(),
            tx_bytes: self.tx_bytes,
        }
    }

    /// A UART in `state`.
    pub fn from_state(s: UartState) -> Uart {
        Uart {
            ier: s.ier,
            lcr: s.lcr,
            mcr: s.mcr,
            scr: s.scr,
            fcr: s.fcr,
            divisor: s.divisor,
            thre_pending: s.thre_pending,
            input: s.input.into(),
            tx_bytes: s.tx_bytes,
        }
    }

    /// Queues bytes for the guest to read (a keyboard on the other end).
    pub fn push_input(&mut self, bytes: &[u8]) {
        self.input.extend(bytes);
    }

    /// Whether the device asserts its interrupt line.
    pub fn interrupt_pending(&self) -> bool {
        self.iir() != IIR_NONE
    }

    /// The baud-rate divisor the guest programmed.
    pub fn divisor(&self) -> u16 {
        self.divisor
    }

    fn iir(&self) -> u8 {
        let fifo = if self.fcr & 1 != 0 { IIR_FIFO } else { 0 };
        if self.ier & IER_RX != 0 && !self.input.is_empty() {
            IIR_RX | fifo
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            IIR_THRE | fifo
        } else {
            IIR_NONE | fifo
        }
    }

    fn lsr(&self) -> u8 {
        let dr = if self.input.is_empty() { 0 } else { LSR_DATA_READY };
        LSR_THR_EMPTY | LSR_IDLE | dr
    }
}

impl PortDevice for Uart {
    fn name(&self) -> &'static str {
        "uart"
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(self.state()).unwrap_or_default()
    }

    fn read(&mut self, offset: u16, data: &mut [u8], _ctx: &mut DeviceContext<'_>) {
        let dlab = self.lcr & LCR_DLAB != 0;
        let v = match offset {
            DATA if dlab => self.divisor as u8,
            DATA => self.input.pop_front().unwrap_or(0),
            IER if dlab => (self.divisor >> 8) as u8,
            IER => self.ier,
            IIR_FCR => {
                let v = self.iir();
                // Reading IIR acknowledges a THR-empty interrupt.
                if v & 0x0f == IIR_THRE {
                    self.thre_pending = false;
                }
                v
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => self.lsr(),
            MSR => {
                if self.mcr & MCR_LOOP != 0 {
                    // Loopback: modem outputs wired back to the inputs.
                    (self.mcr & 0x0f) << 4
                } else {
                    MSR_CONNECTED
                }
            }
            SCR => self.scr,
            _ => 0xff,
        };
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = v;
        }
    }

    fn write(&mut self, offset: u16, data: &[u8], ctx: &mut DeviceContext<'_>) -> Option<GuestStop> {
        let v = data.first().copied().unwrap_or(0);
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            DATA if dlab => self.divisor = (self.divisor & 0xff00) | u16::from(v),
            DATA => {
                if self.mcr & MCR_LOOP != 0 {
                    // The receive FIFO holds 16 bytes; a byte that finds it
                    // full is lost (an overrun), so a guest cannot grow it.
                    if self.input.len() < RX_FIFO {
                        self.input.push_back(v);
                    }
                } else {
                    self.tx_bytes += 1;
                    ctx.console.write(&[v]);
                }
                self.thre_pending = true;
            }
            IER if dlab => self.divisor = (self.divisor & 0x00ff) | (u16::from(v) << 8),
            IER => {
                self.ier = v & 0x0f;
                // Enabling the THR-empty interrupt raises it at once: the
                // transmitter is always empty here.
                self.thre_pending = self.ier & IER_THRE != 0;
            }
            IIR_FCR => self.fcr = v,
            LCR => self.lcr = v,
            MCR => self.mcr = v & 0x1f,
            SCR => self.scr = v,
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::tests_support::Harness;

    #[test]
    fn transmits_bytes_to_the_console() {
        let mut h = Harness::new();
        let mut u = Uart::new();
        for b in b"hi\n" {
            assert!(u.write(DATA, &[*b], &mut h.ctx()).is_none());
        }
        assert_eq!(h.console.output(), b"hi\n");
        assert_eq!(u.tx_bytes, 3);
    }

    #[test]
    fn line_status_says_ready_to_send() {
        let mut h = Harness::new();
        let mut u = Uart::new();
        let mut b = [0u8];
        u.read(LSR, &mut b, &mut h.ctx());
        assert_eq!(b[0] & LSR_THR_EMPTY, LSR_THR_EMPTY);
        assert_eq!(b[0] & LSR_DATA_READY, 0);
        u.push_input(b"x");
        u.read(LSR, &mut b, &mut h.ctx());
        assert_eq!(b[0] & LSR_DATA_READY, LSR_DATA_READY);
        u.read(DATA, &mut b, &mut h.ctx());
        assert_eq!(b[0], b'x');
    }

    #[test]
    fn divisor_latch_and_scratch() {
        let mut h = Harness::new();
        let mut u = Uart::new();
        u.write(LCR, &[0x80 | 0x03], &mut h.ctx());
        u.write(DATA, &[0x01], &mut h.ctx());
        u.write(IER, &[0x00], &mut h.ctx());
        u.write(LCR, &[0x03], &mut h.ctx());
        assert_eq!(u.divisor(), 1, "115200 baud");
        assert!(h.console.output().is_empty(), "DLL writes are not data");
        u.write(SCR, &[0x5a], &mut h.ctx());
        let mut b = [0u8];
        u.read(SCR, &mut b, &mut h.ctx());
        assert_eq!(b[0], 0x5a);
    }

    #[test]
    fn interrupts_follow_ier() {
        let mut h = Harness::new();
        let mut u = Uart::new();
        assert!(!u.interrupt_pending());
        u.write(IER, &[IER_THRE], &mut h.ctx());
        assert!(u.interrupt_pending());
        let mut b = [0u8];
        u.read(IIR_FCR, &mut b, &mut h.ctx());
        assert_eq!(b[0] & 0x0f, IIR_THRE);
        assert!(!u.interrupt_pending(), "reading IIR acknowledges THRE");
        u.write(IER, &[IER_RX], &mut h.ctx());
        u.push_input(b"k");
        assert!(u.interrupt_pending());
    }

    #[test]
    fn loopback_returns_data() {
        let mut h = Harness::new();
        let mut u = Uart::new();
        u.write(MCR, &[MCR_LOOP], &mut h.ctx());
        u.write(DATA, &[0x42], &mut h.ctx());
        let mut b = [0u8];
        u.read(DATA, &mut b, &mut h.ctx());
        assert_eq!(b[0], 0x42);
        assert!(h.console.output().is_empty());
    }
}
