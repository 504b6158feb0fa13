//! Dockerfiles: the subset virtlab builds, parsed as Docker parses it.
//!
//! Lines join on a trailing escape character (`\`, or the one a
//! `# escape=` directive names); comment lines go, even inside a continued
//! instruction; keywords are case-insensitive; `RUN`, `CMD` and `ENTRYPOINT`
//! take the exec form (a JSON array) or the shell form; `$VAR`, `${VAR}`,
//! `${VAR:-default}` and `${VAR:+alt}` are replaced in the instructions
//! Docker replaces them in, from the `ARG`s and `ENV`s seen so far.
//!
//! Built: `FROM` (an image in the store, or `scratch`), `RUN`, `COPY`,
//! `ADD` (local files), `ENV`, `ARG`, `WORKDIR`, `USER`, `LABEL`, `EXPOSE`,
//! `CMD`, `ENTRYPOINT`, `VOLUME`, `STOPSIGNAL`, `SHELL`. Anything else is an
//! error naming its line.

use std::collections::BTreeMap;

use super::ImageError;

/// One parsed instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line the instruction starts on.
    pub line: usize,
    /// The instruction as written, continuation lines joined (for messages
    /// and the image's history).
    pub text: String,
    pub kind: Kind,
}

/// A command in exec form (`["a", "b"]`) or shell form (`a b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

/// What an instruction does. Arguments are kept as written; variables are
/// replaced when the build reaches the instruction ([`expand`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    From { image: String, alias: Option<String> },
    Run(Command),
    Cmd(Command),
    Entrypoint(Command),
    Copy { sources: Vec<String>, dest: String, chown: Option<String>, chmod: Option<String>, add: bool },
    Env(Vec<(String, String)>),
    Arg { name: String, default: Option<String> },
    Workdir(String),
    User(String),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Shell(Vec<String>),
}

fn bad(line: usize, reason: impl Into<String>) -> ImageError {
    ImageError::Dockerfile { line, reason: reason.into() }
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Vec<Instruction>, ImageError> {
    let escape = escape_directive(text)?;
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = raw.trim_start();
        if trimmed.starts_with('#') {
            continue;
        }
        if pending.is_none() && trimmed.is_empty() {
            continue;
        }
        let (body, continues) = match raw.trim_end().strip_suffix(escape) {
            Some(body) => (body, true),
            None => (raw, false),
        };
        let (start, mut joined) = pending.take().unwrap_or((line_no, String::new()));
        joined.push_str(if joined.is_empty() { body.trim_start() } else { body });
        if continues {
            pending = Some((start, joined));
        } else {
            out.push(instruction(start, joined.trim_end(), escape)?);
        }
    }
    if let Some((start, joined)) = pending {
        out.push(instruction(start, joined.trim_end(), escape)?);
    }
    if out.is_empty() {
        return Err(bad(1, "the Dockerfile has no instructions; it starts with FROM IMAGE (or FROM scratch)"));
    }
    match out.iter().find(|i| !matches!(i.kind, Kind::Arg { .. })) {
        Some(Instruction { kind: Kind::From { .. }, .. }) => {}
        Some(i) => return Err(bad(i.line, "the first instruction must be FROM (only ARG may come before it)")),
        None => return Err(bad(1, "there is no FROM")),
    }
    if let Some(second) = out.iter().filter(|i| matches!(i.kind, Kind::From { .. })).nth(1) {
        return Err(bad(
            second.line,
            "a second FROM starts a multi-stage build, which virtlab does not build; use one FROM",
        ));
    }
    Ok(out)
}

/// The escape character: `\`, or what a `# escape=` parser directive at
/// the top of the file says.
fn escape_directive(text: &str) -> Result<char, ImageError> {
    for (i, line) in text.lines().enumerate() {
        let Some(comment) = line.trim().strip_prefix('#') else { break };
        let Some((key, value)) = comment.split_once('=') else { break };
        match key.trim().to_ascii_lowercase().as_str() {
            "escape" => {
                return match value.trim() {
                    "\\" => Ok('\\'),
                    "`" => Ok('`'),
                    other => Err(bad(i + 1, format!("the escape directive takes \\ or `, not {other:?}"))),
                }
            }
            "syntax" | "check" => continue,
            _ => break,
        }
    }
    Ok('\\')
}

fn instruction(line: usize, text: &str, escape: char) -> Result<Instruction, ImageError> {
    let (keyword, args) = match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], text[at..].trim()),
        None => (text, ""),
    };
    let upper = keyword.to_ascii_uppercase();
    let need_args = |what: &str| if args.is_empty() { Err(bad(line, format!("{upper} needs {what}"))) } else { Ok(()) };
    let kind = match upper.as_str() {
        "FROM" => {
            need_args("an image name (or scratch)")?;
            let (flags, words) = split_flags(line, args, escape)?;
            if let Some((flag, _)) = flags.first() {
                return Err(bad(line, format!("FROM --{flag} is not supported")));
            }
            match words.as_slice() {
                [image] => Kind::From { image: image.clone(), alias: None },
                [image, as_, alias] if as_.eq_ignore_ascii_case("as") => Kind::From { image: image.clone(), alias: Some(alias.clone()) },
                _ => return Err(bad(line, "FROM takes IMAGE or IMAGE AS NAME")),
            }
        }
        "RUN" => {
            need_args("a command")?;
            if args.starts_with("--") {
                return Err(bad(line, format!("RUN {} is not supported", args.split_whitespace().next().unwrap_or(""))));
            }
            Kind::Run(command(line, args)?)
        }
        "CMD" => Kind::Cmd(command(line, args)?),
        "ENTRYPOINT" => Kind::Entrypoint(command(line, args)?),
        "COPY" | "ADD" => copy(line, &upper, args, escape)?,
        "ENV" => {
            need_args("NAME=VALUE")?;
            Kind::Env(pairs(line, "ENV", args, escape)?)
        }
        "LABEL" => {
            need_args("KEY=VALUE")?;
            Kind::Label(pairs(line, "LABEL", args, escape)?)
        }
        "ARG" => {
            need_args("a name")?;
            let words = words(line, args, escape)?;
            let [word] = words.as_slice() else { return Err(bad(line, "ARG takes one NAME or NAME=DEFAULT")) };
            match word.split_once('=') {
                Some((name, default)) => Kind::Arg { name: valid_name(line, name)?, default: Some(default.to_string()) },
                None => Kind::Arg { name: valid_name(line, word)?, default: None },
            }
        }
        "WORKDIR" => {
            need_args("a directory")?;
            Kind::Workdir(args.to_string())
        }
        "USER" => {
            need_args("a user (NAME, UID, or UID:GID)")?;
            Kind::User(args.to_string())
        }
        "EXPOSE" => {
            need_args("a port (80, 8080/tcp, 53/udp)")?;
            Kind::Expose(args.split_whitespace().map(str::to_string).collect())
        }
        "VOLUME" => {
            need_args("a path")?;
            Kind::Volume(json_array(args).unwrap_or_else(|| args.split_whitespace().map(str::to_string).collect()))
        }
        "STOPSIGNAL" => {
            need_args("a signal")?;
            Kind::StopSignal(args.to_string())
        }
        "SHELL" => match json_array(args) {
            Some(shell) if !shell.is_empty() => Kind::Shell(shell),
            _ => return Err(bad(line, "SHELL takes a JSON array, e.g. [\"/bin/sh\", \"-c\"]")),
        },
        "MAINTAINER" | "ONBUILD" | "HEALTHCHECK" => {
            return Err(bad(line, format!("{upper} is not supported by virtlab's builder (use LABEL for a maintainer)")))
        }
        _ => {
            return Err(bad(
                line,
                format!("unknown instruction {keyword:?}; virtlab builds FROM, RUN, COPY, ADD, ENV, ARG, WORKDIR, USER, LABEL, EXPOSE, CMD, ENTRYPOINT, VOLUME, STOPSIGNAL and SHELL"),
            ))
        }
    };
    Ok(Instruction { line, text: text.to_string(), kind })
}

fn valid_name(line: usize, name: &str) -> Result<String, ImageError> {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(name.to_string())
    } else {
        Err(bad(line, format!("{name:?} is not a variable name")))
    }
}

/// A JSON array of strings, if `args` is one.
fn json_array(args: &str) -> Option<Vec<String>> {
    if !args.trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(args).ok()
}

fn command(line: usize, args: &str) -> Result<Command, ImageError> {
    if args.is_empty() {
        return Err(bad(line, "a command is missing"));
    }
    Ok(match json_array(args) {
        Some(words) => Command::Exec(words),
        None => Command::Shell(args.to_string()),
    })
}

/// Words split on white space, quotes ('...' and "...") kept together and
/// removed, the escape character escaping the next character.
fn words(line: usize, args: &str, escape: char) -> Result<Vec<String>, ImageError> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), c) if c == escape => word.extend(chars.next()),
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c == escape => {
                word.extend(chars.next());
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(bad(line, "a quote is not closed"));
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

/// `--flag=value` pairs.
type Flags = Vec<(String, String)>;

/// `--flag=value` words first, then the rest.
fn split_flags(line: usize, args: &str, escape: char) -> Result<(Flags, Vec<String>), ImageError> {
    let all = words(line, args, escape)?;
    let mut flags = Vec::new();
    let mut rest = Vec::new();
    for w in all {
        match w.strip_prefix("--") {
            Some(flag) if rest.is_empty() => {
                let (k, v) = flag.split_once('=').unwrap_or((flag, ""));
                flags.push((k.to_string(), v.to_string()));
            }
            _ => rest.push(w),
        }
    }
    Ok((flags, rest))
}

fn copy(line: usize, keyword: &str, args: &str, escape: char) -> Result<Kind, ImageError> {
    let (flags, words) = split_flags(line, args, escape)?;
    let (mut chown, mut chmod) = (None, None);
    for (flag, value) in flags {
        match flag.as_str() {
            "chown" => chown = Some(value),
            "chmod" => chmod = Some(value),
            "from" => {
                return Err(bad(
                    line,
                    format!("{keyword} --from needs a multi-stage build, which virtlab does not build"),
                ))
            }
            other => return Err(bad(line, format!("{keyword} --{other} is not supported"))),
        }
    }
    // The exec form: a JSON array after the flags.
    let mut rest = args.trim_start();
    while let Some(flag) = rest.split_whitespace().next().filter(|w| w.starts_with("--")) {
        rest = rest[flag.len()..].trim_start();
    }
    let paths = json_array(rest).unwrap_or(words);
    if paths.len() < 2 {
        return Err(bad(line, format!("{keyword} takes SOURCE... DEST")));
    }
    let (dest, sources) = paths.split_last().expect("two or more");
    let add = keyword == "ADD";
    if add {
        if let Some(url) = sources.iter().find(|s| s.contains("://")) {
            return Err(bad(
                line,
                format!("ADD {url}: this machine has no network; download the file into the build context and COPY it"),
            ));
        }
    }
    Ok(Kind::Copy { sources: sources.to_vec(), dest: dest.clone(), chown, chmod, add })
}

fn pairs(line: usize, keyword: &str, args: &str, escape: char) -> Result<Vec<(String, String)>, ImageError> {
    let words = words(line, args, escape)?;
    if !words[0].contains('=') {
        // The old form: `ENV NAME the rest is the value`.
        let (name, value) =
            args.split_once(char::is_whitespace).ok_or_else(|| bad(line, format!("{keyword} takes NAME=VALUE")))?;
        let value = words_joined(line, value.trim(), escape)?;
        return Ok(vec![(name.to_string(), value)]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(bad(line, format!("{keyword} takes NAME=VALUE pairs; {w:?} is not one"))),
        })
        .collect()
}

fn words_joined(line: usize, s: &str, escape: char) -> Result<String, ImageError> {
    Ok(words(line, s, escape)?.join(" "))
}

/// Replaces `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alt}` in `s`
/// from `vars`; the escape character before `$` keeps it literal. An unset
/// variable becomes the empty string, as in Docker.
pub fn expand(s: &str, vars: &BTreeMap<String, String>, escape: char) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == escape && chars.peek() == Some(&'$') {
            out.push('$');
            chars.next();
        } else if c != '$' {
            out.push(c);
        } else if chars.peek() == Some(&'{') {
            chars.next();
            let mut inner = String::new();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                inner.push(c);
            }
            let value = |name: &str| vars.get(name).cloned().unwrap_or_default();
            if let Some((name, default)) = inner.split_once(":-") {
                let v = value(name);
                out.push_str(if v.is_empty() { default } else { &v });
            } else if let Some((name, alt)) = inner.split_once(":+") {
                if !value(name).is_empty() {
                    out.push_str(alt);
                }
            } else {
                out.push_str(&value(&inner));
            }
        } else {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() {
                out.push('$');
            } else {
                out.push_str(&vars.get(&name).cloned().unwrap_or_default());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Kind> {
        parse(text).expect("parses").into_iter().map(|i| i.kind).collect()
    }

    #[test]
    fn continuation_comments_and_both_command_forms() {
        let text = "# a comment\nARG BASE=busybox\nfrom $BASE\n\nRUN echo one \\\n    # a comment inside\n    && echo two\nCMD [\"/bin/sh\", \"-c\", \"echo hi\"]\nENTRYPOINT echo entry\n";
        let parsed = parse(text).expect("parses");
        assert_eq!(parsed[2].line, 5);
        assert_eq!(
            kinds(text),
            vec![
                Kind::Arg { name: "BASE".into(), default: Some("busybox".into()) },
                Kind::From { image: "$BASE".into(), alias: None },
                Kind::Run(Command::Shell("echo one     && echo two".into())),
                Kind::Cmd(Command::Exec(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])),
                Kind::Entrypoint(Command::Shell("echo entry".into())),
            ]
        );
    }

    #[test]
    fn env_label_copy_and_the_rest() {
        let text = "FROM scratch\nENV A=1 B=\"two words\" C=x\\ y\nENV OLD the old form\nLABEL \"course\"=virtlab version=1\nCOPY --chown=1:2 a b /dst/\nADD [\"x y\", \"/z\"]\nWORKDIR /app\nUSER 1000:1000\nEXPOSE 80 53/udp\nVOLUME /data\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/ash\", \"-c\"]\n";
        assert_eq!(
            kinds(text)[1..],
            [
                Kind::Env(vec![("A".into(), "1".into()), ("B".into(), "two words".into()), ("C".into(), "x y".into())]),
                Kind::Env(vec![("OLD".into(), "the old form".into())]),
                Kind::Label(vec![("course".into(), "virtlab".into()), ("version".into(), "1".into())]),
                Kind::Copy {
                    sources: vec!["a".into(), "b".into()],
                    dest: "/dst/".into(),
                    chown: Some("1:2".into()),
                    chmod: None,
                    add: false
                },
                Kind::Copy { sources: vec!["x y".into()], dest: "/z".into(), chown: None, chmod: None, add: true },
                Kind::Workdir("/app".into()),
                Kind::User("1000:1000".into()),
                Kind::Expose(vec!["80".into(), "53/udp".into()]),
                Kind::Volume(vec!["/data".into()]),
                Kind::StopSignal("SIGINT".into()),
                Kind::Shell(vec!["/bin/ash".into(), "-c".into()]),
            ]
        );
    }

    #[test]
    fn the_escape_directive() {
        let text = "# escape=`\nFROM scratch\nRUN echo a `\n  b\n";
        assert_eq!(kinds(text)[1], Kind::Run(Command::Shell("echo a   b".into())));
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, says) in [
            ("FROM scratch\nFOO bar\n", 2, "unknown instruction"),
            ("RUN true\n", 1, "first instruction must be FROM"),
            ("FROM a\nFROM b\n", 2, "multi-stage"),
            ("FROM a\nCOPY onlyone\n", 2, "SOURCE... DEST"),
            ("FROM a\nADD http://x/y /y\n", 2, "no network"),
            ("FROM a\nENV A=\"open\n", 2, "quote"),
            ("# just a comment\n", 1, "no instructions"),
            ("FROM a\nHEALTHCHECK CMD true\n", 2, "not supported"),
            ("FROM a\nARG 1x\n", 2, "not a variable name"),
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(&format!("line {line}")) && err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn variables_expand_as_docker_expands_them() {
        let vars: BTreeMap<String, String> =
            [("A".to_string(), "1".to_string()), ("EMPTY".to_string(), String::new())].into_iter().collect();
        assert_eq!(
            expand("$A ${A} ${A}x $B|${B:-dflt}|${EMPTY:-e}|${A:+set}|${B:+unset}| \\$A $", &vars, '\\'),
            "1 1 1x |dflt|e|set|| $A $"
        );
    }
}
