//! Generated code for carerecord's protobuf contracts, one module per proto package, and the one
//! codec the generated services and clients use ([`codec`]: prost's, plus the contracts' rule that
//! no text field of a request holds NUL).
//!
//! Services map these types to their own domain types at the edge.

#![allow(clippy::all, missing_docs)]

/// The encoded `FileDescriptorSet` of every carerecord contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/carerecord_descriptor.bin"));

pub mod codec;

pub mod common {
    pub mod v1 {
        tonic::include_proto!("carerecord.common.v1");
    }
}

pub mod identity {
    pub mod v1 {
        tonic::include_proto!("carerecord.identity.v1");
    }
}

pub mod records {
    pub mod v1 {
        tonic::include_proto!("carerecord.records.v1");
    }
}

pub mod consent {
    pub mod v1 {
        tonic::include_proto!("carerecord.consent.v1");
    }
}

pub mod access {
    pub mod v1 {
        tonic::include_proto!("carerecord.access.v1");
    }
}
