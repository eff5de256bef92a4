//! `causeway-perf report`: scenario results (JSON) into one markdown report
//! with a table per scenario and an SVG plot of the ratios.
//!
//! Every figure is a ratio against a peer measured in the same run, so the
//! plot shows ratios (1.0 = as fast as the peer, drawn as a line), not
//! absolute values: a lone absolute figure on a shared, noisy machine means
//! little, and figures of different units cannot share an axis anyway.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use plotters::prelude::*;

use crate::report_schema::Report;

/// Arguments of `causeway-perf report`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Result files written by the scenarios' `--json`.
    #[arg(required = true)]
    pub(crate) results: Vec<PathBuf>,
    /// The markdown report to write.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub(crate) out: PathBuf,
    /// Where the plots go (one SVG per scenario), relative paths are kept
    /// relative to the report in its links.
    #[arg(long, default_value = "docs/plots")]
    pub(crate) plots: PathBuf,
    /// A paragraph to put under the title (how the run was made).
    #[arg(long)]
    pub(crate) preface: Option<PathBuf>,
}

/// Reads one result file.
///
/// # Errors
///
/// Unreadable or not the schema (naming the file).
pub(crate) fn load(path: &Path) -> Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a result file", path.display()))
}

fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1} k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The markdown section of one scenario, linking `plot`.
#[must_use]
pub(crate) fn section(r: &Report, plot: Option<&str>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## `{}`\n", r.scenario);
    if r.machine.cpus > 0 {
        let _ = writeln!(
            md,
            "Machine: {} CPUs, {}, Linux {}.\n",
            r.machine.cpus, r.machine.cpu_model, r.machine.kernel
        );
    }
    if !r.placement.is_empty() {
        let _ = writeln!(md, "Placement:\n");
        for (what, cpu) in &r.placement {
            let _ = writeln!(md, "- {what}: {cpu}");
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "| figure | unit | causeway | peer | peer's value | ratio |"
    );
    let _ = writeln!(md, "|---|---|---:|---|---:|---:|");
    for f in &r.figures {
        let better = if f.ratio >= 1.0 { "" } else { " (behind)" };
        let _ = writeln!(
            md,
            "| {} | {} {} | {} | {} | {} | **{:.2}x**{better} |",
            f.name,
            f.unit,
            if f.higher_is_better { "↑" } else { "↓" },
            human(f.causeway),
            f.peer,
            human(f.peer_value),
            f.ratio
        );
    }
    md.push('\n');
    if let Some(plot) = plot {
        let _ = writeln!(md, "![{} ratios]({plot})\n", r.scenario);
    }
    md
}

/// Draws the ratios of `r` as horizontal bars with a line at 1.0.
///
/// # Errors
///
/// The SVG cannot be written.
pub(crate) fn plot(r: &Report, path: &Path) -> Result<()> {
    if r.figures.is_empty() {
        bail!("{}: no figures to plot", r.scenario);
    }
    let n = r.figures.len();
    let height = 80 + 36 * n as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = r
        .figures
        .iter()
        .map(|f| f.ratio)
        .fold(1.0_f64, f64::max)
        .max(1.0)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: causeway relative to its peer (1.0 = equal)",
                r.scenario
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(330)
        .build_cartesian_2d(0.0..max, (0..n).into_segmented())?;
    let labels: Vec<String> = r
        .figures
        .iter()
        .map(|f| format!("{} (vs {})", f.name, f.peer))
        .collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ratio")
        .draw()?;
    chart.draw_series(r.figures.iter().enumerate().map(|(i, f)| {
        let color = if f.ratio >= 1.0 {
            GREEN.mix(0.7)
        } else {
            RED.mix(0.7)
        };
        Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (f.ratio.clamp(0.0, max), SegmentValue::Exact(i + 1)),
            ],
            color.filled(),
        )
    }))?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(n))],
        BLACK.stroke_width(2),
    )))?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs `report`.
///
/// # Errors
///
/// A result file that cannot be read, or an output that cannot be written.
pub(crate) fn run(args: &Args) -> Result<()> {
    let mut md = String::from("# Benchmarks\n\n");
    if let Some(p) = &args.preface {
        md.push_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        );
        md.push('\n');
    }
    std::fs::create_dir_all(&args.plots)
        .with_context(|| format!("creating {}", args.plots.display()))?;
    let base = args.out.parent().unwrap_or(Path::new("."));
    for path in &args.results {
        let r = load(path)?;
        let svg = args.plots.join(format!("{}.svg", r.scenario));
        plot(&r, &svg)?;
        let link = svg
            .strip_prefix(base)
            .unwrap_or(&svg)
            .to_string_lossy()
            .into_owned();
        md.push_str(&section(&r, Some(&link)));
        eprintln!(
            "report: {} ({} figures) → {}",
            r.scenario,
            r.figures.len(),
            svg.display()
        );
    }
    std::fs::write(&args.out, md).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("report: {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"scenario":"forward","machine":{"cpus":2,"kernel":"6.18","cpu_model":"x"},
        "placement":{"dataplane":"cpu 1"},
        "figures":[{"name":"pps, 0 rules","unit":"packets/s","causeway":3.0e6,"peer":"linux","peer_value":1.0e6,"ratio":3.0,"higher_is_better":true},
                   {"name":"p99 latency","unit":"us","causeway":20,"peer":"linux","peer_value":10,"ratio":0.5,"higher_is_better":false}]}"#;

    #[test]
    fn a_result_becomes_a_table_and_a_plot() {
        let r: Report = serde_json::from_str(SAMPLE).unwrap();
        let md = section(&r, Some("plots/forward.svg"));
        assert!(
            md.contains("| pps, 0 rules | packets/s ↑ | 3.00 M | linux | 1.00 M | **3.00x** |"),
            "{md}"
        );
        assert!(md.contains("**0.50x** (behind)"), "{md}");
        assert!(md.contains("![forward ratios](plots/forward.svg)"));
        let dir = std::env::temp_dir().join(format!("cw-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = dir.join("forward.svg");
        plot(&r, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..40.min(text.len())]);
        assert!(text.contains("pps, 0 rules"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
