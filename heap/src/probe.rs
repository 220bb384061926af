//! The capability probe: what this kernel and process allow, and why not when they don't.
//!
//! This module owns [`Probe`] (the findings), [`Capability`] (what is checked, by typed name)
//! and [`explain`] (the reason and remedy for a refused userfaultfd). Every capability but
//! [`Capability::Sigbus`] is checked by *doing* it on a small scratch arena (a MOVE between two
//! pages, a MINOR registration of a memfd and a CONTINUE, a write tracked by WP_ASYNC and found
//! by PAGEMAP_SCAN), not only by reading feature bits: a seccomp filter or a kernel quirk can
//! refuse an operation the feature word offers. SIGBUS delivery is read from the feature word
//! (there is no ioctl to refuse).
//!
//! Invariants:
//! - the probe never changes system state (no sysctl, no privileges) and releases everything it
//!   maps before returning;
//! - `reason` and `remedy` are `None` exactly when `available` is true; a refused userfaultfd
//!   carries both, derived from the errno (ENOSYS: kernel config or seccomp; EPERM: policy;
//!   EINVAL: kernel too old);
//! - when `available`, `capabilities` holds one [`CapabilityCheck`] per [`Capability`] in
//!   [`Capability::ALL`] order, whose `detail` is `None` exactly when `ok`; so
//!   [`Probe::detail`] is `None` exactly when [`Probe::supports`] is true;
//! - the JSON and table output name capabilities by [`Capability::name`].

use serde_json::{json, Value};

use crate::arena::ArenaOffset;
use crate::arena::{ArenaConfig, Backing, FaultDelivery, VolatileArena};
use crate::pagemap::PagemapScanner;
use crate::sys::{Sys, PAGE_SIZE};
use crate::uffd::{ErrorKind, Features, IoctlSet, OpenMethod, Uffd, UffdError};

/// One capability the probe checks. [`Capability::name`] is the key used in the probe's JSON
/// (`capabilities.<name>`) and in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// `UFFD_FEATURE_SIGBUS`: faults delivered as SIGBUS to the faulting thread (checked from
    /// the feature word only: a seccomp filter cannot refuse a signal).
    Sigbus,
    /// `UFFDIO_MOVE` works on an anonymous arena (checked by moving a page).
    Move,
    /// `UFFD_FEATURE_MINOR_SHMEM` + `UFFDIO_CONTINUE` work on a memfd arena (checked by filling a
    /// page through the fill view and mapping it with CONTINUE).
    MinorShmem,
    /// `UFFD_FEATURE_WP_ASYNC` write tracking read back by `PAGEMAP_SCAN` (checked by writing one
    /// page and finding exactly that page).
    WpAsync,
}

impl Capability {
    /// Every capability, in the order the probe checks and reports them.
    pub const ALL: [Capability; 4] = [
        Capability::Sigbus,
        Capability::Move,
        Capability::MinorShmem,
        Capability::WpAsync,
    ];

    /// Short name (`"sigbus"`, `"move"`, `"minor_shmem"`, `"wp_async"`), as printed by the probe.
    pub const fn name(self) -> &'static str {
        match self {
            Capability::Sigbus => "sigbus",
            Capability::Move => "move",
            Capability::MinorShmem => "minor_shmem",
            Capability::WpAsync => "wp_async",
        }
    }

    /// The capability called `name` (the inverse of [`Capability::name`]).
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl core::fmt::Display for Capability {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of checking one [`Capability`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityCheck {
    /// What was checked.
    pub capability: Capability,
    /// `capability.name()` (kept as a field for callers that match on the string).
    pub name: &'static str,
    /// Whether it works here.
    pub ok: bool,
    /// Why not, when it does not (`None` exactly when `ok`).
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
    /// One check per [`Capability`], in [`Capability::ALL`] order (empty when userfaultfd is
    /// unavailable: nothing was checked).
    pub capabilities: Vec<CapabilityCheck>,
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

/// Whether the running kernel is Linux `major.minor` or later (false when its release cannot
/// be read): for features no capability check covers, such as `process_madvise` taking
/// `MADV_DONTNEED` for the process itself (6.13).
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    release_version(&kernel_release()) >= Some((major, minor))
}

/// `(major, minor)` of a release string such as `6.18.44-fc-v1300`.
fn release_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn cap(capability: Capability, r: Result<(), String>) -> CapabilityCheck {
    let name = capability.name();
    match r {
        Ok(()) => CapabilityCheck {
            capability,
            name,
            ok: true,
            detail: None,
        },
        Err(d) => CapabilityCheck {
            capability,
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
    a.populate(ArenaOffset(0), PAGE_SIZE)
        .map_err(|e| e.to_string())?;
    // SAFETY: the scratch arena's page 0 is ours and unused.
    unsafe { a.resolve_move(ArenaOffset(PAGE_SIZE), ArenaOffset(0), PAGE_SIZE, false) }
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
    let view = a
        .fill_view_addr(ArenaOffset(0))
        .map_err(|e| e.to_string())?;
    // SAFETY: the fill view is an unregistered shared mapping of the scratch memfd.
    unsafe { (view as *mut u8).write_volatile(0x5a) };
    a.resolve_continue(ArenaOffset(0), PAGE_SIZE)
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
    a.populate(ArenaOffset(0), 4 * PAGE_SIZE)
        .map_err(|e| e.to_string())?;
    let scanner = PagemapScanner::open(sys).map_err(|e| format!("PAGEMAP_SCAN: {e}"))?;
    // Clear the written state left by populating, then write one page.
    // SAFETY: the scratch arena is this probe's own: no one else tracks its writes.
    unsafe { scanner.written_pages(a.base(), 4 * PAGE_SIZE, true, |_, _| {}) }
        .map_err(|e| e.to_string())?;
    // SAFETY: page 2 of the scratch arena is present; WP_ASYNC resolves the write in-kernel.
    unsafe { ((a.base() + 2 * PAGE_SIZE) as *mut u8).write_volatile(1) };
    let mut found = Vec::new();
    // SAFETY: as for the first scan.
    let pages =
        unsafe { scanner.written_pages(a.base(), 4 * PAGE_SIZE, true, |s, l| found.push((s, l))) }
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
            cap(Capability::Sigbus, sigbus),
            cap(Capability::Move, check_move(sys)),
            cap(Capability::MinorShmem, check_minor(sys)),
            cap(Capability::WpAsync, check_wp_async(sys)),
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

    /// The check of `c` (`None` when userfaultfd is unavailable and nothing was checked).
    pub fn check(&self, c: Capability) -> Option<&CapabilityCheck> {
        self.capabilities.iter().find(|k| k.capability == c)
    }

    /// Whether `c` works here.
    pub fn supports(&self, c: Capability) -> bool {
        self.check(c).is_some_and(|k| k.ok)
    }

    /// Why `c` does not work here: its check's detail, or the probe's [`Probe::reason`] when
    /// userfaultfd itself is unavailable. `None` exactly when [`Probe::supports`] is true.
    pub fn detail(&self, c: Capability) -> Option<&str> {
        match self.check(c) {
            Some(k) if k.ok => None,
            Some(k) => Some(k.detail.as_deref().unwrap_or("check failed")),
            None => Some(self.reason.as_deref().unwrap_or("userfaultfd unavailable")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_versions_parse_and_compare() {
        assert_eq!(release_version("6.18.44-fc-v1300"), Some((6, 18)));
        assert_eq!(release_version("5.10.0-28-amd64"), Some((5, 10)));
        assert_eq!(release_version("unknown"), None);
        assert!(release_version("6.13.0") >= Some((6, 13)));
        assert!(release_version("6.9.1") < Some((6, 13)));
        assert!(release_version("unknown") < Some((0, 0)));
    }

    /// A probe as the kernel would leave it when userfaultfd works and `failing` does not.
    fn probe_with(failing: Option<Capability>) -> Probe {
        Probe {
            available: true,
            open_method: Some(OpenMethod::Syscall),
            kernel: "test".into(),
            features: Features::NONE,
            ioctls: IoctlSet::default(),
            capabilities: Capability::ALL
                .into_iter()
                .map(|c| {
                    let r = if Some(c) == failing {
                        Err(format!("{c} refused"))
                    } else {
                        Ok(())
                    };
                    cap(c, r)
                })
                .collect(),
            reason: None,
            remedy: None,
        }
    }

    #[test]
    fn names_are_the_printed_keys_and_round_trip() {
        let names: Vec<_> = Capability::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["sigbus", "move", "minor_shmem", "wp_async"]);
        for c in Capability::ALL {
            assert_eq!(Capability::from_name(c.name()), Some(c));
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(Capability::from_name("poison"), None);
        assert_eq!(Capability::from_name("MOVE"), None);
    }

    #[test]
    fn supports_and_detail_agree_with_the_checks() {
        for failing in Capability::ALL {
            let p = probe_with(Some(failing));
            for c in Capability::ALL {
                let k = p.check(c).unwrap();
                assert_eq!(k.capability, c);
                assert_eq!(k.name, c.name());
                assert_eq!(p.supports(c), c != failing);
                assert_eq!(p.detail(c).is_none(), p.supports(c));
                // The superseded string lookup answers the same.
                assert_eq!(Capability::from_name(c.name()), Some(c));
            }
            assert_eq!(
                p.detail(failing),
                Some(format!("{failing} refused").as_str())
            );
            let j = p.to_json();
            assert_eq!(j["capabilities"][failing.name()]["ok"], false);
            assert_eq!(
                j["capabilities"][failing.name()]["detail"],
                format!("{failing} refused")
            );
        }
        let all = probe_with(None);
        assert!(Capability::ALL.into_iter().all(|c| all.supports(c)));
        assert!(Capability::from_name("no_such_capability").is_none());
    }

    #[test]
    fn without_userfaultfd_every_detail_is_the_reason() {
        let p = Probe {
            available: false,
            open_method: None,
            kernel: "test".into(),
            features: Features::NONE,
            ioctls: IoctlSet::default(),
            capabilities: Vec::new(),
            reason: Some("denied".into()),
            remedy: Some("allow it".into()),
        };
        for c in Capability::ALL {
            assert!(p.check(c).is_none());
            assert!(!p.supports(c));
            assert!(!p.supports(c));
            assert_eq!(p.detail(c), Some("denied"));
        }
    }
}
