//! Serves an OCI image layout on 127.0.0.1, for the benchmark and for trying the
//! registry by hand (the daemon serves it for real):
//!
//! ```text
//! cargo run --release -p idp-registry --example serve -- <layout|bundle.tar|-> <port> [<writable dir>]
//! ```
//!
//! The layout is a directory or a bundle tar (served in place); `-` serves no layout
//! (only the local namespace). The writable directory defaults to
//! a temporary one. Stops on Ctrl-C or SIGTERM.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [layout, port, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: serve <layout|-> <port> [<writable dir>]");
    };
    let layout = (layout != "-").then(|| PathBuf::from(layout));
    let port: u16 = port.parse().context("the port is not a number")?;
    let temp = tempfile::tempdir()?;
    let writable = rest.first().map_or_else(|| temp.path().join("local"), PathBuf::from);
    let registry = tokio::task::spawn_blocking(move || idp_registry::Registry::open(layout, writable)).await??;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    eprintln!("serving on http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        stop.cancel();
    });
    idp_registry::serve(listener, Arc::new(registry), shutdown).await?;
    Ok(())
}
