//! Bearer-token auth: HS256 JWTs with the configured secret, roles patient / doctor /
//! admin. The extractors [`PatientAuth`], [`DoctorAuth`] and [`AdminAuth`] answer 401 for
//! a missing, malformed, expired or tampered token and 403 for the wrong role. Tokens are
//! never logged.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};

use super::error::ApiError;
use super::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Patient,
    Doctor,
    Admin,
}

/// The claims the API reads. `sub` may be a JSON string or number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    #[serde(
        deserialize_with = "sub_from_string_or_number",
        serialize_with = "sub_as_string"
    )]
    pub sub: i64,
    pub role: Role,
    pub exp: u64,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// RFC 7519 makes `sub` a string; minted tokens follow it.
fn sub_as_string<S: serde::Serializer>(sub: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(sub)
}

fn sub_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Sub {
        Number(i64),
        Text(String),
    }
    match Sub::deserialize(d)? {
        Sub::Number(n) => Ok(n),
        Sub::Text(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom("sub must be a numeric id")),
    }
}

/// The longest a token may still be valid for: one expiring further ahead (a token that
/// never really expires) is refused. `consult-scheduler token` mints at most 365 days.
pub const MAX_TOKEN_LIFETIME_S: u64 = 366 * 24 * 3600;

/// Most tokens [`JwtKeys`] keeps as verified (moka's policy picks which to drop).
pub const VERIFIED_TOKENS_KEPT: u64 = 10_000;

/// Longest token kept as verified; longer ones are verified on every request.
const MAX_KEPT_TOKEN_BYTES: usize = 2048;

/// Signs and verifies tokens with one HS256 secret. Clones share what they keep.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens that passed [`Self::verify`], with their claims. A token is immutable and
    /// the secret is fixed, so a kept token stays valid until its `exp` (plus the leeway),
    /// which is checked on every use; a client's next request with the same token skips
    /// the signature check and the decoding. Only tokens that passed are kept: anything
    /// else is checked in full every time.
    verified: moka::sync::Cache<Box<str>, Arc<Claims>>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(<redacted>)")
    }
}

impl JwtKeys {
    pub fn new(secret: &[u8], leeway_s: u64) -> Self {
        // Only HS256: a token declaring any other algorithm (`none` included) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway_s;
        // A token not valid yet (`nbf` ahead of now, past the leeway) is refused too.
        validation.validate_nbf = true;
        // `sub` is required by `Claims` itself (string or number).
        validation.set_required_spec_claims(&["exp"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: moka::sync::Cache::new(VERIFIED_TOKENS_KEPT),
        }
    }

    /// Mints a token for `sub` in `role`, valid for `ttl_s` seconds from `now_s`.
    pub fn mint(&self, role: Role, sub: i64, now_s: u64, ttl_s: u64) -> String {
        self.mint_named(role, sub, None, now_s, ttl_s)
    }

    /// Like [`Self::mint`], with the optional `name` claim.
    pub fn mint_named(
        &self,
        role: Role,
        sub: i64,
        name: Option<&str>,
        now_s: u64,
        ttl_s: u64,
    ) -> String {
        let claims = Claims {
            sub,
            role,
            exp: now_s + ttl_s,
            iat: Some(now_s),
            name: name.map(str::to_owned),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// The claims of a well-formed HS256 token signed with this secret, with a role, a
    /// positive numeric `sub`, and an `exp` ahead of now (within the leeway) and at most
    /// [`MAX_TOKEN_LIFETIME_S`] away; `nbf`, when present, not ahead of now. Anything else
    /// is 401.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        if let Some(kept) = self.verified.get(token) {
            if now_s() <= kept.exp.saturating_add(self.validation.leeway) {
                return Ok(Claims::clone(&kept));
            }
            self.verified.invalidate(token);
        }
        let claims = self.check(token)?;
        if token.len() <= MAX_KEPT_TOKEN_BYTES {
            self.verified.insert(token.into(), Arc::new(claims.clone()));
        }
        Ok(claims)
    }

    /// [`Self::verify`] without what is kept: the signature, the header and every claim.
    fn check(&self, token: &str) -> Result<Claims, ApiError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("Token has expired")
                }
                _ => ApiError::Unauthorized("Invalid token"),
            })?;
        let horizon = now_s() + MAX_TOKEN_LIFETIME_S + self.validation.leeway;
        if claims.sub <= 0 || claims.exp > horizon {
            return Err(ApiError::Unauthorized("Invalid token"));
        }
        Ok(claims)
    }
}

/// Seconds since the Unix epoch, for `iat`/`exp`.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Any authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: i64,
    pub role: Role,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let claims = state.jwt.verify(bearer_token(parts)?)?;
        if let Some(limiter) = &state.rate_limiter {
            if limiter.check_key(&(claims.role, claims.sub)).is_err() {
                return Err(ApiError::RateLimited);
            }
        }
        Ok(Self {
            id: claims.sub,
            role: claims.role,
        })
    }
}

/// The token of the request's `Authorization: Bearer ...` header (401 without one).
pub fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("Missing bearer token"))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("Invalid token"))?;
    Ok(header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or(ApiError::Unauthorized("Missing bearer token"))?
        .trim())
}

async fn require(parts: &mut Parts, state: &AppState, role: Role) -> Result<i64, ApiError> {
    let user = AuthUser::from_request_parts(parts, state).await?;
    if user.role != role {
        return Err(ApiError::Forbidden(match role {
            Role::Patient => "This endpoint is for patients",
            Role::Doctor => "This endpoint is for doctors",
            Role::Admin => "This endpoint is for admins",
        }));
    }
    Ok(user.id)
}

/// A patient; the id is the token's `sub`.
pub struct PatientAuth(pub i64);
/// A doctor; the id is the token's `sub` and the doctor's id.
pub struct DoctorAuth(pub i64);
/// An admin.
pub struct AdminAuth;

impl FromRequestParts<AppState> for PatientAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(parts, state, Role::Patient).await.map(Self)
    }
}

impl FromRequestParts<AppState> for DoctorAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(parts, state, Role::Doctor).await.map(Self)
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(parts, state, Role::Admin).await.map(|_| Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

    #[test]
    fn a_minted_token_verifies_with_its_role_and_sub() {
        let keys = JwtKeys::new(SECRET, 0);
        let token = keys.mint(Role::Doctor, 12, now_s(), 60);
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub, claims.role), (12, Role::Doctor));
    }

    #[test]
    fn expired_tampered_foreign_and_unsigned_tokens_are_refused() {
        let keys = JwtKeys::new(SECRET, 0);
        let expired = keys.mint(Role::Patient, 1, now_s() - 1000, 10);
        assert!(keys.verify(&expired).is_err());

        let good = keys.mint(Role::Patient, 1, now_s(), 60);
        let mut parts: Vec<&str> = good.split('.').collect();
        let admin_payload = base64_url(&format!(
            r#"{{"sub":1,"role":"admin","exp":{}}}"#,
            now_s() + 60
        ));
        parts[1] = &admin_payload;
        assert!(keys.verify(&parts.join(".")).is_err(), "tampered payload");

        let other = JwtKeys::new(b"another-secret-another-secret-another", 0);
        assert!(keys
            .verify(&other.mint(Role::Admin, 1, now_s(), 60))
            .is_err());

        let none_header = base64_url(r#"{"alg":"none","typ":"JWT"}"#);
        assert!(keys
            .verify(&format!("{none_header}.{admin_payload}."))
            .is_err());
    }

    #[test]
    fn sub_may_be_a_string_or_a_number() {
        let keys = JwtKeys::new(SECRET, 0);
        let header = Header::new(Algorithm::HS256);
        let exp = now_s() + 60;
        let key = EncodingKey::from_secret(SECRET);
        for claims in [
            serde_json::json!({"sub": "67", "role": "patient", "exp": exp}),
            serde_json::json!({"sub": 67, "role": "patient", "exp": exp}),
        ] {
            let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
            assert_eq!(keys.verify(&token).unwrap().sub, 67);
        }
        let bad = serde_json::json!({"sub": "abc", "role": "patient", "exp": exp});
        let token = jsonwebtoken::encode(&header, &bad, &key).unwrap();
        assert!(keys.verify(&token).is_err());
    }

    #[test]
    fn a_kept_token_is_answered_from_memory_until_it_expires() {
        let keys = JwtKeys::new(SECRET, 0);
        let token = keys.mint(Role::Patient, 7, now_s(), 2);
        assert_eq!(keys.verify(&token).unwrap().sub, 7);
        assert!(
            keys.verified.contains_key(token.as_str()),
            "kept after passing"
        );
        // A clone (each request's state) shares what is kept.
        assert_eq!(keys.clone().verify(&token).unwrap().sub, 7);
        while now_s() <= keys.verify(&token).map(|c| c.exp).unwrap_or(0) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let err = keys.verify(&token).unwrap_err();
        assert_eq!(err.to_string(), "Token has expired");
        assert!(
            !keys.verified.contains_key(token.as_str()),
            "dropped once expired"
        );
    }

    #[test]
    fn a_token_one_byte_off_a_kept_one_is_checked_in_full_and_refused() {
        let keys = JwtKeys::new(SECRET, 0);
        let token = keys.mint(Role::Patient, 7, now_s(), 60);
        keys.verify(&token).unwrap();
        let mut bytes = token.clone().into_bytes();
        for i in [bytes.len() - 1, bytes.len() / 2, 0] {
            let kept = bytes[i];
            bytes[i] = if kept == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(bytes.clone()).unwrap();
            assert!(keys.verify(&forged).is_err(), "byte {i} changed");
            assert!(!keys.verified.contains_key(forged.as_str()));
            bytes[i] = kept;
        }
        assert!(keys.verify(&format!("{token} ")).is_err(), "trailing space");
    }

    #[test]
    fn refused_tokens_are_never_kept() {
        let keys = JwtKeys::new(SECRET, 0);
        let expired = keys.mint(Role::Patient, 1, now_s() - 1000, 10);
        let foreign = JwtKeys::new(b"another-secret-another-secret-another", 0).mint(
            Role::Admin,
            1,
            now_s(),
            60,
        );
        for token in [expired, foreign, "not.a.token".to_owned()] {
            assert!(keys.verify(&token).is_err());
            assert!(!keys.verified.contains_key(token.as_str()));
        }
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{json, Value};

        use super::*;

        const LEEWAY: u64 = 30;
        const DAY: i64 = 24 * 3600;

        /// What a claim holds in a generated token: absent, or a JSON value, and whether
        /// that value is one the validator must accept.
        #[derive(Debug, Clone)]
        struct Claim {
            value: Option<Value>,
            ok: bool,
        }

        fn claim(value: Option<Value>, ok: bool) -> Claim {
            Claim { value, ok }
        }

        fn sub() -> impl Strategy<Value = Claim> {
            prop_oneof![
                12 => (1i64..i64::MAX).prop_map(|n| claim(Some(json!(n)), true)),
                12 => (1i64..1_000_000).prop_map(|n| claim(Some(json!(n.to_string())), true)),
                1 => Just(claim(None, false)),
                1 => (i64::MIN..=0).prop_map(|n| claim(Some(json!(n)), false)),
                1 => "[a-z ]{0,8}".prop_map(|t| claim(Some(json!(t)), false)),
                1 => Just(claim(Some(json!("9223372036854775808")), false)),
                1 => Just(claim(Some(json!(1.5)), false)),
                1 => Just(claim(Some(json!(true)), false)),
                1 => Just(claim(Some(Value::Null), false)),
                1 => Just(claim(Some(json!([1])), false)),
            ]
        }

        fn role() -> impl Strategy<Value = Claim> {
            prop_oneof![
                24 => prop::sample::select(vec!["patient", "doctor", "admin"])
                    .prop_map(|r| claim(Some(json!(r)), true)),
                1 => Just(claim(None, false)),
                1 => prop::sample::select(vec!["Admin", "root", "", "patient "])
                    .prop_map(|r| claim(Some(json!(r)), false)),
                1 => Just(claim(Some(json!(1)), false)),
                1 => Just(claim(Some(json!(["admin"])), false)),
            ]
        }

        /// `exp` relative to now: valid from just inside the leeway to the lifetime bound.
        fn exp(now: i64) -> impl Strategy<Value = Claim> {
            let max = (MAX_TOKEN_LIFETIME_S + LEEWAY) as i64;
            prop_oneof![
                36 => (-(LEEWAY as i64) + 2..max - 2)
                    .prop_map(move |d| claim(Some(json!(now + d)), true)),
                1 => Just(claim(None, false)),
                1 => (-400 * DAY..-(LEEWAY as i64) - 2)
                    .prop_map(move |d| claim(Some(json!(now + d)), false)),
                1 => (max + 2..100 * 365 * DAY).prop_map(move |d| claim(Some(json!(now + d)), false)),
                1 => Just(claim(Some(json!(u64::MAX)), false)),
                1 => Just(claim(Some(json!((now + 600).to_string())), false)),
                1 => Just(claim(Some(json!(-1)), false)),
            ]
        }

        /// `nbf` is optional; present, it must not be ahead of now past the leeway.
        fn nbf(now: i64) -> impl Strategy<Value = Claim> {
            prop_oneof![
                12 => Just(claim(None, true)),
                12 => (-400 * DAY..LEEWAY as i64 - 2)
                    .prop_map(move |d| claim(Some(json!(now + d)), true)),
                1 => (LEEWAY as i64 + 2..400 * DAY)
                    .prop_map(move |d| claim(Some(json!(now + d)), false)),
            ]
        }

        /// The header's `alg` and the algorithm the signature is really made with.
        fn alg() -> impl Strategy<Value = (Value, Option<Algorithm>, bool)> {
            prop_oneof![
                36 => Just((json!("HS256"), Some(Algorithm::HS256), true)),
                1 => Just((json!("HS384"), Some(Algorithm::HS384), false)),
                1 => Just((json!("HS512"), Some(Algorithm::HS512), false)),
                1 => Just((json!("none"), None, false)),
                1 => Just((json!("RS256"), Some(Algorithm::HS256), false)),
                1 => Just((json!("hs256"), Some(Algorithm::HS256), false)),
                1 => Just((Value::Null, Some(Algorithm::HS256), false)),
            ]
        }

        #[derive(Debug, Clone, Copy)]
        enum Damage {
            None,
            WrongSecret,
            FlipSignature,
            DropSignature,
            ExtraSegment,
            Whitespace,
        }

        fn damage() -> impl Strategy<Value = Damage> {
            prop_oneof![
                20 => Just(Damage::None),
                1 => Just(Damage::WrongSecret),
                1 => Just(Damage::FlipSignature),
                1 => Just(Damage::DropSignature),
                1 => Just(Damage::ExtraSegment),
                1 => Just(Damage::Whitespace),
            ]
        }

        fn token(
            header: &Value,
            claims: &Value,
            algorithm: Option<Algorithm>,
            damage: Damage,
        ) -> String {
            let message = format!(
                "{}.{}",
                base64_url(&header.to_string()),
                base64_url(&claims.to_string())
            );
            let secret: &[u8] = match damage {
                Damage::WrongSecret => b"another-secret-another-secret-another",
                _ => SECRET,
            };
            let signature = algorithm
                .map(|a| {
                    jsonwebtoken::crypto::sign(
                        message.as_bytes(),
                        &EncodingKey::from_secret(secret),
                        a,
                    )
                    .unwrap()
                })
                .unwrap_or_default();
            match damage {
                Damage::FlipSignature if !signature.is_empty() => {
                    let mut bytes = signature.into_bytes();
                    bytes[0] = if bytes[0] == b'A' { b'B' } else { b'A' };
                    format!("{message}.{}", String::from_utf8(bytes).unwrap())
                }
                Damage::DropSignature => format!("{message}."),
                Damage::ExtraSegment => format!("{message}.{signature}.x"),
                Damage::Whitespace => format!(" {message}.{signature}"),
                _ => format!("{message}.{signature}"),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Exactly the well-formed HS256 tokens with a valid signature, a role, a
            /// positive numeric `sub`, a current `exp` within the lifetime bound and no
            /// future `nbf` are accepted, with the claims they carry.
            #[test]
            fn only_well_formed_signed_current_tokens_are_accepted(
                (sub, role, exp, nbf) in {
                    let now = now_s() as i64;
                    (sub(), role(), exp(now), nbf(now))
                },
                (alg, algorithm, alg_ok) in alg(),
                typ in prop::option::of(Just("JWT")),
                damage in damage(),
            ) {
                let keys = JwtKeys::new(SECRET, LEEWAY);
                let mut header = json!({"alg": alg});
                if let Some(typ) = typ {
                    header["typ"] = json!(typ);
                }
                let mut claims = serde_json::Map::new();
                for (name, c) in [("sub", &sub), ("role", &role), ("exp", &exp), ("nbf", &nbf)] {
                    if let Some(v) = &c.value {
                        claims.insert(name.to_owned(), v.clone());
                    }
                }
                let claims = Value::Object(claims);
                // The intact token first, so a damaged one meets it kept (when it passed).
                let _ = keys.verify(&token(&header, &claims, algorithm, Damage::None));
                let token = token(&header, &claims, algorithm, damage);
                let expected = sub.ok && role.ok && exp.ok && nbf.ok && alg_ok
                    && matches!(damage, Damage::None);
                let first = keys.verify(&token);
                let again = keys.verify(&token);
                prop_assert_eq!(
                    first.as_ref().map(|c| (c.sub, c.role)).map_err(|e| e.to_string()),
                    again.as_ref().map(|c| (c.sub, c.role)).map_err(|e| e.to_string())
                );
                match first {
                    Ok(got) => {
                        prop_assert!(expected, "accepted {header} {claims} {damage:?}");
                        let want_sub = match &claims["sub"] {
                            Value::String(s) => s.parse::<i64>().unwrap(),
                            v => v.as_i64().unwrap(),
                        };
                        prop_assert_eq!(got.sub, want_sub);
                        prop_assert_eq!(json!(got.role), claims["role"].clone());
                    }
                    Err(e) => prop_assert!(
                        !expected && e.status() == axum::http::StatusCode::UNAUTHORIZED,
                        "refused {header} {claims} {damage:?}: {e}"
                    ),
                }
            }

            /// Arbitrary text, and arbitrary dot-separated base64 segments, never verify.
            #[test]
            fn arbitrary_text_is_refused(
                text in "\\PC{0,300}",
                segments in prop::collection::vec("[A-Za-z0-9_-]{0,60}", 1..5),
            ) {
                let keys = JwtKeys::new(SECRET, LEEWAY);
                prop_assert!(keys.verify(&text).is_err());
                prop_assert!(keys.verify(&segments.join(".")).is_err());
            }
        }
    }
}
