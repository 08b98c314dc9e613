//! Benchmark: sources (work in progress).

fn main() {}
