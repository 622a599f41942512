//! The crates.io `diameter` crate (0.7, lwlee2608/diameter-rs) as an
//! independent reader and writer of Diameter messages (issue 14 §2).
//!
//! It is not good enough to be our codec (see the docs of
//! `aaa_proto::diameter::message`), but it was written by other people from
//! RFC 6733, so where it can read or write something it is a second opinion
//! on ours. Both directions use one random model of a message: header fields
//! (version, flags, command code, application id, hop-by-hop, end-to-end) and
//! an AVP tree (code, V/M/P flags, vendor id, raw data; Grouped AVPs nested up
//! to three deep), drawn from our dictionary (RFC 6733 base, RFC 7155, RFC
//! 4072, the eapay vendor 32473 AVPs) plus AVPs it lacks.
//!
//! - `ours_to_oracle`: the model built and encoded by our codec must decode in
//!   the oracle to the same header and AVP tree; its typed values must be the
//!   model's raw data, its AVP lengths and padding what RFC 6733 §4.1 says, and
//!   it must re-encode our bytes exactly.
//! - `oracle_to_ours`: the model built and encoded by the oracle must decode in
//!   ours (with its default limits and validation) to the same header and
//!   tree, and re-encode to the oracle's bytes exactly.
//! - `dictionaries_agree`: where its built-in dictionary and ours both define
//!   an AVP (46 of them), they give it the same data type and M-bit rule.
//!
//! What the oracle cannot do, and how the test lives with it:
//!
//! - Command codes and application ids are closed enums (`CommandCode`,
//!   `ApplicationId`) where RFC 6733 §3 has open 24- and 32-bit fields. They
//!   lack eapay's Diameter-EAP command 268 and EAP application 5 (RFC 4072 §3)
//!   and NASREQ application 1 (RFC 7155), so it refuses every DER/DEA and AAR;
//!   messages use only the codes and ids it has (CER/CEA 257, RAR 258, AAR 265,
//!   ACR 271, CCR 272, ASR 274, STR 275, DWR 280, DPR 282, the 3GPP Sy commands;
//!   applications 0, 3, 4 and three 3GPP ones). Our codec does not care which.
//! - It fails on any AVP its dictionary lacks (RFC 6733 §4.1 lets a receiver
//!   keep or ignore unknown non-mandatory AVPs), so it is given our dictionary
//!   in its XML format, plus the AVPs standing for "unknown to us".
//! - Its types have no IPFilterRule (RFC 6733 §4.3.1): such AVPs would be
//!   declared as UTF8String (ours checks UTF-8 there; none is in our dictionary
//!   today).
//! - `Address::length` counts an E.164 address without its 2-octet
//!   AddressType (RFC 6733 §4.3.1), so its AVP Length is 2 short and the
//!   message it writes is corrupt: it only reads E.164 addresses here, never
//!   writes them.
//! - `Time` decodes 32-bit NTP seconds as 1900-based only, without the RFC
//!   4330 rollover in 2036 that RFC 6733 §4.3.1 requires: the test compares the
//!   raw 32-bit value, never its calendar reading.
//! - Its decoder subtracts the header from the AVP Length unchecked, so an AVP
//!   Length below 8 (12 with V) panics (RFC 6733 §4.1 makes it an invalid
//!   length, Result-Code 5014); only valid messages are given to it.
//! - Its `Address` reads and writes only IPv4, IPv6 and E.164; RFC 6733
//!   §4.3.1 allows any IANA address family (ours keeps the others as
//!   received): no other family is drawn.
//! - AVP flags: it keeps V, M and P but drops the reserved bits, which our
//!   decoder refuses (RFC 6733 §4.1, 3009) and our encoder never writes.

use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use aaa_proto::diameter::{
    DataType, Limits, Message, OwnedAvp, AVP_FLAG_MANDATORY, AVP_FLAG_PROTECTED, AVP_FLAG_VENDOR, FLAG_ERROR,
    FLAG_PROXIABLE, FLAG_REQUEST, FLAG_RETRANSMIT,
};
use aaa_proto::dictionary::{diameter as dict, eapay};
use diameter_oracle::avp::{
    flags as oracle_flags, Address, Avp as OracleAvp, AvpType, AvpValue, DiameterURI, Enumerated, Float32, Float64,
    Grouped, Identity, Integer32, Integer64, OctetString, Time, UTF8String, Unsigned32, Unsigned64,
};
use diameter_oracle::dictionary::{Dictionary, DEFAULT_DICT_XML};
use diameter_oracle::{ApplicationId, CommandCode, DiameterHeader, DiameterMessage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Cases per direction: well under a second in a debug build.
const CASES: usize = 2000;
/// The command codes the oracle has (see the module docs).
const COMMANDS: [u32; 11] = [257, 258, 265, 271, 272, 274, 275, 280, 282, 8_388_635, 8_388_636];
/// The application ids the oracle has.
const APPLICATIONS: [u32; 6] = [0, 3, 4, 16_777_236, 16_777_238, 16_777_302];
/// AVPs our dictionary does not know, which our decoder keeps as received; the
/// oracle is told they are OctetStrings. AVP Codes are 32 bits wide.
const FOREIGN: [(u32, Option<u32>); 4] =
    [(4242, None), (99_999, Some(1)), (1, Some(10_415)), (0xffff_fff0, Some(32473))];
/// RFC 6733 §4.3.1: NTP seconds are counted from 1900, Unix ones from 1970.
const NTP_UNIX_OFFSET: i64 = 2_208_988_800;

/// The oracle's name for one of our data types.
fn oracle_type(t: DataType) -> &'static str {
    match t {
        DataType::OctetString => "OctetString",
        DataType::Integer32 => "Integer32",
        DataType::Integer64 => "Integer64",
        DataType::Unsigned32 => "Unsigned32",
        DataType::Unsigned64 => "Unsigned64",
        DataType::Float32 => "Float32",
        DataType::Float64 => "Float64",
        DataType::Grouped => "Grouped",
        DataType::Address => "Address",
        DataType::Time => "Time",
        DataType::Utf8String | DataType::IpFilterRule => "UTF8String",
        DataType::DiameterIdentity => "DiameterIdentity",
        DataType::DiameterUri => "DiameterURI",
        DataType::Enumerated => "Enumerated",
    }
}

/// Our dictionary (and the foreign AVPs) in the oracle's XML format.
fn oracle_dictionary() -> Arc<Dictionary> {
    let mut xml = String::from("<diameter>\n<application id=\"0\" name=\"eapay oracle\">\n");
    let entries = dict::AVPS.iter().map(|d| (d.name.to_string(), d.code, d.vendor_id, d.data_type, d.mandatory)).chain(
        FOREIGN.iter().map(|&(code, vendor)| (format!("Foreign-{code}"), code, vendor, DataType::OctetString, false)),
    );
    for (name, code, vendor, ty, mandatory) in entries {
        let must = match (vendor.is_some(), mandatory) {
            (true, true) => "V,M",
            (true, false) => "V",
            (false, true) => "M",
            (false, false) => "-",
        };
        let vendor = vendor.map(|v| format!(" vendor-id=\"{v}\"")).unwrap_or_default();
        let ty = oracle_type(ty);
        xml.push_str(&format!(
            "<avp name=\"{name}\" code=\"{code}\" must=\"{must}\"{vendor}><data type=\"{ty}\"/></avp>\n"
        ));
    }
    xml.push_str("</application>\n</diameter>\n");
    Arc::new(Dictionary::new(&[&xml]))
}

/// One AVP of the model.
#[derive(Debug, Clone)]
struct Node {
    code: u32,
    vendor_id: Option<u32>,
    mandatory: bool,
    protected: bool,
    data: Data,
}

#[derive(Debug, Clone)]
enum Data {
    Leaf(DataType, Vec<u8>),
    Group(Vec<Node>),
}

impl Node {
    /// The flags octet RFC 6733 §4.1 puts on the wire.
    fn flags(&self) -> u8 {
        let v = if self.vendor_id.is_some() { AVP_FLAG_VENDOR } else { 0 };
        let m = if self.mandatory { AVP_FLAG_MANDATORY } else { 0 };
        let p = if self.protected { AVP_FLAG_PROTECTED } else { 0 };
        v | m | p
    }

    fn header_len(&self) -> usize {
        if self.vendor_id.is_some() {
            12
        } else {
            8
        }
    }

    /// The data length: a Grouped AVP's is its members', padding included.
    fn data_len(&self) -> usize {
        match &self.data {
            Data::Leaf(_, raw) => raw.len(),
            Data::Group(members) => members.iter().map(|m| padded(m.header_len() + m.data_len())).sum(),
        }
    }
}

fn padded(len: usize) -> usize {
    len.div_ceil(4) * 4
}

/// One random message of the model.
#[derive(Debug, Clone)]
struct Model {
    flags: u8,
    command: u32,
    application: u32,
    hop_by_hop: u32,
    end_to_end: u32,
    avps: Vec<Node>,
}

fn octets(rng: &mut StdRng, min: usize, max: usize) -> Vec<u8> {
    let mut v = vec![0u8; rng.gen_range(min..=max)];
    rng.fill(&mut v[..]);
    v
}

/// UTF-8 text (RFC 6733 §4.3.1 UTF8String), multi-byte characters included.
fn text(rng: &mut StdRng, max: usize) -> String {
    let target = rng.gen_range(0..=max);
    let mut s = String::new();
    loop {
        let c = match rng.gen_range(0..10) {
            0 => 'ß',
            1 => '→',
            2 => '🦀',
            _ => char::from(rng.gen_range(b' '..=b'~')),
        };
        if s.len() + c.len_utf8() > target {
            return s;
        }
        s.push(c);
    }
}

/// A DiameterIdentity (RFC 6733 §4.3.1): an FQDN or realm in ASCII.
fn identity(rng: &mut StdRng) -> String {
    let labels: Vec<String> = (0..rng.gen_range(1..=4))
        .map(|_| (0..rng.gen_range(1..=10)).map(|_| char::from(rng.gen_range(b'a'..=b'z'))).collect())
        .collect();
    labels.join(".")
}

/// Raw data of a valid value of `ty`. `e164`: whether E.164 addresses may be
/// drawn (only for the oracle to read, see the module docs).
fn leaf(rng: &mut StdRng, ty: DataType, e164: bool) -> Vec<u8> {
    match ty {
        DataType::OctetString => {
            let max = if rng.gen_bool(0.05) { 700 } else { 40 };
            octets(rng, 0, max)
        }
        DataType::Integer32 | DataType::Unsigned32 | DataType::Float32 | DataType::Time | DataType::Enumerated => {
            octets(rng, 4, 4)
        }
        DataType::Integer64 | DataType::Unsigned64 | DataType::Float64 => octets(rng, 8, 8),
        DataType::Utf8String | DataType::IpFilterRule => text(rng, 60).into_bytes(),
        DataType::DiameterIdentity => identity(rng).into_bytes(),
        DataType::DiameterUri => {
            let port = rng.gen_range(1..=65535u16);
            format!("aaa://{}:{port};transport=tcp", identity(rng)).into_bytes()
        }
        DataType::Address => match rng.gen_range(0..if e164 { 3 } else { 2 }) {
            0 => [&[0, 1][..], &octets(rng, 4, 4)].concat(),
            1 => [&[0, 2][..], &octets(rng, 16, 16)].concat(),
            _ => {
                let digits: Vec<u8> = (0..rng.gen_range(1..=15)).map(|_| rng.gen_range(b'0'..=b'9')).collect();
                [&[0, 8][..], &digits].concat()
            }
        },
        DataType::Grouped => unreachable!("Grouped AVPs are built from members"),
    }
}

/// One random AVP at nesting `depth` (0: top level).
fn node(rng: &mut StdRng, depth: usize, e164: bool) -> Node {
    let (code, vendor_id, ty, mandatory) = loop {
        let (code, vendor, ty, mandatory) = if rng.gen_bool(0.05) {
            let (code, vendor) = FOREIGN[rng.gen_range(0..FOREIGN.len())];
            (code, vendor, DataType::OctetString, rng.gen_bool(0.5))
        } else {
            // Grouped AVPs are few in the dictionary: draw them more often.
            let pool: Vec<_> = if rng.gen_bool(0.15) {
                dict::AVPS.iter().filter(|d| d.data_type == DataType::Grouped).collect()
            } else {
                dict::AVPS.iter().collect()
            };
            let d = pool[rng.gen_range(0..pool.len())];
            (d.code, d.vendor_id, d.data_type, d.mandatory)
        };
        // Three levels of Grouped AVPs, within our default Limits::max_depth.
        if ty != DataType::Grouped || depth < 3 {
            break (code, vendor, ty, mandatory);
        }
    };
    let data = if ty == DataType::Grouped {
        Data::Group((0..rng.gen_range(0..=4)).map(|_| node(rng, depth + 1, e164)).collect())
    } else {
        Data::Leaf(ty, leaf(rng, ty, e164))
    };
    // The M bit as the dictionary has it, mostly: neither codec enforces it.
    let mandatory = mandatory ^ rng.gen_bool(0.1);
    Node { code, vendor_id, mandatory, protected: rng.gen_bool(0.1), data }
}

fn model(rng: &mut StdRng, e164: bool) -> Model {
    // RFC 6733 §3: E only on answers, T only on requests; reserved bits clear.
    let request = rng.gen_bool(0.5);
    let mut flags = if request { FLAG_REQUEST } else { 0 };
    if rng.gen_bool(0.5) {
        flags |= FLAG_PROXIABLE;
    }
    if request && rng.gen_bool(0.2) {
        flags |= FLAG_RETRANSMIT;
    }
    if !request && rng.gen_bool(0.2) {
        flags |= FLAG_ERROR;
    }
    Model {
        flags,
        command: COMMANDS[rng.gen_range(0..COMMANDS.len())],
        application: APPLICATIONS[rng.gen_range(0..APPLICATIONS.len())],
        hop_by_hop: rng.gen(),
        end_to_end: rng.gen(),
        avps: (0..rng.gen_range(0..=10)).map(|_| node(rng, 0, e164)).collect(),
    }
}

fn be4(raw: &[u8]) -> [u8; 4] {
    raw.try_into().expect("4-octet value")
}

fn be8(raw: &[u8]) -> [u8; 8] {
    raw.try_into().expect("8-octet value")
}

/// The model AVP through our typed constructors.
fn ours(n: &Node) -> OwnedAvp {
    let (c, v, m) = (n.code, n.vendor_id, n.mandatory);
    let mut avp = match &n.data {
        Data::Group(members) => OwnedAvp::grouped(c, v, m, &members.iter().map(ours).collect::<Vec<_>>()).unwrap(),
        Data::Leaf(ty, raw) => match ty {
            DataType::Unsigned32 => OwnedAvp::u32(c, v, m, u32::from_be_bytes(be4(raw))),
            DataType::Integer32 | DataType::Enumerated => OwnedAvp::i32(c, v, m, i32::from_be_bytes(be4(raw))),
            DataType::Time => OwnedAvp::time(c, v, m, u32::from_be_bytes(be4(raw))),
            DataType::Unsigned64 => OwnedAvp::u64(c, v, m, u64::from_be_bytes(be8(raw))),
            DataType::Integer64 => OwnedAvp::i64(c, v, m, i64::from_be_bytes(be8(raw))),
            DataType::Utf8String | DataType::DiameterIdentity | DataType::DiameterUri | DataType::IpFilterRule => {
                OwnedAvp::utf8(c, v, m, std::str::from_utf8(raw).unwrap())
            }
            DataType::Address => match raw[..2] {
                [0, 1] => OwnedAvp::address(c, v, m, IpAddr::V4(Ipv4Addr::from(be4(&raw[2..])))),
                [0, 2] => {
                    let octets: [u8; 16] = raw[2..].try_into().unwrap();
                    OwnedAvp::address(c, v, m, IpAddr::V6(Ipv6Addr::from(octets)))
                }
                _ => OwnedAvp::octets(c, v, m, raw),
            },
            _ => OwnedAvp::octets(c, v, m, raw),
        },
    };
    if n.protected {
        avp.flags |= AVP_FLAG_PROTECTED;
    }
    avp
}

/// The model's value through the oracle's typed constructors.
fn oracle_value(ty: DataType, raw: &[u8]) -> AvpValue {
    let text = || std::str::from_utf8(raw).unwrap();
    match ty {
        DataType::OctetString => OctetString::new(raw.to_vec()).into(),
        DataType::Integer32 => Integer32::new(i32::from_be_bytes(be4(raw))).into(),
        DataType::Enumerated => Enumerated::new(i32::from_be_bytes(be4(raw))).into(),
        DataType::Unsigned32 => Unsigned32::new(u32::from_be_bytes(be4(raw))).into(),
        DataType::Float32 => Float32::new(f32::from_be_bytes(be4(raw))).into(),
        DataType::Integer64 => Integer64::new(i64::from_be_bytes(be8(raw))).into(),
        DataType::Unsigned64 => Unsigned64::new(u64::from_be_bytes(be8(raw))).into(),
        DataType::Float64 => Float64::new(f64::from_be_bytes(be8(raw))).into(),
        // Its Time::new takes a chrono DateTime; its reader builds one from the wire.
        DataType::Time => Time::decode_from(&mut Cursor::new(raw)).unwrap().into(),
        DataType::Utf8String | DataType::IpFilterRule => UTF8String::new(text()).into(),
        DataType::DiameterIdentity => Identity::new(text()).into(),
        DataType::DiameterUri => DiameterURI::new(raw.to_vec()).into(),
        DataType::Address => match raw[..2] {
            [0, 1] => Address::from_ipv4(Ipv4Addr::from(be4(&raw[2..]))).into(),
            [0, 2] => {
                let octets: [u8; 16] = raw[2..].try_into().unwrap();
                Address::from_ipv6(Ipv6Addr::from(octets)).into()
            }
            _ => unreachable!("E.164 addresses are never given to the oracle's writer"),
        },
        DataType::Grouped => unreachable!("Grouped AVPs are built from members"),
    }
}

/// The model AVP through the oracle's constructors.
fn oracle(n: &Node, d: &Arc<Dictionary>) -> OracleAvp {
    let flags = if n.mandatory { oracle_flags::M } else { 0 } | if n.protected { oracle_flags::P } else { 0 };
    let value = match &n.data {
        Data::Group(members) => Grouped::new(members.iter().map(|m| oracle(m, d)).collect(), Arc::clone(d)).into(),
        Data::Leaf(ty, raw) => oracle_value(*ty, raw),
    };
    OracleAvp::new(n.code, n.vendor_id, flags, value, Arc::clone(d))
}

/// The raw data behind one of the oracle's typed values, from its accessors
/// (Address has none but its writer).
fn oracle_raw(v: &AvpValue) -> Vec<u8> {
    match v {
        AvpValue::OctetString(x) => x.value().to_vec(),
        AvpValue::Integer32(x) => x.value().to_be_bytes().to_vec(),
        AvpValue::Enumerated(x) => x.value().to_be_bytes().to_vec(),
        AvpValue::Unsigned32(x) => x.value().to_be_bytes().to_vec(),
        AvpValue::Float32(x) => x.value().to_be_bytes().to_vec(),
        AvpValue::Integer64(x) => x.value().to_be_bytes().to_vec(),
        AvpValue::Unsigned64(x) => x.value().to_be_bytes().to_vec(),
        AvpValue::Float64(x) => x.value().to_be_bytes().to_vec(),
        AvpValue::Time(x) => {
            let ntp = u32::try_from(x.value().timestamp() + NTP_UNIX_OFFSET).expect("a 32-bit NTP time");
            ntp.to_be_bytes().to_vec()
        }
        AvpValue::UTF8String(x) => x.value().as_bytes().to_vec(),
        AvpValue::Identity(x) => x.value().as_bytes().to_vec(),
        AvpValue::DiameterURI(x) => x.value().to_vec(),
        AvpValue::Address(x) => {
            let mut out = Vec::new();
            x.encode_to(&mut out).unwrap();
            out
        }
        other => panic!("no data type of ours decodes as {}", other.get_type_name()),
    }
}

/// The oracle's reading of one AVP against the model.
fn check_oracle(a: &OracleAvp, n: &Node, ctx: &str) {
    assert_eq!((a.get_code(), a.get_vendor_id()), (n.code, n.vendor_id), "{ctx}");
    let f = a.get_flags();
    assert_eq!((f.vendor, f.mandatory, f.private), (n.vendor_id.is_some(), n.mandatory, n.protected), "{ctx}");
    let len = n.header_len() + n.data_len();
    assert_eq!((a.get_length() as usize, usize::from(a.get_padding())), (len, padded(len) - len), "{ctx}: length");
    match (&n.data, a.get_value()) {
        (Data::Group(members), AvpValue::Grouped(g)) => {
            assert_eq!(g.avps().len(), members.len(), "{ctx}: members of {}", n.code);
            for (a, n) in g.avps().iter().zip(members) {
                check_oracle(a, n, ctx);
            }
        }
        (Data::Leaf(_, raw), v) => assert_eq!(&oracle_raw(v), raw, "{ctx}: data of {} ({})", n.code, v.get_type_name()),
        (_, v) => panic!("{ctx}: AVP {} read as {}", n.code, v.get_type_name()),
    }
}

/// Our reading of one AVP against the model.
fn check_ours(a: &OwnedAvp, n: &Node, limits: &Limits, ctx: &str) {
    assert_eq!((a.code, a.vendor_id, a.flags), (n.code, n.vendor_id, n.flags()), "{ctx}");
    assert_eq!(a.encoded_len(), padded(n.header_len() + n.data_len()), "{ctx}");
    match &n.data {
        Data::Group(members) => {
            let got = a.as_grouped(limits).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(got.len(), members.len(), "{ctx}: members of {}", n.code);
            for (a, n) in got.iter().zip(members) {
                check_ours(a, n, limits, ctx);
            }
        }
        Data::Leaf(_, raw) => assert_eq!(&a.data, raw, "{ctx}: data of {}", n.code),
    }
}

fn count(nodes: &[Node], grouped: &mut usize) -> usize {
    nodes
        .iter()
        .map(|n| match &n.data {
            Data::Group(m) => {
                *grouped += 1;
                1 + count(m, grouped)
            }
            Data::Leaf(..) => 1,
        })
        .sum()
}

#[test]
fn ours_to_oracle() {
    let mut rng = StdRng::seed_from_u64(0x6733_0014);
    let d = oracle_dictionary();
    let (mut avps, mut grouped) = (0, 0);
    for case in 0..CASES {
        let m = model(&mut rng, true);
        let ctx = format!("case {case}: {m:?}");
        let msg = Message {
            flags: m.flags,
            command: m.command,
            application: m.application,
            hop_by_hop: m.hop_by_hop,
            end_to_end: m.end_to_end,
            avps: m.avps.iter().map(ours).collect(),
        };
        let bytes = msg.encode().unwrap();
        avps += count(&m.avps, &mut grouped);

        let theirs = DiameterMessage::decode_from(&mut Cursor::new(&bytes), Arc::clone(&d))
            .unwrap_or_else(|e| panic!("{ctx}: oracle refused: {e}"));
        // It shows the version only through Display ("1 CapabilitiesExchange(257) ...").
        let header = DiameterHeader::decode_from(&mut Cursor::new(&bytes)).unwrap();
        assert!(header.to_string().starts_with("1 "), "{ctx}: version in {header}");
        assert_eq!(theirs.get_length() as usize, bytes.len(), "{ctx}");
        assert_eq!(theirs.get_flags(), m.flags, "{ctx}");
        assert_eq!(theirs.get_command_code() as u32, m.command, "{ctx}");
        assert_eq!(theirs.get_application_id() as u32, m.application, "{ctx}");
        assert_eq!((theirs.get_hop_by_hop_id(), theirs.get_end_to_end_id()), (m.hop_by_hop, m.end_to_end), "{ctx}");
        assert_eq!(theirs.get_avps().len(), m.avps.len(), "{ctx}");
        for (a, n) in theirs.get_avps().iter().zip(&m.avps) {
            check_oracle(a, n, &ctx);
        }
        let mut again = Vec::new();
        theirs.encode_to(&mut again).unwrap();
        assert_eq!(again, bytes, "{ctx}: the oracle's re-encoding");
    }
    assert!(avps > CASES * 4 && grouped > CASES / 4, "generator too narrow: {avps} AVPs, {grouped} Grouped");
}

#[test]
fn oracle_to_ours() {
    let mut rng = StdRng::seed_from_u64(0x4072_0014);
    let d = oracle_dictionary();
    let limits = Limits::default();
    for case in 0..CASES {
        let m = model(&mut rng, false);
        let ctx = format!("case {case}: {m:?}");
        let command = CommandCode::from_u32(m.command).unwrap();
        let application = ApplicationId::from_u32(m.application).unwrap();
        let mut theirs =
            DiameterMessage::new(command, application, m.flags, m.hop_by_hop, m.end_to_end, Arc::clone(&d));
        for n in &m.avps {
            theirs.add(oracle(n, &d));
        }
        let mut bytes = Vec::new();
        theirs.encode_to(&mut bytes).unwrap();
        assert_eq!(theirs.get_length() as usize, bytes.len(), "{ctx}");

        let ours = Message::decode(&bytes, &limits).unwrap_or_else(|e| panic!("{ctx}: ours refused: {e}"));
        assert_eq!(bytes[0], 1, "{ctx}: version");
        assert_eq!(
            (ours.flags, ours.command, ours.application, ours.hop_by_hop, ours.end_to_end),
            (m.flags, m.command, m.application, m.hop_by_hop, m.end_to_end),
            "{ctx}"
        );
        assert_eq!(ours.avps.len(), m.avps.len(), "{ctx}");
        for (a, n) in ours.avps.iter().zip(&m.avps) {
            check_ours(a, n, &limits, &ctx);
        }
        assert_eq!(ours.encode().unwrap(), bytes, "{ctx}: our re-encoding");
    }
}

/// The oracle's data type name for its own enum, to compare with ours.
fn oracle_type_name(t: AvpType) -> &'static str {
    match t {
        AvpType::Address => "Address",
        AvpType::Identity => "DiameterIdentity",
        AvpType::DiameterURI => "DiameterURI",
        AvpType::Enumerated => "Enumerated",
        AvpType::Float32 => "Float32",
        AvpType::Float64 => "Float64",
        AvpType::Grouped => "Grouped",
        AvpType::Integer32 => "Integer32",
        AvpType::Integer64 => "Integer64",
        AvpType::OctetString => "OctetString",
        AvpType::Time => "Time",
        AvpType::Unsigned32 => "Unsigned32",
        AvpType::Unsigned64 => "Unsigned64",
        AvpType::UTF8String => "UTF8String",
        AvpType::AddressIPv4 => "IPv4",
        AvpType::AddressIPv6 => "IPv6",
        AvpType::Unknown => "Unknown",
    }
}

#[test]
fn dictionaries_agree() {
    let theirs = Dictionary::new(&[*DEFAULT_DICT_XML]);
    let mut shared = 0;
    let mut disagree = Vec::new();
    for def in dict::AVPS {
        let Some(t) = theirs.get_avp(def.code, def.vendor_id) else { continue };
        shared += 1;
        let (ours, theirs) = ((oracle_type(def.data_type), def.mandatory), (oracle_type_name(t.avp_type), t.m_flag));
        if ours != theirs {
            disagree.push(format!("{} ({}): ours {ours:?}, theirs {theirs:?} ({})", def.name, def.code, t.name));
        }
    }
    assert!(shared > 30, "too few AVPs in both dictionaries: {shared}");
    assert!(disagree.is_empty(), "{disagree:#?}");
    // The eapay vendor AVPs are ours alone.
    assert!(theirs.get_avp(u32::from(eapay::AMOUNT), Some(eapay::VENDOR_ID)).is_none());
    for (code, vendor) in FOREIGN {
        assert_eq!(dict::find(code, vendor), None, "{code}/{vendor:?} must stay unknown to us");
    }
}
