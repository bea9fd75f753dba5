//! TLS-RPT (RFC 8460). Today the `_smtp._tls` record that `mtastsd check` audits;
//! the reporting of SPEC 8 belongs beside it.
//!
//! | file | holds |
//! |---|---|
//! | `record.rs` | the `_smtp._tls.<domain>` record (RFC 8460 §3): parse and select. Pure |

pub mod record;

pub use record::{is_tlsrpt_record, parse_record, select_record, TlsRpt, TlsRptError};
