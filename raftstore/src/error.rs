//! Errors of the store, in two kinds.
//!
//! [`EtcdError`] is what a client sees: each variant carries etcd's exact message and gRPC code,
//! because Go clients map errors back by their text. [`StorageError`] is a failure of the
//! machinery below (engine I/O, corrupt encodings): inside the raft loop it stops the node.

use std::fmt;

/// The gRPC status code an error maps to (this crate does not depend on tonic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    OutOfRange,
    NotFound,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    Canceled,
    DataLoss,
    Internal,
}

/// An error a client sees, with etcd's code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlsExist,
    #[error("etcdserver: given member URLs are invalid")]
    InvalidMemberUrls,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// A failure inside this server, described for the operator.
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl EtcdError {
    pub fn code(&self) -> ErrorCode {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | InvalidSortOption | RequestTooLarge | InvalidMemberUrls => ErrorCode::InvalidArgument,
            Compacted | FutureRevision | LeaseTtlTooLarge => ErrorCode::OutOfRange,
            LeaseNotFound | MemberNotFound => ErrorCode::NotFound,
            LeaseExists
            | NotLeader
            | BadLeaderTransferee
            | PeerUrlsExist
            | TooManyLearners
            | NotLearner
            | LearnerNotReady
            | NotSupportedForLearner
            | NotEnoughStartedMembers => ErrorCode::FailedPrecondition,
            TooManyRequests => ErrorCode::ResourceExhausted,
            NoLeader | LeaderChanged | Stopped | Timeout | LeaderTransferTimeout | Unhealthy => {
                ErrorCode::Unavailable
            }
            Corrupt => ErrorCode::DataLoss,
            Internal(_) => ErrorCode::Internal,
        }
    }

    /// Whether retrying the same request may succeed (the cluster was busy or changing).
    pub fn is_retryable(&self) -> bool {
        self.code() == ErrorCode::Unavailable || matches!(self, EtcdError::TooManyRequests)
    }
}

/// A failure of the storage machinery, with what was being done.
#[derive(Debug, thiserror::Error)]
pub struct StorageError {
    context: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StorageError {
    /// An error with no underlying cause, e.g. a broken invariant found in stored data.
    pub fn corrupt(context: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            source: None,
        }
    }

    /// Wraps `source`, saying what was being done when it failed.
    pub fn io(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            context: context.into(),
            source: Some(source.into()),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {}", self.context, source),
            None => f.write_str(&self.context),
        }
    }
}

impl From<StorageError> for EtcdError {
    fn from(err: StorageError) -> Self {
        EtcdError::Internal(err.to_string())
    }
}
