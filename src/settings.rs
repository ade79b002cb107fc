//! Layered settings: the defaults embedded from `config/default.toml`, then an optional
//! file (`--config PATH`), then `CONSULT__<SECTION>__<KEY>` environment overrides, into
//! typed, validated [`Settings`]. Loading takes the environment as input, so tests never
//! touch the process environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use consult_actors::notifier::WebhookSettings;
use consult_actors::sessions::SessionSettings;
use consult_actors::EngineSettings;
use serde::Deserialize;

/// The built-in defaults (SQLite file, dev secret, demo data on).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The dev secret of `config/default.toml`; refused by the production profile.
pub const DEV_JWT_SECRET: &str = "dev-only-secret-change-me-0123456789abcdef";

/// The development sealing key of `config/default.toml`; refused by the production profile.
pub const DEV_ENCRYPTION_KEY: &str = "2ab/rDfULqs2f2ecD60tMVkoj1A7Wn5bqZe9DCmZdcg=";

/// The development Vonage key pair (`config/dev/`), for the fake provider only.
pub const DEV_VONAGE_PRIVATE_KEY: &str = include_str!("../config/dev/vonage-private.pem");
pub const DEV_VONAGE_PUBLIC_KEY: &str = include_str!("../config/dev/vonage-public.pem");

/// Shortest JWT secret accepted, in bytes (HS256 wants at least its 32-byte output size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub app: AppSettings,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub demo: DemoSettings,
    pub log: LogSettings,
    pub sessions: SessionsSettings,
    pub notifications: WebhookSettings,
    #[serde(default)]
    pub engine: EngineSettings,
    #[serde(default)]
    pub cluster: ClusterConfig,
}

/// Several instances on one Postgres database (ignored on SQLite, which serves one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The URL other instances reach this one at; empty: `http://<server.bind>` (with
    /// `127.0.0.1` for an unspecified bind address, which only reaches instances on
    /// this host).
    pub advertise_url: String,
    /// Lease shards; every instance of one database must use the same count.
    pub shard_count: u32,
    /// How long a shard lease lasts without renewal (renewed every third of it). An
    /// instance that dies is replaced within about this long.
    pub lease_ttl_ms: u64,
    /// Consultation ids each instance reserves from the database at a time.
    pub id_block: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let d = consult_actors::cluster::ClusterSettings::default();
        Self {
            advertise_url: String::new(),
            shard_count: d.shard_count,
            lease_ttl_ms: d.lease_ttl.as_millis() as u64,
            id_block: d.id_block,
        }
    }
}

impl ClusterConfig {
    /// The engine's cluster settings for an instance listening on `bound`.
    pub fn settings(&self, bound: SocketAddr) -> consult_actors::cluster::ClusterSettings {
        let advertise_url = if self.advertise_url.is_empty() {
            let mut addr = bound;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        } else {
            self.advertise_url.trim_end_matches('/').to_owned()
        };
        consult_actors::cluster::ClusterSettings {
            advertise_url,
            shard_count: self.shard_count,
            lease_ttl: std::time::Duration::from_millis(self.lease_ttl_ms),
            id_block: self.id_block,
        }
    }
}

/// Who makes in-app sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionProvider {
    /// A fake Vonage server inside the process (local runs, tests).
    Fake,
    /// The real Vonage APIs.
    Vonage,
    /// No session worker: sessions stay pending in the outbox.
    Off,
}

impl SessionProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fake => "fake",
            Self::Vonage => "vonage",
            Self::Off => "off",
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsSettings {
    pub provider: SessionProvider,
    pub application_id: String,
    /// PEM file of the application's RSA private key; empty = the development key.
    pub private_key_path: String,
    pub video_base_url: String,
    pub api_base_url: String,
    /// Upper bound on one call to Vonage.
    pub request_timeout_ms: u64,
    /// Base64 of the 32-byte AES-256-GCM key sealing stored tokens. Never printed.
    pub encryption_key: String,
    pub worker: SessionSettings,
}

impl std::fmt::Debug for SessionsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsSettings")
            .field("provider", &self.provider)
            .field("application_id", &self.application_id)
            .field("private_key_path", &self.private_key_path)
            .field("video_base_url", &self.video_base_url)
            .field("api_base_url", &self.api_base_url)
            .field("encryption_key", &"<redacted>")
            .field("worker", &self.worker)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    pub profile: Profile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub bind: SocketAddr,
    /// Largest request body accepted; larger answers 413.
    pub max_body_bytes: usize,
    /// Upper bound on one request, engine call included.
    pub request_timeout_ms: u64,
    /// Requests handled at once; past it, 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Open connections at most; past it, a new connection gets 503 and is closed.
    pub max_connections: usize,
    /// Time a connection gets to send a whole request head (also the idle time of a
    /// kept-alive connection); past it, the connection is closed.
    pub header_read_timeout_ms: u64,
    /// On SIGINT/SIGTERM, how long in-flight requests may take before the server stops.
    pub shutdown_grace_ms: u64,
    /// Per-user (role + sub) sustained requests per second; past it, 429. 0 = no limit.
    pub rate_limit_per_s: u32,
    /// Requests a user may send at once above the sustained rate.
    pub rate_limit_burst: u32,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` (created if missing) or `postgres://...`.
    pub url: String,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret of bearer tokens. Never printed.
    pub jwt_secret: String,
    /// Lifetime of tokens minted by `consult-scheduler token` unless `--ttl-s` is given.
    pub token_ttl_s: u64,
    /// Clock skew tolerated on `exp`.
    pub leeway_s: u64,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &"<redacted>")
            .field("token_ttl_s", &self.token_ttl_s)
            .field("leeway_s", &self.leeway_s)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSettings {
    /// Seed a few demo doctors when the store has none.
    pub seed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON lines otherwise.
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// tracing filter directives (`info`, `consult_actors=debug,info`); `RUST_LOG` wins.
    pub level: String,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid setting {field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

impl Settings {
    /// Defaults, then `file` if given, then the `CONSULT__SECTION__KEY` entries of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("CONSULT__"))
            .collect();
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(invalid(
                    "--config",
                    format!("{} is not a file", path.display()),
                ));
            }
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("CONSULT")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("notifications.webhook_urls")
                .source(Some(env)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Defaults with the process environment, as the binary runs.
    pub fn from_process(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load(file, std::env::vars())
    }

    /// Refuses settings the service cannot run safely with.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let s = &self.server;
        if !(1024..=16 * 1024 * 1024).contains(&s.max_body_bytes) {
            return Err(invalid("server.max_body_bytes", "must be 1024..=16777216"));
        }
        if !(100..=300_000).contains(&s.request_timeout_ms) {
            return Err(invalid("server.request_timeout_ms", "must be 100..=300000"));
        }
        if !(1..=1_000_000).contains(&s.max_concurrent_requests) {
            return Err(invalid(
                "server.max_concurrent_requests",
                "must be 1..=1000000",
            ));
        }
        if !(1..=1_000_000).contains(&s.max_connections) {
            return Err(invalid("server.max_connections", "must be 1..=1000000"));
        }
        if !(100..=600_000).contains(&s.header_read_timeout_ms) {
            return Err(invalid(
                "server.header_read_timeout_ms",
                "must be 100..=600000",
            ));
        }
        if s.shutdown_grace_ms > 600_000 {
            return Err(invalid(
                "server.shutdown_grace_ms",
                "must be at most 600000",
            ));
        }
        if s.rate_limit_per_s > 1_000_000 {
            return Err(invalid(
                "server.rate_limit_per_s",
                "must be at most 1000000",
            ));
        }
        if s.rate_limit_per_s > 0 && !(1..=10_000_000).contains(&s.rate_limit_burst) {
            return Err(invalid("server.rate_limit_burst", "must be 1..=10000000"));
        }
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        let a = &self.auth;
        if a.jwt_secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(invalid(
                "auth.jwt_secret",
                format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
            ));
        }
        if self.app.profile == Profile::Production && a.jwt_secret == DEV_JWT_SECRET {
            return Err(invalid(
                "auth.jwt_secret",
                "the production profile refuses the built-in development secret; set CONSULT__AUTH__JWT_SECRET",
            ));
        }
        if !(1..=30 * 24 * 3600).contains(&a.token_ttl_s) {
            return Err(invalid("auth.token_ttl_s", "must be 1..=2592000"));
        }
        if a.leeway_s > 300 {
            return Err(invalid("auth.leeway_s", "must be at most 300"));
        }
        let v = &self.sessions;
        consult_actors::seal::Sealer::from_base64(&v.encryption_key)
            .map_err(|e| invalid("sessions.encryption_key", e.to_string()))?;
        if self.app.profile == Profile::Production {
            if v.encryption_key.trim() == DEV_ENCRYPTION_KEY {
                return Err(invalid(
                    "sessions.encryption_key",
                    "the production profile refuses the built-in development key; set CONSULT__SESSIONS__ENCRYPTION_KEY",
                ));
            }
            if v.provider == SessionProvider::Fake {
                return Err(invalid(
                    "sessions.provider",
                    "the production profile refuses the fake provider; use vonage (or off)",
                ));
            }
        }
        if v.provider == SessionProvider::Vonage && v.private_key_path.is_empty() {
            return Err(invalid(
                "sessions.private_key_path",
                "the vonage provider needs the application's private key file",
            ));
        }
        if v.application_id.is_empty() {
            return Err(invalid("sessions.application_id", "must not be empty"));
        }
        for (field, url) in [
            ("sessions.video_base_url", &v.video_base_url),
            ("sessions.api_base_url", &v.api_base_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(field, "must start with https:// or http://"));
            }
        }
        if !(100..=120_000).contains(&v.request_timeout_ms) {
            return Err(invalid(
                "sessions.request_timeout_ms",
                "must be 100..=120000",
            ));
        }
        v.worker
            .validate()
            .map_err(|e| invalid(&e.field, e.reason))?;
        self.notifications
            .validate()
            .map_err(|e| invalid(&e.field, e.reason))?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", e.to_string()))?;
        self.engine
            .validate()
            .map_err(|e| invalid(&e.field, e.reason))?;
        Ok(())
    }
}

/// The URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split(':').next().unwrap_or("");
    if userinfo.contains(':') {
        format!("{scheme}://{user}:***@{host}")
    } else {
        format!("{scheme}://{user}@{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_embedded_sqlite_dev_setup() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database.url, "sqlite://data/consult-scheduler.db");
        assert!(s.demo.seed);
        assert_eq!(s.app.profile, Profile::Development);
        assert_eq!(s.engine, EngineSettings::default());
    }

    #[test]
    fn environment_overrides_nested_keys_with_typed_values() {
        let s = Settings::load(
            None,
            env(&[
                ("CONSULT__SERVER__BIND", "0.0.0.0:9000"),
                ("CONSULT__DEMO__SEED", "false"),
                (
                    "CONSULT__DATABASE__URL",
                    "postgres://postgres@127.0.0.1/test",
                ),
                ("CONSULT__ENGINE__SHARDS", "4"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.bind.port(), 9000);
        assert!(!s.demo.seed);
        assert_eq!(s.engine.shards, 4);
        assert!(s.database.url.starts_with("postgres://"));
    }

    #[test]
    fn a_config_file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("cs-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "[server]\nbind = \"127.0.0.1:7000\"\n[demo]\nseed = false\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path), env(&[("CONSULT__DEMO__SEED", "true")])).unwrap();
        assert_eq!(s.server.bind.port(), 7000);
        assert!(s.demo.seed, "environment wins over the file");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn production_refuses_the_dev_secret_the_dev_sealing_key_and_the_fake_provider() {
        let secret = (
            "CONSULT__AUTH__JWT_SECRET",
            "a-real-production-secret-of-40-bytes-long!",
        );
        let key = (
            "CONSULT__SESSIONS__ENCRYPTION_KEY",
            "Q0hBTkdFLU1FLXRvLTMyLXJhbmRvbS1ieXRlcyEhISE=",
        );
        let production = ("CONSULT__APP__PROFILE", "production");
        let vonage = ("CONSULT__SESSIONS__PROVIDER", "vonage");
        let key_path = ("CONSULT__SESSIONS__PRIVATE_KEY_PATH", "/etc/vonage.pem");
        let refused =
            |pairs: &[(&str, &str)]| Settings::load(None, env(pairs)).unwrap_err().to_string();
        assert!(refused(&[production]).contains("auth.jwt_secret"));
        assert!(refused(&[production, secret]).contains("sessions.encryption_key"));
        assert!(refused(&[production, secret, key]).contains("sessions.provider"));
        assert!(refused(&[production, secret, key, vonage]).contains("sessions.private_key_path"));
        assert!(Settings::load(None, env(&[production, secret, key, vonage, key_path])).is_ok());
        assert!(Settings::load(
            None,
            env(&[
                production,
                secret,
                key,
                ("CONSULT__SESSIONS__PROVIDER", "off")
            ])
        )
        .is_ok());
    }

    #[test]
    fn webhook_urls_come_from_a_comma_separated_variable_and_need_a_secret() {
        let urls = (
            "CONSULT__NOTIFICATIONS__WEBHOOK_URLS",
            "http://a.example/h,https://b.example/h",
        );
        let err = Settings::load(None, env(&[urls])).unwrap_err().to_string();
        assert!(err.contains("notifications.webhook_secret"), "{err}");
        let s = Settings::load(
            None,
            env(&[
                urls,
                (
                    "CONSULT__NOTIFICATIONS__WEBHOOK_SECRET",
                    "sixteen-bytes-or-more",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.notifications.webhook_urls,
            vec!["http://a.example/h", "https://b.example/h"]
        );
        let bad = Settings::load(
            None,
            env(&[("CONSULT__NOTIFICATIONS__WEBHOOK_URLS", "ftp://x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("notifications.webhook_urls"), "{bad}");
    }

    #[test]
    fn bad_values_are_refused_with_the_key_named() {
        for (key, value, field) in [
            ("CONSULT__AUTH__JWT_SECRET", "short", "auth.jwt_secret"),
            ("CONSULT__DATABASE__URL", "mysql://x", "database.url"),
            (
                "CONSULT__SERVER__MAX_BODY_BYTES",
                "10",
                "server.max_body_bytes",
            ),
            ("CONSULT__ENGINE__SHARDS", "0", "engine.shards"),
            ("CONSULT__LOG__LEVEL", "[[", "log.level"),
        ] {
            let err = Settings::load(None, env(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{key}={value}: {err}");
        }
        let err = Settings::load(None, env(&[("CONSULT__SERVER__NOPE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn the_production_example_loads_and_documents_every_key() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let example = root.join("config/production.example.toml");
        let s = Settings::load(Some(&example), env(&[])).unwrap();
        assert_eq!(s.app.profile, Profile::Production);
        assert!(!s.demo.seed);
        let text = std::fs::read_to_string(&example).unwrap();
        let keys = |toml: &str| -> Vec<String> {
            let mut section = String::new();
            let mut keys = Vec::new();
            for line in toml.lines().map(str::trim) {
                if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    section = name.to_owned();
                } else if let Some((key, _)) = line.split_once('=') {
                    if !line.starts_with('#') {
                        keys.push(format!("{section}.{}", key.trim()));
                    }
                }
            }
            keys
        };
        let documented = keys(&text);
        for key in keys(DEFAULT_TOML) {
            assert!(
                documented.contains(&key),
                "{key} is not in the production example"
            );
        }
        let engine_keys = serde_json::to_value(EngineSettings::default()).unwrap();
        for key in engine_keys.as_object().unwrap().keys() {
            assert!(
                documented.contains(&format!("engine.{key}")),
                "engine.{key} undocumented"
            );
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = Settings::load(
            None,
            env(&[
                (
                    "CONSULT__AUTH__JWT_SECRET",
                    "super-secret-value-that-is-long-enough",
                ),
                (
                    "CONSULT__DATABASE__URL",
                    "postgres://app:hunter2@db/consult",
                ),
            ]),
        )
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("super-secret"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("postgres://app:***@db/consult"), "{debug}");
    }
}
