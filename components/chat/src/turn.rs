//! `POST /api/chat`: one chat turn.
//!
//! Input is checked first, then the `Idempotency-Key` claim (a repeated request gets the
//! first answer without a second LLM call or stored turn), then the rate limit, the
//! profile and recent history, the shared breaker, the LLM, and the turn is stored.
//!
//! Faults and their answers:
//! - LLM failing or breaker open: the FastAPI service's fallback reply, `degraded: true`, both
//!   messages stored and flagged, so the unanswered exchange never enters a prompt; an
//!   `Idempotency-Key` claim is released rather than completed, so a retry runs again.
//! - Redis down: the turn still runs. The breaker cannot be consulted, so the LLM is
//!   called (its own timeout and budget still bound the turn); the rate limit and the
//!   idempotency record cannot be kept, so they are skipped; the answer says `degraded`.
//! - PostgreSQL down: 503 with a reason and `Retry-After`, before the LLM is called when
//!   the outage is already visible; nothing is half-stored (the turn is one INSERT), and
//!   the idempotency claim is released so the client's retry runs as soon as it comes.

use evolve_core::breaker::Decision;
use evolve_core::config::{HistorySettings, TurnSettings};
use evolve_core::ids::IdempotencyKey;
use evolve_core::input::{self, ChatRequest};
use evolve_core::keys;
use evolve_core::limits::{Begin, Claim, Fingerprint, RateDecision, RateLimit, StoredResponse};
use evolve_core::llm::{self, Turn};
use evolve_core::problem::Problem;
use evolve_core::profile::Role;
use evolve_platform::breaker::Breaker;
use evolve_platform::http::{Request, Response};
use evolve_platform::metrics::Recorder;
use evolve_platform::pg::PgError;
use evolve_platform::redis::Redis;
use evolve_platform::{limits, queue, store, time};
use serde_json::json;

use crate::context::{self, Context};
use crate::profile;
use evolve_platform::reply;

/// This request's claim on its idempotency key.
struct Claimed<'a> {
    redis: &'a Redis,
    key: String,
    claim: Claim,
}

impl Claimed<'_> {
    async fn release(self) {
        let _ = limits::abandon(self.redis, &self.key, &self.claim).await;
    }
}

pub async fn post(context: &Context, request: &Request, metrics: &Recorder) -> Response {
    let (settings, history) = match (
        context.turn_settings().await,
        context.history_settings().await,
    ) {
        (Ok(settings), Ok(history)) => (settings, history),
        (Err(problem), _) | (_, Err(problem)) => return reply::problem(&problem),
    };
    let content_type = request.header("content-type");
    let parsed = input::require_json(content_type)
        .and_then(|()| ChatRequest::parse(request.body(), settings.max_message_chars))
        .and_then(|chat| {
            let key = request
                .header_bytes("idempotency-key")
                // A key that is not UTF-8 is refused as malformed, not ignored.
                .map(|v| std::str::from_utf8(v).unwrap_or("\u{7f}"))
                .map(IdempotencyKey::parse)
                .transpose()?;
            Ok((chat, key))
        });
    let (chat, idempotency_key) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return reply::problem(&error.into()),
    };

    let redis = context.redis.get().await.ok();
    let mut degraded = redis.is_none();

    let claimed = match (&idempotency_key, redis) {
        (Some(key), Some(redis)) => {
            let key = keys::idempotency(&context.user, key);
            let token = format!("{:016x}", time::random_u64());
            let claim = Claim::new(
                &token,
                Fingerprint::of(&[b"POST /api/chat", chat.message.as_bytes()]),
            );
            match limits::begin(redis, &key, &claim).await {
                Ok(Begin::Started) => Some(Claimed { redis, key, claim }),
                Ok(Begin::Done(stored)) => return replay(&stored),
                Ok(refused) => {
                    let problem = refused
                        .refusal()
                        .expect("only Started and Done are not refusals");
                    return reply::problem(&problem);
                }
                Err(_) => {
                    degraded = true;
                    None
                }
            }
        }
        _ => None,
    };

    let rate = RateLimit::per_minute(settings.rate_limit_per_minute);
    if let (Some(redis), true) = (redis, rate.is_enabled()) {
        match limits::check_rate(redis, &keys::chat_rate_limit(&context.user), &rate).await {
            Ok(limited @ RateDecision::Limited { .. }) => {
                if let Some(claimed) = claimed {
                    claimed.release().await;
                }
                return reply::problem(&limited.problem().expect("limited"));
            }
            Ok(RateDecision::Allowed { .. }) => {}
            Err(_) => degraded = true,
        }
    }

    let answer = match run_turn(context, &settings, &history, redis, &chat.message, metrics).await {
        Ok(answer) => answer,
        Err(error) => {
            if let Some(claimed) = claimed {
                claimed.release().await;
            }
            return reply::problem(&unavailable(&error));
        }
    };
    // A real exchange counts towards the user's next dialog analysis (a fallback reply is
    // not part of the dialog). Missing one when Redis fails costs an analysis a turn late.
    if let (Some(redis), false) = (redis, answer.fallback) {
        let _ = queue::count_turn(
            redis,
            &context.user,
            answer.user_id,
            settings.analysis_every_turns,
            &settings.queue_channel,
        )
        .await;
    }
    let body = json!({
        "reply": answer.reply,
        "message_id": answer.stored.reply_id,
        "user_message_id": answer.stored.user_message_id,
        "degraded": degraded || answer.degraded,
    });
    let response = reply::json(200, &body);
    match claimed {
        // A fallback reply is not kept for replay: a retry with the same key, once the
        // LLM answers again, gets a real reply. The fallback exchange stays in history,
        // flagged degraded, and never enters a prompt.
        Some(claimed) if answer.fallback => claimed.release().await,
        Some(claimed) => {
            let stored = StoredResponse {
                status: 200,
                content_type: "application/json".to_owned(),
                body: body.to_string(),
            };
            let _ = limits::finish(claimed.redis, &claimed.key, &claimed.claim, &stored).await;
        }
        None => {}
    }
    response
}

struct Answer {
    user_id: i64,
    reply: String,
    stored: store::StoredTurn,
    degraded: bool,
    /// The reply is the fallback, not the LLM's.
    fallback: bool,
}

/// Profile and history, the LLM behind the breaker, and the stored turn.
async fn run_turn(
    context: &Context,
    settings: &TurnSettings,
    history_settings: &HistorySettings,
    redis: Option<&Redis>,
    message: &str,
    metrics: &Recorder,
) -> Result<Answer, PgError> {
    let (user, source) = profile::load(context).await?;
    let pg = context.pg.get().await?;
    let history: Vec<Turn> = store::recent_turns(
        &pg,
        user.user_id,
        context::history_cutoff_ms(history_settings),
        i64::from(settings.history_turns),
    )
    .await?
    .into_iter()
    .map(|(role, text)| match role {
        Role::User => Turn::user(text),
        Role::Assistant => Turn::assistant(text),
    })
    .collect();
    // The model may take seconds: the connection goes back to the pool meanwhile, and
    // the turn takes one again to store itself.
    drop(pg);
    context.pg.release();

    let breaker = Breaker::new(settings.breaker);
    let decision = match redis {
        Some(redis) => breaker.acquire(redis, time::now_ms()).await,
        None => Ok(Decision::Allow),
    };
    let breaker_unknown = decision.is_err();
    let (reply, llm_failed) = match decision.unwrap_or(Decision::Allow) {
        Decision::Reject { .. } => (llm::FALLBACK_REPLY.to_owned(), true),
        decision @ (Decision::Allow | Decision::Probe(_)) => {
            let request = llm::build_request(
                llm::DEFAULT_PERSONA,
                &user.memory,
                &user.data,
                &history,
                message,
            );
            let call = evolve_platform::llm::call_gemini(&settings.llm, &request).await;
            metrics.llm_call(&call);
            if let (Some(redis), false) = (redis, breaker_unknown) {
                let _ = breaker
                    .record(
                        redis,
                        call.breaker_outcome(),
                        decision.probe(),
                        time::now_ms(),
                    )
                    .await;
            }
            match call.result {
                Ok(reply) => (reply.text, false),
                Err(_) => (llm::FALLBACK_REPLY.to_owned(), true),
            }
        }
    };
    let pg = context.pg.get().await?;
    let stored = store::insert_turn(&pg, user.user_id, message, &reply, llm_failed).await?;
    context
        .replica
        .note_write(&pg, &context.redis, &context.user)
        .await;
    Ok(Answer {
        user_id: user.user_id,
        reply,
        stored,
        degraded: llm_failed || breaker_unknown || source == evolve_core::cache::Source::Bypassed,
        fallback: llm_failed,
    })
}

fn unavailable(error: &PgError) -> Problem {
    Problem::service_unavailable(
        format!(
            "the chat history store is unavailable ({}); the message was not stored",
            error.operation
        ),
        Some(5),
    )
}

fn replay(stored: &StoredResponse) -> Response {
    Response::new(stored.status, stored.body.clone())
        .with_header("content-type", stored.content_type.as_str())
        .with_header("cache-control", "no-store")
        .with_header("idempotent-replayed", "true")
}
