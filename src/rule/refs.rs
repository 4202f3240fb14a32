//! The source references of a rule's expansion, in the order of its images, packed.
//!
//! Why packed: a rule of 100,000 listed tags keeps its references to the end of the run (an
//! image is rebuilt from its rule and reference when needed, see the engine's record). As
//! strings they cost about 56 bytes a tag (a `String` and its own allocation); packed, the
//! tags' bytes and one offset each, about 12.

use crate::reference::Reference;

/// References by position: listed tags packed, or the few a rule names itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refs {
    /// Tags: their bytes one after another, and where each ends.
    Tags { text: String, ends: Vec<u32> },
    /// Anything else (a digest among them): as they are.
    Named(Vec<Reference>),
}

impl Refs {
    /// Listed tags, packed.
    pub fn tags<S: AsRef<str>>(tags: impl IntoIterator<Item = S>) -> Refs {
        let (mut text, mut ends) = (String::new(), Vec::new());
        for t in tags {
            text.push_str(t.as_ref());
            ends.push(text.len() as u32);
        }
        text.shrink_to_fit();
        ends.shrink_to_fit();
        Refs::Tags { text, ends }
    }

    pub fn len(&self) -> usize {
        match self {
            Refs::Tags { ends, .. } => ends.len(),
            Refs::Named(refs) => refs.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th reference.
    pub fn get(&self, i: usize) -> Reference {
        match self {
            Refs::Tags { text, ends } => {
                let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                Reference::Tag(text[start..ends[i] as usize].to_string())
            }
            Refs::Named(refs) => refs[i].clone(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Reference> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl From<Vec<Reference>> for Refs {
    /// Packed when they are all tags.
    fn from(refs: Vec<Reference>) -> Refs {
        if refs.iter().all(|r| matches!(r, Reference::Tag(_))) {
            Refs::tags(refs.iter().map(|r| r.as_str()))
        } else {
            Refs::Named(refs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_tags_come_back_as_they_went_in() {
        let refs = Refs::tags(["v1", "", "release-2.0", "ü"]);
        let back: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
        assert_eq!(back, ["v1", "", "release-2.0", "ü"]);
        assert_eq!((refs.len(), Refs::tags(Vec::<String>::new()).is_empty()), (4, true));
        let d = Reference::Digest(crate::digest::Digest::of(b"x"));
        let named = Refs::from(vec![Reference::Tag("a".into()), d.clone()]);
        assert_eq!(named, Refs::Named(vec![Reference::Tag("a".into()), d.clone()]));
        assert_eq!(named.get(1), d);
        assert!(matches!(Refs::from(vec![Reference::Tag("a".into())]), Refs::Tags { .. }));
    }
}
