//! The rule index: finds the first applicable rule without testing every rule.
//!
//! Per pattern field, the rules are split three ways: rules that do not constrain the
//! field (a bitset), literal patterns (a hash map from the text to the rules using it),
//! and globs/regexes (one multi-pattern lazy DFA whose overlapping matches name the
//! rules). A decision looks each field's value up once, then walks the rule bitsets 64
//! rules at a time, ANDing the fields' words; only the surviving candidates get the
//! per-rule checks that are not indexed (HDR, SIZE, the retry limit). Cost is a few
//! hash lookups and DFA scans (independent of the number of rules) plus a word-wise
//! AND over the fields some rule constrains (rules / 64 words, and it stops at the
//! first applicable rule).
//!
//! The index only narrows: wherever it cannot be sure (a DFA that cannot be built or
//! that quits on a Unicode word boundary), it falls back to the reference matcher.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use regex_automata::hybrid::dfa::{Cache, DFA, OverlappingState};
use regex_automata::util::pool::Pool;
use regex_automata::{Input, MatchKind};

use super::matching::{self, Field};
use crate::dead_letter::DeadLetter;
use crate::rules::{Pattern, Rule, Table};

/// Fields indexed: the nine single-valued ones, then RKEY.
const NFIELDS: usize = 10;
const RKEY: usize = 9;

/// The lazy DFA's transition cache per field, per thread.
const DFA_CACHE_BYTES: usize = 8 << 20;

/// A set of rules, dense when that is cheaper to OR in than listing the members.
#[derive(Debug, Clone)]
enum RuleSet {
    Sparse(Vec<u32>),
    Dense(Vec<u64>),
}

impl RuleSet {
    fn build(members: Vec<u32>, words: usize) -> RuleSet {
        if members.len() > words {
            let mut bits = vec![0u64; words];
            for r in members {
                set(&mut bits, r as usize);
            }
            RuleSet::Dense(bits)
        } else {
            RuleSet::Sparse(members)
        }
    }

    fn or_into(&self, bits: &mut [u64]) {
        match self {
            RuleSet::Sparse(m) => m.iter().for_each(|&r| set(bits, r as usize)),
            RuleSet::Dense(d) => bits.iter_mut().zip(d).for_each(|(b, d)| *b |= d),
        }
    }
}

fn set(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
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

/// Globs and regexes of one field, compiled together.
struct Multi {
    dfa: DFA,
    /// Pattern id → the rules using that pattern.
    rules: Vec<RuleSet>,
}

struct FieldIndex {
    /// Rules without a pattern on this field.
    unconstrained: Vec<u64>,
    literals: FxMap<Box<str>, RuleSet>,
    /// `None` when there are no globs/regexes, or when they could not be compiled
    /// (then `fallback` holds their rules and candidates are verified).
    multi: Option<Multi>,
    /// Rules whose glob/regex on this field is not in a DFA: always candidates, verified.
    fallback: RuleSet,
    has_fallback: bool,
}

/// Per-thread scratch: DFA caches and the bitsets of rules hit by each field's value.
struct Scratch {
    caches: Vec<Option<Cache>>,
    hits: Vec<Vec<u64>>,
    dirty: [bool; NFIELDS],
}

type ScratchPool = Pool<Scratch, Box<dyn Fn() -> Scratch + Send + Sync>>;

pub struct Index {
    words: usize,
    nrules: usize,
    /// Indices into `fields` that some rule constrains.
    active: Vec<usize>,
    fields: Vec<FieldIndex>,
    /// Rules allowed for a persistent / a transient message.
    persist_ok: [Vec<u64>; 2],
    persist_active: bool,
    /// Rules with HDR/SIZE checks or a retry limit: checked one by one when candidates.
    residual: Vec<u64>,
    /// Rules that can match at all (not those with an MQ-only pattern keyword such as
    /// `DESTQM(QM1)`, which never match).
    live: Vec<u64>,
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
    if field == RKEY {
        rule.patterns.rkey.as_ref()
    } else {
        Field::ALL[field].pattern(&rule.patterns)
    }
}

impl Index {
    pub fn build(table: &Table) -> Index {
        let nrules = table.rules.len();
        let words = nrules.div_ceil(64).max(1);
        let mut fields = Vec::with_capacity(NFIELDS);
        let mut active = Vec::new();
        for f in 0..NFIELDS {
            let fi = build_field(table, f, words);
            if fi
                .unconstrained
                .iter()
                .enumerate()
                .any(|(w, &b)| b != full_word(w, nrules))
            {
                active.push(f);
            }
            fields.push(fi);
        }

        let mut persist_ok = [vec![0u64; words], vec![0u64; words]];
        let mut residual = vec![0u64; words];
        let mut live: Vec<u64> = (0..words).map(|w| full_word(w, nrules)).collect();
        let mut persist_active = false;
        for (i, rule) in table.rules.iter().enumerate() {
            let p = &rule.patterns;
            if p.never.is_some() {
                live[i / 64] &= !(1 << (i % 64));
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
        }

        let ndfa = fields.len();
        let make: Box<dyn Fn() -> Scratch + Send + Sync> = {
            let dfas: Vec<Option<DFA>> = fields
                .iter()
                .map(|f: &FieldIndex| f.multi.as_ref().map(|m| m.dfa.clone()))
                .collect();
            Box::new(move || Scratch {
                caches: dfas
                    .iter()
                    .map(|d| d.as_ref().map(DFA::create_cache))
                    .collect(),
                hits: vec![vec![0u64; words]; ndfa],
                dirty: [false; NFIELDS],
            })
        };
        Index {
            words,
            nrules,
            active,
            fields,
            persist_ok,
            persist_active,
            residual,
            live,
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
        // Per active field: an optional dense literal set borrowed from the index.
        let mut lit: [Option<&[u64]>; NFIELDS] = [None; NFIELDS];
        let mut verify = false;

        for &f in &self.active {
            let fi = &self.fields[f];
            if f == RKEY {
                for v in matching::rkeys(dl) {
                    lookup(v, &mut lit, f, fi, scratch, &mut verify);
                }
            } else {
                lookup(
                    Field::ALL[f].value(dl),
                    &mut lit,
                    f,
                    fi,
                    scratch,
                    &mut verify,
                );
            }
        }

        let persist = &self.persist_ok[usize::from(dl.persistent)];
        let mut found = None;
        'words: for w in 0..self.words {
            let mut acc = self.live[w];
            if self.persist_active {
                acc &= persist[w];
            }
            for &f in &self.active {
                let fi = &self.fields[f];
                let mut word = fi.unconstrained[w] | scratch.hits[f][w];
                if let Some(l) = lit[f] {
                    word |= l[w];
                }
                acc &= word;
                if acc == 0 {
                    continue 'words;
                }
            }
            while acc != 0 {
                let bit = acc.trailing_zeros() as usize;
                acc &= acc - 1;
                let r = w * 64 + bit;
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
                    break 'words;
                }
            }
        }

        for f in 0..NFIELDS {
            if scratch.dirty[f] {
                scratch.hits[f].iter_mut().for_each(|b| *b = 0);
                scratch.dirty[f] = false;
            }
        }
        found
    }
}

/// Record which rules of field `f` the value hits: a dense literal set by reference,
/// everything else as bits in the scratch hit set.
fn lookup<'i>(
    value: &str,
    lit: &mut [Option<&'i [u64]>; NFIELDS],
    f: usize,
    fi: &'i FieldIndex,
    scratch: &mut Scratch,
    verify: &mut bool,
) {
    if let Some(set) = fi.literals.get(value) {
        match set {
            RuleSet::Dense(d) if lit[f].is_none() => lit[f] = Some(d),
            other => {
                other.or_into(&mut scratch.hits[f]);
                scratch.dirty[f] = true;
            }
        }
    }
    if fi.has_fallback {
        fi.fallback.or_into(&mut scratch.hits[f]);
        scratch.dirty[f] = true;
        *verify = true;
    }
    let Some(multi) = &fi.multi else { return };
    let Some(cache) = scratch.caches[f].as_mut() else {
        return;
    };
    let input = Input::new(value);
    let mut state = OverlappingState::start();
    loop {
        match multi
            .dfa
            .try_search_overlapping_fwd(cache, &input, &mut state)
        {
            Ok(()) => match state.get_match() {
                Some(m) => {
                    multi.rules[m.pattern().as_usize()].or_into(&mut scratch.hits[f]);
                    scratch.dirty[f] = true;
                }
                None => break,
            },
            Err(_) => {
                // The DFA quit (e.g. a Unicode word boundary on non-ASCII text):
                // make every glob/regex rule of the field a candidate, and verify.
                for set in &multi.rules {
                    set.or_into(&mut scratch.hits[f]);
                }
                scratch.dirty[f] = true;
                *verify = true;
                break;
            }
        }
    }
}

/// All rules of word `w` that exist (the last word is partial).
fn full_word(w: usize, nrules: usize) -> u64 {
    let start = w * 64;
    if nrules >= start + 64 {
        !0
    } else if nrules <= start {
        0
    } else {
        (1u64 << (nrules - start)) - 1
    }
}

fn build_field(table: &Table, f: usize, words: usize) -> FieldIndex {
    let mut unconstrained = vec![0u64; words];
    let mut literals: FxMap<Box<str>, Vec<u32>> = FxMap::default();
    let mut multi_src: Vec<String> = Vec::new();
    let mut multi_rules: Vec<Vec<u32>> = Vec::new();
    let mut multi_pos: HashMap<String, usize> = HashMap::new();
    for (i, rule) in table.rules.iter().enumerate() {
        let i32 = i as u32;
        match field_pattern(rule, f) {
            None => set(&mut unconstrained, i),
            Some(Pattern::Literal(l)) => literals.entry(l.as_str().into()).or_default().push(i32),
            Some(p) if p.matches_everything() => set(&mut unconstrained, i),
            Some(p) => {
                let src = p.to_regex_source();
                let pos = *multi_pos.entry(src.clone()).or_insert_with(|| {
                    multi_src.push(src);
                    multi_rules.push(Vec::new());
                    multi_rules.len() - 1
                });
                multi_rules[pos].push(i32);
            }
        }
    }
    let literals = literals
        .into_iter()
        .map(|(k, v)| (k, RuleSet::build(v, words)))
        .collect();
    let (multi, fallback, has_fallback) = if multi_src.is_empty() {
        (None, RuleSet::Sparse(Vec::new()), false)
    } else {
        let built = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .unicode_word_boundary(true)
                    .cache_capacity(DFA_CACHE_BYTES),
            )
            .build_many(&multi_src);
        match built {
            Ok(dfa) => (
                Some(Multi {
                    dfa,
                    rules: multi_rules
                        .into_iter()
                        .map(|m| RuleSet::build(m, words))
                        .collect(),
                }),
                RuleSet::Sparse(Vec::new()),
                false,
            ),
            Err(e) => {
                tracing::debug!(error = %e, "rule index: globs/regexes of a field stay unindexed");
                let all: Vec<u32> = multi_rules.into_iter().flatten().collect();
                (None, RuleSet::build(all, words), true)
            }
        }
    };
    FieldIndex {
        unconstrained,
        literals,
        multi,
        fallback,
        has_fallback,
    }
}
