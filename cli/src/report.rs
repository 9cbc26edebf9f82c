//! `yizhan report`: the station's report for a time window, as Markdown, as one
//! self-contained HTML file with bar charts (inline SVG drawn with plotters), or with
//! `--json` as the `Report` value. The figures are computed by `yizhan_node::report`; this
//! module only lays them out, in the run's language (headings, labels and dates from the
//! message catalogue; Chinese dates as `2026年12月1日`), members by name.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use yizhan_node::Node;
use yizhan_node::model::{Category, Channel, Time};
use yizhan_node::report::{Report, Window};

use crate::tr;

use crate::args::{ReportArgs, ReportFormat};
use crate::output::Out;

/// The fonts the charts and the page ask for: CJK fonts first, so Chinese labels render.
pub const FONTS: &str = "Noto Sans CJK SC, Noto Sans SC, Source Han Sans SC, WenQuanYi Micro Hei, \
                         WenQuanYi Zen Hei, Microsoft YaHei, PingFang SC, Heiti SC, sans-serif";

/// Bar colours. The HTML test finds the bars in a screenshot by these exact colours.
pub const VISIT_CATEGORY_COLOUR: RGBColor = RGBColor(0x1b, 0x7f, 0x79);
/// Visits by grid.
pub const VISIT_GRID_COLOUR: RGBColor = RGBColor(0x2f, 0x6d, 0xb5);
/// Tickets opened.
pub const OPENED_COLOUR: RGBColor = RGBColor(0xe0, 0x8a, 0x1e);
/// Tickets resolved.
pub const RESOLVED_COLOUR: RGBColor = RGBColor(0x3a, 0x9a, 0x4a);
/// Tickets still open.
pub const OPEN_COLOUR: RGBColor = RGBColor(0xc8, 0x45, 0x3b);
/// Households in a grid.
pub const HOUSEHOLD_COLOUR: RGBColor = RGBColor(0x8e, 0x6c, 0xb0);
/// Households covered.
pub const COVERED_COLOUR: RGBColor = RGBColor(0x5b, 0xa8, 0xd6);
/// A volunteer's visits.
pub const VOLUNTEER_VISIT_COLOUR: RGBColor = RGBColor(0x6b, 0x8e, 0x23);
/// Tickets a volunteer resolved.
pub const VOLUNTEER_RESOLVED_COLOUR: RGBColor = RGBColor(0xb0, 0x5a, 0x8e);
/// Tickets resolved on time.
pub const ON_TIME_COLOUR: RGBColor = RGBColor(0x2e, 0x8b, 0x57);
/// Tickets by channel.
pub const CHANNEL_COLOUR: RGBColor = RGBColor(0x7a, 0x5c, 0x3e);
/// Households overdue at the end.
pub const OVERDUE_HOUSEHOLD_COLOUR: RGBColor = RGBColor(0xd9, 0x6c, 0x2b);
/// Tickets overdue at the end.
pub const OVERDUE_TICKET_COLOUR: RGBColor = RGBColor(0x99, 0x33, 0x66);

/// Runs `yizhan report`.
pub fn run(node: &Node, out: &Out, args: ReportArgs) -> anyhow::Result<()> {
    let since = args
        .since
        .map(|s| s.parse::<Time>())
        .transpose()
        .context("--since")?;
    let until = match args.until {
        Some(u) => u.parse::<Time>().context("--until")?,
        // Now, rounded up to the next second: everything made so far is before it (record
        // times are kept to the second).
        None => Time::from_millis((Time::now_millis() / 1000 + 1) * 1000),
    };
    let report = node.report(&Window { since, until }, Time::now())?;
    let names = crate::output::Names::of(node)?;
    let format = args.format.unwrap_or(ReportFormat::Md);
    let text = match format {
        ReportFormat::Md => markdown(&report, &names),
        ReportFormat::Html => html(&report, &names)?,
    };
    // Names and grids are other members' text; the HTML escapes its markup already.
    let text = crate::output::clean(&text).into_owned();
    if let Some(path) = &args.out {
        crate::output::write_atomically(path, text.as_bytes())
            .with_context(|| tr!("report-cannot-write", path = &path.display()))?;
    }
    if out.json {
        return out.emit(&report, || {});
    }
    match &args.out {
        Some(path) => println!("{}", tr!("report-written", path = &path.display())),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
    }
    if !report.whole_site {
        eprintln!("{}", tr!("report-partial"));
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------
// Words shared by both formats.

/// A category for people: its Chinese name in Chinese, its slug in English.
fn category_label(slug: &Option<String>) -> String {
    match slug.as_deref() {
        None => tr!("report-uncategorised"),
        Some(s) => match s.parse::<Category>() {
            Ok(c) if crate::i18n::zh() => c.zh().to_string(),
            Ok(c) => c.slug().to_string(),
            Err(_) => s.to_string(),
        },
    }
}

fn grid_label(grid: &Option<String>) -> String {
    grid.clone().unwrap_or_else(|| tr!("report-no-grid"))
}

fn channel_label(slug: &str) -> String {
    match slug.parse::<Channel>() {
        Ok(c) if crate::i18n::zh() => c.zh().to_string(),
        Ok(c) => c.as_str().to_string(),
        Err(_) => slug.to_string(),
    }
}

/// Channels in the station's order, then any other slug the report holds.
fn channels(r: &Report) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Channel::ALL
        .iter()
        .map(|c| {
            let n = r.tickets_by_channel.get(c.as_str()).copied().unwrap_or(0);
            (c.as_str().to_string(), n)
        })
        .collect();
    for (slug, n) in &r.tickets_by_channel {
        if slug.parse::<Channel>().is_err() {
            out.push((slug.clone(), *n));
        }
    }
    out
}

/// How many overdue ids the Markdown and HTML list; `--json` has them all.
const LISTED: usize = 50;

/// "3 / 5 (60%)".
fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        format!("{part} / 0")
    } else {
        format!(
            "{part} / {whole} ({:.0}%)",
            part as f64 * 100.0 / whole as f64
        )
    }
}

/// A member for people: its name (with a short id where two share it), or its short id
/// marked as not in the roster.
fn member_label(names: &crate::output::Names, device: &str, known: bool) -> String {
    if known {
        names.name(device)
    } else {
        tr!("report-not-in-roster", id = crate::output::short(device))
    }
}

/// A duration for people: "2 天 3 小时" / "2 d 3 h".
pub fn duration(secs: Option<f64>) -> String {
    let Some(secs) = secs else {
        return "—".to_string();
    };
    let total_min = (secs / 60.0).round() as i64;
    let (d, h, m) = (total_min / 1440, total_min / 60 % 24, total_min % 60);
    if d > 0 {
        tr!("report-days-hours", days = d, hours = h)
    } else if h > 0 {
        tr!("report-hours-minutes", hours = h, minutes = m)
    } else {
        tr!("report-minutes", minutes = m)
    }
}

/// A date for people, in this machine's zone: the day alone at midnight (the window's
/// bounds), else the day and the time (`2026年12月1日`, `2026年12月1日 08:30`).
fn date(time: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(time) {
        Ok(t) if t.with_timezone(&chrono::Local).time() == chrono::NaiveTime::MIN => {
            crate::output::day(Some(time))
        }
        _ => crate::output::when(Some(time)),
    }
}

fn period(r: &Report) -> String {
    tr!(
        "report-period",
        since = r
            .since
            .as_deref()
            .map_or_else(|| tr!("report-first-record"), date),
        until = date(&r.until)
    )
}

/// Whether the report has something to flag: revoked devices, changes in quarantine.
fn needs_attention(r: &Report) -> bool {
    !r.revoked_devices.is_empty() || r.held_in_quarantine > 0
}

// ----------------------------------------------------------------------------------------
// Markdown.

pub(crate) fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A Markdown table's header and rule: (label, numeric).
fn md_head(w: &mut String, heads: &[(String, bool)]) {
    let _ = writeln!(
        w,
        "| {} |\n| {} |",
        heads
            .iter()
            .map(|(h, _)| md_cell(h))
            .collect::<Vec<_>>()
            .join(" | "),
        heads
            .iter()
            .map(|(_, n)| if *n { "---:" } else { "---" })
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

/// A text heading (`false`) or a numeric one (`true`).
fn col(id: String, numeric: bool) -> (String, bool) {
    (id, numeric)
}

/// `**x**`: a total's cell.
fn bold(x: impl std::fmt::Display) -> String {
    format!("**{x}**")
}

/// The report as Markdown.
pub fn markdown(r: &Report, names: &crate::output::Names) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# {}\n", tr!("report-title"));
    let _ = writeln!(w, "- {}", tr!("report-period-line", period = period(r)));
    let _ = writeln!(
        w,
        "- {}",
        tr!(
            "report-generated",
            at = crate::output::when(Some(&r.generated_at))
        )
    );
    let _ = writeln!(
        w,
        "- {}\n",
        tr!(
            "report-made-on",
            name = md_cell(&r.node.name),
            role = tr!("members-role", role = r.node.role.as_str())
        )
    );
    if !r.whole_site {
        let _ = writeln!(
            w,
            "> **{}** {}\n",
            tr!("report-note"),
            tr!("report-not-station")
        );
    }
    markdown_attention(w, r, names);

    let t = &r.tickets;
    let _ = writeln!(w, "## {}\n", tr!("report-summary"));
    md_head(
        w,
        &[
            col(tr!("report-col-figure"), false),
            col(tr!("report-col-value"), true),
        ],
    );
    for (k, v) in [
        (tr!("report-visits"), r.visits.total.to_string()),
        (tr!("report-tickets-opened"), t.opened.to_string()),
        (tr!("report-tickets-resolved"), t.resolved.to_string()),
        (tr!("report-still-open"), t.open.to_string()),
        (tr!("report-median"), duration(t.median_resolve_secs)),
        (
            tr!("report-not-synced-count", days = r.stale_after_days),
            r.volunteers_not_synced.len().to_string(),
        ),
    ] {
        let _ = writeln!(w, "| {k} | {v} |");
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## {}\n", tr!("report-sec-visits"));
    let _ = writeln!(w, "### {}\n", tr!("report-by-grid"));
    md_head(
        w,
        &[
            col(tr!("report-col-grid"), false),
            col(tr!("report-col-visits"), true),
        ],
    );
    for g in &r.visits.by_grid {
        let _ = writeln!(w, "| {} | {} |", md_cell(&grid_label(&g.grid)), g.count);
    }
    let _ = writeln!(
        w,
        "| {} | {} |\n",
        bold(tr!("report-total")),
        bold(r.visits.total)
    );
    let _ = writeln!(w, "### {}\n", tr!("report-by-category"));
    md_head(
        w,
        &[
            col(tr!("report-col-category"), false),
            col(tr!("report-col-visits"), true),
        ],
    );
    for c in &r.visits.by_category {
        let _ = writeln!(
            w,
            "| {} | {} |",
            md_cell(&category_label(&c.category)),
            c.count
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "### {}\n", tr!("report-by-volunteer"));
    md_head(
        w,
        &[
            col(tr!("report-col-volunteer"), false),
            col(tr!("report-col-visits"), true),
        ],
    );
    for v in &r.visits.by_volunteer {
        let _ = writeln!(
            w,
            "| {} | {} |",
            md_cell(&member_label(names, &v.device_id, v.name.is_some())),
            v.count
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## {}\n", tr!("report-sec-tickets"));
    md_head(
        w,
        &[
            col(tr!("report-col-category"), false),
            col(tr!("report-col-opened"), true),
            col(tr!("report-col-resolved"), true),
            col(tr!("report-col-open"), true),
            col(tr!("report-median"), false),
        ],
    );
    for c in &t.by_category {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} |",
            md_cell(&category_label(&c.category)),
            c.opened,
            c.resolved,
            c.open,
            duration(c.median_resolve_secs)
        );
    }
    let _ = writeln!(
        w,
        "| {} | {} | {} | {} | {} |\n",
        bold(tr!("report-total")),
        bold(t.opened),
        bold(t.resolved),
        bold(t.open),
        bold(duration(t.median_resolve_secs))
    );

    let _ = writeln!(
        w,
        "## {}\n",
        tr!("report-sec-not-synced", days = r.stale_after_days)
    );
    if r.volunteers_not_synced.is_empty() {
        let _ = writeln!(w, "{}", tr!("report-all-synced", days = r.stale_after_days));
    } else {
        md_head(
            w,
            &[
                col(tr!("report-col-volunteer"), false),
                col(tr!("report-col-grids"), false),
                col(tr!("report-col-last-sync"), false),
                col(tr!("report-col-days"), true),
            ],
        );
        for v in &r.volunteers_not_synced {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} |",
                md_cell(&names.name(&v.device_id)),
                md_cell(&v.grids.join("、")),
                v.last_sync
                    .as_deref()
                    .map_or_else(|| tr!("report-never"), |t| crate::output::when(Some(t))),
                v.days_since_sync
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "—".into())
            );
        }
    }
    let _ = writeln!(w);
    markdown_grids(w, r, names);
    crate::notice::report_markdown(w, r);
    s
}

/// The warning section: revoked devices and changes waiting in quarantine.
fn markdown_attention(w: &mut String, r: &Report, names: &crate::output::Names) {
    if !needs_attention(r) {
        return;
    }
    let _ = writeln!(w, "## ⚠ {}\n", tr!("report-attention"));
    if r.held_in_quarantine > 0 {
        let _ = writeln!(
            w,
            "> **{}** {}\n",
            tr!("report-quarantine"),
            tr!("report-held", count = r.held_in_quarantine)
        );
    }
    if !r.revoked_devices.is_empty() {
        let _ = writeln!(w, "### {}\n", tr!("report-revoked-devices"));
        md_head(
            w,
            &[
                col(tr!("report-col-member"), false),
                col(tr!("report-col-revoked-at"), false),
                col(tr!("report-col-reason"), false),
            ],
        );
        for d in &r.revoked_devices {
            let _ = writeln!(
                w,
                "| {} | {} | {} |",
                md_cell(&member_label(names, &d.device_id, d.name.is_some())),
                crate::output::when(Some(&d.revoked_at)),
                md_cell(if d.reason.trim().is_empty() {
                    "—"
                } else {
                    &d.reason
                })
            );
        }
        let _ = writeln!(w);
    }
}

/// The per-grid, per-volunteer, channel and overdue sections of the Markdown.
fn markdown_grids(w: &mut String, r: &Report, names: &crate::output::Names) {
    let _ = writeln!(w, "## {}\n", tr!("report-sec-grids"));
    let _ = writeln!(w, "{}\n", tr!("report-grids-note"));
    md_head(
        w,
        &[
            col(tr!("report-col-grid"), false),
            col(tr!("report-col-households"), true),
            col(tr!("report-col-covered"), true),
            col(tr!("report-col-visits"), true),
            col(tr!("report-tickets-opened"), true),
            col(tr!("report-tickets-resolved"), true),
            col(tr!("report-col-on-time"), true),
            col(tr!("report-col-rated"), true),
            col(tr!("report-col-satisfied"), true),
            col(tr!("report-col-overdue-tickets"), true),
        ],
    );
    for g in &r.grids {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md_cell(&grid_label(&g.grid)),
            g.households,
            g.covered,
            g.visits,
            g.tickets_opened,
            g.tickets_resolved,
            g.resolved_on_time,
            g.rated,
            g.satisfied,
            g.overdue_tickets
        );
    }
    let sum =
        |f: fn(&yizhan_node::report::GridFigures) -> u64| -> u64 { r.grids.iter().map(f).sum() };
    let _ = writeln!(
        w,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        bold(tr!("report-total")),
        bold(sum(|g| g.households)),
        bold(sum(|g| g.covered)),
        bold(sum(|g| g.visits)),
        bold(sum(|g| g.tickets_opened)),
        bold(sum(|g| g.tickets_resolved)),
        bold(sum(|g| g.resolved_on_time)),
        bold(sum(|g| g.rated)),
        bold(sum(|g| g.satisfied)),
        bold(sum(|g| g.overdue_tickets))
    );

    let _ = writeln!(w, "## {}\n", tr!("report-sec-volunteers"));
    md_head(
        w,
        &[
            col(tr!("report-col-volunteer"), false),
            col(tr!("report-col-visits"), true),
            col(tr!("report-tickets-resolved"), true),
            col(tr!("report-col-on-time"), true),
        ],
    );
    for v in &r.volunteers {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} |",
            md_cell(&member_label(names, &v.device_id, v.name.is_some())),
            v.visits,
            v.tickets_resolved,
            v.resolved_on_time
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## {}\n", tr!("report-sec-channels"));
    md_head(
        w,
        &[
            col(tr!("report-col-channel"), false),
            col(tr!("report-tickets-opened"), true),
        ],
    );
    for (slug, n) in channels(r) {
        let _ = writeln!(w, "| {} | {} |", md_cell(&channel_label(&slug)), n);
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## {}\n", tr!("report-sec-overdue"));
    md_head(
        w,
        &[
            col(tr!("report-col-item"), false),
            col(tr!("report-col-count"), true),
        ],
    );
    let _ = writeln!(
        w,
        "| {} | {} |\n| {} | {} |\n",
        tr!("report-overdue-households"),
        r.overdue_households.len(),
        tr!("report-overdue-tickets"),
        r.overdue_tickets.len()
    );
    for (title, ids) in [
        (tr!("report-overdue-households"), &r.overdue_households),
        (tr!("report-overdue-tickets"), &r.overdue_tickets),
    ] {
        if ids.is_empty() {
            continue;
        }
        let _ = writeln!(w, "{}\n", tr!("report-list-of", title = title));
        for id in ids.iter().take(LISTED) {
            let _ = writeln!(w, "- `{id}`");
        }
        if ids.len() > LISTED {
            let _ = writeln!(w, "- {}", tr!("report-more", count = ids.len() - LISTED));
        }
        let _ = writeln!(w);
    }
}

// ----------------------------------------------------------------------------------------
// HTML.

/// Text as HTML, in element content or a quoted attribute: `& < > " '` escaped.
pub(crate) fn esc(s: &str) -> String {
    html_escape::encode_quoted_attribute(s).into_owned()
}

/// One series of a bar chart: its name and colour.
struct Series {
    name: String,
    colour: RGBColor,
}

/// A horizontal bar chart as inline SVG: one row per label, one bar per series in each
/// row, the count written at the end of each bar. A legend is drawn when there are several
/// series.
fn bar_chart(rows: &[(String, Vec<u64>)], series: &[Series]) -> anyhow::Result<String> {
    let k = series.len();
    let row_h: u32 = if k > 1 { 16 * k as u32 + 14 } else { 34 };
    let legend_h: u32 = if k > 1 { 30 } else { 0 };
    let width: u32 = 640;
    let height: u32 = legend_h + 40 + row_h * rows.len().max(1) as u32;
    let max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    // Room for the count after the longest bar.
    let x_max = (max as f64 * 1.12).ceil() as u32 + 1;
    let n = rows.len().max(1) as f64;
    let label_font = (FONTS, 17).into_font().color(&RGBColor(0x22, 0x22, 0x22));
    let count_font = (FONTS, 15).into_font().color(&RGBColor(0x33, 0x33, 0x33));

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let (legend, body) = root.split_vertically(legend_h);
        if k > 1 {
            let mut x = 150;
            for s in series {
                legend
                    .draw(&Rectangle::new([(x, 9), (x + 14, 23)], s.colour.filled()))
                    .map_err(chart_err)?;
                legend
                    .draw(&Text::new(
                        s.name.as_str(),
                        (x + 20, 16),
                        label_font.pos(Pos::new(HPos::Left, VPos::Center)),
                    ))
                    .map_err(chart_err)?;
                x += 150;
            }
        }
        let mut chart = ChartBuilder::on(&body)
            .margin_right(16)
            .margin_top(6)
            .x_label_area_size(28)
            .y_label_area_size(130)
            .build_cartesian_2d(0u32..x_max, 0f64..n)
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(6)
            .x_label_formatter(&|v| v.to_string())
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .axis_style(RGBColor(0x99, 0x99, 0x99))
            .label_style((FONTS, 14).into_font().color(&RGBColor(0x66, 0x66, 0x66)))
            .draw()
            .map_err(chart_err)?;
        let group = 0.72;
        let bar = group / k as f64;
        for (i, (label, values)) in rows.iter().enumerate() {
            let top = n - i as f64 - (1.0 - group) / 2.0;
            let (px, py) = chart.backend_coord(&(0, n - i as f64 - 0.5));
            root.draw(&Text::new(
                label.clone(),
                (px - 10, py),
                label_font.pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(chart_err)?;
            for (j, (value, s)) in values.iter().zip(series).enumerate() {
                let y1 = top - j as f64 * bar;
                let y0 = y1 - bar;
                if *value > 0 {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(0, y0), (*value as u32, y1)],
                            s.colour.filled(),
                        )))
                        .map_err(chart_err)?;
                }
                if *value == 0 && k > 1 {
                    continue; // the table beside the chart holds the zeros
                }
                let (vx, vy) = chart.backend_coord(&(*value as u32, (y0 + y1) / 2.0));
                root.draw(&Text::new(
                    value.to_string(),
                    (vx + 5, vy),
                    count_font.pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(chart_err)?;
            }
        }
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}

fn chart_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!(tr!("report-cannot-draw", reason = format!("{e:?}")))
}

const CSS: &str = r#"
:root { --ink: #222; --muted: #666; --line: #ddd; --accent: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f1ec; color: var(--ink);
       font-family: FONTS; font-size: 15px; line-height: 1.55; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 36px 40px; background: #fff; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 12px; margin-bottom: 18px; }
h1 { font-size: 28px; margin: 0 0 6px; letter-spacing: 1px; }
h1 small { font-size: 17px; color: var(--muted); font-weight: normal; letter-spacing: 0; }
h2 { font-size: 20px; margin: 26px 0 10px; padding-left: 10px; border-left: 5px solid var(--accent); }
h2 small, h3 small, th small { color: var(--muted); font-weight: normal; }
h3 { font-size: 16px; margin: 14px 0 6px; }
.meta { color: var(--muted); margin: 0; }
.note { background: #fff4e5; border: 1px solid #f0c27b; padding: 8px 12px; margin: 12px 0; }
.attention { background: #fdecea; border: 2px solid var(--accent); padding: 2px 14px 10px; margin: 12px 0; }
.attention h2 { border-left: none; padding-left: 0; margin-top: 8px; color: var(--accent); }
.cards { display: grid; grid-template-columns: repeat(6, 1fr); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
.card .v { font-size: 21px; font-weight: bold; white-space: nowrap; }
.card .k { font-size: 13px; color: var(--muted); }
.pair { display: grid; grid-template-columns: 640px 1fr; gap: 18px; align-items: start; }
.stack { display: block; }
.stack table { margin-top: 10px; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font-family: FONTS; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; }
th { background: #f7f5f2; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; border-top: 2px solid #999; }
code { font-size: 12px; color: var(--muted); }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 8px; }
section { break-inside: avoid; page-break-inside: avoid; }
@page { size: A4; margin: 14mm; }
@media print {
  body { background: #fff; font-size: 12px; }
  main { max-width: none; padding: 0; }
  .pair { grid-template-columns: 1fr; }
  .cards { grid-template-columns: repeat(3, 1fr); }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"#;

fn th(label: &str, numeric: bool) -> String {
    format!(
        "<th{}>{}</th>",
        if numeric { " class=\"n\"" } else { "" },
        esc(label)
    )
}

/// One chart series.
fn series(name: String, colour: RGBColor) -> Series {
    Series { name, colour }
}

/// The report as one self-contained HTML page: inline CSS and inline SVG charts, nothing
/// fetched from anywhere. Its `lang` is the run's language.
pub fn html(r: &Report, names: &crate::output::Names) -> anyhow::Result<String> {
    let t = &r.tickets;
    let mut s = String::new();
    let w = &mut s;
    let _ = write!(
        w,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} {}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n",
        if crate::i18n::zh() { "zh-CN" } else { "en" },
        esc(&tr!("report-title")),
        esc(&period(r)),
        CSS.replace("FONTS", FONTS)
    );
    let _ = writeln!(
        w,
        "<header><h1>{}</h1><p class=\"meta\">{}</p><p class=\"meta\">{} · {}</p></header>",
        esc(&tr!("report-title")),
        esc(&tr!("report-period-line", period = period(r))),
        esc(&tr!(
            "report-generated",
            at = crate::output::when(Some(&r.generated_at))
        )),
        esc(&tr!(
            "report-made-on",
            name = r.node.name.as_str(),
            role = tr!("members-role", role = r.node.role.as_str())
        ))
    );
    if !r.whole_site {
        let _ = writeln!(
            w,
            "<p class=\"note\"><b>{}</b> {}</p>",
            esc(&tr!("report-note")),
            esc(&tr!("report-not-station"))
        );
    }
    html_attention(w, r, names);
    let cards = [
        (tr!("report-visits"), r.visits.total.to_string()),
        (tr!("report-tickets-opened"), t.opened.to_string()),
        (tr!("report-tickets-resolved"), t.resolved.to_string()),
        (tr!("report-still-open"), t.open.to_string()),
        (tr!("report-median"), duration(t.median_resolve_secs)),
        (
            tr!("report-not-synced-card"),
            r.volunteers_not_synced.len().to_string(),
        ),
    ];
    let _ = write!(
        w,
        "<section><h2>{}</h2><div class=\"cards\">",
        esc(&tr!("report-summary"))
    );
    for (k, v) in cards {
        let _ = write!(
            w,
            "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>",
            esc(&v),
            esc(&k)
        );
    }
    let _ = writeln!(w, "</div></section>");

    // Visits by category.
    let _ = write!(
        w,
        "<section><h2>{}</h2><h3>{}</h3><div class=\"pair\" id=\"visits-by-category\">",
        esc(&tr!("report-sec-visits")),
        esc(&tr!("report-by-category"))
    );
    let rows: Vec<(String, Vec<u64>)> = r
        .visits
        .by_category
        .iter()
        .map(|c| (category_label(&c.category), vec![c.count]))
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[series(tr!("report-col-visits"), VISIT_CATEGORY_COLOUR)],
    )?);
    let _ = write!(
        w,
        "<table><tr>{}{}</tr>",
        th(&tr!("report-col-category"), false),
        th(&tr!("report-col-visits"), true)
    );
    for c in &r.visits.by_category {
        let _ = write!(
            w,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&category_label(&c.category)),
            c.count
        );
    }
    let _ = writeln!(
        w,
        "<tr class=\"total\"><td>{}</td><td class=\"n\">{}</td></tr></table></div>",
        esc(&tr!("report-total")),
        r.visits.total
    );

    // Visits by grid.
    let _ = write!(
        w,
        "<h3>{}</h3><div class=\"pair\" id=\"visits-by-grid\">",
        esc(&tr!("report-by-grid"))
    );
    let rows: Vec<(String, Vec<u64>)> = r
        .visits
        .by_grid
        .iter()
        .map(|g| (grid_label(&g.grid), vec![g.count]))
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[series(tr!("report-col-visits"), VISIT_GRID_COLOUR)],
    )?);
    let _ = write!(
        w,
        "<table><tr>{}{}</tr>",
        th(&tr!("report-col-grid"), false),
        th(&tr!("report-col-visits"), true)
    );
    for g in &r.visits.by_grid {
        let _ = write!(
            w,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&grid_label(&g.grid)),
            g.count
        );
    }
    let _ = writeln!(w, "</table></div>");

    // Visits by volunteer.
    let _ = write!(
        w,
        "<h3>{}</h3><table><tr>{}{}</tr>",
        esc(&tr!("report-by-volunteer")),
        th(&tr!("report-col-volunteer"), false),
        th(&tr!("report-col-visits"), true)
    );
    for v in &r.visits.by_volunteer {
        let _ = write!(
            w,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&member_label(names, &v.device_id, v.name.is_some())),
            v.count
        );
    }
    let _ = writeln!(w, "</table></section>");

    // Tickets.
    let _ = write!(
        w,
        "<section><h2>{}</h2><h3>{}</h3><div class=\"stack\" id=\"tickets-by-category\">",
        esc(&tr!("report-sec-tickets")),
        esc(&tr!("report-by-category"))
    );
    let rows: Vec<(String, Vec<u64>)> = t
        .by_category
        .iter()
        .map(|c| {
            (
                category_label(&c.category),
                vec![c.opened, c.resolved, c.open],
            )
        })
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[
            series(tr!("report-col-opened"), OPENED_COLOUR),
            series(tr!("report-col-resolved"), RESOLVED_COLOUR),
            series(tr!("report-col-open"), OPEN_COLOUR),
        ],
    )?);
    let _ = write!(
        w,
        "<table><tr>{}{}{}{}{}</tr>",
        th(&tr!("report-col-category"), false),
        th(&tr!("report-col-opened"), true),
        th(&tr!("report-col-resolved"), true),
        th(&tr!("report-col-open"), true),
        th(&tr!("report-median"), true)
    );
    for c in &t.by_category {
        let _ = write!(
            w,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&category_label(&c.category)),
            c.opened,
            c.resolved,
            c.open,
            esc(&duration(c.median_resolve_secs))
        );
    }
    let _ = writeln!(
        w,
        "<tr class=\"total\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></table></div></section>",
        esc(&tr!("report-total")),
        t.opened,
        t.resolved,
        t.open,
        esc(&duration(t.median_resolve_secs))
    );

    // Volunteers not synced.
    let _ = write!(
        w,
        "<section><h2>{}</h2>",
        esc(&tr!("report-sec-not-synced", days = r.stale_after_days))
    );
    if r.volunteers_not_synced.is_empty() {
        let _ = write!(
            w,
            "<p>{}</p>",
            esc(&tr!("report-all-synced", days = r.stale_after_days))
        );
    } else {
        let _ = write!(
            w,
            "<table><tr>{}{}{}{}</tr>",
            th(&tr!("report-col-volunteer"), false),
            th(&tr!("report-col-grids"), false),
            th(&tr!("report-col-last-sync"), false),
            th(&tr!("report-col-days"), true)
        );
        for v in &r.volunteers_not_synced {
            let _ = write!(
                w,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&names.name(&v.device_id)),
                esc(&v.grids.join("、")),
                esc(&v
                    .last_sync
                    .as_deref()
                    .map_or_else(|| tr!("report-never"), |t| crate::output::when(Some(t)))),
                v.days_since_sync
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "—".into())
            );
        }
        let _ = write!(w, "</table>");
    }
    w.push_str("</section>\n");
    html_grids(w, r, names)?;
    crate::notice::report_html(w, r);
    let _ = write!(
        w,
        "\n<footer>{}</footer>\n</main>\n</body>\n</html>\n",
        esc(&tr!("report-footer", version = env!("CARGO_PKG_VERSION")))
    );
    Ok(s)
}

/// The warning section: revoked devices and changes waiting in quarantine.
fn html_attention(w: &mut String, r: &Report, names: &crate::output::Names) {
    if !needs_attention(r) {
        return;
    }
    let _ = write!(
        w,
        "<section class=\"attention\" id=\"attention\"><h2>⚠ {}</h2>",
        esc(&tr!("report-attention"))
    );
    if r.held_in_quarantine > 0 {
        let _ = write!(
            w,
            "<p><b>{}</b> {}</p>",
            esc(&tr!("report-quarantine")),
            esc(&tr!("report-held", count = r.held_in_quarantine))
        );
    }
    if !r.revoked_devices.is_empty() {
        let _ = write!(w, "<h3>{}</h3>", esc(&tr!("report-revoked-devices")));
        let rows: Vec<Vec<String>> = r
            .revoked_devices
            .iter()
            .map(|d| {
                vec![
                    member_label(names, &d.device_id, d.name.is_some()),
                    crate::output::when(Some(&d.revoked_at)),
                    if d.reason.trim().is_empty() {
                        "—".to_string()
                    } else {
                        d.reason.clone()
                    },
                ]
            })
            .collect();
        html_table(
            w,
            &[
                (tr!("report-col-member"), false),
                (tr!("report-col-revoked-at"), false),
                (tr!("report-col-reason"), false),
            ],
            &rows,
        );
    }
    w.push_str("</section>\n");
}

/// A table: (heading, numeric) and rows of cells.
pub(crate) fn html_table(w: &mut String, heads: &[(String, bool)], rows: &[Vec<String>]) {
    w.push_str("<table><tr>");
    for (label, n) in heads {
        w.push_str(&th(label, *n));
    }
    w.push_str("</tr>");
    for row in rows {
        w.push_str("<tr>");
        for (cell, (_, n)) in row.iter().zip(heads) {
            let _ = write!(
                w,
                "<td{}>{}</td>",
                if *n { " class=\"n\"" } else { "" },
                esc(cell)
            );
        }
        w.push_str("</tr>");
    }
    w.push_str("</table>");
}

/// The per-grid, per-volunteer, channel and overdue sections of the HTML.
fn html_grids(w: &mut String, r: &Report, names: &crate::output::Names) -> anyhow::Result<()> {
    // Grids: households and coverage charted, every figure in the table.
    let _ = write!(
        w,
        "<section><h2>{}</h2><p class=\"meta\">{}</p><div class=\"stack\" id=\"grids\">",
        esc(&tr!("report-sec-grids")),
        esc(&tr!("report-grids-note"))
    );
    let rows: Vec<(String, Vec<u64>)> = r
        .grids
        .iter()
        .map(|g| (grid_label(&g.grid), vec![g.households, g.covered]))
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[
            series(tr!("report-col-households"), HOUSEHOLD_COLOUR),
            series(tr!("report-col-covered"), COVERED_COLOUR),
        ],
    )?);
    let rows: Vec<Vec<String>> = r
        .grids
        .iter()
        .map(|g| {
            vec![
                grid_label(&g.grid),
                g.households.to_string(),
                share(g.covered, g.households),
                g.visits.to_string(),
                g.tickets_opened.to_string(),
                g.tickets_resolved.to_string(),
                share(g.resolved_on_time, g.tickets_resolved),
                g.rated.to_string(),
                share(g.satisfied, g.rated),
                g.overdue_tickets.to_string(),
            ]
        })
        .collect();
    html_table(
        w,
        &[
            (tr!("report-col-grid"), false),
            (tr!("report-col-households"), true),
            (tr!("report-col-covered"), true),
            (tr!("report-col-visits"), true),
            (tr!("report-tickets-opened"), true),
            (tr!("report-tickets-resolved"), true),
            (tr!("report-col-on-time"), true),
            (tr!("report-col-rated"), true),
            (tr!("report-col-satisfied"), true),
            (tr!("report-col-overdue-tickets"), true),
        ],
        &rows,
    );
    w.push_str("</div></section>\n");

    // Volunteers.
    let _ = write!(
        w,
        "<section><h2>{}</h2><div class=\"stack\" id=\"volunteers\">",
        esc(&tr!("report-sec-volunteers"))
    );
    let rows: Vec<(String, Vec<u64>)> = r
        .volunteers
        .iter()
        .map(|v| {
            (
                member_label(names, &v.device_id, v.name.is_some()),
                vec![v.visits, v.tickets_resolved, v.resolved_on_time],
            )
        })
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[
            series(tr!("report-col-visits"), VOLUNTEER_VISIT_COLOUR),
            series(tr!("report-col-resolved"), VOLUNTEER_RESOLVED_COLOUR),
            series(tr!("report-col-on-time"), ON_TIME_COLOUR),
        ],
    )?);
    let rows: Vec<Vec<String>> = r
        .volunteers
        .iter()
        .map(|v| {
            vec![
                member_label(names, &v.device_id, v.name.is_some()),
                v.visits.to_string(),
                v.tickets_resolved.to_string(),
                share(v.resolved_on_time, v.tickets_resolved),
            ]
        })
        .collect();
    html_table(
        w,
        &[
            (tr!("report-col-volunteer"), false),
            (tr!("report-col-visits"), true),
            (tr!("report-tickets-resolved"), true),
            (tr!("report-col-on-time"), true),
        ],
        &rows,
    );
    w.push_str("</div></section>\n");

    // Channels.
    let _ = write!(
        w,
        "<section><h2>{}</h2><div class=\"pair\" id=\"channels\">",
        esc(&tr!("report-sec-channels"))
    );
    let channels = channels(r);
    let rows: Vec<(String, Vec<u64>)> = channels
        .iter()
        .map(|(slug, n)| (channel_label(slug), vec![*n]))
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[series(tr!("report-tickets-opened"), CHANNEL_COLOUR)],
    )?);
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|(slug, n)| vec![channel_label(slug), n.to_string()])
        .collect();
    html_table(
        w,
        &[
            (tr!("report-col-channel"), false),
            (tr!("report-tickets-opened"), true),
        ],
        &rows,
    );
    w.push_str("</div></section>\n");

    // Overdue at the end.
    let _ = write!(
        w,
        "<section><h2>{}</h2><div class=\"pair\" id=\"overdue\">",
        esc(&tr!("report-sec-overdue"))
    );
    let rows = vec![(
        tr!("report-end"),
        vec![
            r.overdue_households.len() as u64,
            r.overdue_tickets.len() as u64,
        ],
    )];
    w.push_str(&bar_chart(
        &rows,
        &[
            series(tr!("report-col-households"), OVERDUE_HOUSEHOLD_COLOUR),
            series(tr!("report-col-tickets"), OVERDUE_TICKET_COLOUR),
        ],
    )?);
    w.push_str("<div>");
    for (title, ids) in [
        (tr!("report-overdue-households"), &r.overdue_households),
        (tr!("report-overdue-tickets"), &r.overdue_tickets),
    ] {
        let _ = write!(w, "<h3>{}: {}</h3>", esc(&title), ids.len());
        if ids.is_empty() {
            let _ = write!(w, "<p>{}</p>", esc(&tr!("report-none")));
            continue;
        }
        w.push_str("<p>");
        for id in ids.iter().take(LISTED) {
            let _ = write!(w, "<code>{}</code> ", esc(id));
        }
        if ids.len() > LISTED {
            w.push_str(&esc(&tr!("report-more", count = ids.len() - LISTED)));
        }
        w.push_str("</p>");
    }
    w.push_str("</div></div></section>\n");
    Ok(())
}
