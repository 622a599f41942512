//! `eapay-demo`: the zero-config demo server of `eapay-server` (./eapay-data,
//! created on first use) and one 12.50 USD payment through it: the demo card
//! confirms the amount inside EAP-AKA', a terminal relays it blindly over
//! RADIUS, the server approves. Then it keeps serving, as `eapay-server`
//! would, until Ctrl-C.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use aaa_server::demo::{self, Demo};
use aaa_server::server::{serving_ledger, Server};
use anyhow::{Context, Result};
use e_card::CardOutcome;
use nas_terminal::payment::{describe_decline, Answer, Request, TerminalSettings};
use nas_terminal::transport::radius::RadiusConversation;

fn main() -> ExitCode {
    if let Some(arg) = std::env::args().nth(1) {
        eprintln!("eapay-demo: takes no arguments (got {arg:?}); the server's own commands are `eapay-server --help`");
        return ExitCode::from(2);
    }
    let result = tokio::runtime::Runtime::new().context("starting the runtime").and_then(|rt| rt.block_on(run()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eapay-demo: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<()> {
    let mut demo = demo::prepare().await?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("EAPAY_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let ledger = serving_ledger(&demo.config).await?;
    let server = Server::bind(&demo.config, ledger).await?;
    demo.bound(&server)?;
    print!("{}", demo::help(&demo));
    server.announce()?;
    let auth = server.auth_addr()?;
    let running = tokio::spawn(server.run());
    match payment(&demo, auth, &demo.card(demo::DEMO_CARD)).await {
        Ok(line) => println!("demo payment: {line}"),
        Err(e) => println!("demo payment failed: {e:#}"),
    }
    running.await.context("server task")??;
    Ok(())
}

/// One 12.50 USD payment by the demo card at the demo merchant, through a
/// terminal (the blind relay) talking RADIUS to the server just started.
async fn payment(demo: &Demo, server: SocketAddr, card_file: &Path) -> Result<String> {
    let config = &demo.config;
    let client = config.radius.clients.first().context("no radius client configured")?;
    let details = demo::details();
    let mut card = e_card::Card::load(card_file)?;
    let mut radius =
        nas_terminal::client::RadiusClient::new(server, client.secret.as_bytes(), Duration::from_secs(1), 3).await?;
    let settings = TerminalSettings {
        vendor_id: config.server.vendor_id,
        nas_identifier: Some("eapay-demo".into()),
        ..TerminalSettings::default()
    };
    let (card_report, finished) = nas_terminal::simulated::run(
        &mut card,
        &mut e_card::AutoAccept,
        &mut RadiusConversation::new(&mut radius, &settings),
        &settings,
        Request::Payment(&details),
    )
    .await;
    let shown = match finished?.answer {
        Answer::Approved { approval_code, .. } => {
            let card_saw = match card_report.map(|r| r.outcome) {
                Ok(CardOutcome::Approved { approval_code: seen, .. }) if seen == approval_code => {
                    "the card confirmed the amount and received the same approval"
                }
                _ => "the card did not receive this approval",
            };
            format!("APPROVED 12.50 USD at {}, approval code {approval_code} ({card_saw})", details.merchant_id)
        }
        Answer::Declined { code, reason } => format!(
            "DECLINED {} {}",
            code.map_or_else(|| "(no code)".to_string(), describe_decline),
            reason.unwrap_or_default()
        ),
        other => format!("no payment answer: {other:?}"),
    };
    Ok(format!(
        "{shown}; see `eapay-server txn list --config {}`",
        config.server.data_dir.join(aaa_server::admin::CONFIG_FILE).display()
    ))
}
