//! The DICOM oracle: the PACS reads command sets and AE titles with dcmtk, so dcmtk decides
//! what a byte string means. Thousands of seeded mutations of real requests (repeated and
//! reordered elements, length and group-length games, foreign groups, trailing bytes,
//! hostile bytes in UI and AE values) and of AE title fields go, one association each,
//! to dcmtk's storescp at debug level, which logs the calling/called AE and the DIMSE
//! command as dcmtk parsed them. The same bytes go through pacsgate's decoders in-process.
//! The test fails when pacsgate accepts an input and reads a policy-relevant value
//! (Command Field, SOP Class UID, Move Destination, whether a data set follows, calling
//! or called AE) differently;
//! the first failures are shrunk to their fewest mutations and printed.
//!
//! `PACSGATE_ORACLE_SEED` and `PACSGATE_ORACLE_CASES` override the seed and the number of
//! command sets (defaults 9 and 3000).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pacsgate::config::DicomPolicy;
use pacsgate::dicom::association::Association;
use pacsgate::dicom::command::Command;
use pacsgate::dicom::policy::{Peer, Policy};
use support::dicom::StoreScp;
use support::mutate::{self, Element, Mutation, Rng, UID_NAMES};
use support::process::wait_until;
use support::raw::{fixture, p_data};

/// PS3.8 Table 9-11: called AE at offset 10, calling AE at 26, 16 bytes each.
const CALLED_AT: usize = 10;
const CALLING_AT: usize = 26;
const RELEASE_RQ: [u8; 10] = [5, 0, 0, 0, 0, 4, 0, 0, 0, 0];

/// What dcmtk made of one association, from storescp's debug log.
#[derive(Debug, Default)]
struct Reading {
    calling: Option<String>,
    called: Option<String>,
    /// "C-FIND RQ" etc.; absent when dcmtk refused the command set.
    kind: Option<String>,
    sop_class: Option<String>,
    move_destination: Option<String>,
    /// "present" or "none": whether a data set follows (the enforcer's framing).
    data_set: Option<String>,
}

struct Oracle {
    scp: StoreScp,
    rq: Vec<u8>,
    /// Log segments before ours (the readiness probe's connection, the sync association).
    skip: usize,
    asked: usize,
}

impl Oracle {
    /// storescp, then one association calling as `SYNC`: the log segments after it are
    /// ours, one per association, in order (storescp serves one association at a time).
    fn start(dir: &std::path::Path) -> Oracle {
        let mut oracle = Oracle {
            scp: StoreScp::start_logging(dir, "ORACLE", None, "-d"),
            rq: fixture("dcmtk-echoscu-A-ASSOCIATE-RQ.bin"),
            skip: 0,
            asked: 0,
        };
        let rq = oracle.rq(b"SYNC            ", b"ORACLE          ");
        oracle.send(&rq, None);
        let mut skip = 0;
        wait_until(
            "storescp's log of the sync association",
            Duration::from_secs(20),
            || {
                let raw = std::fs::read(&oracle.scp.proc.log).unwrap_or_default();
                let log = parse_log(&String::from_utf8_lossy(&raw));
                let sync = log
                    .iter()
                    .position(|r| r.calling.as_deref() == Some("SYNC"));
                skip = sync.map_or(0, |i| i + 1);
                sync.is_some()
            },
        );
        oracle.skip = skip;
        oracle.asked = 0;
        oracle
    }

    fn rq(&self, calling: &[u8; 16], called: &[u8; 16]) -> Vec<u8> {
        let mut rq = self.rq.clone();
        rq[CALLED_AT..CALLED_AT + 16].copy_from_slice(called);
        rq[CALLING_AT..CALLING_AT + 16].copy_from_slice(calling);
        rq
    }

    /// One association: the RQ, then (if accepted) the command on context 1 and a release
    /// in one write; read until dcmtk releases, aborts or closes.
    fn send(&mut self, rq: &[u8], command: Option<&[u8]>) {
        self.asked += 1;
        let mut s = TcpStream::connect(("127.0.0.1", self.scp.port)).expect("connect storescp");
        s.set_nodelay(true).expect("nodelay");
        // dcmtk answers nothing at all to an empty AE title ("Illegal service parameter"):
        // a short wait for the AC, a longer one for what follows.
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        s.write_all(rq).expect("send RQ");
        if read_pdu(&mut s).is_none_or(|p| p[0] != 2) {
            return;
        }
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut out = command.map(|c| p_data(&[(1, 3, c)])).unwrap_or_default();
        out.extend_from_slice(&RELEASE_RQ);
        if s.write_all(&out).is_err() {
            return;
        }
        while let Some(pdu) = read_pdu(&mut s) {
            if pdu[0] == 6 || pdu[0] == 7 {
                break;
            }
        }
    }

    /// dcmtk's readings of every association so far, in order.
    fn readings(&self) -> Vec<Reading> {
        let mut readings = Vec::new();
        wait_until(
            "storescp's log of every association",
            Duration::from_secs(20),
            || {
                let raw = std::fs::read(&self.scp.proc.log).unwrap_or_default();
                readings = parse_log(&String::from_utf8_lossy(&raw));
                readings.len() >= self.skip + self.asked
            },
        );
        readings.split_off(self.skip.min(readings.len()))
    }

    fn ask(&mut self, rq: &[u8], command: Option<&[u8]>) -> Reading {
        self.send(rq, command);
        let n = self.asked;
        self.readings().into_iter().nth(n - 1).unwrap_or_default()
    }
}

fn read_pdu(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut pdu = vec![0u8; 6];
    s.read_exact(&mut pdu).ok()?;
    let len = u32::from_be_bytes([pdu[2], pdu[3], pdu[4], pdu[5]]) as usize;
    pdu.resize(6 + len.min(1 << 20), 0);
    s.read_exact(&mut pdu[6..]).ok()?;
    Some(pdu)
}

fn parse_log(log: &str) -> Vec<Reading> {
    let mut out: Vec<Reading> = Vec::new();
    for line in log.lines() {
        if line.contains("Association Received: ") {
            out.push(Reading::default());
            continue;
        }
        let Some(r) = out.last_mut() else { continue };
        if let Some(v) = line.strip_prefix("D: Calling Application Name:    ") {
            r.calling.get_or_insert_with(|| v.to_string());
        } else if let Some(v) = line.strip_prefix("D: Called Application Name:     ") {
            r.called.get_or_insert_with(|| v.to_string());
        } else if let Some((key, v)) = line.strip_prefix("D: ").and_then(|l| l.split_once(" : ")) {
            let slot = match key.trim_end() {
                "Message Type" => &mut r.kind,
                "Affected SOP Class UID" | "Requested SOP Class UID" => &mut r.sop_class,
                "Move Destination" => &mut r.move_destination,
                "Data Set" => &mut r.data_set,
                _ => continue,
            };
            *slot = Some(v.to_string());
        }
    }
    out
}

/// `None` when pacsgate refuses the command set or reads it as dcmtk does.
fn disagreement(command: &[u8], dcmtk: &Reading) -> Option<String> {
    let cmd = Command::parse(command).ok()?;
    let kind = dcmtk.kind.as_deref()?;
    let ours = format!(
        "{} {}",
        cmd.name(),
        if cmd.is_response() { "RSP" } else { "RQ" }
    );
    if ours != kind {
        return Some(format!("command: pacsgate {ours}, dcmtk {kind}"));
    }
    if let Some(theirs) = &dcmtk.sop_class {
        let ours = cmd.sop_class.as_deref().unwrap_or("");
        let named = UID_NAMES.iter().find(|(u, _)| *u == ours).map(|(_, n)| *n);
        if ours != theirs && named != Some(theirs.as_str()) {
            return Some(format!("SOP class: pacsgate {ours:?}, dcmtk {theirs:?}"));
        }
    }
    if let Some(theirs) = &dcmtk.data_set {
        let ours = if cmd.has_data_set() {
            "present"
        } else {
            "none"
        };
        if ours != theirs {
            return Some(format!("data set: pacsgate {ours}, dcmtk {theirs}"));
        }
    }
    if let Some(theirs) = &dcmtk.move_destination {
        if cmd.move_destination.as_deref() != Some(theirs.as_str()) {
            return Some(format!(
                "Move Destination: pacsgate {:?}, dcmtk {theirs:?}",
                cmd.move_destination
            ));
        }
    }
    None
}

struct Case {
    base: usize,
    mutations: Vec<Mutation>,
}

/// Drop mutations one at a time while dcmtk and pacsgate still disagree.
fn shrink(oracle: &mut Oracle, bases: &[(&str, Vec<Element>)], case: &Case) -> String {
    let rq = oracle.rq(b"ORACLE          ", b"ORTHANC         ");
    let base = &bases[case.base].1;
    let mut ms = case.mutations.clone();
    let mut i = 0;
    while i < ms.len() {
        let mut fewer = ms.clone();
        fewer.remove(i);
        let bytes = mutate::build(base, &fewer);
        let reading = oracle.ask(&rq, Some(&bytes));
        if disagreement(&bytes, &reading).is_some() {
            ms = fewer;
        } else {
            i += 1;
        }
    }
    let bytes = mutate::build(base, &ms);
    let reading = oracle.ask(&rq, Some(&bytes));
    format!(
        "base {} + {:?}\n  bytes {}\n  {}",
        bases[case.base].0,
        ms,
        hex(&bytes),
        disagreement(&bytes, &reading).unwrap_or_else(|| "(no longer disagrees)".into())
    )
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn command_sets_pacsgate_accepts_read_as_dcmtk_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::start(dir.path());
    let seed = env_or("PACSGATE_ORACLE_SEED", 9);
    let count = env_or("PACSGATE_ORACLE_CASES", 3000) as usize;
    let mut rng = Rng::new(seed);
    let bases = mutate::bases();
    let mut cases: Vec<Case> = (0..bases.len())
        .map(|base| Case {
            base,
            mutations: Vec::new(),
        })
        .collect();
    while cases.len() < count {
        let base = rng.below(bases.len());
        let mut mutations = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let m = mutate::random_mutation(&mut rng, bases[base].1.len());
            mutations.push(mutate::settle(&mut rng, m, &bases[base].1));
        }
        cases.push(Case { base, mutations });
    }
    let started = Instant::now();
    let rq = oracle.rq(b"ORACLE          ", b"ORTHANC         ");
    let inputs: Vec<Vec<u8>> = cases
        .iter()
        .map(|c| mutate::build(&bases[c.base].1, &c.mutations))
        .collect();
    for input in &inputs {
        oracle.send(&rq, Some(input));
    }
    let readings = oracle.readings();
    let (mut both, mut only_dcmtk, mut failures) = (0, 0, Vec::new());
    for (i, (input, reading)) in inputs.iter().zip(&readings).enumerate() {
        let ours = Command::parse(input).is_ok();
        match (ours, reading.kind.is_some()) {
            (true, true) => both += 1,
            (false, true) => only_dcmtk += 1,
            _ => {}
        }
        if let Some(why) = disagreement(input, reading) {
            failures.push((i, why));
        }
    }
    eprintln!(
        "oracle seed {seed}: {} command sets in {:?}; accepted by both {both}, refused only \
         by pacsgate {only_dcmtk}, disagreements {}",
        inputs.len(),
        started.elapsed(),
        failures.len()
    );
    for (i, (name, _)) in bases.iter().enumerate() {
        assert!(
            readings[i].kind.is_some()
                && readings[i].data_set.is_some()
                && Command::parse(&inputs[i]).is_ok(),
            "base {name} must be read by both: {:?}",
            readings[i]
        );
    }
    assert!(
        both * 50 >= inputs.len(),
        "too few inputs accepted by both ({both})"
    );
    if !failures.is_empty() {
        let shown: Vec<String> = failures
            .iter()
            .take(3)
            .map(|(i, why)| {
                format!(
                    "case {i}: {why}\n  minimal: {}",
                    shrink(&mut oracle, &bases, &cases[*i])
                )
            })
            .collect();
        panic!(
            "seed {seed}: pacsgate accepts {} command sets that dcmtk reads differently:\n{}",
            failures.len(),
            shown.join("\n")
        );
    }
}

#[test]
fn ae_titles_pacsgate_accepts_read_as_dcmtk_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut oracle = Oracle::start(dir.path());
    let seed = env_or("PACSGATE_ORACLE_SEED", 9);
    let mut rng = Rng::new(seed);
    let valid_calling = *b"CT1             ";
    let valid_called = *b"ORTHANC         ";
    let mut pairs: Vec<([u8; 16], [u8; 16])> = Vec::new();
    for f in mutate::ae_fields(&mut rng, b"CT1", 300) {
        pairs.push((f, valid_called));
    }
    for f in mutate::ae_fields(&mut rng, b"ORTHANC", 300) {
        pairs.push((valid_calling, f));
    }
    for (calling, called) in &pairs {
        let rq = oracle.rq(calling, called);
        oracle.send(&rq, None);
    }
    let readings = oracle.readings();
    let policy = Policy::new(DicomPolicy::default());
    let peer = Peer {
        ip: [127, 0, 0, 1].into(),
        identity: None,
    };
    let (mut accepted, mut failures) = (0, Vec::new());
    for ((calling, called), reading) in pairs.iter().zip(&readings) {
        let rq = Association::parse_rq(&oracle.rq(calling, called)).expect("RQ parses");
        if policy.admit(&rq.calling_ae, &rq.called_ae, &peer).is_err() {
            continue;
        }
        accepted += 1;
        let ours = (Some(&rq.calling_ae), Some(&rq.called_ae));
        if ours != (reading.calling.as_ref(), reading.called.as_ref()) {
            failures.push(format!(
                "calling {:?} called {:?}: pacsgate reads {ours:?}, dcmtk {:?} / {:?}",
                String::from_utf8_lossy(calling),
                String::from_utf8_lossy(called),
                reading.calling,
                reading.called
            ));
        }
    }
    eprintln!(
        "oracle seed {seed}: {} AE title pairs; accepted by pacsgate {accepted}; disagreements {}",
        pairs.len(),
        failures.len()
    );
    assert!(
        accepted >= 50,
        "too few valid titles generated ({accepted})"
    );
    assert!(
        failures.is_empty(),
        "{}",
        failures[..failures.len().min(10)].join("\n")
    );
}
