//! Sandbox tiers for Symbiont stages: native namespaces + seccomp + Landlock,
//! gVisor, and microVMs, with the worker protocol that crosses the boundary.
//!
//! Nothing is implemented here yet; the sandbox issue fills it. This is the
//! one crate (besides the grammar binding in `symbiont-dsl`) that will need
//! `unsafe` for system calls.
