//! The crate's one error type: everything that can go wrong decoding, encoding or reading XML.

/// Why a datagram, a message or an XML document was rejected.
///
/// Every malformed input maps to one of these; the codec never panics and never allocates
/// more than the input could justify. The daemon counts drops per variant
/// ([`Error::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before the message did (`needed` more bytes at `offset`).
    #[error("truncated message: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    /// A string or array length is larger than the configured limit.
    #[error("{what} length {len} exceeds the limit of {limit}")]
    LengthTooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    /// The datagram is larger than the receive limit (`max_udp_msg_len`).
    #[error("datagram of {len} bytes exceeds the limit of {limit}")]
    DatagramTooLarge { len: usize, limit: usize },
    /// The first word is not one of the nine Ganglia 3.1+ message ids (128-136).
    #[error("unknown message id {0}")]
    UnknownMessageId(u32),
    /// An encoded message would not fit in the caller's size limit.
    #[error("encoded message of {len} bytes exceeds the limit of {limit}")]
    MessageTooLarge { len: usize, limit: usize },
    /// A value of another type than the TYPE its metric announces (the emitter refuses it).
    #[error("a {metric_type} metric cannot send a value message {message_id}")]
    ValueTypeMismatch {
        metric_type: &'static str,
        message_id: u32,
    },
    /// The XML document is not well-formed or not a Ganglia document.
    #[error("XML error at byte {position}: {message}")]
    Xml { position: u64, message: String },
    /// A key file (see [`crate::auth::KeyRing::parse`]) is not valid; `line` is 1-based, 0
    /// for the file as a whole. The message never quotes key material.
    #[error("key file line {line}: {message}")]
    KeyFile { line: usize, message: String },
    /// An XML attribute holds text where a number is required.
    #[error("XML attribute {element}/{attribute} is not a number: {value:?}")]
    XmlNumber {
        element: &'static str,
        attribute: &'static str,
        value: String,
    },
}

impl Error {
    /// A short, stable label for counters and logs (`datagrams_dropped_total{reason=...}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::LengthTooLong { .. } => "bad_length",
            Error::DatagramTooLarge { .. } => "oversize",
            Error::UnknownMessageId(_) => "unknown_id",
            Error::MessageTooLarge { .. } => "message_too_large",
            Error::ValueTypeMismatch { .. } => "value_type_mismatch",
            Error::KeyFile { .. } => "key_file",
            Error::Xml { .. } | Error::XmlNumber { .. } => "xml",
        }
    }
}
