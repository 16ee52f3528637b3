//! kill -9 of Orthanc while the plugin is writing leaves no corrupt object: every object
//! file that exists afterwards verifies (writes go to a temp file and are renamed).

mod support;

use std::time::Duration;

use support::orthanc::Orthanc;
use support::process::wait_until;
use support::storage::{
    big_dicom, cli, files_under, fs_location, keygen, objects_under, plugin_config, rest,
};

#[test]
fn kill_during_writes_leaves_only_complete_objects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("encrypted");
    let key = keygen(dir.path(), "1.key");
    let files: Vec<_> = (0..6)
        .map(|i| {
            let f = dir.path().join(format!("big{i}.dcm"));
            big_dicom(&f, 24);
            f
        })
        .collect();
    let orthanc = Orthanc::start(
        dir.path(),
        plugin_config((1, &key), &[], fs_location(&root)),
    );
    let port = orthanc.http_port;
    let uploaders: Vec<_> = files
        .chunks(2)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            // Upload and delete in a loop until Orthanc dies, so writes never stop.
            std::thread::spawn(move || loop {
                for f in &chunk {
                    let (code, body) = rest(port, "POST", "/instances", Some(f));
                    if code != 200 {
                        return;
                    }
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    if let Some(id) = v["ID"].as_str() {
                        let _ = rest(port, "DELETE", &format!("/instances/{id}"), None);
                    }
                }
            })
        })
        .collect();
    // Kill as soon as a write is visibly in progress (a temp file exists) and at least
    // one object has been completed.
    wait_until(
        "a write in progress after a completed object",
        Duration::from_secs(120),
        || {
            let all = files_under(&root);
            all.iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
            }) && !objects_under(&root).is_empty()
        },
    );
    orthanc.proc.signal("KILL");
    for u in uploaders {
        let _ = u.join();
    }
    let objects = objects_under(&root);
    let (status, out) = cli(&[
        "verify",
        "--root",
        &root.display().to_string(),
        "--key",
        &format!("1:{}", key.display()),
    ]);
    assert!(status.success(), "{out}");
    assert!(
        out.contains(&format!("{} ok, 0 unreadable", objects.len())),
        "{out}"
    );
}
