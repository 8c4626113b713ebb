//! A small HTTP/1.1 client for the FHIR gateway, as any REST client would call it: tests and the
//! gateway bench use it. A [`FhirConnection`] keeps one connection open (for load generators);
//! [`Fhir::send`] opens one per request.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// The headers of a research export's kick-off under section 251 support.
pub const KICK_OFF: [(&str, &str); 3] = [
    ("prefer", "respond-async"),
    ("x-purpose-of-use", "HRESCH"),
    ("x-legal-basis", "section-251-support"),
];

/// The gateway at `base` (`http://127.0.0.1:<port>`), with an optional bearer token.
#[derive(Debug, Clone)]
pub struct Fhir {
    pub base: String,
    addr: SocketAddr,
    token: Option<String>,
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; panics (a test failure) with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body's text, for failure messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Fhir {
    pub fn new(base: &str) -> Fhir {
        let addr = base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("the gateway's base is http://<ip>:<port>");
        Fhir {
            base: base.trim_end_matches('/').to_owned(),
            addr,
            token: None,
        }
    }

    /// The same gateway, calling with `token`.
    pub fn with_token(&self, token: &str) -> Fhir {
        Fhir {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// The same gateway, calling with no token.
    pub fn anonymous(&self) -> Fhir {
        Fhir {
            token: None,
            ..self.clone()
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], None).await
    }

    /// Kicks off the research project's export of Observations ([`KICK_OFF`]), failing the test
    /// unless it is accepted; the export's status URL.
    pub async fn export_observations(&self) -> String {
        let path = format!("/Group/{}/$export?_type=Observation", crate::PROJECT);
        let kick_off = self.send(Method::GET, &path, &KICK_OFF, None).await;
        assert_eq!(kick_off.status, StatusCode::ACCEPTED, "{}", kick_off.text());
        kick_off
            .header("content-location")
            .expect("Content-Location")
            .to_owned()
    }

    /// PUT `body` on `path` with `If-Match: W/"version"`.
    pub async fn put_if_match(&self, path: &str, version: u32, body: &Value) -> Reply {
        let etag = format!("W/\"{version}\"");
        self.send(Method::PUT, path, &[("if-match", &etag)], Some(body))
            .await
    }

    /// `method` on `path` (relative to the base, or an absolute URL under it) with `headers` and
    /// an optional FHIR JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let mut connection = FhirConnection::open(self).await;
        connection.send(method, path, headers, body).await
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Request<Full<Bytes>> {
        let path = path.strip_prefix(&self.base).unwrap_or(path);
        assert!(
            path.starts_with('/'),
            "{path} is neither a path nor a URL under {}",
            self.base
        );
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.addr.to_string())
            .header(http::header::ACCEPT, "application/fhir+json");
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/fhir+json");
        }
        let mut request = request
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .expect("a valid request");
        for (name, value) in headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        request
    }
}

/// One kept-open HTTP/1.1 connection to the gateway.
pub struct FhirConnection {
    fhir: Fhir,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl FhirConnection {
    pub async fn open(fhir: &Fhir) -> FhirConnection {
        let stream = tokio::net::TcpStream::connect(fhir.addr)
            .await
            .expect("connect to the gateway");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        FhirConnection {
            fhir: fhir.clone(),
            sender,
        }
    }

    /// GETs `path` and counts the lines of its body as it streams, holding none of it (a Bulk
    /// Data file of any size).
    pub async fn count_lines(&mut self, path: &str) -> (StatusCode, u64) {
        let request = self.fhir.request(Method::GET, path, &[], None);
        let response = self
            .sender
            .send_request(request)
            .await
            .expect("the gateway answers");
        let status = response.status();
        let mut body = response.into_body();
        let mut lines = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("the body streams").into_data() {
                lines += data.iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
        (status, lines)
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let request = self.fhir.request(method, path, headers, body);
        let response = self
            .sender
            .send_request(request)
            .await
            .expect("the gateway answers");
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .expect("the whole response body")
            .to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}
