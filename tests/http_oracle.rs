//! The PACS is the oracle: generated spellings of Orthanc routes are sent to Debian's
//! Orthanc 1.10.1 directly and through the gateway (HTTP/1.1, and HTTP/2 where the
//! spelling is a valid `:path`), and Orthanc itself reports which URI it routes on.
//!
//! Orthanc runs a Lua `IncomingHttpRequestFilter`, which Orthanc calls with the method and
//! URI it is about to dispatch (after CivetWeb's decoding and dot handling, before the REST
//! router): it writes them to a file and admits only GETs, so nothing that changes state
//! runs. The test fails when
//! - the gateway forwards a spelling and Orthanc routes it on a URI other than the one the
//!   gateway checked (its canonical path, decoded), or other than the one Orthanc routes
//!   the same spelling on when it comes directly;
//! - anything forwarded lands on an endpoint of the built-in deny set;
//! - a forwarded read-only GET answers differently from the canonical route.
//!
//! `ORACLE_SEED` and `ORACLE_SPELLINGS` (default 10 000) repeat or widen a run; a failure
//! is printed with its mutations shrunk to the ones that matter.

mod support;

use support::http_oracle::{
    gateway_canonical, is_dangerous, percent_decode, route_of, start, Oracle,
};
use support::rawhttp::{send_plain, Reply};
use support::spelling::{mutations, show, shrink, spell, Mutation, Rng};

/// Check one spelling; `Err` describes the disagreement.
fn check(o: &mut Oracle, method: &str, path: &str, muts: &[Mutation]) -> Result<(), String> {
    let sp = spell(method, path, muts);
    let prefix = |auth: String| -> Vec<u8> {
        let mut t = if sp.absolute {
            auth.into_bytes()
        } else {
            Vec::new()
        };
        t.extend_from_slice(&sp.target);
        t
    };
    // A `#` fragment is not part of a request target (RFC 9112 §3.2): hyper drops it and
    // the PACS never receives it, while CivetWeb would keep it in the path. So Orthanc is
    // asked about the spelling without its fragment, which is what the gateway forwards.
    let mut direct_target = prefix(format!("http://127.0.0.1:{}", o.orthanc.http_port));
    if let Some(hash) = direct_target.iter().position(|&b| b == b'#') {
        direct_target.truncate(hash);
    }
    send_plain(o.orthanc.http_port, &sp.method, &direct_target, "");
    let direct = o.routed();
    let gw_target = prefix(format!("https://localhost:{}", o.gateway_port));
    let auth = format!("Authorization: Basic {}\r\n", o.auth);
    let h1 = o.tls.send(&sp.method, &gw_target, &auth);
    let via_h1 = o.routed();
    let basic = format!("Basic {}", o.auth);
    let h2 = if sp.absolute {
        None
    } else {
        o.h2.send(&sp.method, &sp.target, &basic)
    };
    let via_h2 = o.routed();
    if direct.len() > 1 || via_h1.len() > 1 || via_h2.len() > 1 {
        return Err(format!(
            "more than one routed request: {direct:?} {via_h1:?} {via_h2:?}"
        ));
    }
    for (leg, routed, reply) in [("HTTP/1.1", &via_h1, &h1), ("HTTP/2", &via_h2, &h2)] {
        let Some(fwd) = routed.first() else { continue };
        if is_dangerous(&fwd.uri) {
            return Err(format!(
                "{leg}: forwarded to a denied endpoint {}",
                show(&fwd.uri)
            ));
        }
        let canonical = gateway_canonical(&gw_target)
            .ok_or_else(|| format!("{leg}: forwarded although the canonicalizer refuses it"))?;
        if percent_decode(&canonical) != fwd.uri {
            return Err(format!(
                "{leg}: gateway checked {canonical} but Orthanc routed {}",
                show(&fwd.uri)
            ));
        }
        if let Some(d) = direct.first() {
            if route_of(&d.uri) != route_of(&fwd.uri) || d.method != fwd.method {
                return Err(format!(
                    "{leg}: Orthanc routes the spelling as {} {} but the gateway forwarded {} {}",
                    d.method,
                    show(&d.uri),
                    fwd.method,
                    show(&fwd.uri)
                ));
            }
        }
        // A query (`?expand`) changes the answer; compare only plain paths.
        if fwd.method == "GET" && !gw_target.contains(&b'?') {
            same_as_reference(o, &fwd.uri, reply.as_ref()).map_err(|e| format!("{leg}: {e}"))?;
        }
    }
    Ok(())
}

/// A forwarded GET of a read-only route answers like the canonical request did.
fn same_as_reference(o: &Oracle, uri: &[u8], reply: Option<&Reply>) -> Result<(), String> {
    let Some((route, expected)) = o
        .reference
        .iter()
        .find(|(r, _)| route_of(r.as_bytes()) == route_of(uri))
    else {
        return Ok(());
    };
    let got = reply.ok_or("no reply")?;
    if got.status != expected.status {
        return Err(format!(
            "{route}: status {} instead of {}",
            got.status, expected.status
        ));
    }
    // `/tools/now` changes every second; the others are stable during the run.
    if route != "/tools/now" && got.body != expected.body {
        return Err(format!(
            "{route}: body differs from the canonical request's"
        ));
    }
    Ok(())
}

#[test]
fn gateway_and_orthanc_agree_on_every_generated_spelling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut o, gateway, routes) = start(dir.path());
    let rss_before = gateway.proc.rss_kib();
    let seed: u64 = std::env::var("ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xAC1E_2026);
    let count: usize = std::env::var("ORACLE_SPELLINGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    eprintln!("oracle: seed {seed}, {count} spellings");
    let mut rng = Rng::new(seed);
    let mut failures = Vec::new();
    let mut orthanc_bypass_spellings = 0;
    for _ in 0..count {
        let (method, path) = rng.pick(&routes).clone();
        let muts = mutations(&mut rng);
        if let Err(e) = check(&mut o, method, &path, &muts) {
            if failures.len() < 5 {
                let min = shrink(&muts, |m| check(&mut o, method, &path, m).is_err());
                let sp = spell(method, &path, &min);
                failures.push(format!("{} {} ({min:?}): {e}", sp.method, show(&sp.target)));
            } else {
                failures.push(e);
            }
        }
        // How often Orthanc itself turns a spelling that is not literally a dangerous path
        // into one: proof that the run exercises the bypass class, not just easy cases.
        let sp = spell(method, &path, &muts);
        if !sp.absolute && sp.target.ends_with(b".") && path.contains("execute-script") {
            orthanc_bypass_spellings += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements between the gateway and Orthanc (seed {seed}); first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Hostile spellings by the thousand leave the gateway up and its memory bounded.
    let rss_after = gateway.proc.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "gateway RSS grew from {rss_before} to {rss_after} KiB"
    );
    let auth = format!("Authorization: Basic {}\r\n", o.auth);
    assert_eq!(
        o.tls.send("GET", b"/system", &auth).map(|r| r.status),
        Some(200)
    );
    assert!(
        orthanc_bypass_spellings > 0,
        "the generator never produced a dot-suffixed execute-script"
    );
}

/// The confirmed findings, each as Orthanc reads it directly (it runs the dangerous
/// route) and as the gateway answers (refused, nothing routed).
#[test]
fn dot_suffix_spellings_that_orthanc_strips_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut o, _gateway, _) = start(dir.path());
    for (method, target, orthanc_route) in [
        ("POST", "/tools/execute-script.", "/tools/execute-script"),
        ("POST", "/tools./execute-script", "/tools/execute-script"),
        ("POST", "/tools/.../execute-script", "/tools/execute-script"),
        ("POST", "/tools/execute-script%2E", "/tools/execute-script"),
        ("PUT", "/tools/log-level.", "/tools/log-level"),
        ("POST", "/tools/find.", "/tools/find"),
        ("GET", "/webdav./", "/webdav/"),
    ] {
        send_plain(o.orthanc.http_port, method, target.as_bytes(), "");
        let direct = o.routed();
        assert_eq!(
            direct.first().map(|r| route_of(&r.uri).to_vec()),
            Some(route_of(orthanc_route.as_bytes()).to_vec()),
            "Orthanc no longer reads {target} as {orthanc_route}: update the model"
        );
        let auth = format!("Authorization: Basic {}\r\n", o.auth);
        let reply = o.tls.send(method, target.as_bytes(), &auth);
        assert_eq!(reply.map(|r| r.status), Some(400), "{method} {target}");
        assert!(o.routed().is_empty(), "{method} {target} reached Orthanc");
    }
}

/// `GET ...?_method=DELETE` is a DELETE to Orthanc; the gateway refuses every spelling of
/// the parameter that some Orthanc version or parser could read as it.
#[test]
fn method_faking_is_refused_in_every_spelling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut o, _gateway, routes) = start(dir.path());
    let patient = routes
        .iter()
        .find(|(_, p)| p.starts_with("/patients/"))
        .map(|(_, p)| p.clone())
        .expect("patient route");
    send_plain(
        o.orthanc.http_port,
        "GET",
        format!("{patient}?_method=DELETE").as_bytes(),
        "",
    );
    assert_eq!(
        o.routed().first().map(|r| r.method.clone()).as_deref(),
        Some("DELETE"),
        "Orthanc no longer fakes methods from the query: update the model"
    );
    let auth = format!("Authorization: Basic {}\r\n", o.auth);
    for query in [
        "_method=DELETE",
        "_method%00=DELETE",
        "x=1;_method=DELETE",
        "_method[]=DELETE",
        "%255Fmethod=DELETE",
        "%5Fmethod=DELETE",
        "_METHOD=delete",
    ] {
        let target = format!("{patient}?{query}");
        let reply = o.tls.send("GET", target.as_bytes(), &auth);
        assert_eq!(reply.map(|r| r.status), Some(400), "{target}");
        assert!(o.routed().is_empty(), "{target} reached Orthanc");
    }
    // The patient is still there.
    let reply = o.tls.send("GET", patient.as_bytes(), &auth);
    assert_eq!(reply.map(|r| r.status), Some(200));
}
