//! The RS256 JWTs signed with the Vonage application's private key: the short-lived
//! application token that authenticates our API calls, the video client token
//! (`scope: session.connect`) and the chat (Client SDK) token with its ACL. All are made
//! locally; none is ever logged.
//!
//! An RSA-2048 signature costs about a millisecond of CPU, the same order as a whole
//! booking, so the application token is signed once and reused for most of its life
//! (Vonage accepts one token for many calls until its `exp`), and join tokens are signed
//! only when a participant asks to join (see `sessions.rs`).

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{json, Value};

use super::{VideoRole, VonageError};

/// Lifetime of the application JWT sent with each API call.
pub(crate) const APP_TOKEN_TTL_S: i64 = 5 * 60;
/// A cached application JWT is replaced once it has less than this left, so a call that
/// is retried or slow never reaches Vonage with an expired token.
const APP_TOKEN_REFRESH_S: i64 = 60;
/// Longest a video client token may live (the Vonage server SDKs refuse more).
pub(crate) const MAX_VIDEO_TOKEN_TTL_S: i64 = 30 * 24 * 3600;

/// The Client SDK ACL: what a chat user may reach.
const CHAT_ACL_PATHS: [&str; 8] = [
    "/*/users/**",
    "/*/conversations/**",
    "/*/sessions/**",
    "/*/devices/**",
    "/*/image/**",
    "/*/media/**",
    "/*/knocking/**",
    "/*/legs/**",
];

#[derive(Serialize)]
struct AppClaims<'a> {
    application_id: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

#[derive(Serialize)]
struct VideoClaims<'a> {
    application_id: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    scope: &'static str,
    session_id: &'a str,
    role: &'static str,
    /// The server SDKs also set these two; the Video platform expects them.
    sub: &'static str,
    acl: Value,
}

#[derive(Serialize)]
struct ChatClaims<'a> {
    application_id: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    sub: &'a str,
    acl: Value,
}

/// Signs the three kinds of token with one parsed key.
pub(crate) struct TokenSigner {
    application_id: String,
    key: EncodingKey,
    /// The application JWT in use and its `exp` (Unix seconds).
    app_token: Mutex<Option<(String, i64)>>,
}

impl TokenSigner {
    /// Parses the PEM once (PKCS#8 or PKCS#1 RSA).
    pub(crate) fn new(application_id: &str, private_key_pem: &str) -> Result<Self, VonageError> {
        if application_id.trim().is_empty() {
            return Err(VonageError::Config("application_id is empty".into()));
        }
        let key = EncodingKey::from_rsa_pem(private_key_pem.as_bytes())
            .map_err(|e| VonageError::Config(format!("private key is not an RSA PEM key: {e}")))?;
        let signer = Self {
            application_id: application_id.to_owned(),
            key,
            app_token: Mutex::new(None),
        };
        // A key that parses but cannot sign (e.g. too short for ring) fails here, not on
        // the first call.
        signer.app_token(Utc::now())?;
        Ok(signer)
    }

    /// The application JWT for an API call: `exp` = `iat` + 5 minutes, signed afresh (new
    /// `iat`, new `jti`) only when the one in use has less than a minute left or was
    /// issued "in the future" (the clock went back).
    pub(crate) fn app_token(&self, now: DateTime<Utc>) -> Result<String, VonageError> {
        let now_s = now.timestamp();
        let mut cached = self.app_token.lock().expect("app token lock");
        if let Some((token, exp)) = cached.as_ref() {
            let iat = exp - APP_TOKEN_TTL_S;
            if iat <= now_s && now_s < exp - APP_TOKEN_REFRESH_S {
                return Ok(token.clone());
            }
        }
        let exp = now_s + APP_TOKEN_TTL_S;
        let token = self.sign(&AppClaims {
            application_id: &self.application_id,
            iat: now_s,
            exp,
            jti: new_jti(),
        })?;
        *cached = Some((token.clone(), exp));
        Ok(token)
    }

    pub(crate) fn video_token(
        &self,
        session_id: &str,
        role: VideoRole,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<String, VonageError> {
        if session_id.is_empty() {
            return Err(permanent("video token needs a session id"));
        }
        let (iat, exp) = lifetime(now, expires_at)?;
        if exp - iat > MAX_VIDEO_TOKEN_TTL_S {
            return Err(permanent("video token may live at most 30 days"));
        }
        self.sign(&VideoClaims {
            application_id: &self.application_id,
            iat,
            exp,
            jti: new_jti(),
            scope: "session.connect",
            session_id,
            role: role.as_str(),
            sub: "video",
            acl: json!({ "paths": { "/session/**": {} } }),
        })
    }

    pub(crate) fn chat_token(
        &self,
        user_name: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<String, VonageError> {
        if user_name.is_empty() {
            return Err(permanent("chat token needs a user name"));
        }
        let (iat, exp) = lifetime(now, expires_at)?;
        let paths: serde_json::Map<String, Value> = CHAT_ACL_PATHS
            .iter()
            .map(|p| ((*p).to_owned(), json!({})))
            .collect();
        self.sign(&ChatClaims {
            application_id: &self.application_id,
            iat,
            exp,
            jti: new_jti(),
            sub: user_name,
            acl: json!({ "paths": paths }),
        })
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, VonageError> {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &self.key)
            .map_err(|e| VonageError::Config(format!("cannot sign a token with the key: {e}")))
    }
}

fn lifetime(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> Result<(i64, i64), VonageError> {
    let (iat, exp) = (now.timestamp(), expires_at.timestamp());
    if exp <= iat {
        return Err(permanent("token expiry must be in the future"));
    }
    Ok((iat, exp))
}

fn new_jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn permanent(message: &str) -> VonageError {
    VonageError::Permanent {
        status: None,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    const PRIVATE_PEM: &str = include_str!("../../../config/dev/vonage-private.pem");
    const PUBLIC_PEM: &str = include_str!("../../../config/dev/vonage-public.pem");
    const APP_ID: &str = "0d3f1a2b-8c4e-4f6a-9b7d-1e2f3a4b5c6d";

    fn signer() -> TokenSigner {
        TokenSigner::new(APP_ID, PRIVATE_PEM).expect("dev key parses")
    }

    /// The claims, verified with the public key; `exp` is asserted by each test instead of
    /// against the wall clock.
    fn decode(token: &str) -> Value {
        let key = DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .expect("verifies with the public key")
            .claims
    }

    #[test]
    fn the_application_token_verifies_and_lives_five_minutes() {
        let now = Utc::now();
        let claims = decode(&signer().app_token(now).unwrap());
        assert_eq!(claims["application_id"], APP_ID);
        assert_eq!(claims["iat"], now.timestamp());
        assert_eq!(claims["exp"], now.timestamp() + 300);
        assert!(!claims["jti"].as_str().unwrap().is_empty());
    }

    #[test]
    fn the_application_token_is_reused_until_a_minute_before_it_expires() {
        let now = Utc::now();
        let s = signer();
        let first = s.app_token(now).unwrap();
        assert_eq!(s.app_token(now + Duration::seconds(1)).unwrap(), first);
        let late = now + Duration::seconds(APP_TOKEN_TTL_S - APP_TOKEN_REFRESH_S - 1);
        assert_eq!(s.app_token(late).unwrap(), first);
        // Less than a minute left: a new token, with its own jti and times.
        let renewal = now + Duration::seconds(APP_TOKEN_TTL_S - APP_TOKEN_REFRESH_S);
        let renewed = s.app_token(renewal).unwrap();
        assert_ne!(renewed, first);
        let (a, b) = (decode(&first), decode(&renewed));
        assert_ne!(a["jti"], b["jti"]);
        assert_eq!(b["iat"], renewal.timestamp());
        // A clock that went back never gets a token issued after its "now".
        let earlier = s.app_token(now).unwrap();
        assert_eq!(decode(&earlier)["iat"], now.timestamp());
    }

    #[test]
    fn the_video_token_carries_session_role_and_scope() {
        let now = Utc::now();
        let exp = now + Duration::hours(2);
        let token = signer()
            .video_token("1_MX4abc", VideoRole::Moderator, exp, now)
            .unwrap();
        let claims = decode(&token);
        assert_eq!(claims["application_id"], APP_ID);
        assert_eq!(claims["scope"], "session.connect");
        assert_eq!(claims["session_id"], "1_MX4abc");
        assert_eq!(claims["role"], "moderator");
        assert_eq!(claims["iat"], now.timestamp());
        assert_eq!(claims["exp"], exp.timestamp());
        assert!(claims["jti"].is_string());
    }

    #[test]
    fn the_chat_token_carries_sub_and_the_client_sdk_acl() {
        let now = Utc::now();
        let exp = now + Duration::hours(1);
        let claims = decode(&signer().chat_token("patient-67", exp, now).unwrap());
        assert_eq!(claims["sub"], "patient-67");
        assert_eq!(claims["exp"], exp.timestamp());
        let paths = claims["acl"]["paths"].as_object().unwrap();
        assert_eq!(paths.len(), 8);
        for p in CHAT_ACL_PATHS {
            assert_eq!(paths[p], json!({}), "{p}");
        }
    }

    #[test]
    fn a_token_expiring_in_the_past_is_refused() {
        let now = Utc::now();
        let err = signer()
            .chat_token("u", now - Duration::seconds(1), now)
            .unwrap_err();
        assert!(matches!(err, VonageError::Permanent { status: None, .. }));
        let err = signer()
            .video_token("s", VideoRole::Publisher, now + Duration::days(31), now)
            .unwrap_err();
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_key_that_is_not_pem_is_a_config_error() {
        let err = TokenSigner::new(APP_ID, "not a key").err().unwrap();
        assert!(matches!(err, VonageError::Config(_)));
        let err = TokenSigner::new(" ", PRIVATE_PEM).err().unwrap();
        assert!(matches!(err, VonageError::Config(_)));
    }
}
