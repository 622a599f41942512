//! The configured Diameter peers (`[[diameter.peers]]`): terminals, or relay
//! agents in front of them, known by the Origin-Host of their CER and
//! allowed only from their address block. A connection from outside every
//! block is closed before it is read; from inside one, an Origin-Host no
//! peer there has gets CEA 3010 DIAMETER_UNKNOWN_PEER (RFC 6733 §5.3).

use std::net::IpAddr;

use crate::config::DiameterPeer;
use crate::error::ServerError;
use crate::mtls::{self, KeyDigest};

/// A peer as the request path needs it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The name the ledger records.
    pub name: String,
    pub origin_host: String,
    pub merchants: Vec<String>,
    net: ipnet::IpNet,
    /// The key its TLS certificate must carry; `None`: plain TCP only.
    key: Option<KeyDigest>,
}

/// The configured peers.
#[derive(Debug, Clone)]
pub struct Peers(Vec<Peer>);

impl Peers {
    /// From the configuration.
    pub fn new(config: &[DiameterPeer]) -> Result<Self, ServerError> {
        let peers = config
            .iter()
            .map(|p| {
                let key = match &p.key_sha256 {
                    Some(hex) => Some(mtls::parse_key(&format!("diameter.peers {}", p.name), hex)?),
                    None => None,
                };
                Ok(Peer {
                    name: p.name.clone(),
                    origin_host: p.origin_host.clone(),
                    merchants: p.merchants.clone(),
                    net: p.address,
                    key,
                })
            })
            .collect::<Result<_, ServerError>>()?;
        Ok(Self(peers))
    }

    /// True if some peer may connect from `source`.
    pub fn admits(&self, source: IpAddr) -> bool {
        let source = unmapped(source);
        self.0.iter().any(|p| p.net.contains(&source))
    }

    /// The peer whose CER said `origin_host`, if it may connect from `source`
    /// over a connection whose TLS certificate carried `key` (`None`: plain
    /// TCP): a peer with a registered key only over TLS with that key, one
    /// without only over plain TCP.
    pub fn find_on(&self, origin_host: &str, source: IpAddr, key: Option<&KeyDigest>) -> Option<&Peer> {
        self.find(origin_host, source).filter(|p| p.key.as_ref() == key)
    }

    /// The peer whose CER said `origin_host`, if it may connect from `source`.
    /// Diameter identities compare case-insensitively (they are FQDNs).
    pub fn find(&self, origin_host: &str, source: IpAddr) -> Option<&Peer> {
        let source = unmapped(source);
        self.0.iter().find(|p| p.origin_host.eq_ignore_ascii_case(origin_host) && p.net.contains(&source))
    }
}

/// An IPv4 peer reaching a dual-stack socket arrives as `::ffff:a.b.c.d`.
fn unmapped(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(source, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_known_by_its_origin_host_from_its_block_only() {
        let peers = Peers::new(&[DiameterPeer {
            name: "t1".into(),
            origin_host: "t1.issuer.test".into(),
            address: "127.0.0.0/8".parse().unwrap(),
            merchants: vec!["M1".into()],
            key_sha256: None,
        }])
        .unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(peers.find("T1.Issuer.Test", local).map(|p| p.name.as_str()), Some("t1"));
        assert!(peers.find("t2.issuer.test", local).is_none());
        assert!(peers.find("t1.issuer.test", "10.0.0.1".parse().unwrap()).is_none());
        assert!(peers.admits(local) && peers.admits("::ffff:127.0.0.9".parse().unwrap()));
        assert!(!peers.admits("10.0.0.1".parse().unwrap()));
        assert!(peers.find_on("t1.issuer.test", local, None).is_some(), "no key: plain TCP");
        assert!(peers.find_on("t1.issuer.test", local, Some(&[7; 32])).is_none(), "no key: not over TLS");
    }

    #[test]
    fn a_peer_with_a_key_connects_only_over_tls_with_that_key() {
        let peers = Peers::new(&[DiameterPeer {
            name: "relay".into(),
            origin_host: "relay.issuer.test".into(),
            address: "127.0.0.1/32".parse().unwrap(),
            merchants: vec![],
            key_sha256: Some("07".repeat(32)),
        }])
        .unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(peers.find_on("relay.issuer.test", local, Some(&[7; 32])).is_some());
        assert!(peers.find_on("relay.issuer.test", local, Some(&[8; 32])).is_none(), "another key");
        assert!(peers.find_on("relay.issuer.test", local, None).is_none(), "plain TCP");
    }
}
