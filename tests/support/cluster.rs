//! Replicas sharing limits: one real Orthanc, a redis-server (or a fake), and pacsgate
//! processes with the same `[cluster]` configuration in front of it, each with HTTPS,
//! DICOM TLS and an admin listener for `/metrics`.

use std::path::Path;

use super::gateway::{curl, http_status, tls_section, Gateway};
use super::orthanc::Orthanc;
use super::pki::{fingerprint, Ca, Leaf};
use super::policy::sample_policy;
use super::process::free_port;
use super::redis::Redis;

pub const REDIS_PASSWORD: &str = "redis-Secret-3";
pub const PREFIX: &str = "pg-test";

pub struct Replica {
    pub https: u16,
    pub dicom: u16,
    pub admin: u16,
    pub gateway: Gateway,
    _dir: tempfile::TempDir,
}

impl Replica {
    /// `GET /metrics` from the admin listener.
    pub fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.admin);
        curl(&["-s", &url]).1
    }

    /// The value of the unlabelled series `name`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub orthanc: Orthanc,
    pub ca: Ca,
    pub server: Leaf,
    /// A client certificate bound to the user `site` (certificate login, no password).
    pub site: Leaf,
    pub redis: Option<Redis>,
    pub replicas: Vec<Replica>,
}

impl Cluster {
    /// Orthanc, a password-protected redis-server and `n` replicas; `http_extra` and
    /// `dicom_extra` go into `[http]` / `[dicom]`.
    pub fn start(n: usize, http_extra: &str, dicom_extra: &str) -> Cluster {
        let mut c = Self::without_redis();
        let redis = Redis::start(c.dir.path(), Some(REDIS_PASSWORD));
        let url = redis.url();
        c.redis = Some(redis);
        for _ in 0..n {
            c.add_replica(&url, http_extra, dicom_extra, "");
        }
        c
    }

    pub fn without_redis() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let orthanc = Orthanc::start(dir.path(), serde_json::json!({}));
        let ca = Ca::new(dir.path(), "Test CA");
        let server = ca.server(dir.path(), "server");
        let site = ca.client(dir.path(), "site-b");
        Cluster {
            dir,
            orthanc,
            ca,
            server,
            site,
            redis: None,
            replicas: Vec::new(),
        }
    }

    pub fn redis(&mut self) -> &mut Redis {
        self.redis
            .as_mut()
            .expect("this cluster has a redis-server")
    }

    /// The configuration of one replica; `cluster_extra` goes into `[cluster]`.
    pub fn config(
        &self,
        url: &str,
        ports: (u16, u16, u16),
        http_extra: &str,
        dicom_extra: &str,
        cluster_extra: &str,
    ) -> String {
        let password = self.dir.path().join("redis.password");
        write_secret(&password, REDIS_PASSWORD);
        let (https, dicom, admin) = ports;
        let tls_extra = format!(
            "client_ca = {:?}\nclient_auth = \"optional\"\n",
            self.ca.path.display().to_string()
        );
        format!(
            "{tls}[cluster]\nredis = \"{url}\"\nredis_password_file = {pw:?}\nkey_prefix = \"{PREFIX}\"\n{cluster_extra}\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [dicom]\nlisten = \"127.0.0.1:{dicom}\"\nupstream = \"127.0.0.1:{odicom}\"\n{dicom_extra}\n\
             [http]\nlisten = \"127.0.0.1:{https}\"\nupstream = \"http://127.0.0.1:{ohttp}\"\n{http_extra}\n\
             {policy}\n[users.site]\ncertificate = \"{fp}\"\n[[http.rules]]\nname = \"site-read\"\nusers = [\"site\"]\nmethods = [\"GET\"]\npaths = [\"/**\"]\n",
            tls = tls_section(&self.server, &tls_extra),
            pw = password.display().to_string(),
            odicom = self.orthanc.dicom_port,
            ohttp = self.orthanc.http_port,
            policy = sample_policy(),
            fp = fingerprint(&self.site.cert),
        )
    }

    /// Start one more replica pointed at `url`.
    pub fn add_replica(
        &mut self,
        url: &str,
        http_extra: &str,
        dicom_extra: &str,
        cluster_extra: &str,
    ) {
        let ports = (free_port(), free_port(), free_port());
        let toml = self.config(url, ports, http_extra, dicom_extra, cluster_extra);
        let dir = tempfile::tempdir_in(self.dir.path()).expect("replica dir");
        let gateway = Gateway::start(dir.path(), &toml);
        self.replicas.push(Replica {
            https: ports.0,
            dicom: ports.1,
            admin: ports.2,
            gateway,
            _dir: dir,
        });
    }

    /// curl through replica `i` as `user:password` (`None`: anonymous); the status code.
    pub fn status(&self, i: usize, creds: Option<&str>, path: &str) -> u16 {
        let url = format!("https://localhost:{}{path}", self.replicas[i].https);
        let ca = self.ca.path.display().to_string();
        let mut args = vec!["--cacert", &ca];
        if let Some(c) = creds {
            args.extend(["-u", c]);
        }
        args.push(&url);
        let (_, code, err) = http_status(&args);
        code.parse()
            .unwrap_or_else(|_| panic!("curl: {code} {err}"))
    }

    /// GET through replica `i` with the `site` client certificate.
    pub fn status_with_certificate(&self, i: usize, path: &str) -> u16 {
        let url = format!("https://localhost:{}{path}", self.replicas[i].https);
        let (ca, cert, key) = (
            self.ca.path.display().to_string(),
            self.site.cert.display().to_string(),
            self.site.key.display().to_string(),
        );
        let (_, code, err) = http_status(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]);
        code.parse()
            .unwrap_or_else(|_| panic!("curl: {code} {err}"))
    }
}

/// A secret file, 0600 like every secret pacsgate reads.
pub fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{text}\n")).expect("write secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}
