//! Keying material of the TLS methods: MSK, EMSK and Session-Id.
//!
//! - TLS 1.2 (RFC 5216 §2.3): Key_Material = TLS-PRF-128(master secret,
//!   label, client.random || server.random), which is exactly the RFC 5705
//!   exporter without context; MSK = Key_Material\[0..64\], EMSK =
//!   Key_Material\[64..128\]; Session-Id = Type-Code || client.random ||
//!   server.random. EAP-TLS uses the label "client EAP encryption", EAP-TTLS
//!   "ttls keying material" (RFC 5281 §8).
//! - TLS 1.3 (RFC 9190 §2.3, RFC 9427 §2.1 for TTLS): Key_Material =
//!   TLS-Exporter("EXPORTER_EAP_TLS_Key_Material", Type-Code, 128), Method-Id =
//!   TLS-Exporter("EXPORTER_EAP_TLS_Method-Id", Type-Code, 64), Session-Id =
//!   Type-Code || Method-Id, the context being the single Type-Code octet.

use crate::method::Keys;
use crate::packet::EapType;
use crate::tls::config::TlsVersion;
use crate::tls::engine::{TlsEngine, TlsError};

/// TLS 1.3 exporter label of the key material (RFC 9190 §2.3).
pub const TLS13_KEY_MATERIAL_LABEL: &str = "EXPORTER_EAP_TLS_Key_Material";
/// TLS 1.3 exporter label of the Method-Id (RFC 9190 §2.3).
pub const TLS13_METHOD_ID_LABEL: &str = "EXPORTER_EAP_TLS_Method-Id";

/// What distinguishes one TLS-based method's keys from another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLabels {
    /// The EAP Type-Code: the first octet of Session-Id and, in TLS 1.3,
    /// the exporter context.
    pub type_code: u8,
    /// The TLS 1.2 PRF label.
    pub tls12_label: &'static str,
}

impl KeyLabels {
    /// EAP-TLS (type 13).
    pub const EAP_TLS: Self = Self { type_code: EapType::TLS.0, tls12_label: "client EAP encryption" };
    /// EAP-TTLS (type 21).
    pub const EAP_TTLS: Self = Self { type_code: EapType::TTLS.0, tls12_label: "ttls keying material" };
}

/// MSK and EMSK of an established connection.
pub fn derive_keys(engine: &TlsEngine, labels: KeyLabels) -> Result<Keys, TlsError> {
    let material = match version(engine)? {
        TlsVersion::V1_2 => engine.export_keying_material(labels.tls12_label, None, 128)?,
        TlsVersion::V1_3 => engine.export_keying_material(TLS13_KEY_MATERIAL_LABEL, Some(&[labels.type_code]), 128)?,
    };
    Ok(split_key_material(&material))
}

/// What a completed handshake gives the method: its EAP keys and the
/// exporter value a card signature binds to (DESIGN.md §4).
pub fn session_secrets(
    engine: &TlsEngine,
    labels: KeyLabels,
) -> Result<(Keys, [u8; crate::tls::confirmation::EXPORTER_LEN]), String> {
    use crate::tls::confirmation::{EXPORTER_LABEL, EXPORTER_LEN};
    let keys = derive_keys(engine, labels).map_err(|e| format!("keying material: {e}"))?;
    let exporter = engine
        .export_keying_material(EXPORTER_LABEL, None, EXPORTER_LEN)
        .map_err(|e| format!("keying material: {e}"))?;
    let exporter = <[u8; EXPORTER_LEN]>::try_from(exporter).map_err(|_| "exporter length".to_string())?;
    Ok((keys, exporter))
}

/// MSK = the first 64 octets, EMSK = the next 64.
pub fn split_key_material(material: &[u8]) -> Keys {
    let mut msk = [0u8; 64];
    let mut emsk = [0u8; 64];
    for (i, b) in material.iter().take(128).enumerate() {
        if i < 64 {
            msk[i] = *b;
        } else {
            emsk[i - 64] = *b;
        }
    }
    Keys { msk, emsk }
}

/// The EAP Session-Id (65 octets) of an established connection.
pub fn session_id(engine: &TlsEngine, labels: KeyLabels) -> Result<Vec<u8>, TlsError> {
    match version(engine)? {
        TlsVersion::V1_2 => Ok(session_id_tls12(labels.type_code, &engine.client_random(), &engine.server_random())),
        TlsVersion::V1_3 => {
            let method_id = engine.export_keying_material(TLS13_METHOD_ID_LABEL, Some(&[labels.type_code]), 64)?;
            Ok(session_id_tls13(labels.type_code, &method_id))
        }
    }
}

/// TLS 1.2 Session-Id: Type-Code || client.random || server.random.
pub fn session_id_tls12(type_code: u8, client_random: &[u8; 32], server_random: &[u8; 32]) -> Vec<u8> {
    [&[type_code][..], client_random, server_random].concat()
}

/// TLS 1.3 Session-Id: Type-Code || Method-Id.
pub fn session_id_tls13(type_code: u8, method_id: &[u8]) -> Vec<u8> {
    [&[type_code][..], method_id].concat()
}

fn version(engine: &TlsEngine) -> Result<TlsVersion, TlsError> {
    match engine.version() {
        Some(v) if engine.is_established() => Ok(v),
        _ => Err(TlsError {
            reason: "no keys before the handshake completed".into(),
            peer_alert: None,
            failed_proof: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::engine::tests::engines;

    #[test]
    fn tls12_keys_and_session_id() {
        let (s, c) = engines(TlsVersion::V1_2);
        let keys = derive_keys(&s, KeyLabels::EAP_TLS).unwrap();
        assert_eq!(keys, derive_keys(&c, KeyLabels::EAP_TLS).unwrap());
        let material = s.export_keying_material("client EAP encryption", None, 128).unwrap();
        assert_eq!(&keys.msk[..], &material[..64]);
        assert_eq!(&keys.emsk[..], &material[64..]);
        assert_ne!(keys, derive_keys(&s, KeyLabels::EAP_TTLS).unwrap(), "TTLS has its own label");

        let id = session_id(&s, KeyLabels::EAP_TLS).unwrap();
        assert_eq!(id, session_id(&c, KeyLabels::EAP_TLS).unwrap());
        assert_eq!(id.len(), 65);
        assert_eq!(id[0], 0x0d);
        assert_eq!(&id[1..33], &c.client_random());
        assert_eq!(&id[33..], &s.server_random());
        assert_eq!(session_id(&s, KeyLabels::EAP_TTLS).unwrap()[0], 0x15);
    }

    #[test]
    fn tls13_keys_and_session_id() {
        let (s, c) = engines(TlsVersion::V1_3);
        let keys = derive_keys(&s, KeyLabels::EAP_TLS).unwrap();
        assert_eq!(keys, derive_keys(&c, KeyLabels::EAP_TLS).unwrap());
        let material = s.export_keying_material(TLS13_KEY_MATERIAL_LABEL, Some(&[13]), 128).unwrap();
        assert_eq!(&keys.msk[..], &material[..64]);
        assert_eq!(&keys.emsk[..], &material[64..]);
        // RFC 9427: TTLS 1.3 uses the same labels with its own Type-Code.
        let ttls = derive_keys(&s, KeyLabels::EAP_TTLS).unwrap();
        let ttls_material = s.export_keying_material(TLS13_KEY_MATERIAL_LABEL, Some(&[21]), 128).unwrap();
        assert_eq!(&ttls.msk[..], &ttls_material[..64]);
        assert_ne!(keys, ttls);

        let id = session_id(&s, KeyLabels::EAP_TLS).unwrap();
        assert_eq!(id, session_id(&c, KeyLabels::EAP_TLS).unwrap());
        assert_eq!(id.len(), 65);
        assert_eq!(id[0], 0x0d);
        let method_id = c.export_keying_material(TLS13_METHOD_ID_LABEL, Some(&[13]), 64).unwrap();
        assert_eq!(&id[1..], &method_id[..]);
        assert_ne!(&id[1..33], &c.client_random(), "not the TLS 1.2 layout");
    }

    #[test]
    fn layouts() {
        let id = session_id_tls12(13, &[1; 32], &[2; 32]);
        assert_eq!(id, [vec![13], vec![1; 32], vec![2; 32]].concat());
        assert_eq!(session_id_tls13(21, &[7; 64]), [vec![21], vec![7; 64]].concat());
        let keys = split_key_material(&(0..128).collect::<Vec<u8>>());
        assert_eq!(keys.msk[0], 0);
        assert_eq!(keys.msk[63], 63);
        assert_eq!(keys.emsk[0], 64);
        assert_eq!(keys.emsk[63], 127);
    }
}
