//! Requests and responses as the components see them, the same in both builds.
//!
//! The two Spin SDKs model HTTP differently (spin-sdk 5.2 wraps WASI 0.2 resources,
//! spin-sdk 6 uses the `http` crate over WASI 0.3). Components only need a method, a
//! path, headers and a size-checked body, and answer with a status, headers and bytes,
//! so those are plain types here and the SDK's own types stay in `crate::sdk`.

use std::fmt;

/// An HTTP method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other(String),
}

impl Method {
    pub fn parse(text: &str) -> Method {
        match text {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(other) => other,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What arrived before the body: enough to route, authenticate and refuse early.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: Method,
    /// The path without its query.
    pub path: String,
    /// The query without its `?`; empty when there is none.
    pub query: String,
    /// Header names in lower case, values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// Splits a request target into path and query.
    pub fn new(method: Method, path_with_query: &str, headers: Vec<(String, Vec<u8>)>) -> Head {
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((path_with_query, ""));
        Head {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
        }
    }

    /// The first value of a header, as sent.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// The first value of a header, if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }
}

/// A request with its whole body, read within a size limit (see `crate::request`).
#[derive(Debug, Clone)]
pub struct Request {
    head: Head,
    body: Vec<u8>,
}

impl Request {
    pub fn new(head: Head, body: Vec<u8>) -> Request {
        Request { head, body }
    }

    pub fn method(&self) -> &Method {
        &self.head.method
    }

    pub fn path(&self) -> &str {
        &self.head.path
    }

    pub fn query(&self) -> &str {
        &self.head.query
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.head.header_bytes(name)
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.set_header(name, value);
        self
    }

    /// Sets a header, replacing any value it had.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers
            .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
        self.headers.push((name.to_ascii_lowercase(), value.into()));
    }

    pub fn status(&self) -> u16 {
        self.status
    }
}
