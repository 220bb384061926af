//! Running one test of the current test binary in a child process under a watchdog: for
//! cases that must panic, abort or hang in a way the test process itself must survive.
//!
//! Invariant: the child runs exactly the named test (`--exact`, one thread), with `case_var`
//! set to its name so that the test knows it is the child; a child that outlives the
//! watchdog is killed and the parent panics with its stderr.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Run `case` (the name of a test of this binary) in a child process with the environment
/// variable `case_var` set to it; kill it after `watchdog` (the parent then panics: the case
/// hangs). Returns its exit status and stderr.
pub fn run_case(case: &str, case_var: &str, watchdog: Duration) -> (ExitStatus, String) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([case, "--exact", "--nocapture", "--test-threads=1"])
        .env(case_var, case)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the child");
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for the child") {
            break st;
        }
        if t0.elapsed() > watchdog {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = reader.join().unwrap_or_default();
            panic!("{case}: the child hung (killed after {watchdog:?}); its stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
}

/// The body of a test that runs `body` in a child process: in the child (`case_var` names
/// `case`) run it; in the parent run the child ([`run_case`]) and require that it exited 0
/// (its assertions check the outcome).
pub fn in_child(case: &str, case_var: &str, watchdog: Duration, body: impl FnOnce()) {
    if std::env::var(case_var).as_deref() == Ok(case) {
        body();
        return;
    }
    let (status, stderr) = run_case(case, case_var, watchdog);
    assert!(
        status.success(),
        "{case}: the child failed ({status}); stderr:\n{stderr}"
    );
}
