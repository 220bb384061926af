//! The capability probe: what this kernel and process allow, and why not when they don't.
//!
//! Each capability is checked by *doing* it on a small scratch arena (a MOVE between two pages,
//! a MINOR registration of a memfd, a write tracked by WP_ASYNC and found by PAGEMAP_SCAN), not
//! only by reading feature bits: a seccomp filter or a kernel quirk can refuse an operation the
//! feature word offers.
//!
//! Invariants:
//! - the probe never changes system state (no sysctl, no privileges) and releases everything it
//!   maps before returning;
//! - `reason` is `None` exactly when `available` is true; every failure carries a reason and a
//!   remedy derived from the errno (ENOSYS: kernel config or seccomp; EPERM: policy; EINVAL:
//!   kernel too old).

use serde_json::{json, Value};

use crate::arena::{ArenaConfig, Backing, FaultDelivery, VolatileArena};
use crate::pagemap::PagemapScanner;
use crate::sys::{Sys, PAGE_SIZE};
use crate::uffd::{ErrorKind, Features, IoctlSet, OpenMethod, Uffd, UffdError};

/// One checked capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// Short name (`"sigbus"`, `"move"`, `"minor_shmem"`, `"wp_async"`).
    pub name: &'static str,
    /// Whether it works here.
    pub ok: bool,
    /// Why not, when it does not.
    pub detail: Option<String>,
}

/// The probe's findings.
#[derive(Debug, Clone)]
pub struct Probe {
    /// A userfaultfd can be created and negotiated.
    pub available: bool,
    /// How it was opened.
    pub open_method: Option<OpenMethod>,
    /// `uname -r`.
    pub kernel: String,
    /// Features the kernel offers.
    pub features: Features,
    /// Ioctls the kernel offers.
    pub ioctls: IoctlSet,
    /// Functional checks.
    pub capabilities: Vec<Capability>,
    /// Why userfaultfd is unavailable.
    pub reason: Option<String>,
    /// What to do about it.
    pub remedy: Option<String>,
}

/// Explain an open/API failure: (reason, remedy).
pub fn explain(e: &UffdError) -> (String, String) {
    match e.kind {
        ErrorKind::NotSupported => (
            format!("{e}: the kernel lacks CONFIG_USERFAULTFD, or a seccomp filter returns ENOSYS for userfaultfd(2)"),
            "run on a kernel built with CONFIG_USERFAULTFD=y and allow the userfaultfd system call in the seccomp profile; Faultline falls back to stop-the-world compaction meanwhile".into(),
        ),
        ErrorKind::Permission => (
            format!("{e}: userfaultfd(2) is denied by policy (a seccomp or LSM rule, or vm.unprivileged_userfaultfd=0 on a kernel that lacks UFFD_USER_MODE_ONLY)"),
            "allow the userfaultfd system call in the container's seccomp profile (Docker's default profile blocks it); Faultline never changes sysctls and falls back to stop-the-world compaction".into(),
        ),
        ErrorKind::Invalid => (
            format!("{e}: the kernel is too old for UFFD_USER_MODE_ONLY (needs Linux 5.11) or for the requested API"),
            "upgrade to Linux 6.8 or later for MOVE, 6.7 for WP_ASYNC + PAGEMAP_SCAN".into(),
        ),
        ErrorKind::NotNegotiated(f) => (
            format!("{e}: the kernel does not offer {}", f.name()),
            "upgrade the kernel; Faultline picks another strategy automatically".into(),
        ),
        _ => (format!("{e}"), "see the error; Faultline falls back to stop-the-world compaction".into()),
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn cap(name: &'static str, r: Result<(), String>) -> Capability {
    match r {
        Ok(()) => Capability {
            name,
            ok: true,
            detail: None,
        },
        Err(d) => Capability {
            name,
            ok: false,
            detail: Some(d),
        },
    }
}

fn check_move(sys: &Sys) -> Result<(), String> {
    let a = VolatileArena::new(
        ArenaConfig::new(2 * PAGE_SIZE)
            .delivery(FaultDelivery::Thread)
            .sys(sys.clone()),
    )
    .map_err(|e| e.to_string())?;
    if !a.can_move() {
        return Err("UFFD_FEATURE_MOVE not offered (needs Linux 6.8)".into());
    }
    a.populate(0, PAGE_SIZE).map_err(|e| e.to_string())?;
    // SAFETY: the scratch arena's page 0 is ours and unused.
    unsafe { a.resolve_move(PAGE_SIZE, 0, PAGE_SIZE, false) }
        .map(drop)
        .map_err(|e| e.to_string())
}

fn check_minor(sys: &Sys) -> Result<(), String> {
    let a = VolatileArena::new(
        ArenaConfig::new(PAGE_SIZE)
            .backing(Backing::Memfd)
            .delivery(FaultDelivery::Thread)
            .sys(sys.clone()),
    )
    .map_err(|e| e.to_string())?;
    let view = a.fill_view_addr(0).map_err(|e| e.to_string())?;
    // SAFETY: the fill view is an unregistered shared mapping of the scratch memfd.
    unsafe { (view as *mut u8).write_volatile(0x5a) };
    a.resolve_continue(0, PAGE_SIZE)
        .map_err(|e| e.to_string())?;
    // SAFETY: the page was just mapped by CONTINUE.
    let seen = unsafe { (a.base() as *const u8).read_volatile() };
    if seen == 0x5a {
        Ok(())
    } else {
        Err(format!(
            "CONTINUE mapped a page reading {seen:#x}, expected 0x5a"
        ))
    }
}

fn check_wp_async(sys: &Sys) -> Result<(), String> {
    let a = VolatileArena::new(
        ArenaConfig::new(4 * PAGE_SIZE)
            .delivery(FaultDelivery::Thread)
            .write_tracking(true)
            .sys(sys.clone()),
    )
    .map_err(|e| e.to_string())?;
    a.populate(0, 4 * PAGE_SIZE).map_err(|e| e.to_string())?;
    let scanner = PagemapScanner::open(sys).map_err(|e| format!("PAGEMAP_SCAN: {e}"))?;
    // Clear the written state left by populating, then write one page.
    scanner
        .written_pages(a.base(), 4 * PAGE_SIZE, true, |_, _| {})
        .map_err(|e| e.to_string())?;
    // SAFETY: page 2 of the scratch arena is present; WP_ASYNC resolves the write in-kernel.
    unsafe { ((a.base() + 2 * PAGE_SIZE) as *mut u8).write_volatile(1) };
    let mut found = Vec::new();
    let pages = scanner
        .written_pages(a.base(), 4 * PAGE_SIZE, true, |s, l| found.push((s, l)))
        .map_err(|e| e.to_string())?;
    if pages == 1 && found == [(a.base() + 2 * PAGE_SIZE, PAGE_SIZE)] {
        Ok(())
    } else {
        Err(format!(
            "PAGEMAP_SCAN reported {pages} written pages {found:x?}, expected exactly page 2"
        ))
    }
}

impl Probe {
    /// Probe the real kernel.
    pub fn run() -> Probe {
        Self::run_with(&Sys::real())
    }

    /// Probe through `sys` (a fault injector lets tests see each failure's report).
    pub fn run_with(sys: &Sys) -> Probe {
        let kernel = kernel_release();
        let (features, ioctls, method) = match Uffd::available(sys) {
            Ok(v) => v,
            Err(e) => {
                let (reason, remedy) = explain(&e);
                return Probe {
                    available: false,
                    open_method: None,
                    kernel,
                    features: Features::NONE,
                    ioctls: IoctlSet::default(),
                    capabilities: Vec::new(),
                    reason: Some(reason),
                    remedy: Some(remedy),
                };
            }
        };
        let sigbus = if features.contains(crate::uffd::Feature::Sigbus) {
            Ok(())
        } else {
            Err("UFFD_FEATURE_SIGBUS not offered (needs Linux 4.14)".into())
        };
        let capabilities = vec![
            cap("sigbus", sigbus),
            cap("move", check_move(sys)),
            cap("minor_shmem", check_minor(sys)),
            cap("wp_async", check_wp_async(sys)),
        ];
        Probe {
            available: true,
            open_method: Some(method),
            kernel,
            features,
            ioctls,
            capabilities,
            reason: None,
            remedy: None,
        }
    }

    /// Whether the named capability works.
    pub fn has(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c.name == name && c.ok)
    }

    /// The findings as one JSON object (`available`, `features`, `reason`, ...).
    pub fn to_json(&self) -> Value {
        let caps: serde_json::Map<String, Value> = self
            .capabilities
            .iter()
            .map(|c| (c.name.to_string(), json!({"ok": c.ok, "detail": c.detail})))
            .collect();
        json!({
            "available": self.available,
            "kernel": self.kernel,
            "open_method": self.open_method.map(|m| match m {
                OpenMethod::Syscall => "syscall",
                OpenMethod::DevNode => "/dev/userfaultfd",
            }),
            "features": self.features.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "unknown_feature_bits": self.features.unknown_bits(),
            "ioctls": self.ioctls.iter().map(|i| i.name()).collect::<Vec<_>>(),
            "capabilities": caps,
            "reason": self.reason,
            "remedy": self.remedy,
        })
    }

    /// The findings as a human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let yes = |b: bool| if b { "yes" } else { "no" };
        s.push_str(&format!("{:<24} {}\n", "kernel", self.kernel));
        s.push_str(&format!("{:<24} {}\n", "userfaultfd", yes(self.available)));
        if let Some(m) = self.open_method {
            s.push_str(&format!(
                "{:<24} {}\n",
                "opened via",
                match m {
                    OpenMethod::Syscall => "userfaultfd(2), UFFD_USER_MODE_ONLY",
                    OpenMethod::DevNode => "/dev/userfaultfd",
                }
            ));
        }
        if let Some(r) = &self.reason {
            s.push_str(&format!("{:<24} {}\n", "reason", r));
        }
        if let Some(r) = &self.remedy {
            s.push_str(&format!("{:<24} {}\n", "remedy", r));
        }
        if self.available {
            let feats: Vec<_> = self.features.iter().map(|f| f.name()).collect();
            s.push_str(&format!("{:<24} {}\n", "features", feats.join(" ")));
            let ioctls: Vec<_> = self.ioctls.iter().map(|f| f.name()).collect();
            s.push_str(&format!("{:<24} {}\n", "ioctls", ioctls.join(" ")));
            s.push_str("\ncapability               works  detail\n");
            for c in &self.capabilities {
                s.push_str(&format!(
                    "{:<24} {:<6} {}\n",
                    c.name,
                    yes(c.ok),
                    c.detail.as_deref().unwrap_or("")
                ));
            }
        }
        s
    }
}
