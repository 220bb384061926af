//! runtime-demo: a toy language runtime embedding Faultline (for now: the capability probe).
//!
//! The language front end (reader, compiler, diagnostics) does not touch the heap; the VM that
//! runs its output will.

// The front end is not used by `main` yet (the VM is being written); keep it compiled and tested.
#[allow(dead_code)]
mod diag;
#[allow(dead_code)]
mod reader;
#[allow(dead_code)]
mod syntax;

fn main() {
    let json = std::env::args().skip(1).any(|a| a == "--json");
    let probe = faultline::Probe::run();
    if json {
        println!("{}", probe.to_json());
    } else {
        print!("{}", probe.table());
    }
}
