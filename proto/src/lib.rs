//! The `c360.v1` gRPC contract: messages, service traits and clients generated
//! at build time from `c360/v1/*.proto`.

pub mod codec;

/// Generated code for package `c360.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("c360.v1");
}

/// Encoded `FileDescriptorSet` of every c360 proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/c360_descriptor.bin"));
