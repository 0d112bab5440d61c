//! A private SSH bastion for the tunnel tests: OpenSSH's `sshd` on 127.0.0.1 and a free port,
//! with a host key and a user key generated into a temporary directory, key-only login for the
//! current user, and forwarding allowed only to the local PostgreSQL (`PermitOpen`). The local
//! stack installs the binary (`scripts/stack up`); each test starts its own server, and
//! [`Bastion::kill`] (or dropping it) ends the server and every session process it forked.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tidemark::config::TunnelConfig;

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd and its keys.
pub struct Bastion {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    host_key: String,
    pid: Option<u32>,
    _child: tokio::process::Child,
}

async fn keygen(path: &Path) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "tidemark-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .await
        .context("running ssh-keygen (package openssh-client)")?;
    if !status.success() {
        bail!("ssh-keygen failed for {}", path.display());
    }
    Ok(())
}

fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".to_owned())
}

impl Bastion {
    /// Generates the keys and starts sshd, forwarding only to `forward_to` (`host:port`).
    pub async fn start(forward_to: &str) -> anyhow::Result<Self> {
        if !Path::new(SSHD).exists() {
            bail!("{SSHD} is missing: run `scripts/stack up` (it installs openssh-server)");
        }
        std::fs::create_dir_all("/run/sshd").context("creating /run/sshd for sshd")?;
        let dir = tempfile::tempdir()?;
        let host_key = dir.path().join("host_key");
        let user_key = dir.path().join("user_key");
        keygen(&host_key).await?;
        keygen(&user_key).await?;
        std::fs::copy(
            dir.path().join("user_key.pub"),
            dir.path().join("authorized_keys"),
        )?;
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.port()
        };
        let user = current_user();
        let root_login = if user == "root" {
            "prohibit-password"
        } else {
            "no"
        };
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
             AuthorizedKeysFile {keys}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin {root_login}\nAllowUsers {user}\nAllowTcpForwarding yes\n\
             PermitOpen {forward_to}\nX11Forwarding no\nPrintMotd no\n",
            host = host_key.display(),
            pid = dir.path().join("sshd.pid").display(),
            keys = dir.path().join("authorized_keys").display(),
        );
        let config_path = dir.path().join("sshd_config");
        std::fs::write(&config_path, config)?;
        let child = tokio::process::Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(&config_path)
            .arg("-E")
            .arg(dir.path().join("sshd.log"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting sshd")?;
        let host_key = std::fs::read_to_string(dir.path().join("host_key.pub"))?;
        let bastion = Bastion {
            dir,
            port,
            user,
            host_key: host_key.trim().to_owned(),
            pid: child.id(),
            _child: child,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(bastion);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "sshd did not listen on 127.0.0.1:{port} within 2 s; its log:\n{}",
            bastion.log()
        )
    }

    /// The bastion's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user's private key (OpenSSH text).
    pub fn private_key(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.private_key_file())?)
    }

    /// The user's private key file.
    pub fn private_key_file(&self) -> PathBuf {
        self.dir.path().join("user_key")
    }

    /// The host key line, as `ssh-keyscan` prints it (`ssh-ed25519 AAAA… comment`).
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// A `tunnel` block for this bastion with the key in a file and the host key verified.
    pub fn tunnel_config(&self) -> TunnelConfig {
        TunnelConfig {
            bastion_host: "127.0.0.1".to_owned(),
            bastion_port: self.port,
            user: self.user.clone(),
            private_key_secret: None,
            private_key_file: Some(self.private_key_file().display().to_string()),
            host_key: Some(self.host_key.clone()),
            verify_host_key: true,
        }
    }

    /// Kills sshd and every session process it forked (those outlive their parent), as a crashed
    /// bastion host would: open tunnels break at once.
    pub fn kill(&self) {
        if let Some(pid) = self.pid {
            for process in descendants(pid).into_iter().chain([pid]) {
                // Already gone is fine: a session may have ended by itself.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &process.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Drop for Bastion {
    fn drop(&mut self) {
        // `kill_on_drop` would end sshd but not the sessions it forked.
        self.kill();
    }
}

/// Every live process below `pid`, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let parent = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))?
                .trim()
                .parse()
                .ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(next) = frontier.pop() {
        for (child, parent) in &parents {
            if *parent == next && !found.contains(child) {
                found.push(*child);
                frontier.push(*child);
            }
        }
    }
    found
}
