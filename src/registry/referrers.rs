//! The OCI 1.1 referrers API: what refers to a manifest, as one index (pages merged). Whether a
//! registry has the API at all is read from how it answers (see [`Client::referrers`]).

use super::auth::scopes;
use super::client::Body;
use super::error;
use super::http::header;
use super::http::{encode_query, next_link};
use super::Client;
use crate::digest::Digest;
use crate::manifest::{MediaType, MAX_MANIFEST_BYTES};
use crate::store::{Access, Error, ErrorKind, ReferrersAnswer};

/// A safety stop against a referrers listing whose `Link` never ends.
const MAX_REFERRER_PAGES: usize = 1000;

impl Client {
    /// The referrers API (OCI 1.1): the index of what refers to `digest` (pages the registry
    /// splits with `Link: <…>; rel="next"` merged into one), or `None` when the registry has no
    /// such API (a registry that has it never answers 404; older ones answer 404, some 400, 405
    /// or 501). With `artifact_type` the registry may filter; callers filter again, as the spec
    /// lets a registry ignore it.
    pub(crate) fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&MediaType>,
        access: Access,
    ) -> Result<ReferrersAnswer, Error> {
        let what = format!("GET referrers {repo}@{digest}");
        let query = artifact_type.map(|t| format!("?artifactType={}", encode_query(t.as_str()))).unwrap_or_default();
        let mut url = self.url(&format!("/v2/{repo}/referrers/{digest}{query}"));
        let invalid = |m: String| Error::new(&self.registry, &what, ErrorKind::Invalid(m));
        let mut merged: Option<serde_json::Value> = None;
        for _ in 0..MAX_REFERRER_PAGES {
            let page = self.retrying(&what, || {
                let mut r = self.send(
                    "GET",
                    &url,
                    &scopes(access, repo),
                    &[("Accept", MediaType::OCI_INDEX.as_str())],
                    Body::Empty,
                    &what,
                )?;
                let status = r.status().as_u16();
                if status == 200 {
                    let next = header(&r, "link").and_then(|l| next_link(&l));
                    return Ok(Ok((self.read_body(r, MAX_MANIFEST_BYTES, &what)?, next)));
                }
                let e = error::status(&self.registry, &what, &mut r);
                match (status, &e.kind) {
                    _ if merged.is_some() => Err(e),
                    // A registry error: the repository (or manifest) is not known there yet.
                    (404, ErrorKind::Status { errors, .. }) if !errors.is_empty() => Ok(Err(ReferrersAnswer::Unknown)),
                    // No such route: a registry without the API.
                    (400 | 404 | 405 | 406 | 501, _) => Ok(Err(ReferrersAnswer::NoApi)),
                    (403, _) => Ok(Err(ReferrersAnswer::Unknown)),
                    _ => Err(e),
                }
            })?;
            let (bytes, next) = match page {
                Ok(p) => p,
                Err(answer) => return Ok(answer),
            };
            let mut doc: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| invalid(format!("invalid referrers index: {e}")))?;
            match (&mut merged, doc.get_mut("manifests").and_then(|m| m.as_array_mut())) {
                (None, Some(_)) => merged = Some(doc),
                (Some(all), Some(more)) => {
                    let more = std::mem::take(more);
                    all["manifests"].as_array_mut().expect("checked on the first page").extend(more);
                }
                (_, None) => return Err(invalid("referrers answer has no manifests array".into())),
            }
            match next {
                Some(n) => url = self.resolve(&n),
                None => {
                    return serde_json::to_vec(&merged).map(ReferrersAnswer::Listed).map_err(|e| invalid(e.to_string()))
                }
            }
        }
        Err(invalid("referrers pagination does not end".into()))
    }
}
