//! The HTTP client of taskpod's API, used by the CLI's `submit`, `status`, `list`, `cancel`
//! and `logs` (and by tests that drive a running `taskpod serve`).
//!
//! It speaks plain HTTP/1.1 to the server named by `--server` (default
//! `http://127.0.0.1:8080`), decodes the API's JSON views ([`crate::api`]) and turns the API's
//! JSON error bodies back into [`ClientError::Api`], so the CLI prints the server's message,
//! including the field at fault.

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::api::{
    AdapterView, CapacityView, ErrorBody, EventView, ListView, SubmitView, TaskDetail, TaskView,
    TenantView,
};

/// Default API address (`--server`, env `TASKPOD_SERVER`).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is unusable.
    #[error("invalid server URL `{url}`: {problem} (expected e.g. {DEFAULT_SERVER})")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// The server could not be reached.
    #[error(
        "cannot reach the taskpod server at {server}: {problem} (is `taskpod serve` running? \
         set --server or TASKPOD_SERVER)"
    )]
    Connect {
        /// The server.
        server: String,
        /// The transport error.
        problem: String,
    },
    /// The server answered with an error.
    #[error("{}", match field {
        Some(field) => format!("server said {status}: field `{field}`: {message}"),
        None => format!("server said {status}: {message}"),
    })]
    Api {
        /// The HTTP status.
        status: u16,
        /// The field at fault, when the server named one.
        field: Option<String>,
        /// The server's message.
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from {path}: {problem}")]
    Decode {
        /// The request path.
        path: String,
        /// What was wrong.
        problem: String,
    },
}

/// A client of one taskpod server.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    /// The bearer token sent with every request (never printed: see the `Debug` below).
    token: Option<Token>,
}

/// A bearer token whose `Debug` hides it.
#[derive(Clone)]
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Filters of [`Client::list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Comma-separated states.
    pub state: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Task type.
    pub kind: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// Cursor from the previous page.
    pub after: Option<String>,
    /// `newest-first` or `oldest-first`.
    pub order: Option<String>,
}

/// Percent-encodes a path segment or query value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client for `server` (`http://HOST:PORT`, no path).
    pub fn new(server: &str) -> Result<Client, ClientError> {
        let base = server.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|e: http::uri::InvalidUri| ClientError::Url {
                url: server.to_owned(),
                problem: e.to_string(),
            })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::Url {
                url: server.to_owned(),
                problem: "give http://HOST:PORT".to_owned(),
            });
        }
        let http = HyperClient::builder(TokioExecutor::new()).build_http();
        Ok(Client {
            base,
            http,
            token: None,
        })
    }

    /// Sends `Authorization: Bearer TOKEN` with every request (servers with tenants or an
    /// admin token configured require it). An empty token sends none.
    pub fn with_token(mut self, token: Option<&str>) -> Client {
        self.token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Token(t.to_owned()));
        self
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let mut uri = format!("{}{path}", self.base);
        let (body, content_type) = match body {
            Some((bytes, content_type)) => (bytes, Some(content_type)),
            None => (Bytes::new(), None),
        };
        // A follower replica (high availability) answers 307 with the leader's URL: follow a
        // few such redirects, keeping the method and body.
        let mut hops = 0;
        let resp = loop {
            let mut req = Request::builder().method(method.clone()).uri(&uri);
            if let Some(Token(token)) = &self.token {
                req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
            }
            if let Some(content_type) = content_type {
                req = req.header(http::header::CONTENT_TYPE, content_type);
            }
            let req = req
                .body(Full::new(body.clone()))
                .map_err(|e| ClientError::Url {
                    url: uri.clone(),
                    problem: e.to_string(),
                })?;
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| ClientError::Connect {
                    server: self.base.clone(),
                    problem: error_chain(&e),
                })?;
            let redirect = matches!(
                resp.status(),
                http::StatusCode::TEMPORARY_REDIRECT | http::StatusCode::PERMANENT_REDIRECT
            );
            let location = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .filter(|l| l.starts_with("http://"))
                .map(str::to_owned);
            match location {
                Some(location) if redirect && hops < 5 => {
                    hops += 1;
                    uri = location;
                }
                _ => break resp,
            }
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(api_error(status, &bytes))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<T, ClientError> {
        let resp = self.send(method, path, body).await?;
        let bytes = read_all(path, resp).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            path: path.to_owned(),
            problem: e.to_string(),
        })
    }

    /// `POST /v1/tasks` with a task document (envelope or raw Druid task JSON).
    pub async fn submit(&self, task_json: &str) -> Result<SubmitView, ClientError> {
        self.json(
            Method::POST,
            "/v1/tasks",
            Some((
                Bytes::copy_from_slice(task_json.as_bytes()),
                "application/json",
            )),
        )
        .await
    }

    /// `GET /v1/tasks/{id}`.
    pub async fn get(&self, id: &str) -> Result<TaskDetail, ClientError> {
        self.json(Method::GET, &format!("/v1/tasks/{}", encode(id)), None)
            .await
    }

    /// `GET /v1/tasks` with filters.
    pub async fn list(&self, filter: &ListFilter) -> Result<ListView, ClientError> {
        let mut query = Vec::new();
        let mut add = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                query.push(format!("{key}={}", encode(v)));
            }
        };
        add("state", &filter.state);
        add("tenant", &filter.tenant);
        add("type", &filter.kind);
        add("after", &filter.after);
        add("order", &filter.order);
        add("limit", &filter.limit.map(|n| n.to_string()));
        let path = if query.is_empty() {
            "/v1/tasks".to_owned()
        } else {
            format!("/v1/tasks?{}", query.join("&"))
        };
        self.json(Method::GET, &path, None).await
    }

    /// `POST /v1/tasks/{id}/cancel[?force=true]`.
    pub async fn cancel(&self, id: &str, force: bool) -> Result<TaskView, ClientError> {
        let path = format!(
            "/v1/tasks/{}/cancel{}",
            encode(id),
            if force { "?force=true" } else { "" }
        );
        self.json(Method::POST, &path, None).await
    }

    /// `GET /v1/capacity`.
    pub async fn capacity(&self) -> Result<CapacityView, ClientError> {
        self.json(Method::GET, "/v1/capacity", None).await
    }

    /// `PUT /v1/capacity`.
    pub async fn set_capacity(&self, capacity: usize) -> Result<CapacityView, ClientError> {
        let body = serde_json::json!({ "capacity": capacity }).to_string();
        self.json(
            Method::PUT,
            "/v1/capacity",
            Some((Bytes::from(body), "application/json")),
        )
        .await
    }

    /// `GET /v1/tenants`.
    pub async fn tenants(&self) -> Result<Vec<TenantView>, ClientError> {
        self.json(Method::GET, "/v1/tenants", None).await
    }

    /// `POST /v1/tenants/{name}/{action}` with `action` one of `hold`, `drain`, `resume`.
    pub async fn tenant_action(&self, name: &str, action: &str) -> Result<TenantView, ClientError> {
        let path = format!("/v1/tenants/{}/{action}", encode(name));
        self.json(Method::POST, &path, None).await
    }

    /// `GET /v1/adapters`.
    pub async fn adapters(&self) -> Result<Vec<AdapterView>, ClientError> {
        self.json(Method::GET, "/v1/adapters", None).await
    }

    /// `POST /v1/adapters/{name}/reload`.
    pub async fn reload_adapter(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/v1/adapters/{}/reload", encode(name));
        let _: serde_json::Value = self.json(Method::POST, &path, None).await?;
        Ok(())
    }

    /// `GET /readyz`: true when the server answers 200.
    pub async fn ready(&self) -> Result<bool, ClientError> {
        match self.send(Method::GET, "/readyz", None).await {
            Ok(_) => Ok(true),
            Err(ClientError::Api { status: 503, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/tasks/{id}/log`, calling `sink` with each chunk; with `follow`, returns once
    /// the task has ended and its whole log was received.
    pub async fn log(
        &self,
        id: &str,
        follow: bool,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/v1/tasks/{}/log{}",
            encode(id),
            if follow { "?follow=true" } else { "" }
        );
        let resp = self.send(Method::GET, &path, None).await?;
        let mut body = resp.into_body().into_data_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ClientError::Connect {
                server: self.base.clone(),
                problem: format!("log stream broke: {}", error_chain(&e)),
            })?;
            sink(&chunk).map_err(|e| ClientError::Decode {
                path: path.clone(),
                problem: format!("cannot write the log: {e}"),
            })?;
        }
        Ok(())
    }

    /// Opens `GET /v1/events[?task=ID]`; the returned feed yields events in order. The
    /// subscription is in place when this returns, so nothing committed afterwards is missed.
    pub async fn events(&self, task: Option<&str>) -> Result<EventFeed, ClientError> {
        let path = match task {
            Some(id) => format!("/v1/events?task={}", encode(id)),
            None => "/v1/events".to_owned(),
        };
        let resp = self.send(Method::GET, &path, None).await?;
        Ok(EventFeed {
            path,
            body: Box::pin(resp.into_body().into_data_stream()),
            buf: Vec::new(),
        })
    }
}

type DataStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, hyper::Error>> + Send + 'static>>;

/// A server-sent event feed from [`Client::events`].
pub struct EventFeed {
    path: String,
    body: DataStream,
    buf: Vec<u8>,
}

impl std::fmt::Debug for EventFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFeed")
            .field("path", &self.path)
            .finish()
    }
}

impl EventFeed {
    /// The next event; `None` when the server closed the feed.
    pub async fn next(&mut self) -> Result<Option<EventView>, ClientError> {
        loop {
            if let Some(end) = find_blank_line(&self.buf) {
                let block: Vec<u8> = self.buf.drain(..end).collect();
                let data: String = String::from_utf8_lossy(&block)
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.is_empty() {
                    continue; // keep-alive comment or event without data
                }
                let event = serde_json::from_str(&data).map_err(|e| ClientError::Decode {
                    path: self.path.clone(),
                    problem: format!("bad event data {data:?}: {e}"),
                })?;
                return Ok(Some(event));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    return Err(ClientError::Connect {
                        server: self.path.clone(),
                        problem: format!("event stream broke: {}", error_chain(&e)),
                    });
                }
                None => return Ok(None),
            }
        }
    }
}

/// The end (exclusive, including the blank line) of the first complete SSE block.
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn read_all(
    path: &str,
    resp: hyper::Response<hyper::body::Incoming>,
) -> Result<Bytes, ClientError> {
    resp.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| ClientError::Decode {
            path: path.to_owned(),
            problem: format!("reading the body failed: {e}"),
        })
}

fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => ClientError::Api {
            status: status.as_u16(),
            field: parsed.error.field,
            message: parsed.error.message,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            field: None,
            message: String::from_utf8_lossy(body).trim().to_owned(),
        },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
