//! The `consult-scheduler` binary. The HTTP front end is the next milestone; until then the
//! binary opens the configured store, starts the engine, and stops cleanly on Ctrl-C.

use consult_scheduler::engine::{Engine, EngineSettings};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("CONSULT__DATABASE__URL")
        .unwrap_or_else(|_| "sqlite://data/consult-scheduler.db".to_owned());
    let store = consult_scheduler::persistence::open_store(&url).await?;
    let engine = Engine::start(EngineSettings::default(), store).await?;
    println!("engine running on {url}; press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    engine.shutdown().await;
    Ok(())
}
