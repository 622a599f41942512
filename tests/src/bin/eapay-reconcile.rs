//! `eapay-reconcile --outcomes FILE [--outcomes FILE ...] --ledger FILE`:
//! holds the terminals' outcomes (`eapay-terminal bench --outcomes`) against
//! a ledger export (`eapay-server txn export`) and prints the report line
//! (`eapay_tests::reconcile`). Exit 0 when nothing is lost, double,
//! stranded, unbalanced or unaudited, 1 otherwise (the problems on stderr),
//! 2 for bad arguments or unreadable files (one line on stderr).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: eapay-reconcile --outcomes FILE [--outcomes FILE ...] --ledger FILE";

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (outcomes, ledger) = match arguments(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("eapay-reconcile: {e} ({USAGE})");
            return ExitCode::from(2);
        }
    };
    let outcomes: Vec<&std::path::Path> = outcomes.iter().map(PathBuf::as_path).collect();
    match eapay_tests::reconcile::reconcile_files(&outcomes, &ledger) {
        Ok(r) => {
            println!("{r}");
            for p in &r.problems {
                eprintln!("eapay-reconcile: {p}");
            }
            if r.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("eapay-reconcile: {e}");
            ExitCode::from(2)
        }
    }
}

fn arguments(mut args: impl Iterator<Item = String>) -> Result<(Vec<PathBuf>, PathBuf), String> {
    let (mut outcomes, mut ledger) = (Vec::new(), None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a FILE"));
        match arg.as_str() {
            "--outcomes" => outcomes.push(PathBuf::from(value()?)),
            "--ledger" if ledger.is_none() => ledger = Some(PathBuf::from(value()?)),
            "--ledger" => return Err("--ledger given twice".into()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if outcomes.is_empty() {
        return Err("give at least one --outcomes FILE".into());
    }
    let ledger = ledger.ok_or("give --ledger FILE (eapay-server txn export --out FILE)")?;
    Ok((outcomes, ledger))
}
