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
    let t = line.trim().trim_start_matches('|').trim_end_matches('|');
    t.split('|').map(str::trim).collect()
}

/// The Markdown subset the reports use — headings, pipe tables with alignment, paragraphs,
/// bold and italic — as HTML.
pub fn markdown_to_html(md: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    let mut para: Vec<&str> = Vec::new();
    let flush = |para: &mut Vec<&str>, out: &mut String| {
        if !para.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", inline(&para.join(" ")));
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
        } else if line.starts_with('|')
            && lines
                .get(i + 1)
                .is_some_and(|l| l.trim_start().starts_with("|---") || l.trim_start().starts_with("|:"))
        {
            flush(&mut para, &mut out);
            let align: Vec<&str> =
                cells(lines[i + 1]).iter().map(|c| if c.ends_with(':') { "right" } else { "left" }).collect();
            out.push_str("<table>\n<thead><tr>");
            for (k, c) in cells(line).iter().enumerate() {
                let _ = write!(
                    out,
                    "<th style=\"text-align:{}\">{}</th>",
                    align.get(k).unwrap_or(&"left"),
                    inline(c)
                );
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            i += 2;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                out.push_str("<tr>");
                for (k, c) in cells(lines[i]).iter().enumerate() {
                    let _ = write!(
                        out,
                        "<td style=\"text-align:{}\">{}</td>",
                        align.get(k).unwrap_or(&"left"),
                        inline(c)
                    );
                }
                out.push_str("</tr>\n");
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

/// An SVG file's markup for inlining: the `<svg …>…</svg>` element only, refusing anything that
/// could run (the page promises no scripts).
fn inline_svg(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let start = text.find("<svg").ok_or_else(|| Error::Data {
        name: path.display().to_string(),
        reason: "not an SVG document (no <svg> element)".into(),
    })?;
    let svg = &text[start..];
    let lower = svg.to_ascii_lowercase();
    // An event-handler attribute: ` on` + letters + `=`.
    let handler = lower.match_indices(" on").any(|(i, _)| {
        let rest = &lower[i + 3..];
        let name = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        name > 0 && rest[name..].starts_with('=')
    });
    if lower.contains("<script") || lower.contains("javascript:") || handler {
        return Err(Error::Data {
            name: path.display().to_string(),
            reason: "contains script; not inlined".into(),
        });
    }
    Ok(svg.trim_end().to_owned())
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
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| Error::Io { path: path.clone(), source })?;
                body.push_str(&markdown_to_html(&text));
            }
        }
        let meta = dir.join("meta.json");
        if revision.is_none() && meta.is_file() {
            let text =
                std::fs::read_to_string(&meta).map_err(|source| Error::Io { path: meta.clone(), source })?;
            revision = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("git_revision").and_then(|r| r.as_str()).map(str::to_owned));
        }
        let mut svgs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| Error::Io { path: dir.clone(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "svg"))
            .collect();
        svgs.sort();
        for svg in svgs {
            let name = svg.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let _ = writeln!(
                body,
                "<figure>{}<figcaption>{}</figcaption></figure>",
                inline_svg(&svg)?,
                escape(&name)
            );
        }
        body.push_str("</section>\n");
    }
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>energyllm evaluation</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>energyllm evaluation</h1>\n<p class=\"meta\">Results in {}; \
         revision {}. Energy is busy GPU energy per request; savings are stated against vllm-default and \
         best-static at the SLO target (docs/evaluation.md).</p>\n{body}</body>\n</html>\n",
        escape(&root.display().to_string()),
        escape(revision.as_deref().unwrap_or("unknown")),
    );
    Ok(page)
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
            html.contains("<p>A &lt;b&gt;note&lt;/b&gt; with <strong>bold</strong> and <em>italic</em>.</p>"),
            "{html}"
        );
        assert!(html.contains("<th style=\"text-align:right\">b</th>"), "{html}");
        assert!(html.contains("<td style=\"text-align:left\"><strong>x</strong></td>"), "{html}");
        assert!(html.contains("<em>y (reference)</em>") && html.contains("1 &lt; 2"), "{html}");
        assert_eq!(inline("2 * 3 = 6"), "2 * 3 = 6", "a lone star stays");
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
        let page = html_report(root).unwrap();
        let summary = page.find("savings").unwrap();
        let paper = page.find("<h2 id=\"paper\"").unwrap();
        assert!(summary < paper, "the record's summary comes first");
        assert!(page.contains("<figure><svg xmlns") && !page.contains("<?xml"), "SVGs are inlined");
        assert!(page.contains("revision abc123") && !page.contains("<script"));
        std::fs::write(root.join("paper/evil.svg"), "<svg><script>alert(1)</script></svg>").unwrap();
        assert!(html_report(root).unwrap_err().to_string().contains("evil.svg"));
        let empty = tempfile::tempdir().unwrap();
        assert!(html_report(empty.path()).unwrap_err().to_string().contains("no table.md"));
    }
}
