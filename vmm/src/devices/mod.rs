//! Emulated devices and the port I/O bus they sit on.
//!
//! A device answers port reads and writes over the range it is registered
//! at. The vCPU loop never tests port numbers itself: it asks the [`PortBus`]
//! which device owns a port (kvmtool's `kvm_cpu__emulate_io` does the same).

pub mod boot_timer;
pub mod command_port;
pub mod exit_port;
pub mod i8042;
pub mod pv_console;
pub mod serial;
pub mod uart;

use std::fmt;
use std::time::Instant;

use vm_memory::GuestMemoryMmap;

use crate::console::Console;
use crate::stop::GuestStop;

/// What a device may touch while it handles an access.
#[derive(Debug)]
pub struct DeviceContext<'a> {
    /// Guest memory (for paravirtual devices that take buffers by address).
    pub mem: &'a GuestMemoryMmap,
    /// The console that guest output goes to.
    pub console: &'a mut Console,
    /// Boot milestones the guest reported, with the host time it did.
    pub milestones: &'a mut Vec<(u8, Instant)>,
}

/// A device on the port I/O bus.
pub trait PortDevice: Send {
    /// A short name for reports ("uart", "pv-console", ...).
    fn name(&self) -> &'static str;

    /// The guest reads `data.len()` bytes at `offset` into the device's range.
    fn read(&mut self, offset: u16, data: &mut [u8], ctx: &mut DeviceContext<'_>);

    /// The guest writes `data` at `offset`. A device may end the run (an
    /// exit port does).
    fn write(&mut self, offset: u16, data: &[u8], ctx: &mut DeviceContext<'_>) -> Option<GuestStop>;

    /// The device's state for a snapshot (`null` for a device that has
    /// none: the exit and fault ports, the boot timer).
    fn save(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

impl fmt::Debug for dyn PortDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors registering devices.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// Two devices claim the same ports.
    #[error("device {new} at ports {base:#x}+{len} overlaps device {existing}")]
    Overlap {
        /// The device being added.
        new: &'static str,
        /// The one already there.
        existing: &'static str,
        /// First port of the new device.
        base: u16,
        /// Number of ports.
        len: u16,
    },
    /// A zero-length or wrapping range.
    #[error("device {0} has an empty or wrapping port range")]
    BadRange(&'static str),
}

#[derive(Debug)]
struct Slot {
    base: u16,
    len: u16,
    device: Box<dyn PortDevice>,
}

/// Port ranges mapped to devices, sorted by base port.
#[derive(Debug, Default)]
pub struct PortBus {
    slots: Vec<Slot>,
}

impl PortBus {
    /// An empty bus.
    pub fn new() -> PortBus {
        PortBus::default()
    }

    /// Registers `device` at ports `base..base + len`.
    pub fn insert(&mut self, base: u16, len: u16, device: Box<dyn PortDevice>) -> Result<(), BusError> {
        if len == 0 || base.checked_add(len - 1).is_none() {
            return Err(BusError::BadRange(device.name()));
        }
        let end = u32::from(base) + u32::from(len);
        if let Some(s) = self
            .slots
            .iter()
            .find(|s| u32::from(s.base) < end && u32::from(base) < u32::from(s.base) + u32::from(s.len))
        {
            return Err(BusError::Overlap { new: device.name(), existing: s.device.name(), base, len });
        }
        let at = self.slots.partition_point(|s| s.base < base);
        self.slots.insert(at, Slot { base, len, device });
        Ok(())
    }

    /// The device owning `port`, and the port's offset in its range.
    pub fn find(&mut self, port: u16) -> Option<(&mut (dyn PortDevice + 'static), u16)> {
        let i = self.slots.partition_point(|s| s.base <= port).checked_sub(1)?;
        let s = &mut self.slots[i];
        let offset = port - s.base;
        (offset < s.len).then(|| (s.device.as_mut(), offset))
    }

    /// Every device's state for a snapshot, by name.
    pub fn save(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        self.slots.iter().map(|s| (s.device.name().to_string(), s.device.save())).collect()
    }

    /// Name of the device owning `port`, if any.
    pub fn name_of(&self, port: u16) -> Option<&'static str> {
        let i = self.slots.partition_point(|s| s.base <= port).checked_sub(1)?;
        let s = &self.slots[i];
        (port - s.base < s.len).then(|| s.device.name())
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use vm_memory::GuestAddress;

    /// Guest memory, a capturing console and a milestone list for device tests.
    pub(crate) struct Harness {
        pub mem: GuestMemoryMmap,
        pub console: Console,
        pub milestones: Vec<(u8, Instant)>,
    }

    impl Harness {
        pub const MEM: u64 = 16 << 20;

        pub fn new() -> Harness {
            Harness {
                mem: GuestMemoryMmap::from_ranges(&[(GuestAddress(0), Self::MEM as usize)]).unwrap(),
                console: Console::new(crate::console::ConsoleSink::Capture),
                milestones: Vec::new(),
            }
        }

        pub fn ctx(&mut self) -> DeviceContext<'_> {
            DeviceContext { mem: &self.mem, console: &mut self.console, milestones: &mut self.milestones }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dummy(&'static str);
    impl PortDevice for Dummy {
        fn name(&self) -> &'static str {
            self.0
        }
        fn read(&mut self, offset: u16, data: &mut [u8], _: &mut DeviceContext<'_>) {
            data.fill(offset as u8);
        }
        fn write(&mut self, _: u16, _: &[u8], _: &mut DeviceContext<'_>) -> Option<GuestStop> {
            None
        }
    }

    #[test]
    fn finds_devices_by_range() {
        let mut bus = PortBus::new();
        bus.insert(0x3f8, 8, Box::new(Dummy("uart"))).unwrap();
        bus.insert(0x510, 1, Box::new(Dummy("pv"))).unwrap();
        assert_eq!(bus.find(0x3f8).map(|(d, o)| (d.name(), o)), Some(("uart", 0)));
        assert_eq!(bus.find(0x3ff).map(|(d, o)| (d.name(), o)), Some(("uart", 7)));
        assert!(bus.find(0x400).is_none());
        assert!(bus.find(0x3f7).is_none());
        assert_eq!(bus.name_of(0x510), Some("pv"));
        assert!(bus.find(0x511).is_none());
        assert!(bus.find(0).is_none());
    }

    #[test]
    fn rejects_overlaps_and_empty_ranges() {
        let mut bus = PortBus::new();
        bus.insert(0x3f8, 8, Box::new(Dummy("uart"))).unwrap();
        let e = bus.insert(0x3fc, 8, Box::new(Dummy("other"))).unwrap_err();
        assert!(matches!(e, BusError::Overlap { existing: "uart", .. }));
        assert!(bus.insert(0x3f0, 9, Box::new(Dummy("low"))).is_err());
        assert!(bus.insert(0x3f0, 8, Box::new(Dummy("low"))).is_ok());
        assert_eq!(bus.insert(5, 0, Box::new(Dummy("e"))), Err(BusError::BadRange("e")));
        assert_eq!(bus.insert(0xffff, 2, Box::new(Dummy("w"))), Err(BusError::BadRange("w")));
    }
}
