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

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::train::EpochMetrics;

use super::analysis::{Analysis, Metric};
use super::load::{CellState, ExperimentResults};
use super::stats::{self, Interval};

/// Roboto Regular, subset (Apache-2.0; see src/report/fonts/README.md).
const FONT: &[u8] = include_bytes!("fonts/Roboto-Regular-subset.ttf");
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

fn title_style(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// Padded range of the values, inside `[floor, ceil]`.
fn range(values: impl Iterator<Item = f64>, floor: f64, ceil: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (floor.max(0.0), ceil.min(1.0));
    }
    let pad = ((hi - lo) * 0.08).max(0.01);
    ((lo - pad).max(floor), (hi + pad).min(ceil))
}

fn max_epoch(seeds: &[impl AsRef<[EpochMetrics]>]) -> usize {
    seeds
        .iter()
        .filter_map(|s| s.as_ref().last().map(|e| e.epoch))
        .max()
        .unwrap_or(1)
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

type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn panel<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    epochs: usize,
    (lo, hi): (f64, f64),
    y_desc: &str,
) -> anyhow::Result<Chart<'a, DB>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, title_style(18.0))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.5f64..epochs as f64 + 0.5, lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels(epochs.min(12))
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round() as i64)
            } else {
                String::new()
            }
        })
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

fn band<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    points: &[(usize, f64, Option<Interval>)],
    color: RGBColor,
) -> anyhow::Result<()> {
    let with_ci: Vec<(f64, Interval)> = points
        .iter()
        .filter_map(|(e, _, ci)| ci.map(|ci| (*e as f64, ci)))
        .collect();
    if with_ci.len() < 2 {
        // A band needs two epochs to be an area; error bars show a single one.
        for (x, ci) in &with_ci {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*x, ci.lo), (*x, ci.hi)],
                    color.mix(0.5).stroke_width(3),
                )))
                .map_err(err)?;
        }
        return Ok(());
    }
    let mut polygon: Vec<(f64, f64)> = with_ci.iter().map(|(x, ci)| (*x, ci.hi)).collect();
    polygon.extend(with_ci.iter().rev().map(|(x, ci)| (*x, ci.lo)));
    chart
        .draw_series(std::iter::once(Polygon::new(
            polygon,
            color.mix(0.18).filled(),
        )))
        .map_err(err)?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    pos: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FAMILY, 15))
        .draw()
        .map_err(err)
}

/// A line through `points`, broken where a value is not finite (a diverged cell's NaN loss), so
/// that nothing is drawn for what was not measured.
fn line<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    points: Vec<(f64, f64)>,
    style: ShapeStyle,
    label: Option<&str>,
) -> anyhow::Result<()> {
    let marker = if style.stroke_width >= 2 { 3 } else { 0 };
    let mut label = label;
    for run in points
        .split(|(_, y)| !y.is_finite())
        .filter(|r| !r.is_empty())
    {
        let series = chart
            .draw_series(LineSeries::new(run.to_vec(), style).point_size(marker))
            .map_err(err)?;
        if let Some(l) = label.take() {
            series
                .label(l)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    Ok(())
}

struct CellCurves<'a> {
    title: String,
    metrics: &'a [EpochMetrics],
}

impl Draw for CellCurves<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(&self.title, title_style(20.0)).map_err(err)?;
        let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
        let m = self.metrics;
        let epochs = max_epoch(&[m]);
        let xy = |f: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
            m.iter().map(|e| (e.epoch as f64, f(e))).collect()
        };
        let acc = range(m.iter().flat_map(|e| [e.train_acc, e.val_acc]), 0.0, 1.0);
        let mut chart = panel(
            &left,
            "Training and validation accuracy",
            epochs,
            acc,
            "accuracy",
        )?;
        line(
            &mut chart,
            xy(|e| e.train_acc),
            TRAIN.stroke_width(2),
            Some("training"),
        )?;
        line(
            &mut chart,
            xy(|e| e.val_acc),
            VAL.stroke_width(2),
            Some("validation"),
        )?;
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        let loss = range(
            m.iter().flat_map(|e| [e.train_loss, e.val_loss]),
            0.0,
            f64::INFINITY,
        );
        let mut chart = panel(&right, "Training and validation loss", epochs, loss, "loss")?;
        line(
            &mut chart,
            xy(|e| e.train_loss),
            TRAIN.stroke_width(2),
            Some("training"),
        )?;
        line(
            &mut chart,
            xy(|e| e.val_loss),
            VAL.stroke_width(2),
            Some("validation"),
        )?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// A quantity per epoch, its colour and its legend label.
type Series = (fn(&EpochMetrics) -> f64, RGBColor, &'static str);

/// One panel of a variant figure: two series (training, validation) of one quantity.
struct PanelSpec {
    caption: &'static str,
    y_desc: &'static str,
    series: [Series; 2],
    /// The y range never leaves these bounds.
    limits: (f64, f64),
    legend: SeriesLabelPosition,
}

struct VariantCurves<'a> {
    name: &'a str,
    seeds: &'a [Vec<EpochMetrics>],
}

impl Draw for VariantCurves<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        root.fill(&WHITE).map_err(err)?;
        let n = self.seeds.len();
        let title = if n == 1 {
            format!("{} · one finished seed", self.name)
        } else {
            format!("{} · mean of {n} seeds · 95% t band", self.name)
        };
        let root = root.titled(&title, title_style(20.0)).map_err(err)?;
        let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
        let epochs = max_epoch(self.seeds);
        let panels = [
            (
                &left,
                PanelSpec {
                    caption: "Accuracy",
                    y_desc: "accuracy",
                    series: [
                        (|e| e.train_acc, TRAIN, "training"),
                        (|e| e.val_acc, VAL, "validation"),
                    ],
                    limits: (0.0, 1.0),
                    legend: SeriesLabelPosition::LowerRight,
                },
            ),
            (
                &right,
                PanelSpec {
                    caption: "Loss",
                    y_desc: "loss",
                    series: [
                        (|e| e.train_loss, TRAIN, "training"),
                        (|e| e.val_loss, VAL, "validation"),
                    ],
                    limits: (0.0, f64::INFINITY),
                    legend: SeriesLabelPosition::UpperRight,
                },
            ),
        ];
        for (area, spec) in panels {
            let PanelSpec {
                caption,
                y_desc,
                series,
                limits: (floor, ceil),
                legend: pos,
            } = spec;
            let bands: Vec<_> = series
                .iter()
                .map(|(f, _, _)| mean_band(self.seeds, *f))
                .collect();
            let all = self
                .seeds
                .iter()
                .flatten()
                .flat_map(|e| series.iter().map(move |(f, _, _)| f(e)))
                .chain(
                    bands
                        .iter()
                        .flatten()
                        .filter_map(|(_, _, ci)| ci.map(|c| [c.lo, c.hi]))
                        .flatten(),
                );
            let mut chart = panel(area, caption, epochs, range(all, floor, ceil), y_desc)?;
            for ((f, color, label), points) in series.iter().zip(&bands) {
                band(&mut chart, points, *color)?;
                for seed in self.seeds {
                    let pts = seed.iter().map(|e| (e.epoch as f64, f(e))).collect();
                    line(&mut chart, pts, color.mix(0.3).stroke_width(1), None)?;
                }
                let mean = points.iter().map(|(e, m, _)| (*e as f64, *m)).collect();
                line(
                    &mut chart,
                    mean,
                    color.stroke_width(2),
                    Some(&format!("{label} (mean)")),
                )?;
            }
            legend(&mut chart, pos)?;
        }
        Ok(())
    }
}

struct Overlay<'a> {
    variants: &'a [(String, Vec<Vec<EpochMetrics>>)],
}

impl Draw for Overlay<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        root.fill(&WHITE).map_err(err)?;
        let bands: Vec<_> = self
            .variants
            .iter()
            .map(|(_, seeds)| mean_band(seeds, |e| e.val_acc))
            .collect();
        let all = bands
            .iter()
            .flatten()
            .flat_map(|(_, m, ci)| [Some(*m), ci.map(|c| c.lo), ci.map(|c| c.hi)])
            .flatten();
        let epochs = self
            .variants
            .iter()
            .map(|(_, s)| max_epoch(s))
            .max()
            .unwrap_or(1);
        let mut chart = panel(
            root,
            "Validation accuracy by variant (mean over seeds, 95% t band)",
            epochs,
            range(all, 0.0, 1.0),
            "validation accuracy",
        )?;
        for (i, ((name, seeds), points)) in self.variants.iter().zip(&bands).enumerate() {
            if points.is_empty() {
                continue;
            }
            let color = PALETTE[i % PALETTE.len()];
            band(&mut chart, points, color)?;
            let mean = points.iter().map(|(e, m, _)| (*e as f64, *m)).collect();
            let label = format!("{name} (n = {})", seeds.len());
            line(&mut chart, mean, color.stroke_width(2), Some(&label))?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

struct Dots {
    name: String,
    values: Vec<f64>,
    /// Mean and 95% t-interval (a point interval for a single seed).
    summary: Option<(f64, Interval)>,
}

struct DotPlot<'a> {
    variants: &'a [Dots],
}

impl Draw for DotPlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        root.fill(&WHITE).map_err(err)?;
        let k = self.variants.len().max(1);
        let all = self.variants.iter().flat_map(|v| {
            v.values
                .iter()
                .copied()
                .chain(v.summary.iter().flat_map(|(_, ci)| [ci.lo, ci.hi]))
        });
        let (lo, hi) = range(all, 0.0, 1.0);
        let names: Vec<String> = self.variants.iter().map(|v| v.name.clone()).collect();
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Final validation accuracy per seed; mean and 95% t-interval",
                title_style(18.0),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(-0.5f64..k as f64 - 0.5, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(k + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("final validation accuracy")
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 15))
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.08))
            .disable_x_mesh()
            .draw()
            .map_err(err)?;
        for (i, v) in self.variants.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let x = i as f64;
            let n = v.values.len();
            // Spread the seeds sideways (deterministically) so equal values stay visible.
            let dots = v.values.iter().enumerate().map(|(j, y)| {
                let offset = if n > 1 {
                    -0.12 + 0.24 * j as f64 / (n - 1) as f64
                } else {
                    0.0
                };
                Circle::new((x - 0.18 + offset, *y), 5, color.mix(0.75).filled())
            });
            chart.draw_series(dots).map_err(err)?;
            if let Some((mean, ci)) = v.summary {
                let xm = x + 0.18;
                chart
                    .draw_series([
                        PathElement::new(vec![(xm, ci.lo), (xm, ci.hi)], BLACK.stroke_width(2)),
                        PathElement::new(
                            vec![(xm - 0.05, ci.lo), (xm + 0.05, ci.lo)],
                            BLACK.stroke_width(2),
                        ),
                        PathElement::new(
                            vec![(xm - 0.05, ci.hi), (xm + 0.05, ci.hi)],
                            BLACK.stroke_width(2),
                        ),
                        PathElement::new(
                            vec![(xm - 0.1, mean), (xm + 0.1, mean)],
                            color.stroke_width(4),
                        ),
                    ])
                    .map_err(err)?;
            }
        }
        Ok(())
    }
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
