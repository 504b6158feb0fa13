//! A reader for the cpio "newc" archives virtlab writes for its Linux
//! guests (the kernel's own initramfs unpacker is the other reader), so
//! that the writer can be checked by a round trip.

/// One entry read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path (no leading `/`).
    pub name: String,
    /// `st_mode`: type and permissions.
    pub mode: u32,
    /// Device major and minor (for device nodes).
    pub rdev: (u32, u32),
    /// The file's bytes, or a symbolic link's target.
    pub data: Vec<u8>,
}

/// What is wrong with an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpioError {
    /// The archive ends inside an entry, at this offset.
    Truncated(usize),
    /// No `070701` magic at this offset.
    BadMagic(usize),
    /// A header field is not eight hexadecimal digits.
    BadField(usize),
    /// A name without its NUL, or not UTF-8.
    BadName(usize),
    /// No `TRAILER!!!` entry.
    NoTrailer,
    /// Bytes after the trailer other than padding.
    TrailingBytes(usize),
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Reads every entry of a newc archive, up to its trailer.
pub fn read(bytes: &[u8]) -> Result<Vec<Entry>, CpioError> {
    let mut at = 0;
    let mut out = Vec::new();
    loop {
        let header = bytes.get(at..at + 110).ok_or(CpioError::Truncated(at))?;
        if &header[..6] != b"070701" {
            return Err(CpioError::BadMagic(at));
        }
        let mut fields = [0u32; 13];
        for (i, f) in fields.iter_mut().enumerate() {
            let text = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).map_err(|_| CpioError::BadField(at))?;
            *f = u32::from_str_radix(text, 16).map_err(|_| CpioError::BadField(at))?;
        }
        let (mode, filesize, rdev, namesize) = (fields[1], fields[6] as usize, (fields[9], fields[10]), fields[11]);
        let name_at = at + 110;
        let name_bytes = bytes.get(name_at..name_at + namesize as usize).ok_or(CpioError::Truncated(at))?;
        let (name, nul) = name_bytes.split_at(name_bytes.len().saturating_sub(1));
        if nul != [0] || name.contains(&0) {
            return Err(CpioError::BadName(at));
        }
        let name = std::str::from_utf8(name).map_err(|_| CpioError::BadName(at))?.to_string();
        let data_at = pad4(name_at + namesize as usize);
        let data = bytes.get(data_at..data_at + filesize).ok_or(CpioError::Truncated(at))?.to_vec();
        at = pad4(data_at + filesize);
        if name == "TRAILER!!!" {
            return match bytes.get(at..) {
                Some(rest) if rest.iter().all(|&b| b == 0) => Ok(out),
                _ => Err(CpioError::TrailingBytes(at)),
            };
        }
        out.push(Entry { name, mode, rdev, data });
        if at >= bytes.len() {
            return Err(CpioError::NoTrailer);
        }
    }
}
