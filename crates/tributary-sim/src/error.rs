//! Errors: [`SimError`] for starting the server, [`ParseNameError`] for service and fault names, and the JSON error
//! responses the endpoints send ([`ApiError`]).

use std::net::SocketAddr;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why the simulated services could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The listening socket could not be bound (address in use, no permission, ...).
    #[error("bind the simulated services to {address}")]
    Bind {
        /// The address we tried to listen on.
        address: SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The in-memory knowledge base could not be built.
    #[error("build the knowledge base")]
    KnowledgeBase(#[source] rusqlite::Error),
    /// Building the simulated data did not finish.
    #[error("build the simulated data: {0}")]
    Build(String),
    /// A start-up task could not be started.
    #[error("start a task of the simulated services")]
    Serve(#[source] tributary::group::SpawnError),
}

/// A service or fault name that is not one of the known names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse {what} {input:?}: expected one of {expected}")]
pub struct ParseNameError {
    what: &'static str,
    input: String,
    expected: &'static str,
}

impl ParseNameError {
    pub(crate) fn new(what: &'static str, input: &str, expected: &'static str) -> Self {
        ParseNameError {
            what,
            input: input.to_owned(),
            expected,
        }
    }
}

/// An error answer from an endpoint. Its body is `{"error": {"status": 404, "code": "unknown_city", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    /// A stable, machine-readable snake_case code.
    pub(crate) code: &'static str,
    /// A human-readable explanation.
    pub(crate) message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// 400: a required parameter is missing or a parameter does not parse.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    /// 400 for a required parameter that is missing or blank.
    pub(crate) fn missing_parameter(name: &str) -> Self {
        Self::bad_request(format!("missing required query parameter `{name}`"))
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code,
            message: message.into(),
        }
    }

    /// 500: an injected fault, or a real internal failure.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: message.into(),
        }
    }

    /// 503: an injected outage, or the server shutting down under a hanging request.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
        }
    }

    /// The JSON body as bytes.
    pub(crate) fn body(&self) -> Vec<u8> {
        let body = ErrorBody {
            error: ErrorDetail {
                status: self.status.as_u16(),
                code: self.code,
                message: &self.message,
            },
        };
        serde_json::to_vec(&body).expect("a struct of strings and numbers always serializes")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                status: self.status.as_u16(),
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}
