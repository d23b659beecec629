//! The project's benchmarks, run as `atrium bench ...`.
