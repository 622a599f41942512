//! Administrative commands: `init` and `card issue` / `card list`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use e_card::card_file::{AkaCard, CardFile, VERSION};
use eap_methods::sim_aka::auc::DEFAULT_AMF;

use crate::cards::{AkaCredential, CardMethod, CardRecord, CardStatus, Confirmation, FileCardStore};
use crate::config::{Config, DiameterSection, EapSection, LedgerSection, RadiusClient, RadiusSection, ServerSection};
use crate::error::ServerError;
use crate::seal::{Kek, KEK_FILE};

/// The configuration file name inside a data directory.
pub const CONFIG_FILE: &str = "eapay.toml";
/// `init` defaults, shared by the command line and the zero-config demo.
pub const DEFAULT_REALM: &str = "issuer.example";
/// Default RADIUS authentication address (accounting is the next port).
pub const DEFAULT_RADIUS_LISTEN: &str = "127.0.0.1:1812";
/// Default Diameter address.
pub const DEFAULT_DIAMETER_LISTEN: &str = "127.0.0.1:3868";

/// Options of `eapay-server init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub data_dir: PathBuf,
    pub realm: String,
    pub radius_secret: Option<String>,
    pub radius_listen: SocketAddr,
    pub diameter_listen: SocketAddr,
    pub force: bool,
}

/// What `init` produced.
#[derive(Debug)]
pub struct Initialised {
    pub config_path: PathBuf,
    pub config: Config,
}

/// Writes a starter configuration and key-encryption key into a data dir.
pub fn init(opts: &InitOptions) -> Result<Initialised, ServerError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(|e| ServerError::io(&opts.data_dir, e))?;
    let data_dir = opts.data_dir.canonicalize().map_err(|e| ServerError::io(&opts.data_dir, e))?;
    let config_path = data_dir.join(CONFIG_FILE);
    if config_path.exists() && !opts.force {
        return Err(ServerError::Usage(format!("{} exists; use --force to overwrite", config_path.display())));
    }
    // Keep an existing KEK: replacing it would orphan every sealed card.
    if !data_dir.join(KEK_FILE).exists() {
        Kek::create(&data_dir)?;
    }
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
        server: ServerSection { realm: opts.realm.clone(), data_dir: data_dir.clone(), vendor_id: aaa_proto::dictionary::eapay::VENDOR_ID },
        radius: RadiusSection {
            auth_listen: opts.radius_listen,
            acct_listen: SocketAddr::new(opts.radius_listen.ip(), acct_port),
            duplicate_window_secs: 30,
            clients: vec![RadiusClient {
                name: "demo-terminal".into(),
                address: ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1])),
                secret,
                merchants: vec!["M-DEMO".into()],
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
    };
    let text = format!(
        "# eapay payment server configuration, written by `eapay-server init`.\n\
         # Card secrets are sealed under {KEK_FILE} (or $EAPAY_KEK), never stored here.\n\n{}",
        config.to_toml()?
    );
    // The file holds RADIUS shared secrets: owner-only.
    crate::fsutil::write_private(&config_path, text.as_bytes())?;
    Ok(Initialised { config_path, config })
}

fn random_secret() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect()
}

/// Options of `eapay-server card issue`.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    pub method: CardMethod,
    pub card_file: PathBuf,
    pub eapol_test: Option<PathBuf>,
    pub limit: Option<u64>,
    pub currency: Option<u16>,
    pub confirmation: Confirmation,
    pub pin: Option<String>,
    pub pan: Option<String>,
}

/// Issues a card: registers it in the store and writes the card file.
pub fn issue_card(config: &Config, store: &FileCardStore, opts: &IssueOptions) -> Result<CardFile, ServerError> {
    let prefix = match opts.method {
        CardMethod::Aka | CardMethod::AkaPrime => opts.method.identity_prefix().unwrap_or('0'),
        other => {
            return Err(ServerError::Usage(format!("method {} is not available in this build yet", other.name())));
        }
    };
    if opts.pin.is_some() || opts.pan.is_some() {
        return Err(ServerError::Usage(format!(
            "--pin and --pan apply to tls and ttls cards, not {}",
            opts.method.name()
        )));
    }
    if opts.card_file.exists() {
        return Err(ServerError::Usage(format!("{} exists; a card file is never overwritten", opts.card_file.display())));
    }
    let card_id = hex::encode(rand::random::<[u8; 10]>());
    let k: [u8; 16] = rand::random();
    let opc: [u8; 16] = rand::random();
    let kek = store.kek();
    let record = CardRecord {
        card_id: card_id.clone(),
        method: opts.method,
        status: CardStatus::Active,
        confirmation: opts.confirmation,
        limit: opts.limit,
        currency: opts.currency,
        issued_at: unix_now(),
        aka: Some(AkaCredential {
            sealed_k: kek.seal(&card_id, &k)?,
            sealed_opc: kek.seal(&card_id, &opc)?,
            amf: hex::encode(DEFAULT_AMF),
            sqn_he: 0,
        }),
    };
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
    store.insert(record)?;
    Ok(card)
}

/// A wpa_supplicant / eapol_test network block for an AKA-family card,
/// using the USIM simulator (`password="K:OPc:SQN"`).
pub fn eapol_test_block(card: &CardFile) -> String {
    let eap = if card.method == "aka-prime" { "AKA'" } else { "AKA" };
    let (k, opc, sqn) = card.aka.as_ref().map_or((String::new(), String::new(), 0), |a| (a.k.clone(), a.opc.clone(), a.sqn));
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

/// Opens the card store of a configuration.
pub fn open_store(config: &Config) -> Result<FileCardStore, ServerError> {
    let kek = Kek::load(&config.server.data_dir)?;
    FileCardStore::open(&config.server.data_dir, kek)
}

/// The default configuration path: `./eapay-data/eapay.toml`.
pub fn default_config_path() -> PathBuf {
    Path::new(crate::DEFAULT_DATA_DIR).join(CONFIG_FILE)
}
