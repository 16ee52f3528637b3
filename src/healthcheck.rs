//! `pacsgate healthcheck --url http://127.0.0.1:9090/readyz`: one GET to the admin listener
//! (src/admin.rs), exit 0 on a 2xx answer and 1 otherwise. It exists for images without a
//! shell or curl (deploy/container/pacsgate.Containerfile): a container HEALTHCHECK or a
//! Kubernetes exec probe runs inside the container's network namespace, so the admin
//! listener can stay on loopback.
//!
//! Plain HTTP/1.1 only (RFC 9112), as the admin listener speaks; the answer is read up to a
//! bound and only its status line is looked at.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// More than any status line and headers the admin listener sends before its body.
const MAX_ANSWER: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("--url {0:?}: expected http://HOST:PORT/PATH (plain HTTP, the admin listener)")]
    BadUrl(String),
    #[error("{target}: cannot resolve: {source}")]
    Resolve {
        target: String,
        source: std::io::Error,
    },
    #[error("{target}: {source}")]
    Io {
        target: String,
        source: std::io::Error,
    },
    #[error("{target}: no answer within {timeout:?}")]
    Timeout { target: String, timeout: Duration },
    #[error("{target}: not an HTTP/1.x status line")]
    NotHttp { target: String },
    #[error("{target}: status {status}")]
    Unhealthy { target: String, status: u16 },
}

impl HealthError {
    /// Usage errors exit 64 like every configuration error; a failed probe exits 1.
    pub fn is_usage(&self) -> bool {
        matches!(self, HealthError::BadUrl(_))
    }
}

/// A parsed `http://host:port/path` URL.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub path: String,
}

/// Parse the probe URL. No userinfo, query or fragment: the admin endpoints take none, and
/// a URL that could be read two ways is refused rather than guessed at.
pub fn parse_url(url: &str) -> Result<Target, HealthError> {
    let bad = || HealthError::BadUrl(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let clean = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"@?#%\\".contains(&b))
    };
    if authority.is_empty() || !clean(authority) || !clean(path) {
        return Err(bad());
    }
    // A port is required: the admin listener has no default port to fall back on.
    let port = authority.rsplit_once(':').map(|(_, p)| p).ok_or_else(bad)?;
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(Target {
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

/// GET the URL within `timeout` (connect, send and read together); Ok(status) on 2xx.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, HealthError> {
    let target = parse_url(url)?;
    let name = target.authority.clone();
    let deadline = Instant::now() + timeout;
    let io = |source| HealthError::Io {
        target: name.clone(),
        source,
    };
    let addrs: Vec<SocketAddr> = target
        .authority
        .to_socket_addrs()
        .map_err(|source| HealthError::Resolve {
            target: name.clone(),
            source,
        })?
        .collect();
    let left = |deadline: Instant| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(HealthError::Timeout {
                target: name.clone(),
                timeout,
            })
    };
    let mut last = None;
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, left(deadline)?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = match (stream, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(io(e)),
        (None, None) => return Err(io(std::io::ErrorKind::NotFound.into())),
    };
    stream
        .set_write_timeout(Some(left(deadline)?))
        .map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pacsgate-healthcheck\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    while answer.len() < MAX_ANSWER && !answer.windows(2).any(|w| w == b"\r\n") {
        stream.set_read_timeout(Some(left(deadline)?)).map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HealthError::Timeout {
                    target: name,
                    timeout,
                })
            }
            Err(e) => return Err(io(e)),
        }
    }
    let status = status_code(&answer).ok_or(HealthError::NotHttp {
        target: name.clone(),
    })?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(HealthError::Unhealthy {
            target: name,
            status,
        })
    }
}

/// The status code of an `HTTP/1.x NNN ...` status line (RFC 9112 section 4).
fn status_code(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\n').next()?;
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit)
        || rest.get(3).is_some_and(|&b| b != b' ' && b != b'\r')
    {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:9090/readyz").unwrap(),
            Target {
                authority: "127.0.0.1:9090".into(),
                path: "/readyz".into()
            }
        );
        assert_eq!(parse_url("http://[::1]:9090").unwrap().path, "/");
        for bad in [
            "https://127.0.0.1:9090/healthz",
            "http://127.0.0.1/healthz",
            "http://127.0.0.1:0/healthz",
            "http://127.0.0.1:99999/healthz",
            "http://user@127.0.0.1:9090/healthz",
            "http://127.0.0.1:9090/healthz?x",
            "http://127.0.0.1:9090/health z",
            "http://127.0.0.1:9090/%2e",
            "http:///healthz",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    /// A listener on 127.0.0.1 that runs `answer` on its first connection.
    fn server(answer: impl FnOnce(std::net::TcpStream) + Send + 'static) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                answer(stream);
            }
        });
        url
    }

    #[test]
    fn answers() {
        let ok = server(|mut s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
        });
        assert_eq!(probe(&ok, Duration::from_secs(5)).unwrap(), 200);
        let down = server(|mut s| {
            let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        });
        assert!(matches!(
            probe(&down, Duration::from_secs(5)),
            Err(HealthError::Unhealthy { status: 503, .. })
        ));
    }

    /// Abuse: a peer that never answers, or streams bytes without a line end, must not
    /// hold the probe past its deadline or grow its buffer past MAX_ANSWER.
    #[test]
    fn silent_and_endless_peers_are_bounded() {
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let silent = server(move |_s| {
            let _ = hold_rx.recv();
        });
        let started = Instant::now();
        let result = probe(&silent, Duration::from_millis(300));
        assert!(
            matches!(result, Err(HealthError::Timeout { .. })),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(hold_tx);

        let endless = server(|mut s| {
            let junk = [b'A'; 4096];
            while s.write_all(&junk).is_ok() {}
        });
        let result = probe(&endless, Duration::from_secs(5));
        assert!(
            matches!(result, Err(HealthError::NotHttp { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503\r\n"), Some(503));
        assert_eq!(status_code(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(status_code(b"HTTP/2 200\r\n"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b""), None);
    }
}
