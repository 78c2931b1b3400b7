//! A steady chat load through a load balancer, for the fault tests: concurrent senders
//! post turns until stopped and record every answer, and [`assert_all_stored`] then proves
//! that no turn answered 200 was lost and none was half-stored.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{client, test_user, token, url};

/// One chat turn of the load: who sent it, what came back, how long it took.
#[derive(Debug, Clone)]
pub struct Turn {
    pub user: String,
    /// 0 when no answer came (connection refused or cut).
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
    pub took: Duration,
    pub at: Instant,
}

impl Turn {
    pub fn ended(&self) -> Instant {
        self.at + self.took
    }

    /// A real reply from the model.
    pub fn answered(&self) -> bool {
        self.status == 200 && self.body["degraded"] == false
    }
}

/// Chat turns sent to `target` by concurrent senders until finished.
pub struct Load {
    turns: Arc<Mutex<Vec<Turn>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `workers` senders, each its own user, each waiting 20 ms between turns.
    pub fn start(target: SocketAddr, workers: usize) -> Load {
        let turns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|w| {
                let (turns, stop) = (turns.clone(), stop.clone());
                tokio::spawn(async move {
                    let user = test_user(&format!("load-{w}"));
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let turn = send(target, &user, &format!("load {w} {n}")).await;
                        turns.lock().unwrap().push(turn);
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Load { turns, stop, tasks }
    }

    /// The turns sent from `from` on.
    pub fn since(&self, from: Instant) -> Vec<Turn> {
        let turns = self.turns.lock().unwrap();
        turns.iter().filter(|t| t.at >= from).cloned().collect()
    }

    /// The turns that ended from `from` on (those in flight then, too).
    pub fn ended_since(&self, from: Instant) -> Vec<Turn> {
        let turns = self.turns.lock().unwrap();
        turns
            .iter()
            .filter(|t| t.ended() >= from)
            .cloned()
            .collect()
    }

    pub async fn finish(self) -> Vec<Turn> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(self.turns).unwrap().into_inner().unwrap()
    }
}

async fn send(target: SocketAddr, user: &str, message: &str) -> Turn {
    let at = Instant::now();
    let response = client()
        .post(url(target, "/api/chat"))
        .bearer_auth(token(user))
        .json(&json!({ "message": message }))
        .send()
        .await;
    let (status, retry_after, body) = match response {
        Ok(r) => {
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (
                r.status().as_u16(),
                retry_after,
                r.json().await.unwrap_or(Value::Null),
            )
        }
        Err(_) => (0, None, Value::Null),
    };
    Turn {
        user: user.to_owned(),
        status,
        retry_after,
        body,
        took: at.elapsed(),
        at,
    }
}

/// `SELECT count(*) ...` on the database at `pg_url`.
pub async fn count(pg_url: &str, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(pg_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Every turn that answered 200 is stored with its reply, and no turn is half-stored
/// (a user message without the reply after it).
pub async fn assert_all_stored(pg_url: &str, turns: &[Turn]) {
    let ok: Vec<&Turn> = turns.iter().filter(|t| t.status == 200).collect();
    assert!(!ok.is_empty());
    let ids: Vec<String> = ok
        .iter()
        .flat_map(|t| [&t.body["user_message_id"], &t.body["message_id"]])
        .map(|id| id.as_i64().expect("ids in a 200 turn").to_string())
        .collect();
    let stored = format!(
        "SELECT count(*) FROM chat_history WHERE id IN ({})",
        ids.join(",")
    );
    assert_eq!(
        count(pg_url, &stored).await as usize,
        ids.len(),
        "a 200 turn not stored"
    );
    let users: Vec<String> = turns.iter().map(|t| format!("'{}'", t.user)).collect();
    let half = format!(
        "SELECT count(*) FROM users u WHERE u.external_id IN ({}) AND
           (SELECT count(*) FROM chat_history h WHERE h.user_id = u.id AND h.role = 'user')
        <> (SELECT count(*) FROM chat_history h WHERE h.user_id = u.id AND h.role = 'assistant')",
        users.join(",")
    );
    assert_eq!(count(pg_url, &half).await, 0, "a half-stored turn");
}
