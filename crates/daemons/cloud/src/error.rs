//! The API's refusals: a status and a sentence that tells the user what to do, as JSON
//! `{"error": "..."}` (and `retry_after` seconds with a `Retry-After` header when throttled).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A body axum could not read as the request's JSON: its own status (400, 413, 415, 422).
    #[error("{message}")]
    Body { status: StatusCode, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but about something this service does not know (an unknown customer, plan).
    #[error("{0}")]
    Unprocessable(String),
    /// A mailed link that was used already or has expired.
    #[error("{0}")]
    Gone(String),
    /// The plan's monthly limit is reached (402): which limit, the use, when it resets.
    #[error("{0}")]
    OverQuota(String),
    #[error("{message}")]
    Throttled { message: String, retry_after: i64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Body { status, .. } => *status,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::OverQuota(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            // The detail goes to the log, not to the client.
            tracing::error!("{detail}");
            let body = serde_json::json!({"error": "internal error; it was logged, try again later"});
            return (status, Json(body)).into_response();
        }
        let mut body = serde_json::json!({"error": self.to_string()});
        let mut response_headers = Vec::new();
        if let ApiError::Throttled { retry_after, .. } = &self {
            body["retry_after"] = (*retry_after).into();
            response_headers.push((header::RETRY_AFTER, HeaderValue::from(*retry_after)));
        }
        let mut response = (status, Json(body)).into_response();
        for (k, v) in response_headers {
            response.headers_mut().insert(k, v);
        }
        response
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Connect(m) => {
                ApiError::Unavailable(format!("the database is unreachable ({m}); try again shortly"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        crate::db::DbError::Sql(e).into()
    }
}

/// `Json<T>` whose refusals are [`ApiError`]s: a malformed or oversized body gets the same
/// `{"error": ...}` shape as every other refusal.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => {
                let status = rejection.status();
                let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    format!("the request body is larger than {} bytes", crate::http::BODY_LIMIT)
                } else {
                    format!("the request body is not what this endpoint takes: {}", rejection.body_text())
                };
                Err(ApiError::Body { status, message })
            }
        }
    }
}
