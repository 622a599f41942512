//! Server CPU of a TLS handshake as EAP-TLS uses it (client certificate
//! required, P-256 keys, the EAP key export), with OpenSSL as eapay-server
//! runs it (`TlsServerConfig`: the system's OpenSSL, or 3.6 with
//! `--features vendored-openssl`) and with rustls (ring, aws-lc-rs), in memory, for a
//! full TLS 1.3 handshake and a resumed one. Only the server's calls are
//! timed (`iter_custom`), so the client's side does not count.
//!
//!   cargo bench -p eap-methods --features tls-backends-bench --bench tls_backends
//!
//! It measures the TLS library, not an EAP-TLS backend: rustls is not wired
//! into the EAP methods (BENCHMARKS.md, "Durable payments", §4).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use eap_methods::tls::config::{CardTls, TlsServerConfig, TlsServerOptions, TlsVersion};
use eap_methods::tls::engine::TlsEngine;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, DistinguishedName, ServerConfig, ServerConnection,
};

const LABEL: &str = "EXPORTER_EAP_TLS_Key_Material";
const CONTEXT: &[u8] = &[0x0d];

struct Pki {
    server_key: PKey<Private>,
    server: X509,
    card_key: PKey<Private>,
    card: X509,
}

fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("key")
}

fn self_signed(cn: &str, key: &PKey<Private>) -> X509 {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("cn");
    let name = name.build();
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("version");
    b.set_serial_number(&BigNum::from_u32(7).and_then(|n| n.to_asn1_integer()).expect("serial")).expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time")).expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(30).expect("time")).expect("not after");
    b.sign(key, MessageDigest::sha256()).expect("sign");
    b.build()
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let (server_key, card_key) = (p256(), p256());
        Pki {
            server: self_signed("aaa.issuer.example", &server_key),
            card: self_signed("card", &card_key),
            server_key,
            card_key,
        }
    })
}

/// Runs one handshake between `client` and `server`, timing the server's
/// calls only; `server_step` feeds the client's bytes and returns the
/// server's, `client_step` the other way round. Done when neither has
/// anything left to say.
fn exchange(mut client_step: impl FnMut(&[u8]) -> Vec<u8>, mut server_step: impl FnMut(&[u8]) -> Vec<u8>) -> Duration {
    let mut spent = Duration::ZERO;
    let mut to_server = client_step(&[]);
    for _ in 0..16 {
        let started = Instant::now();
        let to_client = server_step(&to_server);
        spent += started.elapsed();
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
        to_server = client_step(&to_client);
    }
    spent
}

mod with_openssl {
    use super::*;

    pub struct Side {
        server: TlsServerConfig,
        card: CardTls,
    }

    pub fn side() -> Side {
        let p = pki();
        let opts = TlsServerOptions {
            certificate_chain_pem: p.server.to_pem().expect("pem"),
            private_key_pem: p.server_key.private_key_to_pem_pkcs8().expect("pem"),
            min_version: TlsVersion::V1_3,
            max_version: TlsVersion::V1_3,
            ..TlsServerOptions::default()
        };
        let server = TlsServerConfig::new(&opts).expect("server config");
        let pin = openssl::sha::sha256(&p.server_key.public_key_to_der().expect("spki"));
        let card = CardTls::tls(
            &p.card_key.private_key_to_pem_pkcs8().expect("pem"),
            &p.card.to_pem().expect("pem"),
            pin,
            TlsVersion::V1_3,
            TlsVersion::V1_3,
        )
        .expect("card");
        Side { server, card }
    }

    /// One handshake; the session the client got, for the next one.
    pub fn handshake(side: &Side, session: Option<&[u8]>) -> (Duration, Option<Vec<u8>>) {
        let (mut client, observed) = side.card.context.connect(session).expect("client");
        let mut server = TlsEngine::server(side.server.context()).expect("server");
        let mut exported = false;
        let spent = exchange(
            |input| {
                client.feed(input);
                if client.handshake().expect("client handshake") {
                    // The ticket arrives after the handshake.
                    let _ = client.read_application_data();
                }
                client.take_output()
            },
            |input| {
                server.feed(input);
                if server.handshake().expect("server handshake") && !exported {
                    // What EAP-TLS does once the handshake is done: the card's key and the EAP keys.
                    exported = true;
                    let _ = server.peer_spki();
                    let _ = server.export_keying_material(LABEL, Some(CONTEXT), 128);
                }
                server.take_output()
            },
        );
        server.keep_session();
        (spent, observed.latest_session())
    }
}

mod with_rustls {
    use super::*;

    /// Trusts any client certificate whose signatures verify: as eapay's
    /// server does, it recognises the card by its key afterwards.
    #[derive(Debug)]
    struct AnyCard(Arc<CryptoProvider>);

    impl ClientCertVerifier for AnyCard {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            &[]
        }
        fn verify_client_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _now: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            Ok(ClientCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// The card's side: any server certificate (the bench is about the server).
    #[derive(Debug)]
    struct AnyServer(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub struct Side {
        pub server: Arc<ServerConfig>,
        pub client: Arc<ClientConfig>,
    }

    fn key(key: &PKey<Private>) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.private_key_to_pkcs8().expect("pkcs8")))
    }

    /// The server, and a client that keeps its sessions (resumes), with
    /// `provider`'s cryptography.
    pub fn side(provider: CryptoProvider) -> Side {
        let p = pki();
        let provider = Arc::new(provider);
        let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_client_cert_verifier(Arc::new(AnyCard(Arc::clone(&provider))))
            .with_single_cert(vec![CertificateDer::from(p.server.to_der().expect("der"))], key(&p.server_key))
            .expect("server config");
        // One ticket per handshake, as eapay-server's OpenSSL context issues.
        server.send_tls13_tickets = 1;
        let client = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_client_auth_cert(vec![CertificateDer::from(p.card.to_der().expect("der"))], key(&p.card_key))
            .expect("client config");
        Side { server: Arc::new(server), client: Arc::new(client) }
    }

    /// A client config that does not resume (its own empty session store).
    pub fn forgetful(side: &Side) -> Arc<ClientConfig> {
        let mut c = (*side.client).clone();
        c.resumption = rustls::client::Resumption::disabled();
        Arc::new(c)
    }

    /// The server's time, and whether the handshake resumed.
    pub fn handshake(server_config: &Arc<ServerConfig>, client_config: &Arc<ClientConfig>) -> (Duration, bool) {
        let name = ServerName::try_from("aaa.issuer.example").expect("name");
        let mut client = ClientConnection::new(Arc::clone(client_config), name).expect("client");
        let mut server = ServerConnection::new(Arc::clone(server_config)).expect("server");
        let spent = exchange(
            |mut input| {
                while !input.is_empty() {
                    client.read_tls(&mut input).expect("client read");
                    client.process_new_packets().expect("client process");
                }
                let mut out = Vec::new();
                while client.wants_write() {
                    client.write_tls(&mut out).expect("client write");
                }
                out
            },
            |mut input| {
                let was_handshaking = server.is_handshaking();
                while !input.is_empty() {
                    server.read_tls(&mut input).expect("server read");
                    server.process_new_packets().expect("server process");
                }
                if was_handshaking && !server.is_handshaking() {
                    let _ = server.peer_certificates().map(|c| c.first().map(|c| c.len()));
                    let mut keys = [0u8; 128];
                    let _ = server.export_keying_material(&mut keys, LABEL.as_bytes(), Some(CONTEXT));
                }
                let mut out = Vec::new();
                while server.wants_write() {
                    server.write_tls(&mut out).expect("server write");
                }
                out
            },
        );
        (spent, server.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
    }
}

fn backends(c: &mut Criterion) {
    let mut group = c.benchmark_group("eap-tls server, TLS 1.3, P-256");
    let openssl = with_openssl::side();
    group.bench_function("openssl full", |b| {
        b.iter_custom(|n| (0..n).map(|_| with_openssl::handshake(&openssl, None).0).sum())
    });
    let (_, session) = with_openssl::handshake(&openssl, None);
    let session = session.expect("OpenSSL hands the card a session");
    group.bench_function("openssl resumed", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| {
                    let (spent, _) = with_openssl::handshake(&openssl, Some(&session));
                    spent
                })
                .sum()
        })
    });

    // ring's default provider is deprecated only for lacking post-quantum key
    // exchange, which OpenSSL 3.0 lacks too: every pair agrees on X25519.
    #[allow(deprecated)]
    let providers = [
        ("rustls+ring", rustls::crypto::ring::default_provider()),
        ("rustls+aws-lc-rs", rustls::crypto::aws_lc_rs::default_provider()),
    ];
    for (name, provider) in providers {
        let rustls = with_rustls::side(provider);
        let forgetful = with_rustls::forgetful(&rustls);
        group.bench_function(format!("{name} full"), |b| {
            b.iter_custom(|n| (0..n).map(|_| with_rustls::handshake(&rustls.server, &forgetful).0).sum())
        });
        // The resuming client keeps the server's tickets from its first handshake on.
        let _ = with_rustls::handshake(&rustls.server, &rustls.client);
        assert!(with_rustls::handshake(&rustls.server, &rustls.client).1, "{name} resumes");
        group.bench_function(format!("{name} resumed"), |b| {
            b.iter_custom(|n| (0..n).map(|_| with_rustls::handshake(&rustls.server, &rustls.client).0).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, backends);
criterion_main!(benches);
