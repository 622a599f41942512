//! Fuzz seeds from the interop tests' captures (issue 16 §1): with
//! `EAPAY_FUZZ_SEEDS=DIR`, every capture that passes its judge also gives
//! up what the real peers (eapol_test, hostapd, FreeRADIUS, radsecproxy,
//! freeDiameter) and eapay sent each other, as inputs of the fuzz targets
//! that read them: `DIR/radius_packet/` (each RADIUS datagram),
//! `DIR/diameter_message/` (each Diameter message), `DIR/eap_packet/` (each
//! EAP packet, reassembled from its EAP-Message attributes or taken from
//! EAP-Payload) and `DIR/sim_aka_attributes/` (the EAP-SIM, AKA and AKA'
//! packets among them). A file is named by a hash of its bytes, so the same
//! packet seen by many tests is written once. `scripts/capture-seeds.sh`
//! runs the tests this way and merges what adds coverage into
//! `fuzz/corpus/`.
//!
//! tshark does the reading, with the judge's dissection (the tests' ports,
//! eapay's dictionaries, the RadSec key logs), so the bytes are what was on
//! the wire, not what our own codecs make of it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

/// The environment variable naming the seed directory.
pub const SEEDS_ENV: &str = "EAPAY_FUZZ_SEEDS";

/// EAP method types whose packets the SIM/AKA attribute parser reads.
const SIM_AKA_TYPES: [u8; 3] = [18, 23, 50];
/// EAP Request and Response: the codes that carry a method type.
const EAP_REQUEST: u8 = 1;
const EAP_RESPONSE: u8 = 2;

/// Writes the seeds of one capture; `tshark` runs tshark on it with the
/// judge's dissection and the given arguments, returning its stdout.
pub fn write(dir: &Path, tshark: impl Fn(&[&str]) -> String) {
    let fields = |filter: &str, field: &str| -> Vec<String> {
        tshark(&["-Y", filter, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-e", field])
            .lines()
            .map(str::to_owned)
            .collect()
    };
    // UDP datagrams only: a RADIUS packet inside TLS is the same packet,
    // and its TLS record may carry several.
    for line in fields("radius && udp", "udp.payload") {
        save(dir, "radius_packet", &hex_bytes(&line));
    }
    // A TCP segment holds whole messages, a part of one, or several; only
    // segments that start with a message are cut (by its Length).
    for line in fields("diameter", "tcp.payload") {
        for message in diameter_messages(&hex_bytes(&line)) {
            save(dir, "diameter_message", message);
        }
    }
    let mut eap: Vec<Vec<u8>> = Vec::new();
    // One EAP packet per RADIUS packet, split over its EAP-Message attributes.
    for line in fields("radius.EAP_Message", "radius.EAP_Message") {
        eap.push(line.split(',').flat_map(hex_bytes).collect());
    }
    for line in fields("diameter.EAP-Payload", "diameter.EAP-Payload") {
        eap.extend(line.split(',').map(hex_bytes));
    }
    for packet in eap.iter().filter(|p| p.len() >= 4) {
        save(dir, "eap_packet", packet);
        if matches!(packet[0], EAP_REQUEST | EAP_RESPONSE) && packet.get(4).is_some_and(|t| SIM_AKA_TYPES.contains(t)) {
            save(dir, "sim_aka_attributes", packet);
        }
    }
}

/// The whole Diameter messages at the start of `segment`, each by its
/// 24-bit Length; stops at the first that does not fit.
fn diameter_messages(segment: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = segment;
    while rest.len() >= 20 && rest[0] == 1 {
        let len = usize::from(rest[1]) << 16 | usize::from(rest[2]) << 8 | usize::from(rest[3]);
        if len < 20 || len > rest.len() {
            break;
        }
        let (message, tail) = rest.split_at(len);
        out.push(message);
        rest = tail;
    }
    out
}

/// tshark prints bytes as hex, sometimes with colons.
fn hex_bytes(text: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    hex::decode(digits).unwrap_or_default()
}

fn save(dir: &Path, target: &str, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    let dir = dir.join(target);
    let path = dir.join(format!("capture-{:016x}", hasher.finish()));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, bytes)) {
        panic!("{SEEDS_ENV}: writing {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diameter_segments_are_cut_by_length() {
        let mut one = vec![1u8, 0, 0, 20];
        one.resize(20, 0);
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert_eq!(diameter_messages(&two), vec![&one[..], &one[..]]);
        // A segment that continues a message, or a message cut short.
        assert!(diameter_messages(&[0u8; 24]).is_empty());
        assert_eq!(diameter_messages(&two[..30]), vec![&one[..]]);
        assert_eq!(hex_bytes("01:0a:ff"), vec![1, 10, 255]);
    }
}
