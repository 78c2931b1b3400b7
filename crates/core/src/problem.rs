//! RFC 7807 "problem details" documents, the one shape of every error answer.
//!
//! Clients get the same machine-readable JSON for every refusal (unknown route, wrong
//! method, bad input, not ready), served as `application/problem+json`, instead of a
//! different ad-hoc body per component.

use serde::{Deserialize, Serialize};

/// The media type of a problem document.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// `WWW-Authenticate` value of a 401 for a request that carried no credentials: RFC 6750
/// asks for the bare scheme then, without an error code.
pub const BEARER_CHALLENGE: &str = "Bearer";

/// `WWW-Authenticate` value of a 401 for a token that was present but refused.
pub const INVALID_TOKEN_CHALLENGE: &str = "Bearer error=\"invalid_token\"";

/// A problem details document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the HTTP status says it all.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary that does not change between occurrences.
    pub title: String,
    /// The HTTP status code of the answer.
    pub status: u16,
    /// What went wrong this time, for a human.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    /// Seconds after which a retry may succeed (429, 503). An extension member, so that
    /// clients reading only the body learn it too; [`Problem::headers`] also turns it
    /// into the `Retry-After` header.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry_after: Option<u64>,
    /// The `WWW-Authenticate` challenge a 401 must carry; a header, not part of the body.
    #[serde(skip)]
    pub challenge: Option<&'static str>,
}

impl Problem {
    /// A problem of type `about:blank`, titled with the status's reason phrase.
    pub fn from_status(status: u16) -> Self {
        Problem {
            type_uri: "about:blank".to_owned(),
            title: reason_phrase(status).to_owned(),
            status,
            detail: None,
            retry_after: None,
            challenge: None,
        }
    }

    /// Adds the human-readable explanation.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 502: the voice of a message could not be made (its task is in the dead letters).
    /// The cause stays in the operator's dead letters; the client learns it may ask again.
    pub fn voice_failed() -> Self {
        Problem {
            type_uri: "urn:evolve:problem:voice-failed".to_owned(),
            title: "Voice generation failed".to_owned(),
            ..Problem::from_status(502)
        }
        .with_detail("the speech model could not voice this message; POST to this URL to try again")
    }

    /// 404: no route matches the path.
    pub fn not_found(path: &str) -> Self {
        Problem::from_status(404).with_detail(format!("no route for {path}"))
    }

    /// 405: the path exists but not for this method. The answer must also carry an
    /// `Allow` header; [`allow_header`] builds it from the same list.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &[&str]) -> Self {
        Problem::from_status(405).with_detail(format!(
            "{method} is not allowed on {path}; allowed: {}",
            allow_header(allowed)
        ))
    }

    /// 400: the request itself is wrong (syntax, types, values); `detail` says where.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::from_status(400).with_detail(detail)
    }

    /// 401 with the bare `Bearer` challenge. Token failures that should carry
    /// `error="invalid_token"` come from `auth::AuthError`'s conversion instead.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut problem = Problem::from_status(401).with_detail(detail);
        problem.challenge = Some(BEARER_CHALLENGE);
        problem
    }

    /// 409: the request conflicts with one still in progress (a reused `Idempotency-Key`).
    pub fn conflict(detail: impl Into<String>) -> Self {
        Problem::from_status(409).with_detail(detail)
    }

    /// 413: the body is larger than `max_bytes`.
    pub fn payload_too_large(max_bytes: usize) -> Self {
        Problem::from_status(413)
            .with_detail(format!("request body is larger than {max_bytes} bytes"))
    }

    /// 415: the body is not in the one media type the route accepts.
    pub fn unsupported_media_type(expected: &str) -> Self {
        Problem::from_status(415).with_detail(format!("content type must be {expected}"))
    }

    /// 422: well-formed, but not acceptable in this state (an `Idempotency-Key` reused for
    /// a different request).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Problem::from_status(422).with_detail(detail)
    }

    /// 429: the caller's rate limit is spent; it may try again after `retry_after_secs`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let mut problem = Problem::from_status(429).with_detail(format!(
            "rate limit exceeded; retry in {retry_after_secs} s"
        ));
        problem.retry_after = Some(retry_after_secs);
        problem
    }

    /// 503: a dependency this request needs is unavailable; `detail` names it.
    pub fn service_unavailable(detail: impl Into<String>, retry_after_secs: Option<u64>) -> Self {
        let mut problem = Problem::from_status(503).with_detail(detail);
        problem.retry_after = retry_after_secs;
        problem
    }

    /// Headers the answer must carry besides `Content-Type`: `Retry-After` (in seconds)
    /// and `WWW-Authenticate`, as lower-case names.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if let Some(seconds) = self.retry_after {
            headers.push(("retry-after", seconds.to_string()));
        }
        if let Some(challenge) = self.challenge {
            headers.push(("www-authenticate", challenge.to_owned()));
        }
        headers
    }

    /// The document as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a problem document always serializes")
    }
}

/// The value of an `Allow` header listing these methods.
pub fn allow_header(allowed: &[&str]) -> String {
    allowed.join(", ")
}

/// The standard reason phrase for the statuses this service answers with.
pub fn reason_phrase(status: u16) -> &'static str {
    let known = match status {
        400 => Some("Bad Request"),
        401 => Some("Unauthorized"),
        403 => Some("Forbidden"),
        404 => Some("Not Found"),
        405 => Some("Method Not Allowed"),
        409 => Some("Conflict"),
        413 => Some("Content Too Large"),
        415 => Some("Unsupported Media Type"),
        422 => Some("Unprocessable Content"),
        429 => Some("Too Many Requests"),
        500 => Some("Internal Server Error"),
        502 => Some("Bad Gateway"),
        503 => Some("Service Unavailable"),
        504 => Some("Gateway Timeout"),
        _ => None,
    };
    known.unwrap_or(if status < 500 {
        "Client Error"
    } else {
        "Server Error"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn not_found_document() {
        let value: serde_json::Value =
            serde_json::from_str(&Problem::not_found("/nope").to_json()).unwrap();
        assert_eq!(
            value,
            json!({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no route for /nope"})
        );
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_methods() {
        let problem = Problem::method_not_allowed("POST", "/ready", &["GET", "HEAD"]);
        assert_eq!(problem.status, 405);
        assert_eq!(problem.title, "Method Not Allowed");
        assert_eq!(
            problem.detail.as_deref(),
            Some("POST is not allowed on /ready; allowed: GET, HEAD")
        );
        assert_eq!(allow_header(&["GET", "HEAD"]), "GET, HEAD");
    }

    #[test]
    fn detail_is_omitted_when_absent_and_round_trips() {
        let problem = Problem::from_status(503);
        let text = problem.to_json();
        assert_eq!(
            text,
            r#"{"type":"about:blank","title":"Service Unavailable","status":503}"#
        );
        assert_eq!(serde_json::from_str::<Problem>(&text).unwrap(), problem);
    }

    #[test]
    fn constructors_set_status_title_and_detail() {
        let cases = [
            (
                Problem::bad_request("`message` is required"),
                400,
                "Bad Request",
            ),
            (
                Problem::unauthorized("missing bearer token"),
                401,
                "Unauthorized",
            ),
            (Problem::conflict("in progress"), 409, "Conflict"),
            (Problem::payload_too_large(16_384), 413, "Content Too Large"),
            (
                Problem::unsupported_media_type("application/json"),
                415,
                "Unsupported Media Type",
            ),
            (
                Problem::unprocessable("reused key"),
                422,
                "Unprocessable Content",
            ),
            (Problem::too_many_requests(3), 429, "Too Many Requests"),
            (
                Problem::service_unavailable("database unavailable", None),
                503,
                "Service Unavailable",
            ),
        ];
        for (problem, status, title) in cases {
            assert_eq!(problem.status, status);
            assert_eq!(problem.title, title);
            assert!(problem.detail.is_some(), "{status} has a detail");
        }
        assert_eq!(
            Problem::payload_too_large(16_384).detail.as_deref(),
            Some("request body is larger than 16384 bytes")
        );
    }

    #[test]
    fn retry_after_travels_in_the_body_and_the_header() {
        let problem = Problem::too_many_requests(7);
        let value: serde_json::Value = serde_json::from_str(&problem.to_json()).unwrap();
        assert_eq!(value["retry_after"], 7);
        assert_eq!(value["status"], 429);
        assert_eq!(problem.headers(), vec![("retry-after", "7".to_string())]);

        let problem = Problem::service_unavailable("database unavailable", Some(5));
        assert_eq!(problem.headers(), vec![("retry-after", "5".to_string())]);
        assert!(Problem::service_unavailable("x", None).headers().is_empty());
    }

    #[test]
    fn unauthorized_carries_the_bearer_challenge_as_a_header_only() {
        let problem = Problem::unauthorized("missing bearer token");
        assert_eq!(
            problem.headers(),
            vec![("www-authenticate", "Bearer".to_string())]
        );
        assert!(!problem.to_json().contains("Bearer"));
    }

    #[test]
    fn unknown_statuses_get_a_class_title() {
        assert_eq!(reason_phrase(418), "Client Error");
        assert_eq!(reason_phrase(599), "Server Error");
    }
}
