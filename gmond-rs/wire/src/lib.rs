//! Ganglia 3.1+ wire format: XDR codec, printf formatting and the XML feed. Pure: no sockets, no clock.
//!
//! Architecture invariant: nothing in this crate performs I/O other than writing into a
//! caller-supplied `io::Write` or reading from a caller-supplied `io::BufRead`, reads the clock, or depends on tokio or sockets; time
//! (LOCALTIME, TN, REPORTED) is always an input.
#![forbid(unsafe_code)]

pub mod auth;
pub mod emit;
mod error;
pub mod filter;
mod identity;
pub mod model;
pub mod printf;
pub mod xdr;
pub mod xml;

pub use emit::{Emitter, MetricDescriptor, MetricType};
pub use error::Error;
pub use identity::Identity;
pub use xdr::{
    decode, decode_prefix, decode_with, encode, encode_bounded, encoded_len, Extra, Limits,
    Message, Metadata, MetricId, Slope, Value, ValueMsg, METADATA_LIMIT,
};
