//! The guest's command file, `/virtlab/exec`: the program, its arguments,
//! environment and working directory, written into the initramfs virtlab
//! builds and read by its init. The format (see [`format`]) is shared with
//! the init, which compiles the very same source file.
//!
//! The kernel command line cannot carry this: the kernel splits it at
//! spaces, has no quoting for init's arguments, drops empty words, and has
//! no place for an environment or a directory. A file in the initramfs can
//! hold any bytes but NUL.

#[path = "../../guest-init/command.rs"]
pub mod format;

use format::{MAGIC, MAX_BYTES, MAX_ENTRIES};

/// What is wrong with a program, environment or working directory for the
/// guest's command file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// `program[0]` is empty.
    #[error("the program name is empty: give a path in the guest (/bin/sh) or a name in its PATH (sh)")]
    EmptyProgram,
    /// An argument holds a NUL byte.
    #[error("argument {index} of the program contains a NUL byte, which no argv can carry: remove it")]
    ArgumentNul {
        /// Its position (0: the program).
        index: usize,
    },
    /// An environment entry that is not `KEY=VALUE`.
    #[error("environment entry (--env) {entry:?} {why}: write it KEY=VALUE, e.g. --env GREETING=hello")]
    BadEnv {
        /// The entry.
        entry: String,
        /// "has no '='", "has an empty key" or "contains a NUL byte".
        why: &'static str,
    },
    /// A working directory that is not an absolute path.
    #[error("working directory (--workdir) {dir:?} {why}: give an absolute path in the guest, e.g. --workdir /tmp")]
    BadWorkdir {
        /// The directory.
        dir: String,
        /// "is not absolute" or "contains a NUL byte".
        why: &'static str,
    },
    /// More arguments and environment entries than the init takes.
    #[error("{count} arguments and environment entries: the guest's init takes at most {MAX_ENTRIES}; put a longer command in a script in the root file system")]
    TooManyEntries {
        /// How many were given.
        count: usize,
    },
    /// A command file larger than the init reads.
    #[error("the program, its arguments, environment and working directory take {bytes} bytes: the guest's init reads at most {MAX_BYTES}; put a longer command in a script in the root file system")]
    TooLarge {
        /// The encoded size.
        bytes: usize,
    },
    /// An environment or directory for an initrd that virtlab did not build.
    #[error("an environment (--env) or working directory (--workdir) needs the initramfs virtlab builds (--rootfs, or none): with --initrd FILE the init only gets the kernel command line")]
    NeedsBuiltInitramfs,
}

/// Checks a program, its environment and working directory, and encodes
/// them as a command file (format version 1, see [`format`]).
///
/// `argv` must not be empty (the caller picks the default program); `env`
/// entries are `KEY=VALUE` with a non-empty `KEY` (empty `env`: the init's
/// default environment; one without `PATH` gets the default `PATH`);
/// `workdir` is absolute (None: `/`).
pub fn encode(argv: &[String], env: &[String], workdir: Option<&str>) -> Result<Vec<u8>, CommandError> {
    check(argv, env, workdir)?;
    let fields = std::iter::once(MAGIC)
        .chain(std::iter::once(workdir.unwrap_or("").as_bytes()))
        .chain(env.iter().map(|e| e.as_bytes()))
        .chain(std::iter::once(&b""[..]))
        .chain(argv.iter().map(|a| a.as_bytes()));
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(f);
        out.push(0);
    }
    if out.len() > MAX_BYTES {
        return Err(CommandError::TooLarge { bytes: out.len() });
    }
    Ok(out)
}

/// The checks of [`encode`], one error per field.
pub fn check(argv: &[String], env: &[String], workdir: Option<&str>) -> Result<(), CommandError> {
    match argv.first() {
        None => return Err(CommandError::EmptyProgram),
        Some(p) if p.is_empty() => return Err(CommandError::EmptyProgram),
        Some(_) => {}
    }
    if let Some(index) = argv.iter().position(|a| a.contains('\0')) {
        return Err(CommandError::ArgumentNul { index });
    }
    for e in env {
        let why = match e.find('=') {
            _ if e.contains('\0') => Some("contains a NUL byte"),
            None => Some("has no '='"),
            Some(0) => Some("has an empty key"),
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(CommandError::BadEnv { entry: e.clone(), why });
        }
    }
    if let Some(dir) = workdir {
        let why = if dir.contains('\0') {
            Some("contains a NUL byte")
        } else if !dir.starts_with('/') {
            Some("is not absolute")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(CommandError::BadWorkdir { dir: dir.to_string(), why });
        }
    }
    let count = argv.len() + env.len();
    if count > MAX_ENTRIES {
        return Err(CommandError::TooManyEntries { count });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::format::{parse, ParseError};
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    /// A decoder written from the format's description alone, not from the
    /// init's parser: split at NULs; magic, workdir, entries up to an empty
    /// field, then argv.
    fn decode(file: &[u8]) -> (String, Vec<String>, Vec<String>) {
        assert_eq!(file.last(), Some(&0), "every field ends with a NUL");
        let mut fields = file[..file.len() - 1].split(|&b| b == 0).map(|f| String::from_utf8(f.to_vec()).unwrap());
        assert_eq!(fields.next().as_deref(), Some("virtlab-exec/1"));
        let workdir = fields.next().unwrap();
        let env: Vec<String> = fields.by_ref().take_while(|f| !f.is_empty()).collect();
        (workdir, env, fields.collect())
    }

    #[test]
    fn round_trip_keeps_spaces_quotes_empty_words_and_the_environment() {
        let argv = strings(&["sh", "-c", "echo \"a b\"; exit 3", "", "'q'"]);
        let env = strings(&["GREETING=hello world", "EMPTY=", "EQ=a=b"]);
        let file = encode(&argv, &env, Some("/tmp/work dir")).unwrap();
        assert_eq!(decode(&file), ("/tmp/work dir".to_string(), env.clone(), argv.clone()));
        // The init's own parser agrees, and hands out C strings.
        let cmd = parse(&file).unwrap();
        assert_eq!(cmd.workdir, b"/tmp/work dir");
        assert_eq!((cmd.env_len, cmd.argc), (3, 5));
        let env_back: Vec<&[u8]> = cmd.env.collect();
        assert_eq!(env_back, env.iter().map(|e| e.as_bytes()).collect::<Vec<_>>());
        for a in cmd.argv {
            let at = a.as_ptr() as usize - file.as_ptr() as usize;
            assert_eq!(file[at + a.len()], 0, "a NUL follows every field");
        }
        assert_eq!(cmd.argv.map(|a| String::from_utf8(a.to_vec()).unwrap()).collect::<Vec<_>>(), argv);
        assert_eq!(format::lookup(cmd.env, b"GREETING"), Some(&b"hello world"[..]));
        assert_eq!(format::lookup(cmd.env, b"GREET"), None);
    }

    #[test]
    fn known_bytes_and_defaults() {
        let file = encode(&strings(&["/virtlab/workload", "ready"]), &[], None).unwrap();
        assert_eq!(file, b"virtlab-exec/1\0\0\0/virtlab/workload\0ready\0");
        let cmd = parse(&file).unwrap();
        assert_eq!((cmd.workdir, cmd.env_len, cmd.argc), (&b""[..], 0, 2));
        assert_eq!(cmd.env.count(), 0);
        assert_eq!(format::PATH_C, format!("{}\0", format::PATH).as_bytes());
        assert!(format::DEFAULT_ENV.iter().all(|e| e.ends_with(b"\0") && e.contains(&b'=')));
    }

    #[test]
    fn bad_input_names_the_field_and_the_fix() {
        let sh = strings(&["sh"]);
        let cases: [(Result<Vec<u8>, CommandError>, &str); 9] = [
            (encode(&[], &[], None), "program name is empty"),
            (encode(&strings(&[""]), &[], None), "program name is empty"),
            (encode(&strings(&["sh", "a\0b"]), &[], None), "argument 1"),
            (encode(&sh, &strings(&["NOEQUALS"]), None), "--env GREETING=hello"),
            (encode(&sh, &strings(&["=v"]), None), "empty key"),
            (encode(&sh, &strings(&["K=a\0b"]), None), "NUL"),
            (encode(&sh, &[], Some("tmp")), "is not absolute"),
            (encode(&sh, &[], Some("")), "--workdir /tmp"),
            (encode(&sh, &[], Some("/a\0")), "NUL"),
        ];
        for (result, needle) in cases {
            let e = result.unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} missing from: {e}");
        }
    }

    #[test]
    fn limits_are_the_init_s() {
        let many: Vec<String> = (0..MAX_ENTRIES).map(|i| format!("a{i}")).collect();
        assert!(encode(&many, &[], None).is_ok(), "{MAX_ENTRIES} entries fit");
        let e = encode(&many, &strings(&["K=V"]), None).unwrap_err();
        assert_eq!(e, CommandError::TooManyEntries { count: MAX_ENTRIES + 1 });
        assert!(e.to_string().contains("at most 512"), "{e}");
        // The largest file that fits, and one byte more.
        let overhead = encode(&strings(&["x"]), &[], None).unwrap().len() - 1;
        let fits = strings(&[&"x".repeat(MAX_BYTES - overhead)]);
        assert_eq!(encode(&fits, &[], None).unwrap().len(), MAX_BYTES);
        let over = strings(&[&"x".repeat(MAX_BYTES - overhead + 1)]);
        let e = encode(&over, &[], None).unwrap_err();
        assert_eq!(e, CommandError::TooLarge { bytes: MAX_BYTES + 1 });
        assert!(e.to_string().contains("at most 65536"), "{e}");
        // The init's parser has the same limits, and its messages say them.
        let mut file = encode(&fits, &[], None).unwrap();
        file.insert(file.len() - 1, b'x');
        assert_eq!(parse(&file).unwrap_err(), ParseError::TooLarge);
        assert!(ParseError::TooLarge.message().contains(&MAX_BYTES.to_string()));
        assert!(ParseError::TooManyEntries.message().contains(&MAX_ENTRIES.to_string()));
    }

    #[test]
    fn the_init_refuses_malformed_files() {
        let cases: [(&[u8], ParseError); 10] = [
            (b"", ParseError::BadMagic),
            (b"virtlab-exec/2\0\0\0sh\0", ParseError::BadMagic),
            (b"virtlab-exec/1\0\0\0sh", ParseError::Unterminated),
            (b"virtlab-exec/1\0", ParseError::NoSeparator),
            (b"virtlab-exec/1\0/\0K=V\0", ParseError::NoSeparator),
            (b"virtlab-exec/1\0tmp\0\0sh\0", ParseError::BadWorkdir),
            (b"virtlab-exec/1\0\0NOEQ\0\0sh\0", ParseError::BadEnv),
            (b"virtlab-exec/1\0\0=V\0\0sh\0", ParseError::BadEnv),
            (b"virtlab-exec/1\0\0\0", ParseError::NoProgram),
            (b"virtlab-exec/1\0\0\0\0sh\0", ParseError::NoProgram),
        ];
        for (file, want) in cases {
            assert_eq!(parse(file).map(|c| c.argc), Err(want), "{:?}", String::from_utf8_lossy(file));
        }
        let mut many = b"virtlab-exec/1\0\0\0".to_vec();
        many.extend(std::iter::repeat_n(&b"a\0"[..], MAX_ENTRIES + 1).flatten());
        assert_eq!(parse(&many).map(|c| c.argc), Err(ParseError::TooManyEntries));
    }
}
