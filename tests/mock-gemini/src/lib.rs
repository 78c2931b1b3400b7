//! A local stand-in for Gemini's `generateContent` REST API, so that chat turns can be
//! tested and benchmarked without the network, a key or a quota, and so that the LLM's
//! bad days (slow answers, 429 with `Retry-After`, 5xx, dropped connections) can be
//! produced on demand.
//!
//! `POST /v1beta/models/{model}:generateContent` checks `x-goog-api-key` (403 in Gemini's
//! error shape when wrong) and answers according to what the body asks for:
//!
//! - text (the default): `echo: <last user message>` with usage metadata;
//! - speech, when `generationConfig.responseModalities` holds `"AUDIO"` (Gemini's TTS):
//!   one `inlineData` part of `audio/L16;codec=pcm;rate=24000`, a 440 Hz tone whose
//!   length follows the text's (20 ms a character, 0.2 s to 3 s);
//! - structured output, when `generationConfig.responseMimeType` is `application/json`:
//!   one text part holding a JSON document that fits `responseSchema`, filled with a
//!   deterministic "dialog analysis" (`facts`, `mood`, `topics`, `summary`) of the
//!   conversation.
//!
//! All three go through the same key check, failure rules and delay. Its behaviour is set
//! at runtime, in process ([`MockGemini::set_behaviour`]) or over HTTP (`POST
//! /_mock/config` with a [`Behaviour`] as JSON, which replaces the current one; `POST
//! /_mock/reset`; `GET /_mock/stats` gives [`Stats`], which counts each kind of call).
//! `streamGenerateContent` is not served (404).
//!
//! The JSON it writes is built by hand from Gemini's documented shape, not from the
//! client's types, so that a mistake in one is not silently shared by the other.

mod structured;
mod tts;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Largest request body accepted; Gemini's own limit is far larger, but a chat turn is
/// small and the mock should not buffer without bound.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How the mock answers `generateContent`, settable at runtime. Every field has a default
/// (a healthy, instant Gemini), so a JSON object need only name what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// Delay before every answer, in milliseconds.
    pub latency_ms: u64,
    /// Answer every call with this status (an error in Gemini's shape unless 2xx).
    pub status: Option<u16>,
    /// Share of calls (0 to 1) that fail at random with `fail_status`.
    pub fail_rate: f64,
    pub fail_status: u16,
    /// Sent as `Retry-After` (and, on 429, as a `RetryInfo` detail) with every error.
    pub retry_after_secs: Option<u64>,
    /// Statuses consumed one per call, before any other rule. `0` drops the connection
    /// without an answer.
    pub script: VecDeque<u16>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            latency_ms: 0,
            status: None,
            fail_rate: 0.0,
            fail_status: 503,
            retry_after_secs: None,
            script: VecDeque::new(),
        }
    }
}

/// What the mock has seen since it started or was reset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// `generateContent` requests received, of every kind:
    /// `text_calls + tts_calls + structured_calls`.
    pub calls: u64,
    /// Of those, the ones answered with an error status or a dropped connection.
    pub failures: u64,
    /// Requests for text, including bodies that were not JSON (whatever they meant to
    /// ask for, they cannot be told apart).
    pub text_calls: u64,
    /// Requests for speech (`responseModalities` holding `"AUDIO"`), failed ones too.
    pub tts_calls: u64,
    /// Requests for JSON (`responseMimeType: "application/json"`), failed ones too.
    pub structured_calls: u64,
    /// The `prebuiltVoiceConfig.voiceName` of the last speech request; `None` before
    /// the first or when it named no voice. Kept apart from `last_request` because a
    /// chat turn after the speech call would otherwise hide it.
    pub last_voice: Option<String>,
    /// The body of the last `generateContent` request (`null` if it was not JSON).
    pub last_request: Option<Value>,
    /// The model named in the last request's path.
    pub last_model: Option<String>,
}

/// The mock's fixed settings.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The key a request must send as `x-goog-api-key` (or `?key=`).
    pub api_key: String,
    pub behaviour: Behaviour,
}

impl MockConfig {
    pub fn new(api_key: impl Into<String>) -> Self {
        MockConfig {
            api_key: api_key.into(),
            behaviour: Behaviour::default(),
        }
    }
}

struct Shared {
    api_key: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    behaviour: Behaviour,
    stats: Stats,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking handler cannot leave the counters half-updated in a way that
        // matters for a test double: keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running mock; stops when dropped.
pub struct MockGemini {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl MockGemini {
    /// Starts on a free loopback port.
    pub async fn start(config: MockConfig) -> anyhow::Result<MockGemini> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts on `addr`, which must be a loopback address: the mock is a test tool and
    /// answers anyone who can reach it.
    pub async fn bind(addr: SocketAddr, config: MockConfig) -> anyhow::Result<MockGemini> {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "the mock listens on loopback addresses only, not {addr}"
        );
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            api_key: config.api_key,
            state: Mutex::new(State {
                behaviour: config.behaviour,
                stats: Stats::default(),
            }),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        Ok(MockGemini {
            addr,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, the value for `gemini_base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces how the mock answers from the next call on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.shared.lock().behaviour = behaviour;
    }

    pub fn behaviour(&self) -> Behaviour {
        self.shared.lock().behaviour.clone()
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Back to a healthy mock with zeroed stats.
    pub fn reset(&self) {
        let mut state = self.shared.lock();
        state.behaviour = Behaviour::default();
        state.stats = Stats::default();
    }
}

impl Drop for MockGemini {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Serves until the task is aborted.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { handle(&shared, request).await }
            });
            // Errors here are clients going away or deliberately dropped connections.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Answer = Response<Full<Bytes>>;

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

async fn handle(shared: &Shared, request: Request<Incoming>) -> Result<Answer, DropConnection> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match (method, path.as_str()) {
        (Method::GET, "/_mock/stats") => {
            let stats = shared.lock().stats.clone();
            Ok(json_answer(
                200,
                &serde_json::to_value(stats).unwrap_or(Value::Null),
            ))
        }
        (Method::POST, "/_mock/reset") => {
            let mut state = shared.lock();
            state.behaviour = Behaviour::default();
            state.stats = Stats::default();
            Ok(json_answer(200, &json!({"reset": true})))
        }
        (Method::POST, "/_mock/config") => {
            let body = match read_body(request).await {
                Ok(body) => body,
                Err(answer) => return Ok(answer),
            };
            // Only an object: serde would also read a struct from an array.
            let parsed = serde_json::from_slice::<Value>(&body).and_then(|value| match value {
                Value::Object(_) => serde_json::from_value::<Behaviour>(value),
                _ => Err(serde::de::Error::custom("expected a JSON object")),
            });
            match parsed {
                Ok(behaviour) if (0.0..=1.0).contains(&behaviour.fail_rate) => {
                    let echo = serde_json::to_value(&behaviour).unwrap_or(Value::Null);
                    shared.lock().behaviour = behaviour;
                    Ok(json_answer(200, &echo))
                }
                Ok(_) => Ok(gemini_error(400, "fail_rate must be between 0 and 1", None)),
                Err(error) => Ok(gemini_error(400, &error.to_string(), None)),
            }
        }
        (Method::POST, _) => match model_of(&path) {
            Some(model) => {
                let model = model.to_owned();
                generate_content(shared, request, model).await
            }
            None => Ok(gemini_error(404, &format!("unknown path {path}"), None)),
        },
        _ => Ok(gemini_error(404, &format!("unknown path {path}"), None)),
    }
}

/// What a `generateContent` body asks for; each kind has its own answer and counter.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Speech,
    Structured,
}

impl Kind {
    /// Speech wins over JSON: Gemini's TTS models answer only with audio.
    fn of(request: &Value) -> Kind {
        if tts::wants_audio(request) {
            Kind::Speech
        } else if structured::wants_json(request) {
            Kind::Structured
        } else {
            Kind::Text
        }
    }
}

/// The model of a `/v1beta/models/{model}:generateContent` path.
fn model_of(path: &str) -> Option<&str> {
    let model = path
        .strip_prefix("/v1beta/models/")?
        .strip_suffix(":generateContent")?;
    (!model.is_empty() && !model.contains('/')).then_some(model)
}

async fn generate_content(
    shared: &Shared,
    request: Request<Incoming>,
    model: String,
) -> Result<Answer, DropConnection> {
    let key_ok = api_key_of(&request).as_deref() == Some(shared.api_key.as_str());
    let body = read_body(request).await;
    let parsed = body
        .as_ref()
        .ok()
        .and_then(|body| serde_json::from_slice::<Value>(body).ok());

    let kind = parsed.as_ref().map_or(Kind::Text, Kind::of);

    // Decide under the lock, answer after the delay without it.
    let (latency, status, retry_after) = {
        let mut state = shared.lock();
        state.stats.calls += 1;
        match kind {
            Kind::Text => state.stats.text_calls += 1,
            Kind::Speech => {
                state.stats.tts_calls += 1;
                state.stats.last_voice = parsed.as_ref().and_then(tts::voice_of);
            }
            Kind::Structured => state.stats.structured_calls += 1,
        }
        state.stats.last_request = parsed.clone();
        state.stats.last_model = Some(model);
        let behaviour = &mut state.behaviour;
        let status = if !key_ok {
            403
        } else if let Some(status) = behaviour.script.pop_front() {
            status
        } else if let Some(status) = behaviour.status {
            status
        } else if behaviour.fail_rate > 0.0 && fastrand::f64() < behaviour.fail_rate {
            behaviour.fail_status
        } else {
            200
        };
        let (latency, retry_after) = (behaviour.latency_ms, behaviour.retry_after_secs);
        let failed = !(200..300).contains(&status) || parsed.is_none();
        if failed {
            state.stats.failures += 1;
        }
        (latency, status, retry_after)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }

    match (status, parsed) {
        (0, _) => Err(DropConnection),
        (403, _) if !key_ok => Ok(gemini_error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            None,
        )),
        (200..=299, None) => Ok(match body {
            Err(answer) => answer,
            Ok(_) => gemini_error(400, "Invalid JSON payload received.", None),
        }),
        (200..=299, Some(request)) => Ok(json_answer(
            status,
            &match kind {
                Kind::Text => reply_to(&request),
                Kind::Speech => tts::reply_to(&request),
                Kind::Structured => structured::reply_to(&request),
            },
        )),
        (status, _) => Ok(gemini_error(
            status,
            "The mock was told to fail this call.",
            retry_after,
        )),
    }
}

/// The key from `x-goog-api-key`, or from the `key` query parameter as Gemini also accepts.
fn api_key_of(request: &Request<Incoming>) -> Option<String> {
    if let Some(value) = request.headers().get("x-goog-api-key") {
        return value.to_str().ok().map(str::to_owned);
    }
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .map(str::to_owned)
}

/// The text parts of one `Content` (`{"role", "parts": [...]}`), skipping other parts.
fn texts_of(content: &Value) -> Vec<&str> {
    content["parts"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .filter_map(|part| part["text"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Characters of text in the prompt (contents and system instruction), for the usage
/// metadata of every kind of answer.
fn prompt_chars(request: &Value) -> usize {
    let contents = request["contents"].as_array().map(Vec::as_slice);
    contents
        .unwrap_or_default()
        .iter()
        .chain(std::iter::once(&request["systemInstruction"]))
        .flat_map(texts_of)
        .map(|text| text.chars().count())
        .sum()
}

/// Rough token counts, four characters a token, so that callers can test their
/// accounting.
fn text_usage(prompt_chars: usize, output_chars: usize) -> Value {
    let prompt_tokens = prompt_chars.div_ceil(4);
    let output_tokens = output_chars.div_ceil(4);
    json!({
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens
    })
}

/// A `generateContent` answer with one candidate made of `parts`.
fn answer_with(parts: Value, usage: Value) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": usage,
        "modelVersion": "mock"
    })
}

/// A `generateContent` answer echoing the last user message.
fn reply_to(request: &Value) -> Value {
    let contents = request["contents"].as_array().map(Vec::as_slice);
    let last_user = contents
        .unwrap_or_default()
        .iter()
        .rev()
        .find(|content| content["role"] == "user")
        .and_then(|content| texts_of(content).last().copied())
        .unwrap_or_default();
    let text = format!("echo: {last_user}");
    let usage = text_usage(prompt_chars(request), text.chars().count());
    answer_with(json!([{ "text": text }]), usage)
}

/// The gRPC status name Gemini puts beside an HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// An error in Gemini's shape: `{"error": {"code", "message", "status", "details"?}}`.
fn gemini_error(status: u16, message: &str, retry_after_secs: Option<u64>) -> Answer {
    let mut error = json!({
        "code": status,
        "message": message,
        "status": status_name(status),
    });
    if let (429, Some(seconds)) = (status, retry_after_secs) {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{seconds}s")
        }]);
    }
    let mut answer = json_answer(status, &json!({ "error": error }));
    if let Some(seconds) = retry_after_secs {
        answer
            .headers_mut()
            .insert("retry-after", seconds.to_string().parse().expect("digits"));
    }
    answer
}

fn json_answer(status: u16, body: &Value) -> Answer {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, Answer> {
    let limited = http_body_util::Limited::new(request.into_body(), MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => Err(gemini_error(
            400,
            &format!("could not read the body: {error}"),
            None,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_paths() {
        assert_eq!(
            model_of("/v1beta/models/gemini-2.5-flash:generateContent"),
            Some("gemini-2.5-flash")
        );
        assert_eq!(model_of("/v1beta/models/:generateContent"), None);
        assert_eq!(model_of("/v1beta/models/a/b:generateContent"), None);
        assert_eq!(model_of("/v1/models/m:generateContent"), None);
        assert_eq!(model_of("/v1beta/models/m:streamGenerateContent"), None);
    }

    #[test]
    fn echoes_the_last_user_text_with_usage() {
        let request = json!({
            "systemInstruction": {"parts": [{"text": "1234"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "first"}]},
                {"role": "model", "parts": [{"text": "reply"}]},
                {"role": "user", "parts": [{"text": "a"}, {"text": "привет"}]}
            ]
        });
        let reply = reply_to(&request);
        assert_eq!(
            reply["candidates"][0]["content"]["parts"][0]["text"],
            "echo: привет"
        );
        assert_eq!(reply["candidates"][0]["finishReason"], "STOP");
        // 4 + 5 + 5 + 1 + 6 = 21 characters: 6 tokens; "echo: привет" 12: 3 tokens.
        assert_eq!(reply["usageMetadata"]["promptTokenCount"], 6);
        assert_eq!(reply["usageMetadata"]["candidatesTokenCount"], 3);
        assert_eq!(reply["usageMetadata"]["totalTokenCount"], 9);
    }

    #[test]
    fn behaviour_json_defaults_and_rejects_unknown_fields() {
        let behaviour: Behaviour = serde_json::from_str(r#"{"latency_ms": 5}"#).unwrap();
        assert_eq!(
            behaviour,
            Behaviour {
                latency_ms: 5,
                ..Behaviour::default()
            }
        );
        assert!(serde_json::from_str::<Behaviour>(r#"{"latncy_ms": 5}"#).is_err());
    }
}
