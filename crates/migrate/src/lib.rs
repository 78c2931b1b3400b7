//! Brings a PostgreSQL database to the schema this build expects.
//!
//! The migrations are the SQL files compiled into `evolve_core::schema::MIGRATIONS`. Each
//! one runs in its own transaction together with the row that records it in
//! `schema_migrations`, so a migration is either fully applied and recorded or not at all.
//! A session-level advisory lock serialises runners, so several deploys (or instances)
//! starting at once apply each migration exactly once. An applied migration whose file
//! has since changed is an error: the database would not match what the code says.

use anyhow::{bail, Context};
use evolve_core::schema::{self, Migration};
use tokio_postgres::Client;

/// Advisory lock key held while migrating ("evolve" in ASCII). Advisory locks are per
/// database, so this only serialises runners working on the same database.
pub const LOCK_KEY: i64 = 0x0000_6576_6f6c_7665;

/// The table recording applied migrations.
const CREATE_TABLE: &str = "\
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    int primary key,
    name       text not null,
    checksum   text not null,
    applied_at timestamptz not null default now()
)";

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Migrations applied by this run, in order.
    pub applied: Vec<Applied>,
    /// The schema version after the run.
    pub version: i32,
}

/// A migration applied by this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i32,
    pub name: &'static str,
}

/// Applies every migration the database lacks, after checking the ones it has.
///
/// Safe to run repeatedly and concurrently: runners queue on the advisory lock and
/// each sees what the previous one recorded.
pub async fn migrate(client: &mut Client) -> anyhow::Result<Report> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let outcome = migrate_locked(client).await;
    // Release the lock whatever happened; if the connection is gone, the server has
    // already released it with the session.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .context("releasing the migration lock");
    let report = outcome?;
    unlocked?;
    Ok(report)
}

async fn migrate_locked(client: &mut Client) -> anyhow::Result<Report> {
    client
        .batch_execute(CREATE_TABLE)
        .await
        .context("creating schema_migrations")?;

    let rows = client
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .context("reading schema_migrations")?;
    let mut current = 0;
    for row in &rows {
        let version: i32 = row.get("version");
        let name: String = row.get("name");
        let checksum: String = row.get("checksum");
        verify_applied(version, &name, &checksum)?;
        current = current.max(version);
    }

    let mut applied = Vec::new();
    for migration in schema::MIGRATIONS {
        if rows
            .iter()
            .any(|row| row.get::<_, i32>("version") == migration.version)
        {
            continue;
        }
        apply(client, migration).await?;
        applied.push(Applied {
            version: migration.version,
            name: migration.name,
        });
        current = current.max(migration.version);
    }
    Ok(Report {
        applied,
        version: current,
    })
}

/// An applied migration must be one this build knows, unchanged.
fn verify_applied(version: i32, name: &str, checksum: &str) -> anyhow::Result<()> {
    let Some(known) = schema::find(version) else {
        bail!(
            "the database has migration {version:04}_{name} applied, which this build does not \
             know (it expects up to version {}); run a newer evolve-migrate",
            schema::EXPECTED_VERSION
        );
    };
    let expected = known.checksum();
    if checksum != expected {
        bail!(
            "migration {} was changed after it was applied: checksum in the database {checksum}, \
             in this build {expected}; restore the file or add a new migration instead",
            known.file_name()
        );
    }
    Ok(())
}

async fn apply(client: &mut Client, migration: &Migration) -> anyhow::Result<()> {
    let context = || format!("applying migration {}", migration.file_name());
    let transaction = client.transaction().await.with_context(context)?;
    transaction
        .batch_execute(migration.sql)
        .await
        .with_context(context)?;
    transaction
        .execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.name, &migration.checksum()],
        )
        .await
        .with_context(context)?;
    transaction.commit().await.with_context(context)?;
    Ok(())
}
