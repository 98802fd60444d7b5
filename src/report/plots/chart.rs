//! Shared pieces of the figures: styles, axis ranges, a panel with epochs on x, bands, lines
//! and legends.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::stats::Interval;
use crate::train::EpochMetrics;

use super::{err, FAMILY};

pub(super) fn title_style(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// Padded range of the values, inside `[floor, ceil]`.
pub(super) fn range(values: impl Iterator<Item = f64>, floor: f64, ceil: f64) -> (f64, f64) {
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

pub(super) fn max_epoch(seeds: &[impl AsRef<[EpochMetrics]>]) -> usize {
    seeds
        .iter()
        .filter_map(|s| s.as_ref().last().map(|e| e.epoch))
        .max()
        .unwrap_or(1)
}

pub(super) type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

pub(super) fn panel<'a, DB: DrawingBackend>(
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

pub(super) fn band<DB: DrawingBackend>(
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

pub(super) fn legend<'a, DB: DrawingBackend + 'a>(
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
pub(super) fn line<DB: DrawingBackend>(
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
