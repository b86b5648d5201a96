//! Residency policies: where a request may be processed.
//!
//! A policy is an allowed set of regions (or "anywhere") minus excluded regions.
//! A target passes only if *every* region that may process it is allowed.
//! Policies only narrow: combining two intersects them.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::data::Catalog;

/// A residency policy, already expanded to region codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Name shown in errors and logs.
    pub name: String,
    /// Allowed regions; `None` allows every region.
    pub allow: Option<BTreeSet<String>>,
    /// Regions never allowed, whatever `allow` says.
    pub exclude: BTreeSet<String>,
    /// The terms the policy was written with, for display.
    pub terms: Vec<String>,
}

/// A residency term that names no geography, zone or region.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown geography or region '{term}'; geographies and zones: {groups}; or a region code such as eu-west-3"
)]
pub struct UnknownTerm {
    /// The term as written.
    pub term: String,
    /// The valid geography and zone names.
    pub groups: String,
}

impl Policy {
    /// The policy that allows every region.
    pub fn unrestricted() -> Policy {
        Policy {
            name: "unrestricted".into(),
            allow: None,
            exclude: BTreeSet::new(),
            terms: Vec::new(),
        }
    }

    /// Builds a policy from terms: geography names (`eu`), zones (`jp`),
    /// region codes (`ca-central-1`) or `*` for anywhere.
    pub fn from_terms<S: AsRef<str>>(
        name: &str,
        catalog: &Catalog,
        allow: &[S],
        exclude: &[S],
    ) -> Result<Policy, UnknownTerm> {
        let allow_set = if allow.is_empty() || allow.iter().any(|t| t.as_ref() == "*") {
            None
        } else {
            let mut set = BTreeSet::new();
            for t in allow {
                set.extend(expand(catalog, t.as_ref())?);
            }
            Some(set)
        };
        let mut exclude_set = BTreeSet::new();
        for t in exclude {
            exclude_set.extend(expand(catalog, t.as_ref())?);
        }
        let mut terms: Vec<String> = allow.iter().map(|t| t.as_ref().to_string()).collect();
        terms.extend(exclude.iter().map(|t| format!("!{}", t.as_ref())));
        Ok(Policy {
            name: name.to_string(),
            allow: allow_set,
            exclude: exclude_set,
            terms,
        })
    }

    /// Whether a request may be processed in `region`.
    pub fn allows(&self, region: &str) -> bool {
        !self.exclude.contains(region) && self.allow.as_ref().is_none_or(|a| a.contains(region))
    }

    /// The regions of `set` this policy does not allow, sorted and unique
    /// (empty when all pass).
    pub fn outside<'a>(&self, set: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let out: BTreeSet<&String> = set.into_iter().filter(|r| !self.allows(r)).collect();
        out.into_iter().cloned().collect()
    }

    /// The policy allowing only what both allow.
    pub fn intersect(&self, other: &Policy) -> Policy {
        let allow = match (&self.allow, &other.allow) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (Some(a), Some(b)) => Some(a.intersection(b).cloned().collect()),
        };
        let name = match (self.is_unrestricted(), other.is_unrestricted()) {
            (true, _) => other.name.clone(),
            (_, true) => self.name.clone(),
            _ => format!("{} + {}", self.name, other.name),
        };
        let mut terms = self.terms.clone();
        terms.extend(other.terms.iter().cloned());
        Policy {
            name,
            allow,
            exclude: self.exclude.union(&other.exclude).cloned().collect(),
            terms,
        }
    }

    /// Whether the policy allows every region.
    pub fn is_unrestricted(&self) -> bool {
        self.allow.is_none() && self.exclude.is_empty()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            write!(f, "'{}'", self.name)
        } else {
            write!(f, "'{}' ({})", self.name, self.terms.join(", "))
        }
    }
}

fn expand(catalog: &Catalog, term: &str) -> Result<BTreeSet<String>, UnknownTerm> {
    let term = term.trim();
    if catalog.region(term).is_some() {
        return Ok(BTreeSet::from([term.to_string()]));
    }
    let set: BTreeSet<String> = catalog
        .regions()
        .iter()
        .filter(|r| r.in_group(term))
        .map(|r| r.code.clone())
        .collect();
    if set.is_empty() {
        let groups: Vec<&str> = catalog.groups().into_iter().collect();
        return Err(UnknownTerm {
            term: term.to_string(),
            groups: groups.join(", "),
        });
    }
    Ok(set)
}
