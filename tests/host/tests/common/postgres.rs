//! A PostgreSQL server of a test's own, for what the shared test server must not be put
//! through: stopped and started again, paused, started with settings of the test's
//! choosing (`pg_stat_statements` preloaded), or given a streaming replica. Runs as the
//! `postgres` OS user, as PostgreSQL requires; stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::free_port;

pub struct OwnPostgres {
    pub url: String,
    bin: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
    data: PathBuf,
    options: String,
    _dir: tempfile::TempDir,
}

impl OwnPostgres {
    /// A new cluster on a free loopback port, its `postgres` database reached as the
    /// `postgres` role (trust), with `pg_stat_statements` preloaded.
    pub fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries are not installed")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("no /usr/lib/postgresql/*/bin/initdb");
        let dir = own_dir();
        let data = dir.path().join("data");
        as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        let server = OwnPostgres::on(bin, dir, data);
        server.start_again();
        server
    }

    /// A streaming replica of this server (`pg_basebackup -R`, as `scripts/replica`
    /// makes), started on a port of its own.
    pub fn replica(&self) -> OwnPostgres {
        let dir = own_dir();
        let data = dir.path().join("data");
        as_postgres(
            &self.bin.join("pg_basebackup"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                data.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        );
        let replica = OwnPostgres::on(self.bin.clone(), dir, data);
        replica.start_again();
        replica
    }

    fn on(bin: PathBuf, dir: tempfile::TempDir, data: PathBuf) -> OwnPostgres {
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c shared_preload_libraries=pg_stat_statements",
            dir.path().display()
        );
        OwnPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            pg_ctl: bin.join("pg_ctl"),
            bin,
            port,
            data,
            options,
            _dir: dir,
        }
    }

    /// Starts the stopped server again, on its port and data, and waits until it accepts
    /// connections.
    pub fn start_again(&self) {
        let data = self.data.to_str().unwrap();
        as_postgres(
            &self.pg_ctl,
            &[
                "-D",
                data,
                "-o",
                &self.options,
                "-l",
                &format!("{data}/log"),
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: open connections are closed) and waits until it
    /// is gone.
    pub fn stop(&self) {
        as_postgres(
            &self.pg_ctl,
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    /// The server's processes: the postmaster and its children (every backend), for
    /// tests that pause the server with SIGSTOP.
    pub fn processes(&self) -> Vec<u32> {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap();
        let postmaster: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster.to_string()])
            .output()
            .unwrap();
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8(children.stdout)
                .unwrap()
                .split_whitespace()
                .map(|pid| pid.parse::<u32>().unwrap()),
        );
        pids
    }

    /// Applies the application's migrations.
    pub async fn migrated(self) -> OwnPostgres {
        let (mut client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("the test's own PostgreSQL is not reachable");
        tokio::spawn(connection);
        evolve_migrate::migrate(&mut client)
            .await
            .expect("migrations failed");
        self
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&self.pg_ctl)
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .current_dir("/")
            .output();
    }
}

/// A temporary folder the `postgres` user owns.
fn own_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("evolve-test-pg-")
        .tempdir()
        .unwrap();
    let chown = Command::new("chown")
        .args(["postgres:postgres", dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    dir
}

fn as_postgres(program: &Path, args: &[&str]) {
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .current_dir("/")
        .output()
        .expect("runuser");
    assert!(
        output.status.success(),
        "{program:?} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
