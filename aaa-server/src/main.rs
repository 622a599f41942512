//! `eapay-server`: the payment server and its administration commands.
//!
//! Every error ends as one line on stderr and exit status 2; a bad argument
//! too (clap's multi-line usage text is reduced to its first line).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aaa_server::admin::{self, InitOptions, IssueOptions};
use aaa_server::cards::{CardMethod, Confirmation};
use aaa_server::config::Config;
use aaa_server::server::Server;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "eapay-server", version, about = "eapay payment server (RADIUS/EAP)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server with a configuration file.
    Serve {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Write a starter configuration and key-encryption key.
    Init {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value = admin::DEFAULT_REALM)]
        realm: String,
        /// Shared secret of the demo terminal (random if omitted).
        #[arg(long)]
        radius_secret: Option<String>,
        #[arg(long, default_value = admin::DEFAULT_RADIUS_LISTEN)]
        radius_listen: SocketAddr,
        #[arg(long, default_value = admin::DEFAULT_DIAMETER_LISTEN)]
        diameter_listen: SocketAddr,
        /// Overwrite an existing configuration (the key-encryption key is kept).
        #[arg(long)]
        force: bool,
    },
    /// Card administration.
    Card {
        #[command(subcommand)]
        command: CardCommand,
    },
}

#[derive(Subcommand)]
enum CardCommand {
    /// Issue a card and write its card file.
    Issue {
        #[arg(long, value_enum)]
        method: CardMethod,
        #[arg(long, value_name = "FILE")]
        card_file: PathBuf,
        /// Also write an eapol_test network block for the card.
        #[arg(long, value_name = "FILE")]
        eapol_test: Option<PathBuf>,
        /// Credit limit in minor units.
        #[arg(long)]
        limit: Option<u64>,
        /// ISO 4217 numeric currency.
        #[arg(long)]
        currency: Option<u16>,
        #[arg(long, value_enum, default_value = "required")]
        confirmation: Confirmation,
        #[arg(long)]
        pin: Option<String>,
        #[arg(long)]
        pan: Option<String>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List issued cards.
    List {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("eapay-server: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eapay-server: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => demo(),
        Some(Command::Serve { config }) => serve(&Config::load(&config)?),
        Some(Command::Init { data_dir, realm, radius_secret, radius_listen, diameter_listen, force }) => {
            let done = admin::init(&InitOptions { data_dir, realm, radius_secret, radius_listen, diameter_listen, force })?;
            println!("wrote {}", done.config_path.display());
            Ok(())
        }
        Some(Command::Card { command }) => card(command),
    }
}

fn config_or_default(path: Option<PathBuf>) -> Result<Config> {
    let path = path.unwrap_or_else(admin::default_config_path);
    Ok(Config::load(&path)?)
}

fn card(command: CardCommand) -> Result<()> {
    match command {
        CardCommand::Issue { method, card_file, eapol_test, limit, currency, confirmation, pin, pan, config } => {
            let config = config_or_default(config)?;
            let store = admin::open_store(&config)?;
            let opts = IssueOptions { method, card_file: card_file.clone(), eapol_test, limit, currency, confirmation, pin, pan };
            let card = admin::issue_card(&config, &store, &opts)?;
            println!("issued {} card {} as {} -> {}", card.method, card.card_id, card.identity, card_file.display());
            Ok(())
        }
        CardCommand::List { config } => {
            let config = config_or_default(config)?;
            let store = admin::open_store(&config)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{:<22} {:<10} {:<8} {:<10}", "CARD", "METHOD", "STATUS", "CONFIRM")?;
            for c in store.list()? {
                writeln!(out, "{:<22} {:<10} {:<8} {:<10}", c.card_id, c.method.name(), format!("{:?}", c.status).to_lowercase(), format!("{:?}", c.confirmation).to_lowercase())?;
            }
            Ok(())
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EAPAY_LOG").unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

fn serve(config: &Config) -> Result<()> {
    serve_with(admin::open_store(config)?, config)
}

/// The lines scripts and tests wait for, on stdout.
fn announce(server: &Server) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening radius auth {}", server.auth_addr()?)?;
    writeln!(out, "listening radius acct {}", server.acct_addr()?)?;
    out.flush()?;
    Ok(())
}

/// `eapay-server` with no arguments: a zero-config demo in ./eapay-data.
fn demo() -> Result<()> {
    let data_dir = PathBuf::from(aaa_server::DEFAULT_DATA_DIR);
    let config_path = data_dir.join(admin::CONFIG_FILE);
    let cards_dir = data_dir.join("cards");
    if !config_path.exists() {
        admin::init(&InitOptions {
            data_dir: data_dir.clone(),
            realm: admin::DEFAULT_REALM.into(),
            radius_secret: None,
            radius_listen: admin::DEFAULT_RADIUS_LISTEN.parse()?,
            diameter_listen: admin::DEFAULT_DIAMETER_LISTEN.parse()?,
            force: false,
        })?;
    }
    let config = Config::load(&config_path)?;
    let store = admin::open_store(&config)?;
    std::fs::create_dir_all(&cards_dir).with_context(|| format!("creating {}", cards_dir.display()))?;
    for method in [CardMethod::Aka, CardMethod::AkaPrime] {
        let card_file = cards_dir.join(format!("demo-{}.json", method.name()));
        if !card_file.exists() {
            let eapol = cards_dir.join(format!("demo-{}.eapol.conf", method.name()));
            let opts = IssueOptions {
                method,
                card_file,
                eapol_test: Some(eapol),
                limit: Some(500_000),
                currency: Some(840),
                confirmation: Confirmation::Optional,
                pin: None,
                pan: None,
            };
            admin::issue_card(&config, &store, &opts)?;
        }
    }
    print_demo_help(&config, &cards_dir);
    serve_with(store, &config)
}

fn serve_with(store: aaa_server::cards::FileCardStore, config: &Config) -> Result<()> {
    init_logging();
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let server = Server::bind(config, store).await?;
        announce(&server)?;
        server.run().await?;
        Ok(())
    })
}

fn print_demo_help(config: &Config, cards_dir: &Path) {
    let secret = config.radius.clients.first().map(|c| c.secret.as_str()).unwrap_or("");
    let port = config.radius.auth_listen.port();
    println!("eapay demo payment server (realm {})", config.server.realm);
    println!("  data directory   {}", config.server.data_dir.display());
    println!("  RADIUS           auth {}  acct {}  secret {secret}", config.radius.auth_listen, config.radius.acct_listen);
    println!("  demo cards       {}/demo-aka.json, demo-aka-prime.json", cards_dir.display());
    println!("Authenticate a demo card with eapol_test (scripts/build-eapol-test.sh builds one with the USIM simulator):");
    for m in ["aka", "aka-prime"] {
        println!("  .tools/bin/eapol_test -c {}/demo-{m}.eapol.conf -a 127.0.0.1 -p {port} -s {secret}", cards_dir.display());
    }
}
