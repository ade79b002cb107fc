//! The RS256 JWTs signed with the Vonage application's private key: the short-lived
//! application token that authenticates our API calls, the video client token
//! (`scope: session.connect`) and the chat (Client SDK) token with its ACL. All are made
//! locally; none is ever logged.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{json, Value};

use super::{VideoRole, VonageError};

/// Lifetime of the application JWT sent with each API call.
pub(crate) const APP_TOKEN_TTL_S: i64 = 5 * 60;
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
        };
        // A key that parses but cannot sign (e.g. too short for ring) fails here, not on
        // the first call.
        signer.app_token(Utc::now())?;
        Ok(signer)
    }

    /// The application JWT for one API call: fresh `jti`, `exp` = `iat` + 5 minutes.
    pub(crate) fn app_token(&self, now: DateTime<Utc>) -> Result<String, VonageError> {
        let iat = now.timestamp();
        self.sign(&AppClaims {
            application_id: &self.application_id,
            iat,
            exp: iat + APP_TOKEN_TTL_S,
            jti: new_jti(),
        })
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

    fn decode(token: &str) -> Value {
        let key = DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
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
    fn each_application_token_has_a_fresh_jti() {
        let now = Utc::now();
        let s = signer();
        let a = decode(&s.app_token(now).unwrap());
        let b = decode(&s.app_token(now).unwrap());
        assert_ne!(a["jti"], b["jti"]);
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
