//! A registry that does not answer at all — it accepts connections and says nothing (the proxy
//! stalls every request), or refuses them — costs seconds, not a stall per request: after one
//! unanswered request and an unanswered probe (`GET /v2/`), its requests fail at once, each of
//! its images is named as failed (`error_class: unreachable`), and the other registries' images
//! still sync. A `--retries` pass asks it once more, and resumes if it answers. One stalled
//! request among answered ones is not a dead registry.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::*;

/// `n` tags `t00`, `t01`, … of one small image in `repo` of `reg`.
fn tags_of_one_image(reg: &Registry, repo: &str, n: usize) -> Vec<String> {
    let tags: Vec<String> = (0..n).map(|i| format!("t{i:02}")).collect();
    push_under_tags(reg.api(), repo, &tags.iter().map(String::as_str).collect::<Vec<_>>());
    tags
}

/// `repo:t00,t01,…` at `addr`.
fn rule_source(addr: &str, repo: &str, tags: &[String]) -> String {
    format!("{addr}/{repo}:{}", tags.join(","))
}

/// The run failed (exit 1) naming each of `tags` of `dead/app` at `dead` on a `failed:` line
/// that says it is not answering, with `error_class: unreachable` in the report; one warning
/// line (not a `failed:` one) says so for the registry.
fn assert_each_named_unreachable(run: &Run, dead: &str, tags: &[String], report: &std::path::Path) {
    assert_eq!(run.code, Some(1), "the dead registry's images fail the run:\n{run}");
    run.assert_no_panic();
    assert_eq!(run.failed_count(), Some(tags.len() as u64), "{run}");
    for tag in tags {
        let named = run.lines_with(&[&format!("failed: {dead}/dead/app:{tag} -> "), "not answering since"]);
        assert_eq!(named.len(), 1, "one failed: line names {dead}/dead/app:{tag} as not answering:\n{run}");
    }
    let failed_line = format!("failed: {dead}/");
    let said: Vec<String> =
        run.lines_with(&[dead, "not answering since"]).into_iter().filter(|l| !l.contains(&failed_line)).collect();
    assert_eq!(said.len(), 1, "one line says the registry is not answering:\n{run}");
    let text = std::fs::read_to_string(report).expect("report written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    let classes: BTreeMap<String, String> = v["images"]
        .as_array()
        .expect("images[]")
        .iter()
        .filter(|e| e["source"].as_str().is_some_and(|s| s.starts_with(dead)))
        .map(|e| (e["source"].as_str().unwrap_or_default().to_string(), e["error_class"].to_string()))
        .collect();
    assert_eq!(classes.len(), tags.len(), "{text}");
    assert!(classes.values().all(|c| c == "\"unreachable\""), "{classes:?}");
}

/// A healthy source with three images, its rule (all tags of `ok/app`), and the images.
fn healthy_source() -> (Registry, Vec<Image>) {
    let src = Registry::start();
    let imgs = ["a", "b", "c"].iter().map(|t| push_simple(src.api(), "ok/app", t)).collect();
    (src, imgs)
}

#[test]
fn a_registry_that_never_answers_fails_its_images_within_two_stall_timeouts() {
    let (ok, imgs) = healthy_source();
    let dst = Registry::start();
    // The images are there, behind a proxy that never answers anything (probes included).
    let hidden = Registry::start();
    let tags = tags_of_one_image(&hidden, "dead/app", 50);
    let dead = Proxy::faulty(&hidden.addr(), vec![FaultRule::always(Match::Any, Fault::StallHead)]);
    let rules =
        [(ok.repo("ok/app"), dst.repo("ok/app")), (rule_source(&dead.addr(), "dead/app", &tags), dst.repo("dead/app"))];
    let job =
        Job::new(&[ok.auth_entry(), dst.auth_entry(), AuthEntry::insecure(&dead.addr())], &images_yaml_values(&rules));
    let report = job.dir.join("report.json");
    // One stall and one probe: about 10 s, at --retries 2 (each pass right after: no new probe).
    let started = Instant::now();
    let run = job.run_within(15, &["--stall-timeout", "5", "--proc", "8", "--report", p(&report)]);
    eprintln!("50 images from a silent registry: failed in {:?}", started.elapsed());
    assert_each_named_unreachable(&run, &dead.addr(), &tags, &report);
    for (img, tag) in imgs.iter().zip(["a", "b", "c"]) {
        assert_image_copied(ok.api(), dst.api(), img, "ok/app", tag);
    }
    let asked = dead.requests();
    assert!(asked.len() <= 8 + 1, "at most one request per worker and one probe reached it: {asked:#?}");
    assert_eq!(asked.iter().filter(|r| r.path() == "/v2/").count(), 1, "one probe: {asked:#?}");
}

#[test]
fn a_registry_that_refuses_connections_fails_its_images_at_once() {
    let (ok, imgs) = healthy_source();
    let dst = Registry::start();
    // A port nothing listens on.
    let dead = format!("127.0.0.1:{}", free_port());
    let tags: Vec<String> = (0..50).map(|i| format!("t{i:02}")).collect();
    let rules =
        [(ok.repo("ok/app"), dst.repo("ok/app")), (rule_source(&dead, "dead/app", &tags), dst.repo("dead/app"))];
    let job = Job::new(&[ok.auth_entry(), dst.auth_entry(), AuthEntry::insecure(&dead)], &images_yaml_values(&rules));
    let report = job.dir.join("report.json");
    let run = job.run_within(15, &["--report", p(&report)]);
    assert_each_named_unreachable(&run, &dead, &tags, &report);
    for (img, tag) in imgs.iter().zip(["a", "b", "c"]) {
        assert_image_copied(ok.api(), dst.api(), img, "ok/app", tag);
    }
}

#[test]
fn a_retry_pass_asks_a_silent_registry_once_and_resumes_when_it_answers() {
    let dst = Registry::start();
    // Silent for its first request and the probe after it, then answering.
    let healing = Registry::start();
    let healed: Vec<Image> = ["h0", "h1", "h2"].iter().map(|t| push_simple(healing.api(), "dead/app", t)).collect();
    let hp = Proxy::faulty(&healing.addr(), vec![FaultRule::first(2, Match::Any, Fault::StallHead)]);
    // Another source, slow enough that the first pass goes on for more than --stall-timeout
    // after the silent one went down: the retry pass then asks it again.
    let slow = Registry::start();
    let others: Vec<Image> = ["s0", "s1", "s2", "s3"].iter().map(|t| push_simple(slow.api(), "slow/app", t)).collect();
    let sp = Proxy::start_with(&slow.addr(), ProxyOpts { delay: Duration::from_millis(300), ..ProxyOpts::default() });
    let rules =
        [(hp.repo("dead/app:h0,h1,h2"), dst.repo("dead/app")), (sp.repo("slow/app:s0,s1,s2,s3"), dst.repo("slow/app"))];
    let auth = [AuthEntry::insecure(&hp.addr()), AuthEntry::insecure(&sp.addr()), dst.auth_entry()];
    // One worker: the silent source's images come first, then the slow ones.
    let run = Job::new(&auth, &images_yaml_values(&rules))
        .run_within(60, &["--proc", "1", "--stall-timeout", "2", "--retries", "1"]);
    run.assert_ok();
    for (img, tag) in healed.iter().zip(["h0", "h1", "h2"]) {
        assert_image_copied(healing.api(), dst.api(), img, "dead/app", tag);
    }
    for (img, tag) in others.iter().zip(["s0", "s1", "s2", "s3"]) {
        assert_image_copied(slow.api(), dst.api(), img, "slow/app", tag);
    }
    run.assert_stderr_names(&hp.addr(), &["not answering since"]);
    run.assert_stderr_names(&hp.addr(), &["answering again"]);
    let probes: Vec<u16> = hp.requests().iter().filter(|r| r.path() == "/v2/").map(|r| r.status).collect();
    assert_eq!(probes.len(), 2, "a probe in the first pass (silent), one in the retry pass (answered): {probes:?}");
    assert_ne!(probes[1], 0, "the retry pass's probe was answered");
}

#[test]
fn one_stalled_request_of_a_registry_that_answers_the_probe_cuts_nothing_off() {
    let src = Registry::start();
    let dst = Registry::start();
    let imgs: Vec<Image> = ["a", "b", "c"].iter().map(|t| push_simple(src.api(), "once/app", t)).collect();
    let sp = Proxy::faulty(&src.addr(), vec![FaultRule::first(1, Match::Any, Fault::StallHead)]);
    let auth = [AuthEntry::insecure(&sp.addr()), dst.auth_entry()];
    let rules = [(sp.repo("once/app:a,b,c"), dst.repo("once/app"))];
    let run = Job::new(&auth, &images_yaml_values(&rules))
        .run_within(60, &["--proc", "1", "--stall-timeout", "2", "--retries", "0"]);
    run.assert_ok();
    for (img, tag) in imgs.iter().zip(["a", "b", "c"]) {
        assert_image_copied(src.api(), dst.api(), img, "once/app", tag);
    }
    let probes = sp.requests().iter().filter(|r| r.path() == "/v2/").count();
    assert_eq!(probes, 1, "the stall (nothing else was answered meanwhile) was followed by one probe, answered");
    assert!(run.lines_with(&["not answering"]).is_empty(), "{run}");
}
