//! A blocking Open Inference Protocol client over any byte stream.
//!
//! [`Client`] speaks HTTP/1.1 (keep-alive) over whatever [`Read`] + [`Write`]
//! stream it is given: a plain [`TcpStream`] ([`Client::connect`]), or the
//! attested TLS stream `cocoon_tls::connect` returns once it has verified the
//! endpoint, so the request only ever travels inside that channel.
//!
//! ```no_run
//! use cocoon_infer::client::Client;
//! use cocoon_infer::protocol::InferRequest;
//! use cocoon_infer::tensor::{Tensor, TensorData};
//!
//! let mut client = Client::connect("127.0.0.1:8000")?;
//! let input = Tensor::new("bytes", vec![1, 2048], TensorData::I32(vec![256; 2048]))?;
//! let response = client.infer("magika", &InferRequest::new().input(input))?;
//! let scores = response.output("target_label").and_then(|t| t.as_f32());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use crate::protocol::{ErrorBody, InferRequest, InferResponse, ModelMetadata, ServerMetadata};

/// The largest response body accepted by default: 256 MiB.
pub const DEFAULT_MAX_RESPONSE: usize = 256 << 20;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 << 10;

/// Why a call did not return what it asked for.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed.
    #[error("connection to the inference server failed: {0}")]
    Io(#[from] io::Error),
    /// The server answered with an error status.
    #[error("the inference server answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The server's `error` text (or the body, if it had none).
        message: String,
    },
    /// The answer is not the protocol's.
    #[error("the inference server sent a bad response: {0}")]
    Protocol(String),
}

/// A status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// A blocking client over one connection.
pub struct Client<S: Read + Write> {
    conn: BufReader<S>,
    host: String,
    max_response: usize,
}

impl Client<TcpStream> {
    /// Connects over plain TCP (no TLS: for loopback or a trusted network).
    pub fn connect(addr: &str) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Client::new(stream, addr))
    }
}

impl<S: Read + Write> Client<S> {
    /// A client over an open stream; `host` goes in the `Host` header.
    pub fn new(stream: S, host: impl Into<String>) -> Self {
        Client {
            conn: BufReader::with_capacity(64 << 10, stream),
            host: host.into(),
            max_response: DEFAULT_MAX_RESPONSE,
        }
    }

    /// Sets the largest response body accepted.
    pub fn max_response(mut self, bytes: usize) -> Self {
        self.max_response = bytes;
        self
    }

    /// The stream, back.
    pub fn into_inner(self) -> S {
        self.conn.into_inner()
    }

    /// `GET /v2/health/live`.
    pub fn live(&mut self) -> Result<bool, ClientError> {
        #[derive(serde::Deserialize)]
        struct Live {
            live: bool,
        }
        Ok(self.get_json::<Live>("/v2/health/live")?.live)
    }

    /// `GET /v2/health/ready`.
    pub fn ready(&mut self) -> Result<bool, ClientError> {
        #[derive(serde::Deserialize)]
        struct Ready {
            ready: bool,
        }
        Ok(self.get_json::<Ready>("/v2/health/ready")?.ready)
    }

    /// `GET /v2`.
    pub fn server_metadata(&mut self) -> Result<ServerMetadata, ClientError> {
        self.get_json("/v2")
    }

    /// `GET /v2/models/{model}`.
    pub fn model_metadata(&mut self, model: &str) -> Result<ModelMetadata, ClientError> {
        self.get_json(&format!("/v2/models/{}", encode_segment(model)))
    }

    /// `POST /v2/models/{model}/infer` with a typed request.
    pub fn infer(&mut self, model: &str, req: &InferRequest) -> Result<InferResponse, ClientError> {
        self.infer_json(model, &req.to_json())
    }

    /// `POST /v2/models/{model}/infer` with a request already in JSON.
    pub fn infer_json(&mut self, model: &str, body: &[u8]) -> Result<InferResponse, ClientError> {
        let path = format!("/v2/models/{}/infer", encode_segment(model));
        let r = self.request("POST", &path, Some(body))?;
        let r = ok(r)?;
        InferResponse::from_json(&r.body).map_err(ClientError::Protocol)
    }

    fn get_json<T: serde::de::DeserializeOwned>(&mut self, path: &str) -> Result<T, ClientError> {
        let r = ok(self.request("GET", path, None)?)?;
        serde_json::from_slice(&r.body)
            .map_err(|e| ClientError::Protocol(format!("GET {path}: {e}")))
    }

    /// Sends one request and reads its response, whatever the status.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<HttpResponse, ClientError> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n",
            self.host
        );
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let w = self.conn.get_mut();
        w.write_all(head.as_bytes())?;
        if let Some(b) = body {
            w.write_all(b)?;
        }
        w.flush()?;
        self.read_response()
    }

    fn read_response(&mut self) -> Result<HttpResponse, ClientError> {
        loop {
            let head = self.read_head()?;
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&head) {
                Ok(httparse::Status::Complete(_)) => {}
                Ok(httparse::Status::Partial) => {
                    return Err(ClientError::Protocol("truncated response head".into()))
                }
                Err(e) => return Err(ClientError::Protocol(format!("response head: {e}"))),
            }
            let status = resp.code.unwrap_or(0);
            if (100..200).contains(&status) {
                continue; // 100 Continue and friends: the real answer follows
            }
            let header = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
            };
            let chunked = header("transfer-encoding").is_some_and(|v| v.ends_with("chunked"));
            let length = header("content-length");
            let body = if chunked {
                self.read_chunked()?
            } else if let Some(len) = length {
                let len: usize = len
                    .parse()
                    .map_err(|_| ClientError::Protocol(format!("bad Content-Length {len:?}")))?;
                if len > self.max_response {
                    return Err(self.too_large());
                }
                let mut body = vec![0; len];
                self.conn.read_exact(&mut body)?;
                body
            } else if status == 204 || status == 304 {
                Vec::new()
            } else {
                // No length: the body runs to the end of the connection.
                let mut body = Vec::new();
                (&mut self.conn)
                    .take(self.max_response as u64 + 1)
                    .read_to_end(&mut body)?;
                if body.len() > self.max_response {
                    return Err(self.too_large());
                }
                body
            };
            return Ok(HttpResponse { status, body });
        }
    }

    fn too_large(&self) -> ClientError {
        ClientError::Protocol(format!(
            "response is larger than the client's limit of {} bytes",
            self.max_response
        ))
    }

    /// Reads up to and including the blank line ending a response head.
    fn read_head(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut head = Vec::with_capacity(512);
        loop {
            let n = (&mut self.conn)
                .take((MAX_HEAD - head.len()) as u64)
                .read_until(b'\n', &mut head)?;
            if n == 0 {
                return Err(if head.is_empty() {
                    ClientError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection without answering",
                    ))
                } else {
                    ClientError::Protocol("truncated response head".into())
                });
            }
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                return Ok(head);
            }
            if head.len() >= MAX_HEAD {
                return Err(ClientError::Protocol("response head too large".into()));
            }
        }
    }

    fn read_line(&mut self) -> Result<String, ClientError> {
        let mut line = Vec::new();
        (&mut self.conn).take(4096).read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(ClientError::Protocol("truncated chunked body".into()));
        }
        Ok(String::from_utf8_lossy(&line).trim().to_string())
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| ClientError::Protocol(format!("bad chunk size {size:?}")))?;
            if size == 0 {
                // Trailers, up to the blank line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > self.max_response {
                return Err(self.too_large());
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.conn.read_exact(&mut body[start..])?;
            if !self.read_line()?.is_empty() {
                return Err(ClientError::Protocol("chunk not followed by CRLF".into()));
            }
        }
    }
}

/// A 2xx response, or the server's error as [`ClientError::Status`].
fn ok(r: HttpResponse) -> Result<HttpResponse, ClientError> {
    if (200..300).contains(&r.status) {
        return Ok(r);
    }
    let message = serde_json::from_slice::<ErrorBody>(&r.body)
        .map(|e| e.error)
        .unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(&r.body);
            let text = text.trim();
            if text.is_empty() {
                "(no body)".to_string()
            } else {
                text.chars().take(200).collect()
            }
        });
    Err(ClientError::Status {
        status: r.status,
        message,
    })
}

/// Percent-encodes a path segment (model names are usually plain already).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted peer: reads are served from `input`, writes are kept.
    struct Script {
        input: io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn client(answer: &str) -> Client<Script> {
        Client::new(
            Script {
                input: io::Cursor::new(answer.as_bytes().to_vec()),
                written: Vec::new(),
            },
            "h:1",
        )
    }

    #[test]
    fn reads_length_chunked_and_keep_alive() {
        let mut c = client(
            "HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{\"live\":true}\
             HTTP/1.1 100 Continue\r\n\r\n\
             HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"rea\r\n9;x=y\r\ndy\":true}\r\n0\r\n\r\n",
        );
        assert!(c.live().unwrap());
        assert!(c.ready().unwrap());
        let sent = String::from_utf8(c.into_inner().written).unwrap();
        assert!(
            sent.starts_with("GET /v2/health/live HTTP/1.1\r\nHost: h:1\r\n"),
            "{sent}"
        );
    }

    #[test]
    fn errors_carry_the_servers_message() {
        let body = r#"{"error":"unknown model \"x\""}"#;
        let mut c = client(&format!(
            "HTTP/1.1 404 Not Found\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ));
        let e = c.model_metadata("x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the inference server answered 404: unknown model \"x\""
        );
        let mut c = client("");
        let e = c.live().unwrap_err();
        assert_eq!(
            e.to_string(),
            "connection to the inference server failed: the server closed the connection without answering"
        );
        let mut c = client("HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n");
        let e = c.live().unwrap_err().to_string();
        assert!(e.contains("larger than the client's limit"), "{e}");
    }

    #[test]
    fn model_names_are_encoded() {
        assert_eq!(encode_segment("gpu_0/x y"), "gpu_0%2Fx%20y");
    }
}
