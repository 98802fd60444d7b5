//! The report's figures, drawn with plotters as PNG (text rendered with an embedded font, so the
//! pictures are the same on any machine) and SVG.
//!
//! - per cell: accuracy and loss per epoch, training red and validation blue as in the notebook;
//! - per variant: the mean curve over seeds with its 95% Student-t band, the seeds' curves faint;
//! - the variants' mean validation accuracy overlaid;
//! - final validation accuracy per seed (dots) with each variant's mean and 95% t-interval.
//!
//! Only included cells (finished, with metrics) enter the means and bands; a cell plot is drawn
//! for every cell that has at least one epoch, whatever its state, and says the state.

mod chart;
mod figures;

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::train::EpochMetrics;

use super::analysis::{Analysis, Metric};
use super::load::{CellState, ExperimentResults};
use super::stats::{self, Interval};
use chart::max_epoch;
use figures::{CellCurves, DotPlot, Dots, Overlay, VariantCurves};

/// Roboto Regular, subset (Apache-2.0; see src/report/fonts/README.md).
const FONT: &[u8] = include_bytes!("../fonts/Roboto-Regular-subset.ttf");
const FAMILY: &str = "sans-serif";

const TRAIN: RGBColor = RGBColor(214, 39, 40);
const VAL: RGBColor = RGBColor(31, 119, 180);
/// Distinct colours for variants (matplotlib's tab10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One figure in both formats.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// File stem, unique within a report: `cell-fine_tuning-seed-0`.
    pub name: String,
    /// One line saying what it shows.
    pub title: String,
    pub kind: FigureKind,
    pub png: Vec<u8>,
    pub svg: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FigureKind {
    Overview,
    Variant,
    Cell,
}

fn err(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e:?}")
}

fn register_font() -> anyhow::Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = DONE
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if *ok {
        Ok(())
    } else {
        anyhow::bail!("the embedded plot font could not be read")
    }
}

/// Something that draws itself on any plotters backend.
trait Draw {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>;
}

/// Draw `d` as SVG and as PNG.
fn render(d: &impl Draw, (w, h): (u32, u32)) -> anyhow::Result<(Vec<u8>, String)> {
    register_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        d.draw(&root)?;
        root.present().map_err(err)?;
    }
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        d.draw(&root)?;
        root.present().map_err(err)?;
    }
    let img = image::RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| anyhow::anyhow!("plot buffer of the wrong size"))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok((png, svg))
}

fn figure(
    name: String,
    title: String,
    kind: FigureKind,
    d: &impl Draw,
    size: (u32, u32),
) -> anyhow::Result<Figure> {
    let (png, svg) = render(d, size)?;
    Ok(Figure {
        name,
        title,
        kind,
        png,
        svg,
    })
}

/// Every figure of a report, overview first, then per variant, then per cell.
pub fn all(results: &ExperimentResults, analysis: &Analysis) -> anyhow::Result<Vec<Figure>> {
    let mut out = Vec::new();
    let curves: Vec<(String, Vec<Vec<EpochMetrics>>)> = results
        .variants
        .iter()
        .map(|v| {
            let seeds = results
                .cells_of(v)
                .filter(|c| c.included())
                .map(|c| c.metrics.clone())
                .collect();
            (v.clone(), seeds)
        })
        .collect();
    out.push(figure(
        "overlay-val-acc".into(),
        "Validation accuracy per epoch: mean over seeds per variant, 95% t band".into(),
        FigureKind::Overview,
        &Overlay { variants: &curves },
        (960, 480),
    )?);
    let dots: Vec<Dots> = results
        .variants
        .iter()
        .map(|v| Dots {
            name: v.clone(),
            values: super::analysis::values(results, v, Metric::FinalValAcc)
                .into_values()
                .collect(),
            summary: analysis
                .variant(v)
                .and_then(|s| s.summaries.get(&Metric::FinalValAcc).copied().flatten())
                .map(|s| {
                    let point = Interval {
                        lo: s.mean,
                        hi: s.mean,
                    };
                    (s.mean, s.ci.unwrap_or(point))
                }),
        })
        .collect();
    out.push(figure(
        "final-val-acc".into(),
        "Final validation accuracy: one dot per seed, mean and 95% t-interval per variant".into(),
        FigureKind::Overview,
        &DotPlot { variants: &dots },
        (960, 420),
    )?);
    for (name, seeds) in &curves {
        if seeds.is_empty() {
            continue;
        }
        out.push(figure(
            format!("variant-{name}"),
            if seeds.len() == 1 {
                format!("{name}: its one finished seed (no band from a single seed)")
            } else {
                format!(
                    "{name}: mean over {} finished seeds with 95% t band, seeds faint",
                    seeds.len()
                )
            },
            FigureKind::Variant,
            &VariantCurves { name, seeds },
            (960, 360),
        )?);
    }
    for cell in &results.cells {
        let pending = cell.pending.as_deref().map(|p| (p, true));
        for (c, newer) in std::iter::once((cell, false)).chain(pending) {
            if c.metrics.is_empty() {
                continue;
            }
            let state = if c.state == CellState::Done {
                String::new()
            } else {
                format!(" ({})", c.why_excluded())
            };
            let (suffix, note) = if newer {
                ("-pending", ", newer unfinished run")
            } else {
                ("", "")
            };
            out.push(figure(
                format!("cell-{}-seed-{}{suffix}", c.variant, c.seed),
                format!("{} seed {}{note}{state}", c.variant, c.seed),
                FigureKind::Cell,
                &CellCurves {
                    title: format!("{} · seed {}{note}{state}", c.variant, c.seed),
                    metrics: &c.metrics,
                },
                (960, 340),
            )?);
        }
    }
    Ok(out)
}

/// Per epoch: the mean over the seeds that reached it and, where at least two did, the 95%
/// Student-t interval of that mean.
pub fn mean_band(
    seeds: &[Vec<EpochMetrics>],
    f: fn(&EpochMetrics) -> f64,
) -> Vec<(usize, f64, Option<Interval>)> {
    (1..=max_epoch(seeds))
        .filter_map(|epoch| {
            let xs: Vec<f64> = seeds
                .iter()
                .filter_map(|s| s.iter().find(|e| e.epoch == epoch).map(f))
                .collect();
            stats::summarize(&xs).map(|s| (epoch, s.mean, s.ci))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(epoch: usize, val_acc: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 0.5,
            train_acc: 0.6,
            val_loss: 0.4,
            val_acc,
            seconds: 1.0,
        }
    }

    #[test]
    fn the_band_uses_the_seeds_that_reached_each_epoch() {
        let seeds = vec![
            vec![e(1, 0.5), e(2, 0.7)],
            vec![e(1, 0.7), e(2, 0.9)],
            vec![e(1, 0.6)],
        ];
        let band = mean_band(&seeds, |m| m.val_acc);
        assert_eq!(band.len(), 2);
        let (epoch, mean, ci) = band[0];
        assert_eq!(epoch, 1);
        assert!((mean - 0.6).abs() < 1e-12);
        // n = 3, s = 0.1: half-width t_{0.975,2} * 0.1 / sqrt(3) = 4.302653 * 0.057735.
        let half = 4.302_652_729_749_464 * 0.1 / 3f64.sqrt();
        assert!((ci.unwrap().hi - (0.6 + half)).abs() < 1e-9);
        let (_, mean2, _) = band[1];
        assert!(
            (mean2 - 0.8).abs() < 1e-12,
            "epoch 2: the two seeds that reached it"
        );
    }

    #[test]
    fn a_cell_plot_is_a_png_and_an_svg_with_its_title() {
        let m = [e(1, 0.5), e(2, 0.75)];
        let (png, svg) = render(
            &CellCurves {
                title: "v · seed 0".into(),
                metrics: &m,
            },
            (640, 240),
        )
        .unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (640, 240));
        // Training red and validation blue are both drawn.
        let rgb = img.to_rgb8();
        let has = |c: RGBColor| rgb.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        assert!(has(TRAIN) && has(VAL));
        // A diverged cell's NaN loss breaks the line instead of drawing it to the axis: in the
        // loss panel, validation blue is then only the epoch-1 marker and the legend.
        let blue_in_loss_panel = |m: &[EpochMetrics]| {
            let (png, _) = render(
                &CellCurves {
                    title: "d".into(),
                    metrics: m,
                },
                (640, 240),
            )
            .unwrap();
            let img = image::load_from_memory(&png).unwrap().to_rgb8();
            img.enumerate_pixels()
                .filter(|(x, _, p)| *x > 320 && p.0 == [VAL.0, VAL.1, VAL.2])
                .count()
        };
        let finite = blue_in_loss_panel(&[
            e(1, 0.5),
            EpochMetrics {
                val_loss: 0.3,
                ..e(2, 0.5)
            },
        ]);
        let diverged = blue_in_loss_panel(&[
            e(1, 0.5),
            EpochMetrics {
                val_loss: f64::NAN,
                ..e(2, 0.5)
            },
        ]);
        assert!(
            finite > 2 * diverged,
            "line {finite} px, broken line {diverged} px"
        );
        assert!(
            svg.starts_with("<svg") && svg.contains("v · seed 0"),
            "{}",
            &svg[..200.min(svg.len())]
        );
    }
}
