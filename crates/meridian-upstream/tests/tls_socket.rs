//! The upstream client's socket over real TLS (a local rustls server with a
//! certificate made here): HTTP/2 when ALPN chooses it, HTTP/1.1 when the
//! server offers only that — the boxed TLS case of `socket::Socket` says
//! what ALPN chose, as hyper-rustls's own stream does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meridian_upstream::socket::Connector;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A TLS server on 127.0.0.1 offering `alpn`, answering every request with
/// its HTTP version; its address and certificate.
async fn server(alpn: &[&[u8]]) -> (String, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = CertificateDer::from(made.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let version = format!("{:?}", req.version());
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(version),
                        )))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (format!("https://localhost:{}", addr.port()), cert)
}

/// The upstream client's connector, trusting `cert` only.
fn client(cert: CertificateDer<'static>) -> Client<Connector, Full<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(Connector(https))
}

async fn version_seen(alpn: &[&[u8]]) -> (http::Version, String) {
    let (url, cert) = server(alpn).await;
    // `localhost` resolves to 127.0.0.1 (and maybe ::1, where nothing
    // listens: the connector tries the next address).
    let client = client(cert);
    let req = http::Request::get(format!("{url}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("the TLS upstream answers");
    let version = resp.version();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (version, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn tls_with_alpn_h2_speaks_http2() {
    let (version, server_saw) = version_seen(&[b"h2", b"http/1.1"]).await;
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(server_saw, "HTTP/2.0");
}

#[tokio::test]
async fn tls_without_h2_speaks_http1() {
    let (version, server_saw) = version_seen(&[b"http/1.1"]).await;
    assert_eq!(version, http::Version::HTTP_11);
    assert_eq!(server_saw, "HTTP/1.1");
}
