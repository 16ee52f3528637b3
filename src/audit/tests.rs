use super::*;

#[derive(Serialize)]
struct Sample {
    user: &'static str,
    status: u16,
}

#[derive(Serialize)]
struct Empty {}

fn config(path: &Path, queue: usize, flush: Duration, on_full: AuditOnFull) -> AuditConfig {
    AuditConfig {
        path: Some(path.to_path_buf()),
        queue,
        flush,
        on_full,
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn records_are_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let cfg = config(&path, 16, Duration::from_millis(5), AuditOnFull::Drop);
    let audit = Audit::open(&cfg, None).unwrap();
    audit.record(
        "http",
        &Sample {
            user: "alice",
            status: 200,
        },
    );
    audit.record(
        "http",
        &Sample {
            user: "bob",
            status: 403,
        },
    );
    audit.record("tick", &Empty {});
    audit.record("bad", &"not an object");
    audit.close(Duration::from_secs(5));
    let lines = lines(&path);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["kind"], "http");
    assert_eq!(lines[1]["user"], "bob");
    assert_eq!(lines[1]["status"], 403);
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[2].as_object().unwrap().len(), 2, "{}", lines[2]);
    assert_eq!(
        audit.stats(),
        Stats {
            written: 3,
            lost: 1
        }
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Abuse: a full disk must neither block the caller nor lose a record uncounted. /dev/full
/// fails every write with ENOSPC; a reopen onto a writable file is the disk getting space.
#[test]
fn a_full_disk_holds_the_batch_counts_what_overflows_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let cfg = config(
        Path::new("/dev/full"),
        16,
        Duration::from_millis(1),
        AuditOnFull::Drop,
    );
    let mut audit = Audit::open(&cfg, None).unwrap();
    audit.record(
        "http",
        &Sample {
            user: "first",
            status: 200,
        },
    );
    wait("the first write to fail", || !audit.queue.healthy());
    let started = Instant::now();
    for _ in 0..100 {
        audit.record(
            "http",
            &Sample {
                user: "u",
                status: 200,
            },
        );
    }
    assert!(started.elapsed() < Duration::from_secs(1), "record blocked");
    assert!(audit.admits(), "drop mode keeps serving");
    // The writer holds the first batch; 16 wait in the queue; the rest are lost.
    assert_eq!(
        audit.stats(),
        Stats {
            written: 0,
            lost: 100 - 16
        }
    );
    audit.path = Some(path.clone());
    audit.reopen();
    wait("the held records to be written", || {
        audit.stats().written == 17
    });
    audit.record(
        "http",
        &Sample {
            user: "after",
            status: 200,
        },
    );
    audit.close(Duration::from_secs(5));
    let lines = lines(&path);
    assert_eq!(lines.len(), 18);
    assert_eq!(lines[0]["user"], "first");
    assert_eq!(lines[17]["user"], "after");
    let s = audit.stats();
    assert_eq!(s.written + s.lost, 101 + 1);
}

#[test]
fn refuse_mode_stops_admitting_while_records_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        Path::new("/dev/full"),
        16,
        Duration::from_millis(1),
        AuditOnFull::Refuse,
    );
    let mut audit = Audit::open(&cfg, None).unwrap();
    assert!(audit.admits());
    audit.record(
        "http",
        &Sample {
            user: "first",
            status: 200,
        },
    );
    wait("the first write to fail", || !audit.admits());
    let path = dir.path().join("audit.jsonl");
    audit.path = Some(path.clone());
    audit.reopen();
    wait("admission again", || audit.admits());
    audit.close(Duration::from_secs(5));
    assert_eq!(lines(&path).len(), 1);
}

#[test]
fn queue_full_refuses_until_the_writer_takes_the_batch() {
    let q = Queue::new(16, Duration::from_millis(1));
    for _ in 0..16 {
        q.push(b"{}\n");
    }
    assert!(!q.healthy());
    q.push(b"{}\n");
    assert_eq!(q.lost.load(Relaxed), 1);
    let mut buf = Vec::new();
    assert!(q.take(&mut buf).unwrap().reopen.is_none());
    assert_eq!(buf.len(), 16 * 3);
    assert!(q.healthy());
}

#[test]
fn records_queued_before_a_reopen_go_to_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    // A long flush: both records wait in the queue when the reopen comes.
    let cfg = config(&path, 16, Duration::from_secs(10), AuditOnFull::Drop);
    let audit = Audit::open(&cfg, None).unwrap();
    audit.record(
        "http",
        &Sample {
            user: "before",
            status: 200,
        },
    );
    let rotated = dir.path().join("audit.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    audit.reopen();
    audit.record(
        "http",
        &Sample {
            user: "after",
            status: 200,
        },
    );
    audit.close(Duration::from_secs(5));
    let (old, new) = (lines(&rotated), lines(&path));
    assert_eq!(old.len(), 1);
    assert_eq!(old[0]["user"], "before");
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["user"], "after");
}

/// Shutdown must not lose what is still in memory: with a 10 s flush nothing would be on
/// disk yet without the drain.
#[test]
fn close_drains_the_queue_and_later_records_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let cfg = config(&path, 1000, Duration::from_secs(10), AuditOnFull::Drop);
    let audit = Audit::open(&cfg, None).unwrap();
    for _ in 0..500 {
        audit.record(
            "http",
            &Sample {
                user: "u",
                status: 200,
            },
        );
    }
    audit.close(Duration::from_secs(5));
    assert_eq!(lines(&path).len(), 500);
    audit.record(
        "http",
        &Sample {
            user: "late",
            status: 200,
        },
    );
    assert_eq!(
        audit.stats(),
        Stats {
            written: 500,
            lost: 1
        }
    );
}

#[test]
fn a_stuck_disk_at_shutdown_counts_the_held_records_as_lost() {
    let cfg = config(
        Path::new("/dev/full"),
        16,
        Duration::from_millis(1),
        AuditOnFull::Drop,
    );
    let audit = Audit::open(&cfg, None).unwrap();
    for _ in 0..5 {
        audit.record(
            "http",
            &Sample {
                user: "u",
                status: 200,
            },
        );
    }
    audit.close(Duration::from_millis(100));
    assert_eq!(
        audit.stats(),
        Stats {
            written: 0,
            lost: 5
        }
    );
}
