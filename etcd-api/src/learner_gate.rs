//! etcd's learner rule, for every client service at once: a learner answers only
//! `Maintenance/Status`, `Maintenance/Snapshot` and serializable `KV/Range`; any other call,
//! unary or stream, is refused before its request is read, with etcd 3.5's
//! `FailedPrecondition`, `etcdserver: rpc not supported for learner`, so clients move on to a
//! voting member instead of waiting on one that cannot decide. Whether a range is serializable is in its body, which only the KV service
//! decodes: [`LearnerGate`] lets `KV/Range` through and the KV service refuses a linearizable
//! one itself ([`refuse_on_learner`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use raftstore::node::NodeHandle;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::Status;

use crate::error::status_from;

/// The methods a learner serves (the KV service checks that a range is serializable).
const SERVED_BY_LEARNERS: [&str; 3] = [
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Maintenance/Snapshot",
    "/etcdserverpb.KV/Range",
];

/// etcd's refusal when this member is a learner.
pub(crate) fn refuse_on_learner(handle: &NodeHandle) -> Result<(), Status> {
    if handle.status().is_learner {
        return Err(status_from(raftstore::EtcdError::NotSupportedForLearner));
    }
    Ok(())
}

/// A generated service that a learner serves only the methods etcd's learners serve.
#[derive(Clone)]
pub(crate) struct LearnerGate<S> {
    inner: S,
    handle: NodeHandle,
}

impl<S> LearnerGate<S> {
    pub(crate) fn new(inner: S, handle: NodeHandle) -> Self {
        Self { inner, handle }
    }
}

impl<S: NamedService> NamedService for LearnerGate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<Body>> for LearnerGate<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: Default + Send + 'static,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if !SERVED_BY_LEARNERS.contains(&request.uri().path()) {
            if let Err(refusal) = refuse_on_learner(&self.handle) {
                return Box::pin(std::future::ready(Ok(refusal.into_http())));
            }
        }
        Box::pin(self.inner.call(request))
    }
}
