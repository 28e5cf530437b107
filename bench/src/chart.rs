//! The SVG chart of a run: one panel per workload, a bar per measured runner (its median), a
//! whisker from the fastest to the slowest round, and the ratio to the best peer on top.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{Outcome, Report, WorkloadResult};
use crate::BenchError;

const PANEL_WIDTH: u32 = 620;
const PANEL_HEIGHT: u32 = 340;
const TITLE_HEIGHT: u32 = 60;

/// A bar's colour: ioswap's backends in blues, the peers in their own colours, the floor grey.
fn colour(runner: &str) -> RGBColor {
    match runner {
        "tokio" => RGBColor(214, 96, 77),
        "smol" => RGBColor(244, 165, 50),
        "turmoil" => RGBColor(118, 42, 131),
        "async-task" | "raw-io-uring" | "std-pread" => RGBColor(150, 150, 150),
        "ioswap-blocking" => RGBColor(146, 197, 222),
        "ioswap-fiber" => RGBColor(33, 102, 172),
        _ => RGBColor(67, 147, 195),
    }
}

fn chart_error(error: impl std::fmt::Display) -> BenchError {
    BenchError::Chart(error.to_string())
}

/// Writes the chart of `report` to `path`.
pub fn write(report: &Report, path: &Path) -> Result<(), BenchError> {
    let columns = 2;
    let rows = report.workloads.len().div_ceil(columns).max(1);
    let size = (
        PANEL_WIDTH * columns as u32,
        TITLE_HEIGHT + PANEL_HEIGHT * rows as u32,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let (title, body) = root.split_vertically(TITLE_HEIGHT);
    let heading = format!(
        "ioswap vs tokio and smol — {} rounds{} — lower is better",
        report.rounds,
        if report.quick {
            " (quick smoke run: small sizes)"
        } else {
            ""
        }
    );
    title
        .titled(&heading, ("sans-serif", 22))
        .map_err(chart_error)?
        .draw_text(
            &format!(
                "{} · {} cores · {}",
                report.machine.cpu, report.machine.cores, report.machine.kernel
            ),
            &("sans-serif", 14).into_text_style(&title),
            (10, 4),
        )
        .map_err(chart_error)?;
    for (panel, workload) in body
        .split_evenly((rows, columns))
        .iter()
        .zip(&report.workloads)
    {
        draw_panel(panel, workload)?;
    }
    root.present().map_err(chart_error)
}

struct Bar<'a> {
    runner: &'a str,
    median: f64,
    min: f64,
    max: f64,
    ratio: Option<f64>,
}

fn draw_panel(
    panel: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    workload: &WorkloadResult,
) -> Result<(), BenchError> {
    let bars: Vec<Bar<'_>> = workload
        .rows
        .iter()
        .filter_map(|row| match &row.outcome {
            Outcome::Measured(s) => Some(Bar {
                runner: &row.runner,
                median: s.median,
                min: s.min,
                max: s.max,
                ratio: row.ratio_to_best_peer,
            }),
            _ => None,
        })
        .collect();
    let top = bars.iter().map(|b| b.max).fold(0.0, f64::max).max(1.0) * 1.2;
    let count = bars.len().max(1);
    // A segmented integer range holds both ends: `0..count - 1` is `count` segments.
    let last = count - 1;
    let mut chart = ChartBuilder::on(panel)
        .caption(
            format!("{} ({})", workload.name, workload.unit.label()),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d((0..last).into_segmented(), 0.0..top)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(count)
        .x_label_formatter(&|value| match value {
            SegmentValue::CenterOf(i) => {
                bars.get(*i).map_or(String::new(), |b| b.runner.to_string())
            }
            _ => String::new(),
        })
        .y_desc(workload.unit.label())
        .draw()
        .map_err(chart_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, bar)| {
            let mut rect = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), bar.median),
                ],
                colour(bar.runner).filled(),
            );
            rect.set_margin(0, 0, 10, 10);
            rect
        }))
        .map_err(chart_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, bar)| {
            PathElement::new(
                vec![
                    (SegmentValue::CenterOf(i), bar.min),
                    (SegmentValue::CenterOf(i), bar.max),
                ],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(chart_error)?;
    chart
        .draw_series(bars.iter().enumerate().filter_map(|(i, bar)| {
            let ratio = bar.ratio?;
            Some(Text::new(
                format!("{ratio:.2}×"),
                (SegmentValue::CenterOf(i), bar.max + top * 0.03),
                ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            ))
        }))
        .map_err(chart_error)?;
    Ok(())
}
