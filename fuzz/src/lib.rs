//! The mtastsd parsers under fuzzing, compiled from the main crate's sources.
//! The three modules are pure (no I/O, no `crate::` paths) and refer to each
//! other only through `super::`, which resolves to this crate's root here.

#[path = "../../src/mta_sts/mx.rs"]
pub mod mx;
#[path = "../../src/mta_sts/policy.rs"]
pub mod policy;
#[path = "../../src/mta_sts/record.rs"]
pub mod record;
