//! Shared pieces of the host's integration tests: the real Redis and PostgreSQL that
//! `scripts/test` starts (their URLs come from the environment), a host started on a
//! free loopback port, and a small HTTP client.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use evolve_host::runtime_config::RuntimeConfig;
use evolve_host::{HostOptions, Running, Triggers};

pub mod load;
pub mod nginx;
pub mod postgres;
pub mod process;

pub fn redis_url() -> String {
    std::env::var("EVOLVE_TEST_REDIS_URL")
        .expect("EVOLVE_TEST_REDIS_URL is not set: run the tests through scripts/test")
}

pub fn pg_url() -> String {
    std::env::var("EVOLVE_TEST_PG_URL")
        .expect("EVOLVE_TEST_PG_URL is not set: run the tests through scripts/test")
}

/// `host:port` of a URL, for `allowed_outbound_hosts` variables.
pub fn host_port(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    format!("{}:{}", u.host_str().unwrap(), u.port().unwrap())
}

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A key prefix no other test uses, so tests can share one Redis.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test:{test}:{nanos}:")
}

pub async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("test Redis is not reachable")
}

/// Options for the test fixtures' manifest, pointed at the test servers.
pub fn fixture_options(prefix: &str, runtime_config: &std::path::Path) -> HostOptions {
    let mut options = HostOptions::new(workspace().join("tests/fixtures/spin.toml"));
    options.runtime_config = Some(runtime_config.to_path_buf());
    options.variables = HashMap::from([
        ("SPIN_VARIABLE_REDIS_URL".to_string(), redis_url()),
        (
            "SPIN_VARIABLE_REDIS_HOST".to_string(),
            host_port(&redis_url()),
        ),
        ("SPIN_VARIABLE_PG_HOST".to_string(), host_port(&pg_url())),
        ("SPIN_VARIABLE_KEY_PREFIX".to_string(), prefix.to_string()),
        ("SPIN_VARIABLE_API_TOKEN".to_string(), "t0ken".to_string()),
    ]);
    options
}

/// A runtime config file with a Redis-backed `cache` store, in a temp folder.
pub fn runtime_config(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("runtime-config.toml");
    std::fs::write(&path, RuntimeConfig::with_cache_in(&redis_url())).unwrap();
    path
}

pub async fn start(options: &HostOptions, triggers: Triggers) -> Running {
    evolve_host::start(options, "127.0.0.1:0".parse().unwrap(), triggers)
        .await
        .expect("host failed to start")
}

pub const HTTP_ONLY: Triggers = Triggers {
    cron: false,
    redis: false,
};

/// Every trigger, as `spin up` runs the manifest.
pub const ALL_TRIGGERS: Triggers = Triggers {
    cron: true,
    redis: true,
};

/// HTTP and the Redis trigger (the worker's wake-ups), no cron schedule.
pub const WAKE_UPS: Triggers = Triggers {
    cron: false,
    redis: true,
};

/// HTTP and the cron schedules, no Redis trigger.
pub const CRON: Triggers = Triggers {
    cron: true,
    redis: false,
};

/// Held by the tests that load the whole machine (several instances under a steady load,
/// with time bounds on every answer): they run one at a time, as two of them on the same
/// cores would each stretch the other's answers past its bounds. Other tests still run
/// beside them.
pub async fn whole_machine() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// POSTs an operation to the probe component and returns its JSON answer.
pub async fn probe(addr: SocketAddr, path: &str, op: serde_json::Value) -> serde_json::Value {
    let response = client()
        .post(url(addr, path))
        .json(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "probe answered {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The manifest of the build under test: `spin.toml` (spin-sdk 6, WASIp3) unless
/// `EVOLVE_TEST_MANIFEST` names another, such as `spin.p2.toml` (spin-sdk 5.2, WASIp2);
/// scripts/test runs the application's tests once per build.
pub fn app_manifest() -> PathBuf {
    let name = std::env::var("EVOLVE_TEST_MANIFEST").unwrap_or_else(|_| "spin.toml".to_owned());
    workspace().join(name)
}

/// Whether the build under test is the WASIp3 one (spin-sdk 6), which can abandon a
/// host call; the WASIp2 build cannot.
pub fn wasip3_build() -> bool {
    app_manifest().file_name().and_then(|n| n.to_str()) != Some("spin.p2.toml")
}

/// Sends `signal` (`-STOP`, `-CONT`) to each process.
pub fn signal(signal: &str, pids: &[u32]) {
    let status = std::process::Command::new("kill")
        .arg(signal)
        .args(pids.iter().map(u32::to_string))
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pids:?}");
}

/// Sends SIGCONT to its processes when dropped, so a test that fails while a shared
/// server is paused (its resuming task never runs) does not leave it stopped for the
/// tests after it. Resuming a running process does nothing.
pub struct Thaw(pub Vec<u32>);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-CONT")
            .args(self.0.iter().map(u32::to_string))
            .status();
    }
}

/// `options` without the components the Redis trigger runs (`spin up --component-id`
/// for each other one): an instance that serves HTTP and cron while the worker runs as a
/// process of its own. Spin's Redis trigger ends the whole process when its connection
/// drops, so an instance that carries it goes down with Redis.
pub fn without_redis_trigger(options: &HostOptions) -> HostOptions {
    let manifest = evolve_host::manifest::Manifest::load(&options.manifest).unwrap();
    let mut options = options.clone();
    options.components = manifest
        .component
        .keys()
        .filter(|id| !manifest.trigger.redis.iter().any(|t| &t.component == *id))
        .cloned()
        .collect();
    options
}

/// `options` with only the components the Redis trigger runs: the worker process.
pub fn redis_trigger_only(options: &HostOptions) -> HostOptions {
    let manifest = evolve_host::manifest::Manifest::load(&options.manifest).unwrap();
    let mut options = options.clone();
    options.components = manifest
        .trigger
        .redis
        .iter()
        .map(|t| t.component.clone())
        .collect();
    options
}

/// A runtime config whose `cache` store is `redis_url`, in a file named after its
/// content: the host reads it while the test runs, so it outlives the test, and the fixed
/// name keeps runs from filling the temporary directory (one file per Redis URL).
fn runtime_config_file(redis_url: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let content = RuntimeConfig::with_cache_in(redis_url);
    // DefaultHasher::new() has fixed keys: the same content gives the same name in every run.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    content.hash(&mut hasher);
    let path = std::env::temp_dir().join(format!(
        "evolve-test-runtime-config-{:016x}.toml",
        hasher.finish()
    ));
    if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
        // Written beside and renamed: a host of another test may be reading the file.
        let staged = tempfile::NamedTempFile::new_in(std::env::temp_dir()).unwrap();
        std::fs::write(staged.path(), &content).unwrap();
        staged.persist(&path).unwrap();
    }
    path
}

/// The application (see [`app_manifest`]) pointed at the given Redis and PostgreSQL, with
/// test secrets and a runtime config whose `cache` store is that Redis.
pub fn app_options(redis_url: &str, pg_url: &str) -> HostOptions {
    let runtime_config = runtime_config_file(redis_url);
    let mut options = HostOptions::new(app_manifest());
    options.runtime_config = Some(runtime_config);
    for (name, value) in [
        ("REDIS_URL", redis_url.to_string()),
        ("REDIS_HOST", host_port(redis_url)),
        ("PG_URL", pg_url.to_string()),
        ("PG_HOST", host_port(pg_url)),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("METRICS_TOKEN", METRICS_TOKEN.to_string()),
        ("JWT_SECRET", JWT_SECRET.to_string()),
        ("GEMINI_API_KEY", GEMINI_KEY.to_string()),
    ] {
        options
            .variables
            .insert(format!("SPIN_VARIABLE_{name}"), value);
    }
    options
}

pub const JWT_SECRET: &str = "test-jwt-secret";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const METRICS_TOKEN: &str = "test-metrics-token";
pub const GEMINI_KEY: &str = "test-gemini-key";

/// Sets application variable `name` (lower case) on `options`.
pub fn set_var(options: &mut HostOptions, name: &str, value: impl ToString) {
    options.variables.insert(
        format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
        value.to_string(),
    );
}

/// The test Redis with its database number `db` (see [`RedisDb`]).
pub fn redis_db(db: u8) -> String {
    format!("{}/{db}", redis_url().trim_end_matches('/'))
}

/// Databases of the test Redis that tests claim (scripts/services starts it with 64).
const CLAIMABLE_DBS: std::ops::RangeInclusive<u8> = 1..=63;

/// A database of the test Redis that this test alone uses: tests that touch
/// application-wide keys (the breaker, the cache counters, job records) each claim one.
/// The claim is a key in database 0 (`SET NX` with an expiry, so a crashed run frees it);
/// a claimed database starts empty, and dropping the claim frees it for the next test of
/// any test binary.
pub struct RedisDb {
    pub number: u8,
    claim: String,
    token: String,
}

impl RedisDb {
    pub async fn claim() -> RedisDb {
        let mut admin = redis_in(0).await;
        let token = format!("{}:{}", std::process::id(), unique_prefix("db"));
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            for number in CLAIMABLE_DBS {
                let claim = format!("evolve-test:redis-db:{number}");
                let taken: Option<String> = redis::cmd("SET")
                    .arg(&claim)
                    .arg(&token)
                    .arg("NX")
                    .arg("EX")
                    .arg(1_800)
                    .query_async(&mut admin)
                    .await
                    .unwrap();
                if taken.is_some() {
                    flush_redis_db(number).await;
                    return RedisDb {
                        number,
                        claim,
                        token,
                    };
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no free database in the test Redis for 120 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The URL of this database.
    pub fn url(&self) -> String {
        redis_db(self.number)
    }
}

impl Drop for RedisDb {
    fn drop(&mut self) {
        // Compare-and-delete: a claim that expired and was taken again stays taken.
        let release = || -> redis::RedisResult<()> {
            let mut conn = redis::Client::open(redis_db(0))?.get_connection()?;
            redis::cmd("EVAL")
                .arg("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
                .arg(1)
                .arg(&self.claim)
                .arg(&self.token)
                .query::<i64>(&mut conn)
                .map(drop)
        };
        let _ = release();
    }
}

/// Applies the migrations to the test database (idempotent).
pub async fn migrated() {
    let (mut client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .expect("test PostgreSQL is not reachable");
    tokio::spawn(connection);
    evolve_migrate::migrate(&mut client)
        .await
        .expect("migrations failed");
}

pub async fn pg() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .expect("test PostgreSQL is not reachable");
    tokio::spawn(connection);
    client
}

/// A user bearer token for `sub`, valid for an hour.
pub fn token(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = evolve_core::auth::Claims {
        sub: evolve_core::ids::UserRef::parse(sub).unwrap(),
        exp,
    };
    evolve_core::auth::sign(&claims, JWT_SECRET.as_bytes())
}

/// How many chat history rows the test database holds for a user.
pub async fn stored_rows(external_id: &str) -> i64 {
    pg().await
        .query_one(
            "SELECT count(*) FROM chat_history h JOIN users u ON u.id = h.user_id WHERE u.external_id = $1",
            &[&external_id],
        )
        .await
        .unwrap()
        .get(0)
}

/// Empties one database of the test Redis.
pub async fn flush_redis_db(db: u8) {
    let mut conn = redis_in(db).await;
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
}

/// A free port on the loopback interface (nothing listens there once this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis server of the test's own, on a free loopback port, for tests that stop it.
/// Dropping it stops it too.
pub struct OwnRedis {
    pub url: String,
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    pub async fn start() -> OwnRedis {
        let port = free_port();
        let url = format!("redis://127.0.0.1:{port}");
        let child = Self::spawn(port, &url).await;
        OwnRedis { url, port, child }
    }

    /// Starts the stopped server again on its port (empty: it keeps no data).
    pub async fn start_again(&mut self) {
        self.child = Self::spawn(self.port, &self.url).await;
    }

    async fn spawn(port: u16, url: &str) -> std::process::Child {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server not installed");
        let up = eventually(Duration::from_secs(10), || async {
            redis::Client::open(url)
                .ok()?
                .get_multiplexed_async_connection()
                .await
                .ok()
        })
        .await;
        assert!(up.is_some(), "redis-server on port {port} did not start");
        child
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, how: &str) {
        signal(how, &[self.child.id()]);
    }

    /// Stops the server and waits until it is gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        // A paused server would not act on SIGKILL's consequences until resumed.
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        self.stop();
    }
}

/// A user id no other test uses, made of characters every id check accepts.
pub fn test_user(test: &str) -> String {
    unique_prefix(test)
        .replace(':', ".")
        .trim_end_matches('.')
        .to_string()
}

/// The work queue's recent result records (`evolve:{queue}:results`) in database `db` of
/// the test Redis, newest first.
pub async fn queue_results(db: u8) -> Vec<serde_json::Value> {
    let mut conn = redis_in(db).await;
    let records: Vec<String> = redis::cmd("LRANGE")
        .arg(evolve_core::keys::QUEUE_RESULTS)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    records
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

/// A connection to database `db` of the test Redis (see [`redis_db`]).
pub async fn redis_in(db: u8) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_db(db))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A PostgreSQL database of the test's own on the test server, dropped (with its
/// connections) when the guard is dropped, even when the test fails. The `evolve` role
/// has CREATEDB.
pub struct ScratchDb {
    pub name: String,
    pub url: String,
}

impl ScratchDb {
    /// An empty database (no migrations).
    pub async fn empty(test: &str) -> ScratchDb {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("evolve_{test}_{}_{nanos}_{n}", std::process::id());
        pg().await
            .execute(&format!("CREATE DATABASE {name}"), &[])
            .await
            .expect("cannot create a scratch database (does the role have CREATEDB?)");
        let mut url = url::Url::parse(&pg_url()).unwrap();
        url.set_path(&name);
        ScratchDb {
            name,
            url: url.to_string(),
        }
    }

    /// A database with the migrations applied.
    pub async fn migrated(test: &str) -> ScratchDb {
        let scratch = ScratchDb::empty(test).await;
        let (mut client, connection) = tokio_postgres::connect(&scratch.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        evolve_migrate::migrate(&mut client)
            .await
            .expect("migrations failed");
        scratch
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which may be unwinding: drop the database
        // from a thread of its own with a runtime of its own.
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let (client, connection) =
                        tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await?;
                    tokio::spawn(connection);
                    client.batch_execute(&statement).await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the scratch database {}", self.name);
        }
    }
}
