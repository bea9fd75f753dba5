//! The Postfix socketmap protocol (SPEC 1). Pure, bytes in, bytes out, but for
//! [`connection`], which runs it over a socket.
//!
//! - [`netstring`]: framing with a size cap (SPEC 1.1, 1.4).
//! - [`request`]: `<map name> <key>` and key normalisation (SPEC 1.2, 1.6).
//! - [`response`]: `OK` / `NOTFOUND ` / `TEMP` / `TIMEOUT` / `PERM` (SPEC 1.3).
//! - [`connection`]: one client connection: pipelined frames, idle and request
//!   timers (SPEC 1.1, 1.4, 1.5).

// fuzz/src/lib.rs builds this directory's pure modules from source under
// cargo-fuzz's `--cfg fuzzing`, without tokio; the connection is not fuzzed.
#[cfg(not(fuzzing))]
pub mod connection;
pub mod netstring;
pub mod request;
pub mod response;

pub use netstring::{FrameError, MAX_REQUEST};
pub use request::{
    normalise, normalise_key, parse_request, Key, Normalised, Request, RequestError, Skip,
};
pub use response::Reply;
