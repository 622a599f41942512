//! The error type of the `eap-methods` crate boundary.

use thiserror::Error;

/// Why an EAP packet or method message could not be used.
///
/// Variants carry lengths and codes for a one-line log, never key material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EapError {
    /// Fewer octets than the header or Length field demands.
    #[error("truncated: need {needed} octets, have {got}")]
    Truncated { needed: usize, got: usize },
    /// The EAP Code is not Request, Response, Success or Failure.
    #[error("unknown EAP code {0}")]
    UnknownCode(u8),
    /// The Length field is impossible for this code.
    #[error("EAP code {code} with length {length}")]
    BadLength { code: u8, length: usize },
    /// Larger than eapay ever buffers for one message.
    #[error("EAP packet of {0} octets exceeds the limit")]
    TooLong(usize),
    /// A method message that does not follow its RFC's layout.
    #[error("malformed {method} message: {why}")]
    Malformed { method: &'static str, why: &'static str },
    /// A non-skippable attribute this implementation does not know.
    #[error("{method}: unknown non-skippable attribute {kind}")]
    UnknownAttribute { method: &'static str, kind: u8 },
    /// A TLS certificate, key or option the method cannot use (a
    /// configuration problem, found when the server or card starts).
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
}

impl EapError {
    pub(crate) fn malformed(method: &'static str, why: &'static str) -> Self {
        Self::Malformed { method, why }
    }
}
