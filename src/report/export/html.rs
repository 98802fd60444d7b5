//! `report.html`: one self-contained page (styles inline, figures as PNG data URIs) that reads
//! offline in any browser and can be mailed or archived as a single file.

use base64::Engine;

use super::content::{document, Block, Table};
use super::Exporter;
use crate::report::plots::{Figure, FigureKind};
use crate::report::Report;

pub struct Html;

impl Exporter for Html {
    fn file_name(&self) -> &'static str {
        "report.html"
    }

    fn export(&self, report: &Report, figures: &[Figure]) -> anyhow::Result<Vec<u8>> {
        Ok(render(report, figures).into_bytes())
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.6em;margin-bottom:.3em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}code{font-family:ui-monospace,monospace;font-size:.9em;background:#f3f3f3;padding:0 .2em;border-radius:3px}\
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85em;color:#555}\
details summary{cursor:pointer;margin:.5em 0}";

pub fn render(report: &Report, figures: &[Figure]) -> String {
    let doc = document(report);
    let mut out =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!(
        "<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&doc.title)
    ));
    out.push_str(&format!("<h1>{}</h1>\n", escape(&doc.title)));
    for block in &doc.blocks {
        match block {
            Block::Heading(h) => out.push_str(&format!("<h2>{}</h2>\n", inline(h))),
            Block::Paragraph(p) => out.push_str(&format!("<p>{}</p>\n", inline(p))),
            Block::Bullets(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    out.push_str(&format!("<li>{}</li>\n", inline(item)));
                }
                out.push_str("</ul>\n");
            }
            Block::Table(t) => out.push_str(&table(t)),
            Block::Figures(kind) => {
                let these: Vec<&Figure> = figures.iter().filter(|f| f.kind == *kind).collect();
                if these.is_empty() {
                    out.push_str("<p>No figures: no cell has finished epochs.</p>\n");
                    continue;
                }
                // Per-cell figures are many: folded away, one click to open.
                let fold = *kind == FigureKind::Cell;
                if fold {
                    out.push_str(&format!(
                        "<details>\n<summary>{} cell figures</summary>\n",
                        these.len()
                    ));
                }
                for f in these {
                    out.push_str(&format!(
                        "<figure id=\"{}\"><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>\n",
                        escape(&f.name),
                        escape(&f.title),
                        base64::engine::general_purpose::STANDARD.encode(&f.png),
                        escape(&f.title)
                    ));
                }
                if fold {
                    out.push_str("</details>\n");
                }
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn table(t: &Table) -> String {
    let mut out = String::from("<table>\n<thead><tr>");
    for h in &t.header {
        out.push_str(&format!("<th>{}</th>", inline(h)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for c in row {
            out.push_str(&format!("<td>{}</td>", inline(c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// Escape text, then turn `code` spans into <code> elements.
fn inline(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{}</code>", escape(part))
            } else {
                escape(part)
            }
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_code_spans_become_code() {
        assert_eq!(
            inline("a <b> & `runner reproduce x/<y>` end"),
            "a &lt;b&gt; &amp; <code>runner reproduce x/&lt;y&gt;</code> end"
        );
    }
}
