//! Read once, write many: a source whose images go to several destination registries serves
//! each blob once (the others are relayed from the first destination that has it), and a
//! destination that fails does not keep the others from completing.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;

/// Three repositories sharing a base layer, two tags each.
fn workload(src: &Registry) -> Vec<(String, String, Image)> {
    let base = random_bytes(unique_seed(), 20 * 1024);
    let mut out = Vec::new();
    for repo in ["fan/a", "fan/b", "fan/c"] {
        for tag in ["v1", "v2"] {
            let own = random_bytes(unique_seed(), 12 * 1024);
            let img = push_image_with_layers(src.api(), repo, tag, vec![base.clone(), own]);
            out.push((repo.to_string(), tag.to_string(), img));
        }
    }
    out
}

/// Source blob GETs by digest.
fn blob_gets(reqs: &[Request]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in reqs.iter().filter(|r| r.method == "GET" && r.path.contains("/blobs/sha256:")) {
        let digest = r.path.rsplit('/').next().unwrap_or_default().to_string();
        *out.entry(digest).or_default() += 1;
    }
    out
}

/// An images file with one rule per workload repository, each to the same path at every
/// destination (`host:port`).
fn fan_out(src: &Registry, dsts: &[String]) -> String {
    let mut yaml = String::new();
    for repo in ["fan/a", "fan/b", "fan/c"] {
        let to: Vec<String> = dsts.iter().map(|d| format!("{d}/{repo}")).collect();
        yaml.push_str(&format!("{}: [{}]\n", src.repo(repo), to.join(", ")));
    }
    yaml
}

#[test]
fn each_source_blob_is_read_once_for_two_destinations() {
    let src = Registry::start();
    let (d1, d2) = (Registry::start(), Registry::start());
    let images = workload(&src);
    let unique: BTreeSet<String> = images.iter().flat_map(|(_, _, i)| i.blobs()).collect();
    let job = Job::new(&auth_for(&[&src, &d1, &d2]), &fan_out(&src, &[d1.addr(), d2.addr()]));
    src.clear_requests();
    let run = job.run(&["--proc", "6"]);
    run.assert_ok();
    // Before the checks below, which read the source too.
    let gets = blob_gets(&src.requests());
    for (repo, tag, img) in &images {
        assert_image_copied(src.api(), d1.api(), img, repo, tag);
        assert_image_copied(src.api(), d2.api(), img, repo, tag);
    }
    let read: BTreeSet<String> = gets.keys().cloned().collect();
    assert_eq!(read, unique, "every blob of the workload was read from the source\n{run}");
    let twice: Vec<_> = gets.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "blobs read from the source more than once: {twice:?}\n{run}");
}

#[test]
fn a_destination_refusing_uploads_does_not_keep_the_other_from_completing() {
    let src = Registry::start();
    let (good, bad) = (Registry::start(), Registry::start());
    let proxy = Proxy::faulty(&bad.addr(), vec![FaultRule::always(Match::UploadStart, Fault::Status(500))]);
    let images = workload(&src);
    let entries = [src.auth_entry(), good.auth_entry(), AuthEntry::insecure(&proxy.addr())];
    let job = Job::new(&entries, &fan_out(&src, &[proxy.addr(), good.addr()]));
    let run = job.run(&["--retries", "0", "--proc", "4"]);
    run.assert_failed();
    for (repo, tag, img) in &images {
        assert_image_copied(src.api(), good.api(), img, repo, tag);
    }
    assert_eq!(run.failed_count(), Some(images.len() as u64), "each image failed at the refusing destination\n{run}");
    let puts = bad.requests().into_iter().filter(|r| r.method == "PUT" && r.path.contains("/manifests/")).count();
    assert_eq!(puts, 0, "nothing of an image reached the refusing destination");
}
