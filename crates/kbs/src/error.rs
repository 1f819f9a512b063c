//! Errors of the KBS, each with an HTTP status and an RFC 7807 problem body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Result with the KBS [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A KBS error. The variant decides the HTTP status; the text is the problem
/// `detail` (never a secret).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No valid session or token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Evidence or policy refused the request (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such resource (404).
    #[error("{0}")]
    NotFound(String),
    /// The body is larger than the configured limit (413).
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The client exceeded its rate limit (429).
    #[error("rate limit exceeded; retry later")]
    TooManyRequests,
    /// Too many sessions open (503).
    #[error("{0}")]
    Unavailable(String),
    /// Store failure.
    #[error("store: {0}")]
    Store(String),
    /// Configuration error (at start-up).
    #[error("config: {0}")]
    Config(String),
    /// Cryptographic or other internal failure.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<cocoon_kbs_protocol::Error> for Error {
    /// A malformed key or JWE is the client's mistake (400), one that does
    /// not open is refused (403), a crypto failure is ours (500).
    fn from(e: cocoon_kbs_protocol::Error) -> Self {
        use cocoon_kbs_protocol::Error as E;
        match e {
            E::Malformed(m) => Error::BadRequest(m),
            E::Unauthentic(m) => Error::Forbidden(m),
            E::Crypto(m) => Error::Internal(m),
        }
    }
}

impl Error {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Store(_) | Error::Config(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The problem document sent for this error. Internal details are
    /// logged, not sent.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            "internal error; see the KBS log".to_string()
        } else {
            self.to_string()
        };
        let kind = match self {
            Error::BadRequest(_) => "bad-request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not-found",
            Error::PayloadTooLarge(_) => "payload-too-large",
            Error::TooManyRequests => "too-many-requests",
            Error::Unavailable(_) => "unavailable",
            _ => "internal",
        };
        Problem {
            kind: format!("https://cocoon.invalid/kbs/problems/{kind}"),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            detail,
        }
    }
}

/// An RFC 7807 problem document (`application/problem+json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary (the HTTP reason phrase).
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_hides_internal_detail() {
        let p = Error::Internal("key bytes 1234".into()).problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("1234"));
        let p = Error::Forbidden("policy denied".into()).problem();
        assert_eq!(p.status, 403);
        assert_eq!(p.detail, "policy denied");
        assert_eq!(p.title, "Forbidden");
        assert!(p.kind.ends_with("/forbidden"));
    }
}
