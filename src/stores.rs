//! Every place images live in a run, by [`Location`]: the registry clients (created on first
//! use, see [`Registries`]) and the OCI layouts the rules name (opened up front, so a missing
//! or unusable one fails the run before any request). The engine asks it for the [`Store`] of
//! a repository and never learns which kind it got.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::layout::{Base, Finished, InPlace, Layout, LayoutSpec, Status};
use crate::reference::{Location, Repository};
use crate::registry::Registries;
use crate::store::{Error, Store};

pub struct Stores {
    registries: Registries,
    /// The stores opened up front, by location: the run's layouts (and, in tests, stores of
    /// their own).
    opened: HashMap<Location, Arc<dyn Store>>,
    /// The layouts again, to be written out at the end, in the order of their locations.
    layouts: Vec<(Location, Arc<Layout>)>,
}

impl Stores {
    /// The registries of a run, and no layout.
    pub fn new(registries: Registries) -> Stores {
        Stores { registries, opened: HashMap::new(), layouts: Vec::new() }
    }

    /// Open the run's layouts; `base` (`--base`) applies to those written.
    pub fn with_layouts(mut self, specs: &[LayoutSpec], base: Option<&Path>) -> Result<Stores, Error> {
        let base = base.map(Base::load).transpose()?.map(Arc::new);
        for spec in specs {
            let layout = Arc::new(Layout::open(spec, base.clone())?);
            self.opened.insert(spec.location.clone(), layout.clone());
            self.layouts.push((spec.location.clone(), layout));
        }
        self.layouts.sort_by(|a, b| a.1.location.cmp(&b.1.location));
        Ok(self)
    }

    /// Serve `location` with `store` (a registry location too: it is then never asked over
    /// HTTP). For tests of the engine with stores of their own.
    pub fn with_store(mut self, location: Location, store: Arc<dyn Store>) -> Stores {
        self.opened.insert(location, store);
        self
    }

    /// Where `repo` lives: its registry's client, or its layout.
    pub fn get(&self, repo: &Repository) -> Arc<dyn Store> {
        if let Some(store) = self.opened.get(&repo.location) {
            return store.clone();
        }
        match &repo.location {
            Location::Registry(host) => self.registries.client(host, repo),
            layout => unreachable!("every layout a rule names is opened before the run: {layout}"),
        }
    }

    /// What the run learned about how each registry takes uploads, by registry.
    pub fn learned(&self) -> Vec<(String, Vec<(&'static str, String)>)> {
        let mut out = self.registries.learned();
        for (location, store) in &self.opened {
            let facts = store.learned();
            if !facts.is_empty() {
                out.push((location.to_string(), facts));
            }
        }
        out
    }

    /// Another pass over failed tasks begins (see [`Registries::new_pass`]).
    pub fn new_pass(&self) {
        self.registries.new_pass();
    }

    /// The end of the run: every written layout written out (archives made unless
    /// `interrupted`), each whatever became of the others.
    pub fn finish(&self, interrupted: bool) -> Vec<BundleEnd> {
        self.layouts
            .iter()
            .filter(|(_, l)| l.writes())
            .map(|(location, l)| BundleEnd {
                location: location.clone(),
                result: l.finish(interrupted),
                layout: l.clone(),
            })
            .collect()
    }
}

/// How writing out one bundle ended: its status, or why it could not be completed.
pub struct BundleEnd {
    pub location: Location,
    pub result: Result<Finished, Error>,
    layout: Arc<Layout>,
}

impl BundleEnd {
    /// What stays in place of the bundle, which was not written out (an error, or an archive an
    /// interrupted run only staged); `None` when it was written out or had nothing to write.
    pub fn in_place(&self) -> Option<InPlace<'_>> {
        match &self.result {
            Ok(f) if f.status != Status::Kept => None,
            _ => Some(self.layout.in_place()),
        }
    }
}
