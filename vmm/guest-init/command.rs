//! The guest's command file, `/virtlab/exec`: what virtlab's /init runs,
//! with which environment, in which directory. Compiled into both sides,
//! like the minikernel's `abi.rs`: into the init (`guest-init/init.rs`,
//! no_std, no allocation) and into the VMM (`vmm/src/linux/command.rs`,
//! which writes the file into the initramfs it builds).
//!
//! # Format, version 1
//!
//! A sequence of fields, each a string of bytes ended by a NUL:
//!
//! ```text
//! virtlab-exec/1 \0            the magic and version (MAGIC)
//! WORKDIR \0                   absolute path, or empty: stay in /
//! KEY=VALUE \0 ...             the environment (none: the default one)
//! \0                           an empty field ends the environment
//! PROGRAM \0 ARG \0 ...        argv, at least PROGRAM, to the end of the file
//! ```
//!
//! An environment entry is never empty (its key is not), so the empty
//! field is unambiguous; an argument may be empty. The file is at most
//! [`MAX_BYTES`] long and holds at most [`MAX_ENTRIES`] environment
//! entries and arguments together.
//!
//! Why a file and not the kernel command line: the kernel splits its
//! command line at spaces, has no quoting for init's arguments, drops empty
//! words and has no way at all to pass an environment or a directory.

/// Where the file sits in the guest.
pub const PATH: &str = "/virtlab/exec";
/// [`PATH`] with its NUL, for open(2).
pub const PATH_C: &[u8] = b"/virtlab/exec\0";
/// The first field: the format's name and version.
pub const MAGIC: &[u8] = b"virtlab-exec/1";
/// The largest file the init reads (its buffer is static).
pub const MAX_BYTES: usize = 64 << 10;
/// The most environment entries and arguments, together.
pub const MAX_ENTRIES: usize = 512;
/// The search path given to a program whose environment has none
/// (NUL-terminated, for execve).
pub const DEFAULT_PATH: &[u8] = b"PATH=/bin:/sbin:/usr/bin:/usr/sbin\0";
/// The environment when the file gives none (NUL-terminated, for execve).
pub const DEFAULT_ENV: [&[u8]; 3] = [DEFAULT_PATH, b"HOME=/\0", b"TERM=linux\0"];

/// The init's exit statuses when the program does not start, as a shell
/// and Docker use them.
pub mod status {
    /// The command file is unreadable, malformed or too large; the working
    /// directory cannot be made or entered; fork failed.
    pub const SETUP: u32 = 125;
    /// The program exists but cannot be executed.
    pub const NOT_EXECUTABLE: u32 = 126;
    /// The program does not exist (or is in none of PATH's directories).
    pub const NOT_FOUND: u32 = 127;
}

/// What is wrong with a command file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Longer than [`MAX_BYTES`].
    TooLarge,
    /// The first field is not [`MAGIC`] (another format or version).
    BadMagic,
    /// The last field has no NUL.
    Unterminated,
    /// No empty field ends the environment.
    NoSeparator,
    /// An environment entry is not `KEY=VALUE` with a non-empty key.
    BadEnv,
    /// The working directory is neither empty nor absolute.
    BadWorkdir,
    /// No program, or an empty program name.
    NoProgram,
    /// More than [`MAX_ENTRIES`] environment entries and arguments.
    TooManyEntries,
}

impl ParseError {
    /// What the init prints.
    pub fn message(self) -> &'static str {
        match self {
            ParseError::TooLarge => "the command file is larger than 65536 bytes",
            ParseError::BadMagic => "the command file does not start with virtlab-exec/1 (another version of virtlab?)",
            ParseError::Unterminated => "the command file's last field has no NUL",
            ParseError::NoSeparator => "the command file has no empty field after the environment",
            ParseError::BadEnv => "an environment entry of the command file is not KEY=VALUE",
            ParseError::BadWorkdir => "the working directory of the command file is not an absolute path",
            ParseError::NoProgram => "the command file names no program",
            ParseError::TooManyEntries => "the command file has more than 512 environment entries and arguments",
        }
    }
}

/// NUL-terminated fields, each yielded without its NUL. The byte after
/// each yielded slice is that NUL, so `slice.as_ptr()` is a C string.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let end = self.rest.iter().position(|&b| b == 0)?;
        let (field, rest) = self.rest.split_at(end);
        self.rest = &rest[1..];
        Some(field)
    }
}

/// A parsed command file, borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Command<'a> {
    /// The working directory (empty: none given).
    pub workdir: &'a [u8],
    /// The environment entries (none: use [`DEFAULT_ENV`]).
    pub env: Fields<'a>,
    /// How many environment entries.
    pub env_len: usize,
    /// The program and its arguments.
    pub argv: Fields<'a>,
    /// How many (at least 1).
    pub argc: usize,
}

/// Checks and splits a command file.
pub fn parse(file: &[u8]) -> Result<Command<'_>, ParseError> {
    if file.len() > MAX_BYTES {
        return Err(ParseError::TooLarge);
    }
    if file.last() != Some(&0) {
        return Err(if file.is_empty() { ParseError::BadMagic } else { ParseError::Unterminated });
    }
    let mut fields = Fields { rest: file };
    if fields.next() != Some(MAGIC) {
        return Err(ParseError::BadMagic);
    }
    let workdir = fields.next().ok_or(ParseError::NoSeparator)?;
    if !workdir.is_empty() && workdir[0] != b'/' {
        return Err(ParseError::BadWorkdir);
    }
    let env = fields;
    let mut env_len = 0;
    loop {
        match fields.next() {
            None => return Err(ParseError::NoSeparator),
            Some([]) => break,
            Some(entry) => {
                if !matches!(entry.iter().position(|&b| b == b'='), Some(1..)) {
                    return Err(ParseError::BadEnv);
                }
                env_len += 1;
            }
        }
    }
    let argv = fields;
    match fields.next() {
        None | Some([]) => return Err(ParseError::NoProgram),
        Some(_) => {}
    }
    let argc = argv.count();
    if env_len + argc > MAX_ENTRIES {
        return Err(ParseError::TooManyEntries);
    }
    // The environment's fields end where the separator's NUL is.
    let env = Fields { rest: &env.rest[..env.rest.len() - argv.rest.len() - 1] };
    Ok(Command { workdir, env, env_len, argv, argc })
}

/// The value of `KEY` in NUL-free `KEY=VALUE` entries, if one has that key.
pub fn lookup<'a>(entries: impl Iterator<Item = &'a [u8]>, key: &[u8]) -> Option<&'a [u8]> {
    entries
        .filter(|e| e.len() > key.len() && e.starts_with(key) && e[key.len()] == b'=')
        .map(|e| &e[key.len() + 1..])
        .next()
}
