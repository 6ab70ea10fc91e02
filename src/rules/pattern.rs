//! A pattern value: a generic pattern (`*` any run, `?` one character, the rest literal)
//! or, written between slashes, an unanchored regular expression — checked when the
//! rules are read, compiled on its first match ([`LazyRegex`]).

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use regex_syntax::hir::{Class, ClassUnicodeRange, Hir, HirKind};

/// A compiled pattern from a rules file.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// A generic pattern with no `*` or `?`: matches exactly this text.
    Literal(String),
    /// A generic pattern with wildcards, matched whole.
    Glob(String),
    /// `/regex/`, unanchored.
    Regex(LazyRegex),
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Pattern::Literal(a), Pattern::Literal(b)) => a == b,
            (Pattern::Glob(a), Pattern::Glob(b)) => a == b,
            (Pattern::Regex(a), Pattern::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Pattern {
    /// A generic pattern: `Literal` when it has no wildcard, else `Glob`.
    pub fn generic(text: &str) -> Pattern {
        if text.contains(['*', '?']) {
            Pattern::Glob(text.to_string())
        } else {
            Pattern::Literal(text.to_string())
        }
    }

    /// True when the pattern matches every possible value (`*`, `/.*/`-like are not analysed).
    pub fn matches_everything(&self) -> bool {
        matches!(self, Pattern::Glob(g) if g.chars().all(|c| c == '*'))
    }

    pub fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Literal(l) => l == text,
            Pattern::Glob(g) => glob_match(g, text),
            Pattern::Regex(r) => r.is_match(text),
        }
    }

    /// The pattern as an unanchored-safe regex source (globs and literals anchored whole).
    pub fn to_regex_source(&self) -> String {
        match self {
            Pattern::Literal(l) => format!("^{}$", regex::escape(l)),
            Pattern::Glob(g) => {
                let mut s = String::from("^(?s:");
                let mut lit = String::new();
                for c in g.chars() {
                    match c {
                        '*' | '?' => {
                            s.push_str(&regex::escape(&lit));
                            lit.clear();
                            s.push_str(if c == '*' { ".*" } else { "." });
                        }
                        c => lit.push(c),
                    }
                }
                s.push_str(&regex::escape(&lit));
                s.push_str(")$");
                s
            }
            Pattern::Regex(r) => r.as_str().to_string(),
        }
    }

    /// The pattern as written in a rules file (without the keyword).
    pub fn source(&self) -> String {
        self.shown().to_string()
    }

    /// [`Pattern::source`] as a `Display`, for writing it without allocating.
    pub fn shown(&self) -> Source<'_> {
        Source(self)
    }
}

/// A pattern as written in a rules file: [`Pattern::shown`].
pub struct Source<'a>(&'a Pattern);

impl Source<'_> {
    /// What `Display` writes, pushed onto `out` without the formatting machinery.
    pub fn push_to(&self, out: &mut String) {
        match self.0 {
            Pattern::Literal(l) | Pattern::Glob(l) => out.push_str(l),
            Pattern::Regex(r) => {
                out.push('/');
                out.push_str(r.as_str());
                out.push('/');
            }
        }
    }
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Pattern::Literal(l) | Pattern::Glob(l) => f.write_str(l),
            Pattern::Regex(r) => {
                f.write_str("/")?;
                f.write_str(r.as_str())?;
                f.write_str("/")
            }
        }
    }
}

/// A regular expression from a rules file. Its syntax is checked when the rules are
/// read (a parse: cheap); its matcher is compiled the first time it is used (compiling
/// is what made checking a 10,000-rule table slow). Clones share the matcher.
///
/// What [`LazyRegex::new`] accepts, the first use always compiles: the syntax is
/// checked by the parser the regex crate itself uses, with the same settings, and the
/// program-size limit `regex::Regex::new` enforces is checked up front — by an upper
/// bound computed from the parsed expression, or, for the rare expression whose bound
/// comes near the limit, by compiling it there and then exactly as before. The first
/// use compiles without a size limit, so it cannot fail on size either.
#[derive(Clone)]
pub struct LazyRegex(Arc<Lazy>);

struct Lazy {
    source: Box<str>,
    /// A text every match contains (the longest literal of the expression's top-level
    /// concatenation; empty when there is none): a text without it is no match, and
    /// telling so needs no compiled matcher (lint compares many regexes with literals).
    required: Box<str>,
    compiled: OnceLock<regex::Regex>,
}

/// Why a regular expression was refused.
#[derive(Debug)]
pub enum RegexError {
    /// Not valid syntax: the parser's error, with its span in the expression.
    Syntax(Box<regex_syntax::Error>),
    /// Valid syntax, refused by the compiler (too large a program).
    Compile(regex::Error),
}

/// The regex crate's default limit on a compiled program (`RegexBuilder::size_limit`).
const SIZE_LIMIT: usize = 10 * (1 << 20);

/// An expression whose [`program_bound`] is at most this is accepted without being
/// compiled (a quarter of the limit: room for anything the bound does not count).
const BOUND_OK: usize = SIZE_LIMIT / 4;

impl LazyRegex {
    /// Check `source` (the text between the slashes) without compiling it, unless it is
    /// large enough that only the compiler can tell whether it is too large.
    pub fn new(source: &str) -> Result<LazyRegex, RegexError> {
        let hir = regex_syntax::Parser::new()
            .parse(source)
            .map_err(|e| RegexError::Syntax(Box::new(e)))?;
        let compiled = OnceLock::new();
        if program_bound(&hir) > BOUND_OK {
            let r = regex::Regex::new(source).map_err(RegexError::Compile)?;
            let _ = compiled.set(r);
        }
        Ok(LazyRegex(Arc::new(Lazy {
            source: source.into(),
            required: required_literal(&hir).into(),
            compiled,
        })))
    }

    /// The expression as written (without the slashes).
    pub fn as_str(&self) -> &str {
        &self.0.source
    }

    /// Unanchored match, as `regex::Regex::is_match`.
    pub fn is_match(&self, text: &str) -> bool {
        self.may_match(text) && self.compiled().is_match(text)
    }

    /// False when `text` cannot match: it lacks a text every match contains. Told
    /// without compiling; true says nothing.
    pub fn may_match(&self, text: &str) -> bool {
        contains(text, &self.0.required)
    }

    /// The compiled matcher, compiled now if this is its first use.
    pub fn compiled(&self) -> &regex::Regex {
        self.0
            .compiled
            .get_or_init(|| compile_unlimited(&self.0.source))
    }

    /// True once the matcher has been compiled.
    pub fn is_compiled(&self) -> bool {
        self.0.compiled.get().is_some()
    }
}

/// `text.contains(needle)`, cheaper for what lint asks many times over (short names,
/// often shorter than the needle): no searcher is set up for a needle that cannot fit,
/// and a short text is scanned for the needle's first byte.
fn contains(text: &str, needle: &str) -> bool {
    let (t, n) = (text.as_bytes(), needle.as_bytes());
    match n.split_first() {
        None => true,
        Some(_) if n.len() > t.len() => false,
        Some((&first, rest)) if t.len() <= 64 => t[..=t.len() - n.len()]
            .iter()
            .enumerate()
            .any(|(i, &b)| b == first && t[i + 1..i + n.len()] == *rest),
        Some(_) => text.contains(needle),
    }
}

/// Compile an expression [`LazyRegex::new`] accepted: with no size limit, so the only
/// failures left are none a checked expression has. Should one happen all the same,
/// the expression is logged and matches nothing: a decision never fails or panics.
fn compile_unlimited(source: &str) -> regex::Regex {
    match regex::RegexBuilder::new(source)
        .size_limit(usize::MAX)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(regex = source, error = %e, "a checked regular expression did not compile; it matches nothing");
            // An empty class: valid, and matches no text.
            regex::Regex::new(r"[^\x00-\x{10FFFF}]").expect("an empty class compiles")
        }
    }
}

impl From<regex::Regex> for LazyRegex {
    /// An already compiled expression.
    fn from(r: regex::Regex) -> LazyRegex {
        LazyRegex(Arc::new(Lazy {
            source: r.as_str().into(),
            required: "".into(),
            compiled: OnceLock::from(r),
        }))
    }
}

impl std::fmt::Debug for LazyRegex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Regex").field(&self.as_str()).finish()
    }
}

/// The longest literal among the parts of `hir`'s top-level concatenation (inside a
/// capture group, if the whole is one): every match contains it. Empty when none.
fn required_literal(hir: &Hir) -> String {
    let mut hir = hir;
    while let HirKind::Capture(c) = hir.kind() {
        hir = &c.sub;
    }
    let parts = match hir.kind() {
        HirKind::Concat(hs) => hs.as_slice(),
        _ => std::slice::from_ref(hir),
    };
    parts
        .iter()
        .filter_map(|h| match h.kind() {
            HirKind::Literal(l) => std::str::from_utf8(&l.0).ok(),
            _ => None,
        })
        .max_by_key(|l| l.len())
        .unwrap_or("")
        .to_string()
}

/// An upper bound, in bytes, of what the regex crate's size limit measures for `hir`
/// (the Thompson NFA builder's memory, forward with captures or reverse): every state
/// counted at [`STATE`] bytes, every UTF-8 sequence of a class as its own chain of
/// states (the compiler shares suffixes, so it makes fewer), repetitions expanded.
pub(crate) fn program_bound(hir: &Hir) -> usize {
    // The unanchored prefix, the match state, the implicit capture group.
    8 * STATE + node_bound(hir)
}

/// Bytes counted per NFA state and its transitions (a builder state is 32 bytes, a
/// transition 8, a union alternate 4).
const STATE: usize = 64;

fn node_bound(hir: &Hir) -> usize {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => STATE,
        HirKind::Literal(l) => l.0.len().saturating_mul(STATE),
        HirKind::Class(Class::Bytes(c)) => STATE + c.ranges().len().saturating_mul(STATE),
        HirKind::Class(Class::Unicode(c)) => unicode_class_bound(c.ranges()),
        HirKind::Repetition(r) => {
            // {m,n} is m copies and n-m optional ones; {m,} is m copies (one at least).
            let copies = r.max.unwrap_or(r.min).max(r.min).max(1) as usize;
            node_bound(&r.sub)
                .saturating_mul(copies)
                .saturating_add((copies + 2).saturating_mul(STATE))
        }
        HirKind::Capture(c) => node_bound(&c.sub).saturating_add(2 * STATE),
        HirKind::Concat(hs) => hs
            .iter()
            .fold(STATE, |n, h| n.saturating_add(node_bound(h))),
        HirKind::Alternation(hs) => hs
            .iter()
            .fold(2 * STATE, |n, h| n.saturating_add(node_bound(h) + STATE)),
    }
}

/// A Unicode class's part of [`node_bound`]. A large class (`\w` is some 770 ranges,
/// each cut into UTF-8 sequences) is counted once per process and remembered by its
/// ranges: a table of many regexes repeats the same few classes.
fn unicode_class_bound(ranges: &[ClassUnicodeRange]) -> usize {
    /// Classes of fewer ranges are counted every time (cheaper than remembering).
    const REMEMBER: usize = 16;
    let count = |ranges: &[ClassUnicodeRange]| {
        let mut n = STATE;
        for r in ranges {
            if r.end() < '\u{80}' {
                n = n.saturating_add(STATE);
                continue;
            }
            for seq in regex_syntax::utf8::Utf8Sequences::new(r.start(), r.end()) {
                n = n.saturating_add((seq.len() + 1) * STATE);
            }
        }
        n
    };
    if ranges.len() < REMEMBER {
        return count(ranges);
    }
    // (a hash of the ranges, the ranges, the bound): a table repeats a few classes.
    type Remembered = Vec<(u64, Box<[(char, char)]>, usize)>;
    thread_local! {
        static BOUNDS: RefCell<Remembered> = RefCell::default();
    }
    let hash = ranges.iter().fold(ranges.len() as u64, |h, r| {
        let x = (u64::from(u32::from(r.start())) << 32) | u64::from(u32::from(r.end()));
        (h.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
    });
    let same = |known: &[(char, char)]| {
        known.len() == ranges.len()
            && known
                .iter()
                .zip(ranges)
                .all(|(&(s, e), r)| s == r.start() && e == r.end())
    };
    BOUNDS.with(|b| {
        if let Some(&(_, _, n)) = b.borrow().iter().find(|(h, k, _)| *h == hash && same(k)) {
            return n;
        }
        let n = count(ranges);
        // A bounded list: a table of many distinct large classes counts the rest anew.
        if b.borrow().len() < 64 {
            let key = ranges.iter().map(|r| (r.start(), r.end())).collect();
            b.borrow_mut().push((hash, key, n));
        }
        n
    })
}

/// Whole-text match of a generic pattern, by characters, without backtracking blow-up.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        return glob_match_units(pattern.as_bytes(), text.as_bytes(), b'*', b'?');
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_match_units(&p, &t, '*', '?')
}

/// The matcher over any unit (bytes for ASCII, chars otherwise), without allocation.
fn glob_match_units<T: PartialEq + Copy>(p: &[T], t: &[T], any: T, one: T) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == one || (p[pi] != any && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == any {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == any {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lazily compiled regex matches exactly as the eager `regex::Regex` does, and is
    /// compiled by its first match, not before.
    #[test]
    fn lazy_regex_matches_as_the_eager_one() {
        let sources = [
            r"^orders\.(eu|us)$",
            r"[a-z]+-[0-9]{2,4}",
            r"\bq1\b",
            r"(?i)billing",
            r"^\d{3}-\w+$",
            r"é.",
            r"^$",
            r"a|",
        ];
        let texts = [
            "",
            "orders.eu",
            "orders.eux",
            "abc-123",
            "abc-1",
            "q1",
            "xq1",
            "a q1 b",
            "BiLLing",
            "123-x",
            "١٢٣-ü",
            "éx",
            "é",
            "a",
        ];
        for src in sources {
            let lazy = LazyRegex::new(src).unwrap();
            assert!(!lazy.is_compiled(), "{src} compiled before use");
            let eager = regex::Regex::new(src).unwrap();
            let clone = lazy.clone();
            for t in texts {
                assert_eq!(lazy.is_match(t), eager.is_match(t), "/{src}/ on {t:?}");
            }
            assert!(clone.is_compiled() || !texts.iter().any(|t| eager.is_match(t)));
            assert_eq!(lazy.as_str(), src);
            assert_eq!(Pattern::Regex(lazy), Pattern::Regex(eager.into()));
        }
    }

    /// A text without the expression's required literal is no match, told without
    /// compiling; the literal is a real requirement.
    #[test]
    fn required_literal_rejects_without_compiling() {
        for (src, lit) in [
            (r"[a-z]+-12-[0-9]{2,4}", "-12-"),
            (r"\bq7\b", "q7"),
            (r"(?i)billing\.42", ".42"),
            (r"^orders\.5\.(eu|us)$", "orders.5."),
            (r"(ab|cd)", ""),
            (r"(xyz)", "xyz"),
            (r"a|bcd", ""),
        ] {
            let r = LazyRegex::new(src).unwrap();
            assert_eq!(&*r.0.required, lit, "{src}");
            assert!(!r.is_match("nothing here"));
            assert_eq!(r.is_compiled(), lit.is_empty(), "{src}");
        }
        let r = LazyRegex::new(r"[a-z]+-12-[0-9]{2,4}").unwrap();
        assert!(r.is_match("ab-12-345") && r.is_compiled());
        let clone = r.clone();
        assert!(clone.is_compiled(), "clones share the matcher");
    }

    /// What the regex crate refuses, `LazyRegex::new` refuses: bad syntax with the
    /// parser's position, too large a program as the compiler's error.
    #[test]
    fn lazy_regex_refuses_what_the_regex_crate_refuses() {
        match LazyRegex::new("ab(c") {
            Err(RegexError::Syntax(e)) => match *e {
                regex_syntax::Error::Parse(e) => assert_eq!(e.span().start.offset, 2),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            LazyRegex::new(r"\p{Nope}"),
            Err(RegexError::Syntax(_))
        ));
        assert!(matches!(
            LazyRegex::new(r"(?-u)\xFF"),
            Err(RegexError::Syntax(_))
        ));
        for big in [r"\w{1000}{1000}", r"(?:a{100}){100}{100}"] {
            assert!(regex::Regex::new(big).is_err());
            assert!(
                matches!(
                    LazyRegex::new(big),
                    Err(RegexError::Compile(regex::Error::CompiledTooBig(_)))
                ),
                "{big}"
            );
        }
        // Large but within the limit: accepted, compiled while checking.
        let near = LazyRegex::new(r"\w{200}").unwrap();
        assert!(regex::Regex::new(r"\w{200}").is_ok());
        assert!(near.is_compiled());
        assert!(near.is_match(&"x".repeat(200)));
    }

    /// The bound is an upper bound: every expression compiles with the bound as its size
    /// limit (forward and reverse programs alike), so one accepted unchecked compiles.
    #[test]
    fn program_bound_bounds_the_compiled_size() {
        let atoms = [
            "a",
            "abc",
            ".",
            "(?s).",
            r"\w",
            r"\d",
            r"\s",
            r"\W",
            r"[^a]",
            r"\pL",
            r"\p{Greek}",
            "(?i)k",
            "(?i)straße",
            "[a-z0-9_]",
            r"\b",
            "^",
            "$",
            "é",
            "(a|bc|def)",
            "(?:x|ü|字)",
            "[\u{10000}-\u{10FFFF}]",
            "(?-u:[\x00-\x7F])",
        ];
        let reps = ["", "*", "+", "?", "{3}", "{2,5}", "{4,}", "{0,12}"];
        let mut n = 0;
        for (i, a) in atoms.iter().enumerate() {
            for r in reps {
                for b in [atoms[(i * 7 + 3) % atoms.len()], ""] {
                    let src = format!("(?:{a}){r}{b}(?:{a}{b}){r}");
                    let hir = regex_syntax::Parser::new().parse(&src).unwrap();
                    let bound = program_bound(&hir);
                    let built = regex::RegexBuilder::new(&src).size_limit(bound).build();
                    assert!(built.is_ok(), "/{src}/: bound {bound} too small: {built:?}");
                    n += 1;
                }
            }
        }
        assert!(n > 300);
    }

    /// The short-text search agrees with `str::contains`.
    #[test]
    fn contains_is_str_contains() {
        let long = "x".repeat(70) + "ab";
        let texts = [
            "", "a", "ab", "ba", "aab", "abab", "q12", "q1234", "é-ab-é", &long,
        ];
        let needles = [
            "",
            "a",
            "b",
            "ab",
            "abc",
            "-ab-",
            "q12",
            "é",
            "xab",
            "xxxxxxxxab",
        ];
        for t in texts {
            for n in needles {
                assert_eq!(contains(t, n), t.contains(n), "{t:?} contains {n:?}");
            }
        }
    }

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("orders.*", "orders.eu", true),
            ("orders.*", "orders.", true),
            ("orders.*", "orders", false),
            ("?", "a", true),
            ("?", "", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("é?", "éx", true),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
            let re = regex::Regex::new(&Pattern::generic(p).to_regex_source()).unwrap();
            assert_eq!(re.is_match(t), want, "regex of {p} vs {t}");
        }
    }
}
