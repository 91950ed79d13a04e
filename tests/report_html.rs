//! `nasflow report`: the page is self-contained (no network), has every
//! section, and renders in headless Chromium without console errors; the
//! plots are written as SVG. Chromium comes from Debian's `chromium` package
//! (CI installs it); a screenshot is saved under the test's temp folder.

mod report_fixture;
use report_fixture::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECTIONS: [&str; 9] = ["runs", "params", "metrics", "stages", "genotypes", "seeds", "curves", "alphas", "cells"];

fn two_runs(root: &Path) {
    let g = darts_v2();
    let mut g2 = reordered(&g);
    g2.reduce.nodes[0][0].op = "skip_connect".into();
    darts_run(root, "20261120T100000Z-aaaaaa", "2026-11-20T10:00:00.000Z", 0.025, "ran", &g, 3.5);
    darts_run(root, "20261121T100000Z-bbbbbb", "2026-11-21T10:00:00.000Z", 0.05, "reused", &g2, 2.75);
}

fn write_report(root: &Path) -> String {
    let r = root.to_str().unwrap();
    let out = nasflow(root, &["report", "--runs-dir", r, "aaaaaa", "bbbbbb", "-o", "out/report.html", "--plots", "plots"]);
    assert!(out.status.success(), "report failed: {}", stderr(&out));
    std::fs::read_to_string(root.join("out/report.html")).unwrap()
}

#[test]
fn page_is_self_contained_with_every_section_and_plots_on_disk() {
    let t = tempfile::tempdir().unwrap();
    two_runs(t.path());
    let page = write_report(t.path());
    for s in SECTIONS {
        assert!(page.contains(&format!("<section id=\"{s}\">")), "no section {s}");
    }
    // Nothing fetched: no external src/href/url(), and a CSP that forbids it anyway.
    for bad in ["src=\"http", "href=\"http", "url(http", "@import", "src=\"//", "href=\"//"] {
        assert!(!page.contains(bad), "page refers to the network: {bad}");
    }
    assert!(page.contains("Content-Security-Policy"));
    assert!(page.contains("search.lr"), "param diff");
    assert!(page.contains("skip_connect &larr; "), "genotype diff names the changed op");
    assert!(page.matches("<svg").count() >= 2 * 2 + 2 + 4 * 2, "curves, heatmaps and cells inline");
    assert!(!page.contains("<?xml"), "inline SVGs have no XML prolog");

    let plots: Vec<String> = std::fs::read_dir(t.path().join("plots")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    for want in ["curves_search_loss.svg", "curves_search_accuracy.svg", "curves_train_loss.svg", "alphas_20261120T100000Z-aaaaaa_search_normal.svg"] {
        assert!(plots.iter().any(|p| p == want), "no {want} in {plots:?}");
    }
    let heat = std::fs::read_to_string(t.path().join("plots/alphas_20261120T100000Z-aaaaaa_search_reduce.svg")).unwrap();
    assert!(heat.starts_with("<svg") && heat.contains("c_{k-2} \u{2192} 0") && heat.contains("sep_conv_3x3"), "heatmap panels named by edge, rows by op");
}

fn chromium() -> String {
    for c in ["chromium", "chromium-browser"] {
        if Command::new(c).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
            return c.to_string();
        }
    }
    panic!("Chromium is needed by this test: `apt-get update && apt-get install -y chromium` (Debian)");
}

/// Runs headless Chromium with `args` (after the common flags) and a time limit.
fn headless(tmp: &Path, args: &[String]) -> (String, String) {
    let profile = tempfile::tempdir_in(tmp).unwrap();
    let mut cmd = Command::new(chromium());
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut so, &mut s).ok();
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut se, &mut s).ok();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (out_t.join().unwrap(), err_t.join().unwrap())
}

#[test]
fn renders_in_headless_chromium_without_console_errors() {
    let t = tempfile::tempdir().unwrap();
    two_runs(t.path());
    write_report(t.path());
    let url = format!("file://{}", t.path().join("out/report.html").display());

    let (dom, log) = headless(t.path(), &["--virtual-time-budget=3000".into(), "--dump-dom".into(), url.clone()]);
    for s in SECTIONS {
        assert!(dom.contains(&format!("<section id=\"{s}\">")), "rendered DOM lacks section {s}:\n{}", &dom[..dom.len().min(2000)]);
    }
    assert!(dom.contains("data-loaded=\"9\""), "the page's script did not run to its load handler");
    assert!(dom.contains("<pre id=\"js-errors\"></pre>"), "script errors recorded in the page");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("Content Security Policy") || l.contains("Refused to")).collect();
    assert!(console.is_empty(), "console errors:\n{}", console.join("\n"));

    let shot = t.path().join("report.png");
    let (_, log) = headless(t.path(), &["--window-size=1400,2400".into(), "--hide-scrollbars".into(), format!("--screenshot={}", shot.display()), url]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot {} ({e}); chromium said:\n{log}", shot.display()));
    assert!(png.len() > 10_000 && png.starts_with(b"\x89PNG"), "screenshot is not a PNG of a rendered page ({} bytes)", png.len());
    println!("screenshot: {}", shot.display());
}
