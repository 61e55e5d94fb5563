//! Turning desired table content into one transaction: a full rewrite, or the difference
//! from what was applied last.
//!
//! The incremental order matters because the kernel refuses to delete anything still
//! referenced: first drop stale map elements and empty the chains that change or go away
//! (which releases their jumps and anonymous maps), then create new sets and chains, then
//! fill chains and maps, and only then delete the chains and sets nobody uses any more.

use std::collections::BTreeMap;

use crate::nft::{Chain, Elem, Expr, Family, Op, Transaction, Verdict};

use super::rules::{ChainSpec, Desired};
use super::{ProxyConfig, SyncStats};

fn chain_op(name: &str, spec: &ChainSpec) -> Op {
    Op::AddChain(Chain {
        name: name.to_string(),
        base: spec.base.clone(),
    })
}

fn add_rules(tx: &mut Transaction, name: &str, spec: &ChainSpec) {
    for r in &spec.rules {
        tx.push(Op::AddRule {
            chain: name.to_string(),
            rule: r.clone(),
        });
    }
}

fn uses_set(spec: &ChainSpec, set: &str) -> bool {
    spec.rules.iter().flat_map(|r| &r.exprs).any(|e| match e {
        Expr::Lookup { set: s, .. } | Expr::DynsetUpdate { set: s, .. } => s == set,
        _ => false,
    })
}

fn elems(m: impl IntoIterator<Item = (Vec<u8>, Option<Verdict>)>) -> Vec<Elem> {
    m.into_iter()
        .map(|(key, verdict)| Elem { key, verdict })
        .collect()
}

/// Rewrites the whole table: create-then-delete removes any leftover table (from a crash or
/// an older skiff) in the same atomic transaction that builds the new one.
pub(crate) fn full(cfg: &ProxyConfig, d: &Desired) -> (Transaction, SyncStats) {
    let mut tx = Transaction::new(Family::Ip, cfg.table.clone());
    tx.delete_table_if_exists();
    tx.push(Op::AddTable);
    for s in d.sets.values() {
        tx.push(Op::AddSet(s.clone()));
    }
    // All chains first, so that rules and map elements can jump to any of them.
    for (name, spec) in &d.chains {
        tx.push(chain_op(name, spec));
    }
    for (name, spec) in &d.chains {
        add_rules(&mut tx, name, spec);
    }
    let mut n = 0;
    for (set, m) in &d.elems {
        if !m.is_empty() {
            n += m.len();
            tx.push(Op::AddElems {
                set: set.clone(),
                elems: elems(m.clone()),
            });
        }
    }
    let stats = SyncStats {
        full: true,
        chains_written: d.chains.len(),
        elements_changed: n,
        ..Default::default()
    };
    (tx, stats)
}

/// Changes that turn `prev` (what the kernel holds) into `next`.
pub(crate) fn incremental(
    cfg: &ProxyConfig,
    prev: &Desired,
    next: &Desired,
) -> (Transaction, SyncStats) {
    let mut tx = Transaction::new(Family::Ip, cfg.table.clone());
    let mut stats = SyncStats::default();
    let empty = BTreeMap::new();

    // 1. Stale elements: gone, or pointing somewhere else (re-added in step 5).
    let mut additions: Vec<(String, Vec<Elem>)> = Vec::new();
    for (set, old) in &prev.elems {
        let new = next.elems.get(set).unwrap_or(&empty);
        let stale: Vec<_> = old
            .iter()
            .filter(|(k, v)| new.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !stale.is_empty() && next.sets.contains_key(set) {
            stats.elements_changed += stale.len();
            tx.push(Op::DeleteElems {
                set: set.clone(),
                elems: elems(stale),
            });
        }
    }
    for (set, new) in &next.elems {
        let old = prev
            .elems
            .get(set)
            .filter(|_| prev.sets.get(set) == next.sets.get(set))
            .unwrap_or(&empty);
        let added: Vec<_> = new
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !added.is_empty() {
            stats.elements_changed += added.len();
            additions.push((set.clone(), elems(added)));
        }
    }

    // 2. Empty chains that change or disappear. A chain using a set that gets recreated must
    // be rewritten too, or the old set could not be deleted.
    let recreated: Vec<&String> = prev
        .sets
        .iter()
        .filter(|(n, s)| next.sets.get(*n).is_some_and(|x| x != *s))
        .map(|(n, _)| n)
        .collect();
    let changed: Vec<&String> = next
        .chains
        .iter()
        .filter(|(n, s)| {
            prev.chains
                .get(*n)
                .is_some_and(|p| p != *s || recreated.iter().any(|set| uses_set(p, set)))
        })
        .map(|(n, _)| n)
        .collect();
    let removed: Vec<&String> = prev
        .chains
        .keys()
        .filter(|n| !next.chains.contains_key(*n))
        .collect();
    for name in changed.iter().chain(&removed) {
        tx.push(Op::FlushChain((*name).clone()));
    }

    // 3. New sets (or sets whose definition changed, which are recreated) and new chains.
    for (name, s) in &next.sets {
        if recreated.contains(&name) {
            tx.push(Op::DeleteSet(name.clone()));
        }
        if prev.sets.get(name) != Some(s) {
            tx.push(Op::AddSet(s.clone()));
        }
    }
    let added_chains: Vec<(&String, &ChainSpec)> = next
        .chains
        .iter()
        .filter(|(n, _)| !prev.chains.contains_key(*n))
        .collect();
    for (name, spec) in &added_chains {
        tx.push(chain_op(name, spec));
    }

    // 4. Rules of new and changed chains.
    for (name, spec) in &added_chains {
        add_rules(&mut tx, name, spec);
    }
    for name in &changed {
        add_rules(&mut tx, name, &next.chains[*name]);
    }
    stats.chains_written = added_chains.len() + changed.len();

    // 5. New and re-pointed elements.
    for (set, e) in additions {
        tx.push(Op::AddElems { set, elems: e });
    }

    // 6. Whatever is no longer referenced.
    for name in &removed {
        tx.push(Op::DeleteChain((*name).clone()));
    }
    stats.chains_deleted = removed.len();
    for name in prev.sets.keys().filter(|n| !next.sets.contains_key(*n)) {
        tx.push(Op::DeleteSet(name.clone()));
    }
    (tx, stats)
}
