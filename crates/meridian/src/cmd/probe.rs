//! `meridian probe`: the container health check. The runtime image has no
//! shell, curl or wget, so the binary asks its own listener.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GETs `path` from the gateway listening on `listen` (a wildcard address is
/// asked on loopback) and exits 0 on a 2xx answer, 1 otherwise.
pub async fn run(listen: &str, path: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let addr = loopback_for(listen)?;
    let answer = tokio::time::timeout(timeout, status_of(addr, path)).await;
    let outcome = match answer {
        Ok(Ok(status)) if (200..300).contains(&status) => return Ok(ExitCode::SUCCESS),
        Ok(Ok(status)) => format!("{path} answered {status}"),
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => format!("{path} did not answer within {} ms", timeout.as_millis()),
    };
    super::emit_err(&format!("meridian probe: http://{addr}{path}: {outcome}\n"))?;
    Ok(ExitCode::FAILURE)
}

/// The address to call for a listen address: `0.0.0.0` and `[::]` become
/// their loopback.
fn loopback_for(listen: &str) -> anyhow::Result<SocketAddr> {
    let mut addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("listen address '{listen}' is not IP:PORT"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(addr)
}

/// The status code of one HTTP/1.1 GET.
async fn status_of(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_status(&head).context("the answer is not HTTP")
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_asked_on_loopback() {
        assert_eq!(
            loopback_for("0.0.0.0:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(loopback_for("[::]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert_eq!(
            loopback_for("10.1.2.3:80").unwrap(),
            "10.1.2.3:80".parse().unwrap()
        );
        assert!(loopback_for("localhost:80").is_err());
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(
            parse_status(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"HTTP/1.0 200 OK\r\nx: y"), Some(200));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
