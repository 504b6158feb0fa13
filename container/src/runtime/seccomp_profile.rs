//! Seccomp profiles in Docker's JSON format (`--security-opt
//! seccomp=PROFILE.json`, and an OCI bundle's `linux.seccomp`, which has
//! the same fields), compiled to one classic BPF program.
//!
//! A profile is a default action and a list of rules, each naming system
//! calls, an action, and optionally conditions on the call's arguments:
//!
//! ```json
//! { "defaultAction": "SCMP_ACT_ALLOW",
//!   "syscalls": [ { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 } ] }
//! ```
//!
//! The program it compiles to has the shape of [`crate::runtime::seccomp`]'s
//! default filter: the architecture checked (only x86_64's calls are
//! compiled; an i386 call kills the process, an x32 one answers `ENOSYS`),
//! then a binary search over the call numbers the rules name, then, for the
//! call found, its rules in turn: the first whose conditions all hold
//! gives the answer; a call no rule decides gets the default action.
//!
//! As libseccomp, a call name this host's table does not know is skipped
//! (and listed in [`Compiled::notes`]); as runc, the conditions of one
//! rule must all hold, except when two of them test the same argument:
//! then each condition is a rule of its own (any may hold). A rule with
//! conditions is tried before one without for the same call.
//!
//! Why not the rust-vmm `seccompiler` crate: one of its filters has a
//! single action for every rule that matches, while a Docker profile gives
//! each rule its own (allow these, `EPERM` those, `ENOSYS` clone3), and its
//! table of call names is private to its JSON front end. Extending the
//! compiler of the default filter kept one BPF code path, checked by one
//! interpreter in the tests.

use serde::Deserialize;

use crate::runtime::seccomp::sock_filter;
use crate::runtime::syscall_table;

/// Errors reading or compiling a profile; each names the profile and the
/// field.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The text is not JSON, or a field has the wrong type.
    #[error("the seccomp profile {profile} is malformed at {field}: {why}")]
    Json {
        /// The profile (its file name, or `linux.seccomp`).
        profile: String,
        /// The field, e.g. `syscalls[2].args[0].value`.
        field: String,
        /// What the parser found.
        why: String,
    },
    /// A field holds a value virtlab does not know or cannot honour.
    #[error("the seccomp profile {profile}: {field}: {why}")]
    Field {
        /// The profile.
        profile: String,
        /// The field.
        field: String,
        /// What is wrong, and the fix.
        why: String,
    },
    /// The compiled program does not fit classic BPF.
    #[error("the seccomp profile {profile} does not compile: {why}")]
    TooBig {
        /// The profile.
        profile: String,
        /// What does not fit.
        why: String,
    },
}

/// A profile as Docker writes it. Unknown fields (`comment`, `flags`,
/// `listenerMetadata`, ...) are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileText {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapText>>,
    #[serde(default)]
    syscalls: Option<Vec<RuleText>>,
    #[serde(default)]
    listener_path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapText {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleText {
    #[serde(default)]
    names: Option<Vec<String>>,
    /// The older, one-call form.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<ArgText>>,
    #[serde(default)]
    includes: Option<FilterText>,
    #[serde(default)]
    excludes: Option<FilterText>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgText {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterText {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// What a rule does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `SCMP_ACT_ALLOW`.
    Allow,
    /// `SCMP_ACT_ERRNO`: the call fails with this errno.
    Errno(u32),
    /// `SCMP_ACT_KILL`, `SCMP_ACT_KILL_THREAD`: the thread dies (SIGSYS).
    KillThread,
    /// `SCMP_ACT_KILL_PROCESS`: the whole process dies.
    KillProcess,
    /// `SCMP_ACT_TRAP`: the thread gets SIGSYS, which it may handle.
    Trap,
    /// `SCMP_ACT_LOG`: allowed, and logged by the kernel's audit.
    Log,
}

impl Action {
    /// The `SECCOMP_RET_*` value of the action.
    pub fn ret(self) -> u32 {
        match self {
            Action::Allow => libc::SECCOMP_RET_ALLOW,
            Action::Errno(e) => libc::SECCOMP_RET_ERRNO | (e & libc::SECCOMP_RET_DATA),
            Action::KillThread => libc::SECCOMP_RET_KILL_THREAD,
            Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
            Action::Trap => libc::SECCOMP_RET_TRAP,
            Action::Log => libc::SECCOMP_RET_LOG,
        }
    }
}

/// A comparison of one argument (`SCMP_CMP_*`), unsigned and 64 bits wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `==`.
    Eq(u64),
    /// `!=`.
    Ne(u64),
    /// `<`.
    Lt(u64),
    /// `<=`.
    Le(u64),
    /// `>`.
    Gt(u64),
    /// `>=`.
    Ge(u64),
    /// `arg & mask == value`.
    MaskedEq {
        /// The mask (`value` in the profile).
        mask: u64,
        /// The value (`valueTwo`).
        value: u64,
    },
}

/// One rule for one call: conditions on arguments (all must hold), and the
/// action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `(argument index, comparison)`.
    pub conditions: Vec<(u32, Cmp)>,
    /// What happens when they hold.
    pub action: Action,
}

/// Who the profile is compiled for: the rules' `includes` and `excludes`
/// are checked against it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The container's capabilities, a bit mask.
    pub caps: u64,
    /// The kernel's version, `(major, minor)`.
    pub kernel: (u32, u32),
}

impl Target {
    /// `caps`, on this host's kernel.
    pub fn host(caps: u64) -> Target {
        Target { caps, kernel: kernel_version() }
    }
}

/// A compiled profile.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Where it came from (a file name, `linux.seccomp`).
    pub profile: String,
    /// The BPF program.
    pub program: Vec<sock_filter>,
    /// The default action.
    pub default_action: Action,
    /// The calls with rules, by number, and their rules in the order they
    /// are tried.
    pub calls: Vec<(u32, Vec<Rule>)>,
    /// What the compiler left out, and why (unknown call names, rules for
    /// other architectures or capabilities).
    pub notes: Vec<String>,
}

impl Compiled {
    /// One line for `--explain`.
    pub fn summary(&self) -> String {
        let mut by_action: Vec<(String, usize)> = Vec::new();
        for (_, rules) in &self.calls {
            for r in rules {
                let name = action_name(r.action);
                match by_action.iter_mut().find(|(n, _)| *n == name) {
                    Some(e) => e.1 += 1,
                    None => by_action.push((name, 1)),
                }
            }
        }
        let rules: Vec<String> = by_action.iter().map(|(n, c)| format!("{c} {n}")).collect();
        format!(
            "profile {}: default {}, rules for {} calls ({}), {} BPF instructions",
            self.profile,
            action_name(self.default_action),
            self.calls.len(),
            rules.join(", "),
            self.program.len()
        )
    }
}

fn action_name(a: Action) -> String {
    match a {
        Action::Allow => "allow".into(),
        Action::Errno(e) => format!("errno {}", errno_name(e)),
        Action::KillThread => "kill thread".into(),
        Action::KillProcess => "kill process".into(),
        Action::Trap => "trap".into(),
        Action::Log => "log".into(),
    }
}

fn errno_name(e: u32) -> String {
    match e as i32 {
        libc::EPERM => "EPERM".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EACCES => "EACCES".into(),
        libc::EINVAL => "EINVAL".into(),
        _ => e.to_string(),
    }
}

/// Reads and compiles profile `text`; `profile` names it in errors.
pub fn compile_text(profile: &str, text: &str, target: Target) -> Result<Compiled, ProfileError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let parsed: ProfileText = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ProfileError::Json {
            profile: profile.to_string(),
            field: if path == "." { "the top level".to_string() } else { path },
            why: e.into_inner().to_string(),
        }
    })?;
    compile(profile, &parsed, target)
}

/// Compiles a profile given as a JSON value (an OCI bundle's
/// `linux.seccomp`, serialised back).
pub fn compile_value(profile: &str, value: serde_json::Value, target: Target) -> Result<Compiled, ProfileError> {
    let parsed: ProfileText = serde_path_to_error::deserialize(value).map_err(|e| ProfileError::Json {
        profile: profile.to_string(),
        field: e.path().to_string(),
        why: e.into_inner().to_string(),
    })?;
    compile(profile, &parsed, target)
}

use crate::runtime::defences::cap_number;

/// The architecture names Docker and the OCI specification use.
const ARCHES: [&str; 17] = [
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_RISCV64",
];

/// Whether an `includes.arches` / `excludes.arches` word names this
/// machine: Docker writes Go's names (`amd64`), libseccomp's also appear.
fn is_this_arch(word: &str) -> bool {
    matches!(word, "amd64" | "x86_64" | "SCMP_ARCH_X86_64")
}

fn parse_action(profile: &str, field: &str, text: &str, errno: Option<u32>) -> Result<Action, ProfileError> {
    let bad = |why: String| ProfileError::Field { profile: profile.into(), field: field.into(), why };
    Ok(match text {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(errno.unwrap_or(libc::EPERM as u32)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_TRACE" => {
            return Err(bad(
                "SCMP_ACT_TRACE hands the call to a ptrace(2) tracer, and virtlab attaches none (without one the \
                 call fails with ENOSYS): use SCMP_ACT_ERRNO, or SCMP_ACT_LOG to see the calls in the audit log"
                    .into(),
            ))
        }
        "SCMP_ACT_NOTIFY" => {
            return Err(bad(
                "SCMP_ACT_NOTIFY hands the call to a listener process (listenerPath), which virtlab does not \
                 run: use SCMP_ACT_ERRNO or SCMP_ACT_ALLOW"
                    .into(),
            ))
        }
        other => {
            return Err(bad(format!(
                "unknown action {other:?}: use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO (with errnoRet), SCMP_ACT_KILL, \
                 SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP or SCMP_ACT_LOG"
            )))
        }
    })
}

fn parse_cmp(profile: &str, field: &str, a: &ArgText) -> Result<(u32, Cmp), ProfileError> {
    let bad = |why: String| ProfileError::Field { profile: profile.into(), field: field.into(), why };
    if a.index > 5 {
        return Err(bad(format!("index {} is not an argument: a system call has arguments 0 to 5", a.index)));
    }
    let cmp = match a.op.as_str() {
        "SCMP_CMP_EQ" => Cmp::Eq(a.value),
        "SCMP_CMP_NE" => Cmp::Ne(a.value),
        "SCMP_CMP_LT" => Cmp::Lt(a.value),
        "SCMP_CMP_LE" => Cmp::Le(a.value),
        "SCMP_CMP_GT" => Cmp::Gt(a.value),
        "SCMP_CMP_GE" => Cmp::Ge(a.value),
        "SCMP_CMP_MASKED_EQ" => Cmp::MaskedEq { mask: a.value, value: a.value_two },
        other => {
            return Err(bad(format!(
                "unknown op {other:?}: use SCMP_CMP_EQ, SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_GT, \
                 SCMP_CMP_GE or SCMP_CMP_MASKED_EQ"
            )))
        }
    };
    Ok((a.index, cmp))
}

/// `4.8` as `(4, 8)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// This host's kernel version (`uname -r`), `(0, 0)` if unreadable.
pub fn kernel_version() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().and_then(|t| parse_version(&t)).unwrap_or((0, 0))
}

/// Whether a rule's `includes`/`excludes` let it apply to `target`; if
/// not, why (for the notes).
fn applies(profile: &str, field: &str, rule: &RuleText, target: Target) -> Result<Result<(), String>, ProfileError> {
    let cap = |f: &str, name: &str| -> Result<u32, ProfileError> {
        cap_number(name).ok_or_else(|| ProfileError::Field {
            profile: profile.into(),
            field: format!("{field}.{f}.caps"),
            why: format!("{name:?} is not a capability: use a name of capabilities(7), e.g. CAP_SYS_ADMIN"),
        })
    };
    let kernel = |f: &str, text: &str| {
        parse_version(text).ok_or_else(|| ProfileError::Field {
            profile: profile.into(),
            field: format!("{field}.{f}.minKernel"),
            why: format!("{text:?} is not a kernel version: write e.g. \"4.8\""),
        })
    };
    if let Some(inc) = &rule.includes {
        for name in inc.caps.iter().flatten() {
            if target.caps & (1u64 << cap("includes", name)?) == 0 {
                return Ok(Err(format!("only with {name}")));
            }
        }
        if let Some(arches) = &inc.arches {
            if !arches.is_empty() && !arches.iter().any(|a| is_this_arch(a)) {
                return Ok(Err(format!("only on {}", arches.join(", "))));
            }
        }
        if let Some(k) = &inc.min_kernel {
            if target.kernel < kernel("includes", k)? {
                return Ok(Err(format!("only from Linux {k}")));
            }
        }
    }
    if let Some(exc) = &rule.excludes {
        for name in exc.caps.iter().flatten() {
            if target.caps & (1u64 << cap("excludes", name)?) != 0 {
                return Ok(Err(format!("not with {name}")));
            }
        }
        if exc.arches.iter().flatten().any(|a| is_this_arch(a)) {
            return Ok(Err("not on x86_64".into()));
        }
        if let Some(k) = &exc.min_kernel {
            if target.kernel >= kernel("excludes", k)? {
                return Ok(Err(format!("not from Linux {k}")));
            }
        }
    }
    Ok(Ok(()))
}

fn compile(profile: &str, p: &ProfileText, target: Target) -> Result<Compiled, ProfileError> {
    let field_err =
        |field: &str, why: String| ProfileError::Field { profile: profile.into(), field: field.into(), why };
    let default_action = parse_action(profile, "defaultAction", &p.default_action, p.default_errno_ret)?;
    let mut notes = Vec::new();
    let arch_words = p.architectures.iter().flatten().map(|a| ("architectures", a)).chain(
        p.arch_map.iter().flatten().flat_map(|m| {
            std::iter::once(("archMap", &m.architecture))
                .chain(m.sub_architectures.iter().flatten().map(|s| ("archMap", s)))
        }),
    );
    for (field, a) in arch_words {
        if !ARCHES.contains(&a.as_str()) {
            return Err(field_err(field, format!("unknown architecture {a:?}: use e.g. SCMP_ARCH_X86_64")));
        }
    }
    if p.listener_path.as_deref().is_some_and(|l| !l.is_empty()) {
        notes.push("listenerPath ignored: virtlab runs no seccomp listener".to_string());
    }
    let mut calls: Vec<(u32, Vec<Rule>)> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    for (i, r) in p.syscalls.iter().flatten().enumerate() {
        let field = format!("syscalls[{i}]");
        let names: Vec<&String> = r.names.iter().flatten().chain(r.name.iter()).collect();
        if names.is_empty() {
            return Err(field_err(&field, "names no system call: give \"names\": [\"mkdir\", ...]".into()));
        }
        let action = parse_action(profile, &format!("{field}.action"), &r.action, r.errno_ret)?;
        let mut conds = Vec::new();
        for (j, a) in r.args.iter().flatten().enumerate() {
            conds.push(parse_cmp(profile, &format!("{field}.args[{j}]"), a)?);
        }
        if let Err(why) = applies(profile, &field, r, target)? {
            notes.push(format!(
                "{field} ({}) left out: {why}",
                names.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
            continue;
        }
        // One rule, or (two conditions on one argument) one per condition.
        let repeated = conds.iter().enumerate().any(|(k, c)| conds[..k].iter().any(|d| d.0 == c.0));
        let rules: Vec<Rule> = if repeated {
            conds.iter().map(|c| Rule { conditions: vec![*c], action }).collect()
        } else {
            vec![Rule { conditions: conds, action }]
        };
        for name in names {
            let Some(nr) = syscall_table::number(name) else {
                if !unknown.contains(name) {
                    unknown.push(name.clone());
                }
                continue;
            };
            match calls.iter_mut().find(|(n, _)| *n == nr) {
                Some((_, list)) => list.extend(rules.iter().cloned()),
                None => calls.push((nr, rules.clone())),
            }
        }
    }
    if !unknown.is_empty() {
        notes.push(format!(
            "skipped {} call name(s) this x86_64 table does not know, as libseccomp does: {}",
            unknown.len(),
            unknown.join(", ")
        ));
    }
    for (_, rules) in &mut calls {
        // Conditional rules first (stable), then the first unconditional one.
        rules.sort_by_key(|r| r.conditions.is_empty());
        if let Some(k) = rules.iter().position(|r| r.conditions.is_empty()) {
            rules.truncate(k + 1);
        }
    }
    // A call whose only rule is the default action needs no code.
    calls.retain(|(_, rules)| {
        !(rules.len() == 1 && rules[0].conditions.is_empty() && rules[0].action == default_action)
    });
    calls.sort_by_key(|(nr, _)| *nr);
    let program =
        assemble(&calls, default_action).map_err(|why| ProfileError::TooBig { profile: profile.into(), why })?;
    Ok(Compiled { profile: profile.to_string(), program, default_action, calls, notes })
}

// Classic BPF (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_BIT: u32 = 0x4000_0000;

/// Where a conditional jump goes: a fixed number of instructions ahead,
/// or a label.
#[derive(Debug, Clone, Copy)]
enum J {
    Skip(u8),
    To(usize),
}

/// A small assembler with labels: conditional jumps reach 255
/// instructions ahead, `ja` anywhere ahead.
#[derive(Debug, Default)]
struct Asm {
    ins: Vec<(u16, u32, J, J, Option<usize>)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, l: usize) {
        self.labels[l] = Some(self.ins.len());
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.ins.push((code, k, J::Skip(0), J::Skip(0), None));
    }
    fn jmp(&mut self, code: u16, k: u32, jt: J, jf: J) {
        self.ins.push((code, k, jt, jf, None));
    }
    fn ja(&mut self, l: usize) {
        self.ins.push((JA, 0, J::Skip(0), J::Skip(0), Some(l)));
    }
    fn finish(self) -> Result<Vec<sock_filter>, String> {
        let at = |l: usize| self.labels[l].ok_or_else(|| "a jump to nowhere".to_string());
        let mut out = Vec::with_capacity(self.ins.len());
        for (i, (code, k, jt, jf, ja)) in self.ins.iter().enumerate() {
            let off = |j: J| -> Result<u8, String> {
                match j {
                    J::Skip(n) => Ok(n),
                    J::To(l) => {
                        let d = at(l)?.checked_sub(i + 1).ok_or("a jump backwards")?;
                        u8::try_from(d).map_err(|_| format!("a conditional jump of {d} instructions (at most 255)"))
                    }
                }
            };
            let k = match ja {
                Some(l) => u32::try_from(at(*l)? - (i + 1)).map_err(|_| "a program too long".to_string())?,
                None => *k,
            };
            out.push(sock_filter { code: *code, jt: off(*jt)?, jf: off(*jf)?, k });
        }
        if out.len() > usize::from(u16::MAX) || out.len() > 4096 {
            return Err(format!("{} instructions (the kernel takes at most 4096)", out.len()));
        }
        Ok(out)
    }
}

/// The conditions of one argument comparison: falls through when it
/// holds, jumps to `fail` when not.
fn condition(a: &mut Asm, index: u32, cmp: Cmp, fail: usize) {
    let lo = OFF_ARGS + 8 * index;
    let hi = lo + 4;
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    let f = J::To(fail);
    match cmp {
        Cmp::Eq(v) => {
            let (vh, vl) = split(v);
            a.stmt(LD_W_ABS, hi);
            a.jmp(JEQ_K, vh, J::Skip(0), f);
            a.stmt(LD_W_ABS, lo);
            a.jmp(JEQ_K, vl, J::Skip(0), f);
        }
        Cmp::Ne(v) => {
            let (vh, vl) = split(v);
            a.stmt(LD_W_ABS, hi);
            a.jmp(JEQ_K, vh, J::Skip(0), J::Skip(2));
            a.stmt(LD_W_ABS, lo);
            a.jmp(JEQ_K, vl, f, J::Skip(0));
        }
        Cmp::MaskedEq { mask, value } => {
            let ((mh, ml), (vh, vl)) = (split(mask), split(value));
            a.stmt(LD_W_ABS, hi);
            a.stmt(ALU_AND_K, mh);
            a.jmp(JEQ_K, vh, J::Skip(0), f);
            a.stmt(LD_W_ABS, lo);
            a.stmt(ALU_AND_K, ml);
            a.jmp(JEQ_K, vl, J::Skip(0), f);
        }
        Cmp::Gt(v) | Cmp::Ge(v) => {
            // High word above: holds; equal: the low word decides.
            let (vh, vl) = split(v);
            a.stmt(LD_W_ABS, hi);
            a.jmp(JGT_K, vh, J::Skip(3), J::Skip(0));
            a.jmp(JEQ_K, vh, J::Skip(0), f);
            a.stmt(LD_W_ABS, lo);
            a.jmp(if matches!(cmp, Cmp::Gt(_)) { JGT_K } else { JGE_K }, vl, J::Skip(0), f);
        }
        Cmp::Lt(v) | Cmp::Le(v) => {
            // High word below: holds; equal: the low word decides.
            let (vh, vl) = split(v);
            a.stmt(LD_W_ABS, hi);
            a.jmp(JGE_K, vh, J::Skip(0), J::Skip(3));
            a.jmp(JEQ_K, vh, J::Skip(0), f);
            a.stmt(LD_W_ABS, lo);
            a.jmp(if matches!(cmp, Cmp::Lt(_)) { JGE_K } else { JGT_K }, vl, f, J::Skip(0));
        }
    }
}

/// A binary search over `calls` (sorted), each found call jumping to its
/// block, the rest to `default`. Every conditional jump is short; the
/// long ones are `ja`.
fn search(a: &mut Asm, calls: &[(u32, usize)], default: usize) {
    if calls.len() <= 4 {
        for (nr, block) in calls {
            a.jmp(JEQ_K, *nr, J::Skip(0), J::Skip(1));
            a.ja(*block);
        }
        a.ja(default);
        return;
    }
    let mid = calls.len() / 2;
    let right = a.label();
    a.jmp(JGE_K, calls[mid].0, J::Skip(0), J::Skip(1));
    a.ja(right);
    search(a, &calls[..mid], default);
    a.bind(right);
    search(a, &calls[mid..], default);
}

fn assemble(calls: &[(u32, Vec<Rule>)], default_action: Action) -> Result<Vec<sock_filter>, String> {
    let mut a = Asm::default();
    a.stmt(LD_W_ABS, OFF_ARCH);
    a.jmp(JEQ_K, AUDIT_ARCH_X86_64, J::Skip(1), J::Skip(0));
    a.stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS);
    a.stmt(LD_W_ABS, OFF_NR);
    a.jmp(JGE_K, X32_BIT, J::Skip(0), J::Skip(1));
    a.stmt(RET_K, Action::Errno(libc::ENOSYS as u32).ret());
    let default = a.label();
    let blocks: Vec<(u32, usize)> = calls.iter().map(|(nr, _)| (*nr, a.label())).collect();
    search(&mut a, &blocks, default);
    for ((_, rules), (_, block)) in calls.iter().zip(&blocks) {
        a.bind(*block);
        for r in rules {
            let fail = a.label();
            for (index, cmp) in &r.conditions {
                condition(&mut a, *index, *cmp, fail);
            }
            a.stmt(RET_K, r.action.ret());
            a.bind(fail);
        }
        a.stmt(RET_K, default_action.ret());
    }
    a.bind(default);
    a.stmt(RET_K, default_action.ret());
    a.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::runtime::seccomp::errno_under;

    /// Runs `p` on one call as the kernel would: its answer.
    fn eval(p: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let op = p[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { op.jt } else { op.jf });
            match op.code {
                LD_W_ABS => {
                    acc = match op.k {
                        OFF_NR => nr,
                        OFF_ARCH => arch,
                        k if (OFF_ARGS..OFF_ARGS + 48).contains(&k) => {
                            let i = ((k - OFF_ARGS) / 8) as usize;
                            if (k - OFF_ARGS) % 8 == 0 {
                                args[i] as u32
                            } else {
                                (args[i] >> 32) as u32
                            }
                        }
                        k => panic!("load of offset {k}"),
                    }
                }
                ALU_AND_K => acc &= op.k,
                JA => pc += op.k as usize,
                JEQ_K => pc += jump(acc == op.k),
                JGT_K => pc += jump(acc > op.k),
                JGE_K => pc += jump(acc >= op.k),
                RET_K => return op.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn host() -> Target {
        Target { caps: 0, kernel: (6, 1) }
    }

    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

    fn nr(name: &str) -> u32 {
        syscall_table::number(name).unwrap()
    }

    #[test]
    fn a_denylist_denies_its_calls_and_allows_the_rest() {
        let c = compile_text(
            "deny.json",
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat", "no_such_call"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
            host(),
        )
        .unwrap();
        for (n, _) in syscall_table::X86_64 {
            let want = if *n == "mkdir" || *n == "mkdirat" { EPERM } else { ALLOW };
            assert_eq!(eval(&c.program, AUDIT_ARCH_X86_64, nr(n), [0; 6]), want, "{n}");
        }
        assert!(c.notes.iter().any(|n| n.contains("no_such_call")), "{:?}", c.notes);
        assert_eq!(eval(&c.program, 0x4000_0003, 1, [0; 6]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(
            eval(&c.program, AUDIT_ARCH_X86_64, X32_BIT | nr("mkdir"), [0; 6]),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
    }

    #[test]
    fn an_allowlist_answers_everything_else_with_its_default() {
        let names: Vec<&str> = syscall_table::X86_64.iter().map(|(n, _)| *n).filter(|n| *n != "mkdir").collect();
        let profile = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"},
                         {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}],
        });
        let c = compile_value("allow", profile, host()).unwrap();
        assert!(c.program.len() < 4096);
        assert_eq!(eval(&c.program, AUDIT_ARCH_X86_64, nr("read"), [0; 6]), ALLOW);
        assert_eq!(
            eval(&c.program, AUDIT_ARCH_X86_64, nr("mkdir"), [0; 6]),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(eval(&c.program, AUDIT_ARCH_X86_64, 999, [0; 6]), libc::SECCOMP_RET_ERRNO | 38);
    }

    #[test]
    fn every_comparison_is_unsigned_and_64_bits_wide() {
        let values: [u64; 7] = [0, 1, 7, 0xffff_ffff, 0x1_0000_0000, 0x1_0000_0007, u64::MAX];
        let ops = ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT", "SCMP_CMP_GE"];
        for op in ops {
            for v in values {
                let profile = serde_json::json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["write"], "action": "SCMP_ACT_ERRNO",
                                  "args": [{"index": 2, "value": v, "op": op}]}],
                });
                let c = compile_value("cmp", profile, host()).unwrap();
                for arg in values {
                    let holds = match op {
                        "SCMP_CMP_EQ" => arg == v,
                        "SCMP_CMP_NE" => arg != v,
                        "SCMP_CMP_LT" => arg < v,
                        "SCMP_CMP_LE" => arg <= v,
                        "SCMP_CMP_GT" => arg > v,
                        _ => arg >= v,
                    };
                    let got = eval(&c.program, AUDIT_ARCH_X86_64, nr("write"), [0, 0, arg, 0, 0, 0]);
                    assert_eq!(got, if holds { EPERM } else { ALLOW }, "{arg:#x} {op} {v:#x}");
                }
            }
        }
        let profile = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 0x1000_0000_u64 | 0x1_0000_0000, "valueTwo": 0x1000_0000, "op": "SCMP_CMP_MASKED_EQ"}]}],
        });
        let c = compile_value("masked", profile, host()).unwrap();
        assert_eq!(eval(&c.program, AUDIT_ARCH_X86_64, nr("clone"), [0x1000_0011, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(eval(&c.program, AUDIT_ARCH_X86_64, nr("clone"), [0x1_1000_0011, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(eval(&c.program, AUDIT_ARCH_X86_64, nr("clone"), [0x11, 0, 0, 0, 0, 0]), ALLOW);
    }

    #[test]
    fn two_tests_of_one_argument_are_either_and_of_two_arguments_both() {
        let profile = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
            ],
        });
        let c = compile_value("or", profile, host()).unwrap();
        let run = |name: &str, a0: u64, a1: u64| eval(&c.program, AUDIT_ARCH_X86_64, nr(name), [a0, a1, 0, 0, 0, 0]);
        assert_eq!(run("personality", 0, 0), ALLOW);
        assert_eq!(run("personality", 8, 0), ALLOW);
        assert_eq!(run("personality", 9, 0), EPERM);
        assert_eq!(run("kill", 1, 9), ALLOW);
        assert_eq!(run("kill", 1, 15), libc::SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn includes_and_excludes_follow_the_capabilities_and_the_kernel() {
        let profile = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["reboot"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_BOOT"]}},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}}]}"#;
        let without = compile_text("p", profile, host()).unwrap();
        let with = compile_text("p", profile, Target { caps: (1 << 21) | (1 << 22), kernel: (6, 1) }).unwrap();
        let run = |c: &Compiled, n: &str| eval(&c.program, AUDIT_ARCH_X86_64, nr(n), [0; 6]);
        assert_eq!(run(&without, "mount"), EPERM);
        assert_eq!(run(&with, "mount"), ALLOW);
        assert_eq!(run(&without, "reboot"), ALLOW);
        assert_eq!(run(&with, "reboot"), EPERM);
        assert_eq!(run(&with, "getpid"), EPERM);
        assert_eq!(run(&with, "getppid"), EPERM);
        assert_eq!(without.notes.len(), 3, "{:?}", without.notes);
    }

    #[test]
    fn a_bad_profile_names_the_field() {
        let err = |text: &str| compile_text("bad.json", text, host()).unwrap_err().to_string();
        let e = err("{ not json");
        assert!(e.contains("bad.json") && e.contains("malformed"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_FOO"}]}"#);
        assert!(e.contains("syscalls[0].action") && e.contains("SCMP_ACT_FOO"), "{e}");
        let e =
            err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": "x", "op": "SCMP_CMP_EQ"}]}]}"#);
        assert!(e.contains("syscalls[0].args[0].value"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_TRACE"}"#);
        assert!(e.contains("defaultAction") && e.contains("tracer"), "{e}");
        let e = err(r#"{"syscalls": []}"#);
        assert!(e.contains("defaultAction"), "{e}");
        let e =
            err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#);
        assert!(e.contains("syscalls[0].args[0]") && e.contains("0 to 5"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#);
        assert!(e.contains("architectures"), "{e}");
    }

    #[test]
    fn a_kill_action_ends_the_process_with_sigsys() {
        let c = compile_text(
            "kill.json",
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]}"#,
            host(),
        )
        .unwrap();
        let status = crate::runtime::seccomp::wait_status_under(&c.program, libc::SYS_getppid, [0; 5]);
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS, "status {status:#x}");
    }

    #[test]
    fn the_kernel_answers_as_the_profile_says() {
        let c = compile_text(
            "mkdir.json",
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 1, "value": 4242, "op": "SCMP_CMP_EQ"}]}]}"#,
            host(),
        )
        .unwrap();
        let dir = c"/nonexistent-virtlab-dir/x".as_ptr() as u64;
        assert_eq!(errno_under(&c.program, libc::SYS_mkdir, [dir, 0o755, 0, 0, 0]), libc::EPERM);
        assert_eq!(errno_under(&c.program, libc::SYS_getpid, [0; 5]), 0);
        assert_eq!(errno_under(&c.program, libc::SYS_getpriority, [0, 4242, 0, 0, 0]), libc::EACCES);
        assert_eq!(errno_under(&c.program, libc::SYS_getpriority, [0, 0, 0, 0, 0]), 0);
    }
}
