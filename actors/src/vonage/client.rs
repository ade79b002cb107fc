//! The HTTP side of [`VonageClient`]: one request per call, each with a fresh
//! application JWT and the configured timeout; answers classified into transient
//! (429, 5xx, timeout, connection) and permanent (other 4xx, unparseable) failures; the
//! duplicate-name and already-a-member refusals turned into lookups of the existing id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use super::tokens::TokenSigner;
use super::{VideoRole, VonageConfig, VonageError};

/// Page size of the lookups by name (the API's maximum).
const LOOKUP_PAGE_SIZE: &str = "100";
/// Pages a lookup walks before giving up: the newest 1000 records.
const MAX_LOOKUP_PAGES: usize = 10;
/// Longest `Retry-After` honoured; larger values are clamped to it.
const MAX_RETRY_AFTER_S: u64 = 3600;
/// Largest answer body read; Vonage's answers here are a few KiB.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Characters of an error answer kept in an error message.
const MAX_ERROR_SUMMARY_CHARS: usize = 300;

const CONVERSATION_DUPLICATE_NAME: &str = "conversation:error:duplicate-name";
const USER_DUPLICATE_NAME: &str = "user:error:duplicate-name";
/// The codes with which the Conversations API refuses to add a user twice.
const MEMBER_ALREADY_JOINED: [&str; 2] = [
    "conversation:error:member-already-joined",
    "conversation:error:already-member",
];

/// Talks to the Vonage Video and Conversations APIs as one Vonage application. Cheap to
/// clone: one connection pool and one parsed key behind an `Arc`.
#[derive(Clone)]
pub struct VonageClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    signer: TokenSigner,
    application_id: String,
    video_base: Url,
    api_base: Url,
}

impl std::fmt::Debug for VonageClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageClient")
            .field("application_id", &self.inner.application_id)
            .field("video_base_url", &self.inner.video_base.as_str())
            .field("api_base_url", &self.inner.api_base.as_str())
            .finish_non_exhaustive()
    }
}

/// What a request carries.
enum Body<'a> {
    Empty,
    Json(&'a Value),
    Form(&'a [(&'a str, &'a str)]),
}

/// Any HTTP answer, before it is judged.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl Answer {
    /// The Vonage error code (`conversation:error:...`) of a refusal, if the body has one.
    fn error_code(&self) -> Option<String> {
        let body: ErrorBody = serde_json::from_slice(&self.body).ok()?;
        match body.code? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The error bodies of both APIs: Conversations `{title, code, detail}`, Video
/// `{code, message, description}`.
#[derive(Deserialize)]
struct ErrorBody {
    code: Option<Value>,
    title: Option<String>,
    detail: Option<String>,
    message: Option<String>,
}

impl VonageClient {
    /// Parses the key once and builds the HTTP client.
    pub fn new(config: VonageConfig) -> Result<Self, VonageError> {
        let signer = TokenSigner::new(&config.application_id, &config.private_key_pem)?;
        if config.request_timeout.is_zero() {
            return Err(VonageError::Config(
                "request_timeout must be positive".into(),
            ));
        }
        let video_base = parse_base("video_base_url", &config.video_base_url)?;
        let api_base = parse_base("api_base_url", &config.api_base_url)?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            // Vonage does not redirect these calls; never resend the bearer token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("consult-scheduler/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| VonageError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                signer,
                application_id: config.application_id,
                video_base,
                api_base,
            }),
        })
    }

    /// Video API `POST {video_base_url}/session/create`, form-urlencoded (`archiveMode=manual`, `p2p.preference=disabled` i.e. routed, `e2ee=false`), `Authorization: Bearer <application JWT>`. The 200 answer is a JSON array; returns the first element's `session_id`.
    pub async fn create_video_session(&self) -> Result<String, VonageError> {
        let url = endpoint(&self.inner.video_base, &["session", "create"]);
        let form = [
            ("archiveMode", "manual"),
            ("p2p.preference", "disabled"),
            ("e2ee", "false"),
        ];
        let answer = self.request(Method::POST, url, Body::Form(&form)).await?;
        answer
            .get(0)
            .and_then(|s| s.get("session_id"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| unparseable("POST /session/create", "no session_id in the answer"))
    }

    /// Conversations API v1 `POST {api_base_url}/v1/conversations` JSON `{name, display_name, properties: {ttl}}` -> `CON-...` id. `name` is unique per consultation: on 409 `conversation:error:duplicate-name` (which after a retry means our earlier call succeeded) the existing conversation is found by listing `GET /v1/conversations?order=desc&page_size=100` (the API has no lookup by name) and its id returned.
    pub async fn create_conversation(
        &self,
        name: &str,
        display_name: &str,
        ttl_s: u64,
    ) -> Result<String, VonageError> {
        let url = endpoint(&self.inner.api_base, &["v1", "conversations"]);
        let body = json!({
            "name": name,
            "display_name": display_name,
            "properties": { "ttl": ttl_s },
        });
        let answer = self.send(&Method::POST, url, Body::Json(&body)).await?;
        if answer.status == StatusCode::CONFLICT
            && answer.error_code().as_deref() == Some(CONVERSATION_DUPLICATE_NAME)
        {
            let list = endpoint(&self.inner.api_base, &["v1", "conversations"]);
            let found = self
                .find_in_pages(list, &[("order", "desc")], "conversations", |c| {
                    c["name"] == name
                })
                .await?;
            return match found {
                Some(id) => {
                    tracing::info!(conversation_id = %id, "conversation name already taken; reusing it");
                    Ok(id)
                }
                None => Err(VonageError::Permanent {
                    status: Some(409),
                    message: format!(
                        "conversation name {name:?} is taken but not among the newest {} conversations",
                        MAX_LOOKUP_PAGES * 100
                    ),
                }),
            };
        }
        let value = judge(&Method::POST, "/v1/conversations", answer)?;
        id_of(&value, "POST /v1/conversations")
    }

    /// `POST {api_base_url}/v1/users` `{name, display_name}` -> `USR-...` id; a 409 `user:error:duplicate-name` means the user exists: its id is looked up with `GET /v1/users?name=...` and returned.
    pub async fn create_user(&self, name: &str, display_name: &str) -> Result<String, VonageError> {
        let url = endpoint(&self.inner.api_base, &["v1", "users"]);
        let body = json!({ "name": name, "display_name": display_name });
        let answer = self.send(&Method::POST, url, Body::Json(&body)).await?;
        if answer.status == StatusCode::CONFLICT
            && answer.error_code().as_deref() == Some(USER_DUPLICATE_NAME)
        {
            let list = endpoint(&self.inner.api_base, &["v1", "users"]);
            let found = self
                .find_in_pages(list, &[("name", name)], "users", |u| u["name"] == name)
                .await?;
            return match found {
                Some(id) => {
                    tracing::info!(user_id = %id, "vonage user already existed; reusing it");
                    Ok(id)
                }
                None => Err(VonageError::Permanent {
                    status: Some(409),
                    message: format!(
                        "user name {name:?} is taken but GET /v1/users?name= does not find it"
                    ),
                }),
            };
        }
        let value = judge(&Method::POST, "/v1/users", answer)?;
        id_of(&value, "POST /v1/users")
    }

    /// `POST {api_base_url}/v1/conversations/{id}/members` `{state: "joined", user: {name}, channel: {type: "app"}}` -> `MEM-...`; the API's "already joined" refusal counts as success: the existing member's id is looked up in `GET /v1/conversations/{id}/members` and returned.
    pub async fn add_member(
        &self,
        conversation_id: &str,
        user_name: &str,
    ) -> Result<String, VonageError> {
        let members = endpoint(
            &self.inner.api_base,
            &["v1", "conversations", conversation_id, "members"],
        );
        let body = json!({
            "state": "joined",
            "user": { "name": user_name },
            "channel": { "type": "app" },
        });
        let answer = self
            .send(&Method::POST, members.clone(), Body::Json(&body))
            .await?;
        let already = matches!(
            answer.status,
            StatusCode::BAD_REQUEST | StatusCode::CONFLICT
        ) && answer
            .error_code()
            .is_some_and(|c| MEMBER_ALREADY_JOINED.contains(&c.as_str()));
        if already {
            let found = self
                .find_in_pages(members, &[], "members", |m| {
                    m["_embedded"]["user"]["name"] == user_name
                })
                .await?;
            return match found {
                Some(id) => {
                    tracing::info!(conversation_id, member_id = %id, "user already a member");
                    Ok(id)
                }
                None => Err(VonageError::Permanent {
                    status: Some(answer.status.as_u16()),
                    message: format!(
                        "{user_name:?} is said to be a member of {conversation_id} but is not listed"
                    ),
                }),
            };
        }
        let value = judge(&Method::POST, "/v1/conversations/{id}/members", answer)?;
        id_of(&value, "POST /v1/conversations/{id}/members")
    }

    /// Video client token made locally: RS256 JWT with `application_id`, `iat`, `exp` (= expires_at), `jti`, `scope: "session.connect"`, `session_id`, `role` (plus `sub: "video"` and `acl: {paths: {"/session/**": {}}}`, as the Vonage server SDKs send). `expires_at` must be in the future and at most 30 days away.
    pub fn video_token(
        &self,
        session_id: &str,
        role: VideoRole,
        expires_at: DateTime<Utc>,
    ) -> Result<String, VonageError> {
        self.inner
            .signer
            .video_token(session_id, role, expires_at, Utc::now())
    }

    /// Chat (Client SDK) token made locally: RS256 JWT with `application_id`, `iat`, `exp`, `jti`, `sub` = the Vonage user name, `acl: {paths: {"/*/users/**": {}, "/*/conversations/**": {}, "/*/sessions/**": {}, "/*/devices/**": {}, "/*/image/**": {}, "/*/media/**": {}, "/*/knocking/**": {}, "/*/legs/**": {}}}`. `expires_at` must be in the future.
    pub fn chat_token(
        &self,
        user_name: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<String, VonageError> {
        self.inner
            .signer
            .chat_token(user_name, expires_at, Utc::now())
    }

    /// Walks a HAL list (`_embedded.{key}`, `_links.next.href`) newest first and returns
    /// the `id` of the first item `matches` accepts.
    async fn find_in_pages(
        &self,
        list: Url,
        query: &[(&str, &str)],
        key: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Option<String>, VonageError> {
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LOOKUP_PAGES {
            let mut url = list.clone();
            {
                let mut pairs = url.query_pairs_mut();
                pairs.append_pair("page_size", LOOKUP_PAGE_SIZE);
                pairs.extend_pairs(query);
                if let Some(c) = &cursor {
                    pairs.append_pair("cursor", c);
                }
            }
            let page = self.request(Method::GET, url, Body::Empty).await?;
            let found = page["_embedded"][key]
                .as_array()
                .into_iter()
                .flatten()
                .find(|item| matches(item))
                .and_then(|item| item["id"].as_str());
            if let Some(id) = found {
                return Ok(Some(id.to_owned()));
            }
            let next = next_cursor(&page);
            if next.is_none() || next == cursor {
                break;
            }
            cursor = next;
        }
        Ok(None)
    }

    /// Sends and judges: the parsed JSON of a 2xx answer, or the error.
    async fn request(
        &self,
        method: Method,
        url: Url,
        body: Body<'_>,
    ) -> Result<Value, VonageError> {
        let path = url.path().to_owned();
        let answer = self.send(&method, url, body).await?;
        judge(&method, &path, answer)
    }

    /// One HTTP exchange with a fresh application JWT. `Err` only when there is no answer
    /// (timeout, connection) or it is too large; any status is `Ok`.
    async fn send(&self, method: &Method, url: Url, body: Body<'_>) -> Result<Answer, VonageError> {
        let token = self.inner.signer.app_token(Utc::now())?;
        let path = url.path().to_owned();
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json");
        request = match body {
            Body::Empty => request,
            Body::Json(v) => request.json(v),
            Body::Form(f) => request.form(f),
        };
        let started = Instant::now();
        let no_answer = |e: reqwest::Error| {
            let e = e.without_url();
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "failed"
            };
            let cause = error_chain(&e);
            tracing::debug!(%method, path, error = %cause, "vonage call got no answer");
            VonageError::Transient {
                status: None,
                retry_after: None,
                message: format!("{method} {path} {what}: {cause}"),
            }
        };
        let mut response = request.send().await.map_err(&no_answer)?;
        let status = response.status();
        let retry_after = retry_after_of(response.headers(), Utc::now());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(&no_answer)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(VonageError::Permanent {
                    status: Some(status.as_u16()),
                    message: format!("{method} {path} answered more than {MAX_ANSWER_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        tracing::debug!(
            %method,
            path,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "vonage call"
        );
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// 2xx: the JSON body. 429 and 5xx: transient. Anything else: permanent.
fn judge(method: &Method, path: &str, answer: Answer) -> Result<Value, VonageError> {
    let status = answer.status;
    if status.is_success() {
        return serde_json::from_slice(&answer.body).map_err(|e| VonageError::Permanent {
            status: Some(status.as_u16()),
            message: format!("{method} {path} answered {status} with a body that is not JSON: {e}"),
        });
    }
    let message = format!(
        "{method} {path} answered {status}: {}",
        summary(&answer.body)
    );
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(VonageError::Transient {
            status: Some(status.as_u16()),
            retry_after: answer.retry_after,
            message,
        })
    } else {
        Err(VonageError::Permanent {
            status: Some(status.as_u16()),
            message,
        })
    }
}

/// `code: detail` of a Vonage error body, or the start of whatever the body is.
fn summary(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => {
            let code = match e.code {
                Some(Value::String(s)) => Some(s),
                Some(other) => Some(other.to_string()),
                None => None,
            };
            let detail = e.detail.or(e.message).or(e.title);
            match (code, detail) {
                (Some(c), Some(d)) => format!("{c}: {d}"),
                (Some(c), None) => c,
                (None, Some(d)) => d,
                (None, None) => String::from_utf8_lossy(body).into_owned(),
            }
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars().take(MAX_ERROR_SUMMARY_CHARS).collect()
}

/// `error: cause: cause` of an error and its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn id_of(value: &Value, what: &str) -> Result<String, VonageError> {
    value["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| unparseable(what, "no id in the answer"))
}

fn unparseable(what: &str, why: &str) -> VonageError {
    VonageError::Permanent {
        status: None,
        message: format!("{what}: {why}"),
    }
}

/// The `cursor` query parameter of `_links.next.href`. The href's host may differ from
/// ours (regional hosts), so only the cursor is kept.
fn next_cursor(page: &Value) -> Option<String> {
    let href = page["_links"]["next"]["href"].as_str()?;
    let url = Url::parse(href).ok()?;
    let cursor = url
        .query_pairs()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned());
    cursor.filter(|c| !c.is_empty())
}

fn parse_base(field: &str, value: &str) -> Result<Url, VonageError> {
    let mut url = Url::parse(value)
        .map_err(|e| VonageError::Config(format!("{field} {value:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(VonageError::Config(format!(
            "{field} {value:?} must be an http(s) base URL"
        )));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// `base` + `/` + each segment, percent-encoded.
fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

fn retry_after_of(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 10.2.3); a date in the
/// past means "now". Clamped to [`MAX_RETRY_AFTER_S`].
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let secs = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<u64>().unwrap_or(u64::MAX)
    } else {
        let at = DateTime::parse_from_rfc2822(value)
            .ok()?
            .with_timezone(&Utc);
        u64::try_from((at - now).num_seconds()).unwrap_or(0)
    };
    Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER_S)))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const PRIVATE_PEM: &str = include_str!("../../../config/dev/vonage-private.pem");

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn config() -> VonageConfig {
        VonageConfig {
            application_id: "app-1".into(),
            private_key_pem: PRIVATE_PEM.into(),
            video_base_url: "http://127.0.0.1:9/".into(),
            api_base_url: "http://127.0.0.1:9".into(),
            request_timeout: Duration::from_millis(200),
        }
    }

    #[test]
    fn retry_after_in_seconds_is_read_as_is() {
        assert_eq!(parse_retry_after("2", now()), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 ", now()), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_as_an_http_date_is_the_time_until_then() {
        let v = "Sat, 01 Mar 2025 12:00:30 GMT";
        assert_eq!(parse_retry_after(v, now()), Some(Duration::from_secs(30)));
    }

    #[test]
    fn retry_after_in_the_past_means_now() {
        let v = "Sat, 01 Mar 2025 11:00:00 GMT";
        assert_eq!(parse_retry_after(v, now()), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_is_clamped_and_garbage_is_ignored() {
        let huge = "99999999999999999999999";
        assert_eq!(
            parse_retry_after(huge, now()),
            Some(Duration::from_secs(MAX_RETRY_AFTER_S))
        );
        assert_eq!(parse_retry_after("soon", now()), None);
        assert_eq!(parse_retry_after("-5", now()), None);
        assert_eq!(parse_retry_after("", now()), None);
    }

    #[test]
    fn endpoints_join_segments_onto_the_base_and_encode_them() {
        let base = parse_base("b", "http://h:1/prefix/").unwrap();
        assert_eq!(
            endpoint(&base, &["v1", "conversations", "CON-1/x", "members"]).as_str(),
            "http://h:1/prefix/v1/conversations/CON-1%2Fx/members"
        );
        let base = parse_base("b", "https://api.nexmo.com").unwrap();
        assert_eq!(
            endpoint(&base, &["v1", "users"]).as_str(),
            "https://api.nexmo.com/v1/users"
        );
    }

    #[test]
    fn the_next_cursor_comes_from_the_next_link() {
        let page = json!({"_links": {"next": {"href":
            "https://api-us-3.vonage.com/v1/users?order=desc&page_size=10&cursor=7Ej%3D"}}});
        assert_eq!(next_cursor(&page).as_deref(), Some("7Ej="));
        assert_eq!(next_cursor(&json!({"_links": {}})), None);
    }

    #[test]
    fn statuses_are_judged_transient_or_permanent() {
        let answer = |status: u16, body: &str| Answer {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: Some(Duration::from_secs(3)),
            body: body.as_bytes().to_vec(),
        };
        let err = judge(&Method::POST, "/x", answer(503, "")).unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
        let err = judge(&Method::POST, "/x", answer(429, "")).unwrap_err();
        assert!(matches!(
            err,
            VonageError::Transient {
                status: Some(429),
                ..
            }
        ));
        let body = r#"{"title":"Bad request.","code":"http:error:validation-fail","detail":"Input validation failure."}"#;
        let err = judge(&Method::POST, "/x", answer(400, body)).unwrap_err();
        assert!(matches!(
            err,
            VonageError::Permanent {
                status: Some(400),
                ..
            }
        ));
        assert!(
            err.to_string().contains("http:error:validation-fail"),
            "{err}"
        );
        let err = judge(&Method::POST, "/x", answer(200, "not json")).unwrap_err();
        assert!(matches!(
            err,
            VonageError::Permanent {
                status: Some(200),
                ..
            }
        ));
        assert_eq!(
            judge(&Method::GET, "/x", answer(200, "[1]")).unwrap(),
            json!([1])
        );
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let bad = |c: VonageConfig| matches!(VonageClient::new(c), Err(VonageError::Config(_)));
        assert!(bad(VonageConfig {
            request_timeout: Duration::ZERO,
            ..config()
        }));
        assert!(bad(VonageConfig {
            api_base_url: "not a url".into(),
            ..config()
        }));
        assert!(bad(VonageConfig {
            video_base_url: "mailto:x@y".into(),
            ..config()
        }));
        assert!(bad(VonageConfig {
            private_key_pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
                .into(),
            ..config()
        }));
        assert!(VonageClient::new(config()).is_ok());
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let text = format!("{:?}", config());
        assert!(text.contains("<redacted>"));
        assert!(!text.contains("PRIVATE KEY"));
        let client = VonageClient::new(config()).unwrap();
        assert!(!format!("{client:?}").contains("PRIVATE"));
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient_without_a_status() {
        let err = VonageClient::new(config())
            .unwrap()
            .create_video_session()
            .await
            .unwrap_err();
        assert!(
            matches!(err, VonageError::Transient { status: None, .. }),
            "{err:?}"
        );
    }
}
