//! A sans-IO Diameter peer connection: the capabilities exchange, the
//! watchdog and the disconnect of RFC 6733 §5, with RFC 3539's failure
//! detection, over one transport connection.
//!
//! Like `quinn-proto`, [`Peer`] owns no socket, reads no clock and draws no
//! randomness: the caller passes `now` into every call, feeds it the bytes its
//! TCP stream read ([`Peer::handle_bytes`]), calls [`Peer::handle_timeout`]
//! once [`Peer::poll_timeout`] has passed, and carries out the returned
//! [`Action`]s **in order** (a `Send` before a following `Close`: an answer
//! such as the DPA must reach the wire before the connection goes). The
//! watchdog's jitter comes from a seed given at construction, so the same
//! inputs always give the same outputs and tests run on a simulated clock.
//!
//! What stays with the caller:
//! - opening connections, and reconnecting after a `Close` (RFC 3539's Tc
//!   timer, 30 s suggested): a closed [`Peer`] is finished, the next
//!   connection gets a new one;
//! - the election between two simultaneous connections to the same peer
//!   (RFC 6733 §5.6.4): [`election_won`] says which one to keep;
//! - failover (RFC 6733 §5.5.4): while [`Peer::state`] is
//!   [`State::Suspect`] or after a `Close`, [`Peer::take_unanswered`] hands
//!   back the requests still in flight to be resent elsewhere with the T flag;
//! - answering application requests, duplicate detection by End-to-End id,
//!   and routing.
//!
//! Memory stays bounded whatever the remote sends: the receive buffer holds
//! at most one message of [`Limits::max_message`] octets, and at most
//! [`MAX_PENDING`] requests are outstanding in each direction (past that a
//! request gets 3004 DIAMETER_TOO_BUSY).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::avp::{
    parse_avps_capped, Avp, AvpError, DataType, AVP_FLAG_MANDATORY, AVP_FLAG_PROTECTED, AVP_FLAG_RESERVED,
    AVP_FLAG_VENDOR,
};
use super::message::{
    failed_avp, frame_len, Limits, Message, MessageError, OwnedAvp, FLAG_ERROR, FLAG_REQUEST, HEADER_LEN,
};
use crate::dictionary::diameter::{self as dict, application, avp as code, command, ResultCode};

/// The most application requests outstanding in each direction: sent and not
/// yet answered, or delivered and not yet answered by the layer above.
pub const MAX_PENDING: usize = 1024;

/// RFC 3539 §3.4.1: Tw is never below 6 s, and jittered by up to ±2 s so that
/// peers started together do not send their DWRs in lockstep.
const MIN_TW: Duration = Duration::from_secs(6);
const TW_JITTER_MS: u64 = 2_000;

/// Who this host is, as it says in its CER or CEA.
#[derive(Debug, Clone)]
pub struct LocalPeer {
    /// Origin-Host: this host's Diameter identity (FQDN).
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// One Host-IP-Address each. RFC 6733 §5.3.1 requires at least one, and
    /// freeDiameter closes on a CER without: configure the connection's local
    /// address if nothing else.
    pub host_ip_addresses: Vec<IpAddr>,
    /// Vendor-Id (eapay: 32473).
    pub vendor_id: u32,
    /// Product-Name.
    pub product_name: String,
    /// Firmware-Revision, sent only when set.
    pub firmware_revision: Option<u32>,
    /// Origin-State-Id: changes on every restart (the Unix time of the start
    /// does). Its low 12 bits also seed the End-to-End ids.
    pub origin_state_id: u32,
    /// Auth-Application-Ids (eapay: 5, Diameter EAP).
    pub auth_applications: Vec<u32>,
    /// Acct-Application-Ids (eapay: 3, base accounting).
    pub acct_applications: Vec<u32>,
}

/// The timers of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// RFC 3539's Tw: idle time before a DWR, and then the time to wait for
    /// its DWA. Jittered by ±2 s; values under 6 s count as 6 s.
    pub tw: Duration,
    /// How long a new connection may go without a CER (responder) or CEA
    /// (initiator) before it is closed.
    pub cer_timeout: Duration,
    /// How long to wait for the DPA after sending a DPR.
    pub dpa_timeout: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            tw: Duration::from_secs(30),
            cer_timeout: Duration::from_secs(10),
            dpa_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything a [`Peer`] needs to know about this host; shared by all connections.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub local: LocalPeer,
    pub timers: Timers,
    /// Decoding limits; `max_message` also bounds the receive buffer.
    pub limits: Limits,
}

/// What the remote said about itself in its CER/CEA.
#[derive(Debug, Clone)]
pub struct Remote {
    pub origin_host: String,
    pub origin_realm: String,
    /// The IPv4 and IPv6 Host-IP-Addresses (other address families are left out).
    pub host_ip_addresses: Vec<IpAddr>,
    pub product_name: String,
    pub origin_state_id: Option<u32>,
    /// Auth-Application-Ids, including those inside Vendor-Specific-Application-Id.
    pub auth_applications: Vec<u32>,
    /// Acct-Application-Ids, including those inside Vendor-Specific-Application-Id.
    pub acct_applications: Vec<u32>,
    /// It advertised the relay application (0xffffffff): it takes every application.
    pub relay: bool,
}

/// Where the connection is (RFC 6733 §5.6's states, with RFC 3539's SUSPECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Initiator, before [`Peer::handle_connected`].
    WaitConnect,
    /// Initiator: CER sent, waiting for the CEA.
    WaitCea,
    /// Responder: waiting for the CER.
    WaitCer,
    /// Capabilities exchanged; the watchdog is content.
    Open,
    /// A DWR went unanswered for Tw (RFC 3539 SUSPECT): send new requests
    /// elsewhere; any message from the peer makes it [`State::Open`] again.
    Suspect,
    /// DPR sent, waiting for the DPA.
    Closing,
    /// Finished: the transport is (to be) closed.
    Closed,
}

/// What the caller must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Write these bytes (one whole message) to the transport.
    Send(Vec<u8>),
    /// An application request or answer for the layer above (never CER/CEA/DWR/DWA/DPR/DPA).
    Deliver(Message),
    /// The capabilities exchange succeeded: the connection is open to this peer.
    Open(Remote),
    /// The transport must be closed now; the peer is down. `reason` is one line for the log.
    Close { reason: String },
}

/// Why the layer above's message was not sent. Nothing was sent, and the
/// connection is unaffected.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Requests need [`State::Open`] or [`State::Suspect`]; answers also go out in [`State::Closing`].
    #[error("the Diameter connection is not open ({0:?})")]
    NotOpen(State),
    #[error("cannot encode the message: {0}")]
    Encode(#[from] MessageError),
    /// `send_request` was given a message without the R bit, or with the E bit.
    #[error("not a request (R clear or E set)")]
    NotARequest,
    /// `send_answer` was given a message with the R bit.
    #[error("not an answer (R set)")]
    NotAnAnswer,
    /// CER, DWR and DPR belong to the peer itself.
    #[error("command {0} is the base protocol's, handled by the peer itself")]
    BaseProtocol(u32),
    /// [`MAX_PENDING`] requests are already waiting for their answers.
    #[error("{0} requests are already waiting for answers")]
    TooManyPending(usize),
    /// No request delivered on this connection waits for an answer with this Hop-by-Hop id.
    #[error("no delivered request with Hop-by-Hop id {0:#010x} awaits an answer")]
    NoSuchRequest(u32),
}

/// xorshift64: enough for jitter and starting identifiers, and the same every
/// run for a given seed. The codec's and the peer's fuzz tests use it too.
#[derive(Debug, Clone)]
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // splitmix64 spreads small or similar seeds; xorshift must not start at 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        XorShift(if z == 0 { 0x2545_f491_4f6c_dd1d } else { z })
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (not quite uniform; tests need no more).
    #[cfg(test)]
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Base-protocol commands never reach the layer above.
fn is_base(command: u32) -> bool {
    matches!(command, command::CAPABILITIES_EXCHANGE | command::DEVICE_WATCHDOG | command::DISCONNECT_PEER)
}

/// The M bit as the dictionary prescribes it (Product-Name and
/// Firmware-Revision go without).
fn mandatory(avp_code: u32) -> bool {
    dict::find(avp_code, None).is_some_and(|d| d.mandatory)
}

fn result_name(rc: u32) -> &'static str {
    ResultCode::from_value(rc).map_or("unknown Result-Code", ResultCode::name)
}

/// RFC 6733 §7.2: only protocol errors (3xxx) carry the E bit; permanent
/// failures (5xxx) use the command's own answer format.
fn is_protocol_error(rc: u32) -> bool {
    (3000..4000).contains(&rc)
}

/// The responder's test of a CER's sender: `known(origin_host, origin_realm)`.
pub type KnownPeer = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// One connection to one Diameter peer.
pub struct Peer {
    config: Arc<PeerConfig>,
    /// The responder's check of the CER's sender; `None` for the initiator.
    known: Option<KnownPeer>,
    state: State,
    remote: Option<Remote>,
    /// At most one partial message: `frame_len` caps it at `limits.max_message`.
    rx: Vec<u8>,
    /// The one timer the state needs: CER/CEA wait, watchdog, or DPA wait.
    timer: Option<Instant>,
    /// RFC 3539's Pending: a DWR is out and its DWA has not come.
    dwr_pending: bool,
    rng: XorShift,
    next_hop_by_hop: u32,
    end_to_end_high: u32,
    end_to_end_low: u32,
    /// Requests we sent, by Hop-by-Hop id, with their order of sending.
    sent: HashMap<u32, (u64, Message)>,
    sent_seq: u64,
    /// Requests delivered upward and not yet answered: Hop-by-Hop id -> how
    /// many (a peer may reuse an id; the count keeps the cap honest).
    delivered: HashMap<u32, usize>,
    delivered_total: usize,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("initiator", &self.known.is_none())
            .field("state", &self.state)
            .field("remote", &self.remote.as_ref().map(|r| &r.origin_host))
            .field("timer", &self.timer)
            .field("sent", &self.sent.len())
            .field("delivered", &self.delivered_total)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// We connect (the terminal). Call `handle_connected` once the TCP connection is up: it sends the CER.
    pub fn initiator(config: Arc<PeerConfig>, _now: Instant, seed: u64) -> Self {
        Self::new(config, None, State::WaitConnect, None, seed)
    }

    /// We accepted a connection (the server). `known(origin_host, origin_realm)`
    /// says if the CER's sender is a configured peer. The CER must come within
    /// `cer_timeout` of `now`.
    pub fn responder(config: Arc<PeerConfig>, known: KnownPeer, now: Instant, seed: u64) -> Self {
        let timer = now.checked_add(config.timers.cer_timeout);
        Self::new(config, Some(known), State::WaitCer, timer, seed)
    }

    fn new(config: Arc<PeerConfig>, known: Option<KnownPeer>, state: State, timer: Option<Instant>, seed: u64) -> Self {
        let mut rng = XorShift::new(seed);
        let next_hop_by_hop = rng.next() as u32;
        let end_to_end_low = rng.next() as u32 & 0x000f_ffff;
        // RFC 6733 §3 wants the start time's low bits up top so that ids stay
        // unique across restarts; Origin-State-Id is that time (or at least
        // changes on each restart), and this keeps the clock out of here.
        let end_to_end_high = (config.local.origin_state_id & 0xfff) << 20;
        Peer {
            config,
            known,
            state,
            remote: None,
            rx: Vec::new(),
            timer,
            dwr_pending: false,
            rng,
            next_hop_by_hop,
            end_to_end_high,
            end_to_end_low,
            sent: HashMap::new(),
            sent_seq: 0,
            delivered: HashMap::new(),
            delivered_total: 0,
        }
    }

    /// The initiator's transport is up: sends the CER. Does nothing in any other state.
    pub fn handle_connected(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::WaitConnect {
            return out;
        }
        let mut cer = self.base_request(command::CAPABILITIES_EXCHANGE);
        cer.avps = self.capabilities();
        self.state = State::WaitCea;
        self.timer = now.checked_add(self.config.timers.cer_timeout);
        self.send(&cer, &mut out);
        out
    }

    /// Bytes read from the TCP stream, split anywhere.
    pub fn handle_bytes(&mut self, mut bytes: &[u8], now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while !bytes.is_empty() && self.state != State::Closed {
            if self.rx.len() < 4 {
                let take = (4 - self.rx.len()).min(bytes.len());
                self.rx.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
            }
            let len = match frame_len(&self.rx, &self.config.limits) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    // Without a trustworthy length there is no next message to find.
                    self.close(format!("Diameter framing lost: {e}"), &mut out);
                    break;
                }
            };
            let take = len.saturating_sub(self.rx.len()).min(bytes.len());
            self.rx.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.rx.len() < len {
                break;
            }
            let frame = std::mem::take(&mut self.rx);
            self.handle_frame(&frame, now, &mut out);
            if self.state != State::Closed {
                // Keep the allocation for the next message.
                self.rx = frame;
                self.rx.clear();
            }
        }
        out
    }

    /// Call when `poll_timeout()` has passed (calling earlier does nothing).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match self.timer {
            Some(at) if now >= at => {}
            _ => return out,
        }
        match self.state {
            State::WaitCer => self.close(format!("no CER within {:?}", self.config.timers.cer_timeout), &mut out),
            State::WaitCea => self.close(format!("no CEA within {:?}", self.config.timers.cer_timeout), &mut out),
            State::Open if self.dwr_pending => {
                // RFC 3539 §3.4.1: failover now; one more Tw of silence and it is down.
                self.state = State::Suspect;
                self.arm_watchdog(now);
            }
            State::Open => {
                let mut dwr = self.base_request(command::DEVICE_WATCHDOG);
                dwr.avps = self.identity();
                self.dwr_pending = true;
                self.arm_watchdog(now);
                self.send(&dwr, &mut out);
            }
            State::Suspect => self.close("watchdog: peer down (no answer to DWR)".to_string(), &mut out),
            State::Closing => self.close(format!("no DPA within {:?}", self.config.timers.dpa_timeout), &mut out),
            State::WaitConnect | State::Closed => self.timer = None,
        }
        out
    }

    /// When `handle_timeout` next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// Sends an application request; assigns and returns its Hop-by-Hop id
    /// (keeps the End-to-End id and T flag the caller set). Only when Open/Suspect.
    pub fn send_request(&mut self, mut request: Message, _now: Instant) -> Result<(u32, Vec<Action>), PeerError> {
        if !matches!(self.state, State::Open | State::Suspect) {
            return Err(PeerError::NotOpen(self.state));
        }
        if !request.is_request() || request.is_error() {
            return Err(PeerError::NotARequest);
        }
        if is_base(request.command) {
            return Err(PeerError::BaseProtocol(request.command));
        }
        if self.sent.len() >= MAX_PENDING {
            return Err(PeerError::TooManyPending(MAX_PENDING));
        }
        let hop_by_hop = self.fresh_hop_by_hop();
        request.hop_by_hop = hop_by_hop;
        let bytes = request.encode()?;
        self.sent.insert(hop_by_hop, (self.sent_seq, request));
        self.sent_seq += 1;
        Ok((hop_by_hop, vec![Action::Send(bytes)]))
    }

    /// Sends an answer the layer above built for a delivered request
    /// (Hop-by-Hop as the request had). Also while [`State::Closing`]: the
    /// requests that crossed our DPR still deserve answers.
    pub fn send_answer(&mut self, answer: &Message, _now: Instant) -> Result<Vec<Action>, PeerError> {
        if !matches!(self.state, State::Open | State::Suspect | State::Closing) {
            return Err(PeerError::NotOpen(self.state));
        }
        if answer.is_request() {
            return Err(PeerError::NotAnAnswer);
        }
        if is_base(answer.command) {
            return Err(PeerError::BaseProtocol(answer.command));
        }
        if !self.delivered.contains_key(&answer.hop_by_hop) {
            return Err(PeerError::NoSuchRequest(answer.hop_by_hop));
        }
        let bytes = answer.encode()?;
        if let Some(n) = self.delivered.get_mut(&answer.hop_by_hop) {
            *n -= 1;
            if *n == 0 {
                self.delivered.remove(&answer.hop_by_hop);
            }
            self.delivered_total -= 1;
        }
        Ok(vec![Action::Send(bytes)])
    }

    /// Orderly shutdown (SIGTERM, or asked): DPR with this Disconnect-Cause,
    /// then Close on DPA or dpa_timeout. Before the capabilities exchange there
    /// is nobody to say goodbye to: Close at once.
    pub fn disconnect(&mut self, cause: u32, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Open | State::Suspect => {
                let mut dpr = self.base_request(command::DISCONNECT_PEER);
                dpr.avps = vec![
                    OwnedAvp::utf8(code::ORIGIN_HOST, None, true, &self.config.local.origin_host),
                    OwnedAvp::utf8(code::ORIGIN_REALM, None, true, &self.config.local.origin_realm),
                    OwnedAvp::u32(code::DISCONNECT_CAUSE, None, true, cause),
                ];
                self.state = State::Closing;
                self.dwr_pending = false;
                self.timer = now.checked_add(self.config.timers.dpa_timeout);
                self.send(&dpr, &mut out);
            }
            State::WaitConnect | State::WaitCer | State::WaitCea => {
                self.close(format!("disconnected (cause {cause}) before the capabilities exchange"), &mut out)
            }
            State::Closing | State::Closed => {}
        }
        out
    }

    /// Where the connection is; check after each call ([`State::Suspect`] means fail over).
    pub fn state(&self) -> State {
        self.state
    }

    /// The peer, once its CER/CEA has been accepted.
    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_ref()
    }

    /// Application requests sent and not yet answered, removed from the peer,
    /// in the order they were sent: after the connection went down the layer
    /// above resends them elsewhere with the T flag (RFC 6733 §5.5.4
    /// failover). Their answers, should they still come here, are dropped.
    pub fn take_unanswered(&mut self) -> Vec<Message> {
        let mut pending: Vec<(u64, Message)> = self.sent.drain().map(|(_, v)| v).collect();
        pending.sort_by_key(|(seq, _)| *seq);
        pending.into_iter().map(|(_, m)| m).collect()
    }

    /// A fresh End-to-End id (RFC 6733 §3): the high 12 bits are the low 12
    /// bits of [`LocalPeer::origin_state_id`] (the start time), the low 20
    /// count up from a value drawn from the seed.
    pub fn next_end_to_end(&mut self) -> u32 {
        let id = self.end_to_end_high | self.end_to_end_low;
        self.end_to_end_low = (self.end_to_end_low + 1) & 0x000f_ffff;
        id
    }

    // ---- receiving ----

    fn handle_frame(&mut self, frame: &[u8], now: Instant, out: &mut Vec<Action>) {
        match Message::decode(frame, &self.config.limits) {
            Ok(msg) => self.handle_message(msg, now, out),
            Err(e) => self.handle_undecodable(frame, &e, now, out),
        }
    }

    /// RFC 6733 §7: a request we cannot decode still gets an answer saying
    /// why, if the error has a Result-Code; anything else leaves us unable to
    /// tell what the peer meant, so the connection goes.
    fn handle_undecodable(&mut self, frame: &[u8], e: &MessageError, now: Instant, out: &mut Vec<Action>) {
        let is_request = frame.get(4).is_some_and(|flags| flags & FLAG_REQUEST != 0);
        let open = matches!(self.state, State::Open | State::Suspect | State::Closing);
        // Before the capabilities exchange only a CER is owed an answer.
        let skeleton = self.skeleton(frame).filter(|m| {
            is_request && (open || self.state == State::WaitCer && m.command == command::CAPABILITIES_EXCHANGE)
        });
        let (Some(request), Some(rc)) = (skeleton, e.result_code()) else {
            let what = if is_request { "request" } else { "answer" };
            return self.close(format!("undecodable {what}: {e}"), out);
        };
        let failed = self.failed_for(e, frame);
        let answer = self.error_answer(&request, rc, failed);
        self.send(&answer, out);
        if open {
            self.note_traffic(now);
        } else {
            self.close(format!("undecodable CER: {e} (answered {rc} {})", result_name(rc)), out);
        }
    }

    fn handle_message(&mut self, msg: Message, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Closed => {}
            State::WaitConnect => self.close("message received before the connection was reported up".into(), out),
            State::WaitCer => {
                if msg.command == command::CAPABILITIES_EXCHANGE && msg.is_request() {
                    self.handle_cer(&msg, now, out);
                } else {
                    self.close(format!("command {} received before the CER", describe(&msg)), out);
                }
            }
            State::WaitCea => {
                if msg.command == command::CAPABILITIES_EXCHANGE && !msg.is_request() {
                    self.handle_cea(&msg, now, out);
                } else {
                    self.close(format!("command {} received before the CEA", describe(&msg)), out);
                }
            }
            State::Open | State::Suspect | State::Closing => self.handle_open(msg, now, out),
        }
    }

    fn handle_open(&mut self, msg: Message, now: Instant, out: &mut Vec<Action>) {
        self.note_traffic(now);
        match (msg.command, msg.is_request()) {
            (command::CAPABILITIES_EXCHANGE, true) => self.close("CER on an open connection".into(), out),
            // A late or duplicate CEA changes nothing.
            (command::CAPABILITIES_EXCHANGE, false) => {}
            (command::DEVICE_WATCHDOG, is_request) => {
                if let Some((old, new)) = self.state_id_change(&msg) {
                    return self.close(format!("Origin-State-Id changed from {old} to {new}: the peer restarted"), out);
                }
                if is_request {
                    let mut dwa = Message::answer_to(&msg);
                    dwa.push(OwnedAvp::u32(code::RESULT_CODE, None, true, ResultCode::Success.value()));
                    dwa.avps.extend(self.identity());
                    self.send(&dwa, out);
                } else {
                    self.dwr_pending = false;
                }
            }
            (command::DISCONNECT_PEER, true) => {
                let mut dpa = Message::answer_to(&msg);
                dpa.push(OwnedAvp::u32(code::RESULT_CODE, None, true, ResultCode::Success.value()))
                    .push(OwnedAvp::utf8(code::ORIGIN_HOST, None, true, &self.config.local.origin_host))
                    .push(OwnedAvp::utf8(code::ORIGIN_REALM, None, true, &self.config.local.origin_realm));
                self.send(&dpa, out);
                let cause = msg.find(code::DISCONNECT_CAUSE, None).and_then(|a| a.as_u32().ok());
                let cause = cause.map_or_else(|| "none".to_string(), |c| c.to_string());
                self.close(format!("the peer disconnected (DPR, Disconnect-Cause {cause})"), out);
            }
            (command::DISCONNECT_PEER, false) => {
                if self.state == State::Closing {
                    self.close("disconnected (DPA received)".into(), out);
                }
            }
            (_, true) => {
                if self.delivered_total >= MAX_PENDING {
                    let busy = self.error_answer(&msg, ResultCode::TooBusy.value(), None);
                    return self.send(&busy, out);
                }
                *self.delivered.entry(msg.hop_by_hop).or_insert(0) += 1;
                self.delivered_total += 1;
                out.push(Action::Deliver(msg));
            }
            (_, false) => {
                // RFC 6733 §6.2: an answer that matches no request of ours is
                // dropped. (No logger in this crate: the layer above sees only
                // matched answers.)
                let matched = self.sent.get(&msg.hop_by_hop).is_some_and(|(_, req)| req.command == msg.command);
                if matched {
                    self.sent.remove(&msg.hop_by_hop);
                    out.push(Action::Deliver(msg));
                }
            }
        }
    }

    fn handle_cer(&mut self, cer: &Message, now: Instant, out: &mut Vec<Action>) {
        // What freeDiameter (and RFC 6733 §5.3.1) requires of a CER.
        let required: [(u32, &str, &[u8]); 5] = [
            (code::ORIGIN_HOST, "Origin-Host", b""),
            (code::ORIGIN_REALM, "Origin-Realm", b""),
            (code::HOST_IP_ADDRESS, "Host-IP-Address", &[0, 1, 0, 0, 0, 0]),
            (code::VENDOR_ID, "Vendor-Id", &[0; 4]),
            (code::PRODUCT_NAME, "Product-Name", b""),
        ];
        if let Some((missing, name, example)) = required.iter().find(|(c, _, _)| cer.find(*c, None).is_none()) {
            // §7.5: a missing AVP is reported by an example of it with minimal data.
            let example = OwnedAvp::octets(*missing, None, mandatory(*missing), example);
            let cea = self.cea(cer, ResultCode::MissingAvp.value(), Some(failed_avp(&example)));
            self.send(&cea, out);
            return self.close(format!("CER without {name}: answered DIAMETER_MISSING_AVP"), out);
        }
        let (Some(host), Some(realm)) = (cer.origin_host(), cer.origin_realm()) else {
            return self.close("CER with an unreadable Origin-Host or Origin-Realm".into(), out);
        };
        // Clear TCP only: NO_INBAND_SECURITY (0) must be on offer if anything is.
        let mut inband = cer.find_all(code::INBAND_SECURITY_ID, None).filter_map(|a| a.as_u32().ok()).peekable();
        if inband.peek().is_some() && !inband.any(|v| v == 0) {
            let cea = self.cea(cer, ResultCode::NoCommonSecurity.value(), None);
            self.send(&cea, out);
            return self
                .close(format!("CER from {host} offers only in-band TLS: answered DIAMETER_NO_COMMON_SECURITY"), out);
        }
        let known = self.known.as_ref().is_some_and(|known| known(host, realm));
        if !known {
            let cea = self.cea(cer, ResultCode::UnknownPeer.value(), None);
            self.send(&cea, out);
            return self
                .close(format!("CER from unknown peer {host} (realm {realm}): answered DIAMETER_UNKNOWN_PEER"), out);
        }
        let remote = self.remote_from(cer, host, realm);
        if !self.common_application(&remote) {
            let cea = self.cea(cer, ResultCode::NoCommonApplication.value(), None);
            self.send(&cea, out);
            return self.close(
                format!("CER from {host} has no application in common: answered DIAMETER_NO_COMMON_APPLICATION"),
                out,
            );
        }
        let cea = self.cea(cer, ResultCode::Success.value(), None);
        self.open(remote, now);
        self.send(&cea, out);
        if let Some(remote) = &self.remote {
            out.push(Action::Open(remote.clone()));
        }
    }

    fn handle_cea(&mut self, cea: &Message, now: Instant, out: &mut Vec<Action>) {
        match cea.result_code() {
            Some(rc) if rc == ResultCode::Success.value() => {
                let (Some(host), Some(realm)) = (cea.origin_host(), cea.origin_realm()) else {
                    return self.close("CEA without Origin-Host or Origin-Realm".into(), out);
                };
                let remote = self.remote_from(cea, host, realm);
                if !self.common_application(&remote) {
                    return self.close(format!("CEA from {host} has no application in common"), out);
                }
                self.open(remote.clone(), now);
                out.push(Action::Open(remote));
            }
            Some(rc) => self.close(format!("CEA Result-Code {rc} {}", result_name(rc)), out),
            None => self.close("CEA without a Result-Code".into(), out),
        }
    }

    fn open(&mut self, remote: Remote, now: Instant) {
        self.remote = Some(remote);
        self.state = State::Open;
        self.dwr_pending = false;
        self.arm_watchdog(now);
    }

    /// RFC 3539: any message from the peer shows it alive.
    fn note_traffic(&mut self, now: Instant) {
        match self.state {
            State::Open => self.arm_watchdog(now),
            State::Suspect => {
                self.state = State::Open;
                self.arm_watchdog(now);
            }
            _ => {}
        }
    }

    fn arm_watchdog(&mut self, now: Instant) {
        let tw = self.config.timers.tw.max(MIN_TW);
        let jitter = self.rng.next() % (2 * TW_JITTER_MS + 1);
        self.timer = now
            .checked_add(tw)
            .and_then(|t| t.checked_add(Duration::from_millis(jitter)))
            .and_then(|t| t.checked_sub(Duration::from_millis(TW_JITTER_MS)));
    }

    /// The old and new Origin-State-Id if a DWR/DWA reports a different one
    /// from the CER/CEA.
    fn state_id_change(&self, msg: &Message) -> Option<(u32, u32)> {
        let new = msg.find(code::ORIGIN_STATE_ID, None)?.as_u32().ok()?;
        let old = self.remote.as_ref()?.origin_state_id?;
        (old != new).then_some((old, new))
    }

    fn remote_from(&self, msg: &Message, host: &str, realm: &str) -> Remote {
        let ids = |avp_code| msg.find_all(avp_code, None).filter_map(|a| a.as_u32().ok()).collect::<Vec<u32>>();
        let mut auth_applications = ids(code::AUTH_APPLICATION_ID);
        let mut acct_applications = ids(code::ACCT_APPLICATION_ID);
        for vsai in msg.find_all(code::VENDOR_SPECIFIC_APPLICATION_ID, None) {
            for member in vsai.as_grouped(&self.config.limits).unwrap_or_default() {
                match (member.code, member.vendor_id, member.as_u32()) {
                    (code::AUTH_APPLICATION_ID, None, Ok(id)) => auth_applications.push(id),
                    (code::ACCT_APPLICATION_ID, None, Ok(id)) => acct_applications.push(id),
                    _ => {}
                }
            }
        }
        let relay = auth_applications.contains(&application::RELAY) || acct_applications.contains(&application::RELAY);
        Remote {
            origin_host: host.to_string(),
            origin_realm: realm.to_string(),
            host_ip_addresses: msg.find_all(code::HOST_IP_ADDRESS, None).filter_map(|a| a.as_address().ok()).collect(),
            product_name: msg
                .find(code::PRODUCT_NAME, None)
                .and_then(|a| a.as_str().ok())
                .unwrap_or_default()
                .to_string(),
            origin_state_id: msg.find(code::ORIGIN_STATE_ID, None).and_then(|a| a.as_u32().ok()),
            auth_applications,
            acct_applications,
            relay,
        }
    }

    fn common_application(&self, remote: &Remote) -> bool {
        let local = &self.config.local;
        let local_relay = local.auth_applications.contains(&application::RELAY)
            || local.acct_applications.contains(&application::RELAY);
        remote.relay
            || local_relay
            || local.auth_applications.iter().any(|a| remote.auth_applications.contains(a))
            || local.acct_applications.iter().any(|a| remote.acct_applications.contains(a))
    }

    // ---- sending ----

    fn fresh_hop_by_hop(&mut self) -> u32 {
        // After a wrap an id may still be in use; fewer than MAX_PENDING are,
        // so one of the next MAX_PENDING + 1 is free.
        let mut id = self.next_hop_by_hop;
        for _ in 0..=MAX_PENDING {
            id = self.next_hop_by_hop;
            self.next_hop_by_hop = self.next_hop_by_hop.wrapping_add(1);
            if !self.sent.contains_key(&id) {
                break;
            }
        }
        id
    }

    /// CER, DWR or DPR: peer-to-peer, so not proxiable.
    fn base_request(&mut self, command: u32) -> Message {
        let hop_by_hop = self.fresh_hop_by_hop();
        let end_to_end = self.next_end_to_end();
        let mut m = Message::request(command, application::COMMON, hop_by_hop, end_to_end);
        m.flags = FLAG_REQUEST;
        m
    }

    /// Origin-Host, Origin-Realm, Origin-State-Id: what a DWR and DWA carry.
    fn identity(&self) -> Vec<OwnedAvp> {
        let local = &self.config.local;
        vec![
            OwnedAvp::utf8(code::ORIGIN_HOST, None, true, &local.origin_host),
            OwnedAvp::utf8(code::ORIGIN_REALM, None, true, &local.origin_realm),
            OwnedAvp::u32(code::ORIGIN_STATE_ID, None, true, local.origin_state_id),
        ]
    }

    /// The CER's AVPs, in RFC 6733 §5.3.1's order.
    fn capabilities(&self) -> Vec<OwnedAvp> {
        let local = &self.config.local;
        let mut avps = vec![
            OwnedAvp::utf8(code::ORIGIN_HOST, None, true, &local.origin_host),
            OwnedAvp::utf8(code::ORIGIN_REALM, None, true, &local.origin_realm),
        ];
        for ip in &local.host_ip_addresses {
            avps.push(OwnedAvp::address(code::HOST_IP_ADDRESS, None, true, *ip));
        }
        avps.push(OwnedAvp::u32(code::VENDOR_ID, None, true, local.vendor_id));
        avps.push(OwnedAvp::utf8(code::PRODUCT_NAME, None, mandatory(code::PRODUCT_NAME), &local.product_name));
        avps.push(OwnedAvp::u32(code::ORIGIN_STATE_ID, None, true, local.origin_state_id));
        for id in &local.auth_applications {
            avps.push(OwnedAvp::u32(code::AUTH_APPLICATION_ID, None, true, *id));
        }
        for id in &local.acct_applications {
            avps.push(OwnedAvp::u32(code::ACCT_APPLICATION_ID, None, true, *id));
        }
        if let Some(rev) = local.firmware_revision {
            avps.push(OwnedAvp::u32(code::FIRMWARE_REVISION, None, mandatory(code::FIRMWARE_REVISION), rev));
        }
        avps
    }

    /// A CEA (RFC 6733 §5.3.2): Result-Code, then our capabilities, with
    /// Failed-AVP after Origin-State-Id as the ABNF places it.
    fn cea(&self, cer: &Message, rc: u32, failed: Option<OwnedAvp>) -> Message {
        let mut cea = Message::answer_to(cer);
        if is_protocol_error(rc) {
            cea.flags |= FLAG_ERROR;
        }
        cea.push(OwnedAvp::u32(code::RESULT_CODE, None, true, rc));
        let mut caps = self.capabilities();
        if let Some(failed) = failed {
            let at = caps.iter().position(|a| a.is(code::ORIGIN_STATE_ID, None)).map_or(caps.len(), |i| i + 1);
            caps.insert(at, failed);
        }
        cea.avps.extend(caps);
        cea
    }

    /// An answer reporting an error in `request` (RFC 6733 §7.2's
    /// answer-message): Session-Id first if it had a readable one, our
    /// identity, the Result-Code, Failed-AVP, and its Proxy-Info echoed (§6.2).
    fn error_answer(&self, request: &Message, rc: u32, failed: Option<OwnedAvp>) -> Message {
        let mut answer = Message::answer_to(request);
        if is_protocol_error(rc) {
            answer.flags |= FLAG_ERROR;
        }
        if let Some(sid) = request.find(code::SESSION_ID, None).filter(|a| a.as_str().is_ok()) {
            answer.push(sid.clone());
        }
        answer
            .push(OwnedAvp::utf8(code::ORIGIN_HOST, None, true, &self.config.local.origin_host))
            .push(OwnedAvp::utf8(code::ORIGIN_REALM, None, true, &self.config.local.origin_realm))
            .push(OwnedAvp::u32(code::RESULT_CODE, None, true, rc));
        if let Some(failed) = failed {
            answer.push(failed);
        }
        for proxy in request.find_all(code::PROXY_INFO, None) {
            if proxy.as_grouped(&self.config.limits).is_ok() {
                answer.push(proxy.clone());
            }
        }
        answer
    }

    /// The header of an undecodable request, with whichever of its Session-Id
    /// and Proxy-Info AVPs can be read: enough to address an error answer.
    fn skeleton(&self, frame: &[u8]) -> Option<Message> {
        let header: &[u8; HEADER_LEN] = frame.get(..HEADER_LEN)?.try_into().ok()?;
        let word = |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let avps = parse_avps_capped(&frame[HEADER_LEN..], self.config.limits.max_avps)
            .unwrap_or_default()
            .iter()
            .filter(|a| a.is(code::SESSION_ID, None) || a.is(code::PROXY_INFO, None))
            .map(OwnedAvp::from)
            .collect();
        Some(Message {
            flags: header[4],
            command: word(4) & 0x00ff_ffff,
            application: word(8),
            hop_by_hop: word(12),
            end_to_end: word(16),
            avps,
        })
    }

    /// The Failed-AVP for a decoding error, where the error names the AVP.
    fn failed_for(&self, e: &MessageError, frame: &[u8]) -> Option<OwnedAvp> {
        let body = frame.get(HEADER_LEN..)?;
        let offending = match *e {
            MessageError::ReservedAvpFlags { code, vendor_id, .. } => self
                .find_offending(body, code, vendor_id, 0, &|a| a.flags & AVP_FLAG_RESERVED != 0)
                .unwrap_or_else(|| stand_in(code, vendor_id)),
            MessageError::InvalidAvpLength { code, vendor_id } | MessageError::InvalidValue { code, vendor_id } => self
                .find_offending(body, code, vendor_id, 0, &|a| !self.valid_alone(a))
                .unwrap_or_else(|| stand_in(code, vendor_id)),
            // The AVP's length is what is wrong: its header is all there is to echo.
            MessageError::Avp {
                at,
                source: AvpError::Overrun { offset, code, .. } | AvpError::LengthTooShort { offset, code, .. },
            } => {
                let start = at.checked_add(offset)?;
                let header = frame.get(start..)?;
                let flags =
                    header.get(4).copied().unwrap_or(0) & (AVP_FLAG_VENDOR | AVP_FLAG_MANDATORY | AVP_FLAG_PROTECTED);
                let vendor_id = match header.get(8..12) {
                    Some(v) if flags & AVP_FLAG_VENDOR != 0 => Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
                    _ => None,
                };
                OwnedAvp { flags, ..stand_in(code, vendor_id) }
            }
            _ => return None,
        };
        Some(failed_avp(&offending))
    }

    /// The first AVP with this code that `faulty` picks, looking into Grouped
    /// AVPs as the decoder does (never into Failed-AVP, which it does not check).
    fn find_offending(
        &self,
        bytes: &[u8],
        avp_code: u32,
        vendor_id: Option<u32>,
        depth: usize,
        faulty: &dyn Fn(&Avp<'_>) -> bool,
    ) -> Option<OwnedAvp> {
        if depth > self.config.limits.max_depth {
            return None;
        }
        for avp in parse_avps_capped(bytes, self.config.limits.max_avps).ok()? {
            if avp.is(avp_code, vendor_id) && faulty(&avp) {
                return Some(OwnedAvp::from(&avp));
            }
            let grouped = dict::find(avp.code, avp.vendor_id).is_some_and(|d| d.data_type == DataType::Grouped);
            if grouped && !avp.is(code::FAILED_AVP, None) {
                if let Some(found) = self.find_offending(avp.data, avp_code, vendor_id, depth + 1, faulty) {
                    return Some(found);
                }
            }
        }
        None
    }

    /// Whether the decoder accepts this AVP on its own: tells the bad one
    /// among several with the same code.
    fn valid_alone(&self, avp: &Avp<'_>) -> bool {
        let probe = Message {
            flags: 0,
            command: 0,
            application: 0,
            hop_by_hop: 0,
            end_to_end: 0,
            avps: vec![OwnedAvp::from(avp)],
        };
        probe.encode().is_ok_and(|wire| Message::decode(&wire, &self.config.limits).is_ok())
    }

    fn send(&mut self, msg: &Message, out: &mut Vec<Action>) {
        match msg.encode() {
            Ok(bytes) => out.push(Action::Send(bytes)),
            // Only our own configuration can make this fail (a name of megabytes).
            Err(e) => self.close(format!("cannot encode command {}: {e}", describe(msg)), out),
        }
    }

    fn close(&mut self, reason: String, out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.timer = None;
        self.dwr_pending = false;
        self.rx = Vec::new();
        self.delivered.clear();
        self.delivered_total = 0;
        out.push(Action::Close { reason });
    }
}

/// An AVP header with no data, standing in where the AVP itself is not at hand.
fn stand_in(avp_code: u32, vendor_id: Option<u32>) -> OwnedAvp {
    OwnedAvp::octets(avp_code, vendor_id, false, &[])
}

/// "CER", "DWA", ... for the base commands, else the number and R/A, for logs.
fn describe(msg: &Message) -> String {
    let base = match msg.command {
        command::CAPABILITIES_EXCHANGE => "CE",
        command::DEVICE_WATCHDOG => "DW",
        command::DISCONNECT_PEER => "DP",
        other => return format!("{other} ({})", if msg.is_request() { "request" } else { "answer" }),
    };
    format!("{base}{}", if msg.is_request() { 'R' } else { 'A' })
}

/// RFC 6733 §5.6.4 election: true if the local host wins (its Origin-Host is the higher, compared as octet strings).
pub fn election_won(local_origin_host: &str, remote_origin_host: &str) -> bool {
    local_origin_host.as_bytes() > remote_origin_host.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diameter::message::{FLAG_PROXIABLE, FLAG_RETRANSMIT};
    use std::net::Ipv4Addr;

    const TERMINAL: &str = "nas.merchant.example";
    const SERVER: &str = "aaa.issuer.example";

    fn local(host: &str, realm: &str, state_id: u32) -> LocalPeer {
        LocalPeer {
            origin_host: host.into(),
            origin_realm: realm.into(),
            host_ip_addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))],
            vendor_id: 32473,
            product_name: "eapay".into(),
            firmware_revision: Some(3),
            origin_state_id: state_id,
            auth_applications: vec![application::EAP],
            acct_applications: vec![application::ACCOUNTING],
        }
    }

    fn config(local: LocalPeer) -> Arc<PeerConfig> {
        Arc::new(PeerConfig { local, timers: Timers::default(), limits: Limits::default() })
    }

    fn terminal(now: Instant) -> Peer {
        Peer::initiator(config(local(TERMINAL, "merchant.example", 1000)), now, 1)
    }

    fn server(now: Instant, known: bool) -> Peer {
        let known: KnownPeer = Box::new(move |host, realm| known && host == TERMINAL && realm == "merchant.example");
        Peer::responder(config(local(SERVER, "issuer.example", 2000)), known, now, 2)
    }

    fn decode(bytes: &[u8]) -> Message {
        Message::decode(bytes, &Limits::default()).unwrap()
    }

    /// The decoded messages of the Send actions.
    fn sent(actions: &[Action]) -> Vec<Message> {
        actions.iter().filter_map(|a| if let Action::Send(b) = a { Some(decode(b)) } else { None }).collect()
    }

    fn closed(actions: &[Action]) -> Option<&str> {
        actions.iter().find_map(|a| if let Action::Close { reason } = a { Some(reason.as_str()) } else { None })
    }

    fn delivered(actions: &[Action]) -> Vec<&Message> {
        actions.iter().filter_map(|a| if let Action::Deliver(m) = a { Some(m) } else { None }).collect()
    }

    /// Carries every Send between `a` and `b` until both are quiet, starting
    /// with `from_a`; returns all the actions each side produced.
    fn pump(a: &mut Peer, b: &mut Peer, from_a: Vec<Action>, now: Instant) -> (Vec<Action>, Vec<Action>) {
        let (mut a_log, mut b_log) = (Vec::new(), Vec::new());
        let mut to_b: Vec<Vec<u8>> = Vec::new();
        let mut to_a: Vec<Vec<u8>> = Vec::new();
        let take = |actions: Vec<Action>, queue: &mut Vec<Vec<u8>>, log: &mut Vec<Action>| {
            for action in actions {
                if let Action::Send(bytes) = &action {
                    queue.push(bytes.clone());
                }
                log.push(action);
            }
        };
        take(from_a, &mut to_b, &mut a_log);
        while !to_a.is_empty() || !to_b.is_empty() {
            for bytes in std::mem::take(&mut to_b) {
                take(b.handle_bytes(&bytes, now), &mut to_a, &mut b_log);
            }
            for bytes in std::mem::take(&mut to_a) {
                take(a.handle_bytes(&bytes, now), &mut to_b, &mut a_log);
            }
        }
        (a_log, b_log)
    }

    /// A terminal and a server with the capabilities exchanged.
    fn open_pair(now: Instant) -> (Peer, Peer) {
        let (mut t, mut s) = (terminal(now), server(now, true));
        let hello = t.handle_connected(now);
        pump(&mut t, &mut s, hello, now);
        assert_eq!((t.state(), s.state()), (State::Open, State::Open));
        (t, s)
    }

    fn der(end_to_end: u32) -> Message {
        let mut m = Message::request(command::DIAMETER_EAP, application::EAP, 0, end_to_end);
        m.push(OwnedAvp::utf8(code::SESSION_ID, None, true, "nas.merchant.example;1;1"))
            .push(OwnedAvp::u32(code::AUTH_APPLICATION_ID, None, true, application::EAP))
            .push(OwnedAvp::utf8(code::ORIGIN_HOST, None, true, TERMINAL))
            .push(OwnedAvp::utf8(code::ORIGIN_REALM, None, true, "merchant.example"))
            .push(OwnedAvp::utf8(code::DESTINATION_REALM, None, true, "issuer.example"))
            .push(OwnedAvp::octets(code::EAP_PAYLOAD, None, true, &[2, 1, 0, 5, 1]));
        m
    }

    /// A CER as freeDiameter 1.2.1 sends it on clear TCP: Inband-Security-Id 0, the relay application.
    fn freediameter_cer() -> Message {
        let mut m = Message::request(command::CAPABILITIES_EXCHANGE, 0, 0x55, 0x66);
        m.flags = FLAG_REQUEST;
        m.push(OwnedAvp::utf8(code::ORIGIN_HOST, None, true, TERMINAL))
            .push(OwnedAvp::utf8(code::ORIGIN_REALM, None, true, "merchant.example"))
            .push(OwnedAvp::address(code::HOST_IP_ADDRESS, None, true, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))))
            .push(OwnedAvp::u32(code::VENDOR_ID, None, true, 0))
            .push(OwnedAvp::utf8(code::PRODUCT_NAME, None, false, "freeDiameter"))
            .push(OwnedAvp::u32(code::ORIGIN_STATE_ID, None, true, 77))
            .push(OwnedAvp::u32(code::INBAND_SECURITY_ID, None, true, 0))
            .push(OwnedAvp::u32(code::ACCT_APPLICATION_ID, None, true, application::RELAY))
            .push(OwnedAvp::u32(code::FIRMWARE_REVISION, None, false, 10201));
        m
    }

    fn result_of(m: &Message) -> Option<u32> {
        m.result_code()
    }

    #[test]
    fn capabilities_exchange_opens_both_sides() {
        let now = Instant::now();
        let (mut t, mut s) = (terminal(now), server(now, true));
        assert_eq!((t.state(), s.state()), (State::WaitConnect, State::WaitCer));
        assert_eq!(t.poll_timeout(), None);
        let hello = t.handle_connected(now);
        assert_eq!(t.state(), State::WaitCea);
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(10)));
        let cer = &sent(&hello)[0];
        assert_eq!((cer.command, cer.application, cer.flags), (257, 0, FLAG_REQUEST));
        let codes: Vec<u32> = cer.avps.iter().map(|a| a.code).collect();
        assert_eq!(codes, [264, 296, 257, 266, 269, 278, 258, 259, 267]);
        assert!(!cer.find(code::PRODUCT_NAME, None).unwrap().is_mandatory());

        let (t_log, s_log) = pump(&mut t, &mut s, hello, now);
        assert_eq!((t.state(), s.state()), (State::Open, State::Open));
        let cea = &sent(&s_log)[0];
        assert_eq!(result_of(cea), Some(2001));
        assert!(!cea.is_request() && !cea.is_error());
        assert_eq!(cea.avps[0].code, code::RESULT_CODE);
        let Some(Action::Open(seen_by_server)) = s_log.iter().find(|a| matches!(a, Action::Open(_))) else {
            panic!("{s_log:?}")
        };
        assert_eq!(
            (seen_by_server.origin_host.as_str(), seen_by_server.origin_realm.as_str()),
            (TERMINAL, "merchant.example")
        );
        assert_eq!(seen_by_server.host_ip_addresses, [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))]);
        assert_eq!(
            (seen_by_server.auth_applications.as_slice(), seen_by_server.acct_applications.as_slice()),
            (&[5][..], &[3][..])
        );
        assert_eq!((seen_by_server.origin_state_id, seen_by_server.relay), (Some(1000), false));
        assert_eq!(seen_by_server.product_name, "eapay");
        let Some(Action::Open(seen_by_terminal)) = t_log.iter().find(|a| matches!(a, Action::Open(_))) else {
            panic!("{t_log:?}")
        };
        assert_eq!(seen_by_terminal.origin_host, SERVER);
        assert_eq!(seen_by_terminal.origin_state_id, Some(2000));
        assert_eq!(t.remote().unwrap().origin_realm, "issuer.example");
        assert_eq!(s.remote().unwrap().origin_host, TERMINAL);
        // A second connect changes nothing.
        assert!(t.handle_connected(now).is_empty());
    }

    #[test]
    fn freediameter_cer_with_inband_security_zero_and_relay_is_accepted() {
        let now = Instant::now();
        let mut s = server(now, true);
        let out = s.handle_bytes(&freediameter_cer().encode().unwrap(), now);
        assert_eq!(result_of(&sent(&out)[0]), Some(2001));
        let Some(Action::Open(remote)) = out.last() else { panic!("{out:?}") };
        assert!(remote.relay);
        assert_eq!(remote.origin_state_id, Some(77));

        // Only TLS on offer: no common security.
        let mut s = server(now, true);
        let mut tls = freediameter_cer();
        tls.avps.retain(|a| !a.is(code::INBAND_SECURITY_ID, None));
        tls.push(OwnedAvp::u32(code::INBAND_SECURITY_ID, None, true, 1));
        let out = s.handle_bytes(&tls.encode().unwrap(), now);
        assert_eq!(result_of(&sent(&out)[0]), Some(5017));
        assert!(closed(&out).is_some());
    }

    #[test]
    fn application_request_and_answer_are_matched() {
        let now = Instant::now();
        let (mut t, mut s) = open_pair(now);
        let e2e = t.next_end_to_end();
        let mut request = der(e2e);
        request.flags |= FLAG_RETRANSMIT;
        let (hop_by_hop, out) = t.send_request(request.clone(), now).unwrap();
        let (_, s_log) = pump(&mut t, &mut s, out, now);
        let got = delivered(&s_log);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].hop_by_hop, got[0].end_to_end), (hop_by_hop, e2e));
        assert!(got[0].is_retransmit());
        assert_eq!(got[0].avps, request.avps);

        // The answer, with a Route-Record as freeDiameter appends, comes back matched.
        let mut answer = Message::answer_to(got[0]);
        answer
            .push(OwnedAvp::utf8(code::SESSION_ID, None, true, "nas.merchant.example;1;1"))
            .push(OwnedAvp::u32(code::RESULT_CODE, None, true, 1001))
            .push(OwnedAvp::utf8(code::ROUTE_RECORD, None, true, "relay.example"));
        let out = s.send_answer(&answer.clone(), now).unwrap();
        // A second answer to the same request is refused.
        assert!(matches!(s.send_answer(&answer.clone(), now), Err(PeerError::NoSuchRequest(h)) if h == hop_by_hop));
        let (s_log2, t_log) = pump(&mut s, &mut t, out, now);
        assert!(closed(&s_log2).is_none());
        let got = delivered(&t_log);
        assert_eq!(got.len(), 1);
        assert_eq!(*got[0], answer);
        assert!(t.take_unanswered().is_empty());

        // An answer nobody asked for is dropped.
        let mut stray = answer.clone();
        stray.hop_by_hop ^= 0x5a5a;
        let out = t.handle_bytes(&stray.encode().unwrap(), now);
        assert!(out.is_empty());
        assert_eq!(t.state(), State::Open);
    }

    #[test]
    fn misuse_of_send_request_and_send_answer_is_refused() {
        let now = Instant::now();
        let mut t = terminal(now);
        assert!(matches!(t.send_request(der(1), now), Err(PeerError::NotOpen(State::WaitConnect))));
        let (mut t, _) = open_pair(now);
        let answer = Message::answer_to(&der(1));
        assert!(matches!(t.send_request(answer.clone(), now), Err(PeerError::NotARequest)));
        assert!(matches!(t.send_answer(&der(1), now), Err(PeerError::NotAnAnswer)));
        assert!(matches!(t.send_answer(&answer, now), Err(PeerError::NoSuchRequest(_))));
        let dwr = Message::request(command::DEVICE_WATCHDOG, 0, 0, 0);
        assert!(matches!(t.send_request(dwr, now), Err(PeerError::BaseProtocol(280))));
        let mut huge = der(1);
        huge.command = 1 << 24;
        assert!(matches!(t.send_request(huge, now), Err(PeerError::Encode(_))));
        assert!(t.take_unanswered().is_empty());
    }

    #[test]
    fn unknown_peer_gets_3010_with_the_e_bit_and_close() {
        let now = Instant::now();
        let (mut t, mut s) = (terminal(now), server(now, false));
        let hello = t.handle_connected(now);
        let (t_log, s_log) = pump(&mut t, &mut s, hello, now);
        let cea = &sent(&s_log)[0];
        assert_eq!(result_of(cea), Some(3010));
        assert!(cea.is_error());
        assert!(closed(&s_log).unwrap().contains("unknown peer"));
        assert!(matches!(s_log.last(), Some(Action::Close { .. })));
        assert!(closed(&t_log).unwrap().contains("3010"), "{t_log:?}");
        assert_eq!((t.state(), s.state()), (State::Closed, State::Closed));
        assert!(t.remote().is_none());
    }

    #[test]
    fn no_common_application_gets_5010() {
        let now = Instant::now();
        let mut nasreq_only = local(TERMINAL, "merchant.example", 1);
        nasreq_only.auth_applications = vec![application::NASREQ];
        nasreq_only.acct_applications = vec![];
        let mut t = Peer::initiator(config(nasreq_only), now, 5);
        let mut s = server(now, true);
        let hello = t.handle_connected(now);
        let (t_log, s_log) = pump(&mut t, &mut s, hello, now);
        let cea = &sent(&s_log)[0];
        assert_eq!(result_of(cea), Some(5010));
        assert!(!cea.is_error(), "5xxx answers go without the E bit");
        assert!(closed(&s_log).is_some());
        assert!(closed(&t_log).unwrap().contains("5010"));
    }

    #[test]
    fn missing_origin_host_gets_5005_with_failed_avp_and_close() {
        let now = Instant::now();
        let mut s = server(now, true);
        let mut cer = freediameter_cer();
        cer.avps.retain(|a| !a.is(code::ORIGIN_HOST, None));
        let out = s.handle_bytes(&cer.encode().unwrap(), now);
        let cea = &sent(&out)[0];
        assert_eq!(result_of(cea), Some(5005));
        assert_eq!((cea.hop_by_hop, cea.end_to_end), (0x55, 0x66));
        // An example of the missing AVP, empty (and so not itself a valid identity).
        assert_eq!(cea.find(code::FAILED_AVP, None).unwrap().data, [0, 0, 1, 8, 0x40, 0, 0, 8]);
        assert!(closed(&out).unwrap().contains("Origin-Host"));
        assert_eq!(s.state(), State::Closed);
        // Everything after the close is ignored.
        assert!(s.handle_bytes(&freediameter_cer().encode().unwrap(), now).is_empty());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn malformed_cer_is_answered_then_closed() {
        let now = Instant::now();
        let mut s = server(now, true);
        let mut cer = freediameter_cer();
        cer.avps[3] = OwnedAvp::octets(code::VENDOR_ID, None, true, &[0, 0]);
        let out = s.handle_bytes(&cer.encode().unwrap(), now);
        let cea = &sent(&out)[0];
        assert_eq!((cea.command, result_of(cea), cea.hop_by_hop), (257, Some(5014), 0x55));
        assert_eq!(cea.find(code::FAILED_AVP, None).unwrap().data, [0, 0, 1, 10, 0x40, 0, 0, 10, 0, 0, 0, 0]);
        assert!(closed(&out).unwrap().contains("DIAMETER_INVALID_AVP_LENGTH"));
        // A malformed request that is not a CER gets nothing before the exchange.
        let mut s = server(now, true);
        let mut bad = der(1);
        bad.push(OwnedAvp::octets(code::ORIGIN_STATE_ID, None, true, &[1]));
        let out = s.handle_bytes(&bad.encode().unwrap(), now);
        assert!(sent(&out).is_empty() && closed(&out).is_some());
    }

    #[test]
    fn request_before_cer_closes() {
        let now = Instant::now();
        let mut s = server(now, true);
        let out = s.handle_bytes(&der(1).encode().unwrap(), now);
        assert!(sent(&out).is_empty());
        assert!(closed(&out).unwrap().contains("before the CER"));
        // And a DWR before the CEA closes the initiator.
        let mut t = terminal(now);
        t.handle_connected(now);
        let mut dwr = Message::request(command::DEVICE_WATCHDOG, 0, 1, 1);
        dwr.flags = FLAG_REQUEST;
        let out = t.handle_bytes(&dwr.encode().unwrap(), now);
        assert!(closed(&out).unwrap().contains("before the CEA"));
    }

    #[test]
    fn silence_after_connect_closes_after_cer_timeout() {
        let now = Instant::now();
        let mut s = server(now, true);
        let deadline = now + Duration::from_secs(10);
        assert_eq!(s.poll_timeout(), Some(deadline));
        assert!(s.handle_timeout(deadline - Duration::from_millis(1)).is_empty());
        let out = s.handle_timeout(deadline);
        assert!(closed(&out).unwrap().contains("no CER"));
        assert_eq!(s.state(), State::Closed);

        let mut t = terminal(now);
        t.handle_connected(now);
        let out = t.handle_timeout(deadline);
        assert!(closed(&out).unwrap().contains("no CEA"));
    }

    #[test]
    fn idle_watchdog_sends_dwr_and_a_dwa_keeps_it_open() {
        let start = Instant::now();
        let (mut t, mut s) = open_pair(start);
        for round in 0..3 {
            let due = t.poll_timeout().unwrap();
            assert!(t.handle_timeout(due - Duration::from_millis(1)).is_empty());
            let out = t.handle_timeout(due);
            let dwr = &sent(&out)[0];
            assert_eq!((dwr.command, dwr.flags), (command::DEVICE_WATCHDOG, FLAG_REQUEST), "round {round}");
            let codes: Vec<u32> = dwr.avps.iter().map(|a| a.code).collect();
            assert_eq!(codes, [264, 296, 278]);
            let (t_log, s_log) = pump(&mut t, &mut s, out, due);
            let dwa = &sent(&s_log)[0];
            assert_eq!((dwa.command, result_of(dwa)), (command::DEVICE_WATCHDOG, Some(2001)));
            assert_eq!(dwa.find(code::ORIGIN_STATE_ID, None).unwrap().as_u32(), Ok(2000));
            assert!(delivered(&t_log).is_empty() && delivered(&s_log).is_empty());
            assert_eq!((t.state(), s.state()), (State::Open, State::Open));
        }
    }

    #[test]
    fn dwrs_are_answered_while_requests_are_outstanding() {
        let now = Instant::now();
        let (mut t, mut s) = open_pair(now);
        let (_, out) = t.send_request(der(9), now).unwrap();
        let (_, s_log) = pump(&mut t, &mut s, out, now);
        assert_eq!(delivered(&s_log).len(), 1);
        // The server has not answered the DER; the terminal's watchdog fires.
        let due = t.poll_timeout().unwrap();
        let out = t.handle_timeout(due);
        let (t_log, s_log) = pump(&mut t, &mut s, out, due);
        assert_eq!(result_of(&sent(&s_log)[0]), Some(2001));
        assert!(closed(&t_log).is_none() && t.state() == State::Open);
    }

    #[test]
    fn no_dwa_means_suspect_then_close_and_traffic_in_suspect_reopens() {
        let start = Instant::now();
        let (mut t, mut s) = open_pair(start);
        let due = t.poll_timeout().unwrap();
        assert_eq!(sent(&t.handle_timeout(due))[0].command, command::DEVICE_WATCHDOG);
        // The DWR is lost.
        let due = t.poll_timeout().unwrap();
        assert!(t.handle_timeout(due).is_empty());
        assert_eq!(t.state(), State::Suspect);
        assert!(t.send_request(der(1), due).is_ok(), "requests still go while suspect");

        // Any message from the peer brings it back: here the server's own DWR.
        let s_due = s.poll_timeout().unwrap();
        let out = s.handle_timeout(s_due);
        let (_, t_log) = pump(&mut s, &mut t, out, s_due);
        assert_eq!(t.state(), State::Open);
        assert_eq!(sent(&t_log)[0].command, command::DEVICE_WATCHDOG);

        // Still pending (the DWA never came): the next silence is suspect again, then down.
        let due = t.poll_timeout().unwrap();
        assert!(t.handle_timeout(due).is_empty());
        assert_eq!(t.state(), State::Suspect);
        let down = t.poll_timeout().unwrap();
        assert!(down >= due + Duration::from_secs(28) && down <= due + Duration::from_secs(32));
        let out = t.handle_timeout(down);
        assert_eq!(closed(&out), Some("watchdog: peer down (no answer to DWR)"));
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.take_unanswered().len(), 1);
    }

    #[test]
    fn a_dwa_in_suspect_reopens() {
        let start = Instant::now();
        let (mut t, mut s) = open_pair(start);
        let due = t.poll_timeout().unwrap();
        let dwr = t.handle_timeout(due);
        let late = t.poll_timeout().unwrap();
        t.handle_timeout(late);
        assert_eq!(t.state(), State::Suspect);
        // The DWA arrives late.
        let (_, s_log) = pump(&mut t, &mut s, dwr, late);
        assert_eq!(t.state(), State::Open);
        assert_eq!(sent(&s_log).len(), 1);
        // Pending is clear: the next idle period sends a DWR again.
        let due = t.poll_timeout().unwrap();
        assert_eq!(sent(&t.handle_timeout(due))[0].command, command::DEVICE_WATCHDOG);
        assert_eq!(t.state(), State::Open);
    }

    #[test]
    fn watchdog_jitter_stays_within_two_seconds() {
        let now = Instant::now();
        let (mut low, mut high) = (Duration::MAX, Duration::ZERO);
        for seed in 0..500u64 {
            let mut t = Peer::initiator(config(local(TERMINAL, "merchant.example", 1)), now, seed);
            let mut s = server(now, true);
            let hello = t.handle_connected(now);
            pump(&mut t, &mut s, hello, now);
            let wait = t.poll_timeout().unwrap() - now;
            assert!(wait >= Duration::from_secs(28) && wait <= Duration::from_secs(32), "seed {seed}: {wait:?}");
            low = low.min(wait);
            high = high.max(wait);
        }
        assert!(low < Duration::from_millis(28_500) && high > Duration::from_millis(31_500), "{low:?}..{high:?}");

        // Tw under the RFC's 6 s minimum counts as 6 s.
        let mut fast = PeerConfig {
            local: local(TERMINAL, "merchant.example", 1),
            timers: Timers::default(),
            limits: Limits::default(),
        };
        fast.timers.tw = Duration::from_secs(1);
        let mut t = Peer::initiator(Arc::new(fast), now, 3);
        let mut s = server(now, true);
        let hello = t.handle_connected(now);
        pump(&mut t, &mut s, hello, now);
        let wait = t.poll_timeout().unwrap() - now;
        assert!(wait >= Duration::from_secs(4) && wait <= Duration::from_secs(8), "{wait:?}");
    }

    #[test]
    fn dpr_and_dpa_in_both_directions() {
        let now = Instant::now();
        for terminal_leaves in [true, false] {
            let (mut t, mut s) = open_pair(now);
            let (leaver, stayer) = if terminal_leaves { (&mut t, &mut s) } else { (&mut s, &mut t) };
            let out = leaver.disconnect(diameter_cause_rebooting(), now);
            assert_eq!(leaver.state(), State::Closing);
            assert_eq!(leaver.poll_timeout(), Some(now + Duration::from_secs(5)));
            let dpr = &sent(&out)[0];
            assert_eq!((dpr.command, dpr.flags), (command::DISCONNECT_PEER, FLAG_REQUEST));
            assert_eq!(dpr.find(code::DISCONNECT_CAUSE, None).unwrap().as_u32(), Ok(0));
            let (l_log, s_log) = pump(leaver, stayer, out, now);
            let dpa = &sent(&s_log)[0];
            assert_eq!((dpa.command, result_of(dpa)), (command::DISCONNECT_PEER, Some(2001)));
            // The DPA goes out before the Close.
            assert!(matches!(s_log.as_slice(), [Action::Send(_), Action::Close { .. }]), "{s_log:?}");
            assert!(closed(&s_log).unwrap().contains("Disconnect-Cause 0"));
            assert_eq!(closed(&l_log), Some("disconnected (DPA received)"));
            assert_eq!((t.state(), s.state()), (State::Closed, State::Closed));
        }
        // No DPA: closed after dpa_timeout. A second disconnect does nothing.
        let (mut t, _s) = open_pair(now);
        t.disconnect(1, now);
        assert!(t.disconnect(1, now).is_empty());
        assert!(t.handle_timeout(now + Duration::from_millis(4_999)).is_empty());
        assert!(closed(&t.handle_timeout(now + Duration::from_secs(5))).unwrap().contains("no DPA"));
        // Before the exchange there is nobody to tell.
        let mut s = server(now, true);
        assert!(closed(&s.disconnect(2, now)).is_some());
    }

    fn diameter_cause_rebooting() -> u32 {
        dict::DisconnectCause::Rebooting.value()
    }

    #[test]
    fn origin_state_id_change_in_dwr_closes() {
        let now = Instant::now();
        let (_, mut s) = open_pair(now);
        let mut dwr = Message::request(command::DEVICE_WATCHDOG, 0, 42, 43);
        dwr.flags = FLAG_REQUEST;
        dwr.push(OwnedAvp::utf8(code::ORIGIN_HOST, None, true, TERMINAL))
            .push(OwnedAvp::utf8(code::ORIGIN_REALM, None, true, "merchant.example"))
            .push(OwnedAvp::u32(code::ORIGIN_STATE_ID, None, true, 1000));
        let out = s.handle_bytes(&dwr.encode().unwrap(), now);
        assert_eq!(result_of(&sent(&out)[0]), Some(2001));
        dwr.avps[2] = OwnedAvp::u32(code::ORIGIN_STATE_ID, None, true, 1001);
        let out = s.handle_bytes(&dwr.encode().unwrap(), now);
        assert!(sent(&out).is_empty());
        assert!(closed(&out).unwrap().contains("restarted"));
    }

    #[test]
    fn bytes_delivered_one_at_a_time_still_frame() {
        let now = Instant::now();
        let mut t = terminal(now);
        let mut s = server(now, true);
        let hello = t.handle_connected(now);
        let Action::Send(cer) = &hello[0] else { panic!() };
        let mut out = Vec::new();
        for b in cer {
            out.extend(s.handle_bytes(std::slice::from_ref(b), now));
        }
        assert_eq!(s.state(), State::Open);
        let Action::Send(cea) = &out[0] else { panic!("{out:?}") };
        // Then two requests in one read, split after an odd number of bytes.
        let mut stream = cea.clone();
        assert!(t.handle_bytes(&stream, now).iter().any(|a| matches!(a, Action::Open(_))));
        stream.clear();
        let (_, a) = t.send_request(der(1), now).unwrap();
        let (_, b) = t.send_request(der(2), now).unwrap();
        for action in a.into_iter().chain(b) {
            let Action::Send(bytes) = action else { panic!() };
            stream.extend(bytes);
        }
        let mut got = s.handle_bytes(&stream[..7], now);
        got.extend(s.handle_bytes(&stream[7..], now));
        let ids: Vec<u32> = delivered(&got).iter().map(|m| m.end_to_end).collect();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn malformed_requests_get_error_answers_and_malformed_answers_close() {
        let now = Instant::now();
        let (mut t, mut s) = open_pair(now);
        // An Origin-State-Id (Unsigned32) of 3 octets: 5014 with the AVP in Failed-AVP, no E bit.
        let mut bad = der(5);
        bad.hop_by_hop = 77;
        bad.push(OwnedAvp::octets(code::ORIGIN_STATE_ID, None, true, &[1, 2, 3]));
        let out = s.handle_bytes(&bad.encode().unwrap(), now);
        let answer = &sent(&out)[0];
        assert_eq!((result_of(answer), answer.is_error(), answer.hop_by_hop), (Some(5014), false, 77));
        assert_eq!(answer.session_id(), Some("nas.merchant.example;1;1"));
        assert_eq!(answer.avps[0].code, code::SESSION_ID);
        let failed = answer.find(code::FAILED_AVP, None).unwrap();
        assert_eq!(failed.data, [0, 0, 1, 22, 0x40, 0, 0, 11, 1, 2, 3, 0]);
        assert_eq!(s.state(), State::Open);

        // Two Host-IP-Addresses, the second one bad: Failed-AVP holds the second.
        let mut two = der(6);
        two.push(OwnedAvp::address(code::HOST_IP_ADDRESS, None, true, IpAddr::V4(Ipv4Addr::LOCALHOST)));
        two.push(OwnedAvp::octets(code::HOST_IP_ADDRESS, None, true, &[0, 1, 9]));
        let out = s.handle_bytes(&two.encode().unwrap(), now);
        let answer = &sent(&out)[0];
        assert_eq!(result_of(answer), Some(5014));
        // The echoed AVP is malformed by design: compare its octets.
        assert_eq!(answer.find(code::FAILED_AVP, None).unwrap().data, [0, 0, 1, 1, 0x40, 0, 0, 11, 0, 1, 9, 0]);

        // An AVP whose length overruns the message: 5014, its header echoed.
        let mut wire = der(7).encode().unwrap();
        let last = wire.len() - 16 + 7; // the low octet of the EAP-Payload's AVP Length (the last AVP: 8 + 5 + 3 padding)
        wire[last] = 0x40;
        let out = s.handle_bytes(&wire, now);
        let answer = &sent(&out)[0];
        assert_eq!(result_of(answer), Some(5014));
        assert_eq!(answer.find(code::FAILED_AVP, None).unwrap().data, [0, 0, 1, 0xce, 0x40, 0, 0, 8]);

        // A request with the E bit: 3008, with the E bit.
        let mut wire = der(8).encode().unwrap();
        wire[4] |= FLAG_ERROR;
        let out = s.handle_bytes(&wire, now);
        let answer = &sent(&out)[0];
        assert_eq!((result_of(answer), answer.is_error(), answer.end_to_end), (Some(3008), true, 8));
        assert!(answer.is_proxiable());
        assert_eq!(s.state(), State::Open);
        assert!(t.take_unanswered().is_empty());

        // An undecodable answer: nothing to reply, close.
        let (_, out) = t.send_request(der(9), now).unwrap();
        let Action::Send(req) = &out[0] else { panic!() };
        let mut answer = Message::answer_to(&decode(req));
        answer.push(OwnedAvp::octets(code::RESULT_CODE, None, true, &[0, 7]));
        let out = t.handle_bytes(&answer.encode().unwrap(), now);
        assert!(closed(&out).unwrap().contains("undecodable answer"));
        assert_eq!(t.take_unanswered().len(), 1);
    }

    #[test]
    fn framing_errors_close() {
        let now = Instant::now();
        for wire in [&[2u8, 0, 0, 20][..], &[1, 0, 0, 18], &[1, 0xff, 0xff, 0xfc], &[1, 0, 0, 4]] {
            let (mut t, _) = open_pair(now);
            let out = t.handle_bytes(wire, now);
            assert!(closed(&out).unwrap().starts_with("Diameter framing lost"), "{wire:?}");
        }
    }

    #[test]
    fn pending_requests_are_capped() {
        let now = Instant::now();
        let (mut t, mut s) = open_pair(now);
        for i in 0..MAX_PENDING as u32 {
            let (_, out) = t.send_request(der(i), now).unwrap();
            let Action::Send(bytes) = &out[0] else { panic!() };
            assert_eq!(delivered(&s.handle_bytes(bytes, now)).len(), 1);
        }
        assert!(matches!(t.send_request(der(0), now), Err(PeerError::TooManyPending(MAX_PENDING))));
        // The server's layer above never answered: one more request is too much.
        let mut extra = der(99_999);
        extra.hop_by_hop = 0xdead;
        let out = s.handle_bytes(&extra.encode().unwrap(), now);
        let busy = &sent(&out)[0];
        assert_eq!((result_of(busy), busy.is_error(), busy.hop_by_hop), (Some(3004), true, 0xdead));
        assert!(delivered(&out).is_empty());
        assert_eq!(t.take_unanswered().len(), MAX_PENDING);
        assert!(t.send_request(der(0), now).is_ok());
    }

    #[test]
    fn take_unanswered_returns_what_was_in_flight_in_order() {
        let now = Instant::now();
        let (mut t, mut s) = open_pair(now);
        let mut hops = Vec::new();
        for e2e in [10, 11, 12] {
            let (hop, out) = t.send_request(der(e2e), now).unwrap();
            hops.push(hop);
            if e2e == 11 {
                // This one is answered.
                let (_, s_log) = pump(&mut t, &mut s, out, now);
                let answer = Message::answer_to(delivered(&s_log)[0]);
                let out = s.send_answer(&answer, now).unwrap();
                pump(&mut s, &mut t, out, now);
            }
        }
        let out = t.disconnect(0, now);
        pump(&mut t, &mut s, out, now);
        assert_eq!(t.state(), State::Closed);
        let left = t.take_unanswered();
        let ids: Vec<(u32, u32)> = left.iter().map(|m| (m.end_to_end, m.hop_by_hop)).collect();
        assert_eq!(ids, [(10, hops[0]), (12, hops[2])]);
        assert!(t.take_unanswered().is_empty());
        assert!(hops.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn end_to_end_ids_carry_the_start_in_the_high_bits() {
        let now = Instant::now();
        let mut t = Peer::initiator(config(local(TERMINAL, "merchant.example", 0x1234_5abc)), now, 9);
        let first = t.next_end_to_end();
        assert_eq!(first >> 20, 0xabc);
        let second = t.next_end_to_end();
        assert_eq!(second >> 20, 0xabc);
        assert_eq!(second & 0xfffff, (first + 1) & 0xfffff);
        // The CER takes one too.
        let cer = &sent(&t.handle_connected(now))[0];
        assert_eq!(cer.end_to_end >> 20, 0xabc);
    }

    #[test]
    fn a_peer_can_move_between_tokio_tasks() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Peer>();
        send_sync::<Action>();
        send_sync::<PeerError>();
    }

    #[test]
    fn election() {
        assert!(election_won("b.example", "a.example"));
        assert!(!election_won("a.example", "b.example"));
        assert!(!election_won("a.example", "a.example"));
        assert!(election_won("a.example.", "a.example"));
        // Octets, not case-folded: 'a' (0x61) beats 'B' (0x42).
        assert!(election_won("a", "B"));
    }

    #[test]
    fn garbage_never_panics() {
        let start = Instant::now();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let seeds: Vec<Vec<u8>> = vec![
            freediameter_cer().encode().unwrap(),
            der(1).encode().unwrap(),
            {
                let mut m = Message::request(command::DEVICE_WATCHDOG, 0, 1, 1);
                m.flags = FLAG_REQUEST | FLAG_PROXIABLE;
                m.push(OwnedAvp::u32(code::ORIGIN_STATE_ID, None, true, 1000));
                m.encode().unwrap()
            },
            Message::answer_to(&der(1)).encode().unwrap(),
        ];
        let (mut sends, mut closes, mut deliveries) = (0, 0, 0);
        for round in 0..600 {
            let mut now = start;
            let mut peer = match round % 3 {
                0 => server(now, true),
                1 => open_pair(now).1,
                _ => open_pair(now).0,
            };
            let mut stream = Vec::new();
            if round % 6 == 0 {
                stream.extend(&seeds[0]);
            }
            for _ in 0..1 + rng.below(4) {
                let mut w = match rng.below(3) {
                    0 => (0..rng.below(96)).map(|_| rng.next() as u8).collect::<Vec<u8>>(),
                    _ => {
                        let mut w = seeds[rng.below(seeds.len())].clone();
                        for _ in 0..1 + rng.below(4) {
                            let at = rng.below(w.len());
                            w[at] = rng.next() as u8;
                        }
                        w
                    }
                };
                if rng.below(4) == 0 {
                    w.truncate(rng.below(w.len() + 1));
                }
                stream.extend(w);
            }
            let mut at = 0;
            while at < stream.len() {
                let n = 1 + rng.below(stream.len() - at);
                let out = peer.handle_bytes(&stream[at..at + n], now);
                for action in &out {
                    match action {
                        // Whatever the peer sends is a well-formed message.
                        Action::Send(bytes) => {
                            decode(bytes);
                            sends += 1;
                        }
                        Action::Close { .. } => closes += 1,
                        Action::Deliver(_) => deliveries += 1,
                        Action::Open(_) => {}
                    }
                }
                if peer.state() == State::Closed {
                    assert!(peer.handle_bytes(&stream[at..], now).is_empty());
                    break;
                }
                at += n;
                now += Duration::from_millis(rng.below(20_000) as u64);
                if peer.poll_timeout().is_some_and(|t| t <= now) {
                    peer.handle_timeout(now);
                }
            }
            let _ = peer.take_unanswered();
        }
        // The loop reached the error answers, the closes and the layer above.
        assert!(sends > 50 && closes > 200 && deliveries > 10, "{sends} {closes} {deliveries}");
    }
}
