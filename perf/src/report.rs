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
    /// The markdown report. If it exists, only the sections of the
    /// scenarios given are replaced (from their `## `scenario`` heading to
    /// their plot) and the rest of the text is kept; a scenario without a
    /// section gets one at the end.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub(crate) out: PathBuf,
    /// Write the report anew: a title, the preface and the sections only.
    #[arg(long)]
    pub(crate) fresh: bool,
    /// Where the plots go (one SVG per scenario), relative paths are kept
    /// relative to the report in its links.
    #[arg(long, default_value = "docs/plots")]
    pub(crate) plots: PathBuf,
    /// A paragraph to put under the title (how the run was made) when the
    /// report is written anew.
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
    if !r.measures.is_empty() {
        let _ = writeln!(md, "| also measured | unit | value |");
        let _ = writeln!(md, "|---|---|---:|");
        for m in &r.measures {
            let _ = writeln!(md, "| {} | {} | {} |", m.name, m.unit, human(m.value));
        }
        md.push('\n');
    }
    if !r.goals.is_empty() {
        let _ = writeln!(md, "| goal | unit | value | limit | met |");
        let _ = writeln!(md, "|---|---|---:|---:|---|");
        for g in &r.goals {
            let note = if g.note.is_empty() {
                String::new()
            } else {
                format!(" — {}", g.note)
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | < {} | {}{note} |",
                g.name,
                g.unit,
                human(g.value),
                human(g.limit),
                if g.met { "**met**" } else { "**not met**" }
            );
        }
        md.push('\n');
    }
    if let Some(plot) = plot {
        let _ = writeln!(md, "![{} ratios]({plot})\n", r.scenario);
    }
    md
}

/// `md` with the section of `scenario` (its heading, exactly
/// ``## `scenario` ``, through its plot line, or to the next heading if it
/// has no plot) replaced by `new`, or with `new` at the end if it has none.
fn replace_section(md: &str, scenario: &str, new: &str) -> String {
    let heading = format!("## `{scenario}`");
    let plot = format!("![{scenario} ratios](");
    let lines: Vec<&str> = md.split_inclusive('\n').collect();
    let Some(start) = lines.iter().position(|l| l.trim_end() == heading) else {
        let mut out = md.to_owned();
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
        }
        out.push_str(new);
        return out;
    };
    let rest = &lines[start + 1..];
    let end = match rest
        .iter()
        .position(|l| l.starts_with("## ") || l.starts_with(&plot))
    {
        // The plot line and the blank line after it are the section's.
        Some(i) if rest[i].starts_with(&plot) => {
            let after = start + 1 + i + 1;
            if lines.get(after).is_some_and(|l| l.trim().is_empty()) {
                after + 1
            } else {
                after
            }
        }
        Some(i) => start + 1 + i,
        None => lines.len(),
    };
    // Text between the heading and the first generated line (the
    // machine, the placement or the table) was written by hand: it stays.
    let generated = |l: &&str| {
        l.starts_with("Machine: ") || l.starts_with("Placement:") || l.starts_with("| figure |")
    };
    let mut out: String = lines[..start].concat();
    match lines[start + 1..end].iter().position(generated) {
        Some(i) if i > 0 => {
            out.push_str(&lines[start..start + 1 + i].concat());
            let body = new.split_once("\n\n").map_or(new, |(_, body)| body);
            out.push_str(body);
        }
        _ => out.push_str(new),
    }
    out.push_str(&lines[end..].concat());
    out
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
    let existing = if args.fresh {
        None
    } else {
        match std::fs::read_to_string(&args.out) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", args.out.display())),
        }
    };
    let mut md = match existing {
        Some(text) => text,
        None => {
            let mut md = String::from("# Benchmarks\n\n");
            if let Some(p) = &args.preface {
                md.push_str(
                    &std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?,
                );
                md.push('\n');
            }
            md
        }
    };
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
        md = replace_section(&md, &r.scenario, &section(&r, Some(&link)));
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
    fn a_report_keeps_its_text_and_replaces_only_the_scenarios_given() {
        let md = "# Benchmarks\n\nHand-written: the goals.\n\n## `forward`\n\nold table\n\n![forward ratios](plots/forward.svg)\n\nA note under the plot.\n\n## `tls`\n\ntls table\n\n![tls ratios](plots/tls.svg)\n\n## Converge\n\nby hand\n";
        let new = "## `forward`\n\nnew table\n\n![forward ratios](plots/forward.svg)\n\n";
        let out = replace_section(md, "forward", new);
        assert_eq!(
            out,
            md.replace("old table", "new table"),
            "only the section changes"
        );
        // What was written between the heading and the generated part
        // stays.
        let noted = md.replace("## `forward`\n\n", "## `forward`\n\nRun at abc1234.\n\n");
        let noted = noted.replace("old table", "Machine: 2 CPUs.\n\nold table");
        let new_m = new.replace("new table", "Machine: 4 CPUs.\n\nnew table");
        assert_eq!(
            replace_section(&noted, "forward", &new_m),
            noted.replace(
                "Machine: 2 CPUs.\n\nold table",
                "Machine: 4 CPUs.\n\nnew table"
            )
        );
        // A section without a plot ends at the next heading.
        let bare = "## `tls`\n\ntls table\n\n## Converge\n\nby hand\n";
        assert_eq!(
            replace_section(bare, "tls", "## `tls`\n\nT\n\n"),
            "## `tls`\n\nT\n\n## Converge\n\nby hand\n"
        );
        // A scenario the report lacks goes at the end; a heading that only
        // starts like it (`tls`: something) is not its section.
        let out = replace_section("# B\n\n## `tls`: ring\n\ntext\n", "tls", new);
        assert_eq!(out, format!("# B\n\n## `tls`: ring\n\ntext\n\n{new}"));
    }

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
        assert!(!md.contains("| goal |"), "no goals, no table: {md}");
        let mut with = r.clone();
        with.measures
            .push(crate::report_schema::Measure::new("pushes", "count", 12.0));
        with.goals.push(crate::report_schema::Goal::below(
            "p99 < 100 ms",
            "us",
            150_000.0,
            100_000.0,
            "one run",
        ));
        let md = section(&with, None);
        assert!(md.contains("| pushes | count | 12.000 |"), "{md}");
        assert!(
            md.contains("| p99 < 100 ms | us | 150.0 k | < 100.0 k | **not met** — one run |"),
            "{md}"
        );
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
