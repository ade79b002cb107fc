//! The real Vonage client against the fake Vonage over real HTTP on 127.0.0.1: each
//! call's happy path with the real id formats, the tokens, authentication, transient and
//! permanent failures, idempotent re-creation, and the fake's fault injection.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use chrono::Utc;
use consult_scheduler::engine::vonage::{VideoRole, VonageClient, VonageConfig, VonageError};
use consult_scheduler::fake_vonage::{FakeCounts, FakeFaults, FakeVonage};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PRIVATE_PEM: &str = include_str!("../../config/dev/vonage-private.pem");
const PUBLIC_PEM: &str = include_str!("../../config/dev/vonage-public.pem");
const APP_ID: &str = "c0ffee00-1234-4abc-9def-0123456789ab";
/// A throwaway key made for this test only: not the application's, so Vonage (and the
/// fake) must refuse what it signs.
const OTHER_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC0coN1g+nZz96R
TZag7iO3cFP47YHD70i0NufsJ0LI0C9ffWC1/zhiQnwrJgN8/HMD3U9zRekOr65x
VXYP4nmMDrrzyVFNU4bbGeMniGLaZpqP4kONR+H+SrzCnFqKEDN2MEnXKJaJz00P
+c1XXKQZVhGHFPEmdztLE+vXT6R16BZ17BO8EGUkN5D5/muIZSGDcEdzHUmeuAEt
3m/CCddBtjWLte80ZSFAhC42CYX7WvhyWHeIh14jnnQdQpl0CkDq6aB3vt+hvqaW
EkIjxfYd5loStE7O0gBDDlMmlS31cnQwvkxdhCBRW8Yw/Ax3CRGL7evuLLB7wVHq
tHpsQErHAgMBAAECggEAQx931C56PkorThyxA/MhuRphOi9LPpHTlyn3cqqWFrIO
dTRj1b92/2Ig40IUORmFRTI9XDFsxMhIGSODs9v4f8d49rdz9VI1T2pdS7bZoslZ
BF3T6AmNwPSXK8NSkJn/Mp860HzqJqBE18UCA9XTuxL/mSKKo9blaQOjjqezEyJe
E9nu+CxFr0KdZy66wogu3QYnq3UBmk76twMdxsEa9U8eVjMg5mOwO7VNPa7VAb+q
5chpu6I8928vF91w9ffU2FWCfPDcLTzFGUK6fIwzg1UcfVcaexMA7CxIo4Ypt4G4
J0WLOHvlX1kEUc5EOSKQLx5gep1B6YcVTauYom00fQKBgQDs5H6cJcvYZoIOrxwp
EP6330KlZHBo5ohLK0j1BKCg7cGjjGRLxGa5bs9uOHK02HxF9zpqtLNe7Cc1NMFT
Y7ad4mrEmCJo/QmzvjoK2i1kopJSYw82frBfJkgljR8G5xqI6HjhOeiM0/rghQox
RvmAnUv8eGy/gdV78/L2Zq49zQKBgQDDAICeIUc5Se/d6pZ2r3c94EEtwG9yLUME
VRJMFx4UhqSlLe721jBqYJPrP/XVcNf68FEAReAJDJFBrhOk/TDSkzHsvRs3GGBj
/IgnP91hjfi4TyOjy/MRVIBGShoU/2gGqJ3E7D6zd9nR//JxpzVBnvs9l9l2vwgH
FHWO8U924wKBgFe3Z/ZTvH5dvqzHRGskYt0c62WookMFkdQbrAEl/IB6aSgxFPZF
PDBPirlqZ3b1blbN67CVRpHQadg2t5s0IeumahhvqNYtVAldV8qq7QIFfJ7LFVf9
YztoRnC5J5L7wgSN6Cylr6lt2MiIGrUSbdKk6/0JbmMfJTinpQB+FujFAoGBAISt
n9V30Q0yuGkmxy+D3b8VCWQGzg1CrJmTBHsPM6FFp1rYMQJz48dNZPeosiyCtgGA
Z6ym3nNpwJ+OwMD+oKx2CH8KgCzxggwl88G423kX7wYAmsBE8WJ2Oz0YCD0HNpFp
QseM8nCL+IHBAwW/fiXi9REIc6cu/VhL3Fzg5W9/AoGAI+FiCPmFny5o0GdtfW2s
sd5y5rDcPW1Sk7jyD5awe2VQtQPlnwAuMfJG+Azo1mUYCyRvnI1weXmtmUb5mVHh
XBH5o9mf5m1h4Y+LAMitzF0t2VC96RDdhFJdej8AYM73N3dAYoIHr+/JqWn24BUd
UzL6gdxJkmoFSqfv/bBfRaQ=
-----END PRIVATE KEY-----
";

async fn fake() -> FakeVonage {
    FakeVonage::start(
        "127.0.0.1:0".parse().unwrap(),
        PUBLIC_PEM,
        Some(APP_ID.to_owned()),
    )
    .await
    .expect("fake vonage starts")
}

fn client_with(fake: &FakeVonage, app_id: &str, key: &str, timeout: Duration) -> VonageClient {
    VonageClient::new(VonageConfig {
        application_id: app_id.to_owned(),
        private_key_pem: key.to_owned(),
        video_base_url: fake.base_url(),
        api_base_url: fake.base_url(),
        request_timeout: timeout,
    })
    .expect("client builds")
}

fn client(fake: &FakeVonage) -> VonageClient {
    client_with(fake, APP_ID, PRIVATE_PEM, Duration::from_secs(2))
}

/// `PREFIX-<uuid>`, the Conversations API id format.
fn has_id_format(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|uuid| uuid.len() == 36 && uuid::Uuid::parse_str(uuid).is_ok())
}

fn verify(token: &str) -> Value {
    let key = DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("token verifies with the application's public key")
        .claims
}

fn status_of(err: &VonageError) -> Option<u16> {
    match err {
        VonageError::Transient { status, .. } | VonageError::Permanent { status, .. } => *status,
        VonageError::Config(_) => None,
    }
}

#[tokio::test]
async fn creating_a_video_session_returns_a_real_looking_session_id() {
    let fake = fake().await;
    let id = client(&fake).create_video_session().await.unwrap();
    // `1_` + base64 of `1~{application id}~~{created ms}~{random}~~~` ('+' written '-'):
    // "1_MX4" when the id starts with a digit, "1_MX5" with a letter.
    assert!(id.starts_with("1_MX"), "{id}");
    let body = id[2..].replace('-', "+").replace('_', "/");
    let decoded = STANDARD_NO_PAD.decode(body.trim_end_matches('=')).unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    assert!(decoded.starts_with(&format!("1~{APP_ID}~~")), "{decoded}");
    assert_eq!(fake.video_sessions(), vec![id]);
    assert_eq!(fake.counts().video_sessions, 1);
    fake.stop().await;
}

#[tokio::test]
async fn a_conversation_user_and_member_are_created_with_real_id_formats() {
    let fake = fake().await;
    let vonage = client(&fake);
    let conversation = vonage
        .create_conversation("consultation-42", "Consultation #42", 7200)
        .await
        .unwrap();
    assert!(has_id_format(&conversation, "CON"), "{conversation}");
    let user = vonage.create_user("patient-67", "Asha Rao").await.unwrap();
    assert!(has_id_format(&user, "USR"), "{user}");
    let member = vonage
        .add_member(&conversation, "patient-67")
        .await
        .unwrap();
    assert!(has_id_format(&member, "MEM"), "{member}");

    assert_eq!(
        fake.conversations(),
        vec![(conversation.clone(), "consultation-42".to_owned())]
    );
    assert_eq!(fake.members(&conversation), vec!["patient-67".to_owned()]);
    assert_eq!(
        fake.counts(),
        FakeCounts {
            video_sessions: 0,
            conversations: 1,
            users: 1,
            members: 1,
            requests: 3,
            unauthorized: 0,
            most_at_once: 1,
        }
    );
    fake.stop().await;
}

#[tokio::test]
async fn the_video_token_verifies_with_the_public_key_and_carries_session_and_role() {
    let fake = fake().await;
    let vonage = client(&fake);
    let session = vonage.create_video_session().await.unwrap();
    let expires_at = Utc::now() + chrono::Duration::hours(1);
    let token = vonage
        .video_token(&session, VideoRole::Publisher, expires_at)
        .unwrap();
    let claims = verify(&token);
    assert_eq!(claims["application_id"], APP_ID);
    assert_eq!(claims["scope"], "session.connect");
    assert_eq!(claims["session_id"], session.as_str());
    assert_eq!(claims["role"], "publisher");
    assert_eq!(claims["exp"], expires_at.timestamp());
    assert!(claims["iat"].as_i64().unwrap() <= Utc::now().timestamp());
    assert!(!claims["jti"].as_str().unwrap().is_empty());
    let subscriber = verify(
        &vonage
            .video_token(&session, VideoRole::Subscriber, expires_at)
            .unwrap(),
    );
    assert_eq!(subscriber["role"], "subscriber");
    assert_ne!(subscriber["jti"], claims["jti"]);
    fake.stop().await;
}

#[tokio::test]
async fn the_chat_token_verifies_with_the_public_key_and_carries_sub_and_acl() {
    let fake = fake().await;
    let expires_at = Utc::now() + chrono::Duration::minutes(30);
    let claims = verify(&client(&fake).chat_token("doctor-7", expires_at).unwrap());
    assert_eq!(claims["application_id"], APP_ID);
    assert_eq!(claims["sub"], "doctor-7");
    assert_eq!(claims["exp"], expires_at.timestamp());
    assert!(claims["jti"].is_string());
    let paths = claims["acl"]["paths"].as_object().unwrap();
    for path in [
        "/*/users/**",
        "/*/conversations/**",
        "/*/sessions/**",
        "/*/devices/**",
        "/*/image/**",
        "/*/media/**",
        "/*/knocking/**",
        "/*/legs/**",
    ] {
        assert_eq!(paths.get(path), Some(&json!({})), "{path}");
    }
    assert_eq!(paths.len(), 8);
    fake.stop().await;
}

#[tokio::test]
async fn a_client_with_another_private_key_gets_a_permanent_401_and_is_counted() {
    let fake = fake().await;
    let stranger = client_with(&fake, APP_ID, OTHER_PRIVATE_PEM, Duration::from_secs(2));
    let err = stranger.create_video_session().await.unwrap_err();
    assert!(
        matches!(
            err,
            VonageError::Permanent {
                status: Some(401),
                ..
            }
        ),
        "{err:?}"
    );
    let err = stranger.create_user("patient-1", "P").await.unwrap_err();
    assert!(
        matches!(
            err,
            VonageError::Permanent {
                status: Some(401),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("system:error:invalid-token"),
        "{err}"
    );
    assert!(!err.is_retryable());
    let counts = fake.counts();
    assert_eq!((counts.unauthorized, counts.requests), (2, 2));
    assert_eq!((counts.video_sessions, counts.users), (0, 0));
    fake.stop().await;
}

#[tokio::test]
async fn a_client_of_another_application_gets_a_permanent_401() {
    let fake = fake().await;
    let other_app = client_with(&fake, "another-app", PRIVATE_PEM, Duration::from_secs(2));
    let err = other_app
        .create_conversation("c", "C", 60)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(401));
    assert!(!err.is_retryable());
    assert_eq!(fake.counts().unauthorized, 1);
    fake.stop().await;
}

#[tokio::test]
async fn a_500_is_transient_with_status_500_and_the_next_call_succeeds() {
    let fake = fake().await;
    let vonage = client(&fake);
    fake.fail_next(1, 500, None);
    let err = vonage.create_video_session().await.unwrap_err();
    assert!(
        matches!(
            err,
            VonageError::Transient {
                status: Some(500),
                retry_after: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    vonage.create_video_session().await.unwrap();
    assert_eq!(fake.counts().video_sessions, 1);
    fake.stop().await;
}

#[tokio::test]
async fn a_429_with_retry_after_2_is_transient_with_a_2_s_delay() {
    let fake = fake().await;
    fake.fail_next(2, 429, Some(2));
    let vonage = client(&fake);
    for err in [
        vonage.create_user("u", "U").await.unwrap_err(),
        vonage.create_video_session().await.unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                VonageError::Transient {
                    status: Some(429),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    }
    assert_eq!(fake.counts().users, 0);
    fake.stop().await;
}

#[tokio::test]
async fn a_hanging_call_is_transient_within_the_request_timeout_and_the_fake_still_stops() {
    let fake = fake().await;
    let timeout = Duration::from_millis(300);
    let vonage = client_with(&fake, APP_ID, PRIVATE_PEM, timeout);
    fake.hang_next(1);
    let started = Instant::now();
    let err = vonage
        .create_conversation("hangs", "Hangs", 60)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, VonageError::Transient { status: None, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(elapsed >= timeout, "gave up after {elapsed:?}");
    assert!(elapsed < timeout * 4, "gave up only after {elapsed:?}");
    assert_eq!(fake.faults().hang_next, 0);
    tokio::time::timeout(Duration::from_secs(2), fake.stop())
        .await
        .expect("the fake stops although a call still hangs");
}

#[tokio::test]
async fn a_400_is_permanent() {
    let fake = fake().await;
    fake.fail_next(1, 400, None);
    let err = client(&fake).create_user("u", "U").await.unwrap_err();
    assert!(
        matches!(
            err,
            VonageError::Permanent {
                status: Some(400),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(err.retry_after(), None);
    fake.stop().await;
}

#[tokio::test]
async fn a_display_name_the_real_api_refuses_is_a_permanent_400() {
    let fake = fake().await;
    let err = client(&fake)
        .create_conversation("c-1", &"x".repeat(51), 60)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(400));
    assert!(
        err.to_string().contains("http:error:validation-fail"),
        "{err}"
    );
    assert_eq!(fake.counts().conversations, 0);
    fake.stop().await;
}

#[tokio::test]
async fn creating_the_same_conversation_name_twice_returns_the_same_id_and_the_fake_counts_one() {
    let fake = fake().await;
    let vonage = client(&fake);
    let first = vonage
        .create_conversation("consultation-9", "Consultation #9", 3600)
        .await
        .unwrap();
    vonage
        .create_conversation("consultation-10", "Consultation #10", 3600)
        .await
        .unwrap();
    let again = vonage
        .create_conversation("consultation-9", "Consultation #9", 3600)
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(fake.counts().conversations, 2);
    let named_9: Vec<_> = fake
        .conversations()
        .into_iter()
        .filter(|(_, name)| name == "consultation-9")
        .collect();
    assert_eq!(named_9, vec![(first, "consultation-9".to_owned())]);
    fake.stop().await;
}

#[tokio::test]
async fn an_existing_conversation_beyond_the_first_page_is_still_found() {
    let fake = fake().await;
    let vonage = client(&fake);
    let target = vonage
        .create_conversation("target", "Target", 60)
        .await
        .unwrap();
    for i in 0..100 {
        vonage
            .create_conversation(&format!("newer-{i}"), "Newer", 60)
            .await
            .unwrap();
    }
    let before = fake.counts().requests;
    let again = vonage
        .create_conversation("target", "Target", 60)
        .await
        .unwrap();
    assert_eq!(again, target);
    // The refused create, then two pages of 100 newest first.
    assert_eq!(fake.counts().requests - before, 3);
    assert_eq!(fake.counts().conversations, 101);
    fake.stop().await;
}

#[tokio::test]
async fn creating_the_same_user_twice_returns_the_same_id() {
    let fake = fake().await;
    let vonage = client(&fake);
    let first = vonage
        .create_user("doctor-3", "Dr. Meera Iyer")
        .await
        .unwrap();
    vonage.create_user("doctor-4", "Dr. Other").await.unwrap();
    let again = vonage
        .create_user("doctor-3", "Dr. Meera Iyer")
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(fake.counts().users, 2);
    fake.stop().await;
}

#[tokio::test]
async fn adding_the_same_member_twice_is_fine_and_the_fake_lists_it_once() {
    let fake = fake().await;
    let vonage = client(&fake);
    let conversation = vonage.create_conversation("c-5", "C5", 60).await.unwrap();
    vonage.create_user("patient-5", "P5").await.unwrap();
    vonage.create_user("doctor-5", "D5").await.unwrap();
    let first = vonage.add_member(&conversation, "patient-5").await.unwrap();
    vonage.add_member(&conversation, "doctor-5").await.unwrap();
    let again = vonage.add_member(&conversation, "patient-5").await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        fake.members(&conversation),
        vec!["patient-5".to_owned(), "doctor-5".to_owned()]
    );
    assert_eq!(fake.counts().members, 2);
    fake.stop().await;
}

#[tokio::test]
async fn adding_a_member_who_is_not_a_user_is_a_permanent_404() {
    let fake = fake().await;
    let vonage = client(&fake);
    let conversation = vonage.create_conversation("c-6", "C6", 60).await.unwrap();
    let err = vonage
        .add_member(&conversation, "nobody")
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(404));
    assert!(err.to_string().contains("user:error:not-found"), "{err}");
    let err = vonage
        .add_member("CON-00000000-0000-4000-8000-000000000000", "nobody")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("conversation:error:not-found"),
        "{err}"
    );
    fake.stop().await;
}

#[tokio::test]
async fn latency_applies_to_every_call() {
    let fake = fake().await;
    let vonage = client(&fake);
    let latency = Duration::from_millis(150);
    fake.set_latency(latency);
    for _ in 0..2 {
        let started = Instant::now();
        vonage.create_video_session().await.unwrap();
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
    }
    fake.clear_faults();
    assert_eq!(fake.faults(), FakeFaults::default());
    fake.stop().await;
}

#[derive(serde::Serialize)]
struct RawClaims {
    application_id: &'static str,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'static str>,
}

#[tokio::test]
async fn the_fake_refuses_missing_expired_and_incomplete_tokens_like_vonage() {
    let fake = fake().await;
    let http = reqwest::Client::new();
    let key = EncodingKey::from_rsa_pem(PRIVATE_PEM.as_bytes()).unwrap();
    let sign = |claims: &RawClaims| {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
    };
    let now = Utc::now().timestamp();
    let expired = sign(&RawClaims {
        application_id: APP_ID,
        iat: now - 600,
        exp: now - 300,
        jti: Some("j-1"),
    });
    let no_jti = sign(&RawClaims {
        application_id: APP_ID,
        iat: now,
        exp: now + 300,
        jti: None,
    });
    let url = format!("{}/v1/users", fake.base_url());
    let answer = |token: Option<String>| {
        let mut request = http.post(&url).json(&json!({"name": "u"}));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = answer(Some(expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "system:error:expired-token");
    let (status, body) = answer(Some(no_jti)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "system:error:invalid-token");
    assert!(body["instance"].is_string() && body["title"].is_string());
    let (status, _) = answer(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(fake.counts().unauthorized, 3);
    assert_eq!(fake.counts().users, 0);
    fake.stop().await;
}

#[tokio::test]
async fn a_token_the_fake_accepted_is_refused_once_expired_and_a_forged_twin_never_passes() {
    let fake = fake().await;
    let http = reqwest::Client::new();
    let key = EncodingKey::from_rsa_pem(PRIVATE_PEM.as_bytes()).unwrap();
    let now = Utc::now().timestamp();
    let exp = now + 2;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &RawClaims {
            application_id: APP_ID,
            iat: now,
            exp,
            jti: Some("j-2"),
        },
        &key,
    )
    .unwrap();
    let url = format!("{}/v1/users", fake.base_url());
    let answer = |token: String, name: &str| {
        let request = http
            .post(&url)
            .json(&json!({ "name": name }))
            .bearer_auth(token);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    // Accepted, and accepted again (the second time from what the fake keeps).
    for name in ["u1", "u2"] {
        let (status, body) = answer(token.clone(), name).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // The same token with its signature's last character changed is checked in full.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let (status, body) = answer(String::from_utf8(forged).unwrap(), "u3").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "system:error:invalid-token");
    // Once `exp` has passed, the kept token is refused as expired.
    while Utc::now().timestamp() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = answer(token, "u4").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "system:error:expired-token");
    assert_eq!(fake.counts().users, 2);
    fake.stop().await;
}

#[tokio::test]
async fn the_control_endpoints_report_counts_and_set_faults_without_a_token() {
    let fake = fake().await;
    let http = reqwest::Client::new();
    let base = fake.base_url();
    let response = http
        .post(format!("{base}/_fake/faults"))
        .json(&json!({"fail_next": 1, "status": 503, "retry_after_s": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fake.faults().fail_next, 1);
    let err = client(&fake).create_video_session().await.unwrap_err();
    assert_eq!(status_of(&err), Some(503));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));

    let stats: Value = http
        .get(format!("{base}/_fake/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["video_sessions"], 0);

    http.post(format!("{base}/_fake/faults"))
        .json(&json!({"hang_next": 3, "latency_ms": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!((fake.faults().hang_next, fake.faults().latency_ms), (3, 10));
    let response = http
        .post(format!("{base}/_fake/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(fake.faults(), FakeFaults::default());
    let response = http
        .post(format!("{base}/_fake/faults"))
        .json(&json!({"fail_next": 1, "status": 200}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    fake.stop().await;
}
