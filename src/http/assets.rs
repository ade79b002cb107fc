//! The booking UI's static files: everything under `web/`, embedded into the binary at
//! build time (a debug build reads them from disk, so edits show without a rebuild).
//! Each answer carries a strong `ETag` (the file's SHA-256) and `Cache-Control: no-cache`,
//! so browsers revalidate and get `304 Not Modified` while nothing changed.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Web;

/// Security headers of every UI answer: no framing by other origins except an embedding
/// host the deployment allows (none by default), no MIME sniffing, no referrer leaks.
const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'",
    ),
];

/// `GET /`: the UI's page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// Every request no route matched: a `GET` or `HEAD` of a UI file serves it; anything
/// else is the API's 404.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method == Method::GET || method == Method::HEAD {
        serve(uri.path().trim_start_matches('/'), &headers)
    } else {
        ApiError::NotFound("No such route".into()).into_response()
    }
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    // rust-embed refuses `..` and absolute paths; an empty path is not a file.
    let Some(file) = Web::get(path).filter(|_| !path.is_empty()) else {
        return ApiError::NotFound("No such route".into()).into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let matches = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = file.data.into_owned().into_response();
        let mime = file.metadata.mimetype();
        let mime = match mime {
            // Explicit charsets: the files are UTF-8.
            "text/html" | "text/css" | "text/javascript" | "application/javascript" => {
                format!("{mime}; charset=utf-8")
            }
            other => other.to_owned(),
        };
        if let Ok(v) = HeaderValue::from_str(&mime) {
            r.headers_mut().insert(CONTENT_TYPE, v);
        }
        r
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}
