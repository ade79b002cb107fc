//! The HTTP server loop: hyper's connection builder (HTTP/1.1 and HTTP/2) with two bounds
//! `axum::serve` does not set. A client must send a request's head within
//! `server.header_read_timeout_ms` of the connection asking for one (a first request, or
//! the next on a kept-alive connection), so a client trickling its headers, or an idle
//! connection, is closed instead of pinning a connection slot. And at most
//! `server.max_connections` connections are open: past it, a new connection is answered
//! 503 with `Retry-After` and closed at once, so the service stays responsive for the
//! connections it has. Shutdown is graceful: idle connections close, requests in flight
//! finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How the server treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most; past it, 503 and close.
    pub max_connections: usize,
    /// Time a connection gets to send a complete request head.
    pub header_read_timeout: Duration,
}

/// The error body a connection past the limit gets (the API's error shape).
const REFUSAL_BODY: &str = r#"{"success":false,"message":"Too many open connections; please retry.","error":"unavailable"}"#;

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits
/// for the open connections to finish (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: wait
                    // a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let service = TowerToHyperService::new(app.clone().map_request(
            |req: axum::http::Request<hyper::body::Incoming>| req.map(axum::body::Body::new),
        ));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A connection error (reset, timeout, malformed head) ends only this connection.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Tells a connection past the limit to come back later, and closes it; a client that
/// does not read within a second is simply dropped.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL_BODY}",
            REFUSAL_BODY.len()
        );
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        Ok::<(), std::io::Error>(())
    })
    .await;
}
