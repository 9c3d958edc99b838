//! Plots as PNG and SVG: accuracy versus mean cost tokens (one point per run, with
//! 95% CI bars and the Pareto front) and the output-token histogram split by
//! correct/wrong.
//!
//! Text in bitmaps is rendered with plotters' `ab_glyph` backend from DejaVu Sans
//! embedded through the `dejavu` crate (DejaVu fonts licence, a permissive
//! Bitstream Vera derivative), so PNGs are legible on machines with no system fonts.
//! SVGs reference the `sans-serif` family and are rendered by the viewer. PNGs are
//! drawn into an RGB buffer and encoded with the `png` crate, which keeps the heavy
//! `image` crate out of the build.

use crate::stats;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Once;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 640;
const CORRECT: RGBColor = RGBColor(46, 160, 67);
const WRONG: RGBColor = RGBColor(214, 39, 40);
const POINT: RGBColor = RGBColor(31, 119, 180);
const FRONT: RGBColor = RGBColor(255, 127, 14);

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw {path}: {reason}")]
    Draw { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode PNG {path}: {reason}")]
    Png { path: PathBuf, reason: String },
}

/// One run on the accuracy-versus-tokens plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPoint {
    pub label: String,
    /// In [0, 1].
    pub accuracy: f64,
    pub ci95: [f64; 2],
    pub tokens_mean: f64,
}

fn ensure_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        // The embedded fonts are valid TrueType; a failure would only lose text.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Writes `<stem>.png` and `<stem>.svg` of the accuracy-versus-tokens plane, marking
/// the Pareto front (accuracy up, tokens down). Returns the written paths.
pub fn accuracy_vs_tokens(points: &[RunPoint], stem: &Path) -> Result<Vec<PathBuf>, PlotError> {
    // A point that is not finite cannot be placed; it is left out rather than
    // breaking the axes.
    let points: Vec<RunPoint> = points
        .iter()
        .filter(|p| {
            p.accuracy.is_finite()
                && p.tokens_mean.is_finite()
                && p.ci95.iter().all(|v| v.is_finite())
        })
        .cloned()
        .collect();
    let points = points.as_slice();
    let front = stats::pareto_front(
        &points
            .iter()
            .map(|p| (p.accuracy, p.tokens_mean))
            .collect::<Vec<_>>(),
    );
    render_both(
        stem,
        |root| draw_scatter(root, points, &front),
        |root| draw_scatter(root, points, &front),
    )
}

/// Writes `<stem>.png` and `<stem>.svg` of the output-token histogram, with correct
/// and wrong records side by side in each bin.
pub fn token_histogram(
    samples: &[(f64, bool)],
    title: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let histogram = Histogram::new(samples, 20);
    render_both(
        stem,
        |root| draw_histogram(root, &histogram, title),
        |root| draw_histogram(root, &histogram, title),
    )
}

fn render_both(
    stem: &Path,
    draw_png: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
    draw_svg: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>,
) -> Result<Vec<PathBuf>, PlotError> {
    ensure_fonts();
    let png_path = stem.with_extension("png");
    let svg_path = stem.with_extension("svg");
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        draw_png(&root)
            .and_then(|()| root.present().map_err(|e| e.to_string()))
            .map_err(|reason| PlotError::Draw {
                path: png_path.clone(),
                reason,
            })?;
    }
    write_png(&png_path, &buffer)?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw_svg(&root)
            .and_then(|()| root.present().map_err(|e| e.to_string()))
            .map_err(|reason| PlotError::Draw {
                path: svg_path.clone(),
                reason,
            })?;
    }
    std::fs::write(&svg_path, svg).map_err(|source| PlotError::Io {
        path: svg_path.clone(),
        source,
    })?;
    Ok(vec![png_path, svg_path])
}

fn write_png(path: &Path, rgb: &[u8]) -> Result<(), PlotError> {
    let png_error = |reason: String| PlotError::Png {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::create(path).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| png_error(e.to_string()))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| png_error(e.to_string()))?;
    writer.finish().map_err(|e| png_error(e.to_string()))
}

fn text_error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Counts per bin of correct and wrong samples.
struct Histogram {
    bin_width: f64,
    correct: Vec<usize>,
    wrong: Vec<usize>,
}

impl Histogram {
    fn new(samples: &[(f64, bool)], bins: usize) -> Histogram {
        let max = samples
            .iter()
            .map(|s| s.0)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let bin_width = (max / bins as f64).ceil().max(1.0);
        let mut correct = vec![0; bins];
        let mut wrong = vec![0; bins];
        for &(tokens, is_correct) in samples {
            if !tokens.is_finite() || tokens < 0.0 {
                continue;
            }
            let bin = ((tokens / bin_width) as usize).min(bins - 1);
            let counts = if is_correct { &mut correct } else { &mut wrong };
            if let Some(slot) = counts.get_mut(bin) {
                *slot += 1;
            }
        }
        Histogram {
            bin_width,
            correct,
            wrong,
        }
    }

    fn x_max(&self) -> f64 {
        self.bin_width * self.correct.len() as f64
    }

    fn y_max(&self) -> usize {
        self.correct
            .iter()
            .chain(&self.wrong)
            .copied()
            .max()
            .unwrap_or(0)
            .max(1)
    }
}

fn draw_histogram<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    histogram: &Histogram,
    title: &str,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(text_error)?;
    let y_max = histogram.y_max() as f64 * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Output tokens: {title}"),
            ("sans-serif", 26).into_font(),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..histogram.x_max(), 0f64..y_max)
        .map_err(text_error)?;
    chart
        .configure_mesh()
        .x_desc("output tokens")
        .y_desc("records")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(text_error)?;
    let width = histogram.bin_width;
    for (counts, color, label, offset) in [
        (&histogram.correct, CORRECT, "correct", 0.0),
        (&histogram.wrong, WRONG, "wrong", 0.5),
    ] {
        chart
            .draw_series(counts.iter().enumerate().map(|(bin, &count)| {
                let x0 = bin as f64 * width + offset * width;
                Rectangle::new(
                    [(x0 + 0.05 * width, 0.0), (x0 + 0.5 * width, count as f64)],
                    color.filled(),
                )
            }))
            .map_err(text_error)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(text_error)
}

fn draw_scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[RunPoint],
    front: &[usize],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(text_error)?;
    let x_max = points
        .iter()
        .map(|p| p.tokens_mean)
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max)
        * 1.25;
    let y_lo = points
        .iter()
        .map(|p| p.ci95[0])
        .fold(1.0, f64::min)
        .mul_add(100.0, -5.0)
        .clamp(0.0, 95.0);
    let y_hi = points
        .iter()
        .map(|p| p.ci95[1])
        .fold(0.0, f64::max)
        .mul_add(100.0, 5.0)
        .clamp(y_lo + 5.0, 100.0);
    let mut chart = ChartBuilder::on(root)
        .caption("Accuracy vs cost tokens", ("sans-serif", 26).into_font())
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, y_lo..y_hi)
        .map_err(text_error)?;
    chart
        .configure_mesh()
        .x_desc("mean cost tokens per answer (output + probe + injected)")
        .y_desc("accuracy (%) with 95% CI")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}%"))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(text_error)?;
    let front_points: Vec<(f64, f64)> = front
        .iter()
        .filter_map(|&i| points.get(i))
        .map(|p| (p.tokens_mean, 100.0 * p.accuracy))
        .collect();
    if front_points.len() > 1 {
        chart
            .draw_series(LineSeries::new(front_points, FRONT.stroke_width(3)))
            .map_err(text_error)?
            .label("Pareto front")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], FRONT.stroke_width(3)));
    }
    chart
        .draw_series(points.iter().map(|p| {
            ErrorBar::new_vertical(
                p.tokens_mean,
                100.0 * p.ci95[0],
                100.0 * p.accuracy,
                100.0 * p.ci95[1],
                POINT.stroke_width(2),
                12,
            )
        }))
        .map_err(text_error)?;
    chart
        .draw_series(points.iter().enumerate().map(|(i, p)| {
            let on_front = front.contains(&i);
            let style = if on_front {
                FRONT.filled()
            } else {
                POINT.stroke_width(2)
            };
            EmptyElement::at((p.tokens_mean, 100.0 * p.accuracy))
                + Circle::new((0, 0), 7, style)
                + Text::new(p.label.clone(), (10, -22), ("sans-serif", 17).into_font())
        }))
        .map_err(text_error)?
        .label("run (filled: on the front)")
        .legend(|(x, y)| Circle::new((x + 7, y), 6, POINT.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(text_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_size(path: &Path) -> (u32, u32) {
        let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        (info.width, info.height)
    }

    #[test]
    fn degenerate_points_do_not_break_the_scatter() {
        let dir = tempfile::tempdir().unwrap();
        let points = vec![
            RunPoint {
                label: "nan".into(),
                accuracy: f64::NAN,
                ci95: [0.0, 1.0],
                tokens_mean: 5.0,
            },
            RunPoint {
                label: "odd".into(),
                accuracy: 1.0,
                ci95: [2.0, 3.0],
                tokens_mean: 0.0,
            },
        ];
        assert_eq!(
            accuracy_vs_tokens(&points, &dir.path().join("odd"))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            accuracy_vs_tokens(&[], &dir.path().join("none"))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            token_histogram(
                &[(f64::NAN, true), (-1.0, false)],
                "x",
                &dir.path().join("h")
            )
            .unwrap()
            .len(),
            2
        );
    }

    #[test]
    fn histogram_bins_split_correct_and_wrong() {
        let samples = [(0.0, true), (99.0, true), (100.0, false), (1000.0, false)];
        let h = Histogram::new(&samples, 20);
        assert_eq!(h.bin_width, 50.0);
        assert_eq!(h.correct[0], 1);
        assert_eq!(h.correct[1], 1);
        assert_eq!(h.wrong[2], 1);
        assert_eq!(h.wrong[19], 1);
        assert_eq!(h.y_max(), 1);
        let empty = Histogram::new(&[], 20);
        assert_eq!(empty.x_max(), 20.0);
    }

    #[test]
    fn plots_are_written_as_png_and_svg_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<(f64, bool)> = (0..200)
            .map(|i| ((i * 7 % 600) as f64, i % 3 != 0))
            .collect();
        let written = token_histogram(&samples, "demo", &dir.path().join("hist")).unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(png_size(&written[0]), (WIDTH, HEIGHT));
        let svg = std::fs::read_to_string(&written[1]).unwrap();
        assert!(svg.contains("output tokens"));
        assert!(svg.contains("correct"));

        let points = vec![
            RunPoint {
                label: "baseline".into(),
                accuracy: 0.8,
                ci95: [0.72, 0.86],
                tokens_mean: 420.0,
            },
            RunPoint {
                label: "budget-256".into(),
                accuracy: 0.78,
                ci95: [0.70, 0.84],
                tokens_mean: 210.0,
            },
            RunPoint {
                label: "bad".into(),
                accuracy: 0.6,
                ci95: [0.5, 0.7],
                tokens_mean: 300.0,
            },
        ];
        let written = accuracy_vs_tokens(&points, &dir.path().join("scatter")).unwrap();
        assert_eq!(png_size(&written[0]), (WIDTH, HEIGHT));
        let svg = std::fs::read_to_string(&written[1]).unwrap();
        assert!(svg.contains("budget-256"));
        assert!(svg.contains("Pareto front"));
        // The PNG has drawn text: many pixels are neither white nor a series colour.
        let decoder = png::Decoder::new(std::fs::File::open(&written[0]).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        reader.next_frame(&mut buf).unwrap();
        let dark = buf
            .chunks(3)
            .filter(|px| px.iter().all(|&c| c < 80))
            .count();
        assert!(dark > 2000, "only {dark} dark pixels: text missing?");
    }
}
