//! Administrative commands: `init`, card issuance, and opening the ledger
//! and the issuer's signing key for the server and the admin CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aaa_proto::receipt::{IssuerPublicKey, IssuerSigningKey};
use e_card::card_file::{AkaCard, CardFile, VERSION};
use eap_methods::sim_aka::auc::DEFAULT_AMF;

use crate::cards::{CardMethod, Confirmation};
use crate::config::{
    Config, DiameterSection, EapSection, LedgerSection, PaymentSection, RadiusClient, RadiusSection, ServerSection,
};
use crate::error::ServerError;
use crate::ledger::{LedgerOptions, NewAkaCredential, NewCard, SqlLedger};
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

/// Options of `eapay-server init`. Debug hides the secret.
#[derive(Clone)]
pub struct InitOptions {
    pub data_dir: PathBuf,
    pub realm: String,
    pub radius_secret: Option<String>,
    pub radius_listen: SocketAddr,
    pub diameter_listen: SocketAddr,
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

/// Writes a starter configuration, the key-encryption key and the issuer
/// signing key into a data dir, and creates the ledger with the demo merchant.
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
        },
        diameter: Some(DiameterSection {
            listen: opts.diameter_listen,
            origin_host: format!("aaa.{}", opts.realm),
            origin_realm: opts.realm.clone(),
        }),
        ledger: LedgerSection { url: format!("sqlite://{}", data_dir.join("ledger.db").display()) },
        eap: EapSection::default(),
        payment: PaymentSection::default(),
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

/// Registers the merchants the configuration lets each client act for.
pub async fn register_merchants(ledger: &SqlLedger, config: &Config, actor: &str) -> Result<(), ServerError> {
    for client in &config.radius.clients {
        for merchant in &client.merchants {
            ledger.add_merchant(merchant, merchant, std::slice::from_ref(&client.name), actor).await?;
        }
    }
    Ok(())
}

fn create_signer(data_dir: &Path) -> Result<IssuerSigningKey, ServerError> {
    let kek = Kek::load(data_dir)?;
    let signer = IssuerSigningKey::generate().map_err(receipt_error)?;
    let der = signer.to_pkcs8_der().map_err(receipt_error)?;
    crate::fsutil::write_private(&data_dir.join(ISSUER_KEY_FILE), kek.seal(ISSUER_KEY_AAD, &der)?.as_bytes())?;
    let pem = signer.public_key().and_then(|p| p.to_pem()).map_err(receipt_error)?;
    crate::fsutil::write_atomic(&data_dir.join(ISSUER_PUB_FILE), &pem, 0o644)?;
    Ok(signer)
}

/// The issuer signing key of a data directory.
pub fn load_signer(data_dir: &Path) -> Result<IssuerSigningKey, ServerError> {
    let path = data_dir.join(ISSUER_KEY_FILE);
    let sealed = std::fs::read_to_string(&path).map_err(|e| ServerError::io(&path, e))?;
    let der = Kek::load(data_dir)?.open(ISSUER_KEY_AAD, sealed.trim())?;
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

/// Issues a card: registers it in the ledger and writes the card file. The
/// PAN, if given, is reduced to its keyed token here and forgotten.
pub async fn issue_card(config: &Config, ledger: &SqlLedger, opts: &IssueOptions) -> Result<CardFile, ServerError> {
    let terms = CardTerms::check(&opts.terms)?;
    let pan_token = match &opts.pan {
        Some(pan) => Some(ledger.kek().pan_token(&check_pan(pan)?)),
        None => None,
    };
    if opts.card_file.exists() {
        return Err(ServerError::Usage(format!(
            "{} exists; a card file is never overwritten",
            opts.card_file.display()
        )));
    }
    let (card, mut new) = terms.new_card(config, &new_card_id());
    new.pan_token = pan_token;
    // Card file first: a card the issuer knows but nobody holds is harmless,
    // the reverse would be a card that cannot pay.
    crate::fsutil::write_private(&opts.card_file, card.to_json().as_bytes())?;
    if let Some(path) = &opts.eapol_test {
        crate::fsutil::write_private(path, eapol_test_block(&card).as_bytes())?;
    }
    ledger.issue_card(new, "admin").await?;
    Ok(card)
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
    let mut seen = std::collections::HashSet::new();
    let mut cards = Vec::with_capacity(opts.count as usize);
    let mut news = Vec::with_capacity(opts.count as usize);
    while cards.len() < opts.count as usize {
        let id = new_card_id();
        if !seen.insert(id.clone()) {
            continue;
        }
        let (card, new) = terms.new_card(config, &id);
        cards.push(card);
        news.push(new);
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
    prefix: char,
    currency: u16,
    limit: u64,
    confirmation: Confirmation,
    pin: Option<String>,
    expires_at: u64,
}

impl CardTerms {
    fn check(opts: &TermsOptions) -> Result<Self, ServerError> {
        let TermsOptions { method, limit, currency, confirmation, .. } = opts.clone();
        let (pin, expires) = (opts.pin.as_deref(), opts.expires.as_deref());
        let prefix = match method {
            CardMethod::Aka | CardMethod::AkaPrime => method.identity_prefix().unwrap_or('0'),
            other => {
                return Err(ServerError::Usage(format!("method {} is not available in this build yet", other.name())));
            }
        };
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
        Ok(Self { method, prefix, currency, limit, confirmation, pin: pin.map(str::to_owned), expires_at })
    }

    /// A card with fresh K and OPc: the card file and the ledger row (no PAN-token).
    fn new_card(&self, config: &Config, card_id: &str) -> (CardFile, NewCard) {
        let k: [u8; 16] = rand::random();
        let opc: [u8; 16] = rand::random();
        let card = CardFile {
            version: VERSION,
            card_id: card_id.to_owned(),
            method: self.method.name().to_string(),
            identity: format!("{}{card_id}@{}", self.prefix, config.server.realm),
            realm: config.server.realm.clone(),
            aka: Some(AkaCard { k: hex::encode(k), opc: hex::encode(opc), sqn: 0, seq_ms: Vec::new() }),
        tls: None,
        };
        let new = NewCard {
            card_id: card_id.to_owned(),
            method: self.method,
            confirmation: self.confirmation,
            currency: self.currency,
            credit_limit: self.limit,
            expires_at: self.expires_at,
            pan_token: None,
            aka: Some(NewAkaCredential { k, opc, amf: DEFAULT_AMF, sqn_he: 0 }),
            pin: self.pin.clone(),
        };
        (card, new)
    }
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
        ExportFormat::Freeradius => {
            let what = opts.method.map_or("aka and aka-prime", CardMethod::name);
            return Err(ServerError::Usage(format!(
                "--format freeradius: FreeRADIUS 3.2 has no EAP-AKA/AKA' server, so {what} cards cannot be \
                 exported to it (use --format hostapd; TLS/TTLS card export to FreeRADIUS comes with those methods)"
            )));
        }
        ExportFormat::Hostapd => match opts.method {
            None => vec![CardMethod::Aka, CardMethod::AkaPrime],
            Some(m @ (CardMethod::Aka | CardMethod::AkaPrime)) => vec![m],
            Some(other) => {
                return Err(ServerError::Usage(format!(
                    "--method {}: only aka and aka-prime cards export to hostapd in this build",
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
         # Permanent identities are 0<card-id>@{realm} (AKA) and 6<card-id>@{realm} (AKA').\n\
         # One prefix line per method: hostapd scans this file linearly per look-up, and\n\
         # hlr_auc_gw refuses identities it has no keys for.\n"
    );
    for method in &methods {
        match method {
            CardMethod::Aka => eap_user.push_str("\"0\"*\tAKA\n"),
            CardMethod::AkaPrime => eap_user.push_str("\"6\"*\tAKA'\n"),
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

/// A card number: 12 to 19 digits with a valid Luhn check digit (spaces and
/// dashes as people type them are ignored).
fn check_pan(pan: &str) -> Result<String, ServerError> {
    let digits: String = pan.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let bad = || ServerError::Usage("--pan is not a card number (12-19 digits with a valid check digit)".into());
    if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    if !sum.is_multiple_of(10) {
        return Err(bad());
    }
    Ok(digits)
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

/// A wpa_supplicant / eapol_test network block for an AKA-family card,
/// using the USIM simulator (`password="K:OPc:SQN"`).
pub fn eapol_test_block(card: &CardFile) -> String {
    let eap = if card.method == "aka-prime" { "AKA'" } else { "AKA" };
    let (k, opc, sqn) =
        card.aka.as_ref().map_or((String::new(), String::new(), 0), |a| (a.k.clone(), a.opc.clone(), a.sqn));
    format!(
        "# eapay card {id} ({method}), for eapol_test built with CONFIG_USIM_SIMULATOR.\n\
         # eapol_test -c THIS_FILE -a SERVER -p 1812 -s SECRET\n\
         network={{\n\
         \tkey_mgmt=IEEE8021X\n\
         \teap={eap}\n\
         \tidentity=\"{identity}\"\n\
         \tpassword=\"{k}:{opc}:{sqn:012x}\"\n\
         }}\n",
        id = card.card_id,
        method = card.method,
        identity = card.identity,
    )
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

    #[test]
    fn card_numbers_need_a_valid_check_digit() {
        assert_eq!(check_pan("4111 1111 1111 1111").unwrap(), "4111111111111111");
        assert!(check_pan("4111111111111112").is_err());
        assert!(check_pan("41111").is_err());
        assert!(check_pan("4111x11111111111").is_err());
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
        assert!(issue_cards(&config, &ledger, &bulk(CardMethod::Tls, 2)).await.is_err());
        assert!(issue_cards(&config, &ledger, &bulk(CardMethod::Aka, 0)).await.is_err());
        assert_eq!(ledger.cards().await.unwrap().len(), 25);

        let out = dir.path().join("export");
        let export = |format, method| ExportOptions { format, out_dir: out.clone(), method };
        let done = export_cards(&config, &ledger, &export(ExportFormat::Hostapd, None)).await.unwrap();
        assert_eq!(done.counts, vec![(CardMethod::Aka, 19), (CardMethod::AkaPrime, 5)]);
        let db = std::fs::read_to_string(out.join(HLR_AUC_GW_MILENAGE_FILE)).unwrap();
        let lines: Vec<&str> = db.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 24);
        assert!(!db.contains(hostapd_imsi(&aka[0].card_id)), "a blocked card was exported");
        let card = &aka[1];
        let keys = card.aka.as_ref().unwrap();
        let want = format!("{} {} {} 8000 000000000000", hostapd_imsi(&card.card_id), keys.k, keys.opc);
        assert!(lines.contains(&want.as_str()), "{want}\n{db}");
        let eap_user = std::fs::read_to_string(out.join(HOSTAPD_EAP_USER_FILE)).unwrap();
        assert!(eap_user.contains("\"0\"*\tAKA\n") && eap_user.contains("\"6\"*\tAKA'\n"), "{eap_user}");

        let done = export_cards(&config, &ledger, &export(ExportFormat::Hostapd, Some(CardMethod::AkaPrime))).await;
        assert_eq!(done.unwrap().counts, vec![(CardMethod::AkaPrime, 5)]);
        let eap_user = std::fs::read_to_string(out.join(HOSTAPD_EAP_USER_FILE)).unwrap();
        assert!(!eap_user.contains("\tAKA\n"), "{eap_user}");
        let refused = export_cards(&config, &ledger, &export(ExportFormat::Freeradius, None)).await.unwrap_err();
        assert!(refused.to_string().contains("FreeRADIUS 3.2 has no EAP-AKA"), "{refused}");
        assert!(export_cards(&config, &ledger, &export(ExportFormat::Hostapd, Some(CardMethod::Sim))).await.is_err());
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
