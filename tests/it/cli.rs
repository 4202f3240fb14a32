//! Command line and configuration formats: summary line, `--log`, JSON auth/images files, the
//! legacy `--config` file, and `--images` without `--auth` for local registries.

use crate::common::*;

#[test]
fn summary_line_on_success() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "sum/app", "v1");
    let job = job(&[&src, &dst], &[(&src.repo("sum/app:v1"), &[&dst.repo("sum/app")])]);
    let run = job.run(&[]);
    run.assert_ok();
    assert!(
        run.stderr.contains("Synchronization finished, 0 images failed, cost"),
        "summary line missing from stderr:\n{run}"
    );
    assert_image_copied(src.api(), dst.api(), &img, "sum/app", "v1");
}

#[test]
fn quiet_prints_only_errors_and_the_summary() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "quiet/app", "v1");
    let job = job(
        &[&src, &dst],
        &[
            (&src.repo("quiet/app:v1,gone"), &[&dst.repo("quiet/app")]),
            (&src.repo("quiet/app:v1"), &[&dst.repo("q2/app")]),
        ],
    );
    let loud = job.run_within(60, &["--force"]);
    assert!(loud.stderr.lines().any(|l| l.contains("INFO") && !l.contains("Synchronization")), "{loud}");
    let run = job.run_within(60, &["--quiet", "--force"]);
    assert_eq!(run.code, Some(1), "{run}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(lines.iter().any(|l| l.contains("failed: ") && l.contains("quiet/app:gone")), "{run}");
    assert!(lines.iter().any(|l| l.contains("Synchronization finished, 1 images failed")), "{run}");
    assert!(lines.iter().any(|l| l.contains("image(s) synced")), "the totals line stays: {run}");
    for l in &lines {
        let summary = l.contains("Synchronization finished") || l.contains("image(s) synced");
        assert!(l.contains("ERROR") || summary, "--quiet printed {l:?}");
    }
    assert_image_copied(src.api(), dst.api(), &img, "q2/app", "v1");
}

#[test]
fn log_file_receives_the_summary() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "log/app", "v1");
    let job = job(&[&src, &dst], &[(&src.repo("log/app:v1"), &[&dst.repo("log/app")])]);
    let log = job.dir.join("out.log");
    let arg = format!("--log={}", p(&log));
    job.run(&[&arg]).assert_ok();
    let text = std::fs::read_to_string(&log).expect("log file written");
    assert!(
        text.contains("Synchronization finished, 0 images failed, cost"),
        "summary missing from the log file:\n{text}"
    );
    assert_image_copied(src.api(), dst.api(), &img, "log/app", "v1");
}

#[test]
fn json_auth_and_images_files() {
    let src = Registry::start_with(RegistryOpts::htpasswd("json-user", "json-pass"));
    let dst = Registry::start();
    let img = push_simple(src.api(), "js/app", "v1");
    let dir = TestDir::new("json");
    let auth =
        dir.write("auth.json", &serde_json::to_string_pretty(&auth_json_value(&auth_for(&[&src, &dst]))).unwrap());
    let images = serde_json::json!({
        src.repo("js/app:v1"): [dst.repo("js/app"), dst.repo("js/other:w")],
    });
    let images = dir.write("images.json", &images.to_string());
    run_syncer(&["--auth", p(&auth), "--images", p(&images)]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "js/app", "v1");
    assert_image_copied(src.api(), dst.api(), &img, "js/other", "w");
}

#[test]
fn yml_extension_is_accepted() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "yml/app", "v1");
    let dir = TestDir::new("yml");
    let auth = dir.write("auth.yml", &auth_yaml(&auth_for(&[&src, &dst])));
    let images = dir.write("images.yml", &images_yaml(&[(&src.repo("yml/app:v1"), &[&dst.repo("yml/app")])]));
    run_syncer(&["--auth", p(&auth), "--images", p(&images)]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "yml/app", "v1");
}

fn legacy_config(json: bool) {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryOpts::htpasswd("legacy", "legacy-pass"));
    let img = push_simple(src.api(), "legacy/app", "v1");
    let idx = push_index(
        src.api(),
        "legacy/app",
        "multi",
        IndexKind::OciIndex,
        &[("linux", "amd64", ""), ("linux", "arm64", "")],
    );
    let dir = TestDir::new("legacy");
    let config = serde_json::json!({
        "auth": auth_json_value(&auth_for(&[&src, &dst])),
        "images": { src.repo("legacy/app"): dst.repo("legacy/copy") },
    });
    let path = if json {
        dir.write("config.json", &serde_json::to_string_pretty(&config).unwrap())
    } else {
        let yaml = serde_yaml::to_string(&config).unwrap();
        dir.write("config.yaml", &yaml)
    };
    let run = run_syncer(&["--config", p(&path)]);
    run.assert_ok();
    assert!(!run.output().contains("legacy-pass"), "{run}");
    assert_image_copied(src.api(), dst.api(), &img, "legacy/copy", "v1");
    assert_index_copied(src.api(), dst.api(), &idx, "legacy/copy", "multi");
}

#[test]
fn legacy_config_json() {
    legacy_config(true);
}

#[test]
fn legacy_config_yaml() {
    legacy_config(false);
}

#[test]
fn images_without_auth_file_uses_http_for_localhost() {
    let src = Registry::start();
    let dst = Registry::start();
    let img = push_simple(src.api(), "noauth/app", "v1");
    let dir = TestDir::new("noauth");
    let images = dir.write("images.yaml", &images_yaml(&[(&src.repo("noauth/app:v1"), &[&dst.repo("noauth/app")])]));
    let arg = format!("--images={}", p(&images));
    run_syncer(&[&arg]).assert_ok();
    assert_image_copied(src.api(), dst.api(), &img, "noauth/app", "v1");
}

#[test]
fn help_exits_cleanly() {
    let run = run_syncer(&["--help"]);
    assert!(run.success(), "{run}");
    for flag in ["--auth", "--images", "--proc", "--retries", "--os", "--arch", "--force"] {
        assert!(run.output().contains(flag), "--help should mention {flag}:\n{run}");
    }
}
