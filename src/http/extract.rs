//! Extractors that turn every malformed input into the API's error shape: JSON bodies
//! (any content type, so `curl -d` works; field paths named in `errors`), query strings
//! and path segments.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use consult_actors::{has_control_chars, TextKind, CONTROL_CHARS_REASON};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;

/// What the extractors need of a router's state: the body limit its 413 names. The app's
/// state has it; so do the benches' peer servers, which use these extractors to answer
/// malformed input exactly as the app does.
pub trait BodyLimit {
    fn max_body_bytes(&self) -> usize;
}

impl BodyLimit for AppState {
    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
}

impl<T: BodyLimit> BodyLimit for std::sync::Arc<T> {
    fn max_body_bytes(&self) -> usize {
        T::max_body_bytes(self)
    }
}

/// A JSON body. Oversized bodies answer 413, malformed ones 400 naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: BodyLimit + Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = state.max_body_bytes();
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
        if let Some(field) = control_character_field(&bytes) {
            return Err(ApiError::field(field, CONTROL_CHARS_REASON));
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

/// The path (`items[0].reason`) of the first string of a JSON body that holds a control
/// character other than tab, line feed and carriage return: no field of the API takes one
/// (a NUL cannot even be stored in Postgres text). A cheap scan of the raw bytes first; the
/// body is parsed a second time only when it finds one.
fn control_character_field(body: &[u8]) -> Option<String> {
    if !may_hold_control_characters(body) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut path = String::new();
    find_control_characters(&value, &mut path).then_some(path)
}

/// Whether the raw JSON may hold a control character in a string: a `\u` escape of one
/// (C0 but tab, line feed and carriage return; DEL; C1), or DEL or a C1 character written
/// as is (raw C0 bytes are not valid JSON strings at all).
fn may_hold_control_characters(body: &[u8]) -> bool {
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\\' if body.get(i + 1) == Some(&b'u') => {
                let code = body
                    .get(i + 2..i + 6)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .and_then(char::from_u32);
                if code.is_some_and(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
                    return true;
                }
                i += 2;
            }
            // Any other escape: skip the escaped character (so `\\u0000` is text).
            b'\\' => i += 2,
            0x7f => return true,
            0xc2 if body.get(i + 1).is_some_and(|b| (0x80..=0x9f).contains(b)) => return true,
            _ => i += 1,
        }
    }
    false
}

/// Walks `value`, leaving in `path` the place of the first key or string with a control
/// character (as `serde_path_to_error` names fields); false if there is none.
fn find_control_characters(value: &serde_json::Value, path: &mut String) -> bool {
    let bad = |s: &str| has_control_chars(s, TextKind::Multiline);
    match value {
        serde_json::Value::String(s) => bad(s),
        serde_json::Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = find_control_characters(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        serde_json::Value::Object(fields) => fields.iter().any(|(key, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            let found = bad(key) || find_control_characters(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        _ => false,
    }
}

/// A query string; unknown or ill-typed parameters answer 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| ApiError::field("query", strip_prefix(e.body_text())))
    }
}

/// Path parameters; a malformed id answers 400.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_by_path_and_escapes_are_read_exactly() {
        let field = |body: &str| control_character_field(body.as_bytes());
        assert_eq!(
            field(r#"{"reason": "a\u0000b"}"#).as_deref(),
            Some("reason")
        );
        assert_eq!(
            field(r#"{"items": [{"x": 1}, {"patient_name": "A\u001b[31m"}]}"#).as_deref(),
            Some("items[1].patient_name")
        );
        assert_eq!(
            field("{\"reason\": \"del\u{7f}\"}").as_deref(),
            Some("reason")
        );
        assert_eq!(
            field("{\"reason\": \"c1\u{85}\"}").as_deref(),
            Some("reason")
        );
        assert_eq!(field(r#"{"a\u0007": 1}"#).as_deref(), Some("a\u{7}"));
        // Tab, line feed and carriage return are text; an escaped backslash before `u0000`
        // is a backslash and the letters u0000; other scripts are not control characters.
        for fine in [
            r#"{"reason": "a\tb\nc\r\n", "x": "\u0009\u000A\u000d"}"#,
            r#"{"reason": "C:\\u0000 is a path"}"#,
            r#"{"reason": "Müdigkeit, 头痛, é, \u00e9"}"#,
            r#"[1, 2, {"a": null}]"#,
        ] {
            assert_eq!(field(fine), None, "{fine}");
        }
        // Malformed JSON is left to the typed parse (which names the error).
        assert_eq!(field(r#"{"reason": "\u0000"#), None);
    }
}
