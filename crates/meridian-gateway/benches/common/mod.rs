#![allow(clippy::unwrap_used)] // bench helpers
//! What the benches share.

use std::sync::Arc;

use meridian_gateway::{AppState, ServeOptions};

/// Serves `state` on a free port of 127.0.0.1 until the process ends; its base URL.
pub async fn serve(state: Arc<AppState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(meridian_gateway::serve(
        listener,
        state,
        ServeOptions::default(),
        std::future::pending(),
    ));
    url
}
