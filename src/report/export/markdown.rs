//! `report.md`: the report as GitHub-flavoured markdown; figures are linked from `plots/`.

use super::content::{document, Block, Table};
use super::Exporter;
use crate::report::plots::Figure;
use crate::report::Report;

pub struct Markdown;

impl Exporter for Markdown {
    fn file_name(&self) -> &'static str {
        "report.md"
    }

    fn export(&self, report: &Report, figures: &[Figure]) -> anyhow::Result<Vec<u8>> {
        Ok(render(report, figures).into_bytes())
    }
}

pub fn render(report: &Report, figures: &[Figure]) -> String {
    let doc = document(report);
    let mut out = format!("# {}\n", doc.title);
    for block in &doc.blocks {
        out.push('\n');
        match block {
            Block::Heading(h) => out.push_str(&format!("## {h}\n")),
            Block::Paragraph(p) => out.push_str(&format!("{p}\n")),
            Block::Bullets(items) => {
                for item in items {
                    out.push_str(&format!("- {item}\n"));
                }
            }
            Block::Table(t) => out.push_str(&table(t)),
            Block::Figures(kind) => {
                let mut any = false;
                for f in figures.iter().filter(|f| f.kind == *kind) {
                    any = true;
                    out.push_str(&format!(
                        "![{}](plots/{}.png)\n*{}* ([SVG](plots/{}.svg))\n\n",
                        f.title, f.name, f.title, f.name
                    ));
                }
                if any {
                    out.pop();
                } else {
                    out.push_str("No figures: no cell has finished epochs.\n");
                }
            }
        }
    }
    out
}

/// A pipe table; `|` inside cells is escaped.
fn table(t: &Table) -> String {
    let row = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = row(&t.header);
    out.push_str(&format!("|{}\n", "---|".repeat(t.header.len())));
    for r in &t.rows {
        out.push_str(&row(r));
    }
    out
}
