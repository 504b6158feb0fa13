//! The exit port: the guest writes its workload's exit status, the VM ends.
//! Also the fault port: the guest's kernel reports an exception it could not
//! handle (the details are in the boot-info page's fault report).

use std::mem::offset_of;

use virtlab_minikernel::abi::{BootInfo, FaultReport, BOOT_INFO_ADDR};
use vm_memory::{Bytes, GuestAddress};

use super::{DeviceContext, PortDevice};
use crate::stop::{FaultInfo, GuestStop};

/// Ends the run with the status the guest writes.
#[derive(Debug, Default)]
pub struct ExitPort;

impl PortDevice for ExitPort {
    fn name(&self) -> &'static str {
        "exit"
    }

    fn read(&mut self, _offset: u16, data: &mut [u8], _ctx: &mut DeviceContext<'_>) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u16, data: &[u8], _ctx: &mut DeviceContext<'_>) -> Option<GuestStop> {
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        Some(GuestStop::Exited(u32::from_le_bytes(v)))
    }
}

/// Ends the run with the fault report the guest's kernel left in memory.
#[derive(Debug, Default)]
pub struct FaultPort;

impl PortDevice for FaultPort {
    fn name(&self) -> &'static str {
        "fault"
    }

    fn read(&mut self, _offset: u16, data: &mut [u8], _ctx: &mut DeviceContext<'_>) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u16, data: &[u8], ctx: &mut DeviceContext<'_>) -> Option<GuestStop> {
        let base = BOOT_INFO_ADDR + offset_of!(BootInfo, fault) as u64;
        let field = |off: usize| ctx.mem.read_obj::<u64>(GuestAddress(base + off as u64)).unwrap_or(0);
        let r = FaultReport {
            vector: field(offset_of!(FaultReport, vector)),
            error_code: field(offset_of!(FaultReport, error_code)),
            rip: field(offset_of!(FaultReport, rip)),
            cs: field(offset_of!(FaultReport, cs)),
            cr2: field(offset_of!(FaultReport, cr2)),
            rsp: field(offset_of!(FaultReport, rsp)),
        };
        // The byte written is the vector; the report has the rest.
        let vector = data.first().copied().unwrap_or(r.vector as u8);
        Some(GuestStop::Fault(FaultInfo {
            vector,
            error_code: r.error_code,
            rip: r.rip,
            address: r.cr2,
            rsp: r.rsp,
            user: r.cs & 3 == 3,
        }))
    }
}
