//! What both runs share: the KVM objects, guest memory, the vCPU and its
//! exit loop, and the clock that times every step.
//!
//! The minikernel run ([`crate::vm`]) and the Linux run ([`crate::linux`])
//! each add what their guest needs (boot data, interrupt controllers,
//! devices) around the same steps:
//!
//! 1. [`kvm::open_kvm`] and [`kvm::create_vm`]: `/dev/kvm`, its API
//!    version, `KVM_CREATE_VM`.
//! 2. [`memory::guest_memory`]: anonymous host memory registered as slot 0.
//! 3. [`vcpu`]: `KVM_CREATE_VCPU`, CPUID as KVM supports it, reset MSRs.
//! 4. [`exit_loop::VcpuLoop::run`]: `KVM_RUN` until the guest stops or the
//!    timeout fires, each exit handed to [`crate::exit::handle_exit`].
//! 5. [`kvm::teardown`] and [`exit_loop::Stopped::report`]: close it all
//!    down in the order KVM needs, and report.
//!
//! Nothing here imports [`crate::vm`] or [`crate::linux`]: they build on it.

pub(crate) mod clock;
pub(crate) mod error;
pub(crate) mod exit_loop;
pub(crate) mod kvm;
pub(crate) mod memory;
pub(crate) mod vcpu;
