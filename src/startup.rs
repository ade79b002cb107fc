//! Wiring: open the store, start the engine, seed demo data, bind the listener, serve
//! until a shutdown signal, then drain: stop accepting, finish in-flight requests, flush
//! the journal and write final snapshots.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use consult_actors::seal::Sealer;
use consult_actors::sessions::SessionConfig;
use consult_actors::vonage::{VonageClient, VonageConfig};
use consult_actors::Engine;
use tokio::net::{TcpListener, TcpSocket};

use crate::fake_vonage::FakeVonage;
use crate::http::auth::JwtKeys;
use crate::http::serve::ConnectionLimits;
use crate::http::{self, AppState, HttpLimits};
use crate::settings::{
    redact_url, Profile, SessionProvider, Settings, DEV_VONAGE_PRIVATE_KEY, DEV_VONAGE_PUBLIC_KEY,
};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the store at {url}: {source}")]
    Store {
        url: String,
        source: consult_actors::StoreError,
    },
    #[error("cannot start the engine: {0}")]
    Engine(#[from] consult_actors::EngineError),
    #[error("cannot set up sessions: {0}")]
    Sessions(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How often the rate limiter forgets idle users.
const RATE_LIMITER_CLEANUP: Duration = Duration::from_secs(60);

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    shutdown_grace: Duration,
    connection_limits: ConnectionLimits,
    /// The in-process fake Vonage server of the `fake` provider.
    fake_vonage: Option<FakeVonage>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let url = settings.database.url.clone();
        let store = consult_persistence::open_store(&url)
            .await
            .map_err(|source| StartupError::Store {
                url: redact_url(&url),
                source,
            })?;
        let addr = settings.server.bind;
        let listener = listen(addr).map_err(|source| StartupError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        let mut builder = Engine::builder(store)
            .settings(settings.engine.clone())
            .webhooks(settings.notifications.clone());
        if url.starts_with("postgres") {
            builder = builder.cluster(settings.cluster.settings(bound));
        }
        let (sessions, fake_vonage) = session_config(&settings).await?;
        if let Some(sessions) = sessions {
            builder = builder.sessions(sessions);
        }
        let engine = builder.start().await?;
        if settings.demo.seed {
            let added = crate::demo::seed_if_empty(&engine).await?;
            if added > 0 {
                tracing::info!(doctors = added, "seeded demo doctors on an empty store");
            }
        }
        let jwt = JwtKeys::new(settings.auth.jwt_secret.as_bytes(), settings.auth.leeway_s);
        let state = AppState::new(
            engine,
            jwt,
            HttpLimits {
                max_body_bytes: settings.server.max_body_bytes,
                max_concurrent_requests: settings.server.max_concurrent_requests,
                request_timeout: Duration::from_millis(settings.server.request_timeout_ms),
                rate_limit_per_s: settings.server.rate_limit_per_s,
                rate_limit_burst: settings.server.rate_limit_burst,
                dev_token_ttl_s: (settings.app.profile == Profile::Development)
                    .then_some(settings.auth.token_ttl_s),
            },
        );
        if let Some(limiter) = &state.rate_limiter {
            // Forget users whose buckets are full again, so the limiter's memory is bounded
            // by recent users; the task ends with the application.
            let weak = Arc::downgrade(limiter);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(RATE_LIMITER_CLEANUP);
                loop {
                    every.tick().await;
                    let Some(limiter) = weak.upgrade() else { break };
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            });
        }
        tracing::info!(
            addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            database = %redact_url(&url),
            profile = ?settings.app.profile,
            "consult-scheduler listening"
        );
        Ok(Self {
            listener,
            state,
            shutdown_grace: Duration::from_millis(settings.server.shutdown_grace_ms),
            connection_limits: ConnectionLimits {
                max_connections: settings.server.max_connections,
                header_read_timeout: Duration::from_millis(settings.server.header_read_timeout_ms),
            },
            fake_vonage,
        })
    }

    /// The bound address (port 0 in tests resolves here).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The engine behind the API, for embedding and tests.
    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    /// Serves until `shutdown` resolves, then drains and stops the engine. In-flight
    /// requests get `shutdown_grace_ms` to finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            listener,
            state,
            shutdown_grace,
            connection_limits,
            fake_vonage,
        } = self;
        let engine = state.engine.clone();
        let draining = state.draining.clone();
        let streams = state.clone();
        let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
        let leaving = engine.clone();
        let signal = async move {
            shutdown.await;
            draining.store(true, Ordering::Relaxed);
            streams.stop_streams();
            // Hand this instance's shards to the others while still answering: requests
            // for them are forwarded from here on, so a rolling restart answers no 5xx.
            leaving.leave_cluster().await;
            if leaving.cluster().is_some() {
                // Keep answering a moment after the handoff: the other instances' views
                // of the leases catch up (a stale one is told 421 and re-resolves), so no
                // forwarded request races the close of an idle pooled connection.
                tokio::time::sleep(LAME_DUCK).await;
            }
            tracing::info!("shutdown requested: finishing requests in flight");
            let _ = stopping_tx.send(true);
        };
        let app = http::router(state);
        let server = http::serve::serve(listener, app, connection_limits, signal);
        let mut stopping = stopping_rx;
        let result = tokio::select! {
            r = server => r,
            _ = async {
                let _ = stopping.wait_for(|s| *s).await;
                tokio::time::sleep(shutdown_grace).await;
            } => {
                tracing::warn!(grace_ms = shutdown_grace.as_millis() as u64, "requests still in flight after the grace period; stopping anyway");
                Ok(())
            }
        };
        engine.shutdown().await;
        engine.store().close().await;
        if let Some(fake) = fake_vonage {
            fake.stop().await;
        }
        tracing::info!("stopped: journal flushed, snapshots written, store closed");
        result
    }
}

/// How long a leaving cluster member keeps answering (forwarding) after its handoff.
const LAME_DUCK: Duration = Duration::from_secs(1);

/// The session worker's configuration for the settings' provider; with the `fake`
/// provider, also the fake Vonage server it talks to (on a free loopback port).
async fn session_config(
    settings: &Settings,
) -> Result<(Option<SessionConfig>, Option<FakeVonage>), StartupError> {
    let v = &settings.sessions;
    let sealer = Sealer::from_base64(&v.encryption_key)
        .map_err(|e| StartupError::Sessions(e.to_string()))?;
    let private_key_pem = if v.private_key_path.is_empty() {
        DEV_VONAGE_PRIVATE_KEY.to_owned()
    } else {
        std::fs::read_to_string(&v.private_key_path).map_err(|e| {
            StartupError::Sessions(format!(
                "cannot read sessions.private_key_path {}: {e}",
                v.private_key_path
            ))
        })?
    };
    let (video_base_url, api_base_url, fake) = match v.provider {
        SessionProvider::Off => {
            tracing::warn!("sessions.provider is off: in-app sessions stay pending");
            return Ok((None, None));
        }
        SessionProvider::Vonage => (v.video_base_url.clone(), v.api_base_url.clone(), None),
        SessionProvider::Fake => {
            let public_key = if v.private_key_path.is_empty() {
                DEV_VONAGE_PUBLIC_KEY.to_owned()
            } else {
                return Err(StartupError::Sessions(
                    "the fake provider uses the built-in development key; leave sessions.private_key_path empty".into(),
                ));
            };
            let fake = FakeVonage::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                &public_key,
                Some(v.application_id.clone()),
            )
            .await
            .map_err(|e| StartupError::Sessions(format!("fake Vonage server: {e}")))?;
            tracing::warn!(
                provider = "fake",
                url = %fake.base_url(),
                "sessions use the built-in fake Vonage server (set sessions.provider = vonage for real sessions)"
            );
            (fake.base_url(), fake.base_url(), Some(fake))
        }
    };
    let client = VonageClient::new(VonageConfig {
        application_id: v.application_id.clone(),
        private_key_pem,
        video_base_url,
        api_base_url,
        request_timeout: Duration::from_millis(v.request_timeout_ms),
    })
    .map_err(|e| StartupError::Sessions(e.to_string()))?;
    Ok((
        Some(SessionConfig {
            client,
            provider: v.provider.as_str().to_owned(),
            application_id: v.application_id.clone(),
            sealer,
            settings: v.worker.clone(),
        }),
        fake,
    ))
}

/// Pending connections the kernel queues before `accept`. tokio's `bind` uses 128, which
/// makes a burst of a few hundred new connections wait a full SYN retransmit (1 s).
pub const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
