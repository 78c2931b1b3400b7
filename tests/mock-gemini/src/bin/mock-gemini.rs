//! `mock-gemini`: runs the Gemini stand-in on a loopback port until interrupted, for the
//! benchmark and for running the app by hand.

use clap::Parser;
use evolve_mock_gemini::{Behaviour, MockConfig, MockGemini};
use std::net::SocketAddr;

#[derive(Parser)]
#[command(about = "A local stand-in for Gemini's generateContent REST API")]
struct Args {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// The key requests must send as `x-goog-api-key`.
    #[arg(long, env = "MOCK_GEMINI_API_KEY")]
    api_key: String,
    /// Delay before every answer, in milliseconds (changeable at runtime through
    /// `POST /_mock/config`).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = MockConfig {
        api_key: args.api_key,
        behaviour: Behaviour {
            latency_ms: args.latency_ms,
            ..Behaviour::default()
        },
    };
    let mock = MockGemini::bind(args.listen, config).await?;
    println!("mock-gemini listening on {}", mock.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
