//! `GET /admin/breakers`: every shared circuit breaker, as all instances see it.

use evolve_core::keys;
use evolve_platform::breaker::Breaker;
use evolve_platform::http::Response;
use evolve_platform::time;
use serde_json::json;

use crate::{reply, Context};

pub async fn get(context: &Context) -> Response {
    let thresholds = context.config.breaker;
    let redis = match context.redis.get().await {
        Ok(redis) => redis,
        Err(error) => return reply::unavailable("Redis", &error),
    };
    // The chat model's breaker and the speech model's: the same thresholds, own states.
    let mut breakers = Vec::new();
    for (name, key) in [("llm", keys::BREAKER_STATE), ("tts", keys::BREAKER_TTS)] {
        let stats = match Breaker::with_key(thresholds, key)
            .stats(redis, time::now_ms())
            .await
        {
            Ok(stats) => stats,
            Err(error) => return reply::unavailable("Redis", &error),
        };
        let mut breaker = serde_json::to_value(&stats).expect("breaker stats serialize");
        breaker["name"] = json!(name);
        breaker["thresholds"] = json!({
            "failure_threshold": thresholds.failure_threshold,
            "success_threshold": thresholds.success_threshold,
            "open_seconds": thresholds.open.as_secs(),
        });
        breakers.push(breaker);
    }
    reply::json(200, &json!({ "breakers": breakers }))
}
