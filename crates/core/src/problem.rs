//! RFC 7807 "problem details" documents, the one shape of every error answer.
//!
//! Clients get the same machine-readable JSON for every refusal (unknown route, wrong
//! method, bad input, not ready), served as `application/problem+json`, instead of a
//! different ad-hoc body per component.

use serde::{Deserialize, Serialize};

/// The media type of a problem document.
pub const CONTENT_TYPE: &str = "application/problem+json";

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
}

impl Problem {
    /// A problem of type `about:blank`, titled with the status's reason phrase.
    pub fn from_status(status: u16) -> Self {
        Problem {
            type_uri: "about:blank".to_owned(),
            title: reason_phrase(status).to_owned(),
            status,
            detail: None,
        }
    }

    /// Adds the human-readable explanation.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
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
    fn unknown_statuses_get_a_class_title() {
        assert_eq!(reason_phrase(418), "Client Error");
        assert_eq!(reason_phrase(599), "Server Error");
    }
}
