//! gRPC request counters with grpc-prometheus's names and labels, as etcd exports them:
//! `grpc_server_started_total{grpc_type,grpc_service,grpc_method}` and
//! `grpc_server_handled_total{...,grpc_code}`.
//!
//! Guarantees: every call to a known method of the client services is counted as started once
//! when it arrives and as handled at most once: a unary call when its response headers are
//! sent (code from `grpc-status` in trailers-only responses, else `OK`, as tonic answers a
//! handler's success); a streaming call when its trailers pass (their `grpc-status`), or as
//! `Canceled` when its body is dropped before them (the client went away). Counting is two
//! relaxed atomic adds into a table fixed at start: no lock, no allocation on the request path.
//! Paths of no known method are not counted.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;

/// The header (or trailer) gRPC carries the status code in.
const GRPC_STATUS: &str = "grpc-status";

/// grpc-go's names of the status codes, by number (the `grpc_code` label).
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

const OK: usize = 0;
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// How a method streams (the `grpc_type` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcType {
    Unary,
    ClientStream,
    ServerStream,
    BidiStream,
}

impl GrpcType {
    pub fn label(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ClientStream => "client_stream",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
        }
    }
}

/// Every method of the client port: (service, method, type).
const METHODS: &[(&str, &str, GrpcType)] = &[
    ("etcdserverpb.KV", "Range", GrpcType::Unary),
    ("etcdserverpb.KV", "Put", GrpcType::Unary),
    ("etcdserverpb.KV", "DeleteRange", GrpcType::Unary),
    ("etcdserverpb.KV", "Txn", GrpcType::Unary),
    ("etcdserverpb.KV", "Compact", GrpcType::Unary),
    ("etcdserverpb.Watch", "Watch", GrpcType::BidiStream),
    ("etcdserverpb.Lease", "LeaseGrant", GrpcType::Unary),
    ("etcdserverpb.Lease", "LeaseRevoke", GrpcType::Unary),
    ("etcdserverpb.Lease", "LeaseKeepAlive", GrpcType::BidiStream),
    ("etcdserverpb.Lease", "LeaseTimeToLive", GrpcType::Unary),
    ("etcdserverpb.Lease", "LeaseLeases", GrpcType::Unary),
    ("etcdserverpb.Cluster", "MemberAdd", GrpcType::Unary),
    ("etcdserverpb.Cluster", "MemberRemove", GrpcType::Unary),
    ("etcdserverpb.Cluster", "MemberUpdate", GrpcType::Unary),
    ("etcdserverpb.Cluster", "MemberList", GrpcType::Unary),
    ("etcdserverpb.Cluster", "MemberPromote", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "Alarm", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "Status", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "Defragment", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "Hash", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "HashKV", GrpcType::Unary),
    (
        "etcdserverpb.Maintenance",
        "Snapshot",
        GrpcType::ServerStream,
    ),
    ("etcdserverpb.Maintenance", "MoveLeader", GrpcType::Unary),
    ("etcdserverpb.Maintenance", "Downgrade", GrpcType::Unary),
    ("grpc.health.v1.Health", "Check", GrpcType::Unary),
    ("grpc.health.v1.Health", "Watch", GrpcType::ServerStream),
];

/// The counters of one client server.
#[derive(Debug)]
pub struct GrpcMetrics {
    started: Box<[AtomicU64]>,
    /// `method index * CODE_NAMES.len() + code`.
    handled: Box<[AtomicU64]>,
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            started: zeros(METHODS.len()),
            handled: zeros(METHODS.len() * CODE_NAMES.len()),
        }
    }
}

/// One method's counts, as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodCounts {
    pub service: &'static str,
    pub method: &'static str,
    pub grpc_type: GrpcType,
    pub started: u64,
    /// `(code name, count)` for every code, in code order.
    pub handled: Vec<(&'static str, u64)>,
}

impl GrpcMetrics {
    /// The index of the method at HTTP/2 path `/service/method`.
    fn method_index(path: &str) -> Option<usize> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        METHODS
            .iter()
            .position(|(s, m, _)| *s == service && *m == method)
    }

    fn count_started(&self, method: usize) {
        self.started[method].fetch_add(1, Ordering::Relaxed);
    }

    fn count_handled(&self, method: usize, code: usize) {
        self.handled[method * CODE_NAMES.len() + code].fetch_add(1, Ordering::Relaxed);
    }

    /// Every method's counts, in a fixed order.
    pub fn read(&self) -> Vec<MethodCounts> {
        METHODS
            .iter()
            .enumerate()
            .map(|(index, (service, method, grpc_type))| {
                let row = &self.handled[index * CODE_NAMES.len()..][..CODE_NAMES.len()];
                MethodCounts {
                    service,
                    method,
                    grpc_type: *grpc_type,
                    started: self.started[index].load(Ordering::Relaxed),
                    handled: CODE_NAMES
                        .iter()
                        .zip(row)
                        .map(|(name, count)| (*name, count.load(Ordering::Relaxed)))
                        .collect(),
                }
            })
            .collect()
    }
}

/// The code in a `grpc-status` header or trailer, if there is one (`Unknown` if unreadable).
fn status_code(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get(GRPC_STATUS)?;
    let code = std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
        .filter(|code| *code < CODE_NAMES.len())
        .unwrap_or(UNKNOWN);
    Some(code)
}

/// Counts a streaming call as handled exactly once: at its trailers, or as canceled when
/// dropped before them.
struct HandledOnce {
    metrics: Arc<GrpcMetrics>,
    method: usize,
    counted: bool,
}

impl HandledOnce {
    fn count(&mut self, code: usize) {
        if !self.counted {
            self.counted = true;
            self.metrics.count_handled(self.method, code);
        }
    }
}

impl Drop for HandledOnce {
    fn drop(&mut self) {
        self.count(CANCELED);
    }
}

/// A generated service whose calls are counted in a [`GrpcMetrics`].
#[derive(Debug, Clone)]
pub(crate) struct GrpcCounted<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

impl<S> GrpcCounted<S> {
    pub(crate) fn new(inner: S, metrics: Arc<GrpcMetrics>) -> Self {
        Self { inner, metrics }
    }
}

impl<S: NamedService> NamedService for GrpcCounted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for GrpcCounted<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let method = GrpcMetrics::method_index(request.uri().path());
        if let Some(method) = method {
            self.metrics.count_started(method);
        }
        let metrics = self.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let Some(method) = method else {
                return Ok(response);
            };
            if let Some(code) = status_code(response.headers()) {
                metrics.count_handled(method, code);
                return Ok(response);
            }
            if METHODS[method].2 == GrpcType::Unary {
                metrics.count_handled(method, OK);
                return Ok(response);
            }
            let mut once = HandledOnce {
                metrics,
                method,
                counted: false,
            };
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    if let Some(code) = frame.trailers_ref().and_then(status_code) {
                        once.count(code);
                    }
                    frame
                }))
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_their_methods() {
        let put = GrpcMetrics::method_index("/etcdserverpb.KV/Put").expect("Put is known");
        assert_eq!(METHODS[put].1, "Put");
        assert_eq!(GrpcMetrics::method_index("/etcdserverpb.KV/Nope"), None);
        assert_eq!(GrpcMetrics::method_index("no-slash"), None);
    }

    #[test]
    fn handled_counts_are_kept_per_code() {
        let metrics = GrpcMetrics::default();
        let put = GrpcMetrics::method_index("/etcdserverpb.KV/Put").expect("Put is known");
        metrics.count_started(put);
        metrics.count_started(put);
        metrics.count_handled(put, OK);
        metrics.count_handled(put, 14);

        let counts = metrics.read();
        let row = counts
            .iter()
            .find(|row| row.method == "Put")
            .expect("Put row");

        let counted: Vec<_> = row.handled.iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(row.started, 2);
        assert_eq!(row.handled.len(), CODE_NAMES.len());
        assert_eq!(counted, [&("OK", 1), &("Unavailable", 1)]);
    }

    #[test]
    fn status_codes_are_read_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(status_code(&headers), None);
        headers.insert(GRPC_STATUS, "5".parse().expect("valid header"));
        assert_eq!(status_code(&headers), Some(5));
        headers.insert(GRPC_STATUS, "99".parse().expect("valid header"));
        assert_eq!(status_code(&headers), Some(UNKNOWN));
    }

    #[test]
    fn a_stream_dropped_before_its_trailers_counts_as_canceled() {
        let metrics = Arc::new(GrpcMetrics::default());
        let watch = GrpcMetrics::method_index("/etcdserverpb.Watch/Watch").expect("known");
        let mut once = HandledOnce {
            metrics: metrics.clone(),
            method: watch,
            counted: false,
        };
        once.count(OK);
        drop(once);
        let dropped = HandledOnce {
            metrics: metrics.clone(),
            method: watch,
            counted: false,
        };
        drop(dropped);

        let row = metrics.read().into_iter().nth(watch).expect("Watch row");
        assert_eq!(
            &row.handled[..3],
            [("OK", 1), ("Canceled", 1), ("Unknown", 0)]
        );
    }
}
