//! Guest memory in a snapshot: written as a sparse file (pages the guest
//! never touched, or that hold only zeros, are holes and take no disk),
//! checked by a CRC over the non-zero pages, and mapped back `MAP_PRIVATE`:
//! the host kernel reads a page from the file when the guest first touches
//! it, and copies it only when the guest writes it, so many VMs restored
//! from one file share every page none of them changed.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use vm_memory::mmap::{GuestRegionMmap, MmapRegion};
use vm_memory::FileOffset;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::error::SnapshotError;

/// The page size the file is written and checked in.
pub const PAGE: usize = 4096;

/// A running CRC over the non-zero pages of guest memory, in order.
struct PageCrc(crc32fast::Hasher, u64);

impl PageCrc {
    fn new() -> PageCrc {
        PageCrc(crc32fast::Hasher::new(), 0)
    }

    /// Adds page `index` if it holds anything; says whether it did.
    fn add(&mut self, index: u64, page: &[u8]) -> bool {
        if page.iter().all(|&b| b == 0) {
            return false;
        }
        self.0.update(&index.to_le_bytes());
        self.0.update(page);
        self.1 += 1;
        true
    }
}

/// Writes guest memory to `file`: only resident, non-zero pages, so the
/// file is sparse. Returns (CRC, bytes of data written).
pub fn write_memory(mem: &GuestMemoryMmap, size: u64, file: &File) -> io::Result<(u32, u64)> {
    let host = mem
        .get_host_address(GuestAddress(0))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "guest memory has no host mapping"))?;
    let len = size as usize;
    let mut resident = vec![0u8; len.div_ceil(PAGE)];
    // SAFETY: [host, host + len) is the one live guest memory mapping (page
    // aligned, `len` bytes), and `resident` has one byte per page of it
    // (mincore(2)).
    if unsafe { libc::mincore(host.cast(), len, resident.as_mut_ptr()) } != 0 {
        // Without residency every page is read: slower, the same file.
        resident.fill(1);
    }
    // SAFETY: the mapping is live for the whole function (`mem` is
    // borrowed) and the vCPU is paused, so nothing writes it meanwhile.
    let all = unsafe { std::slice::from_raw_parts(host as *const u8, len) };
    let mut crc = PageCrc::new();
    for (i, page) in all.chunks(PAGE).enumerate() {
        if resident[i] & 1 != 0 && crc.add(i as u64, page) {
            file.write_all_at(page, (i * PAGE) as u64)?;
        }
    }
    file.set_len(size)?;
    file.sync_all()?;
    Ok((crc.0.finalize(), crc.1 * PAGE as u64))
}

/// The CRC of a memory file as [`write_memory`] computes it, reading only
/// its data (SEEK_DATA/SEEK_HOLE skip the holes). Returns (CRC, bytes of
/// non-zero pages).
pub fn memory_crc(file: &File, size: u64) -> io::Result<(u32, u64)> {
    let fd = file.as_raw_fd();
    let mut crc = PageCrc::new();
    let mut buf = vec![0u8; 64 * PAGE];
    let mut off: u64 = 0;
    while off < size {
        // SAFETY: lseek on an fd this function borrows; no memory involved.
        let data = unsafe { libc::lseek(fd, off as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole is left
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let (mut at, end) = ((data as u64) & !(PAGE as u64 - 1), (hole as u64).min(size));
        while at < end {
            let n = ((end - at) as usize).min(buf.len()).next_multiple_of(PAGE);
            let chunk = &mut buf[..n];
            chunk.fill(0);
            let got = read_up_to(file, chunk, at)?;
            for (i, page) in chunk[..got.next_multiple_of(PAGE).min(n)].chunks(PAGE).enumerate() {
                crc.add(at / PAGE as u64 + i as u64, page);
            }
            at += n as u64;
        }
        off = end.max(off + 1);
    }
    Ok((crc.0.finalize(), crc.1 * PAGE as u64))
}

fn read_up_to(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Guest memory mapped from `file`, private and lazy: nothing is read
/// until the guest touches it, and its writes never reach the file.
pub fn map_private(file: File, size: u64) -> Result<GuestMemoryMmap, SnapshotError> {
    let region = MmapRegion::build(
        Some(FileOffset::new(file, 0)),
        size as usize,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_NORESERVE,
    )
    .map_err(SnapshotError::Map)?;
    let region = GuestRegionMmap::new(region, GuestAddress(0)).ok_or_else(|| {
        SnapshotError::Write(std::path::PathBuf::from("guest memory"), io::Error::other("region wraps around"))
    })?;
    GuestMemoryMmap::from_regions(vec![region])
        .map_err(|e| SnapshotError::Write(std::path::PathBuf::from("guest memory"), io::Error::other(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn the_file_is_sparse_and_its_crc_is_the_written_one() {
        let size = 64 * PAGE as u64;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap();
        mem.write_obj(0xdead_beef_u64, GuestAddress(3 * PAGE as u64 + 8)).unwrap();
        mem.write_obj(7u8, GuestAddress(40 * PAGE as u64)).unwrap();
        let _touched_but_zero: u8 = mem.read_obj(GuestAddress(20 * PAGE as u64)).unwrap();
        let f = tempfile::tempfile().unwrap();
        let (crc, data) = write_memory(&mem, size, &f).unwrap();
        assert_eq!(data, 2 * PAGE as u64);
        assert_eq!(f.metadata().unwrap().len(), size);
        assert_eq!(memory_crc(&f, size).unwrap(), (crc, data));
        f.write_all_at(&[1], 50 * PAGE as u64).unwrap();
        assert_ne!(memory_crc(&f, size).unwrap().0, crc);
        let back = map_private(f, size).unwrap();
        assert_eq!(back.read_obj::<u64>(GuestAddress(3 * PAGE as u64 + 8)).unwrap(), 0xdead_beef);
    }
}
