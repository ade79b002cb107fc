//! Extractors that turn every malformed input into the API's error shape: JSON bodies
//! (any content type, so `curl -d` works; field paths named in `errors`), query strings
//! and path segments.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;

/// A JSON body. Oversized bodies answer 413, malformed ones 400 naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.max_body_bytes;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(limit)
                } else {
                    ApiError::field("body", "could not be read")
                }
            })?;
        if bytes.is_empty() {
            return Err(ApiError::field("body", "a JSON object is required"));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let syntax = matches!(
                inner.classify(),
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof
            );
            let field = if syntax || path == "." || path == "?" || path.is_empty() {
                "body".to_owned()
            } else {
                path
            };
            ApiError::field(field, inner.to_string())
        })?;
        de.end()
            .map_err(|e| ApiError::field("body", e.to_string()))?;
        Ok(Self(value))
    }
}

/// A query string; unknown or ill-typed parameters answer 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| ApiError::field("query", strip_prefix(e.body_text())))
    }
}

/// Path parameters; a malformed id answers 400.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e: PathRejection| ApiError::field("path", strip_prefix(e.body_text())))
    }
}

/// axum's rejection texts start with a generic sentence; keep the specific part.
fn strip_prefix(text: String) -> String {
    match text.split_once(": ") {
        Some((_, rest)) if !rest.is_empty() => rest.to_owned(),
        _ => text,
    }
}
