//! The `meshota` command (being built).
fn main() {}
