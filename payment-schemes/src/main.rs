//! `payment-schemes table2`: every attack against every scheme, printed as
//! the paper's Table 2 with eapay's columns (SECURITY.md).

#![forbid(unsafe_code)]

use anyhow::{bail, Context};
use eapay_tests::Method;
use payment_schemes::eapay::{start_server, Eapay};
use payment_schemes::table::{paper_schemes, render, run};

const USAGE: &str = "usage: payment-schemes table2 [--eapay tls,ttls,aka,aka-prime,sim | --no-eapay]\n\
    \x20      payment-schemes brute-force [SECONDS]   (the paper's H(R-Card) over one IIN: rate and a real inversion)\n\
    eapay's columns run the real eapay-server from the target directory (cargo build -p aaa-server first) \
    or from EAPAY_BIN_DIR";

fn method(name: &str) -> anyhow::Result<Method> {
    Ok(match name {
        "tls" => Method::Tls,
        "ttls" => Method::Ttls,
        "aka" => Method::Aka,
        "aka-prime" => Method::AkaPrime,
        "sim" => Method::Sim,
        other => bail!("unknown eapay method {other:?}\n{USAGE}"),
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut methods = vec![Method::Tls, Method::Ttls, Method::Aka, Method::AkaPrime, Method::Sim];
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["brute-force"] => return brute_force(5.0),
        ["brute-force", secs] => return brute_force(secs.parse().context("SECONDS is a number")?),
        ["table2"] => {}
        ["table2", "--no-eapay"] => methods.clear(),
        ["table2", "--eapay", list] => methods = list.split(',').map(method).collect::<anyhow::Result<_>>()?,
        _ => bail!("{USAGE}"),
    }
    let mut schemes = paper_schemes().context("generating the models' keys")?;
    let server = (!methods.is_empty()).then(start_server);
    if let Some(server) = &server {
        for m in &methods {
            schemes.push(Box::new(Eapay::new(server.clone(), *m)));
        }
    }
    let columns = run(&mut schemes);
    print!("{}", render(&columns));
    println!(
        "\nRestricted searches know the PAN's first 12 digits (and a PIN's first 2); work over one IIN is extrapolated \
         from the measured rate ({} build).",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    Ok(())
}

/// `brute-force`: how long the paper's unkeyed H(R-Card) stands on this machine.
fn brute_force(seconds: f64) -> anyhow::Result<()> {
    use payment_schemes::pan::{brute_force_unkeyed, human, mask};
    if !(seconds > 0.0 && seconds < 3600.0) {
        bail!("SECONDS must be between 0 and 3600");
    }
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    // Ten unknown digits in release (up to 10^5 candidates), five fewer in
    // a debug build, whose SHA-256 is much slower.
    let known = if cfg!(debug_assertions) { 11 } else { 10 };
    let b = brute_force_unkeyed(std::time::Duration::from_secs_f64(seconds), known);
    println!(
        "H(R-Card) = SHA-256(16 ASCII digits), candidates behind IIN {} with their Luhn digit ({} build)",
        b.iin,
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    println!(
        "  measured: {} hashes in {:.2} s = {:.2e} hashes/s on one core",
        b.hashes,
        b.elapsed.as_secs_f64(),
        b.rate()
    );
    println!(
        "  whole IIN (10^9 account numbers): {} on one core, {} on this machine's {cores} cores",
        human(b.whole_iin(1)),
        human(b.whole_iin(cores))
    );
    println!(
        "  example: {} with its first {} digits known: {} after {} candidates in {:.3} s",
        mask(&b.pan),
        b.known,
        match &b.recovered {
            Some(p) if *p == b.pan => "recovered".to_owned(),
            Some(p) => format!("WRONG {p}"),
            None => "NOT found".to_owned(),
        },
        b.tried,
        b.inversion_time.as_secs_f64()
    );
    if b.recovered.as_deref() != Some(b.pan.as_str()) {
        bail!("the inversion failed");
    }
    Ok(())
}
