//! The capability probe: its JSON shape on this machine, and its reasons when userfaultfd is
//! refused (driven by the fault injector, since the kernel cannot be made to refuse on demand).

use faultline_heap::inject::{FaultInjector, Rule, Trigger};
use faultline_heap::sys::{Call, Errno, Sys};
use faultline_heap::{Capability, Probe};
use std::sync::Arc;

#[test]
fn probe_json_has_the_documented_fields() {
    let p = Probe::run();
    let j = p.to_json();
    assert!(j["available"].is_boolean());
    assert!(j["features"].is_array());
    assert!(j.get("reason").is_some());
    if p.available {
        assert!(j["reason"].is_null());
        let feats: Vec<&str> = j["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        // This machine (Linux 6.18) offers all of these; the probe must name them so.
        for f in ["SIGBUS", "MOVE", "MINOR_SHMEM", "WP_ASYNC"] {
            if std::env::var_os("FAULTLINE_REQUIRE_UFFD").is_some() {
                assert!(feats.contains(&f), "{f} missing from {feats:?}");
            }
        }
        for c in ["sigbus", "move", "minor_shmem", "wp_async"] {
            assert!(j["capabilities"][c]["ok"].is_boolean());
        }
        // The table names every capability.
        let t = p.table();
        assert!(t.contains("wp_async") && t.contains("move"));
    } else {
        assert!(j["reason"].is_string());
    }
}

#[test]
fn refusals_carry_reason_and_remedy() {
    for (errno, needle) in [
        (Errno::EPERM, "policy"),
        (Errno::ENOSYS, "CONFIG_USERFAULTFD"),
        (Errno::EINVAL, "too old"),
    ] {
        let inj = Arc::new(FaultInjector::new(
            vec![Rule::new(Call::Userfaultfd, errno, Trigger::Always)],
            1,
        ));
        let p = Probe::run_with(&Sys::new(inj));
        assert!(!p.available);
        let j = p.to_json();
        assert_eq!(j["available"], false);
        let reason = j["reason"].as_str().unwrap();
        assert!(reason.contains(needle), "{errno}: {reason}");
        for c in Capability::ALL {
            assert!(!p.supports(c));
            assert_eq!(p.detail(c), Some(reason));
        }
        assert!(j["remedy"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(j["features"].as_array().unwrap().is_empty());
    }
}

#[test]
fn a_refused_capability_is_reported_not_fatal() {
    // MOVE refused by the kernel (as a seccomp filter or an older kernel would): the probe
    // still reports uffd available, with move marked as not working and why.
    let inj = Arc::new(FaultInjector::new(
        vec![Rule::new(Call::UffdMove, Errno::EINVAL, Trigger::Always)],
        1,
    ));
    let p = Probe::run_with(&Sys::new(inj));
    if !p.available {
        return;
    }
    assert!(!p.supports(Capability::Move));
    assert!(p.detail(Capability::Move).unwrap().contains("EINVAL"));
    let j = p.to_json();
    assert_eq!(j["capabilities"]["move"]["ok"], false);
    assert!(j["capabilities"]["move"]["detail"]
        .as_str()
        .unwrap()
        .contains("EINVAL"));
}

#[test]
fn typed_accessors_match_the_json() {
    let p = Probe::run();
    let j = p.to_json();
    for c in Capability::ALL {
        assert_eq!(Capability::from_name(c.name()), Some(c));
        assert_eq!(p.detail(c).is_none(), p.supports(c));
        if p.available {
            assert_eq!(j["capabilities"][c.name()]["ok"], p.supports(c));
            assert_eq!(
                j["capabilities"][c.name()]["detail"].as_str(),
                p.detail(c),
                "{c}"
            );
        }
    }
}
