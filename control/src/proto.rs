//! The generated control API (package `causeway.v1`, from
//! control/proto/causeway/v1/control.proto) and its encoded descriptor set,
//! served for reflection.
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    unused_qualifications,
    elided_lifetimes_in_paths
)]

/// The encoded `FileDescriptorSet` of causeway.v1, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/causeway_v1_descriptor.bin"));

tonic::include_proto!("causeway.v1");
