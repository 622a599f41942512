//! The terminal's TLS client, shared by RADIUS over TLS ([`crate::radsec`],
//! RFC 6614) and Diameter over TLS ([`crate::diameter`], RFC 6733 §13).
//!
//! The terminal proves who it is with its certificate (`eapay-server
//! terminal issue`); the server's certificate must chain to `--ca` (the
//! issuer CA) and be fit for a TLS server (OpenSSL checks the serverAuth
//! EKU on the client side, so a card's or a terminal's certificate from the
//! same CA cannot pose as the server); with [`TlsSettings::server_name`] it
//! must also name that host.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;

use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509VerifyResult, X509};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use tracing::{debug, warn};

/// A TLS connection to a server.
pub type TlsStream = SslStream<TcpStream>;

/// The lowest TLS version the terminal accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Where the terminal's TLS credentials are and how it checks the server.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The terminal's certificate (PEM), any intermediate certificates after it.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA certificates the server's certificate must chain to (PEM).
    pub ca: PathBuf,
    pub min_version: TlsVersion,
    /// If set, the server's certificate must name this host (and the name
    /// goes out as SNI); otherwise any server certificate from `ca` does.
    pub server_name: Option<String>,
    /// Write the TLS secrets here in NSS key log format (tests and
    /// debugging: whoever reads the file can decrypt the traffic).
    pub keylog: Option<PathBuf>,
}

/// Why the TLS settings cannot be used.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    // Not `source`: the line says it once, and anyhow's chain would repeat it.
    #[error("{option} {path}: {error}")]
    Read { option: &'static str, path: String, error: std::io::Error },
    #[error("{option} {path}: {what}")]
    Content { option: &'static str, path: String, what: String },
    #[error("TLS: {0}")]
    Tls(String),
}

impl From<openssl::error::ErrorStack> for TlsSetupError {
    // A string, not a source: OpenSSL's stack is the whole story.
    fn from(e: openssl::error::ErrorStack) -> Self {
        Self::Tls(one_line(&e.to_string()))
    }
}

/// The client TLS context every connection of a terminal is made from.
pub struct TlsContext {
    connector: SslConnector,
    server_name: Option<String>,
}

impl TlsContext {
    /// Loads the credentials and the CA; checks that the key is the certificate's.
    pub fn new(settings: &TlsSettings) -> Result<Self, TlsSetupError> {
        let read = |option: &'static str, path: &Path| {
            std::fs::read(path).map_err(|error| TlsSetupError::Read { option, path: path.display().to_string(), error })
        };
        let content = |option: &'static str, path: &Path, what: &str| TlsSetupError::Content {
            option,
            path: path.display().to_string(),
            what: what.to_string(),
        };
        let chain = X509::stack_from_pem(&read("--cert", &settings.cert)?)
            .map_err(|_| content("--cert", &settings.cert, "not a PEM certificate"))?;
        let mut chain = chain.into_iter();
        let leaf = chain.next().ok_or_else(|| content("--cert", &settings.cert, "no certificate in the file"))?;
        let key = PKey::private_key_from_pem(&read("--key", &settings.key)?)
            .map_err(|_| content("--key", &settings.key, "not a PEM private key"))?;
        let cas = X509::stack_from_pem(&read("--ca", &settings.ca)?)
            .map_err(|_| content("--ca", &settings.ca, "not a PEM certificate"))?;
        if cas.is_empty() {
            return Err(content("--ca", &settings.ca, "no certificate in the file"));
        }

        let mut b = SslConnector::builder(SslMethod::tls_client())?;
        b.set_min_proto_version(Some(match settings.min_version {
            TlsVersion::Tls12 => SslVersion::TLS1_2,
            TlsVersion::Tls13 => SslVersion::TLS1_3,
        }))?;
        b.set_certificate(&leaf)?;
        for extra in chain {
            b.add_extra_chain_cert(extra)?;
        }
        b.set_private_key(&key)?;
        b.check_private_key()
            .map_err(|_| content("--key", &settings.key, "is not the key of the --cert certificate"))?;
        // Only the issuer's CA: this replaces the system's store, which the
        // connector builder loaded and which has no say in who the payment
        // server is.
        let mut store = X509StoreBuilder::new()?;
        for ca in cas {
            store.add_cert(ca)?;
        }
        b.set_cert_store(store.build());
        b.set_verify(SslVerifyMode::PEER);
        if let Some(path) = &settings.keylog {
            let file = open_keylog(path).map_err(|error| TlsSetupError::Read {
                option: "--sslkeylogfile",
                path: path.display().to_string(),
                error,
            })?;
            warn!(file = %path.display(), "writing TLS secrets (--sslkeylogfile / SSLKEYLOGFILE): for tests and debugging only");
            let file = Mutex::new(file);
            b.set_keylog_callback(move |_, line| {
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = writeln!(file, "{line}") {
                    debug!(error = %e, "TLS key log");
                }
            });
        }
        Ok(Self { connector: b.build(), server_name: settings.server_name.clone() })
    }

    fn ssl(&self) -> Result<openssl::ssl::Ssl, openssl::error::ErrorStack> {
        let mut config = self.connector.configure()?;
        match &self.server_name {
            Some(name) => config.into_ssl(name),
            None => {
                // Servers are named by address here; the CA and the
                // serverAuth purpose are the check.
                config.set_verify_hostname(false);
                config.set_use_server_name_indication(false);
                config.into_ssl("")
            }
        }
    }

    /// The client's half of a TLS handshake over `tcp`; a one-line reason
    /// if it fails, naming the certificate check when that is what failed.
    /// In TLS 1.3 the server judges the terminal's certificate after this
    /// returns: only its first answer proves it took the terminal.
    pub async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream, String> {
        let tls = |e: openssl::error::ErrorStack| format!("TLS: {}", one_line(&e.to_string()));
        let mut stream = SslStream::new(self.ssl().map_err(tls)?, tcp).map_err(tls)?;
        if let Err(e) = Pin::new(&mut stream).connect().await {
            let verify = stream.ssl().verify_result();
            return Err(if verify != X509VerifyResult::OK {
                format!("the server's certificate does not verify against --ca: {}", verify.error_string())
            } else {
                format!("TLS handshake: {}", one_line(&e.to_string()))
            });
        }
        Ok(stream)
    }
}

/// The key log holds secrets: readable by its owner only.
fn open_keylog(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// OpenSSL error stacks span lines; errors here are one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
