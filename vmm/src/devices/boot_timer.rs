//! The boot timer: the guest writes a milestone number, the VMM notes the
//! host time it arrived (Firecracker's boot-timer pseudo device does the
//! same with one magic byte).

use std::time::Instant;

use super::{DeviceContext, PortDevice};
use crate::stop::GuestStop;

/// Timestamps boot milestones.
#[derive(Debug, Default)]
pub struct BootTimer;

impl PortDevice for BootTimer {
    fn name(&self) -> &'static str {
        "boot-timer"
    }

    fn read(&mut self, _offset: u16, data: &mut [u8], _ctx: &mut DeviceContext<'_>) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u16, data: &[u8], ctx: &mut DeviceContext<'_>) -> Option<GuestStop> {
        let marker = data.first().copied().unwrap_or(0);
        ctx.milestones.push((marker, Instant::now()));
        None
    }
}
