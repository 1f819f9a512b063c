//! The Open Inference Protocol REST server (axum on tokio).
//!
//! Endpoints (each `/v2/models/{m}/...` also as `/v2/models/{m}/versions/1/...`):
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/v2/health/live` | `{"live": true}` |
//! | GET | `/v2/health/ready` | `{"ready": true}` |
//! | GET | `/v2` | `{"name", "version", "extensions"}` |
//! | GET | `/v2/models/{m}` | model metadata |
//! | GET | `/v2/models/{m}/ready` | `{"name", "ready": true}` |
//! | POST | `/v2/models/{m}/infer` | inference |
//!
//! Every error is `{"error": "..."}`: 400 for a request that does not fit
//! the model or is not JSON, 404 for an unknown model, version or path, 405
//! for a wrong method, 413 for a body over the limit, 500 if the engine
//! fails. Inference (JSON parsing included) runs on tokio's blocking pool,
//! at most [`ServerOptions::parallel`] at a time, so the I/O threads never
//! wait on the engine.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;

use crate::model::{available_cores, InferError, Model, Models, VERSION};
use crate::protocol::{
    ErrorBody, InferRequest, InferResponse, Live, ModelReady, Ready, ServerMetadata,
};

/// The server's name in `GET /v2`.
pub const SERVER_NAME: &str = "cocoon-infer";

/// The default limit on a request body: 64 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 << 20;

/// How the server takes requests.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// Inferences run at once; more wait their turn.
    pub parallel: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            body_limit: DEFAULT_BODY_LIMIT,
            parallel: available_cores(),
        }
    }
}

struct AppState {
    models: Models,
    permits: Arc<Semaphore>,
    body_limit: usize,
}

/// An error answer: a status and one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(
            self.status,
            serde_json::to_vec(&ErrorBody {
                error: self.message,
            })
            .unwrap_or_default(),
        )
    }
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        match e {
            InferError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            InferError::Engine(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    json_response(StatusCode::OK, serde_json::to_vec(v).unwrap_or_default())
}

/// The router serving `models`.
pub fn router(models: Models, opts: &ServerOptions) -> Router {
    let state = Arc::new(AppState {
        models,
        permits: Arc::new(Semaphore::new(opts.parallel.max(1))),
        body_limit: opts.body_limit,
    });
    Router::new()
        .route(
            "/v2/health/live",
            get(|| async { json(&Live { live: true }) }),
        )
        .route(
            "/v2/health/ready",
            get(|| async { json(&Ready { ready: true }) }),
        )
        .route("/v2", get(server_metadata))
        .route("/v2/models/{m}", get(model_metadata))
        .route("/v2/models/{m}/ready", get(model_ready))
        .route("/v2/models/{m}/infer", post(infer))
        .route("/v2/models/{m}/versions/{v}", get(model_metadata_v))
        .route("/v2/models/{m}/versions/{v}/ready", get(model_ready_v))
        .route("/v2/models/{m}/versions/{v}/infer", post(infer_v))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(opts.body_limit))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no endpoint {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

async fn server_metadata() -> Response {
    json(&ServerMetadata {
        name: SERVER_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        extensions: Vec::new(),
    })
}

impl AppState {
    fn model(&self, name: &str, version: Option<&str>) -> Result<Arc<Model>, ApiError> {
        let model = self.models.get(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown model {name:?} (served: {})",
                    self.models.names().join(", ")
                ),
            )
        })?;
        if let Some(v) = version {
            if v != VERSION {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("model {name:?} has no version {v:?} (served: {VERSION})"),
                ));
            }
        }
        Ok(model.clone())
    }
}

async fn model_metadata(
    State(st): State<Arc<AppState>>,
    Path(m): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json(st.model(&m, None)?.metadata()))
}

async fn model_metadata_v(
    State(st): State<Arc<AppState>>,
    Path((m, v)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(json(st.model(&m, Some(&v))?.metadata()))
}

async fn model_ready(
    State(st): State<Arc<AppState>>,
    Path(m): Path<String>,
) -> Result<Response, ApiError> {
    let model = st.model(&m, None)?;
    Ok(json(&ModelReady {
        name: model.name().to_string(),
        ready: true,
    }))
}

async fn model_ready_v(
    State(st): State<Arc<AppState>>,
    Path((m, v)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let model = st.model(&m, Some(&v))?;
    Ok(json(&ModelReady {
        name: model.name().to_string(),
        ready: true,
    }))
}

async fn infer(
    State(st): State<Arc<AppState>>,
    Path(m): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run_infer(st, &m, None, body).await
}

async fn infer_v(
    State(st): State<Arc<AppState>>,
    Path((m, v)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run_infer(st, &m, Some(v), body).await
}

async fn run_infer(
    st: Arc<AppState>,
    name: &str,
    version: Option<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let model = st.model(name, version.as_deref())?;
    let body = body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                format!(
                    "request body is larger than the server's limit of {} bytes",
                    st.body_limit
                ),
            )
        } else {
            ApiError::new(
                status,
                format!("cannot read the request body: {}", r.body_text()),
            )
        }
    })?;
    // Wait for a turn here, in async code, so waiting costs no thread.
    let _permit =
        st.permits.clone().acquire_owned().await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down")
        })?;
    let task = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let req = InferRequest::from_json(&body)
            .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
        let id = req.id.clone();
        let outputs = model.infer(req)?;
        Ok(InferResponse {
            model_name: model.name().to_string(),
            model_version: version,
            id,
            outputs,
        }
        .to_json())
    });
    match task.await {
        Ok(Ok(body)) => Ok(json_response(StatusCode::OK, body)),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("inference on model {name:?} panicked: {e}"),
        )),
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The tokio runtime the server uses: one I/O thread per core.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(available_cores())
        .thread_name("cocoon-infer-io")
        .enable_all()
        .build()
}

/// Serves `models` on `addr` until SIGINT or SIGTERM; `on_listen` is called
/// with the bound address once the server accepts connections.
pub fn run(
    addr: SocketAddr,
    models: Models,
    opts: &ServerOptions,
    on_listen: impl FnOnce(SocketAddr),
) -> io::Result<()> {
    let rt = runtime()?;
    let app = router(models, opts);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        on_listen(listener.local_addr()?);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        serve(listener, app, async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await
    })
}
