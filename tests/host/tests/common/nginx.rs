//! nginx in front of instances, with the repository's own configuration: `deploy/nginx`,
//! rendered for the given instances by `scripts/cluster nginx-conf`, as `scripts/cluster
//! up` renders it. On a free loopback port; stopped when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port, workspace};

pub struct Nginx {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
}

impl Nginx {
    pub async fn start(upstreams: &[SocketAddr]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let rendered = Command::new(workspace().join("scripts/cluster"))
            .arg("nginx-conf")
            .arg(dir.path())
            .arg(addr.to_string())
            .args(upstreams.iter().map(SocketAddr::to_string))
            .output()
            .unwrap();
        assert!(
            rendered.status.success(),
            "scripts/cluster nginx-conf: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let conf = PathBuf::from(String::from_utf8(rendered.stdout).unwrap().trim());
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(format!("{}/", dir.path().display()))
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("nginx-error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts (scripts/bootstrap installs it)");
        let nginx = Nginx { addr, dir, child };
        let up = eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(addr).await.ok()
        })
        .await;
        assert!(up.is_some(), "nginx did not listen:\n{}", nginx.error_log());
        nginx
    }

    /// The access log: one line per request, with `rid=` and `upstream=` (every
    /// instance tried).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The access log once it has a line containing `text` (nginx logs a request after
    /// answering it); panics after 5 s.
    pub async fn access_log_with(&self, text: &str) -> String {
        eventually(Duration::from_secs(5), || async {
            let log = self.access_log();
            log.contains(text).then_some(log)
        })
        .await
        .unwrap_or_else(|| panic!("no {text} in the access log:\n{}", self.access_log()))
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nginx-error.log")).unwrap_or_default()
    }
}

fn nginx_bin() -> &'static str {
    if std::path::Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master stops its workers (a killed master would leave
        // them serving the port).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
