//! Table 2 as printed: our verdict per cell, the paper's beside it, and the
//! attack behind every cell.

use std::fmt::Write;

use crate::attacks::{Cell, Mark, Property};

/// The paper's Table 2, row by row, columns DVCC, OVCN, 3-D Secure,
/// proposed. None: "not use virtual card number".
pub const PAPER: [(Property, [Option<bool>; 4]); 6] = [
    (Property::Confidentiality, [Some(true), Some(true), Some(true), Some(true)]),
    (Property::Integrity, [Some(true), Some(true), Some(true), Some(true)]),
    (Property::NonRepudiation, [Some(false), Some(false), Some(false), Some(true)]),
    (Property::ReuseResistance, [Some(false), Some(true), Some(false), Some(true)]),
    (Property::OneWayness, [Some(true), Some(true), None, Some(true)]),
    (Property::NoExtraInfrastructure, [Some(true), Some(false), Some(false), Some(true)]),
];

/// The paper's mark for `property` in paper column `column` (0..4); None
/// for eapay's columns, which the paper does not have.
pub fn paper_mark(property: Property, column: usize) -> Option<Mark> {
    let (_, row) = PAPER.iter().find(|(p, _)| *p == property)?;
    row.get(column).map(|m| match m {
        Some(true) => Mark::Holds,
        Some(false) => Mark::Broken,
        None => Mark::NotApplicable,
    })
}

/// One scheme's column.
pub struct Column {
    pub name: String,
    pub cells: Vec<(Property, Cell)>,
}

impl Column {
    pub fn cell(&self, property: Property) -> Option<&Cell> {
        self.cells.iter().find(|(p, _)| *p == property).map(|(_, c)| c)
    }
}

/// The table: each cell "ours (paper)", a `!` where they differ; then the
/// findings behind every cell.
pub fn render(columns: &[Column]) -> String {
    let width = columns.iter().map(|c| c.name.len()).max().unwrap_or(0).max("n/a (n/a)".len());
    let mut out = String::new();
    let _ = write!(out, "{:<48}", "Table 2, reproduced: ours (paper's)");
    for c in columns {
        let _ = write!(out, " | {:<width$}", c.name);
    }
    out.push('\n');
    let _ = writeln!(out, "{}", "-".repeat(48 + columns.len() * (width + 3)));
    for property in Property::ALL {
        let _ = write!(out, "{:<48}", property.title());
        for (i, c) in columns.iter().enumerate() {
            let ours = c.cell(property).map(|cell| cell.mark);
            let text = match (ours, paper_mark(property, i)) {
                (Some(o), Some(p)) if o == p => format!("{o} ({p})"),
                (Some(o), Some(p)) => format!("{o} ({p}) !"),
                (Some(o), None) => format!("{o}"),
                (None, _) => "-".to_owned(),
            };
            let _ = write!(out, " | {text:<width$}");
        }
        out.push('\n');
    }
    out.push_str("\nO holds, X broken, n/a not applicable; (paper's verdict); ! ours differs from the paper's.\n");
    for property in Property::ALL {
        let _ = writeln!(out, "\n{}", property.title());
        for c in columns {
            let Some(cell) = c.cell(property) else { continue };
            for f in &cell.findings {
                let _ = writeln!(out, "  {:<12} {:<3} {}: {}", c.name, f.mark.to_string(), f.attack, f.detail);
            }
        }
    }
    out
}

/// The four paper schemes, fresh.
pub fn paper_schemes() -> Result<Vec<Box<dyn crate::Scheme>>, openssl::error::ErrorStack> {
    Ok(vec![
        Box::new(crate::dvcc::Dvcc::new()),
        Box::new(crate::ovcn::Ovcn::new()),
        Box::new(crate::three_d_secure::ThreeDSecure::new()?),
        Box::new(crate::proposed::Proposed::new()?),
    ])
}

/// Every attack against every scheme, in order: the table's columns.
pub fn run(schemes: &mut [Box<dyn crate::Scheme>]) -> Vec<Column> {
    schemes
        .iter_mut()
        .map(|s| {
            let space = crate::pan::SearchSpace::for_holder(&s.holder_secrets());
            Column { name: s.name(), cells: crate::attacks::column(s.as_mut(), &space) }
        })
        .collect()
}
