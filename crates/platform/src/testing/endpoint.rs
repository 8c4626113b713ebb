//! A stand-in for another organisation's HTTP endpoint (an identity provider's key set, say), for
//! tests of the clients that fetch from it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// An HTTP/1.1 endpoint on 127.0.0.1 that answers every request with its current status and JSON
/// body, then closes the connection; the test changes the answer and counts the requests.
pub struct JsonEndpoint {
    addr: std::net::SocketAddr,
    answer: Arc<Mutex<(u16, String)>>,
    requests: Arc<AtomicUsize>,
}

impl JsonEndpoint {
    /// Starts answering `status` and `body`.
    pub async fn start(status: u16, body: String) -> JsonEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a test endpoint");
        let addr = listener.local_addr().expect("the test endpoint's address");
        let answer = Arc::new(Mutex::new((status, body)));
        let requests = Arc::new(AtomicUsize::new(0));
        let (current, counter) = (answer.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let (status, body) = current.lock().expect("the endpoint's answer").clone();
                tokio::spawn(async move { answer_json(&mut socket, status, &body).await });
            }
        });
        JsonEndpoint {
            addr,
            answer,
            requests,
        }
    }

    /// The endpoint's URL for `path` (which starts with `/`); every path gets the same answer.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers `status` and `body` from the next request on.
    pub fn answer(&self, status: u16, body: String) {
        *self.answer.lock().expect("the endpoint's answer") = (status, body);
    }

    /// How many requests (connections) the endpoint has had.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request's head from `socket` and answers `status` with a JSON `body`, then shuts the
/// connection down: for a test that runs its own listener (over TLS, say).
pub async fn answer_json<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    status: u16,
    body: &str,
) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body.as_bytes()).await;
    let _ = socket.shutdown().await;
}
