//! What a run changed in a layout's `index.json`, kept until the file is next rewritten and then
//! replayed on the file as it is on disk at that moment: another process writing the same
//! directory (a parallel shard) may have added or removed entries since it was read, and those
//! must survive our rewrite as ours survive theirs.

use super::index::{Entry, Index};
use crate::digest::Digest;

/// One change to the entries.
#[derive(Clone, Debug)]
pub enum Op {
    /// An entry stored (replacing the one with the same name and tag, or untagged digest).
    Put(Entry),
    /// The entry of `tag` of the image `name` removed.
    DeleteTag { name: String, tag: String },
    /// Every entry of a digest removed.
    DeleteDigest(Digest),
}

/// Apply `ops`, in order, to `index`.
pub fn replay(ops: &[Op], index: &mut Index) {
    for op in ops {
        match op {
            Op::Put(e) => {
                index.put(e.clone());
            }
            Op::DeleteTag { name, tag } => index.entries.retain(|e| !e.is(name, tag)),
            Op::DeleteDigest(d) => index.entries.retain(|e| e.digest != *d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::MediaType;
    use serde_json::Value;

    #[test]
    fn ours_are_replayed_over_theirs_and_theirs_stay() {
        let m = MediaType::new("m");
        let e = |name: &str, tag: &str, d: &[u8]| Entry::new(name, Some(tag), &Digest::of(d), 1, &m, &Value::Null);
        let mut on_disk = Index::default();
        on_disk.put(e("r/theirs", "v1", b"t"));
        on_disk.put(e("r/ours", "old", b"o"));
        on_disk.put(e("r/ours", "v1", b"x"));
        let ops = [
            Op::Put(e("r/ours", "v1", b"y")),
            Op::Put(e("r/ours", "v2", b"z")),
            Op::DeleteTag { name: "r/ours".into(), tag: "old".into() },
        ];
        replay(&ops, &mut on_disk);
        let tags = |n: &str| {
            let mut t = on_disk.tags(n);
            t.sort();
            t
        };
        assert_eq!(tags("r/theirs"), ["v1"]);
        assert_eq!(tags("r/ours"), ["v1", "v2"]);
        assert_eq!(on_disk.find("r/ours", "v1").unwrap().digest, Digest::of(b"y"));
        replay(&[Op::DeleteDigest(Digest::of(b"t"))], &mut on_disk);
        assert!(on_disk.tags("r/theirs").is_empty());
    }
}
