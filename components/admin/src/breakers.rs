//! `GET /admin/breakers`: every shared circuit breaker, as all instances see it.

use evolve_platform::breaker::Breaker;
use evolve_platform::http::Response;
use evolve_platform::time;
use serde_json::json;

use crate::{reply, Context};

pub async fn get(context: &Context) -> Response {
    let thresholds = context.config.breaker;
    let breaker = Breaker::new(thresholds);
    let stats = match context.redis.get().await {
        Ok(redis) => breaker.stats(redis, time::now_ms()).await,
        Err(error) => Err(error),
    };
    match stats {
        Ok(stats) => {
            let mut llm = serde_json::to_value(&stats).expect("breaker stats serialize");
            llm["name"] = json!("llm");
            llm["thresholds"] = json!({
                "failure_threshold": thresholds.failure_threshold,
                "success_threshold": thresholds.success_threshold,
                "open_seconds": thresholds.open.as_secs(),
            });
            reply::json(200, &json!({ "breakers": [llm] }))
        }
        Err(error) => reply::unavailable("Redis", &error),
    }
}
