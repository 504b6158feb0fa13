//! KVM VMM.
