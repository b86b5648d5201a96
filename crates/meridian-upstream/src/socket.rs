//! An upstream connection's socket: plain TCP inline, TLS boxed.
//!
//! hyper-rustls's `MaybeHttpsStream` keeps a TLS session inline (1,104 B),
//! and hyper keeps the socket inline in the connection's task for the
//! connection's life, so every plain-HTTP upstream connection (an
//! OpenAI-compatible server on `http://`, a local Bedrock stand-in, an
//! endpoint behind a TLS-terminating proxy) carried a TLS session's room it
//! never used: 1,744 B a connection where 672 do. Here the TLS case is
//! boxed (one more allocation per TLS connection, the same memory) and a
//! plain connection holds its socket alone (README, Performance: streams).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

type Tcp = TokioIo<TcpStream>;

/// A connected upstream socket.
#[derive(Debug)]
pub enum Socket {
    Plain(Tcp),
    Tls(Box<MaybeHttpsStream<Tcp>>),
}

impl From<MaybeHttpsStream<Tcp>> for Socket {
    fn from(s: MaybeHttpsStream<Tcp>) -> Socket {
        match s {
            MaybeHttpsStream::Http(tcp) => Socket::Plain(tcp),
            tls => Socket::Tls(Box::new(tls)),
        }
    }
}

impl Connection for Socket {
    fn connected(&self) -> Connected {
        match self {
            Socket::Plain(s) => s.connected(),
            // Says whether ALPN chose HTTP/2.
            Socket::Tls(s) => s.connected(),
        }
    }
}

impl Read for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl Write for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Socket::Plain(s) => s.is_write_vectored(),
            Socket::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// hyper-rustls's connector (HTTPS or HTTP, by the URI's scheme) handing
/// out [`Socket`]s.
#[derive(Clone, Debug)]
pub struct Connector(pub Https);

type Https = HttpsConnector<HttpConnector>;
type ConnectError = <Https as Service<Uri>>::Error;

impl Service<Uri> for Connector {
    type Response = Socket;
    type Error = ConnectError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        Connecting(self.0.call(uri))
    }
}

/// A connection being made.
pub struct Connecting(<Https as Service<Uri>>::Future);

impl Future for Connecting {
    type Output = Result<Socket, ConnectError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.0.as_mut().poll(cx)).map(Socket::from))
    }
}

impl std::fmt::Debug for Connecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connecting")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_socket_holds_no_room_for_tls() {
        // The TLS session hyper-rustls keeps inline, and what is left here.
        let tls = std::mem::size_of::<MaybeHttpsStream<Tcp>>();
        let here = std::mem::size_of::<Socket>();
        assert!(tls > 512, "MaybeHttpsStream is {tls} B");
        assert!(here <= 48, "Socket is {here} B");
        let conn = std::mem::size_of::<
            hyper::client::conn::http1::Connection<Socket, http_body_util::Full<bytes::Bytes>>,
        >();
        assert!(
            conn <= 768,
            "an HTTP/1 connection over a Socket is {conn} B"
        );
    }
}
