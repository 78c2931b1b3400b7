//! One outbound HTTP POST, as the LLM call makes it, described the same way for both
//! builds; each `crate::sdk` backend sends it under a deadline.

use evolve_core::llm::{CallError, Scheme};

/// A POST to send.
pub struct Post<'a> {
    pub scheme: Scheme,
    pub authority: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
    /// A longer answer body is refused.
    pub max_answer_bytes: usize,
}

/// What came back.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// What a WASI HTTP error code (by its variant name, the same in WASI 0.2 and 0.3)
/// means for retrying and for the breaker.
pub fn error_from_code_name(debug: &str) -> CallError {
    let name = debug.strip_prefix("ErrorCode::").unwrap_or(debug);
    let variant = name.split(['(', ' ', '{']).next().unwrap_or(name);
    match variant {
        "DnsTimeout"
        | "ConnectionTimeout"
        | "ConnectionReadTimeout"
        | "ConnectionWriteTimeout"
        | "HttpResponseTimeout" => CallError::Timeout,
        "HttpRequestDenied" => CallError::Refused(
            "HTTP request denied (host not in allowed_outbound_hosts?)".to_owned(),
        ),
        "HttpRequestUriInvalid"
        | "HttpRequestUriTooLong"
        | "HttpRequestMethodInvalid"
        | "DestinationIpProhibited"
        | "ConfigurationError" => CallError::Refused(name.to_owned()),
        _ => CallError::Transport(name.to_owned()),
    }
}
