//! A drain through a mix of rules, for tests that disturb dlqd: thousands of persistent
//! dead letters, each with a unique id, an `act` header the rules match (retry with and
//! without a delay, forward to a queue and through an exchange, discard with and
//! without an archive, leave) and a real way to have died (reject, TTL expiry,
//! max-length). Afterwards every copy of every id is found and checked against where
//! the rules allow it to be: lost, misplaced and duplicated ids are counted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::lab::{self, Lab, WAYS, Way};

/// splitmix64: a small, seedable generator (everything random in a run comes from its seed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
}

/// What a message's `act` header asks the rules to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Act {
    /// RETRY(2) straight back, then FWD to the parking queue.
    Retry,
    /// RETRY(1) DELAY(1s), then FWD to the parking queue.
    Delay,
    Fwd,
    /// FWD through a topic exchange.
    FwdEx,
    Discard,
    /// DISCARD with ARCHIVE(file).
    Archive,
    Leave,
}

const ACTS: [(Act, u64); 7] = [
    (Act::Retry, 18),
    (Act::Delay, 14),
    (Act::Fwd, 24),
    (Act::FwdEx, 10),
    (Act::Discard, 10),
    (Act::Archive, 12),
    (Act::Leave, 6),
];

impl Act {
    pub fn name(self) -> &'static str {
        match self {
            Act::Retry => "retry",
            Act::Delay => "delay",
            Act::Fwd => "fwd",
            Act::FwdEx => "fwdex",
            Act::Discard => "discard",
            Act::Archive => "archive",
            Act::Leave => "leave",
        }
    }

    fn pick(rng: &mut Rng) -> Act {
        let total: u64 = ACTS.iter().map(|(_, w)| w).sum();
        let mut x = rng.below(total);
        for (a, w) in ACTS {
            if x < w {
                return a;
            }
            x -= w;
        }
        Act::Leave
    }
}

/// Where a copy of a message can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// The DLQ or dlqd's left queue for it.
    Dlq,
    Work(Way),
    /// One of dlqd's delay queues for the DLQ.
    Delay,
    Parked,
    Fwd,
    FwdEx,
    Archive,
}

/// Where each (act, way) may end once the drain has settled: the rules' promise.
pub fn allowed(act: Act, way: Way) -> &'static [Place] {
    match (act, way) {
        (Act::Retry | Act::Delay, Way::Reject) => &[Place::Work(Way::Reject)],
        (Act::Retry | Act::Delay, Way::QueueTtl) => &[Place::Parked],
        (Act::Retry | Act::Delay, Way::Overflow) => &[Place::Work(Way::Overflow), Place::Parked],
        (Act::Retry | Act::Delay, Way::Expire | Way::DeliveryLimit) => {
            unreachable!("the mix dead-letters by reject, queue TTL or overflow only")
        }
        (Act::Fwd, _) => &[Place::Fwd],
        (Act::FwdEx, _) => &[Place::FwdEx],
        (Act::Archive, _) => &[Place::Archive],
        (Act::Leave, _) => &[Place::Dlq],
        (Act::Discard, _) => &[],
    }
}

/// One mix: its queues, its rules, and the plan of every message.
pub struct Mix {
    pub dlq: String,
    pub work: BTreeMap<Way, String>,
    pub parked: String,
    pub fwd: String,
    pub fwdex_queue: String,
    pub exchange: String,
    pub archive: PathBuf,
    pub rules: PathBuf,
    /// id → (act, way).
    pub plan: BTreeMap<String, (Act, Way)>,
}

/// What the final count found.
#[derive(Debug, Default, Clone)]
pub struct Count {
    pub messages: usize,
    pub lost: usize,
    pub misplaced: usize,
    pub duplicates: usize,
    /// Copies still on the DLQ, in work queues or delay queues (for a stopped drain).
    pub unfinished: usize,
    pub examples: Vec<String>,
    /// Every lost id, with its act and way.
    pub lost_ids: Vec<(String, Act, Way)>,
}

/// The ids in the archive file. `while_written`: a dlqd may be appending right now, and
/// a read racing an append can see the first part of its line (Linux does not order a
/// read after a concurrent write to a file): an unterminated last line is not counted
/// yet. Otherwise (dlqd stopped) every line must be whole.
fn archived_ids(path: &Path, while_written: bool) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let whole = match text.rfind('\n') {
        Some(end) if while_written => &text[..=end],
        None if while_written => "",
        _ => text.as_str(),
    };
    whole
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("archive line {l:?} is not JSON: {e}"));
            v["properties"]["message_id"]
                .as_str()
                .unwrap_or_else(|| panic!("archive line without message_id: {l}"))
                .to_string()
        })
        .collect()
}

impl Mix {
    /// Declare the queues, publish `n` persistent messages (ids `<tag>-<i>`) and have
    /// them dead-lettered into the DLQ the real ways; write the rules file into `dir`.
    pub async fn setup(lab: &mut Lab, dir: &Path, tag: &str, n: usize, rng: &mut Rng) -> Mix {
        let mut mix = Mix {
            dlq: lab::unique("dlq"),
            work: WAYS
                .iter()
                .map(|w| (*w, lab::unique(&format!("work-{w:?}").to_lowercase())))
                .collect(),
            parked: lab::unique("parked"),
            fwd: lab::unique("fwd"),
            fwdex_queue: lab::unique("fwdex"),
            exchange: lab::unique("fx"),
            archive: dir.join(format!("{tag}.archive.jsonl")),
            rules: dir.join(format!("{tag}.rules")),
            plan: BTreeMap::new(),
        };
        lab.queue(&mix.dlq, &[]).await;
        for (w, q) in &mix.work {
            lab.work_queue(q, &mix.dlq, *w).await;
        }
        lab.queue(&mix.parked, &[]).await;
        lab.queue(&mix.fwd, &[]).await;
        lab.queue(&mix.fwdex_queue, &[]).await;
        lab.topic_to(&mix.exchange, &mix.fwdex_queue).await;

        let mut publishes = Vec::new();
        let mut rejects = 0;
        for i in 0..n {
            let id = format!("{tag}-{i}");
            let act = Act::pick(rng);
            let way = WAYS[rng.below(3) as usize];
            if way == Way::Reject {
                rejects += 1;
            }
            publishes.push((mix.work[&way].clone(), lab::props(&id, act.name())));
            mix.plan.insert(id, (act, way));
        }
        // The last one into the one-message queue needs a filler to push it out.
        publishes.push((
            mix.work[&Way::Overflow].clone(),
            lapin::BasicProperties::default().with_message_id("filler".into()),
        ));
        lab.publish_all(&publishes).await;
        lab.reject(&mix.work[&Way::Reject], rejects).await;
        lab.wait_count(&mix.dlq, n as u32, Duration::from_secs(60))
            .await;
        let filler = lab.drain(&mix.work[&Way::Overflow]).await;
        assert_eq!(
            filler.len(),
            1,
            "only the filler is left in the overflow queue"
        );
        // The broker dead-letters at-most-once and writes dead-lettered messages to disk
        // only when something makes it sync the DLQ: a crash could drop the test's own
        // dead letters before dlqd ever saw them. One confirmed persistent publish to the
        // DLQ syncs everything before it (it is discarded like any other message).
        let sync = format!("{tag}-sync");
        lab.publish_all(&[(mix.dlq.clone(), lab::props(&sync, Act::Discard.name()))])
            .await;
        mix.plan.insert(sync, (Act::Discard, Way::Reject));
        lab.wait_count(&mix.dlq, n as u32 + 1, Duration::from_secs(60))
            .await;
        // Likewise the rejections and the overflow that made the dead letters are not on
        // disk yet: a crash would put those messages back into the work queues. Empty
        // work queues made again are (deleting a queue is durable).
        for (w, q) in mix.work.clone() {
            lab.delete(&q).await;
            lab.work_queue(&q, &mix.dlq, w).await;
        }
        std::fs::write(&mix.rules, mix.rules_text()).expect("rules file");
        // dlqd declares these; they go with the rest at cleanup.
        lab.adopt(&dlqd::stage::left_queue(&mix.dlq));
        for q in dlqd::stage::delay_queues(&mix.dlq) {
            lab.adopt(&q);
        }
        mix
    }

    pub fn rules_text(&self) -> String {
        format!(
            "INPUTQ({dlq}) RETRYINT(1s) WAIT(YES)\n\
             HDR(act=retry) ACTION(RETRY) RETRY(2)\n\
             HDR(act=retry) ACTION(FWD) FWDQ({parked})\n\
             HDR(act=delay) ACTION(RETRY) RETRY(1) DELAY(1s)\n\
             HDR(act=delay) ACTION(FWD) FWDQ({parked})\n\
             HDR(act=fwd) ACTION(FWD) FWDQ({fwd})\n\
             HDR(act=fwdex) ACTION(FWD) FWDEX({ex}) FWDRKEY(&REASON.&DESTQ)\n\
             HDR(act=discard) ACTION(DISCARD)\n\
             HDR(act=archive) ACTION(DISCARD) ARCHIVE({archive})\n\
             ACTION(IGNORE)\n",
            dlq = self.dlq,
            parked = self.parked,
            fwd = self.fwd,
            ex = self.exchange,
            archive = self.archive.display(),
        )
    }

    /// `--rules FILE` for dlqd.
    pub fn rules_arg(&self) -> String {
        self.rules.display().to_string()
    }

    /// Every queue a copy can be in, with its place.
    pub fn places(&self) -> Vec<(Place, String)> {
        let mut v = vec![
            (Place::Dlq, self.dlq.clone()),
            (Place::Parked, self.parked.clone()),
            (Place::Fwd, self.fwd.clone()),
            (Place::FwdEx, self.fwdex_queue.clone()),
        ];
        v.push((Place::Dlq, dlqd::stage::left_queue(&self.dlq)));
        for w in WAYS {
            v.push((Place::Work(w), self.work[&w].clone()));
        }
        for q in dlqd::stage::delay_queues(&self.dlq) {
            v.push((Place::Delay, q));
        }
        v
    }

    /// Wait until every message that should leave the DLQ has reached a place, no
    /// delay queue holds anything, and nothing has moved for 3 s (three passes); false
    /// when that does not happen within `timeout`.
    pub async fn settle(&self, lab: &mut Lab, timeout: Duration) -> bool {
        let expected_out = self
            .plan
            .values()
            .filter(|(a, _)| !matches!(a, Act::Leave | Act::Discard))
            .count() as u32;
        let deadline = Instant::now() + timeout;
        let mut last: Option<Vec<u32>> = None;
        let mut stable_since = Instant::now();
        loop {
            let mut out = archived_ids(&self.archive, true).len() as u32;
            let mut delayed = 0;
            // The DLQ's own count moves with every pass over the messages left on it.
            let mut moving = vec![out];
            for (place, q) in self.places() {
                let n = lab.count(&q).await.unwrap_or(0);
                match place {
                    Place::Dlq => continue,
                    Place::Delay => delayed += n,
                    _ => out += n,
                }
                moving.push(n);
            }
            if last.as_ref() != Some(&moving) {
                last = Some(moving);
                stable_since = Instant::now();
            } else if out >= expected_out
                && delayed == 0
                && stable_since.elapsed() >= Duration::from_secs(3)
            {
                return true;
            }
            if Instant::now() > deadline {
                eprintln!("  did not settle: {out} of {expected_out} out, {delayed} delayed");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Take every copy off every queue (and read the archive), check each id: lost when
    /// nowhere (a plain DISCARD is allowed to be nowhere), misplaced when somewhere its
    /// rules do not allow — unless `unfinished_ok`, for a drain that was stopped, where
    /// the DLQ, the work queues and the delay queues are fine too.
    pub async fn count(&self, lab: &mut Lab, unfinished_ok: bool) -> Count {
        let mut found: BTreeMap<String, Vec<Place>> = BTreeMap::new();
        let mut strangers = Vec::new();
        for (place, q) in self.places() {
            for got in lab.drain(&q).await {
                if self.plan.contains_key(&got.id) {
                    found.entry(got.id).or_default().push(place);
                } else {
                    strangers.push(got.id);
                }
            }
        }
        for id in archived_ids(&self.archive, false) {
            found.entry(id).or_default().push(Place::Archive);
        }
        assert!(strangers.is_empty(), "messages nobody sent: {strangers:?}");
        let mut c = Count {
            messages: self.plan.len(),
            ..Count::default()
        };
        for (id, (act, way)) in &self.plan {
            let places = found.get(id).map(Vec::as_slice).unwrap_or(&[]);
            if places.is_empty() {
                if *act != Act::Discard {
                    c.lost += 1;
                    c.lost_ids.push((id.clone(), *act, *way));
                    if c.examples.len() < 10 {
                        c.examples.push(format!("{id} ({act:?}, {way:?}): nowhere"));
                    }
                }
                continue;
            }
            c.duplicates += places.len() - 1;
            let ok = allowed(*act, *way);
            let unfinished = |p: &Place| {
                matches!(p, Place::Dlq | Place::Work(_) | Place::Delay) && !ok.contains(p)
            };
            c.unfinished += places.iter().filter(|p| unfinished(p)).count();
            let bad = places
                .iter()
                .any(|p| !(ok.contains(p) || unfinished_ok && unfinished(p)));
            if bad {
                c.misplaced += 1;
                if c.examples.len() < 10 {
                    c.examples
                        .push(format!("{id} ({act:?}, {way:?}): in {places:?}"));
                }
            }
        }
        c
    }
}
