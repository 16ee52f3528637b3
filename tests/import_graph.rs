//! The gateway's source files import each other without circles (issue 10: "config is the
//! floor"; a circle means a fix lands in two places and no layer can be tested alone).
//!
//! The graph: one node per file under `src/`, an edge A -> B when A names an item through a
//! path that resolves to B's module (`use crate::..`, `super::..`, `self::..`, inline
//! `crate::a::b` paths; `pub use` re-exports count). `mod x;` declarations are not edges
//! (a parent owns its children; a child naming its parent's items is an edge). Test modules
//! (`#[cfg(test)]` to the end of a file) are left out. The test fails with every cycle
//! (strongly connected component of more than one file) named.

#[path = "support/import_graph.rs"]
mod import_graph;

#[test]
fn source_files_import_each_other_without_circles() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph::Graph::read(&root).expect("read src/");
    assert!(
        graph.files() > 50,
        "the walk found only {} files",
        graph.files()
    );
    let cycles = graph.cycles();
    let shown: Vec<String> = cycles
        .iter()
        .map(|c| format!("  {}", c.join(" <-> ")))
        .collect();
    assert!(
        cycles.is_empty(),
        "{} import circle(s) between files:\n{}\nedges inside them:\n{}",
        cycles.len(),
        shown.join("\n"),
        graph.edges_within(&cycles).join("\n")
    );
}

#[test]
fn the_checker_sees_a_circle_it_is_given() {
    // A circle through a parent and its child plus a sibling, and a re-export chain beside
    // it, written to a temporary tree: the checker must report the first and not the second
    // (so a green run means something).
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\npub mod c;\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "mod inner;\nuse crate::b::{Thing, other::{X}};\npub fn g() { inner::f() }\n",
    )
    .unwrap();
    std::fs::write(src.join("a/inner.rs"), "pub fn f() { super::g() }\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "pub struct Thing;\n// use crate::c::Nope;\npub fn h() { crate::a::g(); }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("c.rs"),
        "pub use crate::b::Thing;\n#[cfg(test)]\nmod tests { use crate::a::x; }\n",
    )
    .unwrap();
    let graph = import_graph::Graph::read(src).unwrap();
    let cycles = graph.cycles();
    assert_eq!(
        cycles,
        vec![vec!["a.rs", "a/inner.rs", "b.rs"]],
        "{cycles:?}"
    );
}
