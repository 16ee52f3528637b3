//! The import graph between the source files of one crate, read from the text (no compiler
//! needed): comments, string and char literals and `#[cfg(test)] mod` blocks are removed,
//! then `use` trees and inline paths are resolved to the file of the longest module prefix
//! they name. Names bound by `use` are followed (`use crate::http; http::guard::admit()` is an
//! edge to http/guard.rs). `main.rs` names the library as `pacsgate::`. The lexing is in
//! `rust_source`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[path = "rust_source.rs"]
mod rust_source;

use rust_source::{strip, tokens, use_tree, Tok};

pub struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn read(src: &Path) -> std::io::Result<Graph> {
        let mut files = Vec::new();
        walk(src, src, &mut files)?;
        let modules: BTreeMap<Vec<String>, String> = files
            .iter()
            .filter(|f| f.as_str() != "main.rs")
            .map(|f| (module_path(f), f.clone()))
            .collect();
        let mut edges = BTreeMap::new();
        for file in &files {
            let code = strip(&std::fs::read_to_string(src.join(file))?);
            let here = if file == "main.rs" {
                Vec::new()
            } else {
                module_path(file)
            };
            let mut resolver = Resolver::new(here, &code, file == "main.rs");
            let mut targets = BTreeSet::new();
            for path in resolver.paths(&code) {
                if let Some(target) = longest_module(&modules, &path) {
                    if target != file {
                        targets.insert(target.clone());
                    }
                }
            }
            edges.insert(file.clone(), targets);
        }
        Ok(Graph { edges })
    }

    pub fn files(&self) -> usize {
        self.edges.len()
    }

    /// Every strongly connected component of more than one file, each sorted.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut tarjan = Tarjan::default();
        for node in self.edges.keys() {
            if !tarjan.index.contains_key(node) {
                tarjan.visit(node, &self.edges);
            }
        }
        let mut out: Vec<Vec<String>> = tarjan
            .components
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|mut c| {
                c.sort();
                c
            })
            .collect();
        out.sort();
        out
    }

    /// The edges whose two ends are in the same given component.
    pub fn edges_within(&self, components: &[Vec<String>]) -> Vec<String> {
        let mut out = Vec::new();
        for component in components {
            for from in component {
                for to in self.edges.get(from).into_iter().flatten() {
                    if component.contains(to) {
                        out.push(format!("  {from} -> {to}"));
                    }
                }
            }
        }
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    out.sort();
    Ok(())
}

/// `lib.rs` -> [], `a.rs` and `a/mod.rs` -> [a], `a/b.rs` -> [a, b].
fn module_path(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.split('/').map(str::to_string).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn longest_module<'a>(
    modules: &'a BTreeMap<Vec<String>, String>,
    path: &[String],
) -> Option<&'a String> {
    (0..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

struct Resolver {
    here: Vec<String>,
    children: BTreeSet<String>,
    /// Names bound by `use` to crate paths.
    bound: BTreeMap<String, Vec<String>>,
    is_main: bool,
}

impl Resolver {
    fn new(here: Vec<String>, code: &str, is_main: bool) -> Resolver {
        let toks = tokens(code);
        let children = toks
            .windows(3)
            .filter_map(|w| match w {
                [Tok::Ident(m), Tok::Ident(name), Tok::Semi] if m == "mod" => Some(name.clone()),
                _ => None,
            })
            .collect();
        Resolver {
            here,
            children,
            bound: BTreeMap::new(),
            is_main,
        }
    }

    /// Every crate path the code names, absolute from the crate root.
    fn paths(&mut self, code: &str) -> Vec<Vec<String>> {
        let toks = tokens(code);
        let mut out = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            if toks[i] == Tok::Ident("use".into()) {
                let end = toks[i..]
                    .iter()
                    .position(|t| *t == Tok::Semi)
                    .map_or(toks.len(), |n| i + n);
                let mut trees = Vec::new();
                use_tree(&toks[i + 1..end], &[], &mut trees);
                for (path, alias) in trees {
                    if let Some(abs) = self.absolute(&path) {
                        if let Some(name) = alias {
                            self.bound.insert(name, abs.clone());
                        }
                        out.push(abs);
                    }
                }
                i = end + 1;
                continue;
            }
            // An inline path: ident (:: ident)+, not preceded by `::`.
            if let Tok::Ident(_) = &toks[i] {
                let preceded = i > 0 && toks[i - 1] == Tok::Path;
                let mut path = Vec::new();
                let mut j = i;
                while let Some(Tok::Ident(seg)) = toks.get(j) {
                    path.push(seg.clone());
                    if toks.get(j + 1) != Some(&Tok::Path) {
                        break;
                    }
                    j += 2;
                }
                if !preceded && path.len() > 1 {
                    if let Some(abs) = self.absolute(&path) {
                        out.push(abs);
                    }
                }
                i = j + 1;
                continue;
            }
            i += 1;
        }
        out
    }

    fn absolute(&self, path: &[String]) -> Option<Vec<String>> {
        let first = path.first()?.as_str();
        let mut base = match first {
            "crate" => Vec::new(),
            "pacsgate" if self.is_main => Vec::new(),
            "self" => self.here.clone(),
            "super" => {
                let mut p = self.here.clone();
                let mut k = 0;
                while path.get(k).map(String::as_str) == Some("super") {
                    p.pop();
                    k += 1;
                }
                p.extend(path[k..].iter().cloned());
                return Some(p);
            }
            name if self.children.contains(name) => {
                let mut p = self.here.clone();
                p.push(name.to_string());
                p
            }
            name => self.bound.get(name)?.clone(),
        };
        base.extend(path[1..].iter().cloned());
        Some(base)
    }
}

#[derive(Default)]
struct Tarjan {
    next: usize,
    index: BTreeMap<String, usize>,
    low: BTreeMap<String, usize>,
    stack: Vec<String>,
    on_stack: BTreeSet<String>,
    components: Vec<Vec<String>>,
}

impl Tarjan {
    fn visit(&mut self, node: &str, edges: &BTreeMap<String, BTreeSet<String>>) {
        self.index.insert(node.to_string(), self.next);
        self.low.insert(node.to_string(), self.next);
        self.next += 1;
        self.stack.push(node.to_string());
        self.on_stack.insert(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if !self.index.contains_key(next) {
                self.visit(next, edges);
                let low = self.low[node].min(self.low[next]);
                self.low.insert(node.to_string(), low);
            } else if self.on_stack.contains(next) {
                let low = self.low[node].min(self.index[next]);
                self.low.insert(node.to_string(), low);
            }
        }
        if self.low[node] == self.index[node] {
            let mut component = Vec::new();
            while let Some(top) = self.stack.pop() {
                self.on_stack.remove(&top);
                let done = top == node;
                component.push(top);
                if done {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}
