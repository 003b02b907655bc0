//! The Kubernetes API on the server's HTTPS port (6443), beside the supervisor endpoints:
//! `/api`, `/apis`, `/version`, `/openapi`, `/healthz`, `/livez` are served here, every other
//! path by the supervisor.
//!
//! | module | job |
//! |---|---|
//! | [`router`] | which route a path names; query parameters |
//! | [`auth`] | the user of a connection's client certificate |
//! | [`api`] | the verbs, with kube-apiserver's semantics |
//! | [`storage`] | kube-apiserver's three transaction shapes over the store |
//! | [`datastore`] | the store: the embedded member or an external etcd |
//! | [`object`] | server-owned fields, names, defaults |
//! | [`selector`] | label and field selectors |
//! | [`patch`] | merge, JSON and strategic merge patches |
//! | [`protobuf`] | protobuf request bodies of kubectl's typed clients |
//! | [`watch`] | the watch stream |
//! | [`discovery`] | discovery documents and OpenAPI |
//! | [`table`] | `Table` answers for `kubectl get` |
//! | [`status`] | `Status` errors |
//! | [`resources`] | the table of built-in resources |
//! | [`crd`] | CustomResourceDefinitions: checks, status, the custom resources they serve |
//! | [`crd_definition`] | a CRD's checks, defaults and status |
//! | [`crd_schema`] | custom resources pruned, defaulted and checked by their schema |
//! | [`printer_columns`] | a CRD's printer columns as Table columns and cells |
//! | [`schemas`] | OpenAPI v3 schemas for `kubectl explain` |
//! | [`snapshot_files`] | ETCDSnapshotFile objects kept in step with the snapshot records |
//! | [`kubeconfig`] | the admin kubeconfig |
//! | [`node`] | this server as a Node, its Lease heartbeat, lapsed nodes NotReady |
//! | [`manifests`] | auto-deploying `<data-dir>/server/manifests` through the verbs |
//!
//! Guarantees: every answer is JSON (a `Status` for every refusal); a request without a
//! valid client certificate gets `401` before anything else; bodies above
//! [`MAX_BODY_BYTES`] get `413`; until the member serves (or while an external datastore does not
//! answer), resource requests get `503`.

pub mod api;
pub mod auth;
pub mod crd;
pub mod crd_definition;
pub mod crd_schema;
pub mod datastore;
pub mod discovery;
pub mod kubeconfig;
pub mod manifests;
pub mod node;
pub mod object;
pub mod patch;
pub mod printer_columns;
pub mod protobuf;
pub mod resources;
pub mod router;
pub mod schemas;
pub mod selector;
pub mod snapshot_files;
pub mod status;
pub mod storage;
pub mod table;
pub mod watch;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;
use tokio::sync::watch as signal;

pub use auth::{Authenticator, User};
pub use router::is_api_path;

use router::Route;
use status::ApiError;

/// A response body: whole, or a watch stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body (kube-apiserver's 3 MiB); the store refuses objects above its own
/// request limit (1.5 MiB by default) with `413` too.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(error: &ApiError) -> Response<Body> {
    json_response(error.code, &error.to_status())
}

/// The API of one server.
pub struct KubeApi {
    source: datastore::Source,
    authenticator: Authenticator,
    definitions: crd::Registry,
}

impl KubeApi {
    pub fn new(source: datastore::Source, authenticator: Authenticator) -> Self {
        Self {
            source,
            authenticator,
            definitions: crd::Registry::default(),
        }
    }

    /// The user of a connection's client certificate chain, if it verifies.
    pub fn authenticate(
        &self,
        chain: Option<&[rustls::pki_types::CertificateDer<'static>]>,
    ) -> Option<User> {
        self.authenticator.authenticate(chain)
    }

    /// Answers one request of `user` (`None`: not authenticated).
    pub async fn respond<B>(&self, request: Request<B>, user: Option<&User>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let Some(user) = user else {
            return error_response(&ApiError::unauthorized());
        };
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        match self.answer(request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(user = %user.name, %method, %path, %error, "API request refused");
                error_response(&error)
            }
        }
    }

    async fn answer<B>(&self, request: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let path = request.uri().path().to_string();
        let custom = if may_name_custom(&path) {
            self.custom_resources().await
        } else {
            Ok(crd::Served::default())
        };
        // What the CRDs serve is read from the store: when that read fails, so does every
        // request that depends on it (discovery included), rather than answer without them.
        let served = custom?;
        let extra = served.resources();
        let route = match router::route_in(&path, &extra) {
            Some(route) => route,
            // Until the member serves, the CRDs are unknown: not a 404.
            None if may_name_custom(&path) && self.source.now().is_none() => {
                return Err(ApiError::unavailable(
                    "the server is starting: the store does not serve yet",
                ));
            }
            None => return Err(ApiError::not_found_path()),
        };
        let is_get = request.method() == hyper::Method::GET;
        let document = match &route {
            Route::Resource(_) => None,
            _ if !is_get => return Err(ApiError::method_not_allowed()),
            Route::Version => Some(discovery::version()),
            Route::Health => {
                let mut response = Response::new(full("ok"));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                return Ok(response);
            }
            Route::CoreVersions => {
                let host = request
                    .headers()
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1:6443");
                Some(discovery::core_versions(host))
            }
            Route::GroupList => Some(discovery::group_list(&extra)),
            Route::Group(group) => discovery::group(group, &extra),
            Route::ResourceList { group, version } => {
                discovery::resource_list(group, version, &extra)
            }
            Route::OpenApiV2 => {
                // An empty protobuf `openapi_v2.Document`: no schemas.
                let mut response = Response::new(full(Bytes::new()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                    ),
                );
                return Ok(response);
            }
            Route::OpenApiV3Root => Some(discovery::openapi_v3_root(&served)),
            Route::OpenApiV3(name) => discovery::openapi_v3_document(name, &served),
        };
        if !matches!(route, Route::Resource(_)) {
            let document = document.ok_or_else(ApiError::not_found_path)?;
            return Ok(json_response(200, &document));
        }
        let Route::Resource(target) = route else {
            return Err(ApiError::not_found_path());
        };
        let store = self.source.now().ok_or_else(|| {
            ApiError::unavailable("the server is starting: the store does not serve yet")
        })?;
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|value: &HeaderValue| value.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (accept, content_type) = (header(ACCEPT), header(CONTENT_TYPE));
        let method = request.method().clone();
        let query = router::query(request.uri().query());
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(ApiError::too_large(MAX_BODY_BYTES));
            }
            Err(error) => {
                return Err(ApiError::bad_request(format!(
                    "reading the request: {error}"
                )))
            }
        };
        let call = api::Call {
            method: &method,
            target: &target,
            query: &query,
            accept: &accept,
            content_type: &content_type,
            body: &body,
        };
        match api::handle(&store, &call).await? {
            api::Answer::Json(code, value) => Ok(json_response(code, &value)),
            api::Answer::Watch(stream) => {
                let mut response = Response::new(stream.boxed());
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok(response)
            }
        }
    }
}

/// Whether `path` may name something only a CRD serves (anything under `/apis` outside the
/// built-in groups, the group list, OpenAPI v3): only those requests read the CRDs.
fn may_name_custom(path: &str) -> bool {
    if path.starts_with("/openapi/v3") {
        return true;
    }
    let Some(rest) = path.strip_prefix("/apis") else {
        return false;
    };
    match rest.trim_matches('/').split('/').next() {
        None | Some("") => true,
        Some(group) => !resources::groups().iter().any(|(g, _)| *g == group),
    }
}

impl KubeApi {
    /// The custom resources the store's CRDs serve now (none until the member serves).
    async fn custom_resources(&self) -> Result<crd::Served, ApiError> {
        let Some(store) = self.source.now() else {
            return Ok(crd::Served::default());
        };
        let definitions = self.definitions.load(&store).await?;
        Ok(crd::Served { definitions })
    }
}

/// Pause between attempts to create the default namespaces.
const DEFAULTS_RETRY: Duration = Duration::from_secs(2);

/// Once the store serves, creates the default namespaces (retrying while the cluster has no
/// leader), then returns; returns at once on `stop`.
pub async fn create_defaults(mut source: datastore::Source, mut stop: signal::Receiver<bool>) {
    let Some(store) = source.serving(&mut stop).await else {
        return;
    };
    loop {
        match api::create_default_namespaces(&store).await {
            Ok(()) => return,
            Err(error) => tracing::debug!(%error, "default namespaces not created yet"),
        }
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(DEFAULTS_RETRY) => {}
        }
    }
}
