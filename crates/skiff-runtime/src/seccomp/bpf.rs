//! Compiles an OCI seccomp profile (`linux.seccomp`) into a classic BPF program for
//! `seccomp(SECCOMP_SET_MODE_FILTER)`, in Rust, so that no libseccomp is needed to build or
//! run skiff.
//!
//! Program shape: check the architecture (anything but native x86_64, including the x32 ABI,
//! kills the process, as libseccomp does for architectures a filter does not cover), then
//! find the system call number in a binary search tree, then evaluate that call's rules in
//! order (argument conditions ANDed within a rule, rules ORed), falling back to the
//! profile's default action.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use super::syscalls;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// A compiled filter, ready to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The program.
    pub program: Vec<SockFilter>,
    /// `SECCOMP_FILTER_FLAG_*` bits for `seccomp(2)`.
    pub flags: u32,
}

/// Why a profile cannot be compiled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    /// The profile asks for something this compiler does not implement.
    #[error("unsupported seccomp profile: {0}")]
    Unsupported(String),
    /// The program would exceed the kernel's limit of 4096 instructions.
    #[error("seccomp profile too large: {0} BPF instructions (the kernel accepts 4096)")]
    TooLarge(usize),
}

// Opcodes (linux/bpf_common.h): class | size | mode, or class | op | source.
/// BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_AND_K: u16 = 0x04 | 0x50;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JGT_K: u16 = 0x05 | 0x20;
const BPF_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

// struct seccomp_data offsets.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

const MAX_INSNS: usize = 4096;
const EPERM: u32 = 1;

/// The `SECCOMP_RET_*` value of an action.
fn action_value(action: LinuxSeccompAction, errno: Option<u32>) -> Result<u32, CompileError> {
    use LinuxSeccompAction::*;
    Ok(match action {
        ScmpActKill | ScmpActKillThread => RET_KILL_THREAD,
        ScmpActKillProcess => RET_KILL_PROCESS,
        ScmpActTrap => RET_TRAP,
        ScmpActErrno => RET_ERRNO | (errno.unwrap_or(EPERM) & 0xffff),
        ScmpActTrace => RET_TRACE | (errno.unwrap_or(0) & 0xffff),
        ScmpActLog => RET_LOG,
        ScmpActAllow => RET_ALLOW,
        ScmpActNotify => {
            return Err(CompileError::Unsupported(
                "SCMP_ACT_NOTIFY needs a seccomp agent, which skiff does not run".into(),
            ))
        }
    })
}

/// One argument test on a 64-bit argument.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cond {
    index: u32,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

/// A rule of one system call: all conditions hold -> action.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    conds: Vec<Cond>,
    action: u32,
}

fn conds_of(args: &[LinuxSeccompArg]) -> Result<Vec<Vec<Cond>>, CompileError> {
    let conds: Vec<Cond> = args
        .iter()
        .map(|a| {
            if a.index() > 5 {
                return Err(CompileError::Unsupported(format!(
                    "argument index {} (system calls have 6 arguments)",
                    a.index()
                )));
            }
            Ok(Cond {
                index: a.index() as u32,
                op: a.op(),
                value: a.value(),
                value_two: a.value_two().unwrap_or(0),
            })
        })
        .collect::<Result<_, _>>()?;
    // As runc does: several conditions on one and the same argument are alternatives (one
    // rule each); conditions on different arguments must all hold.
    let same_index = conds.len() > 1 && conds.iter().all(|c| c.index == conds[0].index);
    Ok(if same_index {
        conds.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conds]
    })
}

/// Compiles a profile for x86_64. System call names this architecture lacks are skipped,
/// as runc does, so that one profile serves several architectures.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, CompileError> {
    if let Some(arches) = profile.architectures() {
        let covered = arches.is_empty()
            || arches
                .iter()
                .any(|a| matches!(a, Arch::ScmpArchX86_64 | Arch::ScmpArchNative));
        if !covered {
            return Err(CompileError::Unsupported(
                "the profile's architectures do not include SCMP_ARCH_X86_64".into(),
            ));
        }
    }
    let mut flags = 0u32;
    for f in profile.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            other => {
                return Err(CompileError::Unsupported(format!("filter flag {other:?}")));
            }
        };
    }
    let default = action_value(profile.default_action(), profile.default_errno_ret())?;
    let mut by_nr: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    for sc in profile.syscalls().iter().flatten() {
        let action = action_value(sc.action(), sc.errno_ret())?;
        let alternatives = conds_of(sc.args().as_deref().unwrap_or_default())?;
        for name in sc.names() {
            let Some(nr) = syscalls::number(name) else {
                tracing::debug!(syscall = %name, "seccomp profile names a system call x86_64 lacks; skipped");
                continue;
            };
            let rules = by_nr.entry(nr).or_default();
            for conds in &alternatives {
                rules.push(Rule {
                    conds: conds.clone(),
                    action,
                });
            }
        }
    }
    // Conditional rules are tried first; the first unconditional rule ends the list.
    for rules in by_nr.values_mut() {
        rules.sort_by_key(|r| r.conds.is_empty());
        if let Some(i) = rules.iter().position(|r| r.conds.is_empty()) {
            rules.truncate(i + 1);
        }
        if rules
            .last()
            .is_some_and(|r| r.conds.is_empty() && r.action == default)
        {
            rules.pop();
        }
    }
    by_nr.retain(|_, rules| !rules.is_empty());
    let program = generate(default, &by_nr)?;
    Ok(Filter { program, flags })
}

fn generate(
    default: u32,
    by_nr: &BTreeMap<u32, Vec<Rule>>,
) -> Result<Vec<SockFilter>, CompileError> {
    let mut asm = Asm::default();
    let bad_arch = asm.label();
    let dflt = asm.label();
    // Unconditional outcomes share one `ret` per action.
    let mut rets: BTreeMap<u32, Label> = BTreeMap::new();
    rets.insert(default, dflt);
    let mut targets: Vec<(u32, Label)> = Vec::new();
    let mut blocks: Vec<(Label, &Vec<Rule>)> = Vec::new();
    for (&nr, rules) in by_nr {
        if let [Rule { conds, action }] = rules.as_slice() {
            if conds.is_empty() {
                let l = *rets.entry(*action).or_insert_with(|| asm.label());
                targets.push((nr, l));
                continue;
            }
        }
        let l = asm.label();
        blocks.push((l, rules));
        targets.push((nr, l));
    }

    asm.load(OFF_ARCH);
    let arch_ok = asm.label();
    asm.jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, arch_ok, bad_arch);
    asm.place(arch_ok);
    asm.load(OFF_NR);
    let native = asm.label();
    asm.jump(BPF_JGE_K, X32_SYSCALL_BIT, bad_arch, native);
    asm.place(native);
    asm.tree(&targets, dflt);

    for (label, rules) in blocks {
        asm.place(label);
        for rule in rules {
            let next = asm.label();
            for c in &rule.conds {
                asm.cond(c, next);
            }
            asm.ret(rule.action);
            asm.place(next);
        }
        asm.ret(default);
    }
    for (action, label) in rets {
        asm.place(label);
        asm.ret(action);
    }
    asm.place(bad_arch);
    asm.ret(RET_KILL_PROCESS);
    asm.finish()
}

type Label = usize;

#[derive(Debug, Clone)]
enum Op {
    Stmt {
        code: u16,
        k: u32,
    },
    Jump {
        code: u16,
        k: u32,
        t: Label,
        f: Label,
    },
    Ja(Label),
    Place(Label),
}

/// A tiny assembler with forward labels. Conditional jumps only reach 255 instructions, so
/// a jump whose target is farther goes through an unconditional `ja` placed right after it.
#[derive(Debug, Default)]
struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        self.labels - 1
    }

    fn place(&mut self, l: Label) {
        self.ops.push(Op::Place(l));
    }

    fn load(&mut self, off: u32) {
        self.ops.push(Op::Stmt {
            code: BPF_LD_W_ABS,
            k: off,
        });
    }

    fn ret(&mut self, k: u32) {
        self.ops.push(Op::Stmt { code: BPF_RET_K, k });
    }

    fn jump(&mut self, code: u16, k: u32, t: Label, f: Label) {
        self.ops.push(Op::Jump { code, k, t, f });
    }

    /// Dispatch on the number in the accumulator: a binary search over sorted numbers,
    /// with short linear scans at the leaves.
    fn tree(&mut self, items: &[(u32, Label)], default: Label) {
        if items.len() <= 4 {
            for &(nr, target) in items {
                let next = self.label();
                self.jump(BPF_JEQ_K, nr, target, next);
                self.place(next);
            }
            self.ops.push(Op::Ja(default));
            return;
        }
        let mid = items.len() / 2;
        let (left, right) = (self.label(), self.label());
        self.jump(BPF_JGE_K, items[mid].0, right, left);
        self.place(left);
        self.tree(&items[..mid], default);
        self.place(right);
        self.tree(&items[mid..], default);
    }

    /// Tests one condition on a 64-bit argument (high word, then low word); falls through
    /// when it holds and jumps to `fail` otherwise. Clobbers the accumulator.
    fn cond(&mut self, c: &Cond, fail: Label) {
        let lo = OFF_ARGS + 8 * c.index;
        let hi = lo + 4;
        let (v_hi, v_lo) = ((c.value >> 32) as u32, c.value as u32);
        let pass = self.label();
        use LinuxSeccompOperator::*;
        match c.op {
            ScmpCmpEq | ScmpCmpNe => {
                let (on_eq, on_ne) = if c.op == ScmpCmpEq {
                    (pass, fail)
                } else {
                    (fail, pass)
                };
                let low = self.label();
                self.load(hi);
                self.jump(BPF_JEQ_K, v_hi, low, on_ne);
                self.place(low);
                self.load(lo);
                self.jump(BPF_JEQ_K, v_lo, on_eq, on_ne);
            }
            ScmpCmpMaskedEq => {
                let (m_hi, m_lo) = (v_hi, v_lo);
                let (w_hi, w_lo) = ((c.value_two >> 32) as u32, c.value_two as u32);
                let low = self.label();
                self.load(hi);
                self.ops.push(Op::Stmt {
                    code: BPF_ALU_AND_K,
                    k: m_hi,
                });
                self.jump(BPF_JEQ_K, w_hi, low, fail);
                self.place(low);
                self.load(lo);
                self.ops.push(Op::Stmt {
                    code: BPF_ALU_AND_K,
                    k: m_lo,
                });
                self.jump(BPF_JEQ_K, w_lo, pass, fail);
            }
            ScmpCmpGt | ScmpCmpGe | ScmpCmpLt | ScmpCmpLe => {
                // x > v  <=>  hi > v_hi, or hi == v_hi and lo > v_lo (unsigned), and
                // x >= v likewise with lo >= v_lo; < and <= are their negations.
                let strict = matches!(c.op, ScmpCmpGt | ScmpCmpLe);
                let (yes, no) = if matches!(c.op, ScmpCmpGt | ScmpCmpGe) {
                    (pass, fail)
                } else {
                    (fail, pass)
                };
                let eq_hi = self.label();
                let low = self.label();
                self.load(hi);
                self.jump(BPF_JGT_K, v_hi, yes, eq_hi);
                self.place(eq_hi);
                self.jump(BPF_JEQ_K, v_hi, low, no);
                self.place(low);
                self.load(lo);
                self.jump(if strict { BPF_JGT_K } else { BPF_JGE_K }, v_lo, yes, no);
            }
        }
        self.place(pass);
    }

    fn finish(self) -> Result<Vec<SockFilter>, CompileError> {
        // (long true target, long false target) per op; grown until every short jump fits.
        let mut long = vec![(false, false); self.ops.len()];
        loop {
            let (pos, at) = self.layout(&long);
            let mut changed = false;
            for (i, op) in self.ops.iter().enumerate() {
                if let Op::Jump { t, f, .. } = op {
                    let next = pos[i] + 1;
                    if !long[i].0 && at[*t] - next > 255 {
                        long[i].0 = true;
                        changed = true;
                    }
                    if !long[i].1 && at[*f] - next > 255 {
                        long[i].1 = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let (pos, at) = self.layout(&long);
        let mut out = Vec::new();
        for (i, op) in self.ops.iter().enumerate() {
            match *op {
                Op::Place(_) => {}
                Op::Stmt { code, k } => out.push(SockFilter {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                }),
                Op::Ja(t) => out.push(SockFilter {
                    code: BPF_JMP_JA,
                    jt: 0,
                    jf: 0,
                    k: (at[t] - (pos[i] + 1)) as u32,
                }),
                Op::Jump { code, k, t, f } => {
                    let next = pos[i] + 1;
                    let (lt, lf) = long[i];
                    // Trampolines sit right after the jump: first the one for `t`, then `f`.
                    let jt = if lt { 0 } else { at[t] - next };
                    let jf = match (lt, lf) {
                        (_, false) => at[f] - next,
                        (false, true) => 0,
                        (true, true) => 1,
                    };
                    out.push(SockFilter {
                        code,
                        jt: jt as u8,
                        jf: jf as u8,
                        k,
                    });
                    if lt {
                        let here = out.len();
                        out.push(SockFilter {
                            code: BPF_JMP_JA,
                            jt: 0,
                            jf: 0,
                            k: (at[t] - (here + 1)) as u32,
                        });
                    }
                    if lf {
                        let here = out.len();
                        out.push(SockFilter {
                            code: BPF_JMP_JA,
                            jt: 0,
                            jf: 0,
                            k: (at[f] - (here + 1)) as u32,
                        });
                    }
                }
            }
        }
        if out.len() > MAX_INSNS {
            return Err(CompileError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Instruction index of every op and of every label under the given jump sizes.
    fn layout(&self, long: &[(bool, bool)]) -> (Vec<usize>, Vec<usize>) {
        let mut pos = Vec::with_capacity(self.ops.len());
        let mut at = vec![0usize; self.labels];
        let mut n = 0usize;
        for (i, op) in self.ops.iter().enumerate() {
            pos.push(n);
            n += match op {
                Op::Place(l) => {
                    at[*l] = n;
                    0
                }
                Op::Stmt { .. } | Op::Ja(_) => 1,
                Op::Jump { .. } => 1 + long[i].0 as usize + long[i].1 as usize,
            };
        }
        (pos, at)
    }
}

/// Runs a program the way the kernel would, for tests: returns the action for a call.
#[cfg(test)]
pub(crate) fn evaluate(program: &[SockFilter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let word =
        |off: u32| u32::from_le_bytes(data[off as usize..off as usize + 4].try_into().unwrap());
    let (mut acc, mut pc) = (0u32, 0usize);
    loop {
        let ins = program[pc];
        pc += 1;
        match ins.code {
            BPF_LD_W_ABS => acc = word(ins.k),
            BPF_ALU_AND_K => acc &= ins.k,
            BPF_JMP_JA => pc += ins.k as usize,
            BPF_JEQ_K | BPF_JGT_K | BPF_JGE_K => {
                let hit = match ins.code {
                    BPF_JEQ_K => acc == ins.k,
                    BPF_JGT_K => acc > ins.k,
                    _ => acc >= ins.k,
                };
                pc += if hit { ins.jt } else { ins.jf } as usize;
            }
            BPF_RET_K => return ins.k,
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    fn run(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
        evaluate(
            &f.program,
            AUDIT_ARCH_X86_64,
            syscalls::number(name).unwrap(),
            args,
        )
    }

    #[test]
    fn allow_list_with_default_errno() {
        let f = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["read", "write", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mount"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
            ]
        })))
        .unwrap();
        assert_eq!(run(&f, "read", [0; 6]), RET_ALLOW);
        assert_eq!(run(&f, "write", [0; 6]), RET_ALLOW);
        assert_eq!(run(&f, "open", [0; 6]), RET_ERRNO | 1);
        assert_eq!(run(&f, "mount", [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&f, "clone3", [0; 6]), RET_ERRNO | 38);
        // Foreign ABIs never reach the table.
        assert_eq!(
            evaluate(&f.program, 0x4000_0003, 0, [0; 6]),
            RET_KILL_PROCESS
        );
        assert_eq!(
            evaluate(&f.program, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, [0; 6]),
            RET_KILL_PROCESS
        );
    }

    #[test]
    fn every_number_dispatches_correctly_across_far_jumps() {
        // Every call allowed but one, which gets a conditional rule: forces long jumps.
        let names: Vec<&str> = syscalls::SYSCALLS
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n != "personality")
            .collect();
        let f = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": names, "action": "SCMP_ACT_LOG"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        })))
        .unwrap();
        for (name, nr) in syscalls::SYSCALLS {
            let want = if *name == "personality" {
                RET_ERRNO | 1
            } else {
                RET_LOG
            };
            assert_eq!(
                evaluate(
                    &f.program,
                    AUDIT_ARCH_X86_64,
                    *nr as u32,
                    [3, 0, 0, 0, 0, 0]
                ),
                want,
                "{name}"
            );
        }
        assert_eq!(run(&f, "personality", [8, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(
            evaluate(&f.program, AUDIT_ARCH_X86_64, 1000, [0; 6]),
            RET_ERRNO | 1
        );
    }

    #[test]
    fn argument_operators_compare_all_64_bits() {
        let rule = |op: &str, value: u64, two: u64| {
            compile(&profile(json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 1, "value": value, "valueTwo": two, "op": op}]}]
            })))
            .unwrap()
        };
        let ok = |f: &Filter, a: u64| run(f, "ioctl", [0, a, 0, 0, 0, 0]) == RET_ALLOW;
        let big = 0x1_0000_0005u64;
        let f = rule("SCMP_CMP_EQ", big, 0);
        assert!(ok(&f, big) && !ok(&f, 5) && !ok(&f, big + 1));
        let f = rule("SCMP_CMP_NE", big, 0);
        assert!(!ok(&f, big) && ok(&f, 5));
        let f = rule("SCMP_CMP_GT", big, 0);
        assert!(ok(&f, big + 1) && ok(&f, 0x2_0000_0000) && !ok(&f, big) && !ok(&f, 0xffff_ffff));
        let f = rule("SCMP_CMP_GE", big, 0);
        assert!(ok(&f, big) && !ok(&f, big - 1));
        let f = rule("SCMP_CMP_LT", big, 0);
        assert!(ok(&f, big - 1) && ok(&f, 0xffff_ffff) && !ok(&f, big));
        let f = rule("SCMP_CMP_LE", big, 0);
        assert!(ok(&f, big) && !ok(&f, big + 1));
        let f = rule("SCMP_CMP_MASKED_EQ", 0x7e02_0000, 0);
        assert!(ok(&f, 0x11 | 0x100) && !ok(&f, 0x1000_0000) && !ok(&f, 0x2_0000));
    }

    #[test]
    fn conditions_on_one_argument_are_alternatives_on_several_all_must_hold() {
        let f = compile(&profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ]
        })))
        .unwrap();
        assert_eq!(run(&f, "personality", [0; 6]), RET_ALLOW);
        assert_eq!(run(&f, "personality", [8, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_ne!(run(&f, "personality", [9, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&f, "socket", [2, 1, 0, 0, 0, 0]), RET_ALLOW);
        assert_ne!(run(&f, "socket", [2, 2, 0, 0, 0, 0]), RET_ALLOW);
    }

    #[test]
    fn notify_and_foreign_only_profiles_are_refused() {
        let e = compile(&profile(json!({"defaultAction": "SCMP_ACT_NOTIFY"}))).unwrap_err();
        assert!(e.to_string().contains("SCMP_ACT_NOTIFY"));
        let e = compile(&profile(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"]}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("X86_64"));
    }
}
