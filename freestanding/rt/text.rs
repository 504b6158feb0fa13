//! Arguments and output of a freestanding program, with no allocator: the
//! process's arguments read from its initial stack, a decimal parser, and a
//! line buffer on the stack that numbers and bytes are appended to and that
//! is written out with one `write` (or a few, if the kernel takes less).
//! Included as a module by the workload and the escape lab's attacker, after
//! `linux`; a program uses what it needs.

use super::linux;

/// The process's arguments, as the kernel put them on the initial stack.
pub struct Args {
    argc: usize,
    argv: *const *const u8,
}

impl Args {
    /// # Safety
    /// `sp` must point at a process's initial stack (argc, then the argv
    /// pointers), as `_start` passes it.
    pub unsafe fn from_stack(sp: *const usize) -> Args {
        // SAFETY: guaranteed by the caller: argc at sp[0], argv after it.
        unsafe { Args { argc: *sp, argv: sp.add(1) as *const *const u8 } }
    }

    /// Argument `i` (0 is the program), without its NUL.
    pub fn get(&self, i: usize) -> Option<&'static [u8]> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: i < argc, so argv[i] is one of the argument pointers.
        let p = unsafe { *self.argv.add(i) };
        // SAFETY: a non-NULL argv entry is a NUL-terminated string on the
        // initial stack, which lives as long as the process.
        (!p.is_null()).then(|| unsafe { linux::c_str(p) })
    }
}

/// A decimal number of ASCII digits only; `None` when empty, not a number or
/// past `u64`.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// A line buffer on the stack; what does not fit is dropped.
pub struct Line {
    /// The bytes so far (NUL after them while the line is shorter than the
    /// buffer, so a path built here can be passed to the kernel as is).
    pub buf: [u8; 384],
    /// How many bytes of `buf` are used.
    pub len: usize,
}

impl Line {
    pub fn new() -> Line {
        Line { buf: [0; 384], len: 0 }
    }

    pub fn push(&mut self, s: &[u8]) -> &mut Line {
        for &c in s {
            if self.len < self.buf.len() {
                self.buf[self.len] = c;
                self.len += 1;
            }
        }
        self
    }

    /// Bytes read from somewhere: printable ones as they are, the rest as
    /// `.`, a trailing newline dropped.
    pub fn text(&mut self, s: &[u8]) -> &mut Line {
        let s = s.strip_suffix(b"\n").unwrap_or(s);
        for &c in s {
            self.push(&[if (0x20..0x7f).contains(&c) { c } else { b'.' }]);
        }
        self
    }

    /// `n` in decimal.
    pub fn num(&mut self, mut n: u64) -> &mut Line {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut tmp = [0u8; 20];
        let len = digits.len() - i;
        tmp[..len].copy_from_slice(&digits[i..]);
        self.push(&tmp[..len])
    }

    /// `n` as `0x` and 16 hex digits.
    pub fn hex(&mut self, mut n: u64) -> &mut Line {
        let mut digits = [0u8; 16];
        for d in digits.iter_mut().rev() {
            *d = b"0123456789abcdef"[(n & 15) as usize];
            n >>= 4;
        }
        self.push(b"0x").push(&digits)
    }

    /// One byte as two hex digits.
    pub fn hex2(&mut self, b: u8) -> &mut Line {
        let h = b"0123456789abcdef";
        self.push(&[h[(b >> 4) as usize], h[(b & 15) as usize]])
    }

    /// Writes the line to `fd` and empties it. Returns whether all of it
    /// was written.
    pub fn flush(&mut self, fd: u64) -> bool {
        let len = self.len;
        self.len = 0;
        let copy = self.buf;
        self.buf = [0; 384];
        let mut done = 0;
        while done < len {
            let n = linux::write(fd, &copy[done..len]);
            if n <= 0 {
                return false;
            }
            done += n as usize;
        }
        true
    }
}
