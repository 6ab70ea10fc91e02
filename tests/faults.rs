//! `dlqd run` under faults, against a private RabbitMQ node (never the shared one): while
//! it drains thousands of dead letters through a mix of rules (retry with and without a
//! delay, forward to a queue and to an exchange, discard with and without an archive,
//! leave), the test cuts its connections through a TCP proxy, `kill -9`s dlqd and starts
//! it again, or `kill -9`s the broker and starts it again. Seeded and repeatable
//! (`DLQD_FAULT_SEED`, `DLQD_FAULT_RUNS`, `DLQD_FAULT_MESSAGES`); every message carries
//! a unique id and each run asserts that none is lost and that duplicates stay within
//! the in-flight window. See docs/faults.md.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::dlqd::{self, Dlqd};
use support::lab::{self, Lab, WAYS, Way};
use support::private_node::PrivateNode;
use support::proxy::Proxy;

/// splitmix64: a small, seedable generator (the schedule of a run is a function of its seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// What a message's `act` header asks the rules to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Act {
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
    fn name(self) -> &'static str {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Cut every connection through the proxy.
    Cut,
    /// `kill -9` dlqd and start it again.
    KillDlqd,
    /// `kill -9` the broker's beam.smp and start it again.
    CrashBroker,
}

const FAULTS: [Fault; 3] = [Fault::Cut, Fault::KillDlqd, Fault::CrashBroker];

/// Where a message can be at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    Dlq,
    Work(Way),
    Delay(Way),
    Parked,
    Fwd,
    FwdEx,
    Archive,
}

/// Where each (act, way) may end: the rules' promise, checked after every run.
fn allowed(act: Act, way: Way) -> &'static [Place] {
    match (act, way) {
        (Act::Retry | Act::Delay, Way::Reject) => &[Place::Work(Way::Reject)],
        (Act::Retry | Act::Delay, Way::Expire) => &[Place::Parked],
        (Act::Retry | Act::Delay, Way::Overflow) => &[Place::Work(Way::Overflow), Place::Parked],
        (Act::Fwd, _) => &[Place::Fwd],
        (Act::FwdEx, _) => &[Place::FwdEx],
        (Act::Archive, _) => &[Place::Archive],
        (Act::Leave, _) => &[Place::Dlq],
        (Act::Discard, _) => &[],
    }
}

/// The queues of one run.
struct Names {
    dlq: String,
    work: BTreeMap<Way, String>,
    parked: String,
    fwd: String,
    fwdex_queue: String,
    exchange: String,
    archive: PathBuf,
}

impl Names {
    fn new(dir: &Path) -> Names {
        Names {
            dlq: lab::unique("dlq"),
            work: WAYS
                .iter()
                .map(|w| (*w, lab::unique(&format!("work-{w:?}").to_lowercase())))
                .collect(),
            parked: lab::unique("parked"),
            fwd: lab::unique("fwd"),
            fwdex_queue: lab::unique("fwdex"),
            exchange: lab::unique("fx"),
            archive: dir.join("archive.jsonl"),
        }
    }

    fn delay_queue(&self, way: Way) -> String {
        format!("dlqd.delay.1000ms.{}", self.work[&way])
    }

    fn rules(&self) -> String {
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

    /// Every queue a message can end in, with its place.
    fn places(&self) -> Vec<(Place, String)> {
        let mut v = vec![
            (Place::Dlq, self.dlq.clone()),
            (Place::Parked, self.parked.clone()),
            (Place::Fwd, self.fwd.clone()),
            (Place::FwdEx, self.fwdex_queue.clone()),
        ];
        for w in WAYS {
            v.push((Place::Work(w), self.work[&w].clone()));
            v.push((Place::Delay(w), self.delay_queue(w)));
        }
        v
    }
}

/// What one run saw.
#[derive(Debug, Default)]
struct Outcome {
    messages: usize,
    lost: usize,
    misplaced: usize,
    duplicates: usize,
    allowed_duplicates: usize,
    faults: usize,
}

struct Run {
    index: u64,
    seed: u64,
    fault: Fault,
    messages: usize,
    faults: usize,
    prefetch: u16,
}

/// The world a run works in: the private node and the proxy in front of it.
struct World {
    node: PrivateNode,
    proxy: Proxy,
}

fn archived_ids(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
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

/// The observable outputs, for deciding when the drain has settled.
async fn snapshot(lab: &mut Lab, names: &Names) -> Vec<u32> {
    let mut v = Vec::new();
    for (_, q) in names.places() {
        v.push(lab.count(&q).await.unwrap_or(0));
    }
    v.push(archived_ids(&names.archive).len() as u32);
    v
}

async fn run_once(world: &mut World, run: &Run) -> Outcome {
    let started = Instant::now();
    let mut rng = Rng(run.seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let names = Names::new(dir.path());
    let url = world.node.url();
    let mut lab = Lab::connect(&url).await;

    lab.queue(&names.dlq, &[]).await;
    for (w, q) in &names.work {
        lab.work_queue(q, &names.dlq, *w).await;
    }
    lab.queue(&names.parked, &[]).await;
    lab.queue(&names.fwd, &[]).await;
    lab.queue(&names.fwdex_queue, &[]).await;
    lab.topic_to(&names.exchange, &names.fwdex_queue).await;
    for w in WAYS {
        lab.adopt(&names.delay_queue(w));
    }

    // The messages: a unique id each, an act for the rules, a way to die.
    let mut plan: BTreeMap<String, (Act, Way)> = BTreeMap::new();
    let mut publishes = Vec::new();
    let mut rejects = 0;
    for i in 0..run.messages {
        let id = format!("r{}-{i}", run.index);
        let act = Act::pick(&mut rng);
        let way = WAYS[rng.below(3) as usize];
        if way == Way::Reject {
            rejects += 1;
        }
        publishes.push((names.work[&way].clone(), lab::props(&id, act.name())));
        plan.insert(id, (act, way));
    }
    // The last one into the one-message queue needs a filler to push it out.
    publishes.push((
        names.work[&Way::Overflow].clone(),
        lapin::BasicProperties::default().with_message_id("filler".into()),
    ));
    lab.publish_all(&publishes).await;
    lab.reject(&names.work[&Way::Reject], rejects).await;
    lab.wait_count(&names.dlq, run.messages as u32, Duration::from_secs(60))
        .await;
    let filler = lab.drain(&names.work[&Way::Overflow]).await;
    assert_eq!(
        filler.len(),
        1,
        "only the filler is left in the overflow queue"
    );

    let rules = dir.path().join("faults.rules");
    std::fs::write(&rules, names.rules()).expect("rules file");
    let prefetch = run.prefetch.to_string();
    let args = [
        "--rules",
        rules.to_str().expect("utf-8 path"),
        "--prefetch",
        &prefetch,
    ];
    let mut accepted_before = world.proxy.accepted();
    let mut dlqds: Vec<Dlqd> = Vec::new();
    dlqds.push(dlqd::start(dir.path(), &world.proxy.url(), &args));

    // The faults, at seeded moments of the drain.
    let mut done = 0;
    for _ in 0..run.faults {
        // A fault lands while dlqd is at work: connected again after the last one.
        let connected = Instant::now() + Duration::from_secs(90);
        while world.proxy.accepted() <= accepted_before && Instant::now() < connected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        accepted_before = world.proxy.accepted();
        tokio::time::sleep(Duration::from_millis(rng.range(100, 900))).await;
        let left = lab.count(&names.dlq).await.unwrap_or(0);
        match run.fault {
            Fault::Cut => {
                let open = world.proxy.cut();
                eprintln!("  cut {open} connections ({left} on the DLQ)");
            }
            Fault::KillDlqd => {
                let d = dlqds.last_mut().expect("a dlqd");
                d.kill9();
                eprintln!("  kill -9 dlqd ({left} on the DLQ)");
                tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
                dlqds.push(dlqd::start(dir.path(), &world.proxy.url(), &args));
            }
            Fault::CrashBroker => {
                eprintln!("  kill -9 the broker ({left} on the DLQ)");
                let pause = Duration::from_millis(rng.below(500));
                tokio::task::block_in_place(|| {
                    world.node.crash();
                    std::thread::sleep(pause);
                    world.node.restart();
                });
            }
        }
        done += 1;
    }

    // Let the drain settle: every message that should leave the DLQ has reached its
    // place, no delay queue holds anything, and nothing moves for a few passes.
    let expected_out = plan
        .values()
        .filter(|(a, _)| !matches!(a, Act::Leave | Act::Discard))
        .count() as u32;
    let settle_deadline = Instant::now() + Duration::from_secs(180);
    let mut last: Option<Vec<u32>> = None;
    let mut stable_since = Instant::now();
    loop {
        let snap = snapshot(&mut lab, &names).await;
        let places = names.places();
        let count = |want: &dyn Fn(Place) -> bool| -> u32 {
            places
                .iter()
                .zip(&snap)
                .filter(|((p, _), _)| want(*p))
                .map(|(_, n)| *n)
                .sum()
        };
        let out = count(&|p| !matches!(p, Place::Dlq | Place::Delay(_))) + snap[snap.len() - 1];
        let delayed = count(&|p| matches!(p, Place::Delay(_)));
        // The DLQ's own count moves with every pass over the messages left on it.
        let moving: Vec<u32> = places
            .iter()
            .zip(&snap)
            .filter(|((p, _), _)| *p != Place::Dlq)
            .map(|(_, n)| *n)
            .chain(std::iter::once(snap[snap.len() - 1]))
            .collect();
        if last.as_ref() != Some(&moving) {
            last = Some(moving);
            stable_since = Instant::now();
        } else if out >= expected_out
            && delayed == 0
            && stable_since.elapsed() >= Duration::from_secs(3)
        {
            break;
        }
        if Instant::now() > settle_deadline {
            eprintln!("  did not settle: {out} of {expected_out} out, {delayed} delayed");
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A clean stop hands back whatever is in flight.
    let last_dlqd = dlqds.last_mut().expect("a dlqd");
    last_dlqd.signal("TERM");
    let status = last_dlqd.wait(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "run {} (seed {}): dlqd exited {status}; stderr ends:\n{}",
        run.index,
        run.seed,
        last_dlqd.stderr_tail(30)
    );
    for d in &dlqds {
        let text = d.stderr();
        assert!(
            !text.contains("panicked"),
            "dlqd panicked (seed {}):\n{text}",
            run.seed
        );
    }

    // Count every copy of every id, wherever it is.
    let mut found: BTreeMap<String, Vec<Place>> = BTreeMap::new();
    let mut strangers = 0;
    for (place, q) in names.places() {
        for got in lab.drain(&q).await {
            match plan.get(&got.id) {
                Some(_) => found.entry(got.id).or_default().push(place),
                None => strangers += 1,
            }
        }
    }
    for id in archived_ids(&names.archive) {
        found.entry(id).or_default().push(Place::Archive);
    }
    lab.cleanup().await;
    assert_eq!(strangers, 0, "messages nobody sent");
    if std::env::var_os("DLQD_FAULT_KEEP").is_some() {
        eprintln!("  kept {}", dir.keep().display());
    }

    let mut outcome = Outcome {
        messages: run.messages,
        faults: done,
        allowed_duplicates: usize::from(run.prefetch) * done,
        ..Outcome::default()
    };
    let mut examples = Vec::new();
    for (id, (act, way)) in &plan {
        let places = found.get(id).map(Vec::as_slice).unwrap_or(&[]);
        if places.is_empty() {
            if *act != Act::Discard {
                outcome.lost += 1;
                if examples.len() < 10 {
                    examples.push(format!("{id} ({act:?}, {way:?}): nowhere"));
                }
            }
            continue;
        }
        outcome.duplicates += places.len() - 1;
        let ok = allowed(*act, *way);
        if places.iter().any(|p| !ok.contains(p)) {
            outcome.misplaced += 1;
            if examples.len() < 10 {
                examples.push(format!("{id} ({act:?}, {way:?}): in {places:?}"));
            }
        }
    }
    eprintln!(
        "run {} seed {} {:?}: {} messages, prefetch {}, {} faults, {} lost, {} misplaced, \
         {} duplicates (allowed {}), {:.1} s",
        run.index,
        run.seed,
        run.fault,
        run.messages,
        run.prefetch,
        done,
        outcome.lost,
        outcome.misplaced,
        outcome.duplicates,
        outcome.allowed_duplicates,
        started.elapsed().as_secs_f64()
    );
    for e in &examples {
        eprintln!("    {e}");
    }
    if outcome.lost > 0 || outcome.misplaced > 0 {
        for d in &dlqds {
            eprintln!("  --- {} ---\n{}", d.stderr.display(), d.stderr_tail(20));
        }
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drains_through_cuts_dlqd_kills_and_broker_crashes_lose_nothing() {
    let base_seed = env_u64("DLQD_FAULT_SEED", 20_261_122);
    let runs = env_u64("DLQD_FAULT_RUNS", 6);
    let messages = env_u64("DLQD_FAULT_MESSAGES", 2000) as usize;
    eprintln!(
        "faults: seed {base_seed}, {runs} runs of {messages} messages \
         (DLQD_FAULT_SEED / DLQD_FAULT_RUNS / DLQD_FAULT_MESSAGES to change)"
    );
    let suite = Instant::now();
    let node = tokio::task::block_in_place(PrivateNode::start);
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], node.port))).await;
    let mut world = World { node, proxy };

    let mut total = Outcome::default();
    let mut failures = Vec::new();
    for i in 0..runs {
        let seed = base_seed.wrapping_add(i);
        let mut rng = Rng(seed ^ 0x5eed);
        let fault = FAULTS[(seed % 3) as usize];
        let run = Run {
            index: i,
            seed,
            fault,
            messages,
            faults: match fault {
                Fault::CrashBroker => 1 + rng.below(2) as usize,
                _ => 2 + rng.below(3) as usize,
            },
            prefetch: [20u16, 50, 100, 200][rng.below(4) as usize],
        };
        let o = run_once(&mut world, &run).await;
        if o.lost > 0 || o.misplaced > 0 || o.duplicates > o.allowed_duplicates {
            failures.push(format!(
                "seed {seed} ({fault:?}): {} lost, {} misplaced, {} duplicates (allowed {})",
                o.lost, o.misplaced, o.duplicates, o.allowed_duplicates
            ));
        }
        total.messages += o.messages;
        total.lost += o.lost;
        total.misplaced += o.misplaced;
        total.duplicates += o.duplicates;
        total.faults += o.faults;
    }
    let boots: Vec<String> = world
        .node
        .boot_times
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64()))
        .collect();
    eprintln!(
        "faults: {runs} runs, {} messages, {} lost, {} duplicates ({} faults, {} misplaced; \
         node boots {} s; {:.0} s in all)",
        total.messages,
        total.lost,
        total.duplicates,
        total.faults,
        total.misplaced,
        boots.join(" / "),
        suite.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "runs that failed:\n{}",
        failures.join("\n")
    );
}
