//! Maps the store's errors onto gRPC statuses exactly as etcd does.
//!
//! Guarantee: the status message is the error's display text unchanged (`etcdserver: ...`),
//! because Go clients turn statuses back into typed errors by matching that text.

use raftstore::{ErrorCode, EtcdError};
use tonic::{Code, Status};

/// The gRPC status etcd answers `err` with: its code, and its message verbatim.
pub fn status_from(err: EtcdError) -> Status {
    Status::new(code_of(err.code()), err.to_string())
}

fn code_of(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::OutOfRange => Code::OutOfRange,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Canceled => Code::Cancelled,
        ErrorCode::DataLoss => Code::DataLoss,
        ErrorCode::Internal => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_maps_to_out_of_range_with_etcds_text() {
        let status = status_from(EtcdError::Compacted);
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(
            status.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    }

    #[test]
    fn empty_key_maps_to_invalid_argument_with_etcds_text() {
        let status = status_from(EtcdError::EmptyKey);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "etcdserver: key is not provided");
    }

    #[test]
    fn no_leader_maps_to_unavailable_so_clients_retry() {
        let status = status_from(EtcdError::NoLeader);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "etcdserver: no leader");
    }

    #[test]
    fn every_error_code_keeps_its_grpc_meaning() {
        let expected = [
            (ErrorCode::InvalidArgument, Code::InvalidArgument),
            (ErrorCode::OutOfRange, Code::OutOfRange),
            (ErrorCode::NotFound, Code::NotFound),
            (ErrorCode::FailedPrecondition, Code::FailedPrecondition),
            (ErrorCode::ResourceExhausted, Code::ResourceExhausted),
            (ErrorCode::Unavailable, Code::Unavailable),
            (ErrorCode::Canceled, Code::Cancelled),
            (ErrorCode::DataLoss, Code::DataLoss),
            (ErrorCode::Internal, Code::Internal),
        ];
        for (store_code, grpc_code) in expected {
            assert_eq!(code_of(store_code), grpc_code, "{store_code:?}");
        }
    }
}
