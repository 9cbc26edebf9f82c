//! `yizhan report`: the station's report for a time window, as Markdown, as one
//! self-contained HTML file with bar charts (inline SVG drawn with plotters), or with
//! `--json` as the `Report` value. The figures are computed by `yizhan_node::report`; this
//! module only lays them out, in Chinese with English alongside.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use yizhan_node::Node;
use yizhan_node::model::{Category, Channel, Time};
use yizhan_node::report::{Report, Window};

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
    let format = args.format.unwrap_or(ReportFormat::Md);
    let text = match format {
        ReportFormat::Md => markdown(&report),
        ReportFormat::Html => html(&report)?,
    };
    // Names and grids are other members' text; the HTML escapes its markup already.
    let text = crate::output::clean(&text).into_owned();
    if let Some(path) = &args.out {
        crate::output::write_atomically(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if out.json {
        return out.emit(&report, || {});
    }
    match &args.out {
        Some(path) => println!("Wrote the report to {}.", path.display()),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
    }
    if !report.whole_site {
        eprintln!(
            "note: this node is not the station; the report covers only the records it holds"
        );
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------
// Words shared by both formats.

fn category_label(slug: &Option<String>) -> String {
    match slug.as_deref() {
        None => "未分类 (none)".to_string(),
        Some(s) => match s.parse::<Category>() {
            Ok(c) => format!("{} {}", c.zh(), c.slug()),
            Err(_) => s.to_string(),
        },
    }
}

fn category_short(slug: &Option<String>) -> String {
    match slug.as_deref() {
        None => "未分类".to_string(),
        Some(s) => s
            .parse::<Category>()
            .map(|c| c.zh().to_string())
            .unwrap_or_else(|_| s.to_string()),
    }
}

fn grid_label(grid: &Option<String>) -> String {
    grid.clone()
        .unwrap_or_else(|| "未分网格 (none)".to_string())
}

fn channel_label(slug: &str) -> String {
    match slug.parse::<Channel>() {
        Ok(c) => format!("{} {}", c.zh(), c.as_str()),
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

/// A grid's name in a chart.
fn grid_short(grid: &Option<String>) -> String {
    grid.clone().unwrap_or_else(|| "未分网格".into())
}

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

fn volunteer_label(name: &Option<String>) -> String {
    name.clone()
        .unwrap_or_else(|| "（花名册中没有）not in roster".to_string())
}

/// A duration for people: "2 天 3 小时 (2 d 3 h)".
pub fn duration(secs: Option<f64>) -> String {
    let Some(secs) = secs else {
        return "—".to_string();
    };
    let total_min = (secs / 60.0).round() as i64;
    let (d, h, m) = (total_min / 1440, total_min / 60 % 24, total_min % 60);
    if d > 0 {
        format!("{d} 天 {h} 小时 ({d} d {h} h)")
    } else if h > 0 {
        format!("{h} 小时 {m} 分钟 ({h} h {m} min)")
    } else {
        format!("{m} 分钟 ({m} min)")
    }
}

fn period(r: &Report) -> String {
    format!(
        "{} 至 {}",
        r.since.as_deref().unwrap_or("最早记录 first record"),
        r.until
    )
}

const NOT_STATION: &str = "本机不是驿站，报告只含本机保存的记录；网格员同步情况指与本机的同步。\
                           This node is not the station: the figures cover only the records it \
                           holds, and \"last sync\" means the last sync with this node.";

// ----------------------------------------------------------------------------------------
// Markdown.

pub(crate) fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# 幸福驿站工作报告 · Station report\n");
    let _ = writeln!(
        w,
        "- 统计时段 Period: {} (含起点，不含终点 start included, end excluded)",
        period(r)
    );
    let _ = writeln!(w, "- 生成时间 Generated: {}", r.generated_at);
    let _ = writeln!(
        w,
        "- 生成节点 Made on: {} ({})\n",
        md_cell(&r.node.name),
        r.node.role
    );
    if !r.whole_site {
        let _ = writeln!(w, "> **注意 Note:** {NOT_STATION}\n");
    }

    let t = &r.tickets;
    let _ = writeln!(w, "## 概览 Summary\n");
    let _ = writeln!(w, "| 指标 Figure | 数值 Value |\n| --- | ---: |");
    let _ = writeln!(w, "| 走访 Visits | {} |", r.visits.total);
    let _ = writeln!(w, "| 新开工单 Tickets opened | {} |", t.opened);
    let _ = writeln!(w, "| 办结工单 Tickets resolved | {} |", t.resolved);
    let _ = writeln!(w, "| 截至期末未结 Still open at end | {} |", t.open);
    let _ = writeln!(
        w,
        "| 办结用时中位数 Median time to resolve | {} |",
        duration(t.median_resolve_secs)
    );
    let _ = writeln!(
        w,
        "| 超过 {} 天未同步的网格员 Volunteers not synced for {} days | {} |\n",
        r.stale_after_days,
        r.stale_after_days,
        r.volunteers_not_synced.len()
    );

    let _ = writeln!(w, "## 一、走访 Visits\n");
    let _ = writeln!(w, "### 按网格 By grid\n");
    let _ = writeln!(w, "| 网格 Grid | 走访 Visits |\n| --- | ---: |");
    for g in &r.visits.by_grid {
        let _ = writeln!(w, "| {} | {} |", md_cell(&grid_label(&g.grid)), g.count);
    }
    let _ = writeln!(w, "| **合计 Total** | **{}** |\n", r.visits.total);
    let _ = writeln!(w, "### 按服务类别 By category\n");
    let _ = writeln!(w, "| 类别 Category | 走访 Visits |\n| --- | ---: |");
    for c in &r.visits.by_category {
        let _ = writeln!(
            w,
            "| {} | {} |",
            md_cell(&category_label(&c.category)),
            c.count
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "### 按网格员 By volunteer\n");
    let _ = writeln!(
        w,
        "| 网格员 Volunteer | 设备 Device | 走访 Visits |\n| --- | --- | ---: |"
    );
    for v in &r.visits.by_volunteer {
        let _ = writeln!(
            w,
            "| {} | `{}` | {} |",
            md_cell(&volunteer_label(&v.name)),
            crate::output::short(&v.device_id),
            v.count
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## 二、工单 Tickets\n");
    let _ = writeln!(
        w,
        "| 类别 Category | 新开 Opened | 办结 Resolved | 未结 Still open | 办结用时中位数 Median time to resolve |\n| --- | ---: | ---: | ---: | --- |"
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
        "| **合计 Total** | **{}** | **{}** | **{}** | **{}** |\n",
        t.opened,
        t.resolved,
        t.open,
        duration(t.median_resolve_secs)
    );

    let _ = writeln!(
        w,
        "## 三、超过 {} 天未同步的网格员 Volunteers not synced for {} days\n",
        r.stale_after_days, r.stale_after_days
    );
    if r.volunteers_not_synced.is_empty() {
        let _ = writeln!(
            w,
            "无。每位网格员都在 {} 天内同步过。None: every volunteer synced within {} days.",
            r.stale_after_days, r.stale_after_days
        );
    } else {
        let _ = writeln!(
            w,
            "| 网格员 Volunteer | 网格 Grids | 上次同步 Last sync | 未同步天数 Days |\n| --- | --- | --- | ---: |"
        );
        for v in &r.volunteers_not_synced {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} |",
                md_cell(&v.name),
                md_cell(&v.grids.join("、")),
                v.last_sync.as_deref().unwrap_or("从未 never"),
                v.days_since_sync
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "—".into())
            );
        }
    }
    let _ = writeln!(w);
    markdown_grids(w, r);
    crate::notice::report_markdown(w, r);
    s
}

/// The per-grid, per-volunteer, channel and overdue sections of the Markdown.
fn markdown_grids(w: &mut String, r: &Report) {
    let _ = writeln!(w, "## 四、网格 By grid\n");
    let _ = writeln!(
        w,
        "覆盖：期末时最近一次走访仍在走访周期内的住户。按期：首次办结不晚于办结期限。\
         Covered: households whose latest visit is within their interval at the end. \
         On time: resolved at or before the ticket's due time.\n"
    );
    let _ = writeln!(
        w,
        "| 网格 Grid | 住户 Households | 已覆盖 Covered | 走访 Visits | 新开工单 Opened | 办结 Resolved | 按期办结 On time | 回访 Rated | 满意 Satisfied | 期末逾期工单 Overdue tickets |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
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
        "| **合计 Total** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** |\n",
        sum(|g| g.households),
        sum(|g| g.covered),
        sum(|g| g.visits),
        sum(|g| g.tickets_opened),
        sum(|g| g.tickets_resolved),
        sum(|g| g.resolved_on_time),
        sum(|g| g.rated),
        sum(|g| g.satisfied),
        sum(|g| g.overdue_tickets)
    );

    let _ = writeln!(w, "## 五、网格员 By volunteer\n");
    let _ = writeln!(
        w,
        "| 网格员 Volunteer | 设备 Device | 走访 Visits | 办结工单 Tickets resolved | 按期办结 On time |\n\
         | --- | --- | ---: | ---: | ---: |"
    );
    for v in &r.volunteers {
        let _ = writeln!(
            w,
            "| {} | `{}` | {} | {} | {} |",
            md_cell(&volunteer_label(&v.name)),
            crate::output::short(&v.device_id),
            v.visits,
            v.tickets_resolved,
            v.resolved_on_time
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## 六、工单来源 Tickets by channel\n");
    let _ = writeln!(
        w,
        "| 渠道 Channel | 新开工单 Tickets opened |\n| --- | ---: |"
    );
    for (slug, n) in channels(r) {
        let _ = writeln!(w, "| {} | {} |", md_cell(&channel_label(&slug)), n);
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## 七、期末逾期 Overdue at the end\n");
    let _ = writeln!(
        w,
        "| 项目 Item | 数量 Count |\n| --- | ---: |\n\
         | 逾期未走访住户 Households overdue for a visit | {} |\n\
         | 逾期未办结工单 Tickets overdue | {} |\n",
        r.overdue_households.len(),
        r.overdue_tickets.len()
    );
    for (title, ids) in [
        (
            "逾期未走访住户 Households overdue for a visit",
            &r.overdue_households,
        ),
        ("逾期未办结工单 Tickets overdue", &r.overdue_tickets),
    ] {
        if ids.is_empty() {
            continue;
        }
        let _ = writeln!(w, "{title}:\n");
        for id in ids.iter().take(LISTED) {
            let _ = writeln!(w, "- `{id}`");
        }
        if ids.len() > LISTED {
            let _ = writeln!(
                w,
                "- …… 另有 {} 项 and {} more (`--json`)",
                ids.len() - LISTED,
                ids.len() - LISTED
            );
        }
        let _ = writeln!(w);
    }
}

// ----------------------------------------------------------------------------------------
// HTML.

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One series of a bar chart: its name and colour.
struct Series {
    name: &'static str,
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
                        s.name,
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
    anyhow::anyhow!("cannot draw the chart: {e:?}")
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

fn th(zh: &str, en: &str, numeric: bool) -> String {
    format!(
        "<th{}>{}<br><small>{}</small></th>",
        if numeric { " class=\"n\"" } else { "" },
        esc(zh),
        esc(en)
    )
}

/// The report as one self-contained HTML page: inline CSS and inline SVG charts, nothing
/// fetched from anywhere.
pub fn html(r: &Report) -> anyhow::Result<String> {
    let t = &r.tickets;
    let mut s = String::new();
    let w = &mut s;
    let _ = write!(
        w,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>幸福驿站工作报告 Station report {}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n",
        esc(&period(r)),
        CSS.replace("FONTS", FONTS)
    );
    let _ = writeln!(
        w,
        "<header><h1>幸福驿站工作报告 <small>Station report</small></h1>\
         <p class=\"meta\">统计时段 Period: <b>{}</b>（含起点，不含终点 start included, end excluded）</p>\
         <p class=\"meta\">生成时间 Generated: {} · 生成节点 Made on: {} ({})</p></header>",
        esc(&period(r)),
        esc(&r.generated_at),
        esc(&r.node.name),
        esc(&r.node.role)
    );
    if !r.whole_site {
        let _ = writeln!(
            w,
            "<p class=\"note\"><b>注意 Note:</b> {}</p>",
            esc(NOT_STATION)
        );
    }
    let cards = [
        ("走访", "Visits", r.visits.total.to_string()),
        ("新开工单", "Tickets opened", t.opened.to_string()),
        ("办结工单", "Tickets resolved", t.resolved.to_string()),
        ("期末未结", "Still open at end", t.open.to_string()),
        (
            "办结用时中位数",
            "Median time to resolve",
            duration(t.median_resolve_secs)
                .split(" (")
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        (
            "未同步网格员",
            "Volunteers not synced",
            r.volunteers_not_synced.len().to_string(),
        ),
    ];
    let _ = write!(
        w,
        "<section><h2>概览 <small>Summary</small></h2><div class=\"cards\">"
    );
    for (zh, en, v) in cards {
        let _ = write!(
            w,
            "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}<br>{}</div></div>",
            esc(&v),
            esc(zh),
            esc(en)
        );
    }
    let _ = writeln!(w, "</div></section>");

    // Visits by category.
    let _ = write!(
        w,
        "<section><h2>一、走访 <small>Visits</small></h2>\
         <h3>按服务类别 <small>By category</small></h3><div class=\"pair\" id=\"visits-by-category\">"
    );
    let rows: Vec<(String, Vec<u64>)> = r
        .visits
        .by_category
        .iter()
        .map(|c| (category_short(&c.category), vec![c.count]))
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[Series {
            name: "走访 Visits",
            colour: VISIT_CATEGORY_COLOUR,
        }],
    )?);
    let _ = write!(
        w,
        "<table><tr>{}{}</tr>",
        th("类别", "Category", false),
        th("走访", "Visits", true)
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
        "<tr class=\"total\"><td>合计 Total</td><td class=\"n\">{}</td></tr></table></div>",
        r.visits.total
    );

    // Visits by grid.
    let _ = write!(
        w,
        "<h3>按网格 <small>By grid</small></h3><div class=\"pair\" id=\"visits-by-grid\">"
    );
    let rows: Vec<(String, Vec<u64>)> = r
        .visits
        .by_grid
        .iter()
        .map(|g| {
            (
                g.grid.clone().unwrap_or_else(|| "未分网格".into()),
                vec![g.count],
            )
        })
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[Series {
            name: "走访 Visits",
            colour: VISIT_GRID_COLOUR,
        }],
    )?);
    let _ = write!(
        w,
        "<table><tr>{}{}</tr>",
        th("网格", "Grid", false),
        th("走访", "Visits", true)
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
        "<h3>按网格员 <small>By volunteer</small></h3><table><tr>{}{}{}</tr>",
        th("网格员", "Volunteer", false),
        th("设备", "Device", false),
        th("走访", "Visits", true)
    );
    for v in &r.visits.by_volunteer {
        let _ = write!(
            w,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
            esc(&volunteer_label(&v.name)),
            esc(&crate::output::short(&v.device_id)),
            v.count
        );
    }
    let _ = writeln!(w, "</table></section>");

    // Tickets.
    let _ = write!(
        w,
        "<section><h2>二、工单 <small>Tickets</small></h2>\
         <h3>按服务类别 <small>By category</small></h3><div class=\"stack\" id=\"tickets-by-category\">"
    );
    let rows: Vec<(String, Vec<u64>)> = t
        .by_category
        .iter()
        .map(|c| {
            (
                category_short(&c.category),
                vec![c.opened, c.resolved, c.open],
            )
        })
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[
            Series {
                name: "新开 Opened",
                colour: OPENED_COLOUR,
            },
            Series {
                name: "办结 Resolved",
                colour: RESOLVED_COLOUR,
            },
            Series {
                name: "未结 Still open",
                colour: OPEN_COLOUR,
            },
        ],
    )?);
    let _ = write!(
        w,
        "<table><tr>{}{}{}{}{}</tr>",
        th("类别", "Category", false),
        th("新开", "Opened", true),
        th("办结", "Resolved", true),
        th("未结", "Still open", true),
        th("用时中位数", "Median to resolve", true)
    );
    for c in &t.by_category {
        let _ = write!(
            w,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&category_short(&c.category)),
            c.opened,
            c.resolved,
            c.open,
            esc(&duration(c.median_resolve_secs))
        );
    }
    let _ = writeln!(
        w,
        "<tr class=\"total\"><td>合计 Total</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></table></div></section>",
        t.opened,
        t.resolved,
        t.open,
        esc(&duration(t.median_resolve_secs))
    );

    // Volunteers not synced.
    let _ = write!(
        w,
        "<section><h2>三、超过 {d} 天未同步的网格员 <small>Volunteers not synced for {d} days</small></h2>",
        d = r.stale_after_days
    );
    if r.volunteers_not_synced.is_empty() {
        let _ = write!(
            w,
            "<p>无。每位网格员都在 {d} 天内同步过。None: every volunteer synced within {d} days.</p>",
            d = r.stale_after_days
        );
    } else {
        let _ = write!(
            w,
            "<table><tr>{}{}{}{}</tr>",
            th("网格员", "Volunteer", false),
            th("网格", "Grids", false),
            th("上次同步", "Last sync", false),
            th("未同步天数", "Days", true)
        );
        for v in &r.volunteers_not_synced {
            let _ = write!(
                w,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&v.name),
                esc(&v.grids.join("、")),
                esc(v.last_sync.as_deref().unwrap_or("从未 never")),
                v.days_since_sync
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "—".into())
            );
        }
        let _ = write!(w, "</table>");
    }
    w.push_str("</section>\n");
    html_grids(w, r)?;
    crate::notice::report_html(w, r);
    let _ = write!(
        w,
        "\n<footer>走访按走访时间计入时段；工单的办结时间取自其签名变更的时间。\
         Visits count by visit time; a ticket's resolution time is the time of the signed change \
         that resolved it. yizhan {}</footer>\n</main>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    Ok(s)
}

/// One multi-series chart with its table, as the per-grid sections show them.
pub(crate) fn html_table(w: &mut String, heads: &[(&str, &str, bool)], rows: &[Vec<String>]) {
    w.push_str("<table><tr>");
    for (zh, en, n) in heads {
        w.push_str(&th(zh, en, *n));
    }
    w.push_str("</tr>");
    for row in rows {
        w.push_str("<tr>");
        for (cell, (_, _, n)) in row.iter().zip(heads) {
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
fn html_grids(w: &mut String, r: &Report) -> anyhow::Result<()> {
    // Grids: households and coverage charted, every figure in the table.
    let _ = write!(
        w,
        "<section><h2>四、网格 <small>By grid</small></h2>\
         <p class=\"meta\">覆盖：期末时最近一次走访仍在走访周期内的住户。按期：不晚于办结期限办结。\
         Covered: latest visit within the household's interval at the end. On time: resolved by the due time.</p>\
         <div class=\"stack\" id=\"grids\">"
    );
    let rows: Vec<(String, Vec<u64>)> = r
        .grids
        .iter()
        .map(|g| (grid_short(&g.grid), vec![g.households, g.covered]))
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[
            Series {
                name: "住户 Households",
                colour: HOUSEHOLD_COLOUR,
            },
            Series {
                name: "已覆盖 Covered",
                colour: COVERED_COLOUR,
            },
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
            ("网格", "Grid", false),
            ("住户", "Households", true),
            ("已覆盖", "Covered", true),
            ("走访", "Visits", true),
            ("新开工单", "Opened", true),
            ("办结", "Resolved", true),
            ("按期办结", "On time", true),
            ("回访", "Rated", true),
            ("满意", "Satisfied", true),
            ("期末逾期工单", "Overdue tickets", true),
        ],
        &rows,
    );
    w.push_str("</div></section>\n");

    // Volunteers.
    let _ = write!(
        w,
        "<section><h2>五、网格员 <small>By volunteer</small></h2><div class=\"stack\" id=\"volunteers\">"
    );
    let rows: Vec<(String, Vec<u64>)> = r
        .volunteers
        .iter()
        .map(|v| {
            (
                v.name
                    .clone()
                    .unwrap_or_else(|| crate::output::short(&v.device_id)),
                vec![v.visits, v.tickets_resolved, v.resolved_on_time],
            )
        })
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[
            Series {
                name: "走访 Visits",
                colour: VOLUNTEER_VISIT_COLOUR,
            },
            Series {
                name: "办结 Resolved",
                colour: VOLUNTEER_RESOLVED_COLOUR,
            },
            Series {
                name: "按期 On time",
                colour: ON_TIME_COLOUR,
            },
        ],
    )?);
    let rows: Vec<Vec<String>> = r
        .volunteers
        .iter()
        .map(|v| {
            vec![
                volunteer_label(&v.name),
                crate::output::short(&v.device_id),
                v.visits.to_string(),
                v.tickets_resolved.to_string(),
                share(v.resolved_on_time, v.tickets_resolved),
            ]
        })
        .collect();
    html_table(
        w,
        &[
            ("网格员", "Volunteer", false),
            ("设备", "Device", false),
            ("走访", "Visits", true),
            ("办结工单", "Tickets resolved", true),
            ("按期办结", "On time", true),
        ],
        &rows,
    );
    w.push_str("</div></section>\n");

    // Channels.
    let _ = write!(
        w,
        "<section><h2>六、工单来源 <small>Tickets by channel</small></h2><div class=\"pair\" id=\"channels\">"
    );
    let channels = channels(r);
    let rows: Vec<(String, Vec<u64>)> = channels
        .iter()
        .map(|(slug, n)| {
            let label = slug
                .parse::<Channel>()
                .map(|c| c.zh().to_string())
                .unwrap_or_else(|_| slug.clone());
            (label, vec![*n])
        })
        .collect();
    w.push_str(&bar_chart(
        &rows,
        &[Series {
            name: "新开工单 Tickets opened",
            colour: CHANNEL_COLOUR,
        }],
    )?);
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|(slug, n)| vec![channel_label(slug), n.to_string()])
        .collect();
    html_table(
        w,
        &[
            ("渠道", "Channel", false),
            ("新开工单", "Tickets opened", true),
        ],
        &rows,
    );
    w.push_str("</div></section>\n");

    // Overdue at the end.
    let _ = write!(
        w,
        "<section><h2>七、期末逾期 <small>Overdue at the end</small></h2><div class=\"pair\" id=\"overdue\">"
    );
    let rows = vec![(
        "期末 End".to_string(),
        vec![
            r.overdue_households.len() as u64,
            r.overdue_tickets.len() as u64,
        ],
    )];
    w.push_str(&bar_chart(
        &rows,
        &[
            Series {
                name: "住户 Households",
                colour: OVERDUE_HOUSEHOLD_COLOUR,
            },
            Series {
                name: "工单 Tickets",
                colour: OVERDUE_TICKET_COLOUR,
            },
        ],
    )?);
    w.push_str("<div>");
    for (zh, en, ids) in [
        (
            "逾期未走访住户",
            "Households overdue for a visit",
            &r.overdue_households,
        ),
        ("逾期未办结工单", "Tickets overdue", &r.overdue_tickets),
    ] {
        let _ = write!(
            w,
            "<h3>{} <small>{}</small>: {}</h3>",
            esc(zh),
            esc(en),
            ids.len()
        );
        if ids.is_empty() {
            w.push_str("<p>无 None</p>");
            continue;
        }
        w.push_str("<p>");
        for id in ids.iter().take(LISTED) {
            let _ = write!(w, "<code>{}</code> ", esc(id));
        }
        if ids.len() > LISTED {
            let _ = write!(
                w,
                "…… 另有 {n} 项 and {n} more (--json)",
                n = ids.len() - LISTED
            );
        }
        w.push_str("</p>");
    }
    w.push_str("</div></div></section>\n");
    Ok(())
}
