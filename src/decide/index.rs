//! The rule index: finds the first applicable rule without testing every rule.
//!
//! Per pattern field, each distinct pattern gets an id: literal patterns are found by a
//! hash lookup of the message's value, globs and regexes by one multi-pattern lazy DFA
//! per field whose overlapping matches name them (two DFAs: the patterns anchored at
//! the start of the value, searched anchored, and the rest). A decision first marks,
//! per field, which pattern ids the message's value hits.
//!
//! Every rule that constrains some indexed field is *driven* by one of them: the field
//! whose pattern the fewest rules share. Only the rules driven by a hit pattern (plus
//! the rules that constrain no indexed field) can apply, so only they are gathered, in
//! a candidate bitset whose touched words are tracked; the candidates are then taken in
//! rule order, each checked against its other constrained fields (a bit test per field
//! in the hit marks), PERSIST, and the per-rule checks that are not indexed (HDR, SIZE,
//! the retry limit), stopping at the first that applies. The cost follows the number of
//! rules a message's values hit, not the number of rules.
//!
//! The index only narrows: wherever it cannot be sure (a DFA that cannot be built or
//! that quits on a Unicode word boundary), every glob/regex of the field counts as hit
//! and the candidates get the reference matcher.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use regex_automata::hybrid::dfa::{Cache, DFA, OverlappingState};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, MatchKind};

use super::matching;
use crate::dead_letter::DeadLetter;
use crate::rules::field::{self, Field, Values};
use crate::rules::{Pattern, Rule, Table};

/// Fields indexed: the text fields; field `f` is `Field::ALL[f]`, its slot in
/// `Patterns::text`.
const NFIELDS: usize = field::TEXT;

/// The lazy DFA's transition cache per field, per thread.
const DFA_CACHE_BYTES: usize = 8 << 20;

/// A set of rules: a sorted list, or a bitset over the words it spans when that is
/// cheaper to OR in than listing the members.
#[derive(Debug, Clone)]
enum RuleSet {
    Sparse(Vec<u32>),
    Dense { first: usize, bits: Vec<u64> },
}

impl RuleSet {
    /// `members` ascending.
    fn build(members: Vec<u32>) -> RuleSet {
        let (Some(&lo), Some(&hi)) = (members.first(), members.last()) else {
            return RuleSet::Sparse(members);
        };
        let (first, last) = (lo as usize / 64, hi as usize / 64);
        if members.len() > last - first + 1 {
            let mut bits = vec![0u64; last - first + 1];
            for r in members {
                set(&mut bits, r as usize - first * 64);
            }
            RuleSet::Dense { first, bits }
        } else {
            RuleSet::Sparse(members)
        }
    }

    /// OR the members into `cand`, widening the touched word range `[lo, hi]`.
    fn or_into(&self, cand: &mut [u64], lo: &mut usize, hi: &mut usize) {
        match self {
            RuleSet::Sparse(m) => {
                let (Some(&a), Some(&b)) = (m.first(), m.last()) else {
                    return;
                };
                *lo = (*lo).min(a as usize / 64);
                *hi = (*hi).max(b as usize / 64);
                m.iter().for_each(|&r| set(cand, r as usize));
            }
            RuleSet::Dense { first, bits } => {
                *lo = (*lo).min(*first);
                *hi = (*hi).max(first + bits.len() - 1);
                cand[*first..*first + bits.len()]
                    .iter_mut()
                    .zip(bits)
                    .for_each(|(c, b)| *c |= b);
            }
        }
    }
}

fn set(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn test(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

/// FxHash: the keys are short names; SipHash's DoS resistance buys nothing here.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// Globs/regexes of one field compiled together; DFA pattern `i` is pattern id `ids[i]`.
struct Multi {
    dfa: DFA,
    anchored: bool,
    ids: Vec<u32>,
}

struct FieldIndex {
    /// Literal text → its pattern id (ids `0..nlit`).
    literals: FxMap<Box<str>, u32>,
    nlit: u32,
    /// Globs and regexes have ids `nlit..npat`.
    npat: u32,
    /// At most two: the start-anchored patterns and the others.
    multis: Vec<Multi>,
    /// Some globs/regexes could not be compiled into a DFA: for every message all of
    /// them count as hit, and candidates are verified.
    unindexed: bool,
    /// Pattern id → the rules this field drives that use it.
    driven: Vec<RuleSet>,
}

/// Per-thread scratch, all zero between decisions.
struct Scratch {
    caches: Vec<Vec<Cache>>,
    /// Per field: the pattern ids the message's value hit, as bits.
    hit: Vec<Vec<u64>>,
    /// Per field: the same ids as a list (to visit and to clear them).
    hit_list: Vec<Vec<u32>>,
    /// Per field: every glob/regex counts as hit.
    all_multi: [bool; NFIELDS],
    /// Candidate rules.
    cand: Vec<u64>,
}

type ScratchPool = Pool<Scratch, Box<dyn Fn() -> Scratch + Send + Sync>>;

pub struct Index {
    nrules: usize,
    /// Indices into `fields` that some rule constrains.
    active: Vec<usize>,
    fields: Vec<FieldIndex>,
    /// Per rule, `constraints[starts[r]..starts[r + 1]]`: (field, pattern id) for each
    /// indexed field it constrains.
    constraints: Vec<(u8, u32)>,
    starts: Vec<u32>,
    /// Live rules that constrain no indexed field: candidates for every message.
    always: RuleSet,
    /// Rules allowed for a persistent / a transient message.
    persist_ok: [Vec<u64>; 2],
    persist_active: bool,
    /// Rules with HDR/SIZE checks or a retry limit: checked one by one when candidates.
    residual: Vec<u64>,
    scratch: ScratchPool,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("rules", &self.nrules)
            .field("active_fields", &self.active)
            .finish_non_exhaustive()
    }
}

fn field_pattern(rule: &Rule, field: usize) -> Option<&Pattern> {
    // `*` constrains nothing.
    rule.patterns.text[field]
        .as_ref()
        .filter(|p| !p.matches_everything())
}

/// Whether every match of the regex starts at the start of the text (`^...`), so that
/// an anchored search finds all of them.
fn start_anchored(source: &str) -> bool {
    regex_syntax::Parser::new().parse(source).is_ok_and(|h| {
        h.properties()
            .look_set_prefix()
            .contains(regex_syntax::hir::Look::Start)
    })
}

/// One field's patterns: ids, literal map, DFAs. Returns the index and, per rule, the
/// pattern id it uses on this field.
fn build_field(table: &Table, f: usize) -> (FieldIndex, Vec<Option<u32>>) {
    let mut literals: FxMap<Box<str>, u32> = FxMap::default();
    let mut multi_pos: HashMap<String, u32> = HashMap::new();
    let mut multi_src: Vec<String> = Vec::new();
    // First pass: literal ids.
    for rule in &table.rules {
        if let Some(Pattern::Literal(l)) = field_pattern(rule, f) {
            let next = literals.len() as u32;
            literals.entry(l.as_str().into()).or_insert(next);
        }
    }
    let nlit = literals.len() as u32;
    let mut per_rule = Vec::with_capacity(table.rules.len());
    for rule in &table.rules {
        per_rule.push(match field_pattern(rule, f) {
            None => None,
            Some(Pattern::Literal(l)) => literals.get(l.as_str()).copied(),
            Some(p) => {
                let src = p.to_regex_source();
                let next = nlit + multi_src.len() as u32;
                let id = *multi_pos.entry(src.clone()).or_insert_with(|| {
                    multi_src.push(src);
                    next
                });
                Some(id)
            }
        });
    }
    let npat = nlit + multi_src.len() as u32;

    let mut multis = Vec::new();
    let mut unindexed = false;
    if !multi_src.is_empty() {
        let (anch, unanch): (Vec<u32>, Vec<u32>) =
            (0..multi_src.len() as u32).partition(|&i| start_anchored(&multi_src[i as usize]));
        for (anchored, group) in [(true, anch), (false, unanch)] {
            if group.is_empty() {
                continue;
            }
            let srcs: Vec<&str> = group
                .iter()
                .map(|&i| multi_src[i as usize].as_str())
                .collect();
            let built = DFA::builder()
                .configure(
                    DFA::config()
                        .match_kind(MatchKind::All)
                        .unicode_word_boundary(true)
                        .cache_capacity(DFA_CACHE_BYTES),
                )
                .build_many(&srcs);
            match built {
                Ok(dfa) => multis.push(Multi {
                    dfa,
                    anchored,
                    ids: group.iter().map(|&i| nlit + i).collect(),
                }),
                Err(e) => {
                    tracing::debug!(error = %e, "rule index: globs/regexes of a field stay unindexed");
                    unindexed = true;
                }
            }
        }
        if unindexed {
            multis.clear();
        }
    }
    let fi = FieldIndex {
        literals,
        nlit,
        npat,
        multis,
        unindexed,
        driven: Vec::new(),
    };
    (fi, per_rule)
}

impl Index {
    pub fn build(table: &Table) -> Index {
        let nrules = table.rules.len();
        let words = nrules.div_ceil(64).max(1);
        let mut fields = Vec::with_capacity(NFIELDS);
        let mut ids: Vec<Vec<Option<u32>>> = Vec::with_capacity(NFIELDS);
        let mut active = Vec::new();
        for f in 0..NFIELDS {
            let (fi, per_rule) = build_field(table, f);
            if per_rule.iter().any(Option::is_some) {
                active.push(f);
            }
            fields.push(fi);
            ids.push(per_rule);
        }

        // How many rules share each (field, pattern): the driver of a rule is its
        // field whose pattern the fewest share (a literal before a glob/regex on a tie).
        let mut share: Vec<Vec<u32>> = fields.iter().map(|fi| vec![0; fi.npat as usize]).collect();
        for (f, per_rule) in ids.iter().enumerate() {
            for id in per_rule.iter().flatten() {
                share[f][*id as usize] += 1;
            }
        }
        let mut driven: Vec<Vec<Vec<u32>>> = fields
            .iter()
            .map(|fi| vec![Vec::new(); fi.npat as usize])
            .collect();
        let mut always = Vec::new();
        let mut constraints = Vec::new();
        let mut starts = Vec::with_capacity(nrules + 1);
        let mut persist_ok = [vec![0u64; words], vec![0u64; words]];
        let mut residual = vec![0u64; words];
        let mut persist_active = false;
        for (i, rule) in table.rules.iter().enumerate() {
            starts.push(constraints.len() as u32);
            let p = &rule.patterns;
            let mut best: Option<(u32, bool, usize, u32)> = None;
            for f in 0..NFIELDS {
                if let Some(id) = ids[f][i] {
                    constraints.push((f as u8, id));
                    let key = (share[f][id as usize], id >= fields[f].nlit, f, id);
                    if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                        best = Some(key);
                    }
                }
            }
            match p.persist {
                None => {
                    set(&mut persist_ok[0], i);
                    set(&mut persist_ok[1], i);
                }
                Some(yes) => {
                    persist_active = true;
                    set(&mut persist_ok[usize::from(yes)], i);
                }
            }
            let limited_retry = matching::retry_used_up(rule, u32::MAX).is_some();
            if !p.headers.is_empty() || p.size.is_some() || limited_retry {
                set(&mut residual, i);
            }
            // A rule with an MQ-only pattern keyword (`DESTQM(QM1)`) never matches: it
            // is never a candidate.
            if p.never.is_some() {
                continue;
            }
            match best {
                Some((_, _, f, id)) => driven[f][id as usize].push(i as u32),
                None => always.push(i as u32),
            }
        }
        starts.push(constraints.len() as u32);
        for (fi, d) in fields.iter_mut().zip(driven) {
            fi.driven = d.into_iter().map(RuleSet::build).collect();
        }

        let make: Box<dyn Fn() -> Scratch + Send + Sync> = {
            let dfas: Vec<Vec<DFA>> = fields
                .iter()
                .map(|f: &FieldIndex| f.multis.iter().map(|m| m.dfa.clone()).collect())
                .collect();
            let pwords: Vec<usize> = fields
                .iter()
                .map(|f| (f.npat as usize).div_ceil(64))
                .collect();
            Box::new(move || Scratch {
                caches: dfas
                    .iter()
                    .map(|d| d.iter().map(DFA::create_cache).collect())
                    .collect(),
                hit: pwords.iter().map(|&n| vec![0u64; n]).collect(),
                hit_list: vec![Vec::new(); NFIELDS],
                all_multi: [false; NFIELDS],
                cand: vec![0u64; words],
            })
        };
        Index {
            nrules,
            active,
            fields,
            constraints,
            starts,
            always: RuleSet::build(always),
            persist_ok,
            persist_active,
            residual,
            scratch: Pool::new(make),
        }
    }

    /// The index of the first rule that applies to the message (SPEC §4 steps 1-3).
    pub fn first_applicable(&self, rules: &[Rule], dl: &DeadLetter) -> Option<usize> {
        if self.nrules == 0 {
            return None;
        }
        let mut guard = self.scratch.get();
        let scratch: &mut Scratch = &mut guard;
        let mut verify = false;

        // 1. Which patterns each field's value hits.
        for &f in &self.active {
            let fi = &self.fields[f];
            match Field::ALL[f].values(dl) {
                Values::One(v) => lookup(v, f, fi, scratch, &mut verify),
                Values::Many(vs) => {
                    for v in vs {
                        lookup(v, f, fi, scratch, &mut verify);
                    }
                }
            }
        }

        // 2. The candidates: the rules those patterns drive, and the unindexed ones.
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        let cand = &mut scratch.cand;
        self.always.or_into(cand, &mut lo, &mut hi);
        for &f in &self.active {
            let fi = &self.fields[f];
            for &id in &scratch.hit_list[f] {
                fi.driven[id as usize].or_into(cand, &mut lo, &mut hi);
            }
            if scratch.all_multi[f] {
                for set in &fi.driven[fi.nlit as usize..] {
                    set.or_into(cand, &mut lo, &mut hi);
                }
            }
        }

        // 3. The first candidate that applies.
        let mut found = None;
        if lo <= hi {
            let persist = &self.persist_ok[usize::from(dl.persistent)];
            'words: for w in lo..=hi {
                let mut acc = cand[w];
                if acc == 0 {
                    continue;
                }
                cand[w] = 0;
                if self.persist_active {
                    acc &= persist[w];
                }
                while acc != 0 {
                    let bit = acc.trailing_zeros() as usize;
                    acc &= acc - 1;
                    let r = w * 64 + bit;
                    if !self.fields_hit(r, &scratch.hit, &scratch.all_multi) {
                        continue;
                    }
                    let rule = &rules[r];
                    let ok = if verify {
                        matching::applies(rule, dl).is_ok()
                    } else if self.residual[w] & (1 << bit) != 0 {
                        matching::residual_match(rule, dl).is_ok()
                            && matching::retry_used_up(rule, dl.retries).is_none()
                    } else {
                        true
                    };
                    if ok {
                        found = Some(r);
                        // Clear the rest of the touched words.
                        cand[w + 1..=hi].iter_mut().for_each(|c| *c = 0);
                        break 'words;
                    }
                }
            }
        }

        // 4. Leave the scratch all zero.
        for &f in &self.active {
            let (hit, list) = (&mut scratch.hit[f], &mut scratch.hit_list[f]);
            for &id in list.iter() {
                hit[id as usize / 64] = 0;
            }
            list.clear();
            scratch.all_multi[f] = false;
        }
        found
    }

    /// Whether every indexed field rule `r` constrains has its pattern hit.
    fn fields_hit(&self, r: usize, hit: &[Vec<u64>], all_multi: &[bool; NFIELDS]) -> bool {
        let cons = &self.constraints[self.starts[r] as usize..self.starts[r + 1] as usize];
        cons.iter().all(|&(f, id)| {
            let f = usize::from(f);
            test(&hit[f], id as usize) || (all_multi[f] && id >= self.fields[f].nlit)
        })
    }
}

/// Mark the pattern ids of field `f` that `value` hits.
fn lookup(value: &str, f: usize, fi: &FieldIndex, scratch: &mut Scratch, verify: &mut bool) {
    let (hit, list) = (&mut scratch.hit[f], &mut scratch.hit_list[f]);
    let mut mark = |id: u32| {
        if !test(hit, id as usize) {
            set(hit, id as usize);
            list.push(id);
        }
    };
    if let Some(&id) = fi.literals.get(value) {
        mark(id);
    }
    if fi.unindexed {
        scratch.all_multi[f] = true;
        *verify = true;
        return;
    }
    for (multi, cache) in fi.multis.iter().zip(scratch.caches[f].iter_mut()) {
        let input = Input::new(value).anchored(if multi.anchored {
            Anchored::Yes
        } else {
            Anchored::No
        });
        let mut state = OverlappingState::start();
        loop {
            match multi
                .dfa
                .try_search_overlapping_fwd(cache, &input, &mut state)
            {
                Ok(()) => match state.get_match() {
                    Some(m) => mark(multi.ids[m.pattern().as_usize()]),
                    None => break,
                },
                Err(_) => {
                    // The DFA quit (e.g. a Unicode word boundary on non-ASCII text):
                    // every glob/regex of the field counts as hit; verify candidates.
                    scratch.all_multi[f] = true;
                    *verify = true;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_sets_pick_the_cheaper_form_and_or_in_their_span() {
        let sparse = RuleSet::build(vec![3, 700]);
        assert!(matches!(sparse, RuleSet::Sparse(_)));
        let dense = RuleSet::build((128..260).collect());
        assert!(matches!(&dense, RuleSet::Dense { first: 2, bits } if bits.len() == 3));
        let mut cand = vec![0u64; 12];
        let (mut lo, mut hi) = (usize::MAX, 0);
        sparse.or_into(&mut cand, &mut lo, &mut hi);
        assert_eq!((lo, hi), (0, 10));
        dense.or_into(&mut cand, &mut lo, &mut hi);
        assert_eq!((lo, hi), (0, 10));
        assert!(test(&cand, 3) && test(&cand, 700) && test(&cand, 128) && test(&cand, 259));
        assert!(!test(&cand, 260) && !test(&cand, 127));
        assert!(matches!(RuleSet::build(Vec::new()), RuleSet::Sparse(m) if m.is_empty()));
    }

    #[test]
    fn anchored_regexes_are_told_apart() {
        assert!(start_anchored("^orders"));
        assert!(start_anchored("^(?s:a.*)$"));
        assert!(start_anchored("^a|^b"));
        assert!(!start_anchored("^a|b"));
        assert!(!start_anchored("(?m)^a"));
        assert!(!start_anchored("orders"));
    }
}
