//! Oversized request messages answer `ResourceExhausted`, as gRPC specifies and etcd (grpc-go)
//! does, instead of tonic's `OutOfRange`.
//!
//! tonic refuses a message above a service's `max_decoding_message_size` before any handler
//! runs, with `OutOfRange` — which etcd uses for compacted and future revisions, so a client
//! would misread it. [`ReceiveLimitStatus`] wraps a generated service and rewrites exactly that
//! refusal (recognised by tonic's text, which carries both sizes) into grpc-go's status:
//! `ResourceExhausted`, `grpc: received message larger than max (N vs. M)`. Every other
//! response passes through untouched. Request-streaming handlers see the refusal as an error
//! from their stream and map it with [`receive_error_status`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::{Code, Status};

/// The header tonic and gRPC put the status code in (trailers-only responses carry it as a header).
const GRPC_STATUS_HEADER: &str = "grpc-status";

/// Sizes in tonic's decode-limit refusal: `(message_bytes, limit_bytes)`.
fn parse_decode_limit_refusal(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix("Error, decoded message length too large: found ")?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

/// `status` as etcd would answer it: tonic's decode-limit refusal becomes grpc-go's
/// `ResourceExhausted`; anything else is returned unchanged.
pub(crate) fn receive_error_status(status: Status) -> Status {
    if status.code() != Code::OutOfRange {
        return status;
    }
    match parse_decode_limit_refusal(status.message()) {
        Some((found_bytes, limit_bytes)) => Status::resource_exhausted(format!(
            "grpc: received message larger than max ({found_bytes} vs. {limit_bytes})"
        )),
        None => status,
    }
}

/// Rewrites a trailers-only refusal carried in `headers`, if that is what they hold.
fn rewrite_refusal_headers(headers: &mut HeaderMap) {
    let is_out_of_range = headers
        .get(GRPC_STATUS_HEADER)
        .is_some_and(|code| code.as_bytes() == b"11");
    if !is_out_of_range {
        return;
    }
    let Some(original) = Status::from_header_map(headers) else {
        return;
    };
    let rewritten = receive_error_status(original);
    if rewritten.code() == Code::OutOfRange {
        return;
    }
    if let Err(err) = rewritten.add_header(headers) {
        tracing::warn!(%err, "could not rewrite an oversized-message refusal");
    }
}

/// A generated service whose oversized-message refusals read `ResourceExhausted`.
#[derive(Debug, Clone)]
pub(crate) struct ReceiveLimitStatus<S> {
    inner: S,
}

impl<S> ReceiveLimitStatus<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S: NamedService> NamedService for ReceiveLimitStatus<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<Body>> for ReceiveLimitStatus<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            rewrite_refusal_headers(response.headers_mut());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_limit_refusal_becomes_resource_exhausted_with_grpc_go_text() {
        let refusal = Status::out_of_range(
            "Error, decoded message length too large: found 2097163 bytes, the limit is: 2097152 bytes",
        );

        let status = receive_error_status(refusal);

        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "grpc: received message larger than max (2097163 vs. 2097152)"
        );
    }

    #[test]
    fn etcd_out_of_range_errors_are_left_alone() {
        let compacted =
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted");

        let status = receive_error_status(compacted);

        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(
            status.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    }

    #[test]
    fn trailers_only_refusal_headers_are_rewritten() {
        let refusal = Status::out_of_range(
            "Error, decoded message length too large: found 10 bytes, the limit is: 5 bytes",
        );
        let mut headers = HeaderMap::new();
        refusal
            .add_header(&mut headers)
            .expect("ASCII status fits in headers");

        rewrite_refusal_headers(&mut headers);

        let status = Status::from_header_map(&headers).expect("headers carry a status");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "grpc: received message larger than max (10 vs. 5)"
        );
    }
}
