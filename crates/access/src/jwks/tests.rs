use super::*;
use carerecord_platform::testing::{JsonEndpoint, answer_json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().copied())
}

fn config_error(pairs: &[(&str, &str)]) -> String {
    JwksSource::from_env(&env(pairs)).unwrap_err().to_string()
}

#[test]
fn urls_are_checked_at_configuration_time() {
    assert!(JwksSource::from_env(&env(&[])).unwrap().is_none());
    let issuer = ("CARERECORD_JWT_ISSUER", "https://idp.example");
    let err = config_error(&[("CARERECORD_JWKS_URL", "https://idp.example/jwks")]);
    assert!(err.contains("CARERECORD_JWT_ISSUER"), "{err}");
    let err = config_error(&[("CARERECORD_JWKS_URL", "http://idp.example/jwks"), issuer]);
    assert!(
        err.contains("CARERECORD_JWKS_URL") && err.contains("loopback"),
        "{err}"
    );
    let err = config_error(&[("CARERECORD_JWKS_URL", "ftp://idp.example/jwks"), issuer]);
    assert!(err.contains("CARERECORD_JWKS_URL"), "{err}");
    let err = config_error(&[("CARERECORD_JWKS_URL", "/jwks.json"), issuer]);
    assert!(err.contains("absolute"), "{err}");
    let err = config_error(&[("CARERECORD_JWKS_URL", "https://u:p@idp.example/"), issuer]);
    assert!(err.contains("credentials"), "{err}");
    let err = config_error(&[
        ("CARERECORD_JWKS_URL", "https://idp.example/jwks"),
        ("CARERECORD_JWKS_CA_FILE", "/nonexistent.pem"),
        issuer,
    ]);
    assert!(err.contains("CARERECORD_JWKS_CA_FILE"), "{err}");
    let err = config_error(&[
        ("CARERECORD_JWKS_URL", "http://127.0.0.1:1/jwks"),
        ("CARERECORD_JWKS_REFRESH", "0s"),
        issuer,
    ]);
    assert!(err.contains("CARERECORD_JWKS_REFRESH"), "{err}");
    for loopback in [
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9/k",
    ] {
        let source = JwksSource::from_env(&env(&[("CARERECORD_JWKS_URL", loopback), issuer]))
            .unwrap()
            .unwrap();
        assert!(source.tls.is_none(), "{loopback}");
        assert_eq!(source.refresh, DEFAULT_REFRESH);
    }
}

/// A public JWKS with one ES256 key.
fn jwks(kid: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::ES256)
            .unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::json!({ "keys": [jwk] }).to_string()
}

/// The URL of a key set endpoint answering every request with `status` and `body`.
async fn serve_plain_url(status: u16, body: String) -> String {
    JsonEndpoint::start(status, body).await.url("/jwks")
}

#[tokio::test]
async fn a_server_that_keeps_the_connection_open_does_not_stall_the_fetch() {
    // Identity providers keep connections alive: the fetch must end with the body, not
    // when the server closes (which would be the 10 s deadline here).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let body = jwks("kept-alive");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
                // Hold the connection open well past the test.
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    let started = Instant::now();
    let remote = RemoteJwks::start(source(&url, "30s")).await.unwrap();
    assert!(remote.knows("kept-alive"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

fn source(url: &str, min_interval: &str) -> JwksSource {
    JwksSource::from_env(&env(&[
        ("CARERECORD_JWKS_URL", url),
        ("CARERECORD_JWT_ISSUER", "https://idp.example"),
        ("CARERECORD_JWKS_MIN_INTERVAL", min_interval),
    ]))
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn bad_answers_are_errors() {
    let url = serve_plain_url(500, "{}".into()).await;
    let err = RemoteJwks::start(source(&url, "30s")).await.unwrap_err();
    assert!(matches!(err, JwksError::Status(s) if s == 500), "{err}");
    let url = serve_plain_url(200, "not json".into()).await;
    let err = RemoteJwks::start(source(&url, "30s")).await.unwrap_err();
    assert!(matches!(err, JwksError::Document(_)), "{err}");
    let url = serve_plain_url(200, r#"{"keys":[]}"#.into()).await;
    let err = RemoteJwks::start(source(&url, "30s")).await.unwrap_err();
    assert!(matches!(err, JwksError::NoKeys), "{err}");
    let url = serve_plain_url(200, "x".repeat(MAX_DOCUMENT_BYTES + 1)).await;
    let err = RemoteJwks::start(source(&url, "30s")).await.unwrap_err();
    assert!(matches!(err, JwksError::TooLarge), "{err}");
    // Nothing listens on the port any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = RemoteJwks::start(source(&format!("http://127.0.0.1:{port}/"), "30s"))
        .await
        .unwrap_err();
    assert!(matches!(err, JwksError::Connect(_)), "{err}");
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let endpoint = JsonEndpoint::start(200, jwks("k1")).await;
    let url = endpoint.url("/jwks");
    let remote = RemoteJwks::start(source(&url, "1h")).await.unwrap();
    assert_eq!(endpoint.requests(), 1);
    assert!(remote.knows("k1"));
    // Within the interval since the startup fetch: a flood of unknown kids fetches nothing.
    for i in 0..50 {
        remote.refresh_for_unknown_kid(&format!("forged-{i}")).await;
    }
    assert_eq!(endpoint.requests(), 1);

    let endpoint = JsonEndpoint::start(200, jwks("k1")).await;
    let url = endpoint.url("/jwks");
    let remote = RemoteJwks::start(source(&url, "0s")).await.unwrap();
    remote.refresh_for_unknown_kid("forged").await;
    assert_eq!(endpoint.requests(), 2);
    // The same document: no change, so verified tokens stay remembered.
    assert_eq!(remote.generation(), 0);
    // A known kid never fetches.
    remote.refresh_for_unknown_kid("k1").await;
    assert_eq!(endpoint.requests(), 2);
}

#[tokio::test]
async fn https_is_verified_against_the_configured_ca() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let server_config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![server_cert.der().clone()],
        tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der())
            .unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let document = jwks("tls-key");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let document = document.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(socket).await {
                    answer_json(&mut tls, 200, &document).await;
                }
            });
        }
    });
    let url = format!("https://localhost:{port}/jwks");
    // The key set at `url`, fetched by a client trusting the CA in `ca_file`.
    let source = |ca_file: &std::path::Path| {
        JwksSource::from_env(&env(&[
            ("CARERECORD_JWKS_URL", &url),
            ("CARERECORD_JWKS_CA_FILE", ca_file.to_str().unwrap()),
            ("CARERECORD_JWT_ISSUER", "https://idp.example"),
        ]))
        .unwrap()
        .unwrap()
    };
    let remote = RemoteJwks::start(source(&ca_file)).await.unwrap();
    assert!(remote.knows("tls-key"));

    // A client trusting only another CA refuses the server.
    let other_ca = CertifiedIssuer::self_signed(
        {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p
        },
        KeyPair::generate().unwrap(),
    )
    .unwrap();
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, other_ca.pem()).unwrap();
    let err = RemoteJwks::start(source(&other_file)).await.unwrap_err();
    assert!(matches!(err, JwksError::Tls(_)), "{err}");
}
