//! A small HTTP/1.1 client on hyper: one keep-alive connection per `Client`, optionally from a
//! chosen local address, bodies whole or streamed.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{HeaderMap, Request};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpSocket;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type ReqBody = BoxBody<Bytes, Error>;

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The `X-Backend` header of a demo backend's answer ("" when absent).
    pub fn backend(&self) -> String {
        self.header("x-backend")
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive connection at a time: when the server closes it (`Connection: close`, as lb
/// does after `clients.keepalive_requests`), the next request opens a new one, as browsers do.
pub struct Client {
    sender: SendRequest<ReqBody>,
    host: String,
    local: Option<IpAddr>,
    addr: SocketAddr,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Client, Error> {
        Self::connect_from(None, addr).await
    }

    /// Connects from `local` (e.g. 127.0.0.7) when given.
    pub async fn connect_from(local: Option<IpAddr>, addr: SocketAddr) -> Result<Client, Error> {
        Ok(Client {
            sender: open(local, addr).await?,
            host: addr.to_string(),
            local,
            addr,
        })
    }

    /// Sends `req` (its `Host` defaults to the server address) and reads the whole response.
    pub async fn send(&mut self, mut req: Request<ReqBody>) -> Result<Resp, Error> {
        if !req.headers().contains_key("host") {
            req.headers_mut().insert("host", self.host.parse()?);
        }
        if self.sender.ready().await.is_err() {
            self.sender = open(self.local, self.addr).await?;
            self.sender.ready().await?;
        }
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Resp { status, headers, body })
    }

    /// GET `path`.
    pub async fn get(&mut self, path: &str) -> Result<Resp, Error> {
        self.send(request("GET", path, empty())).await
    }
}

async fn open(local: Option<IpAddr>, addr: SocketAddr) -> Result<SendRequest<ReqBody>, Error> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// GET `path` on a new connection.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Resp, Error> {
    Client::connect(addr).await?.get(path).await
}

/// A request with `body`.
pub fn request(method: &str, path: &str, body: ReqBody) -> Request<ReqBody> {
    let mut req = Request::new(body);
    *req.method_mut() = method.parse().expect("method");
    *req.uri_mut() = path.parse().expect("path");
    req
}

pub fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(data: impl Into<Bytes>) -> ReqBody {
    Full::new(data.into()).map_err(|never| match never {}).boxed()
}

/// `len` bytes sent in `chunk`-sized frames; with `known_length` false the length is not
/// announced, so the request goes out chunked.
pub fn streamed(len: u64, chunk: usize, known_length: bool) -> ReqBody {
    let data = Bytes::from((0..chunk).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    Stream {
        left: len,
        data,
        known_length,
    }
    .boxed()
}

struct Stream {
    left: u64,
    data: Bytes,
    known_length: bool,
}

impl Body for Stream {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.data.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.data.slice(..n)))))
    }

    fn size_hint(&self) -> SizeHint {
        if self.known_length {
            SizeHint::with_exact(self.left)
        } else {
            SizeHint::default()
        }
    }
}
