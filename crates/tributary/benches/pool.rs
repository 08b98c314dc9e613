//! Benchmark: pool (work in progress).

fn main() {}
