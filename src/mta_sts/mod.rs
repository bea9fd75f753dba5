//! RFC 8461 (MTA-STS) vocabulary and parsers. Pure: no I/O here.
//!
//! - [`record`]: the `_mta-sts` TXT record (SPEC 2).
//! - [`policy`]: the policy file (SPEC 4).
//! - [`mx`]: `mx:` patterns and matching (SPEC 4.4).

pub mod mx;
pub mod policy;
pub mod record;

pub use mx::{MxError, MxPattern};
pub use policy::{Mode, Policy, PolicyError, MAX_AGE_LIMIT};
pub use record::{RecordError, StsRecord};
