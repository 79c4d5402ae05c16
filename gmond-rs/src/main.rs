//! gmond-rs: entry point (the daemon lands with its issue).
fn main() {
    println!("gmond-rs {}", env!("CARGO_PKG_VERSION"));
}
