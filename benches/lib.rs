//! Benchmarks live in `benches/`; this library is empty so the package is a workspace member.
