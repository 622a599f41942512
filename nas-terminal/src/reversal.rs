//! Timeout reversals, stored and forwarded (DESIGN.md §1; ISO 8583's
//! reversal advice): when the terminal never saw the answer to a payment
//! the server may have approved, it owes the server a reversal for that
//! transaction id. The advice is written to a file before anything else
//! happens and stays there, retried with backoff, until the server
//! acknowledges it with an Accounting-Response (RADIUS) or an ACA
//! (Diameter).
//!
//! The file is JSON, rewritten atomically (temporary file, fsync, rename)
//! under an exclusive lock on `<file>.lock`, so two terminal processes
//! sharing a store never lose an advice.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aaa_proto::diameter::message::{Message, OwnedAvp};
use aaa_proto::dictionary::diameter::{application, avp, command, AccountingRecordType, ResultCode};
use aaa_proto::dictionary::{eapay, rfc};
use aaa_proto::radius::{Code, Packet};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::client::{ClientError, RadiusClient};
use crate::diameter::{DiameterClient, DiameterError};

/// The first retry waits this long; each failure doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
const FORMAT_VERSION: u32 = 1;

/// Why the store cannot be used.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a reversal store: {reason}")]
    Format { path: String, reason: String },
}

/// One reversal the server has not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReversalAdvice {
    pub merchant_id: String,
    pub transaction_id: String,
    /// The amount of the payment, minor units.
    pub amount: u64,
    /// ISO 4217 numeric.
    pub currency: u32,
    /// When the payment timed out, Unix milliseconds.
    pub created_ms: u64,
    /// Deliveries tried so far.
    pub attempts: u32,
    /// Not before this time (Unix milliseconds) unless forced.
    pub next_attempt_ms: u64,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    reversals: Vec<ReversalAdvice>,
}

/// The store-and-forward file. Each method locks, reads, changes and
/// rewrites the file, so the store never caches a stale view.
pub struct ReversalStore {
    path: PathBuf,
}

impl ReversalStore {
    /// The store at `path`; a missing file is an empty store.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every pending advice.
    pub fn pending(&self) -> Result<Vec<ReversalAdvice>, StoreError> {
        self.update(|_| ())
    }

    /// Adds an advice (a second one for the same transaction replaces
    /// nothing: the first is already owed).
    pub fn add(&self, advice: ReversalAdvice) -> Result<(), StoreError> {
        self.update(|list| {
            if !list.iter().any(|a| same(a, &advice.merchant_id, &advice.transaction_id)) {
                list.push(advice);
            }
        })
        .map(drop)
    }

    /// Removes an acknowledged advice.
    pub fn acknowledge(&self, merchant_id: &str, transaction_id: &str) -> Result<(), StoreError> {
        self.update(|list| list.retain(|a| !same(a, merchant_id, transaction_id))).map(drop)
    }

    /// Records a failed delivery and schedules the next one.
    pub fn failed(&self, merchant_id: &str, transaction_id: &str, error: &str, now_ms: u64) -> Result<(), StoreError> {
        self.update(|list| {
            if let Some(a) = list.iter_mut().find(|a| same(a, merchant_id, transaction_id)) {
                a.attempts = a.attempts.saturating_add(1);
                a.next_attempt_ms = now_ms.saturating_add(backoff(a.attempts).as_millis() as u64);
                a.last_error = Some(error.to_owned());
            }
        })
        .map(drop)
    }

    /// Locks the store, applies `change` to its list, writes it back if it
    /// changed, and returns the list.
    fn update(&self, change: impl FnOnce(&mut Vec<ReversalAdvice>)) -> Result<Vec<ReversalAdvice>, StoreError> {
        let io = |source| StoreError::Io { path: self.path.display().to_string(), source };
        let lock_path = with_suffix(&self.path, ".lock");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io)?;
        lock.lock().map_err(io)?;
        let mut list = self.read()?;
        let before = list.clone();
        change(&mut list);
        if list != before {
            self.write(&list).map_err(io)?;
        }
        Ok(list)
    }

    fn read(&self) -> Result<Vec<ReversalAdvice>, StoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { path: self.path.display().to_string(), source }),
        };
        let format = |reason: String| StoreError::Format { path: self.path.display().to_string(), reason };
        let file: StoreFile = serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
        if file.version != FORMAT_VERSION {
            return Err(format(format!("version {} (this build reads {FORMAT_VERSION})", file.version)));
        }
        Ok(file.reversals)
    }

    fn write(&self, list: &[ReversalAdvice]) -> std::io::Result<()> {
        let file = StoreFile { version: FORMAT_VERSION, reversals: list.to_vec() };
        let text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        aaa_proto::durable::replace_file(&self.path, &text, 0o644)
    }
}

fn same(a: &ReversalAdvice, merchant_id: &str, transaction_id: &str) -> bool {
    a.merchant_id == merchant_id && a.transaction_id == transaction_id
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The wait after `attempts` failures: 5 s, 10 s, 20 s, ... up to an hour.
pub fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

/// The server's acknowledgement of a reversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acknowledged {
    /// Reversed (or already reversed, or a tombstone recorded).
    Reversed,
    /// Refused with this decline code (e.g. the payment was captured): the
    /// server will never accept it, so it is not retried.
    Refused(u32),
}

/// Where reversals go: the RADIUS accounting servers, or the Diameter
/// servers (base accounting, ACR/ACA).
pub enum Accounting<'a> {
    Radius { client: &'a mut RadiusClient, nas_identifier: Option<&'a str> },
    Diameter(&'a DiameterClient),
}

/// Why an advice was not delivered this time.
#[derive(Debug, Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Radius(#[from] ClientError),
    #[error(transparent)]
    Diameter(#[from] DiameterError),
    #[error("the ACA says Result-Code {0:?}")]
    Refused(Option<u32>),
}

impl Accounting<'_> {
    /// Sends one reversal advice and waits for the acknowledgement.
    pub async fn deliver(&mut self, advice: &ReversalAdvice, vendor_id: u32) -> Result<Acknowledged, DeliveryError> {
        let refused = match self {
            Self::Radius { client, nas_identifier } => {
                let reply = client.exchange(accounting_request(advice, vendor_id, *nas_identifier)?).await?;
                reply
                    .vendor_attribute(vendor_id, eapay::DECLINE_CODE)
                    .ok()
                    .flatten()
                    .and_then(|v| <[u8; 4]>::try_from(v).ok())
                    .map(u32::from_be_bytes)
            }
            Self::Diameter(client) => {
                let (aca, _) = client.request(acr(client, advice, vendor_id)).await?;
                if aca.result_code() != Some(ResultCode::Success.value()) {
                    return Err(DeliveryError::Refused(aca.result_code()));
                }
                aca.find(u32::from(eapay::DECLINE_CODE), Some(vendor_id)).and_then(|a| a.as_u32().ok())
            }
        };
        Ok(refused.map_or(Acknowledged::Reversed, Acknowledged::Refused))
    }
}

/// The reversal as an Accounting-Request (RFC 2866).
fn accounting_request(
    advice: &ReversalAdvice,
    vendor_id: u32,
    nas_identifier: Option<&str>,
) -> Result<Packet, ClientError> {
    let mut request = Packet::new_request(Code::AccountingRequest, 0);
    request.add_message_authenticator();
    // RFC 2866 §5.1 asks every Accounting-Request for a status type and a
    // session id; proxies on the way (FreeRADIUS) rely on them.
    request.push_u32(rfc::ACCT_STATUS_TYPE, rfc::AcctStatusType::Stop.value());
    let _ = request.push(rfc::ACCT_SESSION_ID, advice.transaction_id.as_bytes());
    if let Some(id) = nas_identifier {
        let _ = request.push(rfc::NAS_IDENTIFIER, id.as_bytes());
    }
    for (code, value) in settlement_attributes(advice) {
        request.push_vendor(vendor_id, code, &value)?;
    }
    Ok(request)
}

/// The reversal as an ACR (RFC 6733 §9.7): an EVENT_RECORD in its own session.
fn acr(client: &DiameterClient, advice: &ReversalAdvice, vendor_id: u32) -> Message {
    let session = client.new_session_id();
    let mut acr = client.new_request(command::ACCOUNTING, application::ACCOUNTING, &session);
    acr.push(OwnedAvp::u32(avp::ACCOUNTING_RECORD_TYPE, None, true, AccountingRecordType::EventRecord.value()))
        .push(OwnedAvp::u32(avp::ACCOUNTING_RECORD_NUMBER, None, true, 0))
        .push(OwnedAvp::u32(avp::ACCT_APPLICATION_ID, None, true, application::ACCOUNTING));
    for (code, value) in settlement_attributes(advice) {
        acr.push(OwnedAvp::octets(u32::from(code), Some(vendor_id), false, &value));
    }
    acr
}

/// Eapay-Settlement-Action Reverse and what it reverses.
fn settlement_attributes(advice: &ReversalAdvice) -> [(u8, Vec<u8>); 4] {
    [
        (eapay::SETTLEMENT_ACTION, eapay::SettlementAction::Reverse.value().to_be_bytes().to_vec()),
        (eapay::TRANSACTION_ID, advice.transaction_id.as_bytes().to_vec()),
        (eapay::MERCHANT_ID, advice.merchant_id.as_bytes().to_vec()),
        (eapay::AMOUNT, advice.amount.to_be_bytes().to_vec()),
    ]
}

/// What a flush did.
#[derive(Debug, Default)]
pub struct FlushReport {
    /// Acknowledged, by transaction id.
    pub reversed: Vec<String>,
    /// Refused for good, with the decline code.
    pub refused: Vec<(String, u32)>,
    /// Still pending after this flush, with the reason.
    pub failed: Vec<(String, String)>,
    /// Not yet due (backoff), left alone.
    pub not_due: usize,
}

/// Delivers the pending advices that are due (all of them with `force`),
/// oldest first, updating the store after each.
pub async fn flush(
    store: &ReversalStore,
    accounting: &mut Accounting<'_>,
    vendor_id: u32,
    now_ms: impl Fn() -> u64,
    force: bool,
) -> Result<FlushReport, StoreError> {
    let mut report = FlushReport::default();
    let mut pending = store.pending()?;
    pending.sort_by_key(|a| a.created_ms);
    for advice in pending {
        if !force && advice.next_attempt_ms > now_ms() {
            report.not_due += 1;
            continue;
        }
        match accounting.deliver(&advice, vendor_id).await {
            Ok(ack) => {
                store.acknowledge(&advice.merchant_id, &advice.transaction_id)?;
                match ack {
                    Acknowledged::Reversed => report.reversed.push(advice.transaction_id),
                    Acknowledged::Refused(code) => report.refused.push((advice.transaction_id, code)),
                }
            }
            Err(e) => {
                let why = e.to_string();
                store.failed(&advice.merchant_id, &advice.transaction_id, &why, now_ms())?;
                report.failed.push((advice.transaction_id, why));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advice(id: &str) -> ReversalAdvice {
        ReversalAdvice {
            merchant_id: "M-1".into(),
            transaction_id: id.into(),
            amount: 1250,
            currency: 840,
            created_ms: 1,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
        }
    }

    #[test]
    fn advices_survive_reopening_and_leave_when_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("saf.json");
        let store = ReversalStore::new(&path);
        assert!(store.pending().unwrap().is_empty());
        store.add(advice("T-1")).unwrap();
        store.add(advice("T-2")).unwrap();
        store.add(advice("T-1")).unwrap();
        let again = ReversalStore::new(&path);
        assert_eq!(again.pending().unwrap().len(), 2);
        again.failed("M-1", "T-1", "no answer", 1000).unwrap();
        let t1 = again.pending().unwrap().into_iter().find(|a| a.transaction_id == "T-1").unwrap();
        assert_eq!((t1.attempts, t1.next_attempt_ms), (1, 6000));
        again.acknowledge("M-1", "T-1").unwrap();
        let left: Vec<String> = store.pending().unwrap().into_iter().map(|a| a.transaction_id).collect();
        assert_eq!(left, ["T-2"]);
    }

    #[test]
    fn a_corrupt_store_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("saf.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(ReversalStore::new(&path).pending(), Err(StoreError::Format { .. })));
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(5), Duration::from_secs(80));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
