//! Run a command in a hostile environment for userfaultfd (the torture suite's launcher):
//!
//! ```text
//! uffd-jail [--deny EPERM|ENOSYS] [--user NAME] -- COMMAND [ARGS...]
//! ```
//!
//! `--user` drops to that user's uid and gid (supplementary groups cleared; needs root);
//! `--deny` then installs a seccomp-BPF filter under which `userfaultfd(2)` fails with the given
//! errno (every other system call is allowed); finally the command is executed.
//!
//! Invariants of the filter: it checks the audit architecture first and kills the process for
//! any other architecture (a syscall number means nothing across ABIs); on x86_64 it also
//! denies the x32 number of `userfaultfd`; it is installed with `PR_SET_NO_NEW_PRIVS`, so it
//! applies to the command and everything it spawns and cannot be lifted. It does not, and need
//! not, block `/dev/userfaultfd`: Faultline never opens it.

use std::ffi::CString;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
#[cfg(target_arch = "x86_64")]
const X32_BIT: u32 = 0x4000_0000;

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
// struct seccomp_data: nr at 0, arch at 4.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The filter program: userfaultfd -> ERRNO(errno), anything else -> ALLOW.
fn program(errno: u32) -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let ld = BPF_LD | BPF_W | BPF_ABS;
    let jeq = BPF_JMP | BPF_JEQ | BPF_K;
    let ret = BPF_RET | BPF_K;
    let nr = libc::SYS_userfaultfd as u32;
    let mut p = vec![
        stmt(ld, OFF_ARCH),
        jump(jeq, AUDIT_ARCH, 1, 0),
        stmt(ret, SECCOMP_RET_KILL_PROCESS),
        stmt(ld, OFF_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    p.push(jump(jeq, nr | X32_BIT, 2, 0));
    p.push(jump(jeq, nr, 1, 0));
    p.push(stmt(ret, SECCOMP_RET_ALLOW));
    p.push(stmt(ret, SECCOMP_RET_ERRNO | (errno & 0xffff)));
    p
}

fn die(what: &str) -> ! {
    eprintln!("uffd-jail: {what}: {}", std::io::Error::last_os_error());
    std::process::exit(125);
}

fn drop_to(user: &str) {
    let name = CString::new(user).unwrap_or_else(|_| die("bad user name"));
    // SAFETY: getpwnam returns a pointer to static storage or null; read before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        eprintln!("uffd-jail: no such user: {user}");
        std::process::exit(125);
    }
    // SAFETY: `pw` is non-null and points at a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    // SAFETY: plain credential system calls; groups first, then gid, then uid (after which we
    // could no longer change the others).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            die("setgroups");
        }
        if libc::setgid(gid) != 0 {
            die("setgid");
        }
        if libc::setuid(uid) != 0 {
            die("setuid");
        }
        if libc::geteuid() != uid || libc::getegid() != gid {
            eprintln!("uffd-jail: credentials did not change");
            std::process::exit(125);
        }
    }
}

fn deny(errno: i32) {
    let mut prog = program(errno as u32);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl with documented arguments; `fprog` points at a live, well-formed program
    // for the duration of the call (the kernel copies it).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            die("prctl(PR_SET_NO_NEW_PRIVS)");
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        ) != 0
        {
            die("prctl(PR_SET_SECCOMP)");
        }
    }
    // Prove it applies before handing over.
    // SAFETY: a raw userfaultfd call whose descriptor (if any) is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
    let got = std::io::Error::last_os_error().raw_os_error();
    if fd >= 0 || got != Some(errno) {
        if fd >= 0 {
            // SAFETY: closing the descriptor just created.
            unsafe { libc::close(fd as i32) };
        }
        eprintln!("uffd-jail: the filter did not apply (userfaultfd gave {fd}, {got:?})");
        std::process::exit(125);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut errno = None;
    let mut user = None;
    let mut cmd = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--deny" => {
                errno = Some(match args.next().as_deref() {
                    Some("EPERM") => libc::EPERM,
                    Some("ENOSYS") => libc::ENOSYS,
                    other => {
                        eprintln!("uffd-jail: --deny EPERM|ENOSYS, not {other:?}");
                        std::process::exit(125);
                    }
                })
            }
            "--user" => user = args.next(),
            "--" => {
                cmd.extend(args.by_ref());
            }
            _ => {
                eprintln!(
                    "usage: uffd-jail [--deny EPERM|ENOSYS] [--user NAME] -- COMMAND [ARGS...]"
                );
                std::process::exit(125);
            }
        }
    }
    if cmd.is_empty() {
        eprintln!("uffd-jail: no command");
        std::process::exit(125);
    }
    if let Some(u) = &user {
        drop_to(u);
    }
    if let Some(e) = errno {
        deny(e);
    }
    let err = std::os::unix::process::CommandExt::exec(
        std::process::Command::new(&cmd[0]).args(&cmd[1..]),
    );
    eprintln!("uffd-jail: exec {}: {err}", cmd[0]);
    std::process::exit(126);
}
