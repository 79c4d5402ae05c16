//! The gmond XML feed: a streaming writer (what gmond-rs serves) and a reader (what the
//! balancer, tools and tests consume from any gmond or gmetad).

pub mod reader;
pub mod writer;

pub use reader::{read_document, read_document_from, read_document_with, ReadOptions};
pub use writer::{
    write_document, ClusterAttrs, ExtraPair, HostAttrs, MetricAttrs, PreparedMetric, SlopeText,
    Val, WriteOptions, XmlWriter, DTD,
};
