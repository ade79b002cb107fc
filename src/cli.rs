//! The command line: `serve` (the default), `token` and `fake-vonage`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::http::auth::{now_s, JwtKeys, Role};
use crate::settings::Settings;
use crate::startup::{shutdown_signal, Application};

#[derive(Debug, Parser)]
#[command(
    name = "consult-scheduler",
    version,
    about = "Telehealth consultation booking engine"
)]
pub struct Cli {
    /// A TOML settings file layered over the built-in defaults (environment wins over it).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the HTTP service (the default).
    Serve,
    /// Print a JWT signed with the configured secret, for local use.
    Token {
        #[arg(long, value_enum)]
        role: Role,
        /// The user's numeric id (patient id or doctor id).
        #[arg(long)]
        sub: i64,
        /// Lifetime in seconds; default `auth.token_ttl_s`.
        #[arg(long = "ttl-s")]
        ttl_s: Option<u64>,
    },
    /// Serve a fake Vonage (Video + Conversations API) for local runs and tests, until
    /// SIGINT/SIGTERM. Faults and counters at `/_fake/faults` and `/_fake/stats`.
    FakeVonage {
        /// Address to listen on; port 0 picks a free port (logged at start).
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: std::net::SocketAddr,
        /// PEM (SPKI) RSA public key of the Vonage application, to verify request JWTs.
        #[arg(long = "public-key", value_name = "PATH")]
        public_key: PathBuf,
        /// Require this `application_id` in request JWTs.
        #[arg(long = "application-id")]
        application_id: Option<String>,
    },
}

/// Runs the CLI; the process exit code follows the result.
pub async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_process(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            crate::telemetry::init(&settings.log);
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown_signal()).await?;
        }
        Command::Token { role, sub, ttl_s } => {
            let ttl_s = ttl_s.unwrap_or(settings.auth.token_ttl_s);
            if ttl_s == 0 || ttl_s > 365 * 24 * 3600 {
                return Err("--ttl-s must be 1..=31536000".into());
            }
            let keys = JwtKeys::new(settings.auth.jwt_secret.as_bytes(), settings.auth.leeway_s);
            println!("{}", keys.mint(role, sub, now_s(), ttl_s));
        }
        Command::FakeVonage {
            bind,
            public_key,
            application_id,
        } => {
            crate::telemetry::init(&settings.log);
            let pem = std::fs::read_to_string(&public_key)
                .map_err(|e| format!("cannot read {}: {e}", public_key.display()))?;
            let fake = crate::fake_vonage::FakeVonage::start(bind, &pem, application_id).await?;
            tracing::info!(base_url = %fake.base_url(), "fake vonage listening");
            shutdown_signal().await;
            fake.stop().await;
            tracing::info!("fake vonage stopped");
        }
    }
    Ok(())
}
