//! Administrative commands: `init`, card issuance, and opening the ledger
//! and the issuer's signing key for the server and the admin CLI.
//!
//! Card issuance decisions (DESIGN.md §5, §6 leave them open):
//! - TLS/TTLS cards get a fresh key pair (ECDSA P-256, or RSA 2048 with
//!   `--key-type rsa2048`) and a certificate from the issuer CA
//!   ([`crate::pki`]): CN = card id, EKU clientAuth, valid until the card's
//!   expiry. The ledger registers the key (one key, one card) and
//!   V-Card = SHA-256(SPKI || PAN-token). The certificate is for standard
//!   supplicants; eapay trusts the registered key.
//! - Every TLS/TTLS card has a PAN-token: from `--pan`, or else from a virtual
//!   card number generated for it (BIN 999999, private use under ISO/IEC
//!   7812, 16 digits, Luhn-valid) that is forgotten at once; only its last
//!   four digits are printed.
//! - Identities: TLS `<card_id>@<realm>`; TTLS `anonymous@<realm>` outside
//!   the tunnel (all a terminal sees), the card id inside (inner PAP
//!   User-Name) or `0<card_id>@<realm>` (inner EAP-AKA).
//! - TTLS cards use inner PAP unless `--inner aka`; PAP needs `--pin`, which
//!   is the inner password: the card file keeps it (the holder knows it), the
//!   ledger only its keyed verifier. Three wrong PINs in a row lock it.
//! - `--eapol-test` keeps the default confirmation `required` for every
//!   method, as for AKA cards: eapol_test cannot confirm, so such a card's
//!   payments are declined 59; the network block says so in a comment. Use
//!   `--confirmation optional` for cards meant for eapol_test.
//! - For TLS/TTLS, `--eapol-test FILE` also writes the PEM files the block
//!   names, by absolute path, beside FILE: `<stem>.ca.pem`, and for TLS
//!   `<stem>.cert.pem` and `<stem>.key.pem` (0600). TLS 1.3 is enabled in the
//!   block (eapol_test 2.10 turns it off by default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aaa_proto::receipt::{IssuerPublicKey, IssuerSigningKey};
use eap_methods::sim_aka::auc::DEFAULT_AMF;
use eapay_card_file::{AkaCard, CardFile, TlsCard, VERSION};

use crate::cards::{CardMethod, Confirmation};
use crate::config::{
    Config, DiameterPeer, DiameterSection, EapSection, LedgerSection, MetricsSection, PaymentSection, RadiusClient,
    RadiusSection, ServerSection,
};
use crate::error::ServerError;
use crate::ledger::{LedgerOptions, NewAkaCredential, NewCard, SqlLedger};
use crate::pki::KeyType;
use crate::seal::{Kek, KEK_FILE};

/// The issuer's receipt-signing key, sealed under the KEK like card secrets.
pub const ISSUER_KEY_FILE: &str = "issuer-key.sealed";
/// The issuer's public key (PEM): what `eapay-terminal verify-receipt` takes.
pub const ISSUER_PUB_FILE: &str = "issuer.pub";
/// Associated data of the sealed signing key.
const ISSUER_KEY_AAD: &str = "eapay issuer signing key";
/// The merchant `init` registers for the demo terminal.
pub const DEMO_MERCHANT: &str = "M-DEMO";

/// The configuration file name inside a data directory.
pub const CONFIG_FILE: &str = "eapay.toml";
/// `init` defaults, shared by the command line and the zero-config demo.
pub const DEFAULT_REALM: &str = "issuer.example";
/// Default RADIUS authentication address (accounting is the next port).
pub const DEFAULT_RADIUS_LISTEN: &str = "127.0.0.1:1812";
/// Default Diameter address.
pub const DEFAULT_DIAMETER_LISTEN: &str = "127.0.0.1:3868";
/// The zero-config demo's metrics address (`init` leaves metrics off unless asked).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9812";
/// The host part of the demo terminal's Diameter Origin-Host
/// (`demo-terminal.<realm>`); it acts for the same merchant as over RADIUS,
/// under the same name.
pub const DEMO_DIAMETER_TERMINAL: &str = "demo-terminal";

/// Options of `eapay-server init`. Debug hides the secret.
#[derive(Clone)]
pub struct InitOptions {
    pub data_dir: PathBuf,
    pub realm: String,
    pub radius_secret: Option<String>,
    pub radius_listen: SocketAddr,
    pub diameter_listen: SocketAddr,
    /// Serve `/metrics` here (`[metrics]`); none when `None`.
    pub metrics_listen: Option<SocketAddr>,
    pub force: bool,
}

impl std::fmt::Debug for InitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitOptions")
            .field("data_dir", &self.data_dir)
            .field("realm", &self.realm)
            .field("radius_secret", &self.radius_secret.as_ref().map(|_| "<hidden>"))
            .field("radius_listen", &self.radius_listen)
            .field("diameter_listen", &self.diameter_listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("force", &self.force)
            .finish()
    }
}

/// What `init` produced.
#[derive(Debug)]
pub struct Initialised {
    pub config_path: PathBuf,
    pub config: Config,
}

/// Writes a starter configuration, the key-encryption key, the issuer
/// signing key and the issuer PKI ([`crate::pki`]) into a data dir, and
/// creates the ledger with the demo merchant. Existing keys are kept.
pub async fn init(opts: &InitOptions) -> Result<Initialised, ServerError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(|e| ServerError::io(&opts.data_dir, e))?;
    let data_dir = opts.data_dir.canonicalize().map_err(|e| ServerError::io(&opts.data_dir, e))?;
    let config_path = data_dir.join(CONFIG_FILE);
    if config_path.exists() && !opts.force {
        return Err(ServerError::Usage(format!("{} exists; use --force to overwrite", config_path.display())));
    }
    // Keep an existing KEK: replacing it would orphan every sealed card.
    if !data_dir.join(KEK_FILE).exists() && std::env::var_os(crate::seal::KEK_ENV).is_none() {
        Kek::create(&data_dir)?;
    }
    // Likewise the signing key: receipts already issued must keep verifying.
    let signer = match load_signer(&data_dir) {
        Ok(signer) => signer,
        Err(_) if !data_dir.join(ISSUER_KEY_FILE).exists() => create_signer(&data_dir)?,
        Err(e) => return Err(e),
    };
    // And the PKI: every TLS/TTLS card pins the server key.
    crate::pki::ensure(&data_dir, &Kek::load(&data_dir)?, &opts.realm)?;
    let secret = match &opts.radius_secret {
        Some(s) if s.is_empty() => return Err(ServerError::Usage("--radius-secret must not be empty".into())),
        Some(s) => s.clone(),
        None => random_secret(),
    };
    let acct_port = match opts.radius_listen.port() {
        0 => 0,
        p => p.checked_add(1).ok_or_else(|| ServerError::Usage("--radius-listen port too high".into()))?,
    };
    let config = Config {
        server: ServerSection {
            realm: opts.realm.clone(),
            data_dir: data_dir.clone(),
            vendor_id: aaa_proto::dictionary::eapay::VENDOR_ID,
        },
        radius: RadiusSection {
            auth_listen: opts.radius_listen,
            acct_listen: SocketAddr::new(opts.radius_listen.ip(), acct_port),
            duplicate_window_secs: 30,
            clients: vec![RadiusClient {
                name: "demo-terminal".into(),
                address: ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1])),
                secret,
                merchants: vec![DEMO_MERCHANT.into()],
                require_message_authenticator: true,
            }],
            tls: None,
        },
        diameter: Some(DiameterSection {
            listen: opts.diameter_listen,
            origin_host: format!("aaa.{}", opts.realm),
            origin_realm: opts.realm.clone(),
            watchdog_secs: 30,
            cer_timeout_secs: 10,
            max_message: 65_536,
            duplicate_window_secs: 30,
            peers: vec![DiameterPeer {
                name: "demo-terminal".into(),
                origin_host: format!("{DEMO_DIAMETER_TERMINAL}.{}", opts.realm),
                address: ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1])),
                merchants: vec![DEMO_MERCHANT.into()],
                key_sha256: None,
            }],
            tls: None,
        }),
        ledger: LedgerSection { url: format!("sqlite://{}", data_dir.join("ledger.db").display()) },
        eap: EapSection::default(),
        payment: PaymentSection::default(),
        metrics: opts.metrics_listen.map(|listen| MetricsSection { listen }),
    };
    let text = format!(
        "# eapay payment server configuration, written by `eapay-server init`.\n\
         # Card secrets are sealed under {KEK_FILE} (or $EAPAY_KEK), never stored here.\n\n{}",
        config.to_toml()?
    );
    // The file holds RADIUS shared secrets: owner-only.
    crate::fsutil::write_private(&config_path, text.as_bytes())?;
    let ledger = open_ledger(&config, None).await?;
    let public = signer.public_key().map_err(receipt_error)?;
    let pem = public.to_pem().map_err(receipt_error)?;
    ledger.set_issuer(&config.server.realm, &pem, public.key_id()).await?;
    register_merchants(&ledger, &config, "init").await?;
    ledger.close().await;
    Ok(Initialised { config_path, config })
}

/// Makes the ledger's config links those the configuration lists for each
/// terminal, RADIUS clients and Diameter peers alike, by name (a terminal
/// that speaks both protocols has one name and one set of merchants); see
/// `ledger::merchants` for admin links, which stay.
pub async fn register_merchants(ledger: &SqlLedger, config: &Config, actor: &str) -> Result<(), ServerError> {
    let radius = config.radius.clients.iter().map(|c| (&c.name, &c.merchants));
    let radsec = config.radius.tls.iter().flat_map(|t| t.clients.iter().map(|c| (&c.name, &c.merchants)));
    let diameter = config.diameter.iter().flat_map(|d| d.peers.iter().map(|p| (&p.name, &p.merchants)));
    let links = radius
        .chain(radsec)
        .chain(diameter)
        .flat_map(|(terminal, merchants)| merchants.iter().map(move |m| (m.clone(), terminal.clone())))
        .collect();
    let changes = ledger.follow_config_links(&links, actor).await?;
    for merchant in &changes.merchants_added {
        tracing::info!(merchant, "merchant added from the configuration");
    }
    for (merchant, client) in &changes.links_added {
        tracing::info!(merchant, client, "merchant link added from the configuration");
    }
    for (merchant, client) in &changes.links_removed {
        tracing::warn!(merchant, client, "merchant link removed: no longer in the configuration");
    }
    Ok(())
}

fn create_signer(data_dir: &Path) -> Result<IssuerSigningKey, ServerError> {
    let kek = Kek::load(data_dir)?;
    let signer = IssuerSigningKey::generate().map_err(receipt_error)?;
    let der = signer.to_pkcs8_der().map_err(receipt_error)?;
    kek.seal_to_file(&data_dir.join(ISSUER_KEY_FILE), ISSUER_KEY_AAD, &der)?;
    let pem = signer.public_key().and_then(|p| p.to_pem()).map_err(receipt_error)?;
    crate::fsutil::write_atomic(&data_dir.join(ISSUER_PUB_FILE), &pem, 0o644)?;
    Ok(signer)
}

/// The issuer signing key of a data directory.
pub fn load_signer(data_dir: &Path) -> Result<IssuerSigningKey, ServerError> {
    let der = Kek::load(data_dir)?.open_file(&data_dir.join(ISSUER_KEY_FILE), ISSUER_KEY_AAD)?;
    IssuerSigningKey::from_pkcs8_der(&der).map_err(receipt_error)
}

/// The issuer public key of a data directory.
pub fn load_public_key(data_dir: &Path) -> Result<IssuerPublicKey, ServerError> {
    let path = data_dir.join(ISSUER_PUB_FILE);
    let pem = std::fs::read(&path).map_err(|e| ServerError::io(&path, e))?;
    IssuerPublicKey::from_pem(&pem).map_err(receipt_error)
}

fn receipt_error(e: aaa_proto::receipt::ReceiptError) -> ServerError {
    ServerError::Kek(format!("issuer signing key: {e}"))
}

/// Opens the ledger of a configuration; `signer` is needed only to approve.
pub async fn open_ledger(config: &Config, signer: Option<IssuerSigningKey>) -> Result<SqlLedger, ServerError> {
    let kek = Kek::load(&config.server.data_dir)?;
    let options = LedgerOptions { policy: config.payment.policy(), signer, batch_max: 256 };
    SqlLedger::open(&config.ledger.url, kek, options).await
}

fn random_secret() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect()
}

/// The terms a card is issued on, shared by single and bulk issuance.
/// Debug hides the PIN.
#[derive(Clone)]
pub struct TermsOptions {
    pub method: CardMethod,
    /// Credit limit in minor units.
    pub limit: u64,
    /// ISO 4217 numeric.
    pub currency: u16,
    pub confirmation: Confirmation,
    pub pin: Option<String>,
    /// Last month of validity, `YYYY-MM`; four years from now if absent.
    pub expires: Option<String>,
    /// tls/ttls: the algorithm of the card's key; ECDSA P-256 if absent.
    pub key_type: Option<KeyType>,
    /// ttls: the inner method; PAP if absent.
    pub inner: Option<TtlsInner>,
}

/// The inner method of a TTLS card (`card issue --inner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TtlsInner {
    /// The PIN as the inner PAP password, checked (and counted) by the issuer.
    Pap,
    /// EAP-AKA inside the tunnel (the card also holds K and OPc).
    Aka,
}

impl TtlsInner {
    /// The name in the card file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pap => "pap",
            Self::Aka => "aka",
        }
    }
}

impl std::fmt::Debug for TermsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TermsOptions")
            .field("method", &self.method)
            .field("limit", &self.limit)
            .field("currency", &self.currency)
            .field("confirmation", &self.confirmation)
            .field("pin", &self.pin.as_ref().map(|_| "<hidden>"))
            .field("expires", &self.expires)
            .field("key_type", &self.key_type)
            .field("inner", &self.inner)
            .finish()
    }
}

/// Options of `eapay-server card issue`. Debug hides the PIN and PAN.
#[derive(Clone)]
pub struct IssueOptions {
    pub terms: TermsOptions,
    pub card_file: PathBuf,
    pub eapol_test: Option<PathBuf>,
    pub pan: Option<String>,
}

impl std::fmt::Debug for IssueOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueOptions")
            .field("terms", &self.terms)
            .field("card_file", &self.card_file)
            .field("eapol_test", &self.eapol_test)
            .field("pan", &self.pan.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// What `card issue` produced.
#[derive(Debug, Clone)]
pub struct Issued {
    pub card: CardFile,
    /// The last four digits of the virtual card number generated for a
    /// TLS/TTLS card issued without `--pan` (the number itself is forgotten).
    pub virtual_pan_last4: Option<String>,
    /// The eapol_test files written (`--eapol-test`): the network block first.
    pub eapol_files: Vec<PathBuf>,
}

/// Issues a card: registers it in the ledger and writes the card file. The
/// PAN, if given, is reduced to its keyed token here and forgotten; a
/// TLS/TTLS card issued without one gets a virtual card number
/// ([`VIRTUAL_BIN`]), equally reduced to its token and forgotten.
pub async fn issue_card(config: &Config, ledger: &SqlLedger, opts: &IssueOptions) -> Result<Issued, ServerError> {
    let terms = CardTerms::check(&opts.terms)?;
    let pan = opts.pan.as_deref().map(check_pan).transpose()?;
    if opts.card_file.exists() {
        return Err(ServerError::Usage(format!(
            "{} exists; a card file is never overwritten",
            opts.card_file.display()
        )));
    }
    let tls = terms.tls_issuing(config, ledger.kek())?;
    let made = terms.new_card(config, ledger.kek(), tls.as_ref(), &new_card_id(), pan.as_deref())?;
    let eapol = match &opts.eapol_test {
        Some(path) => eapol_test_files(&made.card, path, terms.confirmation)?,
        None => Vec::new(),
    };
    // Card file first: a card the issuer knows but nobody holds is harmless,
    // the reverse would be a card that cannot pay.
    crate::fsutil::write_private(&opts.card_file, made.card.to_json().as_bytes())?;
    for file in &eapol {
        crate::fsutil::write_atomic(&file.path, file.text.as_bytes(), file.mode)?;
    }
    ledger.issue_card(made.new, "admin").await?;
    Ok(Issued {
        card: made.card,
        virtual_pan_last4: made.virtual_pan_last4,
        eapol_files: eapol.into_iter().map(|f| f.path).collect(),
    })
}

/// The most cards one `card issue --count` may issue.
pub const MAX_BULK_CARDS: u32 = 1_000_000;

/// Options of `eapay-server card issue --count N --card-dir DIR`: N cards
/// with the same terms (the same PIN, if any), one card file each.
#[derive(Clone, Debug)]
pub struct BulkIssueOptions {
    pub terms: TermsOptions,
    /// Where `<card_id>.json` of each card goes (created if missing, 0700).
    pub card_dir: PathBuf,
    pub count: u32,
}

/// Issues `count` cards: writes `DIR/<card_id>.json` for each (0600, never
/// overwriting), makes the files durable, then registers all of them in the
/// ledger in one transaction. If the ledger refuses, the files just written
/// are removed again: all or none. Returns the cards, ordered as issued.
pub async fn issue_cards(
    config: &Config,
    ledger: &SqlLedger,
    opts: &BulkIssueOptions,
) -> Result<Vec<CardFile>, ServerError> {
    if !(1..=MAX_BULK_CARDS).contains(&opts.count) {
        return Err(ServerError::Usage(format!("--count must be 1 to {MAX_BULK_CARDS}")));
    }
    let terms = CardTerms::check(&opts.terms)?;
    let tls = terms.tls_issuing(config, ledger.kek())?;
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::with_capacity(opts.count as usize);
    while ids.len() < opts.count as usize {
        let id = new_card_id();
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    drop(seen);
    // Key generation is the cost of TLS cards: one thread per core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    let chunk = ids.len().div_ceil(threads).max(1);
    let kek = ledger.kek();
    let made: Vec<Result<Vec<NewIssue>, ServerError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = ids
            .chunks(chunk)
            .map(|part| {
                let (terms, tls) = (&terms, tls.as_ref());
                scope.spawn(move || part.iter().map(|id| terms.new_card(config, kek, tls, id, None)).collect())
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| Err(ServerError::Internal("a card generation thread panicked".into())))
            })
            .collect()
    });
    let mut cards = Vec::with_capacity(ids.len());
    let mut news = Vec::with_capacity(ids.len());
    for part in made {
        for issue in part? {
            cards.push(issue.card);
            news.push(issue.new);
        }
    }
    let dir = opts.card_dir.clone();
    let files: Vec<(PathBuf, String)> =
        cards.iter().map(|c| (dir.join(format!("{}.json", c.card_id)), c.to_json())).collect();
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    tokio::task::spawn_blocking(move || write_new_private_files(&dir, &files))
        .await
        .map_err(|e| ServerError::Internal(format!("writing card files: {e}")))??;
    if let Err(e) = ledger.issue_cards(&news, "admin").await {
        for path in &paths {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    Ok(cards)
}

/// Creates `dir` (0700) if missing and writes each new file (0600, failing
/// rather than overwriting), then fsyncs the files, in parallel so the
/// filesystem can batch the journal commits, and the directory once. On
/// error, the files written so far are removed.
fn write_new_private_files(dir: &Path, files: &[(PathBuf, String)]) -> Result<(), ServerError> {
    use std::io::Write;

    create_private_dir(dir)?;
    let mut written: Vec<&Path> = Vec::with_capacity(files.len());
    let cleanup = |written: &[&Path]| {
        for path in written {
            let _ = std::fs::remove_file(path);
        }
    };
    for (path, text) in files {
        let result = create_new_private(path).and_then(|mut f| f.write_all(text.as_bytes()));
        match result {
            Ok(()) => written.push(path),
            Err(e) => {
                // create_new may have created it before the write failed.
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    let _ = std::fs::remove_file(path);
                }
                cleanup(&written);
                return Err(ServerError::io(path, e));
            }
        }
    }
    // fsync is I/O-bound: more threads than cores let the journal batch.
    const SYNC_THREADS: usize = 16;
    let chunk = files.len().div_ceil(SYNC_THREADS).max(1);
    let synced: Result<(), ServerError> = std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    for (path, _) in part {
                        std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| ServerError::io(path, e))?;
                    }
                    Ok::<(), ServerError>(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| ServerError::Internal("a card file sync thread panicked".into()))??;
        }
        Ok(())
    });
    let synced =
        synced.and_then(|()| std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ServerError::io(dir, e)));
    if let Err(e) = synced {
        cleanup(&written);
        return Err(e);
    }
    Ok(())
}

/// Creates `dir` and its missing parents; a new directory is owner-only (0700).
fn create_private_dir(dir: &Path) -> Result<(), ServerError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| ServerError::io(dir, e))
}

/// Creates a new owner-only (0600) file; fails if `path` exists.
fn create_new_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A fresh random card id: 10 random bytes in hex (20 characters).
fn new_card_id() -> String {
    hex::encode(rand::random::<[u8; 10]>())
}

/// The checked terms of a card to issue, shared by single and bulk issuance.
struct CardTerms {
    method: CardMethod,
    currency: u16,
    limit: u64,
    confirmation: Confirmation,
    pin: Option<String>,
    expires_at: u64,
    /// tls/ttls.
    key_type: KeyType,
    /// ttls.
    inner: Option<TtlsInner>,
}

/// One card made by [`CardTerms::new_card`], not yet written or registered.
struct NewIssue {
    card: CardFile,
    new: NewCard,
    virtual_pan_last4: Option<String>,
}

/// What issuing TLS/TTLS cards takes from the data directory, opened once
/// per issuance.
struct TlsIssuing {
    ca: crate::pki::IssuerCa,
    ca_pem: String,
    /// Hex of [`crate::pki::server_pin`].
    server_pin: String,
}

impl CardTerms {
    fn check(opts: &TermsOptions) -> Result<Self, ServerError> {
        let TermsOptions { method, limit, currency, confirmation, key_type, inner, .. } = opts.clone();
        let (pin, expires) = (opts.pin.as_deref(), opts.expires.as_deref());
        let tls = matches!(method, CardMethod::Tls | CardMethod::Ttls);
        if key_type.is_some() && !tls {
            return Err(ServerError::Usage("--key-type is for tls and ttls cards".into()));
        }
        if inner.is_some() && method != CardMethod::Ttls {
            return Err(ServerError::Usage("--inner is for ttls cards".into()));
        }
        let inner = (method == CardMethod::Ttls).then(|| inner.unwrap_or(TtlsInner::Pap));
        if inner == Some(TtlsInner::Pap) && pin.is_none() {
            return Err(ServerError::Usage(
                "a ttls card with inner pap needs --pin (the PIN is its inner password)".into(),
            ));
        }
        if aaa_proto::currency::by_numeric(u32::from(currency)).is_none() {
            return Err(ServerError::Usage(format!("--currency {currency} is not an ISO 4217 numeric code")));
        }
        if let Some(pin) = pin {
            if !(4..=12).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ServerError::Usage("--pin must be 4 to 12 digits".into()));
            }
        }
        let expires_at = match expires {
            Some(text) => end_of_month(text)?,
            None => crate::admin::unix_now().saturating_add(4 * 365 * 86_400 + 86_400),
        };
        Ok(Self {
            method,
            currency,
            limit,
            confirmation,
            pin: pin.map(str::to_owned),
            expires_at,
            key_type: key_type.unwrap_or_default(),
            inner,
        })
    }

    /// The issuer CA and server pin for TLS/TTLS cards (creating the PKI of
    /// a data directory that predates it); None for other methods.
    fn tls_issuing(&self, config: &Config, kek: &Kek) -> Result<Option<TlsIssuing>, ServerError> {
        if !matches!(self.method, CardMethod::Tls | CardMethod::Ttls) {
            return Ok(None);
        }
        let data_dir = &config.server.data_dir;
        crate::pki::ensure(data_dir, kek, &config.server.realm)?;
        let chain_path = data_dir.join(crate::pki::SERVER_CHAIN_FILE);
        let chain = std::fs::read(&chain_path).map_err(|e| ServerError::io(&chain_path, e))?;
        let ca = crate::pki::load_ca(data_dir, kek)?;
        Ok(Some(TlsIssuing { ca_pem: ca.cert_pem()?, server_pin: hex::encode(crate::pki::server_pin(&chain)?), ca }))
    }

    /// A new card: its card file and its ledger row. AKA family: fresh K and
    /// OPc. TLS/TTLS: a fresh key pair and certificate from `tls`, and the
    /// PAN-token of `pan` or of a virtual card number.
    fn new_card(
        &self,
        config: &Config,
        kek: &Kek,
        tls: Option<&TlsIssuing>,
        card_id: &str,
        pan: Option<&str>,
    ) -> Result<NewIssue, ServerError> {
        let realm = &config.server.realm;
        let aka_keys = || -> ([u8; 16], [u8; 16]) { (rand::random(), rand::random()) };
        let (identity, aka, tls_card, card_key, pan_token, virtual_pan_last4) = match (self.method, tls) {
            (CardMethod::Tls | CardMethod::Ttls, Some(tls)) => {
                let credential = crate::pki::issue_card_credential(&tls.ca, self.key_type, card_id, self.expires_at)?;
                let (pan_token, last4) = match pan {
                    Some(pan) => (kek.pan_token(pan), None),
                    None => {
                        let pan = virtual_pan();
                        (kek.pan_token(&pan), Some(pan[pan.len() - 4..].to_string()))
                    }
                };
                let aka = (self.inner == Some(TtlsInner::Aka)).then(aka_keys);
                let identity = match self.method {
                    CardMethod::Tls => format!("{card_id}@{realm}"),
                    _ => format!("anonymous@{realm}"),
                };
                let tls_card = TlsCard {
                    key: credential.key_pem,
                    certificate: credential.certificate_pem,
                    ca: tls.ca_pem.clone(),
                    server_pin: tls.server_pin.clone(),
                    pan_token: Some(hex::encode(pan_token)),
                    inner: self.inner.map(|i| i.name().to_string()),
                    pin: if self.inner == Some(TtlsInner::Pap) { self.pin.clone() } else { None },
                    session: None,
                };
                (identity, aka, Some(tls_card), Some(credential.spki), Some(pan_token), last4)
            }
            (CardMethod::Aka | CardMethod::AkaPrime | CardMethod::Sim, _) => {
                let prefix = self.method.identity_prefix().unwrap_or('0');
                let identity = format!("{prefix}{card_id}@{realm}");
                (identity, Some(aka_keys()), None, None, pan.map(|p| kek.pan_token(p)), None)
            }
            (other, _) => {
                return Err(ServerError::Internal(format!("no issuance path for {} cards", other.name())));
            }
        };
        let card = CardFile {
            version: VERSION,
            card_id: card_id.to_owned(),
            method: self.method.name().to_string(),
            identity,
            realm: realm.clone(),
            aka: aka.map(|(k, opc)| AkaCard::new(hex::encode(k), hex::encode(opc))),
            tls: tls_card,
        };
        let new = NewCard {
            card_id: card_id.to_owned(),
            method: self.method,
            confirmation: self.confirmation,
            currency: self.currency,
            credit_limit: self.limit,
            expires_at: self.expires_at,
            pan_token,
            card_key,
            aka: aka.map(|(k, opc)| NewAkaCredential { k, opc, amf: DEFAULT_AMF, sqn_he: 0 }),
            pin: self.pin.clone(),
        };
        Ok(NewIssue { card, new, virtual_pan_last4 })
    }
}

/// The issuer identification number of virtual card numbers: 999999, in the
/// range ISO/IEC 7812 leaves for private use, so a virtual number can never
/// be a real card's.
pub const VIRTUAL_BIN: &str = "999999";

/// A virtual card number: [`VIRTUAL_BIN`], 9 random digits and the Luhn
/// check digit (16 digits).
fn virtual_pan() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut pan: String = VIRTUAL_BIN.to_string();
    pan.extend((0..9).map(|_| char::from(b'0' + rng.gen_range(0..10u8))));
    let check = (10 - luhn_sum(&format!("{pan}0")) % 10) % 10;
    pan.push(char::from(b'0' + check as u8));
    pan
}

/// The AAA server `card export` writes cards for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// hostapd's integrated RADIUS/EAP server with hlr_auc_gw (EAP-AKA, AKA').
    Hostapd,
    /// FreeRADIUS 3.2 (EAP-TLS/TTLS cards, once they are issued).
    Freeradius,
}

/// Options of `eapay-server card export`.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: ExportFormat,
    /// Created if missing (0700); the files in it are replaced.
    pub out_dir: PathBuf,
    /// Only cards of this method; all exportable ones if None.
    pub method: Option<CardMethod>,
    /// FreeRADIUS: the card files (`<card_id>.json`) of TTLS cards with
    /// inner PAP. Their PIN is their password there, and the ledger keeps
    /// only a keyed verifier of it, so without the card files they are skipped.
    pub card_dir: Option<PathBuf>,
}

/// What `card export` wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub files: Vec<PathBuf>,
    /// Cards exported per method, in the order of the methods.
    pub counts: Vec<(CardMethod, usize)>,
    /// Cards left out, with the reason (one line each).
    pub skipped: Vec<String>,
}

/// hostapd's EAP user file, in the export directory.
pub const HOSTAPD_EAP_USER_FILE: &str = "hostapd.eap_user";
/// hlr_auc_gw's Milenage file (`hlr_auc_gw -m`), in the export directory.
pub const HLR_AUC_GW_MILENAGE_FILE: &str = "hlr_auc_gw.milenage_db";

/// How many characters of a card id hostapd keys its AKA look-up on.
///
/// hostapd 2.10's EAP-AKA/AKA' server copies the permanent username (prefix
/// digit + user part of the NAI) into a 20-byte buffer with `os_strlcpy`
/// (`eap_server_aka.c`, `data->permanent`), silently cutting it to 19
/// characters, and asks hlr_auc_gw for the vector of the "IMSI" after the
/// prefix: the first 18 characters of our card id (a card id is 20 hex
/// digits). hlr_auc_gw takes IMSIs of at most 19 characters and compares
/// them as strings, hex digits included, so the Milenage file lists each card
/// under the first 18 characters of its id. The keys still bind to the whole
/// identity: AKA's MK and AKA''s keys are derived from the full NAI the card
/// sent. Two cards with the same 18 first characters (chance about
/// n^2 / 2^73) cannot both be exported; the export fails if that happens.
pub const HOSTAPD_IMSI_CHARS: usize = 18;

/// The IMSI under which hostapd/hlr_auc_gw know a card ([`HOSTAPD_IMSI_CHARS`]).
pub fn hostapd_imsi(card_id: &str) -> &str {
    card_id.get(..HOSTAPD_IMSI_CHARS).unwrap_or(card_id)
}

/// Writes the active cards of the ledger in the format of another AAA server
/// (`card export`): for hostapd, `hostapd.eap_user` and
/// `hlr_auc_gw.milenage_db` (K and OPc in the clear: 0600).
pub async fn export_cards(config: &Config, ledger: &SqlLedger, opts: &ExportOptions) -> Result<Exported, ServerError> {
    let methods = match opts.format {
        ExportFormat::Freeradius => return export_freeradius(config, ledger, opts).await,
        ExportFormat::Hostapd => match opts.method {
            None => vec![CardMethod::Aka, CardMethod::AkaPrime, CardMethod::Sim],
            Some(m @ (CardMethod::Aka | CardMethod::AkaPrime | CardMethod::Sim)) => vec![m],
            Some(other) => {
                return Err(ServerError::Usage(format!(
                    "--method {}: only sim, aka and aka-prime cards export to hostapd",
                    other.name()
                )));
            }
        },
    };
    let cards = ledger.aka_exports(&methods).await?;
    let mut skipped = Vec::new();
    let mut by_imsi: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut lines = String::new();
    let mut counts: Vec<(CardMethod, usize)> = methods.iter().map(|m| (*m, 0)).collect();
    for card in &cards {
        // hlr_auc_gw splits its lines at spaces and skips lines starting
        // with '#'; our ids are hex, but the ledger takes any printable id.
        if !card.card_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
            skipped.push(format!("card {}: id is not plain ASCII letters and digits", card.card_id));
            continue;
        }
        let imsi = hostapd_imsi(&card.card_id);
        if let Some(other) = by_imsi.insert(imsi.to_owned(), card.card_id.clone()) {
            return Err(ServerError::Usage(format!(
                "cards {other} and {} share their first {HOSTAPD_IMSI_CHARS} characters, all that hostapd \
                 looks them up by; block one of them or export with --method",
                card.card_id
            )));
        }
        let mut amf = card.amf;
        if card.method == CardMethod::AkaPrime {
            // RFC 5448 §3.4.1: AKA' vectors need the AMF separation bit.
            amf[0] |= 0x80;
        }
        lines.push_str(&format!(
            "{imsi} {} {} {} {:012x}\n",
            hex::encode(card.k),
            hex::encode(card.opc),
            hex::encode(amf),
            card.sqn_he & 0xffff_ffff_ffff
        ));
        if let Some(count) = counts.iter_mut().find(|(m, _)| *m == card.method) {
            count.1 += 1;
        }
    }
    let realm = &config.server.realm;
    let summary = counts.iter().map(|(m, n)| format!("{n} {}", m.name())).collect::<Vec<_>>().join(", ");
    let mut eap_user = format!(
        "# hostapd EAP user file, written by `eapay-server card export --format hostapd`\n\
         # (realm {realm}; cards: {summary}; their keys are in {HLR_AUC_GW_MILENAGE_FILE}).\n\
         # Permanent identities are 0<card-id>@{realm} (AKA), 6<card-id>@{realm} (AKA') and\n\
         # 1<card-id>@{realm} (SIM: hlr_auc_gw makes its triplets with GSM-Milenage from the same keys).\n\
         # One prefix line per method: hostapd scans this file linearly per look-up, and\n\
         # hlr_auc_gw refuses identities it has no keys for.\n"
    );
    for method in &methods {
        match method {
            CardMethod::Aka => eap_user.push_str("\"0\"*\tAKA\n"),
            CardMethod::AkaPrime => eap_user.push_str("\"6\"*\tAKA'\n"),
            CardMethod::Sim => eap_user.push_str("\"1\"*\tSIM\n"),
            _ => {}
        }
    }
    let milenage = format!(
        "# hlr_auc_gw Milenage file (hlr_auc_gw -m THIS_FILE), written by `eapay-server card export`.\n\
         # IMSI Ki OPc AMF SQN. IMSI = the first {HOSTAPD_IMSI_CHARS} characters of the card id (what hostapd\n\
         # looks a card up by); SQN = the issuer's SQN_HE at export time, so hlr_auc_gw's first vector\n\
         # (SEQ+1, IND+1, with its default -i 5) is fresh for the card. Cards: {summary}.\n\
         # K and OPc are in the clear: keep this file private.\n{lines}"
    );
    create_private_dir(&opts.out_dir)?;
    let eap_user_path = opts.out_dir.join(HOSTAPD_EAP_USER_FILE);
    let milenage_path = opts.out_dir.join(HLR_AUC_GW_MILENAGE_FILE);
    crate::fsutil::write_private(&milenage_path, milenage.as_bytes())?;
    crate::fsutil::write_private(&eap_user_path, eap_user.as_bytes())?;
    Ok(Exported { files: vec![eap_user_path, milenage_path], counts, skipped })
}

/// FreeRADIUS's EAP user file, in the export directory.
pub const FREERADIUS_USERS_FILE: &str = "users";
/// The server key in the clear, for FreeRADIUS's `private_key_file` (0600).
pub const FREERADIUS_SERVER_KEY_FILE: &str = "server-key.pem";

/// `card export --format freeradius`: what FreeRADIUS 3.2 needs to
/// authenticate the active TLS/TTLS cards like eapay does: the issuer CA
/// (`ca.pem`, its `ca_file`), the server chain and key (`server.pem`,
/// `server-key.pem`: the same key, so the cards' server pin holds) and
/// `users` with the inner PAP password (the PIN) of each TTLS/PAP card, read
/// from its card file. TLS cards need no entry: FreeRADIUS accepts every
/// certificate the CA issued (blocked cards too: it has no ledger).
async fn export_freeradius(config: &Config, ledger: &SqlLedger, opts: &ExportOptions) -> Result<Exported, ServerError> {
    let no_aka = |what: &str| {
        ServerError::Usage(format!(
            "--format freeradius: FreeRADIUS 3.2 has no EAP-AKA/AKA' server, so {what} cards cannot be exported \
             to it (use --format hostapd)"
        ))
    };
    let methods = match opts.method {
        None => vec![CardMethod::Tls, CardMethod::Ttls, CardMethod::Sim],
        Some(m @ (CardMethod::Tls | CardMethod::Ttls | CardMethod::Sim)) => vec![m],
        Some(m @ (CardMethod::Aka | CardMethod::AkaPrime)) => return Err(no_aka(m.name())),
    };
    let all = ledger.cards().await?;
    let cards: Vec<_> =
        all.iter().filter(|c| c.status == crate::ledger::CardStatus::Active && methods.contains(&c.method)).collect();
    if cards.is_empty() && opts.method.is_none() {
        return Err(ServerError::Usage(format!(
            "--format freeradius: no active tls, ttls or sim card to export; {}",
            no_aka("aka and aka-prime").to_string().trim_start_matches("--format freeradius: ")
        )));
    }
    let card_files = match &opts.card_dir {
        Some(dir) => read_card_files(dir)?,
        None => std::collections::HashMap::new(),
    };
    let realm = &config.server.realm;
    let mut skipped = Vec::new();
    let mut counts: Vec<(CardMethod, usize)> = methods.iter().map(|m| (*m, 0)).collect();
    let mut users = String::new();
    let sim_keys =
        if methods.contains(&CardMethod::Sim) { ledger.aka_exports(&[CardMethod::Sim]).await? } else { Vec::new() };
    for card in cards {
        if card.method == CardMethod::Sim {
            let Some(keys) = sim_keys.iter().find(|k| k.card_id == card.card_id) else {
                skipped.push(format!("card {}: sim without keys in the ledger", card.card_id));
                continue;
            };
            users.push_str(&freeradius_sim_user(&card.card_id, realm, keys));
        }
        if card.method == CardMethod::Ttls {
            let file = card_files.get(&card.card_id).and_then(|f| f.tls.as_ref());
            let inner = file.and_then(|t| t.inner.as_deref());
            match (file, inner) {
                (None, _) => {
                    skipped.push(format!(
                        "card {}: ttls, and its PIN is only a verifier in the ledger: give --card-dir with its card file",
                        card.card_id
                    ));
                    continue;
                }
                (Some(_), Some("aka")) => {
                    skipped
                        .push(format!("card {}: ttls with inner EAP-AKA, which FreeRADIUS 3.2 has not", card.card_id));
                    continue;
                }
                (Some(tls), _) => {
                    // A double-quoted value of the users file ends at '"',
                    // takes '\' escapes, and FreeRADIUS 3 expands a '%' in it
                    // (`%{...}`) at every look-up: such a PIN cannot be written.
                    let pin = tls.pin.as_deref().filter(|p| {
                        !p.is_empty() && p.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '%'))
                    });
                    let Some(pin) = pin else {
                        skipped.push(format!("card {}: its card file has no usable PIN", card.card_id));
                        continue;
                    };
                    users.push_str(&format!("\"{}\"\tCleartext-Password := \"{pin}\"\n", card.card_id));
                }
            }
        }
        if let Some(count) = counts.iter_mut().find(|(m, _)| *m == card.method) {
            count.1 += 1;
        }
    }
    let aka_left_out = all
        .iter()
        .filter(|c| opts.method.is_none() && matches!(c.method, CardMethod::Aka | CardMethod::AkaPrime))
        .count();
    if aka_left_out > 0 {
        skipped.push(format!("{aka_left_out} aka/aka-prime cards: FreeRADIUS 3.2 has no EAP-AKA/AKA' server"));
    }
    let data_dir = &config.server.data_dir;
    let identity = crate::pki::server_identity(data_dir, ledger.kek(), realm)?;
    let ca_src = data_dir.join(crate::pki::CA_CERT_FILE);
    let ca = std::fs::read(&ca_src).map_err(|e| ServerError::io(&ca_src, e))?;
    let summary = counts.iter().map(|(m, n)| format!("{n} {}", m.name())).collect::<Vec<_>>().join(", ");
    let header = format!(
        "# FreeRADIUS 3.2 users file, written by `eapay-server card export --format freeradius`\n\
         # (realm {realm}; cards: {summary}). TTLS/PAP cards: the inner User-Name is the card id, the\n\
         # password its PIN (anonymous outer identity anonymous@{realm}). TLS cards need no entry.\n\
         # SIM cards: three fixed triplets each (GSM-Milenage from the card's keys), as rlm_eap_sim takes\n\
         # them from control attributes; the same three serve every authentication of the card here.\n\
         # mods-available/eap, tls-config tls-common: certificate_file = EXPORT/server.pem,\n\
         # private_key_file = EXPORT/{FREERADIUS_SERVER_KEY_FILE}, ca_file = EXPORT/ca.pem, tls_max_version = \"1.3\";\n\
         # the server key is the issuer's, so the cards' server pin holds. Keep this file private.\n"
    );
    create_private_dir(&opts.out_dir)?;
    let out = |name: &str| opts.out_dir.join(name);
    let files = vec![
        (out(crate::pki::CA_CERT_FILE), ca, 0o644),
        (out(crate::pki::SERVER_CHAIN_FILE), identity.chain_pem.clone(), 0o644),
        (out(FREERADIUS_SERVER_KEY_FILE), identity.key_pem.clone(), 0o600),
        (out(FREERADIUS_USERS_FILE), format!("{header}{users}").into_bytes(), 0o600),
    ];
    for (path, bytes, mode) in &files {
        crate::fsutil::write_atomic(path, bytes, *mode)?;
    }
    Ok(Exported { files: files.into_iter().map(|(p, _, _)| p).collect(), counts, skipped })
}

/// A SIM card's entry in FreeRADIUS's users file: rlm_eap_sim of FreeRADIUS
/// 3.2 has no authentication centre and takes its three triplets from the
/// control attributes EAP-Sim-Rand1..3, -SRES1..3, -KC1..3. They are made
/// here once, with GSM-Milenage from the card's K/OPc and random RANDs, so
/// every authentication of the card at FreeRADIUS uses the same three:
/// fine for interoperability and for measuring, but a recorded exchange
/// could be replayed to FreeRADIUS (never to eapay-server, which draws new
/// RANDs every time).
fn freeradius_sim_user(card_id: &str, realm: &str, keys: &crate::ledger::AkaExport) -> String {
    let milenage = eap_methods::crypto::milenage::Milenage::new(&keys.k, &keys.opc);
    let triplets = eap_methods::sim_aka::auc::generate_triplets(&milenage, crate::auc::SIM_TRIPLETS);
    let mut items = vec!["EAP-Type := SIM".to_string()];
    for (i, t) in triplets.iter().enumerate() {
        let n = i + 1;
        items.push(format!("EAP-Sim-Rand{n} := 0x{}", hex::encode(t.rand)));
        items.push(format!("EAP-Sim-SRES{n} := 0x{}", hex::encode(t.sres)));
        items.push(format!("EAP-Sim-KC{n} := 0x{}", hex::encode(t.kc)));
    }
    format!("\"1{card_id}@{realm}\"\t{}\n", items.join(", "))
}

/// The card files (`*.json`) of a directory by card id; other files and
/// files that are not card files are ignored.
fn read_card_files(dir: &Path) -> Result<std::collections::HashMap<String, CardFile>, ServerError> {
    let mut found = std::collections::HashMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| ServerError::io(dir, e))? {
        let path = entry.map_err(|e| ServerError::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            if let Ok(card) = CardFile::load(&path) {
                found.insert(card.card_id.clone(), card);
            }
        }
    }
    Ok(found)
}

/// A card number: 12 to 19 digits with a valid Luhn check digit (spaces and
/// dashes as people type them are ignored).
fn check_pan(pan: &str) -> Result<String, ServerError> {
    let digits: String = pan.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let bad = || ServerError::Usage("--pan is not a card number (12-19 digits with a valid check digit)".into());
    if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let sum = luhn_sum(&digits);
    if !sum.is_multiple_of(10) {
        return Err(bad());
    }
    Ok(digits)
}

/// The Luhn sum of ASCII digits: every second digit from the right doubled
/// (digit sums), the rightmost not. A number is valid if it is 0 mod 10.
fn luhn_sum(digits: &str) -> u32 {
    digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b.wrapping_sub(b'0'));
            match (i % 2 == 1, d * 2) {
                (true, d2) if d2 > 9 => d2 - 9,
                (true, d2) => d2,
                (false, _) => d,
            }
        })
        .sum()
}

/// Who a Diameter terminal is, for its `[[diameter.peers]]` entry.
#[derive(Debug, Clone)]
pub struct DiameterIdentity {
    /// The Origin-Host its CER carries.
    pub origin_host: String,
    /// Where it connects from: an address or CIDR block.
    pub address: String,
}

/// The terminal `terminal issue` is asked for.
#[derive(Debug, Clone)]
pub struct TerminalRequest<'a> {
    pub name: &'a str,
    pub merchants: &'a [String],
    /// Also a Diameter peer over TLS.
    pub diameter: Option<DiameterIdentity>,
}

/// A TLS terminal `terminal issue` made: where its files went and the
/// configuration entries that register it.
#[derive(Debug)]
pub struct IssuedTerminal {
    pub key_sha256: String,
    /// `[[radius.tls.clients]]` (and, if asked for, `[[diameter.peers]]`)
    /// to add to eapay.toml.
    pub config_entry: String,
}

/// Issues a terminal for RADIUS or Diameter over TLS: a fresh key (written
/// owner-only to `key_file`) and a certificate from the issuer CA
/// (`cert_file`), CN = the name, valid until the end of `expires` (YYYY-MM;
/// default two years). Nothing is registered: the printed entries go into
/// eapay.toml, where the terminal's merchants are named as for a UDP client.
pub fn issue_terminal(
    config: &Config,
    terminal: &TerminalRequest<'_>,
    expires: Option<&str>,
    cert_file: &Path,
    key_file: &Path,
) -> Result<IssuedTerminal, ServerError> {
    let TerminalRequest { name, merchants, diameter } = terminal;
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServerError::Usage("--name must be 1 to 64 printable characters without spaces".into()));
    }
    for m in merchants.iter() {
        if !aaa_proto::payment::is_valid_id(m) {
            return Err(ServerError::Usage(format!("--merchant {m:?} is not a merchant id")));
        }
    }
    if let Some(d) = diameter {
        let host = &d.origin_host;
        if host.is_empty()
            || host.len() > 255
            || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(ServerError::Usage(format!(
                "--origin-host {:?} is not a Diameter identity (FQDN)",
                d.origin_host
            )));
        }
        if d.address.parse::<ipnet::IpNet>().is_err() && d.address.parse::<std::net::IpAddr>().is_err() {
            return Err(ServerError::Usage(format!("--address {:?} is not an address or CIDR block", d.address)));
        }
    }
    let not_after = match expires {
        Some(text) => end_of_month(text)?,
        None => unix_now().saturating_add(2 * 365 * 86_400),
    };
    let data_dir = &config.server.data_dir;
    let kek = Kek::load(data_dir)?;
    crate::pki::ensure(data_dir, &kek, &config.server.realm)?;
    let ca = crate::pki::load_ca(data_dir, &kek)?;
    let credential = crate::pki::issue_terminal_credential(&ca, name, not_after)?;
    crate::fsutil::write_private(key_file, credential.key_pem.as_bytes())?;
    crate::fsutil::write_atomic(cert_file, credential.certificate_pem.as_bytes(), 0o644)?;
    let key_sha256 = crate::pki::key_sha256(&credential.spki);
    let merchants: Vec<String> = merchants.iter().map(|m| format!("{m:?}")).collect();
    let merchants = merchants.join(", ");
    let mut config_entry =
        format!("[[radius.tls.clients]]\nname = {name:?}\nkey_sha256 = \"{key_sha256}\"\nmerchants = [{merchants}]\n");
    if let Some(d) = diameter {
        config_entry.push_str(&format!(
            "\n[[diameter.peers]]\nname = {name:?}\norigin_host = {:?}\naddress = {:?}\nkey_sha256 = \"{key_sha256}\"\n\
             merchants = [{merchants}]\n",
            d.origin_host, d.address
        ));
    }
    Ok(IssuedTerminal { key_sha256, config_entry })
}

/// `YYYY-MM` to the last second of that month, UTC.
fn end_of_month(text: &str) -> Result<u64, ServerError> {
    let bad = || ServerError::Usage(format!("--expires {text:?} is not YYYY-MM"));
    let (y, m) = text.split_once('-').ok_or_else(bad)?;
    let year: i64 = y.parse().map_err(|_| bad())?;
    let month: u32 = m.parse().map_err(|_| bad())?;
    if y.len() != 4 || m.len() != 2 || !(1..=12).contains(&month) || year < 1970 {
        return Err(bad());
    }
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let days = aaa_proto::time::days_from_civil(next_year, next_month, 1);
    u64::try_from(days * 86_400 - 1).map_err(|_| bad())
}

/// A file `card issue --eapol-test` writes.
#[derive(Clone)]
pub struct EapolFile {
    pub path: PathBuf,
    pub text: String,
    pub mode: u32,
}

impl std::fmt::Debug for EapolFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EapolFile").field("path", &self.path).field("mode", &self.mode).finish_non_exhaustive()
    }
}

/// The eapol_test (wpa_supplicant) files for a card, network block at `conf`
/// first. AKA family: one block using the USIM simulator
/// (`password="K:OPc:SQN"`, eapol_test built with CONFIG_USIM_SIMULATOR).
/// TLS/TTLS: the block plus the PEM files it names, beside it and named
/// after its stem (`<stem>.ca.pem`, and for TLS `<stem>.cert.pem` and
/// `<stem>.key.pem`), referenced by absolute path so eapol_test finds them
/// from any directory. Files with a secret (the block: K, PIN; the key) are 0600.
pub fn eapol_test_files(
    card: &CardFile,
    conf: &Path,
    confirmation: Confirmation,
) -> Result<Vec<EapolFile>, ServerError> {
    let usim_note = if card.tls.is_none() { ", for eapol_test built with CONFIG_USIM_SIMULATOR" } else { "" };
    let mut head = format!(
        "# eapay card {} ({}){usim_note}.\n# eapol_test -c THIS_FILE -a SERVER -p 1812 -s SECRET\n",
        card.card_id, card.method
    );
    if confirmation == Confirmation::Required {
        head.push_str(
            "# The card is issued `confirmation = required`: eapol_test cannot confirm a payment, so the\n\
             # server declines its payments 59 (issue with --confirmation optional for eapol_test).\n",
        );
    }
    let block = |lines: &[String]| -> String {
        let body: String = lines.iter().map(|l| format!("\t{l}\n")).collect();
        format!("{head}network={{\n\tkey_mgmt=IEEE8021X\n{body}}}\n")
    };
    let usim = |aka: &AkaCard| format!("password=\"{}:{}:{:012x}\"", aka.k, aka.opc, aka.sqn);
    let Some(tls) = &card.tls else {
        let Some(aka) = &card.aka else {
            return Err(ServerError::Internal(format!("card {}: neither AKA nor TLS credentials", card.card_id)));
        };
        // EAP-SIM's simulator takes K:OPc (GSM-Milenage), AKA's K:OPc:SQN.
        let (eap, password) = match card.method.as_str() {
            "sim" => ("SIM", format!("password=\"{}:{}\"", aka.k, aka.opc)),
            "aka-prime" => ("AKA'", usim(aka)),
            _ => ("AKA", usim(aka)),
        };
        let text = block(&[format!("eap={eap}"), format!("identity=\"{}\"", card.identity), password]);
        return Ok(vec![EapolFile { path: conf.to_path_buf(), text, mode: 0o600 }]);
    };
    let (dir, stem) = eapol_dir_and_stem(conf)?;
    let pem = |suffix: &str| dir.join(format!("{stem}.{suffix}.pem"));
    let quoted = |path: &Path| -> Result<String, ServerError> {
        let text = path.to_str().filter(|t| !t.contains(['"', '\n', '\r'])).ok_or_else(|| {
            ServerError::Usage(format!("--eapol-test: {} cannot be named in a wpa_supplicant file", path.display()))
        })?;
        Ok(format!("\"{text}\""))
    };
    let (ca_path, cert_path, key_path) = (pem("ca"), pem("cert"), pem("key"));
    // eapol_test 2.10 turns TLS 1.3 off unless told otherwise; the server offers 1.2 and 1.3.
    let phase1 = "phase1=\"tls_disable_tlsv1_3=0\"".to_string();
    let realm = &card.realm;
    let mut files = Vec::new();
    let text = match (card.method.as_str(), tls.inner.as_deref()) {
        ("tls", _) => {
            let lines = [
                "eap=TLS".to_string(),
                format!("identity=\"{}\"", card.identity),
                format!("ca_cert={}", quoted(&ca_path)?),
                format!("client_cert={}", quoted(&cert_path)?),
                format!("private_key={}", quoted(&key_path)?),
                "# eapol_test 2.10 disables TLS 1.3 unless told not to.".to_string(),
                phase1,
            ];
            files.push(EapolFile { path: cert_path.clone(), text: tls.certificate.clone(), mode: 0o644 });
            files.push(EapolFile { path: key_path.clone(), text: tls.key.clone(), mode: 0o600 });
            block(&lines)
        }
        ("ttls", inner) => {
            let mut lines = vec![
                "eap=TTLS".to_string(),
                format!("anonymous_identity=\"anonymous@{realm}\""),
                format!("ca_cert={}", quoted(&ca_path)?),
                "# eapol_test 2.10 disables TLS 1.3 unless told not to.".to_string(),
                phase1,
            ];
            match (inner, &card.aka, &tls.pin) {
                (Some("aka"), Some(aka), _) => {
                    lines.push("# Inner EAP-AKA: eapol_test built with CONFIG_USIM_SIMULATOR.".to_string());
                    lines.push("phase2=\"autheap=AKA\"".to_string());
                    lines.push(format!("identity=\"0{}@{realm}\"", card.card_id));
                    lines.push(usim(aka));
                }
                (None | Some("pap"), _, Some(pin)) => {
                    lines.push("phase2=\"auth=PAP\"".to_string());
                    lines.push(format!("identity=\"{}\"", card.card_id));
                    lines.push(format!("password=\"{pin}\""));
                }
                _ => {
                    return Err(ServerError::Internal(format!(
                        "card {}: ttls card without the credentials of its inner method",
                        card.card_id
                    )));
                }
            }
            block(&lines)
        }
        (other, _) => {
            return Err(ServerError::Internal(format!("card {}: no eapol_test block for {other}", card.card_id)));
        }
    };
    files.insert(0, EapolFile { path: conf.to_path_buf(), text, mode: 0o600 });
    files.insert(1, EapolFile { path: ca_path, text: tls.ca.clone(), mode: 0o644 });
    Ok(files)
}

/// The absolute directory of an eapol_test file and its name without the
/// last extension.
fn eapol_dir_and_stem(conf: &Path) -> Result<(PathBuf, String), ServerError> {
    let parent = conf.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = parent.canonicalize().map_err(|e| ServerError::io(parent, e))?;
    let stem = conf
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| ServerError::Usage(format!("--eapol-test {}: not a file name", conf.display())))?;
    Ok((dir, stem.to_string()))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The default configuration path: `./eapay-data/eapay.toml`.
pub fn default_config_path() -> PathBuf {
    Path::new(crate::DEFAULT_DATA_DIR).join(CONFIG_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auc::AuthenticationCentre;
    use eap_methods::Answer;

    #[test]
    fn card_numbers_need_a_valid_check_digit() {
        assert_eq!(check_pan("4111 1111 1111 1111").unwrap(), "4111111111111111");
        assert!(check_pan("4111111111111112").is_err());
        assert!(check_pan("41111").is_err());
        assert!(check_pan("4111x11111111111").is_err());
    }

    #[test]
    fn virtual_card_numbers_are_private_use_and_luhn_valid() {
        for _ in 0..200 {
            let pan = virtual_pan();
            assert_eq!(pan.len(), 16);
            assert!(pan.starts_with(VIRTUAL_BIN), "{pan}");
            assert_eq!(check_pan(&pan).unwrap(), pan);
        }
        assert_eq!(luhn_sum("79927398713") % 10, 0, "the classic Luhn example");
    }

    #[test]
    fn hostapd_knows_a_card_by_its_first_18_characters() {
        assert_eq!(hostapd_imsi("0123456789abcdef0123"), "0123456789abcdef01");
        assert_eq!(hostapd_imsi("short"), "short");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_issued_cards_export_to_hostapd() {
        let dir = tempfile::tempdir().unwrap();
        let done = init(&InitOptions {
            data_dir: dir.path().join("data"),
            realm: "issuer.test".into(),
            radius_secret: Some("s".into()),
            radius_listen: "127.0.0.1:0".parse().unwrap(),
            diameter_listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: None,
            force: false,
        })
        .await
        .unwrap();
        let config = done.config;
        let ledger = open_ledger(&config, None).await.unwrap();
        let bulk = |method, count| BulkIssueOptions {
            terms: TermsOptions {
                method,
                limit: 1000,
                currency: 978,
                confirmation: Confirmation::Optional,
                pin: None,
                expires: None,
                key_type: None,
                inner: None,
            },
            card_dir: dir.path().join("cards"),
            count,
        };
        let aka = issue_cards(&config, &ledger, &bulk(CardMethod::Aka, 20)).await.unwrap();
        let prime = issue_cards(&config, &ledger, &bulk(CardMethod::AkaPrime, 5)).await.unwrap();
        assert_eq!((aka.len(), prime.len()), (20, 5));
        assert_eq!(std::fs::read_dir(dir.path().join("cards")).unwrap().count(), 25);
        assert!(aka.iter().all(|c| c.identity == format!("0{}@issuer.test", c.card_id)));
        assert!(ledger.block_card(&aka[0].card_id, "test").await.unwrap());
        let sim = issue_cards(&config, &ledger, &bulk(CardMethod::Sim, 2)).await.unwrap();
        assert!(sim.iter().all(|c| c.identity == format!("1{}@issuer.test", c.card_id)));
        assert!(issue_cards(&config, &ledger, &bulk(CardMethod::Aka, 0)).await.is_err());
        assert_eq!(ledger.cards().await.unwrap().len(), 27);

        let out = dir.path().join("export");
        let export = |format, method| ExportOptions { format, out_dir: out.clone(), method, card_dir: None };
        let done = export_cards(&config, &ledger, &export(ExportFormat::Hostapd, None)).await.unwrap();
        assert_eq!(done.counts, vec![(CardMethod::Aka, 19), (CardMethod::AkaPrime, 5), (CardMethod::Sim, 2)]);
        let db = std::fs::read_to_string(out.join(HLR_AUC_GW_MILENAGE_FILE)).unwrap();
        let lines: Vec<&str> = db.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 26);
        assert!(!db.contains(hostapd_imsi(&aka[0].card_id)), "a blocked card was exported");
        let card = &aka[1];
        let keys = card.aka.as_ref().unwrap();
        let want = format!("{} {} {} 8000 000000000000", hostapd_imsi(&card.card_id), keys.k, keys.opc);
        assert!(lines.contains(&want.as_str()), "{want}\n{db}");
        let eap_user = std::fs::read_to_string(out.join(HOSTAPD_EAP_USER_FILE)).unwrap();
        assert!(eap_user.contains("\"0\"*\tAKA\n") && eap_user.contains("\"6\"*\tAKA'\n"), "{eap_user}");
        assert!(eap_user.contains("\"1\"*\tSIM\n"), "{eap_user}");

        let done = export_cards(&config, &ledger, &export(ExportFormat::Hostapd, Some(CardMethod::AkaPrime))).await;
        assert_eq!(done.unwrap().counts, vec![(CardMethod::AkaPrime, 5)]);
        let eap_user = std::fs::read_to_string(out.join(HOSTAPD_EAP_USER_FILE)).unwrap();
        assert!(!eap_user.contains("\tAKA\n"), "{eap_user}");
        let refused =
            export_cards(&config, &ledger, &export(ExportFormat::Freeradius, Some(CardMethod::Aka))).await.unwrap_err();
        assert!(refused.to_string().contains("FreeRADIUS 3.2 has no EAP-AKA"), "{refused}");
        let done = export_cards(&config, &ledger, &export(ExportFormat::Hostapd, Some(CardMethod::Sim))).await;
        assert_eq!(done.unwrap().counts, vec![(CardMethod::Sim, 2)]);
        ledger.close().await;
    }

    fn terms(method: CardMethod) -> TermsOptions {
        TermsOptions {
            method,
            limit: 10_000,
            currency: 840,
            confirmation: Confirmation::Required,
            pin: None,
            expires: None,
            key_type: None,
            inner: None,
        }
    }

    async fn test_server(dir: &Path) -> Config {
        let opts = InitOptions {
            data_dir: dir.join("data"),
            realm: "issuer.test".into(),
            radius_secret: Some("s".into()),
            radius_listen: "127.0.0.1:0".parse().unwrap(),
            diameter_listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: None,
            force: false,
        };
        init(&opts).await.unwrap().config
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_cards_register_their_key_and_write_what_eapol_test_needs() {
        use crate::ledger::Ledger;
        use openssl::pkey::PKey;
        use openssl::x509::X509;
        use sha2::{Digest, Sha256};

        let dir = tempfile::tempdir().unwrap();
        let config = test_server(dir.path()).await;
        let data_dir = &config.server.data_dir;
        for file in [crate::pki::CA_CERT_FILE, crate::pki::CA_KEY_FILE, crate::pki::SERVER_CHAIN_FILE] {
            assert!(data_dir.join(file).is_file(), "init wrote {file}");
        }
        let ledger = open_ledger(&config, None).await.unwrap();
        let pan = "4111 1111 1111 1111";
        let opts = IssueOptions {
            terms: terms(CardMethod::Tls),
            card_file: dir.path().join("tls.json"),
            eapol_test: Some(dir.path().join("tls.conf")),
            pan: Some(pan.into()),
        };
        let issued = issue_card(&config, &ledger, &opts).await.unwrap();
        let card = &issued.card;
        assert_eq!(issued.virtual_pan_last4, None, "a given PAN is used, not a virtual one");
        assert_eq!(card.identity, format!("{}@issuer.test", card.card_id));
        assert_eq!(CardFile::load(&opts.card_file).unwrap(), *card, "the card file round-trips");
        assert_eq!(mode(&opts.card_file), 0o600);
        let tls = card.tls.as_ref().unwrap();
        assert!(card.aka.is_none() && tls.inner.is_none() && tls.pin.is_none() && tls.session.is_none());

        // The key, its certificate from the issuer CA, the server pin.
        let key = PKey::private_key_from_pem(tls.key.as_bytes()).unwrap();
        let spki = key.public_key_to_der().unwrap();
        let cert = X509::from_pem(tls.certificate.as_bytes()).unwrap();
        assert!(cert.public_key().unwrap().public_eq(&key));
        let ca = X509::from_pem(tls.ca.as_bytes()).unwrap();
        assert!(cert.verify(&ca.public_key().unwrap()).unwrap());
        assert_eq!(tls.ca.as_bytes(), std::fs::read(data_dir.join(crate::pki::CA_CERT_FILE)).unwrap());
        let chain = std::fs::read(data_dir.join(crate::pki::SERVER_CHAIN_FILE)).unwrap();
        assert_eq!(tls.server_pin, hex::encode(crate::pki::server_pin(&chain).unwrap()));

        // The ledger row: the key and V-Card = SHA-256(SPKI || PAN-token).
        let pan_token = ledger.kek().pan_token(pan);
        assert_eq!(tls.pan_token.as_deref(), Some(hex::encode(pan_token).as_str()));
        let registered = ledger.card_key(&card.card_id).await.unwrap().unwrap();
        assert_eq!(registered.spki, spki);
        let want: [u8; 32] = Sha256::new().chain_update(&spki).chain_update(pan_token).finalize().into();
        assert_eq!(registered.v_card, Some(want));
        assert_eq!(ledger.card_by_key(&spki).await.unwrap(), Answer::CardKey { card_id: card.card_id.clone() });

        // The eapol_test block and the PEM files it names, by absolute path.
        assert_eq!(issued.eapol_files.len(), 4);
        let conf = std::fs::read_to_string(dir.path().join("tls.conf")).unwrap();
        let base = dir.path().canonicalize().unwrap();
        for (line, file) in [("ca_cert", "tls.ca.pem"), ("client_cert", "tls.cert.pem"), ("private_key", "tls.key.pem")]
        {
            let path = base.join(file);
            assert!(conf.contains(&format!("\t{line}=\"{}\"\n", path.display())), "{line}: {conf}");
            assert!(path.is_file());
        }
        for want in ["\teap=TLS\n", "\tkey_mgmt=IEEE8021X\n", "\tphase1=\"tls_disable_tlsv1_3=0\"\n"] {
            assert!(conf.contains(want), "{want}: {conf}");
        }
        assert!(conf.contains(&format!("\tidentity=\"{}@issuer.test\"\n", card.card_id)), "{conf}");
        assert!(conf.contains("declines its payments 59"), "a required card says eapol_test cannot pay: {conf}");
        assert_eq!(std::fs::read_to_string(base.join("tls.key.pem")).unwrap(), tls.key);
        assert_eq!(std::fs::read_to_string(base.join("tls.cert.pem")).unwrap(), tls.certificate);
        assert_eq!(std::fs::read_to_string(base.join("tls.ca.pem")).unwrap(), tls.ca);
        assert_eq!((mode(&base.join("tls.key.pem")), mode(&base.join("tls.conf"))), (0o600, 0o600));
        assert_eq!(mode(&base.join("tls.cert.pem")), 0o644);

        // No --pan: a virtual number; only the last 4 digits come back.
        let mut rsa = terms(CardMethod::Tls);
        rsa.key_type = Some(KeyType::Rsa2048);
        rsa.confirmation = Confirmation::Optional;
        let opts = IssueOptions { terms: rsa, card_file: dir.path().join("rsa.json"), eapol_test: None, pan: None };
        let issued = issue_card(&config, &ledger, &opts).await.unwrap();
        let last4 = issued.virtual_pan_last4.unwrap();
        assert!(last4.len() == 4 && last4.bytes().all(|b| b.is_ascii_digit()));
        let registered = ledger.card_key(&issued.card.card_id).await.unwrap().unwrap();
        assert_eq!(crate::pki::describe_key(&registered.spki), "RSA 2048");
        assert!(registered.v_card.is_some() && issued.card.tls.unwrap().pan_token.is_some());
        ledger.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ttls_cards_carry_their_inner_credentials() {
        use crate::ledger::Ledger;

        let dir = tempfile::tempdir().unwrap();
        let config = test_server(dir.path()).await;
        let ledger = open_ledger(&config, None).await.unwrap();
        let issue = |terms: TermsOptions, name: &str| IssueOptions {
            terms,
            card_file: dir.path().join(format!("{name}.json")),
            eapol_test: Some(dir.path().join(format!("{name}.conf"))),
            pan: None,
        };
        // Inner PAP needs the PIN.
        let err = issue_card(&config, &ledger, &issue(terms(CardMethod::Ttls), "nopin")).await.unwrap_err();
        assert!(matches!(err, ServerError::Usage(_)) && err.to_string().contains("--pin"), "{err}");
        assert!(!dir.path().join("nopin.json").exists());

        let mut pap = terms(CardMethod::Ttls);
        pap.pin = Some("2468".into());
        pap.confirmation = Confirmation::Optional;
        let card = issue_card(&config, &ledger, &issue(pap, "pap")).await.unwrap().card;
        let tls = card.tls.as_ref().unwrap();
        assert_eq!(card.identity, "anonymous@issuer.test");
        assert_eq!((tls.inner.as_deref(), tls.pin.as_deref()), (Some("pap"), Some("2468")));
        assert!(card.aka.is_none());
        assert_eq!(ledger.check_pin(&card.card_id, "2468", 1).await.unwrap(), Answer::PinAccepted);
        let conf = std::fs::read_to_string(dir.path().join("pap.conf")).unwrap();
        for want in [
            "\teap=TTLS\n".to_string(),
            "\tanonymous_identity=\"anonymous@issuer.test\"\n".to_string(),
            format!("\tidentity=\"{}\"\n", card.card_id),
            "\tpassword=\"2468\"\n".to_string(),
            "\tphase2=\"auth=PAP\"\n".to_string(),
            "\tphase1=\"tls_disable_tlsv1_3=0\"\n".to_string(),
        ] {
            assert!(conf.contains(&want), "{want}: {conf}");
        }
        assert!(!conf.contains("declines its payments 59"), "an optional card can pay with eapol_test");
        assert!(!conf.contains("client_cert") && dir.path().join("pap.ca.pem").is_file());

        let mut aka = terms(CardMethod::Ttls);
        aka.inner = Some(TtlsInner::Aka);
        let card = issue_card(&config, &ledger, &issue(aka, "aka")).await.unwrap().card;
        let keys = card.aka.as_ref().unwrap();
        assert_eq!(card.tls.as_ref().unwrap().inner.as_deref(), Some("aka"));
        // The inner EAP-AKA finds the card's K/OPc under 0<card_id>@realm.
        assert!(matches!(ledger.aka_vector(&card.card_id, CardMethod::Aka).await.unwrap(), Answer::AkaVector(_)));
        assert_eq!(ledger.aka_vector(&card.card_id, CardMethod::AkaPrime).await.unwrap(), Answer::UnknownCard);
        assert_eq!(ledger.card_profile(&card.card_id).await.unwrap().unwrap().method, CardMethod::Ttls);
        let conf = std::fs::read_to_string(dir.path().join("aka.conf")).unwrap();
        for want in [
            "\tphase2=\"autheap=AKA\"\n".to_string(),
            format!("\tidentity=\"0{}@issuer.test\"\n", card.card_id),
            format!("\tpassword=\"{}:{}:000000000000\"\n", keys.k, keys.opc),
        ] {
            assert!(conf.contains(&want), "{want}: {conf}");
        }

        // Options that do not fit the method.
        let mut bad = terms(CardMethod::Aka);
        bad.key_type = Some(KeyType::P256);
        assert!(issue_card(&config, &ledger, &issue(bad, "bad1")).await.is_err());
        let mut bad = terms(CardMethod::Tls);
        bad.inner = Some(TtlsInner::Pap);
        assert!(issue_card(&config, &ledger, &issue(bad, "bad2")).await.is_err());
        let mut bad = terms(CardMethod::Sim);
        bad.key_type = Some(KeyType::P256);
        assert!(issue_card(&config, &ledger, &issue(bad, "bad3")).await.is_err());
        assert_eq!(ledger.cards().await.unwrap().len(), 2);
        ledger.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_tls_cards_get_a_key_each() {
        use crate::ledger::Ledger;

        let dir = tempfile::tempdir().unwrap();
        let config = test_server(dir.path()).await;
        let ledger = open_ledger(&config, None).await.unwrap();
        let mut ttls = terms(CardMethod::Ttls);
        ttls.pin = Some("1234".into());
        for (terms, count) in [(terms(CardMethod::Tls), 7), (ttls, 3)] {
            let opts = BulkIssueOptions { terms, card_dir: dir.path().join("cards"), count };
            let cards = issue_cards(&config, &ledger, &opts).await.unwrap();
            assert_eq!(cards.len(), count as usize);
            let mut keys = std::collections::HashSet::new();
            for card in &cards {
                let registered = ledger.card_key(&card.card_id).await.unwrap().unwrap();
                assert!(keys.insert(registered.spki.clone()), "one key per card");
                let answer = ledger.card_by_key(&registered.spki).await.unwrap();
                assert_eq!(answer, Answer::CardKey { card_id: card.card_id.clone() });
                let path = dir.path().join("cards").join(format!("{}.json", card.card_id));
                assert_eq!(CardFile::load(&path).unwrap(), *card);
            }
        }
        assert_eq!(ledger.cards().await.unwrap().len(), 10);
        ledger.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_and_ttls_cards_export_to_freeradius() {
        let dir = tempfile::tempdir().unwrap();
        let config = test_server(dir.path()).await;
        let ledger = open_ledger(&config, None).await.unwrap();
        let cards = dir.path().join("cards");
        let mut pap = terms(CardMethod::Ttls);
        pap.pin = Some("2468".into());
        let mut aka = terms(CardMethod::Ttls);
        aka.inner = Some(TtlsInner::Aka);
        let mut issued = Vec::new();
        for (terms, count) in [(terms(CardMethod::Tls), 2), (pap, 4), (aka, 1)] {
            let opts = BulkIssueOptions { terms, card_dir: cards.clone(), count };
            issued.push(issue_cards(&config, &ledger, &opts).await.unwrap());
        }
        let (tls, ttls) = (&issued[0], &issued[1]);
        // ttls[0] blocked, ttls[1] without its card file, ttls[2] with a PIN
        // the users file cannot hold, ttls[3] exported.
        assert!(ledger.block_card(&ttls[0].card_id, "test").await.unwrap());
        std::fs::remove_file(cards.join(format!("{}.json", ttls[1].card_id))).unwrap();
        let mut odd = ttls[2].clone();
        odd.tls.as_mut().unwrap().pin = Some("12%{User-Name}".into());
        let odd_path = cards.join(format!("{}.json", odd.card_id));
        std::fs::write(&odd_path, odd.to_json()).unwrap();
        assert_eq!(CardFile::load(&odd_path).unwrap().tls.unwrap().pin.as_deref(), Some("12%{User-Name}"));

        let out = dir.path().join("export");
        let opts = ExportOptions {
            format: ExportFormat::Freeradius,
            out_dir: out.clone(),
            method: None,
            card_dir: Some(cards.clone()),
        };
        let done = export_cards(&config, &ledger, &opts).await.unwrap();
        assert_eq!(done.counts, vec![(CardMethod::Tls, 2), (CardMethod::Ttls, 1), (CardMethod::Sim, 0)]);
        for (card, why) in
            [(&ttls[1], "give --card-dir"), (&ttls[2], "no usable PIN"), (&issued[2][0], "inner EAP-AKA")]
        {
            assert!(
                done.skipped.iter().any(|s| s.contains(&card.card_id) && s.contains(why)),
                "{why}: {:?}",
                done.skipped
            );
        }
        assert!(!done.skipped.iter().any(|s| s.contains(&ttls[0].card_id)), "a blocked card is not even listed");
        for (name, want) in [("ca.pem", 0o644), ("server.pem", 0o644), ("server-key.pem", 0o600), ("users", 0o600)] {
            assert_eq!(mode(&out.join(name)), want, "{name}");
        }
        let users = std::fs::read_to_string(out.join(FREERADIUS_USERS_FILE)).unwrap();
        let entries: Vec<&str> = users.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(entries, [format!("\"{}\"\tCleartext-Password := \"2468\"", ttls[3].card_id)], "{users}");
        assert!(tls.iter().all(|c| !users.contains(&c.card_id)), "TLS cards need no entry:\n{users}");
        // The server certificate chains to the CA FreeRADIUS trusts for the
        // card certificates, and the key is the one of that certificate.
        let ca = std::fs::read(out.join("ca.pem")).unwrap();
        assert_eq!(ca, std::fs::read(config.server.data_dir.join(crate::pki::CA_CERT_FILE)).unwrap());
        let chain = std::fs::read(out.join("server.pem")).unwrap();
        assert_eq!(
            chain,
            crate::pki::server_identity(&config.server.data_dir, ledger.kek(), &config.server.realm).unwrap().chain_pem
        );
        ledger.close().await;
    }

    #[test]
    fn expiry_is_the_last_second_of_the_month() {
        // 2030-12-31T23:59:59Z and 2024-02-29T23:59:59Z (leap year).
        assert_eq!(end_of_month("2030-12").unwrap(), 1_924_991_999);
        assert_eq!(end_of_month("2024-02").unwrap(), 1_709_251_199);
        for bad in ["2030-13", "2030-1", "30-01", "2030/01", "", "1969-12"] {
            assert!(end_of_month(bad).is_err(), "{bad}");
        }
    }
}
