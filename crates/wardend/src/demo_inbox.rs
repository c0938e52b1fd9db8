//! The demo's webhook inbox: a local HTTP receiver the demo's on-call person is paged at.
//! It checks each page's signature (`X-Warden-Signature`, as a real receiver must), prints
//! the message (with its one-time acknowledgement link) to the demo's terminal, and lists
//! every page received at `GET /`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Inbox {
    secret: Arc<[u8]>,
    pages: Arc<Mutex<Vec<String>>>,
}

/// Starts the inbox on a free loopback port; it stops with `stop`. Returns its address.
pub async fn start(secret: Vec<u8>, stop: CancellationToken) -> anyhow::Result<SocketAddr> {
    let inbox = Inbox {
        secret: secret.into(),
        pages: Arc::default(),
    };
    let app = Router::new()
        .route("/", get(list).post(receive))
        .with_state(inbox);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::warn!(error = %e, "demo inbox stopped");
        }
    });
    Ok(addr)
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let Ok(timestamp) = header("x-warden-timestamp").parse::<i64>() else {
        return StatusCode::BAD_REQUEST;
    };
    if header("x-warden-signature")
        != warden_notify::webhook::signature(&inbox.secret, timestamp, &body)
    {
        tracing::warn!("demo inbox: a page with a wrong signature was refused");
        return StatusCode::UNAUTHORIZED;
    }
    let text = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["text"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    println!("\n  PAGE for Demo On-Call (webhook inbox): {text}\n");
    if let Ok(mut pages) = inbox.pages.lock() {
        pages.push(text);
    }
    StatusCode::NO_CONTENT
}

async fn list(State(inbox): State<Inbox>) -> String {
    let pages = inbox.pages.lock().map(|p| p.clone()).unwrap_or_default();
    if pages.is_empty() {
        return "No pages yet. Leave a life-critical alarm unanswered in the console for a \
                minute.\n"
            .into();
    }
    pages.iter().rev().fold(String::new(), |mut out, t| {
        out.push_str(t);
        out.push_str("\n\n");
        out
    })
}
