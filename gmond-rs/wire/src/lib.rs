//! Ganglia 3.1+ wire format: XDR codec, printf formatting and the XML feed. Pure: no sockets, no clock.
#![forbid(unsafe_code)]

pub mod model;
