//! Ordered access rules: the first rule whose users, sources, methods and paths all match
//! decides; no match denies. Paths are globs over canonical paths, compared without regard
//! to ASCII case (Orthanc's routes are lower-case; refusing `/TOOLS/...` costs nothing).

use std::net::IpAddr;

use http::Method;

use super::identity::Caller;
pub use crate::config::{Action, Glob, Rule, UserMatch};
use crate::server::unmap;

/// What the rules decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    Allow(&'a str),
    Deny(&'a str),
    NoMatch,
}

impl Rule {
    fn matches(&self, caller: &Caller, source: IpAddr, method: &Method, path: &[&str]) -> bool {
        self.users.iter().any(|u| caller.is(u))
            && (self.sources.is_empty() || self.sources.iter().any(|n| n.contains(&source)))
            && (self.methods.is_empty() || self.methods.contains(method))
            && self.paths.iter().any(|g| g.matches(path))
    }
}

/// First match wins (like the Lua filter of the Orthanc book, and firewall rule lists);
/// `path` holds the segments of the canonical path.
pub fn evaluate<'a>(
    rules: &'a [Rule],
    caller: &Caller,
    source: IpAddr,
    method: &Method,
    path: &[&str],
) -> Verdict<'a> {
    let source = unmap(source);
    for rule in rules {
        if rule.matches(caller, source, method, path) {
            return match rule.action {
                Action::Allow => Verdict::Allow(&rule.name),
                Action::Deny => Verdict::Deny(&rule.name),
            };
        }
    }
    Verdict::NoMatch
}

#[cfg(test)]
mod tests;
