//! The sans-IO core of mirroring (docs/mirror.md, "Catch-up"): given what the source
//! and the target hold of a region of the subtree (path → kind, checksum, ACL names) and what
//! the agent last saw them agree on, the ordered list of actions that makes the target equal
//! to the source, and the differences it found. No sockets, no clocks: the driver
//! (`agent`) reads the two views, calls [`plan`], and executes the actions in order.
//!
//! Paths here are **relative** to the mirrored subtree's root: `""` is the root itself,
//! `"a"` and `"a/b"` are below it, so the same plan applies to any `--to-subtree`.

use std::collections::BTreeMap;
use warren_client::{AclNames, NodeKind};

/// What the mirror compares of one node: its kind, its content checksum (xxh3-64 of the
/// contents, 0 for a directory; `Stat::checksum`) and its three ACL names. Generations and
/// instances are each deployment's own and are not compared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub kind: NodeKind,
    pub checksum: u64,
    pub acl: AclNames,
}

impl Entry {
    /// A directory with these ACL names.
    pub fn dir(acl: AclNames) -> Entry {
        Entry {
            kind: NodeKind::Directory,
            checksum: 0,
            acl,
        }
    }

    /// A file with this content checksum and these ACL names.
    pub fn file(checksum: u64, acl: AclNames) -> Entry {
        Entry {
            kind: NodeKind::File,
            checksum,
            acl,
        }
    }
}

/// A region of one side: relative path → entry, sorted (so a parent comes before its
/// children: `"a" < "a-b" < "a/b"`, since `/` sorts after every other path byte but `.`
/// and `-`, which cannot end a component before `/`).
pub type View = BTreeMap<String, Entry>;

/// What to do with a write made directly in the mirror (`--on-target-write`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TargetWritePolicy {
    /// Put the source's version back (and count it).
    #[default]
    Overwrite,
    /// Leave it, and report it: counted, logged with its path, shown on `/status`.
    Report,
}

impl TargetWritePolicy {
    /// `overwrite` or `report`, as the flag spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetWritePolicy::Overwrite => "overwrite",
            TargetWritePolicy::Report => "report",
        }
    }
}

impl std::str::FromStr for TargetWritePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "overwrite" => Ok(TargetWritePolicy::Overwrite),
            "report" => Ok(TargetWritePolicy::Report),
            other => Err(format!(
                "--on-target-write {other:?}: give `overwrite` (restore the source's version) or `report` (keep it and report it)"
            )),
        }
    }
}

/// One change to the target.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Create the directory with these ACL names (or, if it exists, set them).
    Mkdir { path: String, acl: AclNames },
    /// Write the source file's contents (creating it with these ACL names if missing;
    /// setting them if they differ). `checksum` is what the source's view said; the driver
    /// writes what it reads, which may be newer.
    Write {
        path: String,
        checksum: u64,
        acl: AclNames,
    },
    /// Change the node's ACL names only.
    SetAcl { path: String, acl: AclNames },
    /// Delete the node (its children are deleted by earlier actions).
    Delete { path: String },
}

impl Action {
    /// The node concerned.
    pub fn path(&self) -> &str {
        match self {
            Action::Mkdir { path, .. }
            | Action::Write { path, .. }
            | Action::SetAcl { path, .. }
            | Action::Delete { path } => path,
        }
    }

    /// `mkdir`, `write`, `set_acl` or `delete`: the `kind` label of
    /// `warren_mirror_changes_applied_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Mkdir { .. } => "mkdir",
            Action::Write { .. } => "write",
            Action::SetAcl { .. } => "set_acl",
            Action::Delete { .. } => "delete",
        }
    }
}

/// How the target differed from the source at one path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Divergence {
    pub path: String,
    /// The source still holds what the agent last saw both sides agree on, so the
    /// difference was made in the target (a write made directly in the mirror).
    pub target_write: bool,
    /// Left as it is (a target write under [`TargetWritePolicy::Report`]).
    pub kept: bool,
}

/// What [`plan`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// In order: every delete (deepest first), then creates, writes and ACL changes
    /// (parents first).
    pub actions: Vec<Action>,
    /// Every path where the target differed, except those under a node deleted or
    /// replaced as a whole (they are part of that node's divergence).
    pub divergences: Vec<Divergence>,
}

/// Whether `path` is `ancestor` or below it (relative paths; `""` is the root).
pub fn is_under(path: &str, ancestor: &str) -> bool {
    ancestor.is_empty()
        || path == ancestor
        || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// The actions that make `target` equal `source` over the region both views cover.
///
/// `known` is the agent's memory of the region as it last saw both sides agree (the
/// source's view after its last successful apply), or `None` when it has none (just
/// started). With a memory, a path whose source still matches it while the target does not
/// is a **target write**: under [`TargetWritePolicy::Report`] it is reported and left (a
/// node inside a deleted or replaced one still goes with it); under `Overwrite` it is
/// reverted like any difference. Without a memory every difference is taken as a source
/// change and applied.
pub fn plan(source: &View, target: &View, known: Option<&View>, policy: TargetWritePolicy) -> Plan {
    let mut paths: Vec<&str> = source
        .keys()
        .chain(target.keys())
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    paths.dedup();

    let mut deletes: Vec<String> = Vec::new();
    let mut changes: Vec<Action> = Vec::new();
    let mut divergences = Vec::new();
    // Target nodes deleted as a whole: everything below them goes too.
    let mut doomed: Vec<&str> = Vec::new();
    // Target nodes kept (reported) that are not directories: nothing is created below them.
    let mut kept_leaves: Vec<&str> = Vec::new();

    for path in paths {
        let (s, t) = (source.get(path), target.get(path));
        if s == t {
            continue;
        }
        if doomed.iter().any(|d| is_under(path, d)) {
            if t.is_some() {
                deletes.push(path.to_string());
            }
            if let Some(s) = s {
                changes.push(create(path, s));
            }
            continue;
        }
        if kept_leaves.iter().any(|k| is_under(path, k)) {
            continue;
        }
        let target_write = known.is_some_and(|k| k.get(path) == s);
        let kept = target_write && policy == TargetWritePolicy::Report;
        divergences.push(Divergence {
            path: path.to_string(),
            target_write,
            kept,
        });
        if kept {
            if t.is_some_and(|t| t.kind != NodeKind::Directory)
                || s.is_some_and(|s| s.kind != NodeKind::Directory)
            {
                kept_leaves.push(path);
            }
            continue;
        }
        match (s, t) {
            (Some(s), None) => changes.push(create(path, s)),
            (None, Some(_)) => {
                deletes.push(path.to_string());
                doomed.push(path);
            }
            (Some(s), Some(t)) if s.kind != t.kind => {
                deletes.push(path.to_string());
                doomed.push(path);
                changes.push(create(path, s));
            }
            (Some(s), Some(t)) => {
                if s.kind == NodeKind::File && s.checksum != t.checksum {
                    changes.push(create(path, s));
                } else {
                    changes.push(Action::SetAcl {
                        path: path.to_string(),
                        acl: s.acl.clone(),
                    });
                }
            }
            (None, None) => unreachable!("a path comes from one of the views"),
        }
    }
    // Children before parents: deepest first, then by path for a stable order.
    deletes.sort_by(|a, b| {
        depth(b)
            .cmp(&depth(a))
            .then_with(|| a.as_str().cmp(b.as_str()))
    });
    let mut actions: Vec<Action> = deletes
        .into_iter()
        .map(|path| Action::Delete { path })
        .collect();
    actions.extend(changes);
    Plan {
        actions,
        divergences,
    }
}

fn depth(path: &str) -> usize {
    if path.is_empty() {
        0
    } else {
        path.matches('/').count() + 1
    }
}

fn create(path: &str, s: &Entry) -> Action {
    match s.kind {
        NodeKind::Directory => Action::Mkdir {
            path: path.to_string(),
            acl: s.acl.clone(),
        },
        NodeKind::File => Action::Write {
            path: path.to_string(),
            checksum: s.checksum,
            acl: s.acl.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `view` after applying `plan`'s actions with `source`'s entries: what the target holds
    /// once every action succeeded (a model of the driver).
    fn apply(view: &View, plan: &Plan, source: &View) -> View {
        let mut out = view.clone();
        for action in &plan.actions {
            match action {
                Action::Delete { path } => {
                    out.remove(path);
                }
                Action::Mkdir { path, .. }
                | Action::Write { path, .. }
                | Action::SetAcl { path, .. } => {
                    out.insert(path.clone(), source[path].clone());
                }
            }
        }
        out
    }

    fn acl(read: &str) -> AclNames {
        AclNames {
            read: read.into(),
            ..AclNames::default()
        }
    }

    fn view(entries: &[(&str, Entry)]) -> View {
        entries
            .iter()
            .map(|(p, e)| (p.to_string(), e.clone()))
            .collect()
    }

    fn dir() -> Entry {
        Entry::dir(AclNames::default())
    }

    fn file(sum: u64) -> Entry {
        Entry::file(sum, AclNames::default())
    }

    #[test]
    fn equal_views_need_nothing() {
        let v = view(&[("", dir()), ("a", file(1)), ("d", dir()), ("d/x", file(2))]);
        assert_eq!(
            plan(&v, &v, None, TargetWritePolicy::Overwrite),
            Plan::default()
        );
    }

    #[test]
    fn creates_parents_before_children_and_deletes_children_before_parents() {
        let source = view(&[
            ("", dir()),
            ("n", dir()),
            ("n/m", dir()),
            ("n/m/f", file(7)),
        ]);
        let target = view(&[
            ("", dir()),
            ("old", dir()),
            ("old/sub", dir()),
            ("old/sub/g", file(1)),
        ]);
        let p = plan(&source, &target, None, TargetWritePolicy::Overwrite);
        let order: Vec<(&str, &str)> = p.actions.iter().map(|a| (a.kind(), a.path())).collect();
        assert_eq!(
            order,
            [
                ("delete", "old/sub/g"),
                ("delete", "old/sub"),
                ("delete", "old"),
                ("mkdir", "n"),
                ("mkdir", "n/m"),
                ("write", "n/m/f"),
            ]
        );
        // Only the tops of whole deletes and each created node are divergences.
        let paths: Vec<&str> = p.divergences.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["n", "n/m", "n/m/f", "old"]);
        assert!(p.divergences.iter().all(|d| !d.target_write && !d.kept));
    }

    #[test]
    fn a_changed_file_is_written_and_an_acl_change_is_set() {
        let source = view(&[
            ("", dir()),
            ("f", file(2)),
            ("g", Entry::file(5, acl("ops"))),
        ]);
        let target = view(&[("", dir()), ("f", file(1)), ("g", file(5))]);
        let p = plan(&source, &target, None, TargetWritePolicy::Overwrite);
        assert_eq!(
            p.actions,
            [
                Action::Write {
                    path: "f".into(),
                    checksum: 2,
                    acl: AclNames::default()
                },
                Action::SetAcl {
                    path: "g".into(),
                    acl: acl("ops")
                },
            ]
        );
    }

    #[test]
    fn a_directory_acl_change_is_set_without_touching_children() {
        let source = view(&[("", dir()), ("d", Entry::dir(acl("ops"))), ("d/x", file(1))]);
        let target = view(&[("", dir()), ("d", dir()), ("d/x", file(1))]);
        let p = plan(&source, &target, None, TargetWritePolicy::Overwrite);
        assert_eq!(
            p.actions,
            [Action::SetAcl {
                path: "d".into(),
                acl: acl("ops")
            }]
        );
    }

    #[test]
    fn a_kind_change_deletes_the_whole_node_then_creates_it() {
        // Source: `x` is a file; target: `x` is a directory with children.
        let source = view(&[("", dir()), ("x", file(3))]);
        let target = view(&[("", dir()), ("x", dir()), ("x/a", file(1)), ("x/b", dir())]);
        let p = plan(&source, &target, None, TargetWritePolicy::Overwrite);
        let order: Vec<(&str, &str)> = p.actions.iter().map(|a| (a.kind(), a.path())).collect();
        assert_eq!(
            order,
            [
                ("delete", "x/a"),
                ("delete", "x/b"),
                ("delete", "x"),
                ("write", "x")
            ]
        );
        // And the reverse: a file in the target where the source has a directory.
        let p = plan(&target, &source, None, TargetWritePolicy::Overwrite);
        let order: Vec<(&str, &str)> = p.actions.iter().map(|a| (a.kind(), a.path())).collect();
        assert_eq!(
            order,
            [
                ("delete", "x"),
                ("mkdir", "x"),
                ("write", "x/a"),
                ("mkdir", "x/b")
            ]
        );
    }

    #[test]
    fn without_a_memory_every_difference_is_a_source_change() {
        let source = view(&[("", dir()), ("f", file(1))]);
        let target = view(&[("", dir()), ("f", file(9)), ("extra", file(4))]);
        let p = plan(&source, &target, None, TargetWritePolicy::Report);
        assert_eq!(p.actions.len(), 2, "{p:?}");
        assert!(p.divergences.iter().all(|d| !d.target_write && !d.kept));
    }

    #[test]
    fn a_target_write_is_overwritten_or_kept_and_reported() {
        let known = view(&[("", dir()), ("f", file(1)), ("gone", file(2))]);
        let source = known.clone();
        // Written, created and deleted directly in the target.
        let target = view(&[
            ("", dir()),
            ("f", file(9)),
            ("new", dir()),
            ("new/x", file(3)),
        ]);

        let p = plan(&source, &target, Some(&known), TargetWritePolicy::Overwrite);
        let order: Vec<(&str, &str)> = p.actions.iter().map(|a| (a.kind(), a.path())).collect();
        assert_eq!(
            order,
            [
                ("delete", "new/x"),
                ("delete", "new"),
                ("write", "f"),
                ("write", "gone")
            ]
        );
        assert!(p.divergences.iter().all(|d| d.target_write && !d.kept));
        assert_eq!(apply(&target, &p, &source), source);

        let p = plan(&source, &target, Some(&known), TargetWritePolicy::Report);
        assert!(p.actions.is_empty(), "{p:?}");
        let kept: Vec<&str> = p.divergences.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(kept, ["f", "gone", "new", "new/x"]);
        assert!(p.divergences.iter().all(|d| d.target_write && d.kept));
    }

    #[test]
    fn a_source_change_wins_over_a_kept_target_write() {
        let known = view(&[("", dir()), ("f", file(1))]);
        let source = view(&[("", dir()), ("f", file(2))]);
        let target = view(&[("", dir()), ("f", file(9))]);
        let p = plan(&source, &target, Some(&known), TargetWritePolicy::Report);
        assert_eq!(p.actions.len(), 1);
        assert!(!p.divergences[0].target_write);
    }

    #[test]
    fn a_source_delete_takes_kept_target_nodes_below_it() {
        let known = view(&[("", dir()), ("d", dir())]);
        let source = view(&[("", dir())]);
        let target = view(&[("", dir()), ("d", dir()), ("d/mine", file(5))]);
        let p = plan(&source, &target, Some(&known), TargetWritePolicy::Report);
        let order: Vec<(&str, &str)> = p.actions.iter().map(|a| (a.kind(), a.path())).collect();
        assert_eq!(order, [("delete", "d/mine"), ("delete", "d")]);
    }

    #[test]
    fn nothing_is_created_below_a_kept_file() {
        let known = view(&[("", dir()), ("d", dir())]);
        let source = view(&[("", dir()), ("d", dir()), ("d/new", file(1))]);
        // Someone replaced the directory with a file in the target.
        let target = view(&[("", dir()), ("d", file(7))]);
        let p = plan(&source, &target, Some(&known), TargetWritePolicy::Report);
        assert!(p.actions.is_empty(), "{p:?}");
        assert_eq!(p.divergences.len(), 1);
    }

    #[test]
    fn is_under_respects_component_boundaries() {
        assert!(is_under("a/b", "a"));
        assert!(is_under("a", "a"));
        assert!(is_under("a", ""));
        assert!(!is_under("ab", "a"));
        assert!(!is_under("a-b/c", "a"));
    }

    fn arb_view() -> impl Strategy<Value = View> {
        // Up to 12 nodes over a small name space, closed under parents.
        let name = prop::sample::select(vec!["a", "b", "c"]);
        let path = prop::collection::vec(name, 1..4).prop_map(|p| p.join("/"));
        let entry = (
            any::<bool>(),
            0u64..3,
            prop::sample::select(vec!["", "ops"]),
        )
            .prop_map(|(is_dir, sum, read)| {
                if is_dir {
                    Entry::dir(acl(read))
                } else {
                    Entry::file(sum, acl(read))
                }
            });
        prop::collection::btree_map(path, entry, 0..12).prop_map(|m| {
            let mut v = View::new();
            v.insert(String::new(), Entry::dir(AclNames::default()));
            for (p, e) in m {
                // Keep a node only if every ancestor is a directory already in the view.
                let mut ok = true;
                let mut at = 0;
                while let Some(i) = p[at..].find('/') {
                    let parent = &p[..at + i];
                    if v.get(parent).map(|e| e.kind) != Some(NodeKind::Directory) {
                        ok = false;
                        break;
                    }
                    at += i + 1;
                }
                if ok {
                    v.insert(p, e);
                }
            }
            v
        })
    }

    proptest! {
        /// Overwrite always converges, and every action is applicable in order: a node is
        /// created only under an existing directory, deleted only without children.
        #[test]
        fn overwrite_converges_in_a_valid_order(source in arb_view(), target in arb_view(), remember in any::<bool>()) {
            let known = remember.then(|| source.clone());
            let p = plan(&source, &target, known.as_ref(), TargetWritePolicy::Overwrite);
            let mut at = target.clone();
            for action in &p.actions {
                let path = action.path();
                match action {
                    Action::Delete { .. } => {
                        prop_assert!(at.contains_key(path), "delete of a missing {path}");
                        prop_assert!(!at.keys().any(|k| k != path && is_under(k, path)), "delete of {path} with children");
                        at.remove(path);
                    }
                    _ => {
                        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                        prop_assert_eq!(at.get(parent).map(|e| e.kind), Some(NodeKind::Directory), "{} without its parent", path);
                        at.insert(path.to_string(), source[path].clone());
                    }
                }
            }
            prop_assert_eq!(&at, &source);
            prop_assert_eq!(plan(&source, &at, known.as_ref(), TargetWritePolicy::Overwrite), Plan::default());
        }

        /// Report never touches a path the source did not change.
        #[test]
        fn report_leaves_target_writes(source in arb_view(), target in arb_view()) {
            let p = plan(&source, &target, Some(&source), TargetWritePolicy::Report);
            prop_assert!(p.actions.is_empty(), "{:?}", p);
            prop_assert!(p.divergences.iter().all(|d| d.kept));
        }
    }
}
