//! `report.html`: every table and plot of an evaluation's output directory in one
//! self-contained page (inline SVG and CSS, no scripts, nothing fetched), for people who compare
//! by looking.
//!
//! The page is built from the files the evaluation wrote — `table.md`, `summary.md`, the SVGs and
//! `meta.json` — so `energyllm report DIR` rebuilds it for any results directory, old or new.
//! Sections come in the order a reader asks their questions: the savings summary of the
//! evaluation of record first, its load curves, then every table with its plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::Error;

/// The file name of the report inside a results directory.
pub const REPORT_FILE: &str = "report.html";

/// Directories below `root` (and `root` itself) that hold results, depth-first in name order.
fn result_dirs(root: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let io = |source| Error::Io { path: root.to_owned(), source };
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(root).map_err(io)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    if entries
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n == "table.md" || n == "summary.md" || n == "load-curve.svg"))
    {
        out.push(root.to_owned());
    }
    if depth > 0 {
        for e in entries.into_iter().filter(|p| p.is_dir()) {
            result_dirs(&e, depth - 1, out)?;
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `**bold**` and `*italic*` of escaped Markdown text.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let escaped = escape(text);
    let mut rest = escaped.as_str();
    while let Some(i) = rest.find('*') {
        out.push_str(&rest[..i]);
        let (marker, tag) = if rest[i..].starts_with("**") { ("**", "strong") } else { ("*", "em") };
        let after = &rest[i + marker.len()..];
        match after.find(marker) {
            Some(j) if j > 0 => {
                let _ = write!(out, "<{tag}>{}</{tag}>", &after[..j]);
                rest = &after[j + marker.len()..];
            }
            _ => {
                out.push_str(marker);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn cells(line: &str) -> Vec<&str> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|').map(str::trim).collect()
}

/// Whether `line` is a table's separator row (`|---|:--:|---:|`, spaces allowed).
fn is_separator(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('|')
        && cells(t).iter().all(|c| !c.is_empty() && c.trim_matches(':').chars().all(|ch| ch == '-'))
}

/// The CSS alignment a separator cell asks for.
fn alignment(cell: &str) -> &'static str {
    match (cell.starts_with(':'), cell.ends_with(':')) {
        (true, true) => "center",
        (false, true) => "right",
        _ => "left",
    }
}

/// One table row of `tag` cells.
fn row(out: &mut String, line: &str, align: &[&str], tag: &str) {
    out.push_str("<tr>");
    for (k, c) in cells(line).iter().enumerate() {
        let _ = write!(
            out,
            "<{tag} style=\"text-align:{}\">{}</{tag}>",
            align.get(k).unwrap_or(&"left"),
            inline(c)
        );
    }
    out.push_str("</tr>\n");
}

/// The Markdown subset the reports use — headings, pipe tables with alignment, paragraphs,
/// bold and italic — as HTML.
pub fn markdown_to_html(md: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    let mut para: Vec<&str> = Vec::new();
    // Lines of a paragraph keep their breaks: the reports write one finding per line.
    let flush = |para: &mut Vec<&str>, out: &mut String| {
        if !para.is_empty() {
            let lines: Vec<String> = para.iter().map(|l| inline(l)).collect();
            let _ = writeln!(out, "<p>{}</p>", lines.join("<br>\n"));
            para.clear();
        }
    };
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.trim().is_empty() {
            flush(&mut para, &mut out);
        } else if let Some(h) = line.strip_prefix("## ") {
            flush(&mut para, &mut out);
            let _ = writeln!(out, "<h3>{}</h3>", inline(h));
        } else if line.trim_start().starts_with('|') && lines.get(i + 1).is_some_and(|l| is_separator(l)) {
            flush(&mut para, &mut out);
            let align: Vec<&str> = cells(lines[i + 1]).iter().map(|c| alignment(c)).collect();
            out.push_str("<table>\n<thead>");
            row(&mut out, line, &align, "th");
            out.push_str("</thead>\n<tbody>\n");
            i += 2;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                row(&mut out, lines[i], &align, "td");
                i += 1;
            }
            out.push_str("</tbody></table>\n");
            continue;
        } else {
            para.push(line.trim());
        }
        i += 1;
    }
    flush(&mut para, &mut out);
    out
}

/// An SVG file's markup for inlining — the `<svg …>…</svg>` element only — or why it is left
/// out: anything that could run (the page promises no scripts).
fn inline_svg(path: &Path) -> Result<Result<String, String>, Error> {
    let text = read(path)?;
    let Some(start) = text.find("<svg") else { return Ok(Err("not an SVG document".into())) };
    let svg = text[start..].trim_end();
    let lower = svg.to_ascii_lowercase();
    // Inside each tag: a script element, a script URL, or an event-handler attribute (a name
    // starting with `on`, then `=`).
    let active = lower.split('<').skip(1).any(|tag| {
        let tag = tag.split('>').next().unwrap_or("");
        let words: Vec<&str> =
            tag.split(|c: char| c.is_whitespace() || c == '/').filter(|w| !w.is_empty()).collect();
        let handler = words.iter().enumerate().skip(1).any(|(k, w)| {
            let name = w.split('=').next().unwrap_or("");
            let assigns = w.contains('=') || words.get(k + 1).is_some_and(|n| n.starts_with('='));
            assigns
                && name.len() > 2
                && name.starts_with("on")
                && name.bytes().all(|b| b.is_ascii_alphabetic())
        });
        tag.starts_with("script") || tag.contains("javascript:") || handler
    });
    Ok(if active { Err("it contains script or an event handler".into()) } else { Ok(svg.to_owned()) })
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #ccc}h3{font-size:1.1em}\
table{border-collapse:collapse;margin:1em 0;font-size:0.85em}th,td{border:1px solid #ddd;padding:0.25em 0.5em}\
th{background:#f4f4f4}tbody tr:nth-child(even){background:#fafafa}figure{margin:1em 0}\
figure svg{max-width:100%;height:auto}p{line-height:1.4}.meta{color:#555;font-size:0.9em}";

/// The report of the results under `root`, as one HTML document.
pub fn html_report(root: &Path) -> Result<String, Error> {
    let mut dirs = Vec::new();
    result_dirs(root, 4, &mut dirs)?;
    if dirs.is_empty() {
        return Err(Error::Data {
            name: root.display().to_string(),
            reason:
                "holds no evaluation results (no table.md below it); run `energyllm eval --out DIR` first"
                    .into(),
        });
    }
    // The record's summary and load curves first: the savings are what readers come for.
    let rank = |d: &PathBuf| {
        let rel = d.strip_prefix(root).unwrap_or(d).to_string_lossy().into_owned();
        let record = rel.starts_with("record");
        let summary = d.join("summary.md").is_file();
        (!(record && summary), !record, rel)
    };
    dirs.sort_by_key(rank);
    let mut body = String::new();
    let mut revision = None;
    for dir in &dirs {
        let rel = dir.strip_prefix(root).unwrap_or(dir).to_string_lossy().into_owned();
        let title = if rel.is_empty() { "results".to_owned() } else { rel.replace('/', " · ") };
        let _ = writeln!(body, "<section>\n<h2 id=\"{}\">{}</h2>", escape(&rel), escape(&title));
        for md in ["summary.md", "table.md"] {
            let path = dir.join(md);
            if path.is_file() {
                body.push_str(&markdown_to_html(&read(&path)?));
            }
        }
        let meta = dir.join("meta.json");
        if revision.is_none() && meta.is_file() {
            revision = serde_json::from_str::<serde_json::Value>(&read(&meta)?)
                .ok()
                .and_then(|v| v.get("git_revision").and_then(|r| r.as_str()).map(str::to_owned));
        }
        let mut svgs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| Error::Io { path: dir.clone(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "svg"))
            .collect();
        svgs.sort();
        // Plots first, then the per-method timelines folded away: there is one per method.
        let name_of =
            |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (timelines, plots): (Vec<PathBuf>, Vec<PathBuf>) =
            svgs.into_iter().partition(|p| name_of(p).starts_with("timeline"));
        for svg in &plots {
            figure(&mut body, svg, &name_of(svg))?;
        }
        if !timelines.is_empty() {
            let _ = writeln!(
                body,
                "<details><summary>Timelines: clock, cap, queue and power of each method's first run, \
                 SLO misses in red ({})</summary>",
                timelines.len()
            );
            for svg in &timelines {
                figure(&mut body, svg, &name_of(svg))?;
            }
            body.push_str("</details>\n");
        }
        body.push_str("</section>\n");
    }
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>energyllm evaluation</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>energyllm evaluation</h1>\n<p class=\"meta\">Results in {}; \
         revision {}. Energy is busy GPU energy per request; serving-protocol tables state savings against \
         vllm-default and best-static at the SLO target (docs/evaluation.md).</p>\n{body}</body>\n</html>\n",
        escape(&root.display().to_string()),
        escape(revision.as_deref().unwrap_or("unknown")),
    );
    Ok(page)
}

/// Appends `svg` inlined as a figure captioned `name`, or a line saying why it is left out.
fn figure(body: &mut String, svg: &Path, name: &str) -> Result<(), Error> {
    match inline_svg(svg)? {
        Ok(markup) => {
            let _ = writeln!(body, "<figure>{markup}<figcaption>{}</figcaption></figure>", escape(name));
        }
        Err(why) => {
            let _ = writeln!(body, "<p class=\"meta\">{} left out: {}.</p>", escape(name), escape(&why));
        }
    }
    Ok(())
}

/// Writes [`html_report`] of `root` to `root/report.html` and returns its path.
pub fn write_html_report(root: &Path) -> Result<PathBuf, Error> {
    let page = html_report(root)?;
    let path = root.join(REPORT_FILE);
    std::fs::write(&path, page).map_err(|source| Error::Io { path: path.clone(), source })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn markdown_tables_keep_alignment_emphasis_and_escape_html() {
        let html = markdown_to_html(
            "A <b>note</b> with **bold**\nand *italic*.\n\n| a | b |\n|---|---:|\n| **x** | *y (reference)* |\n| 1 < 2 | 3 |\n",
        );
        assert!(
            html.contains(
                "<p>A &lt;b&gt;note&lt;/b&gt; with <strong>bold</strong><br>\nand <em>italic</em>.</p>"
            ),
            "{html}"
        );
        assert!(html.contains("<th style=\"text-align:right\">b</th>"), "{html}");
        assert!(html.contains("<td style=\"text-align:left\"><strong>x</strong></td>"), "{html}");
        assert!(html.contains("<em>y (reference)</em>") && html.contains("1 &lt; 2"), "{html}");
        assert_eq!(inline("2 * 3 = 6"), "2 * 3 = 6", "a lone star stays");
        let spaced = markdown_to_html("| a | b | c |\n| --- | :-: | --: |\n| 1 | 2 | 3 |\n");
        assert!(
            spaced.contains("text-align:center\">2<") && spaced.contains("text-align:right\">3<"),
            "{spaced}"
        );
        assert!(
            markdown_to_html("|not a table\nplain").starts_with("<p>|not a table<br>"),
            "a lone bar line is text"
        );
    }

    #[test]
    fn the_report_orders_the_record_summary_first_and_inlines_plots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["paper", "record/a-gpu/load-0.2"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            std::fs::write(root.join(d).join("table.md"), format!("| m | e |\n|---|---:|\n| {d} | 1 |\n"))
                .unwrap();
        }
        std::fs::write(root.join("record/summary.md"), "## record: summary\n\nsavings\n").unwrap();
        std::fs::write(
            root.join("paper/pareto.svg"),
            "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>\n",
        )
        .unwrap();
        std::fs::write(root.join("paper/meta.json"), "{\"git_revision\": \"abc123\"}").unwrap();
        std::fs::write(root.join("paper/timeline-ppo.svg"), "<svg><text>ppo run</text></svg>").unwrap();
        let page = html_report(root).unwrap();
        let summary = page.find("savings").unwrap();
        let paper = page.find("<h2 id=\"paper\"").unwrap();
        assert!(summary < paper, "the record's summary comes first");
        assert!(page.contains("<figure><svg xmlns") && !page.contains("<?xml"), "SVGs are inlined");
        assert!(page.contains("revision abc123") && !page.contains("<script"));
        let details = page.find("<details>").expect("timelines are folded");
        assert!(page.find("ppo run").is_some_and(|t| t > details) && page.find("pareto.svg") < Some(details));
        std::fs::write(root.join("paper/evil.svg"), "<svg><script>alert(1)</script></svg>").unwrap();
        std::fs::write(root.join("paper/handler.svg"), "<svg>\n<rect\tonload=\"x()\"/></svg>").unwrap();
        std::fs::write(root.join("paper/text.svg"), "<svg><text>runs only=2 on GPUs</text></svg>").unwrap();
        let page = html_report(root).unwrap();
        assert!(page.contains("evil.svg left out") && page.contains("handler.svg left out"), "{page}");
        assert!(
            !page.contains("alert(1)") && page.contains("runs only=2 on GPUs"),
            "plain text is not a handler"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(html_report(empty.path()).unwrap_err().to_string().contains("no table.md"));
    }
}
