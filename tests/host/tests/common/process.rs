//! The application as a process of its own (`evolve-host up`), for tests that kill it.

use std::time::{Duration, Instant};

use evolve_host::HostOptions;

/// An `evolve-host up` process of its own, killed when dropped.
pub struct HostProcess {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    /// Its stdout and stderr.
    log: std::path::PathBuf,
}

impl HostProcess {
    /// On a port of the host's choosing.
    pub async fn start(options: &HostOptions) -> HostProcess {
        Self::start_on(options, ([127, 0, 0, 1], 0).into()).await
    }

    /// On `listen` (a restarted instance takes its old address back).
    pub async fn start_on(options: &HostOptions, listen: std::net::SocketAddr) -> HostProcess {
        Self::spawn(options, listen, &[]).await
    }

    /// With extra environment variables, for what is process-wide in the host (such as
    /// `SSL_CERT_FILE`, the roots its TLS trusts).
    pub async fn start_with_env(options: &HostOptions, env: &[(&str, &str)]) -> HostProcess {
        Self::spawn(options, ([127, 0, 0, 1], 0).into(), env).await
    }

    async fn spawn(
        options: &HostOptions,
        listen: std::net::SocketAddr,
        env: &[(&str, &str)],
    ) -> HostProcess {
        let log = tempfile::Builder::new()
            .prefix("evolve-host-")
            .suffix(".log")
            .tempfile()
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        let output = std::fs::File::create(&log).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_evolve-host"));
        command
            .arg("up")
            .arg("--manifest")
            .arg(&options.manifest)
            .arg("--listen")
            // Port 0: one of the host's choosing, read back from what it prints (a port
            // picked here and handed over could be taken meanwhile).
            .arg(listen.to_string())
            .arg("--runtime-config-file")
            .arg(options.runtime_config.as_ref().unwrap())
            .args(
                options
                    .components
                    .iter()
                    .flat_map(|c| ["--component-id", c]),
            )
            .envs(&options.variables)
            .envs(env.iter().copied())
            .env("RUST_LOG", "evolve_host=info")
            .stdout(output.try_clone().unwrap())
            .stderr(output);
        let child = command.spawn().expect("evolve-host starts");
        let mut host = HostProcess {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            log,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = host.child.try_wait().unwrap() {
                panic!("evolve-host exited with {status}:\n{}", host.output());
            }
            // The host prints its address once it listens and has subscribed.
            let output = host.output();
            let served = output
                .lines()
                .find_map(|line| line.strip_prefix("Serving http://"))
                .and_then(|addr| addr.trim().parse().ok());
            if let Some(addr) = served {
                host.addr = addr;
                return host;
            }
            // Generous: an unoptimised (debug) host compiles the components slowly.
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "evolve-host did not start within 300 s:\n{output}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
