//! The figures themselves, each drawing on any plotters backend.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::stats::Interval;
use crate::train::EpochMetrics;

use super::chart::{band, legend, line, max_epoch, panel, range, title_style};
use super::{err, mean_band, Draw, FAMILY, PALETTE, TRAIN, VAL};

pub(super) struct CellCurves<'a> {
    pub(super) title: String,
    pub(super) metrics: &'a [EpochMetrics],
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
pub(super) struct PanelSpec {
    pub(super) caption: &'static str,
    pub(super) y_desc: &'static str,
    pub(super) series: [Series; 2],
    /// The y range never leaves these bounds.
    pub(super) limits: (f64, f64),
    pub(super) legend: SeriesLabelPosition,
}

pub(super) struct VariantCurves<'a> {
    pub(super) name: &'a str,
    pub(super) seeds: &'a [Vec<EpochMetrics>],
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

pub(super) struct Overlay<'a> {
    pub(super) variants: &'a [(String, Vec<Vec<EpochMetrics>>)],
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

pub(super) struct Dots {
    pub(super) name: String,
    pub(super) values: Vec<f64>,
    /// Mean and 95% t-interval (a point interval for a single seed).
    pub(super) summary: Option<(f64, Interval)>,
}

pub(super) struct DotPlot<'a> {
    pub(super) variants: &'a [Dots],
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
