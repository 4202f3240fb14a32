//! Every place images live in a run, by [`Location`]: the registry clients (created on first
//! use, see [`Registries`]) and the OCI layouts the rules name (opened up front, so a missing
//! or unusable one fails the run before any request). The engine asks it for the [`Store`] of
//! a repository and never learns which kind it got.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::layout::{Base, Layout, LayoutSpec};
use crate::reference::{Location, Repository};
use crate::registry::Registries;
use crate::store::{Error, Store};

pub struct Stores {
    registries: Registries,
    /// The layouts of the run.
    layouts: HashMap<Location, Arc<Layout>>,
}

impl Stores {
    /// The registries of a run, and no layout.
    pub fn new(registries: Registries) -> Stores {
        Stores { registries, layouts: HashMap::new() }
    }

    /// Open the run's layouts; `base` (`--base`) applies to those written.
    pub fn with_layouts(mut self, specs: &[LayoutSpec], base: Option<&Path>) -> Result<Stores, Error> {
        let base = base.map(Base::load).transpose()?.map(Arc::new);
        for spec in specs {
            let layout = Layout::open(spec, base.clone())?;
            self.layouts.insert(spec.location.clone(), Arc::new(layout));
        }
        Ok(self)
    }

    /// Where `repo` lives: its registry's client, or its layout.
    pub fn get(&self, repo: &Repository) -> Arc<dyn Store> {
        match &repo.location {
            Location::Registry(host) => self.registries.client(host, repo),
            layout => match self.layouts.get(layout) {
                Some(l) => l.clone(),
                None => unreachable!("every layout a rule names is opened before the run: {layout}"),
            },
        }
    }

    /// The end of the run: layouts written out (archives made unless `interrupted`). Returns
    /// notes for the summary line; an error when a layout could not be completed.
    pub fn finish(&self, interrupted: bool) -> Result<Vec<String>, Error> {
        let mut layouts: Vec<&Arc<Layout>> = self.layouts.values().collect();
        layouts.sort_by(|a, b| a.location.cmp(&b.location));
        let mut notes = Vec::new();
        for layout in layouts {
            notes.extend(layout.finish(interrupted)?);
        }
        Ok(notes)
    }
}
