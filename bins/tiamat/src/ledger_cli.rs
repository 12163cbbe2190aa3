//! `tiamat ledger verify`: proves the ledger sound or lists what is wrong.

use std::io::Write;

use payments::ledger::LedgerOffence;
use store::Db;

/// Verifies the ledger and writes a report to `out`: a summary line, then one JSON line per
/// offence. True when there is nothing to report.
pub async fn verify(db: &Db, out: &mut impl Write) -> anyhow::Result<bool> {
    let report = db
        .ledger_verify()
        .await
        .map_err(|e| anyhow::anyhow!("ledger verification could not run: {e}"))?;
    for offence in &report.offences {
        writeln!(out, "{}", serde_json::to_string(offence)?)?;
    }
    let drifted = report
        .offences
        .iter()
        .filter(|o| matches!(o, LedgerOffence::BalanceDrift { .. }))
        .count();
    writeln!(
        out,
        "{} wallets, {} transactions, {} entries: {}",
        report.wallets,
        report.transactions,
        report.entries,
        if report.offences.is_empty() {
            "every balance equals its entries and every transaction balances".to_owned()
        } else {
            format!(
                "{} problems ({drifted} wallets whose balance is not the sum of their entries)",
                report.offences.len()
            )
        }
    )?;
    Ok(report.offences.is_empty())
}
