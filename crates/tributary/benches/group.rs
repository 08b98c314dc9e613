//! Benchmark: group (work in progress).

fn main() {}
