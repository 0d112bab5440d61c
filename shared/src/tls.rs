//! TLS for the connections tidemark opens itself: the warehouse over the PostgreSQL wire protocol
//! (PostgreSQL, Redshift `direct` and `tunnel`) and the MySQL source. One trust rule for all of
//! them: Mozilla's root certificates (as browsers and the AWS SDK trust them) plus the
//! connection's own CA bundle (`tls_ca_file`, or `tls_ca_secret` in Lambda), so that a private CA
//! such as Amazon RDS's verifies.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect};

use crate::config::TlsMode;
use crate::error::{Error, Result};
use crate::secret::SecretResolver;

/// Where a connection's extra CA certificates come from (`tls_ca_file` / `tls_ca_secret`).
#[derive(Debug, Clone, Copy)]
pub struct CaSource<'a> {
    /// The connection's name, for errors.
    pub connection: &'a str,
    /// A PEM file on this machine.
    pub file: Option<&'a str>,
    /// A Secrets Manager secret whose string is PEM.
    pub secret: Option<&'a str>,
}

/// The PEM bundle of `source`, if it names one.
pub async fn ca_bundle(
    source: CaSource<'_>,
    secrets: Option<&SecretResolver>,
) -> Result<Option<Vec<u8>>> {
    let pem = match (source.file, source.secret) {
        (Some(path), _) => std::fs::read(path).map_err(|err| {
            Error::config(
                "connections",
                format!(
                    "connection `{}`: cannot read `tls_ca_file` {path}: {err}",
                    source.connection
                ),
            )
        })?,
        (None, Some(id)) => {
            let resolver = secrets.ok_or_else(|| Error::Secret {
                id: id.to_owned(),
                reason: "no Secrets Manager client is configured here".to_owned(),
            })?;
            crate::secret::expose(&resolver.text(id).await?)
                .as_bytes()
                .to_vec()
        }
        (None, None) => return Ok(None),
    };
    let certificates = certificates(&pem).map_err(|reason| {
        Error::config(
            "connections",
            format!(
                "connection `{}`: its TLS CA bundle {reason}",
                source.connection
            ),
        )
    })?;
    if certificates.is_empty() {
        return Err(Error::config(
            "connections",
            format!(
                "connection `{}`: its TLS CA bundle holds no `-----BEGIN CERTIFICATE-----` block",
                source.connection
            ),
        ));
    }
    Ok(Some(pem))
}

fn certificates(pem: &[u8]) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| format!("is not PEM: {err}"))
}

/// The rustls client settings of `mode` (`Disabled` has none): Mozilla's roots and `ca_pem`;
/// `Unverified` accepts any certificate (the traffic is encrypted, the server not proven).
pub fn client_config(mode: TlsMode, ca_pem: Option<&[u8]>) -> Result<Option<Arc<ClientConfig>>> {
    if mode == TlsMode::Disabled {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| tls_error("choosing the TLS versions", err))?;
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        for certificate in certificates(pem).map_err(|reason| Error::Io {
            context: "the TLS CA bundle".to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidData, reason),
        })? {
            roots
                .add(certificate)
                .map_err(|err| tls_error("adding a CA certificate", err))?;
        }
    }
    let config = match mode {
        TlsMode::Unverified => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth(),
        _ => builder.with_root_certificates(roots).with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

fn tls_error(context: &str, err: rustls::Error) -> Error {
    Error::Io {
        context: format!("TLS: {context}"),
        source: io::Error::other(err.to_string()),
    }
}

/// `tls: unverified`: any certificate is taken, but the handshake's signatures are still checked
/// against it, so the session is encrypted to whoever holds that certificate's key.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS a warehouse connection asks for: `None` for `tls: disabled`.
pub async fn postgres_tls(
    mode: TlsMode,
    ca: CaSource<'_>,
    secrets: Option<&SecretResolver>,
    host: &str,
) -> Result<Option<PostgresTls>> {
    let bundle = ca_bundle(ca, secrets).await?;
    client_config(mode, bundle.as_deref())?
        .map(|config| PostgresTls::new(config, host))
        .transpose()
}

/// tokio-postgres's TLS handshake over rustls, for the server `host` (the name its certificate
/// must carry).
#[derive(Clone)]
pub struct PostgresTls {
    connector: tokio_rustls::TlsConnector,
    host: ServerName<'static>,
}

impl PostgresTls {
    /// TLS to `host` with `config`.
    pub fn new(config: Arc<ClientConfig>, host: &str) -> Result<Self> {
        let host = ServerName::try_from(host.to_owned()).map_err(|err| {
            Error::config(
                "connections",
                format!("`{host}` is not a host name TLS can verify: {err}"),
            )
        })?;
        Ok(PostgresTls {
            connector: tokio_rustls::TlsConnector::from(config),
            host,
        })
    }
}

impl<S> TlsConnect<S> for PostgresTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PostgresTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PostgresTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = self.connector.connect(self.host, stream).await?;
            Ok(PostgresTlsStream(stream))
        })
    }
}

/// A TLS session under a tokio-postgres connection.
pub struct PostgresTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PostgresTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PostgresTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PostgresTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM channel binding is optional (tokio-postgres prefers it); none is offered.
        ChannelBinding::none()
    }
}
