//! RADIUS clients (NAS / merchant terminals) by address or CIDR block.

use std::net::IpAddr;

use crate::config::RadiusClient;

/// A client as the request path needs it.
#[derive(Clone)]
pub struct Client {
    pub name: String,
    pub secret: Vec<u8>,
    pub require_message_authenticator: bool,
    pub merchants: Vec<String>,
    net: ipnet::IpNet,
}

impl Client {
    /// A terminal speaking RADIUS over TLS: the RFC 6614 secret, and
    /// Message-Authenticator required as over UDP. It has no address block:
    /// its certificate names it.
    pub fn radsec(name: &str, merchants: &[String]) -> Self {
        Self {
            name: name.to_string(),
            secret: super::tls::SECRET.to_vec(),
            require_message_authenticator: true,
            merchants: merchants.to_vec(),
            net: ipnet::IpNet::from(std::net::IpAddr::from([0, 0, 0, 0])),
        }
    }
}

/// The configured clients; the most specific block wins, as in FreeRADIUS.
pub struct Clients(Vec<Client>);

impl Clients {
    /// From the configuration, most specific prefix first.
    pub fn new(config: &[RadiusClient]) -> Self {
        let mut v: Vec<Client> = config
            .iter()
            .map(|c| Client {
                name: c.name.clone(),
                secret: c.secret.as_bytes().to_vec(),
                require_message_authenticator: c.require_message_authenticator,
                merchants: c.merchants.clone(),
                net: c.address,
            })
            .collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.net.prefix_len()));
        Self(v)
    }

    /// The client for a source address, if any.
    pub fn find(&self, ip: IpAddr) -> Option<&Client> {
        // An IPv4-mapped IPv6 source (dual-stack socket) matches IPv4 blocks.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().find(|c| c.net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str, net: &str) -> RadiusClient {
        RadiusClient {
            name: name.into(),
            address: net.parse().unwrap(),
            secret: "s".into(),
            merchants: vec![],
            require_message_authenticator: true,
        }
    }

    #[test]
    fn most_specific_block_wins() {
        let c = Clients::new(&[client("wide", "127.0.0.0/8"), client("host", "127.0.0.2/32")]);
        assert_eq!(c.find("127.0.0.2".parse().unwrap()).unwrap().name, "host");
        assert_eq!(c.find("127.0.0.9".parse().unwrap()).unwrap().name, "wide");
        assert_eq!(c.find("::ffff:127.0.0.2".parse().unwrap()).unwrap().name, "host");
        assert!(c.find("10.0.0.1".parse().unwrap()).is_none());
    }
}
