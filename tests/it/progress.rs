//! The live display: under a pseudo-terminal it updates while the run goes on and gives way to
//! the summary at the end; without a terminal not one escape code is printed.

use std::time::Duration;

use crate::common::*;

/// `text` without ANSI escape sequences (CSI `ESC [ ... letter`) and carriage returns.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => out.push('\n'),
            c => out.push(c),
        }
    }
    out
}

/// The distinct `images N/M` counters drawn, in order of first appearance.
fn counters(plain: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for (i, _) in plain.match_indices("images ") {
        let rest = &plain[i + "images ".len()..];
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '/')).unwrap_or(rest.len());
        let c = &rest[..end];
        if c.contains('/') && !seen.iter().any(|s| s == c) {
            seen.push(c.to_string());
        }
    }
    seen
}

#[test]
fn live_display_updates_on_a_terminal_and_ends_with_the_summary() {
    let src = Registry::start();
    let dst = Registry::start();
    // The source answers at ~6 MiB/s, so each 3 MiB layer is in flight long enough to be drawn.
    let sp = Proxy::start_with(&src.addr(), ProxyOpts { rate: 6 << 20, ..ProxyOpts::default() });
    let imgs: Vec<Image> = (0..4).map(|i| push_big_image(src.api(), "live/app", &format!("v{i}"), 3)).collect();
    let job = Job::new(
        &[AuthEntry::insecure(&sp.addr()), AuthEntry::insecure(&dst.addr())],
        &images_yaml_values(&[(sp.repo("live/app"), dst.repo("live/app"))]),
    );
    let run =
        Running::spawn_in_pty(&job.args(&["--proc", "2"]), &[("TERM", "xterm-256color")]).wait(Duration::from_secs(90));
    run.assert_ok();
    let raw = run.stdout.clone();
    assert!(raw.contains("\u{1b}["), "a terminal gets a live display (escape codes):\n{raw:?}");
    let plain = strip_ansi(&raw);
    if std::env::var_os("SHOW_DISPLAY").is_some() {
        eprintln!("{plain}"); // to see what the display drew: SHOW_DISPLAY=1 cargo test progress -- --nocapture
    }

    // (Before the tag list is in, the display reads "images 0/0".)
    let drawn: Vec<String> = counters(&plain).into_iter().filter(|c| c != "0/0").collect();
    assert!(drawn.len() >= 2, "the display updates (seen {drawn:?}):\n{plain}");
    assert!(drawn.iter().all(|c| c.ends_with("/4")), "it counts the images the rule found: {drawn:?}\n{plain}");
    assert!(plain.contains("MiB at ") && plain.contains(" in flight"), "bytes and rate are shown:\n{plain}");
    // A bar for a large layer in flight, named by image and short digest.
    let short = |d: &str| d["sha256:".len()..][..12].to_string();
    let layer = short(&imgs[0].layers[0]);
    let bars = imgs.iter().filter(|i| plain.contains(&short(&i.layers[0]))).count();
    assert!(bars >= 1, "a bar per large layer in flight (e.g. {layer}):\n{plain}");
    // Finished lines scroll above it; the summary comes last, after the display is cleared.
    assert!(plain.matches("synced ").count() >= 4, "{plain}");
    let last = plain.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(
        last.contains("Synchronization finished, 0 images failed"),
        "ends with the summary, got {last:?}:\n{plain}"
    );
    for (i, img) in imgs.iter().enumerate() {
        assert_image_copied(src.api(), dst.api(), img, "live/app", &format!("v{i}"));
    }
}

#[test]
fn no_terminal_no_escape_codes() {
    let src = Registry::start();
    let dst = Registry::start();
    push_big_image(src.api(), "plain/app", "v1", 2);
    push_simple(src.api(), "plain/app", "v2");
    let job = job(&[&src, &dst], &[(&src.repo("plain/app"), &[&dst.repo("plain/app")])]);
    let run = job.run_within(60, &[]);
    run.assert_ok();
    let out = run.output();
    assert!(!out.contains('\u{1b}') && !out.contains('\r'), "no escape codes without a terminal:\n{out:?}");
    assert!(out.contains("synced ") && out.contains("Synchronization finished"), "{out}");

    // Under a terminal but with --log FILE or --quiet: no display either.
    let log = job.dir.join("run.log");
    let run = Running::spawn_in_pty(&job.args(&["--force", "--log", p(&log)]), &[("TERM", "xterm")])
        .wait(Duration::from_secs(60));
    run.assert_ok();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains('\u{1b}') && !run.stdout.contains('\u{1b}'), "{text:?} {:?}", run.stdout);
    let run = Running::spawn_in_pty(&job.args(&["--force", "-q"]), &[("TERM", "xterm")]).wait(Duration::from_secs(60));
    run.assert_ok();
    assert!(!run.stdout.contains('\u{1b}'), "--quiet shows no display: {:?}", run.stdout);
}
