//! runtime-demo: a toy language runtime embedding Faultline (for now: the capability probe).

fn main() {
    let json = std::env::args().skip(1).any(|a| a == "--json");
    let probe = faultline::Probe::run();
    if json {
        println!("{}", probe.to_json());
    } else {
        print!("{}", probe.table());
    }
}
