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

/// Options of `eapay-server card issue`. Debug hides the PIN and PAN.
#[derive(Clone)]
pub struct IssueOptions {
    pub method: CardMethod,
    pub card_file: PathBuf,
    pub eapol_test: Option<PathBuf>,
    /// Credit limit in minor units.
    pub limit: u64,
    /// ISO 4217 numeric.
    pub currency: u16,
    pub confirmation: Confirmation,
    pub pin: Option<String>,
    pub pan: Option<String>,
    /// Last month of validity, `YYYY-MM`; four years from now if absent.
    pub expires: Option<String>,
}

impl std::fmt::Debug for IssueOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueOptions")
            .field("method", &self.method)
            .field("card_file", &self.card_file)
            .field("eapol_test", &self.eapol_test)
            .field("limit", &self.limit)
            .field("currency", &self.currency)
            .field("confirmation", &self.confirmation)
            .field("pin", &self.pin.as_ref().map(|_| "<hidden>"))
            .field("pan", &self.pan.as_ref().map(|_| "<hidden>"))
            .field("expires", &self.expires)
            .finish()
    }
}

/// Issues a card: registers it in the ledger and writes the card file. The
/// PAN, if given, is reduced to its keyed token here and forgotten.
pub async fn issue_card(config: &Config, ledger: &SqlLedger, opts: &IssueOptions) -> Result<CardFile, ServerError> {
    let prefix = match opts.method {
        CardMethod::Aka | CardMethod::AkaPrime => opts.method.identity_prefix().unwrap_or('0'),
        other => {
            return Err(ServerError::Usage(format!("method {} is not available in this build yet", other.name())));
        }
    };
    if aaa_proto::currency::by_numeric(u32::from(opts.currency)).is_none() {
        return Err(ServerError::Usage(format!("--currency {} is not an ISO 4217 numeric code", opts.currency)));
    }
    if let Some(pin) = &opts.pin {
        if !(4..=12).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ServerError::Usage("--pin must be 4 to 12 digits".into()));
        }
    }
    let pan_token = match &opts.pan {
        Some(pan) => Some(ledger.kek().pan_token(&check_pan(pan)?)),
        None => None,
    };
    let expires_at = match &opts.expires {
        Some(text) => end_of_month(text)?,
        None => crate::admin::unix_now().saturating_add(4 * 365 * 86_400 + 86_400),
    };
    if opts.card_file.exists() {
        return Err(ServerError::Usage(format!(
            "{} exists; a card file is never overwritten",
            opts.card_file.display()
        )));
    }
    let card_id = hex::encode(rand::random::<[u8; 10]>());
    let k: [u8; 16] = rand::random();
    let opc: [u8; 16] = rand::random();
    let card = CardFile {
        version: VERSION,
        card_id: card_id.clone(),
        method: opts.method.name().to_string(),
        identity: format!("{prefix}{card_id}@{}", config.server.realm),
        realm: config.server.realm.clone(),
        aka: Some(AkaCard { k: hex::encode(k), opc: hex::encode(opc), sqn: 0, seq_ms: Vec::new() }),
    };
    // Card file first: a card the issuer knows but nobody holds is harmless,
    // the reverse would be a card that cannot pay.
    crate::fsutil::write_private(&opts.card_file, card.to_json().as_bytes())?;
    if let Some(path) = &opts.eapol_test {
        crate::fsutil::write_private(path, eapol_test_block(&card).as_bytes())?;
    }
    let new = NewCard {
        card_id,
        method: opts.method,
        confirmation: opts.confirmation,
        currency: opts.currency,
        credit_limit: opts.limit,
        expires_at,
        pan_token,
        aka: Some(NewAkaCredential { k, opc, amf: DEFAULT_AMF, sqn_he: 0 }),
        pin: opts.pin.clone(),
    };
    ledger.issue_card(new, "admin").await?;
    Ok(card)
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
    let month: i64 = m.parse().map_err(|_| bad())?;
    if y.len() != 4 || m.len() != 2 || !(1..=12).contains(&month) || year < 1970 {
        return Err(bad());
    }
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let days = days_from_civil(next_year, next_month, 1);
    u64::try_from(days * 86_400 - 1).map_err(|_| bad())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    fn expiry_is_the_last_second_of_the_month() {
        // 2030-12-31T23:59:59Z and 2024-02-29T23:59:59Z (leap year).
        assert_eq!(end_of_month("2030-12").unwrap(), 1_924_991_999);
        assert_eq!(end_of_month("2024-02").unwrap(), 1_709_251_199);
        for bad in ["2030-13", "2030-1", "30-01", "2030/01", "", "1969-12"] {
            assert!(end_of_month(bad).is_err(), "{bad}");
        }
    }
}
