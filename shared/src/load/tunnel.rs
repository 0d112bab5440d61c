//! The SSH tunnel to a warehouse behind a bastion (a connection's `tunnel:` block): one SSH
//! session per load and one `direct-tcpip` channel carrying the PostgreSQL wire protocol. This
//! module only provides the connection; [`super::wire`] runs the load over it unchanged, with the
//! same SQL as a direct connection.
//!
//! The bastion's host key is checked against `host_key` unless `verify_host_key: false`. A dead
//! tunnel cannot hang a load: the socket to the bastion has TCP keepalive, the SSH session sends
//! keepalives and drops after three unanswered ones (which closes the channel and fails the
//! running statement), and the warehouse session gets its statement timeout. The private key
//! never reaches a log or an error message.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use tokio_postgres::Client;

use crate::config::TunnelConfig;
use crate::error::{Error, Result};
use crate::secret::{expose, SecretResolver};

use super::stall_guard::{answer_limit, StallGuard};

/// Keepalive probes on the socket to the bastion start after this much silence.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// SSH keepalive interval; the session is dropped after [`SSH_KEEPALIVE_MAX`] unanswered ones.
const SSH_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const SSH_KEEPALIVE_MAX: usize = 3;

/// An open SSH session to the bastion. Keep it alive as long as the connections through it.
pub struct Tunnel {
    session: client::Handle<HostKeyCheck>,
    bastion: String,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("bastion", &self.bastion)
            .finish_non_exhaustive()
    }
}

/// Accepts the bastion only when it presents the expected key (any key when `expected` is
/// `None`, i.e. `verify_host_key: false`), and remembers what it presented for the error.
struct HostKeyCheck {
    expected: Option<PublicKey>,
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            self.set_presented("an SSH certificate".to_owned());
            return Ok(false);
        };
        self.set_presented(format!(
            "{} {}",
            key.algorithm(),
            key.fingerprint(russh::keys::HashAlg::Sha256)
        ));
        Ok(self
            .expected
            .as_ref()
            .is_none_or(|expected| expected.key_data() == key.key_data()))
    }
}

impl HostKeyCheck {
    fn set_presented(&self, text: String) {
        if let Ok(mut presented) = self.presented.lock() {
            *presented = Some(text);
        }
    }
}

/// The tunnel's private key text: from Secrets Manager (`private_key_secret`) or a file.
pub async fn private_key(tunnel: &TunnelConfig, secrets: &SecretResolver) -> Result<String> {
    match (&tunnel.private_key_secret, &tunnel.private_key_file) {
        (Some(id), _) => Ok(expose(&secrets.password(id).await?).to_owned()),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("reading the tunnel's private key `{path}`"),
            source,
        }),
        (None, None) => Err(Error::config(
            "connections",
            "a tunnel needs `private_key_secret` or `private_key_file`",
        )),
    }
}

/// Opens the SSH session to the bastion and authenticates with `private_key` (OpenSSH or PEM
/// text, unencrypted), within `connect_timeout`.
pub async fn open(
    tunnel: &TunnelConfig,
    private_key: &str,
    connect_timeout: Duration,
) -> Result<Tunnel> {
    let bastion = format!("{}:{}", tunnel.bastion_host, tunnel.bastion_port);
    let failed = |message: String, retryable: bool| Error::Tunnel {
        bastion: bastion.clone(),
        message,
        retryable,
    };
    let expected = match (tunnel.verify_host_key, &tunnel.host_key) {
        (false, _) => None,
        (true, Some(text)) => Some(PublicKey::from_openssh(text.trim()).map_err(|err| {
            Error::config(
                "connections",
                format!("the tunnel's `host_key` is not an OpenSSH public key (`ssh-ed25519 AAAA…`): {err}"),
            )
        })?),
        (true, None) => {
            return Err(Error::config(
                "connections",
                "give the bastion's `host_key` (`ssh-keyscan HOST` prints it), or set `verify_host_key: false`",
            ))
        }
    };
    // The key's text stays out of the message: only the parser's reason is shown.
    const KEY_TYPES: &str = "give an unencrypted Ed25519 or ECDSA key, OpenSSH or PEM (RSA keys are not supported: the `rsa` crate has an unfixed timing side channel, RUSTSEC-2023-0071; make one with `ssh-keygen -t ed25519`)";
    let key = russh::keys::decode_secret_key(private_key, None).map_err(|err| {
        Error::config(
            "connections",
            format!("the tunnel's private key cannot be read ({err}); {KEY_TYPES}"),
        )
    })?;
    if key.algorithm().is_rsa() {
        return Err(Error::config(
            "connections",
            format!("the tunnel's private key is an RSA key; {KEY_TYPES}"),
        ));
    }
    let stream = tokio::time::timeout(
        connect_timeout,
        tokio::net::TcpStream::connect((tunnel.bastion_host.as_str(), tunnel.bastion_port)),
    )
    .await
    .map_err(|_| {
        failed(
            format!("no answer within {}s", connect_timeout.as_secs()),
            true,
        )
    })?
    .map_err(|err| failed(format!("cannot connect ({err})"), true))?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_IDLE)
        .with_interval(SSH_KEEPALIVE_INTERVAL);
    socket2::SockRef::from(&stream)
        .set_tcp_keepalive(&keepalive)
        .map_err(|err| failed(format!("cannot set TCP keepalive ({err})"), true))?;
    let config = client::Config {
        keepalive_interval: Some(SSH_KEEPALIVE_INTERVAL),
        keepalive_max: SSH_KEEPALIVE_MAX,
        ..client::Config::default()
    };
    let presented = Arc::new(Mutex::new(None));
    let handler = HostKeyCheck {
        expected,
        presented: presented.clone(),
    };
    let handshake = tokio::time::timeout(
        connect_timeout,
        client::connect_stream(Arc::new(config), stream, handler),
    )
    .await
    .map_err(|_| {
        failed(
            format!("no SSH handshake within {}s", connect_timeout.as_secs()),
            true,
        )
    })?;
    let mut session = match handshake {
        Ok(session) => session,
        Err(russh::Error::UnknownKey) => {
            let presented = presented
                .lock()
                .ok()
                .and_then(|p| p.clone())
                .unwrap_or_else(|| "an unknown key".to_owned());
            return Err(failed(
                format!("the bastion presented host key `{presented}`, not the configured `host_key`; if the bastion was rebuilt, check the new key out of band and update `host_key`"),
                false,
            ));
        }
        Err(err) => return Err(failed(format!("SSH handshake failed ({err})"), true)),
    };
    let hash = session
        .best_supported_rsa_hash()
        .await
        .map_err(|err| failed(format!("SSH negotiation failed ({err})"), true))?
        .flatten();
    let auth = session
        .authenticate_publickey(
            tunnel.user.as_str(),
            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
        )
        .await
        .map_err(|err| failed(format!("SSH authentication failed ({err})"), true))?;
    if !auth.success() {
        return Err(failed(
            format!(
                "the bastion refused the private key for user `{}`; add its public key to that user's authorized_keys",
                tunnel.user
            ),
            false,
        ));
    }
    Ok(Tunnel { session, bastion })
}

impl Tunnel {
    /// A warehouse connection to `host:port` (as the bastion sees it) through the tunnel, with
    /// `config`'s user, database and password, and the statement timeout set.
    pub async fn connect(
        &self,
        config: &tokio_postgres::Config,
        tls: Option<&crate::tls::PostgresTls>,
        host: &str,
        port: u16,
        statement_timeout: Duration,
    ) -> Result<Client> {
        let channel = self
            .session
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|err| Error::Tunnel {
                bastion: self.bastion.clone(),
                message: format!(
                    "the bastion did not open a channel to `{host}:{port}` ({err}); check its `PermitOpen`/`AllowTcpForwarding`"
                ),
                retryable: false,
            })?;
        let guarded = StallGuard::new(channel.into_stream(), answer_limit(statement_timeout));
        super::wire::start_session(
            config,
            guarded,
            tls,
            statement_timeout,
            &format!("connecting to the warehouse through `{}`", self.bastion),
        )
        .await
    }
}
