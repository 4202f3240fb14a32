//! Failures: bad credentials, malformed or missing files, invalid rules, missing images and
//! unreachable registries. Each must give a non-zero exit code, a clear line naming what is at
//! fault, no panic, and no secret in the output.

use crate::common::*;

const WRONG: &str = "Wr0ng-P4ss-xyzzy";

fn assert_auth_failure(run: &Run, reg: &Registry) {
    run.assert_failed();
    let err = &run.stderr;
    assert!(err.contains(&reg.addr()), "stderr should name {}:\n{run}", reg.addr());
    assert!(
        contains_any_ci(err, &["unauthorized", "authentication"]),
        "stderr should say unauthorized/authentication:\n{run}"
    );
    assert_no_secrets(&[("output", &run.output())], &[WRONG], &[("syncer", WRONG), ("reader", WRONG)]);
    assert!(run.failed_count().is_some_and(|n| n > 0), "summary line should count failures:\n{run}");
}

#[test]
fn wrong_password_on_destination() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryOpts::htpasswd("syncer", "right-pass"));
    push_simple(src.api(), "app/x", "v1");
    let auth = vec![src.auth_entry(), AuthEntry::insecure(&dst.addr()).with_creds("syncer", WRONG)];
    let job = Job::new(&auth, &images_yaml(&[(&src.repo("app/x:v1"), &[&dst.repo("app/x")])]));
    let run = job.run(&["--retries", "0"]);
    assert_auth_failure(&run, &dst);
    assert_eq!(dst.api().head_manifest("app/x", "v1"), None);
}

#[test]
fn wrong_password_on_source() {
    let src = Registry::start_with(RegistryOpts::htpasswd("reader", "right-pass"));
    let dst = Registry::start();
    push_simple(src.api(), "app/y", "v1");
    let auth = vec![AuthEntry::insecure(&src.addr()).with_creds("reader", WRONG), dst.auth_entry()];
    let job = Job::new(&auth, &images_yaml(&[(&src.repo("app/y:v1"), &[&dst.repo("app/y")])]));
    let run = job.run(&["--retries", "0"]);
    assert_auth_failure(&run, &src);
    assert!(dst.api().tags("app/y").is_empty());
}

#[test]
fn wrong_password_with_log_file_keeps_secret_out_of_the_log() {
    let src = Registry::start();
    let dst = Registry::start_with(RegistryOpts::htpasswd("syncer", "right-pass"));
    push_simple(src.api(), "app/z", "v1");
    let auth = vec![src.auth_entry(), AuthEntry::insecure(&dst.addr()).with_creds("syncer", WRONG)];
    let job = Job::new(&auth, &images_yaml(&[(&src.repo("app/z:v1"), &[&dst.repo("app/z")])]));
    let log = job.dir.join("sync.log");
    let run = job.run(&["--log", p(&log), "--retries", "0"]);
    run.assert_failed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let all = format!("{text}{}", run.output());
    assert!(!all.contains(WRONG), "password leaked:\n{all}");
    assert!(
        contains_any_ci(&all, &["unauthorized", "authentication"]),
        "log should say unauthorized/authentication:\n{all}"
    );
    assert!(Run::failed_count_in(&all).is_some_and(|n| n > 0), "summary line missing:\n{all}");
}

fn assert_names_file(run: &Run, path: &std::path::Path) {
    run.assert_failed();
    assert!(run.stderr.contains(p(path)), "stderr should name {}:\n{run}", path.display());
    assert!(!run.stderr.contains("panicked"), "{run}");
    let lines = run.stderr.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(lines <= 5, "a config error should be reported in a line or two:\n{run}");
}

#[test]
fn malformed_images_file() {
    let src = Registry::start();
    let job = job(&[&src], &[]);
    let bad = job.dir.write("broken-images.yaml", "a: [unclosed\n  - : : {\n");
    let run = run_syncer(&["--auth", p(&job.auth), "--images", p(&bad)]);
    assert_names_file(&run, &bad);
}

#[test]
fn images_file_with_wrong_shape() {
    let src = Registry::start();
    let job = job(&[&src], &[]);
    let bad = job.dir.write("shape-images.yaml", "- just\n- a list\n");
    let run = run_syncer(&["--auth", p(&job.auth), "--images", p(&bad)]);
    assert_names_file(&run, &bad);
}

#[test]
fn malformed_auth_file() {
    let src = Registry::start();
    let dst = Registry::start();
    let job = job(&[&src, &dst], &[(&src.repo("a/b:v1"), &[&dst.repo("a/b")])]);
    let bad = job.dir.write("broken-auth.json", "{\"127.0.0.1\": {\"insecure\": tru");
    let run = run_syncer(&["--auth", p(&bad), "--images", p(&job.images)]);
    assert_names_file(&run, &bad);
}

#[test]
fn missing_images_file() {
    let src = Registry::start();
    let job = job(&[&src], &[]);
    let missing = job.dir.join("no-such-images.yaml");
    let run = run_syncer(&["--auth", p(&job.auth), "--images", p(&missing)]);
    assert_names_file(&run, &missing);
}

#[test]
fn rename_with_mismatched_tag_counts() {
    let src = Registry::start();
    let dst = Registry::start();
    for t in ["a", "b", "c"] {
        push_simple(src.api(), "mm/source", t);
    }
    let job = job(&[&src, &dst], &[(&src.repo("mm/source:a,b,c"), &[&dst.repo("mm/target:x,y")])]);
    let run = job.run(&["--retries", "0"]);
    run.assert_failed();
    assert!(
        run.stderr.contains("mm/source") || run.stderr.contains("mm/target"),
        "the error should name the rule:\n{run}"
    );
    assert!(dst.api().tags("mm/target").is_empty());
}

#[test]
fn missing_source_tag_fails_but_other_rules_complete() {
    let src = Registry::start();
    let dst = Registry::start();
    let good = push_simple(src.api(), "ok/app", "v1");
    push_simple(src.api(), "bad/app", "v1");
    let job = job(
        &[&src, &dst],
        &[
            (&src.repo("bad/app:does-not-exist"), &[&dst.repo("bad/app")]),
            (&src.repo("ok/app:v1"), &[&dst.repo("ok/app")]),
        ],
    );
    let success = job.dir.join("success.yaml");
    let run = job.run(&["--retries", "1", "--output-success-images", p(&success)]);
    run.assert_failed();
    let text = std::fs::read_to_string(&success).unwrap_or_default();
    assert!(
        text.contains(&src.repo("ok/app:v1")) && !text.contains("bad/app"),
        "the success-images file lists exactly the synced images:\n{text}"
    );
    assert!(
        run.stderr.contains("bad/app") && run.stderr.contains("does-not-exist"),
        "the error should name the missing reference:\n{run}"
    );
    assert!(run.failed_count().is_some_and(|n| n > 0), "{run}");
    assert_image_copied(src.api(), dst.api(), &good, "ok/app", "v1");
    assert!(dst.api().tags("bad/app").is_empty());
}

#[test]
fn missing_source_repository_fails() {
    let src = Registry::start();
    let dst = Registry::start();
    let job = job(&[&src, &dst], &[(&src.repo("ghost/repo"), &[&dst.repo("ghost/repo")])]);
    let run = job.run(&["--retries", "0"]);
    run.assert_failed();
    assert!(run.stderr.contains("ghost/repo"), "{run}");
}

#[test]
fn unreachable_source_registry() {
    let dst = Registry::start();
    // A port nothing listens on.
    let dead = format!("127.0.0.1:{}", free_port());
    let auth = vec![AuthEntry::insecure(&dead), dst.auth_entry()];
    let job = Job::new(&auth, &images_yaml(&[(&format!("{dead}/some/app:v1"), &[&dst.repo("some/app")])]));
    let run = job.run(&["--retries", "0"]);
    run.assert_failed();
    assert!(run.stderr.contains(&dead), "stderr should name {dead}:\n{run}");
    assert!(run.failed_count().is_some_and(|n| n > 0), "{run}");
}

#[test]
fn unknown_flag_is_rejected() {
    let run = run_syncer(&["--no-such-flag"]);
    run.assert_failed();
    assert!(run.output().contains("no-such-flag"), "{run}");
}

#[test]
fn secrets_absent_at_trace_log_level() {
    let src = Registry::start_with(RegistryOpts::htpasswd("tr-reader", "trace-src-secret"));
    let dst = Registry::start_with(RegistryOpts::htpasswd("tr-writer", "trace-dst-secret"));
    push_simple(src.api(), "trace/app", "v1");
    push_index(src.api(), "trace/app", "multi", IndexKind::List, &[("linux", "amd64", ""), ("linux", "arm64", "")]);
    let check = |run: &Run, log: &std::path::Path| {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert_no_secrets(
            &[("output", &run.output()), ("--log file", &log)],
            &["trace-src-secret", "trace-dst-secret", WRONG],
            &[("tr-reader", "trace-src-secret"), ("tr-writer", "trace-dst-secret"), ("tr-writer", WRONG)],
        );
    };
    let rules = [(src.repo("trace/app"), dst.repo("trace/app"))];
    let images = images_yaml(&[(&rules[0].0, &[&rules[0].1])]);

    // A successful run.
    let ok = Job::new(&auth_for(&[&src, &dst]), &images);
    let log = ok.dir.join("trace.log");
    let run = run_syncer_env(&ok.args(&["--log", p(&log)]), &[("RUST_LOG", "trace")]);
    run.assert_ok();
    check(&run, &log);

    // A run with a wrong destination password.
    let bad = Job::new(&[src.auth_entry(), AuthEntry::insecure(&dst.addr()).with_creds("tr-writer", WRONG)], &images);
    let run = run_syncer_env(&bad.args(&["--retries", "0"]), &[("RUST_LOG", "trace")]);
    run.assert_failed();
    check(&run, &bad.dir.join("none"));
}

#[test]
fn destination_repository_unknown_or_denied_fails_once_with_a_reason() {
    let src = Registry::start();
    let dst = Registry::start();
    let proxy = Proxy::faulty(
        &dst.addr(),
        vec![
            FaultRule::always(Match::UploadStart, Fault::Code(404, "NAME_UNKNOWN")).on("/v2/noproject/"),
            FaultRule::always(Match::UploadStart, Fault::Code(403, "DENIED")).on("/v2/readonly/"),
        ],
    );
    let img = push_simple(src.api(), "push/app", "v1");
    let repo = |r: &str| format!("{}/{r}", proxy.addr());
    let images = images_yaml(&[
        (&src.repo("push/app:v1"), &[&repo("noproject/app")]),
        (&src.repo("push/app:v1"), &[&repo("readonly/app")]),
        (&src.repo("push/app:v1"), &[&repo("fine/app")]),
    ]);
    let job = Job::new(&[AuthEntry::insecure(&src.addr()), AuthEntry::insecure(&proxy.addr())], &images);
    let run = job.run_within(60, &["--retries", "2"]);
    run.assert_failed();
    assert_eq!(run.failed_count(), Some(2), "{run}");
    let line = |needle: &str| run.stderr.lines().find(|l| l.contains("failed") && l.contains(needle)).map(String::from);
    let unknown = line("noproject/app").unwrap_or_else(|| panic!("no failure line for noproject:\n{run}"));
    assert!(unknown.contains("NAME_UNKNOWN") && unknown.contains("create it first"), "{unknown}");
    let denied = line("readonly/app").unwrap_or_else(|| panic!("no failure line for readonly:\n{run}"));
    assert!(denied.contains("DENIED") && denied.contains("permission"), "{denied}");
    // Refusals are not retried: at most one upload start per blob, across all passes (a
    // mount attempt from fine/app, on the same registry, may come first).
    let starts = |prefix: &str| {
        let is_start = |r: &&ProxyRequest| r.is(Match::UploadStart) && !r.uri.contains("mount=");
        proxy.requests().iter().filter(is_start).filter(|r| r.path().starts_with(prefix)).count()
    };
    let blobs = img.blobs().len();
    for prefix in ["/v2/noproject/", "/v2/readonly/"] {
        let n = starts(prefix);
        assert!((1..=blobs).contains(&n), "{prefix}: {n} upload starts for {blobs} blobs:\n{run}");
    }
    assert_image_copied(src.api(), dst.api(), &img, "fine/app", "v1");
}
