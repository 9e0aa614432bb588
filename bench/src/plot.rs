//! The SVG plot of a run: throughput (top) and latency p50/p99 (bottom), one point per
//! second, with the end of the warm-up marked. SVG only, so no font or image library is
//! needed to draw it.

use std::path::Path;

use plotters::prelude::*;

use crate::error::BenchError;
use crate::report::Report;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 720;
/// The end of the warm-up: orange, so that it stands out from the grid.
const WARMUP_COLOUR: RGBColor = RGBColor(230, 120, 0);

/// Draws `report`'s timeline into the SVG file at `path`.
pub fn write_svg(report: &Report, path: &Path) -> Result<(), BenchError> {
    draw(report, path).map_err(|detail| BenchError::Plot {
        path: path.to_path_buf(),
        detail,
    })
}

fn draw(report: &Report, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let timeline = &report.timeline;
    let end_s = timeline
        .last()
        .map_or(1.0, |p| p.start_s + p.length_s)
        .max(1.0);
    let warmup_s = report.config.warmup_s;
    let middle = |p: &crate::driver::TimelinePoint| p.start_s + p.length_s / 2.0;

    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "cbdc bench: {} · {} · {:.0} tx/s · p99 {:.1} ms",
        report.config.shape,
        report.config.mode_description(),
        report.throughput_tps,
        report.latency.p99_us as f64 / 1000.0
    );
    let root = root
        .titled(&title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2 - 20);

    let max_tps = timeline
        .iter()
        .map(|p| p.tx_per_s)
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..end_s, 0.0..max_tps)
        .map_err(|e| err(&e))?;
    let seconds = |x: &f64| format!("{x:.0}");
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("transactions per second")
        .x_label_formatter(&seconds)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            timeline.iter().map(|p| (middle(p), p.tx_per_s)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("throughput")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    if warmup_s > 0.0 && warmup_s < end_s {
        chart
            .draw_series(LineSeries::new(
                vec![(warmup_s, 0.0), (warmup_s, max_tps)],
                WARMUP_COLOUR.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label("end of warm-up")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], WARMUP_COLOUR.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let ms = |us: u64| us as f64 / 1000.0;
    let max_ms = timeline
        .iter()
        .map(|p| ms(p.p99_us))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..end_s, 0.0..max_ms)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("latency (ms)")
        .x_label_formatter(&seconds)
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()
        .map_err(|e| err(&e))?;
    let answered = || timeline.iter().filter(|p| p.tx_per_s > 0.0);
    chart
        .draw_series(LineSeries::new(
            answered().map(|p| (middle(p), ms(p.p50_us))),
            GREEN.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            answered().map(|p| (middle(p), ms(p.p99_us))),
            RED.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    if warmup_s > 0.0 && warmup_s < end_s {
        chart
            .draw_series(LineSeries::new(
                vec![(warmup_s, 0.0), (warmup_s, max_ms)],
                WARMUP_COLOUR.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
