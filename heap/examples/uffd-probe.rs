//! Print what this kernel and process allow: `cargo run -q --release -p faultline-heap
//! --example uffd-probe [-- --json]`.

fn main() {
    let json = std::env::args().skip(1).any(|a| a == "--json");
    let probe = faultline_heap::Probe::run();
    if json {
        println!("{}", probe.to_json());
    } else {
        print!("{}", probe.table());
    }
}
