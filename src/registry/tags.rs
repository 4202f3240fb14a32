//! Tag and catalog listings, following `Link: <…>; rel="next"` pagination to the end.

use super::auth::pull_scope;
use super::client::Body;
use super::error;
use super::http::header;
use super::http::next_link;
use super::Client;
use crate::store::{Error, ErrorKind};

/// Page size asked for; registries may ignore it or cap it.
const PAGE: usize = 1000;
/// A safety stop against a registry whose `Link` never ends.
const MAX_PAGES: usize = 100_000;

#[derive(serde::Deserialize)]
struct Page {
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

impl Client {
    /// Every tag of `repo`, in the order the registry returns them.
    pub(crate) fn list_tags(&self, repo: &str) -> Result<Vec<String>, Error> {
        let url = self.url(&format!("/v2/{repo}/tags/list?n={PAGE}"));
        self.list(&format!("list tags of {repo}"), url, &[pull_scope(repo)], |p| p.tags)
    }

    /// Every repository of the registry (`/v2/_catalog`; many registries restrict it).
    pub(crate) fn list_catalog(&self) -> Result<Vec<String>, Error> {
        let url = self.url(&format!("/v2/_catalog?n={PAGE}"));
        self.list("list the catalog", url, &["registry:catalog:*".to_string()], |p| p.repositories)
    }

    fn list(
        &self,
        what: &str,
        mut url: String,
        scopes: &[String],
        field: fn(Page) -> Option<Vec<String>>,
    ) -> Result<Vec<String>, Error> {
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let (page, next) = self.retrying(what, || {
                let mut r = self.send("GET", &url, scopes, &[("Accept", "application/json")], Body::Empty, what)?;
                if r.status().as_u16() != 200 {
                    return Err(error::status(&self.registry, what, &mut r));
                }
                let next = header(&r, "link").and_then(|l| next_link(&l));
                let body = self.read_body(r, 64 * 1024 * 1024, what)?;
                let page: Page = serde_json::from_slice(&body).map_err(|e| {
                    Error::new(&self.registry, what, ErrorKind::Invalid(format!("invalid listing: {e}")))
                })?;
                Ok((page, next))
            })?;
            all.extend(field(page).unwrap_or_default());
            match next {
                Some(n) => url = self.resolve(&n),
                None => return Ok(all),
            }
        }
        Err(Error::new(&self.registry, what, ErrorKind::Invalid("listing pagination does not end".into())))
    }
}
