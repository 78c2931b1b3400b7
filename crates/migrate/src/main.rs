//! `evolve-migrate`: applies the migrations built into this binary to one database.
//!
//! Usage: `evolve-migrate [--database-url URL]`; without the flag, `DATABASE_URL` is used.
//! Prints each migration it applies and the resulting schema version. Exits non-zero on
//! any error, with the database URL's password redacted.

use anyhow::{bail, Context};
use evolve_core::variables::{redact_url, scrub};
use postgres_native_tls::MakeTlsConnector;
use std::process::ExitCode;
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;

const USAGE: &str = "usage: evolve-migrate [--database-url URL]   (default: $DATABASE_URL)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let url = match database_url(std::env::args().skip(1)) {
        Ok(Some(url)) => url,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("evolve-migrate: {error:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("evolve-migrate: {}", scrub(&format!("{error:#}"), &url));
            ExitCode::FAILURE
        }
    }
}

/// The database URL from the arguments or the environment; `None` when help was asked for.
fn database_url(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<String>> {
    let mut url = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--database-url" => {
                url = Some(args.next().context("--database-url needs a value")?);
            }
            other => match other.strip_prefix("--database-url=") {
                Some(value) => url = Some(value.to_owned()),
                None => bail!("unknown argument {other:?}"),
            },
        }
    }
    let url = match url {
        Some(url) => url,
        None => std::env::var("DATABASE_URL")
            .context("no --database-url given and DATABASE_URL is not set")?,
    };
    if url.trim().is_empty() {
        bail!("the database URL is empty");
    }
    Ok(Some(url))
}

async fn run(url: &str) -> anyhow::Result<()> {
    let target = redact_url(url);
    let (mut client, connection) = connect(url)
        .await
        .with_context(|| format!("connecting to {target}"))?;

    let report = evolve_migrate::migrate(&mut client).await?;
    for applied in &report.applied {
        println!("applied {:04}_{}", applied.version, applied.name);
    }
    if report.applied.is_empty() {
        println!("{target}: schema up to date at version {}", report.version);
    } else {
        println!("{target}: schema now at version {}", report.version);
    }

    drop(client);
    connection.await.context("closing the connection")?;
    Ok(())
}

/// Connects as Spin's PostgreSQL factor does: TLS with the system's roots unless the URL
/// says `sslmode=disable` (with the default `prefer`, a server without TLS still works).
/// The connection is driven by a task that reports its own end.
async fn connect(
    url: &str,
) -> anyhow::Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
    let config: tokio_postgres::Config = url.parse()?;
    let report = |result: Result<(), tokio_postgres::Error>| {
        if let Err(error) = result {
            eprintln!("evolve-migrate: connection closed: {error}");
        }
    };
    if config.get_ssl_mode() == SslMode::Disable {
        let (client, connection) = config.connect(NoTls).await?;
        Ok((
            client,
            tokio::spawn(async move { report(connection.await) }),
        ))
    } else {
        let tls = MakeTlsConnector::new(native_tls::TlsConnector::new()?);
        let (client, connection) = config.connect(tls).await?;
        Ok((
            client,
            tokio::spawn(async move { report(connection.await) }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    fn parse(args: &[&str]) -> anyhow::Result<Option<String>> {
        database_url(args.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn takes_the_url_from_the_flag_in_both_forms() {
        let url = "postgres://evolve:evolve@127.0.0.1:5440/evolve";
        assert_eq!(
            parse(&["--database-url", url]).unwrap().as_deref(),
            Some(url)
        );
        let joined = format!("--database-url={url}");
        assert_eq!(parse(&[&joined]).unwrap().as_deref(), Some(url));
    }

    #[test]
    fn help_and_bad_arguments() {
        assert_eq!(parse(&["--help"]).unwrap(), None);
        let error = parse(&["--database-url"]).unwrap_err();
        assert!(error.to_string().contains("needs a value"), "{error}");
        let error = parse(&["--verbose"]).unwrap_err();
        assert!(error.to_string().contains("unknown argument"), "{error}");
        let error = parse(&["--database-url", " "]).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
    }
}
