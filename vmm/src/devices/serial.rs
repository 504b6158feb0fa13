//! The 16550A UART with its interrupt line, for guests that drive it with
//! interrupts (Linux's 8250 driver): the [`Uart`] register model, shared
//! with a thread that feeds keyboard input, and an edge on IRQ 4 (through
//! a KVM irqfd into the in-kernel PIC) whenever the UART starts asserting
//! its interrupt. As on a PC, the line is only driven while the guest sets
//! OUT2 in the modem control register.

use std::sync::{Arc, Mutex};

use super::uart::Uart;
use super::{DeviceContext, PortDevice};
use crate::stop::GuestStop;

const IER: u16 = 1;
const LCR: u16 = 3;
const MCR: u16 = 4;
const MCR_OUT2: u8 = 0x08;

/// Something that raises an interrupt line when signalled (an irqfd).
pub trait IrqLine: Send {
    /// Sends one edge.
    fn trigger(&self) -> std::io::Result<()>;
}

impl IrqLine for vmm_sys_util::eventfd::EventFd {
    fn trigger(&self) -> std::io::Result<()> {
        self.write(1)
    }
}

/// The UART's state and its line.
#[derive(Debug)]
pub struct SerialState {
    /// The register model.
    pub uart: Uart,
    out2: bool,
    dlab: bool,
    line_high: bool,
    /// Edges sent to the interrupt controller.
    pub interrupts: u64,
    /// Of those, edges sent again for an interrupt still pending
    /// ([`SerialState::reassert`]).
    pub reasserted: u64,
    /// Guest accesses to the UART's registers so far.
    accesses: u64,
    /// `accesses` at the last [`SerialState::reassert`] that found the
    /// interrupt pending.
    pending_since: Option<u64>,
}

impl SerialState {
    /// Queues keyboard input for the guest and raises the interrupt if the
    /// guest asked for receive interrupts.
    pub fn push_input(&mut self, bytes: &[u8], line: &dyn IrqLine) {
        self.uart.push_input(bytes);
        self.update(line);
    }

    /// Sends the edge again if the UART has asserted its interrupt since
    /// the previous call without the guest touching the UART in between:
    /// an edge-triggered line that stays high is not seen twice, so an
    /// interrupt whose edge went unserved would wait for the next one, and
    /// the guest's output with it. Called on a timer, like Linux's own
    /// backup timer for UARTs that lose their THRE interrupt.
    pub fn reassert(&mut self, line: &dyn IrqLine) {
        if !(self.out2 && self.uart.interrupt_pending()) {
            self.pending_since = None;
            return;
        }
        if self.pending_since == Some(self.accesses) && line.trigger().is_ok() {
            self.interrupts += 1;
            self.reasserted += 1;
        }
        self.pending_since = Some(self.accesses);
    }

    fn update(&mut self, line: &dyn IrqLine) {
        self.update_edge(line, false);
    }

    /// `again`: send an edge even if the line was already high (the guest
    /// re-enabled an interrupt it may have missed).
    fn update_edge(&mut self, line: &dyn IrqLine, again: bool) {
        let high = self.out2 && self.uart.interrupt_pending();
        if high && (again || !self.line_high) {
            // An edge: the PIC latches it (ISA interrupts are edge-triggered).
            if line.trigger().is_ok() {
                self.interrupts += 1;
            }
        }
        self.line_high = high;
    }
}

/// The shared UART on the port bus.
pub struct Serial<L: IrqLine> {
    state: Arc<Mutex<SerialState>>,
    line: Arc<L>,
}

impl<L: IrqLine> std::fmt::Debug for Serial<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serial").field("state", &self.state).finish()
    }
}

impl<L: IrqLine> Serial<L> {
    /// A UART in its reset state, raising `line`.
    pub fn new(line: Arc<L>) -> Serial<L> {
        let state = SerialState {
            uart: Uart::new(),
            out2: true,
            dlab: false,
            line_high: false,
            interrupts: 0,
            reasserted: 0,
            accesses: 0,
            pending_since: None,
        };
        Serial { state: Arc::new(Mutex::new(state)), line }
    }

    /// Puts back the state [`PortDevice::save`] gave (a snapshot's);
    /// fields it lacks keep their reset values.
    pub fn restore(&self, saved: &serde_json::Value) -> Result<(), serde_json::Error> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.uart = Uart::from_state(serde_json::from_value(saved["uart"].clone())?);
        s.out2 = saved["out2"].as_bool().unwrap_or(s.out2);
        s.dlab = saved["dlab"].as_bool().unwrap_or(s.dlab);
        s.line_high = saved["line_high"].as_bool().unwrap_or(s.line_high);
        Ok(())
    }

    /// The state and the line, for an input thread.
    pub fn handle(&self) -> (Arc<Mutex<SerialState>>, Arc<L>) {
        (Arc::clone(&self.state), Arc::clone(&self.line))
    }
}

impl<L: IrqLine + Sync + 'static> PortDevice for Serial<L> {
    fn name(&self) -> &'static str {
        "uart"
    }

    fn save(&self) -> serde_json::Value {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({
            "uart": s.uart.state(),
            "out2": s.out2,
            "dlab": s.dlab,
            "line_high": s.line_high,
        })
    }

    fn read(&mut self, offset: u16, data: &mut [u8], ctx: &mut DeviceContext<'_>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.accesses += 1;
        s.uart.read(offset, data, ctx);
        s.update(self.line.as_ref());
    }

    fn write(&mut self, offset: u16, data: &[u8], ctx: &mut DeviceContext<'_>) -> Option<GuestStop> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.accesses += 1;
        let v = data.first().copied().unwrap_or(0);
        match offset {
            MCR => s.out2 = v & MCR_OUT2 != 0,
            LCR => s.dlab = v & 0x80 != 0,
            _ => {}
        }
        let ier_write = offset == IER && !s.dlab;
        let stop = s.uart.write(offset, data, ctx);
        s.update_edge(self.line.as_ref(), ier_write);
        stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::tests_support::Harness;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Counter(AtomicU64);
    impl IrqLine for Counter {
        fn trigger(&self) -> std::io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn edges_follow_the_uart_interrupt_and_out2() {
        let mut h = Harness::new();
        let line = Arc::new(Counter::default());
        let mut s = Serial::new(Arc::clone(&line));
        let edges = || line.0.load(Ordering::SeqCst);
        s.write(1, &[0x02], &mut h.ctx()); // IER: THR empty
        assert_eq!(edges(), 1, "enabling THRE interrupts raises the line at once");
        s.write(0, b"a", &mut h.ctx());
        assert_eq!(edges(), 1, "still high: no new edge");
        let mut iir = [0u8];
        s.read(2, &mut iir, &mut h.ctx());
        assert_eq!(iir[0] & 0x0f, 0x02);
        s.write(0, b"b", &mut h.ctx());
        assert_eq!(edges(), 2, "acknowledged, then raised again by the next byte");
        s.write(4, &[0x00], &mut h.ctx()); // MCR: OUT2 off
        s.read(2, &mut iir, &mut h.ctx());
        s.write(0, b"c", &mut h.ctx());
        assert_eq!(edges(), 2, "OUT2 off gates the line");
        s.write(4, &[MCR_OUT2], &mut h.ctx());
        assert_eq!(edges(), 3);
        s.write(1, &[0x01], &mut h.ctx()); // receive interrupts only
        let (state, l) = s.handle();
        state.lock().unwrap().push_input(b"k", l.as_ref());
        assert_eq!(edges(), 4, "input raises the line");
        assert_eq!(h.console.output(), b"abc");
    }

    #[test]
    fn an_interrupt_left_pending_is_sent_again() {
        let mut h = Harness::new();
        let line = Arc::new(Counter::default());
        let mut s = Serial::new(Arc::clone(&line));
        let (state, l) = s.handle();
        let edges = || line.0.load(Ordering::SeqCst);
        let kick = || state.lock().unwrap().reassert(l.as_ref());
        kick();
        kick();
        assert_eq!(edges(), 0, "nothing pending: nothing sent");
        s.write(1, &[0x02], &mut h.ctx()); // IER: THR empty, raised at once
        assert_eq!(edges(), 1);
        kick();
        assert_eq!(edges(), 1, "pending, but not yet for a whole period");
        s.write(0, b"a", &mut h.ctx());
        kick();
        assert_eq!(edges(), 1, "the guest touched the UART since: it is being served");
        kick();
        assert_eq!(edges(), 2, "pending a whole period with no access: sent again");
        kick();
        assert_eq!(edges(), 3);
        let mut iir = [0u8];
        s.read(2, &mut iir, &mut h.ctx()); // acknowledged
        kick();
        kick();
        assert_eq!(edges(), 3);
        assert_eq!(state.lock().unwrap().reasserted, 2);
    }
}
