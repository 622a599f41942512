//! 3-D Secure 1.0 at the level of the paper's §3.6 and Fig. 6.
//!
//! The holder gives the real card number to the merchant. The merchant's
//! MPI asks the Visa Directory Server whether the card is enrolled (VEReq /
//! VERes; the VDS asks the issuer and returns the ACS URL), then builds a
//! PAReq from the transaction, signs it with its own key and sends it
//! through the holder's browser to the issuer's ACS. The ACS shows the
//! purchase, takes the holder's 3-D password, and returns a PARes signed
//! with its key, again through the browser, to the MPI, which checks it and
//! asks for authorization.
//!
//! The browser hops run through the merchant's page (an iframe or pop-up the
//! merchant opens): the paper's reference [5] (Assora and Shirvani) notes a
//! malicious merchant can proxy them instead of redirecting. The model does
//! exactly that: those messages pass the merchant's [`Terminal`].

use sha2::{Digest, Sha256};

use crate::pan::{self, Inversion, SearchSpace};
use crate::signing::{self, KeyPair};
use crate::{
    Evidence, Field, HolderSecrets, IssuerDb, Message, Outcome, Party, Purchase, Scheme, Source, Terminal, Wire,
    AMOUNT, PURCHASE,
};

/// What the MPI signs in a PAReq.
const PAREQ_SIGNED: &[&str] = &["merchant", "xid", PURCHASE, AMOUNT, "pan"];
/// What the ACS signs in a PARes.
const PARES_SIGNED: &[&str] = &["xid", AMOUNT, "pan", "status"];

pub struct ThreeDSecure {
    pan: String,
    expiry: String,
    password: String,
    mpi: KeyPair,
    acs: KeyPair,
    merchant: String,
    /// The ACS's open PAReqs, by XID.
    pending: Vec<Message>,
    next_xid: u64,
}

impl ThreeDSecure {
    pub fn new() -> Result<ThreeDSecure, openssl::error::ErrorStack> {
        Ok(ThreeDSecure {
            pan: pan::random_pan("400000"),
            expiry: "1912".into(),
            password: format!("pw-{:08x}", rand::random::<u32>()),
            mpi: KeyPair::generate()?,
            acs: KeyPair::generate()?,
            merchant: "M-SHOP".into(),
            pending: Vec::new(),
            next_xid: 1,
        })
    }

    fn password_verifier(&self) -> [u8; 32] {
        Sha256::digest(self.password.as_bytes()).into()
    }
}

impl Scheme for ThreeDSecure {
    fn name(&self) -> String {
        "3-D Secure".into()
    }

    fn purchase(&mut self, agreed: &Purchase, terminal: &mut dyn Terminal) -> Outcome {
        let mut wire = Wire::new(terminal);
        let checkout = wire.via_merchant(
            Message::new(Party::Holder, Party::Merchant, "checkout")
                .with("pan", &self.pan)
                .with("expiry", &self.expiry)
                .with(PURCHASE, &agreed.item)
                .with_u64(AMOUNT, agreed.amount),
        );
        let Ok(pan) = checkout.text("pan") else { return Outcome::declined("no card number", wire.parties()) };
        // Enrollment: MPI -> VDS -> issuer -> VDS -> MPI.
        let vereq = wire.via_merchant(Message::new(Party::Merchant, Party::DirectoryServer, "VEReq").with("pan", &pan));
        wire.direct(Message { from: Party::DirectoryServer, to: Party::Issuer, ..vereq });
        wire.direct(Message::new(Party::Issuer, Party::DirectoryServer, "VERes").with("acs-url", "https://acs.issuer"));
        wire.via_merchant(
            Message::new(Party::DirectoryServer, Party::Merchant, "VERes").with("acs-url", "https://acs.issuer"),
        );

        let xid = self.next_xid;
        self.next_xid += 1;
        let pareq = Message::new(Party::Merchant, Party::Issuer, "PAReq")
            .with("merchant", &self.merchant)
            .with_u64("xid", xid)
            .with(PURCHASE, checkout.get(PURCHASE).unwrap_or_default())
            .with_u64(AMOUNT, checkout.u64(AMOUNT).unwrap_or_default())
            .with("pan", &pan);
        let mut pareq = wire.via_merchant(pareq);
        // The MPI signs what the merchant decided to send.
        let signature = pareq.encode_fields(PAREQ_SIGNED).map(|b| self.mpi.sign(&b)).unwrap_or_default();
        pareq.fields.push(Field { name: "mpi-signature".into(), value: signature });
        if let Err(why) = self.acs_takes_pareq(&pareq) {
            return Outcome::declined(why, wire.parties());
        }
        // The ACS's page shows the purchase; the holder answers only if it is
        // what it agreed to.
        let page = wire.via_merchant(
            Message::new(Party::Issuer, Party::Holder, "ACS page")
                .with("merchant", &self.merchant)
                .with_u64(AMOUNT, pareq.u64(AMOUNT).unwrap_or_default()),
        );
        if page.u64(AMOUNT).ok() != Some(agreed.amount) {
            return Outcome::declined("the holder saw another amount and cancelled", wire.parties());
        }
        let credentials = wire.via_merchant(
            Message::new(Party::Holder, Party::Issuer, "3-D password")
                .with_u64("xid", xid)
                .with("password", &self.password),
        );
        let pares = match self.acs_authenticates(&credentials) {
            Ok(pares) => wire.via_merchant(pares),
            Err(why) => return Outcome::declined(why, wire.parties()),
        };
        let authorization = wire.via_merchant(
            Message::new(Party::Merchant, Party::Issuer, "authorization request")
                .with("pan", &pan)
                .with(PURCHASE, pareq.get(PURCHASE).unwrap_or_default())
                .with_u64(AMOUNT, pareq.u64(AMOUNT).unwrap_or_default())
                .with("pares", encode_pares(&pares)),
        );
        let mut outcome = self.issuer_authorizes(&authorization);
        outcome.parties = wire.parties();
        outcome
    }

    fn submit(&mut self, messages: &[Message]) -> Outcome {
        let parties = vec![Party::Merchant, Party::Issuer];
        let mut last = Outcome::declined("nothing sent to the issuer", parties.clone());
        // The merchant plays its own part: it signs its PAReqs (the MPI key
        // is its own) and forwards the PARes the ACS sends back.
        let mut pares: Option<Message> = None;
        for m in messages.iter().filter(|m| m.to == Party::Issuer) {
            last = match m.label.as_str() {
                "PAReq" => {
                    let mut pareq = m.clone();
                    pareq.fields.retain(|f| f.name != "mpi-signature");
                    let signature = pareq.encode_fields(PAREQ_SIGNED).map(|b| self.mpi.sign(&b)).unwrap_or_default();
                    pareq.fields.push(Field { name: "mpi-signature".into(), value: signature });
                    match self.acs_takes_pareq(&pareq) {
                        Ok(()) => continue,
                        Err(why) => return Outcome::declined(why, parties),
                    }
                }
                "3-D password" => match self.acs_authenticates(m) {
                    Ok(p) => {
                        pares = Some(p);
                        continue;
                    }
                    Err(why) => return Outcome::declined(why, parties),
                },
                "authorization request" => {
                    let mut request = m.clone();
                    if let Some(p) = &pares {
                        request.set("pares", &encode_pares(p));
                    }
                    self.issuer_authorizes(&request)
                }
                _ => continue,
            };
        }
        last
    }

    fn pass_time(&mut self, _ms: u64) {
        // Nothing in the paper's 3-D Secure flow expires.
    }

    fn issuer_db(&self) -> IssuerDb {
        // The ACS's enrolment table: the card number and a password verifier.
        let record = vec![
            Field { name: "pan".into(), value: self.pan.clone().into_bytes() },
            Field { name: "password-verifier".into(), value: self.password_verifier().to_vec() },
        ];
        let raw = record.iter().flat_map(|f| f.value.iter().copied()).collect();
        IssuerDb { raw, records: vec![record], what: "the ACS's enrolment table (PAN, password verifier)".into() }
    }

    fn invert(&self, _source: Source<'_>, _space: &SearchSpace) -> Inversion {
        Inversion::not_applicable("3-D Secure uses the real card number, no virtual one")
    }

    fn evidence(&self, _outcome: &Outcome) -> Evidence {
        Evidence::IssuerStatement {
            what: "the PARes, signed by the issuer's own ACS after checking a password it also knows".into(),
        }
    }

    fn holder_secrets(&self) -> HolderSecrets {
        HolderSecrets {
            pan: self.pan.clone(),
            reusable: vec![("3-D password".into(), self.password.clone().into_bytes())],
        }
    }
}

/// A PARes as one field of the authorization request.
fn encode_pares(pares: &Message) -> Vec<u8> {
    pares.encode_fields(&["xid", AMOUNT, "pan", "status", "acs-signature"]).unwrap_or_default()
}

/// The fields of [`encode_pares`] back.
fn decode_pares(bytes: &[u8]) -> Option<Message> {
    let mut m = Message::new(Party::Issuer, Party::Merchant, "PARes");
    let mut rest = bytes;
    while !rest.is_empty() {
        let nul = rest.iter().position(|&b| b == 0)?;
        let name = std::str::from_utf8(&rest[..nul]).ok()?.to_owned();
        let len_bytes: [u8; 4] = rest.get(nul + 1..nul + 5)?.try_into().ok()?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let value = rest.get(nul + 5..nul + 5 + len)?.to_vec();
        m.fields.push(Field { name, value });
        rest = &rest[nul + 5 + len..];
    }
    Some(m)
}

impl ThreeDSecure {
    /// The ACS checks the MPI's signature (its certificate chains to the
    /// card scheme's root: the paper's additional infrastructure).
    fn acs_takes_pareq(&mut self, pareq: &Message) -> Result<(), &'static str> {
        let signed = pareq.encode_fields(PAREQ_SIGNED).map_err(|_| "malformed PAReq")?;
        let signature = pareq.get("mpi-signature").map_err(|_| "unsigned PAReq")?;
        if !signing::verify(self.mpi.spki(), &signed, signature) {
            return Err("PAReq signature does not verify");
        }
        if pareq.text("pan").ok().as_deref() != Some(self.pan.as_str()) {
            return Err("card not enrolled");
        }
        self.pending.push(pareq.clone());
        Ok(())
    }

    fn acs_authenticates(&mut self, credentials: &Message) -> Result<Message, &'static str> {
        let xid = credentials.u64("xid").map_err(|_| "no XID")?;
        let password = credentials.get("password").map_err(|_| "no password")?;
        if Sha256::digest(password).as_slice() != self.password_verifier() {
            return Err("wrong 3-D password");
        }
        let pareq = self.pending.iter().rev().find(|p| p.u64("xid").ok() == Some(xid)).ok_or("unknown XID")?;
        let mut pares = Message::new(Party::Issuer, Party::Merchant, "PARes")
            .with_u64("xid", xid)
            .with_u64(AMOUNT, pareq.u64(AMOUNT).map_err(|_| "malformed PAReq")?)
            .with("pan", &self.pan)
            .with("status", "Y");
        let signature = pares.encode_fields(PARES_SIGNED).map(|b| self.acs.sign(&b)).map_err(|_| "cannot sign")?;
        pares.fields.push(Field { name: "acs-signature".into(), value: signature });
        Ok(pares)
    }

    /// Authorization: a PARes the issuer's ACS signed, for this card and amount.
    fn issuer_authorizes(&self, request: &Message) -> Outcome {
        let parties = vec![Party::Merchant, Party::Issuer];
        let (Ok(pan), Ok(amount), Ok(pares)) = (request.text("pan"), request.u64(AMOUNT), request.get("pares")) else {
            return Outcome::declined("malformed authorization request", parties);
        };
        let Some(pares) = decode_pares(pares) else { return Outcome::declined("malformed PARes", parties) };
        let signed = pares.encode_fields(PARES_SIGNED).unwrap_or_default();
        let signature = pares.get("acs-signature").unwrap_or_default();
        if !signing::verify(self.acs.spki(), &signed, signature) {
            return Outcome::declined("PARes signature does not verify", parties);
        }
        if pares.text("status").ok().as_deref() != Some("Y")
            || pares.u64(AMOUNT).ok() != Some(amount)
            || pares.text("pan").ok() != Some(pan)
        {
            return Outcome::declined("PARes is for another card or amount", parties);
        }
        Outcome::approved(amount, parties, format!("xid {}", pares.u64("xid").unwrap_or_default()))
    }
}
