//! Turning a [`Report`] into bytes, one file per format: `report.md`, `report.html`,
//! `summary.csv`. Where the bytes go is the caller's business.
//!
//! Markdown and HTML render the same [`content::Document`], so both always say the same thing.

pub mod content;
pub mod csv;
pub mod html;
pub mod markdown;

use super::plots::Figure;
use super::Report;

/// One output format.
pub trait Exporter {
    /// The file name inside the report directory.
    fn file_name(&self) -> &'static str;
    fn export(&self, report: &Report, figures: &[Figure]) -> anyhow::Result<Vec<u8>>;
}

/// Every format a report is written in.
pub fn all() -> Vec<Box<dyn Exporter>> {
    vec![
        Box::new(markdown::Markdown),
        Box::new(html::Html),
        Box::new(csv::Csv),
    ]
}
