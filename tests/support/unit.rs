//! A systemd service unit run the way systemd would run it, without systemd as PID 1: its
//! `[Service]` command lines as its `User=`/`Group=` (setpriv, supplementary groups from
//! the user, no capabilities), with its `UMask=`, working directory `/`, a clean
//! environment with what systemd sets (USER, HOME, *_DIRECTORY for the state, logs and
//! configuration directories), and `NOTIFY_SOCKET` pointing at a [`NotifySocket`], so
//! `Type=notify` readiness is observed exactly.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::notify::NotifySocket;
use super::process::Proc;

const WAIT: Duration = Duration::from_secs(120);

pub struct Unit {
    /// `[Service]` settings; a key may repeat (ExecReload=): values in order.
    service: HashMap<String, Vec<String>>,
}

impl Unit {
    pub fn load(path: &Path) -> Unit {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let mut service: HashMap<String, Vec<String>> = HashMap::new();
        let mut in_service = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
            } else if let Some((k, v)) = line.split_once('=').filter(|_| in_service) {
                service
                    .entry(k.to_string())
                    .or_default()
                    .push(v.to_string());
            }
        }
        Unit { service }
    }

    pub fn values(&self, key: &str) -> &[String] {
        self.service.get(key).map_or(&[], Vec::as_slice)
    }

    fn one(&self, key: &str) -> &str {
        self.values(key)
            .first()
            .unwrap_or_else(|| panic!("the unit has no {key}="))
    }

    /// One command line of the unit (`$MAINPID` replaced by `main_pid`).
    pub fn command(&self, line: &str, notify: &NotifySocket, main_pid: Option<u32>) -> Command {
        assert!(
            !line.starts_with(['-', '+', '!', '@', ':']),
            "exec prefix not emulated: {line}"
        );
        let line = main_pid.map_or(line.to_string(), |p| {
            line.replace("$MAINPID", &p.to_string())
        });
        let (user, name) = (self.one("User"), self.one("StateDirectory"));
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={user}"))
            .arg(format!("--regid={}", self.one("Group")))
            .args(["--init-groups", "--inh-caps=-all", "--", "/bin/sh", "-c"])
            .arg(format!("umask {} && exec \"$0\" \"$@\"", self.one("UMask")))
            .args(line.split_whitespace())
            .env_clear()
            .current_dir("/")
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("USER", user)
            .env("LOGNAME", user)
            .env("HOME", format!("/var/lib/{name}"))
            .env("SHELL", "/usr/sbin/nologin")
            .env("NOTIFY_SOCKET", notify.env_value())
            .env("STATE_DIRECTORY", format!("/var/lib/{name}"))
            .env(
                "LOGS_DIRECTORY",
                format!("/var/log/{}", self.one("LogsDirectory")),
            )
            .env(
                "CONFIGURATION_DIRECTORY",
                format!("/etc/{}", self.one("ConfigurationDirectory")),
            );
        cmd
    }

    /// `systemctl start`: every ExecStartPre must pass, then ExecStart runs until READY=1.
    pub fn start(&self, notify: &NotifySocket, log: &Path) -> Proc {
        for pre in self.values("ExecStartPre") {
            let out = self.command(pre, notify, None).output().unwrap();
            assert!(
                out.status.success(),
                "ExecStartPre={pre} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let cmd = self.command(self.one("ExecStart"), notify, None);
        let mut proc = Proc::spawn("service", cmd, log);
        notify.expect("READY=1", WAIT);
        assert!(
            proc.child.try_wait().unwrap().is_none(),
            "{}",
            proc.output()
        );
        proc
    }

    /// `systemctl reload`: the ExecReload lines in order, stopping at the first that fails,
    /// as systemd does. Ok, or the failing line's stderr.
    pub fn reload(&self, proc: &Proc, notify: &NotifySocket) -> Result<(), String> {
        for line in self.values("ExecReload") {
            let out = self
                .command(line, notify, Some(proc.pid()))
                .output()
                .unwrap();
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
        }
        Ok(())
    }

    /// `systemctl stop`: SIGTERM, STOPPING=1, a clean exit.
    pub fn stop(&self, mut proc: Proc, notify: &NotifySocket) {
        proc.signal("TERM");
        notify.expect("STOPPING=1", WAIT);
        let status = proc.wait_exit(WAIT);
        assert!(status.success(), "exit {status}:\n{}", proc.output());
    }
}
