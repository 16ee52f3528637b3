//! The lock-flag read of a batch (`TIME` + `MGET`, see `batch`) over a connection its
//! sender owns, RESP2 written and read here.
//!
//! Why not the `redis` crate's multiplexed connection, which every other call uses: that
//! connection hands each command to its own driver task and the answer back through a
//! channel, so on a busy gateway a round trip waits for the scheduler three times (sender
//! -> driver, driver -> sender, sender -> requests). Measured on the keep-alive benchmark
//! (32 connections, one worker), that made the lock check's round trip 150-350 µs where
//! Redis answers in about 10: a password login waited most of a request's time for it. Here
//! the sender writes the pipeline itself and is woken by the answer directly.
//!
//! What is read is narrow on purpose: an array of two bulk strings (`TIME`), then an array
//! of one bulk string or nil per key (`MGET`), values at most `MAX_VALUE` bytes of decimal
//! digits. Anything else (an error reply, another shape, an over-long line) ends the
//! connection with an error, which the caller treats as Redis being unavailable. An
//! answer is read into one buffer bounded by `MAX_ANSWER`.

use std::io;
use std::sync::{Mutex, MutexGuard};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::ClusterConfig;

/// Longest value read: a lock flag is microseconds since 1970 (16 digits today), TIME's
/// parts are 10 and 6; 20 digits hold any u64.
const MAX_VALUE: usize = 20;
/// Longest header line (`*N`, `$N`, `+OK`): 20 digits plus the type byte.
const MAX_LINE: usize = 24;
/// The largest answer `MAX_BATCH` checks (two keys each) can produce, with room to spare.
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("Redis connection: {0}")]
    Io(#[from] io::Error),
    #[error("Redis answered an error: {0}")]
    Redis(String),
    #[error("Redis answered something other than {0}")]
    Shape(&'static str),
}

/// The senders' connections: one is taken for a round trip and put back after a whole
/// answer; one that failed or timed out (its answer may still come) is dropped, never
/// reused, and the next round trip connects anew.
pub struct FlagConns {
    host: String,
    port: u16,
    db: i64,
    password: Option<String>,
    idle: Mutex<Vec<FlagConn>>,
    keep: usize,
}

impl FlagConns {
    /// `keep`: idle connections kept (one per sender).
    pub fn new(config: &ClusterConfig, password: Option<String>, keep: usize) -> Self {
        Self {
            host: config.host.clone(),
            port: config.port,
            db: config.db,
            password,
            idle: Mutex::default(),
            keep,
        }
    }

    /// Connect one ahead of the first batch.
    pub async fn warm_up(&self) -> Result<(), FlagError> {
        let conn = self.connect().await?;
        self.put(conn);
        Ok(())
    }

    /// Redis's clock in microseconds and, per key, the flag's value if it exists. The
    /// caller bounds it in time: dropping the future drops the connection in use.
    pub async fn read(&self, keys: &[&str]) -> Result<(u64, Vec<Option<u64>>), FlagError> {
        let idle = self.idle().pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let answer = conn.read(keys).await?;
        self.put(conn);
        Ok(answer)
    }

    async fn connect(&self) -> Result<FlagConn, FlagError> {
        FlagConn::connect(&self.host, self.port, self.db, self.password.as_deref()).await
    }

    fn idle(&self) -> MutexGuard<'_, Vec<FlagConn>> {
        // Plain pushes and pops under the lock: a poisoned one is still sound.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put(&self, conn: FlagConn) {
        let mut idle = self.idle();
        if idle.len() < self.keep {
            idle.push(conn);
        }
    }
}

struct FlagConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl FlagConn {
    /// Connect, then `AUTH` and `SELECT` as configured (one pipeline, `+OK` each).
    async fn connect(
        host: &str,
        port: u16,
        db: i64,
        password: Option<&str>,
    ) -> Result<Self, FlagError> {
        let stream = TcpStream::connect((host, port)).await?;
        // Small requests and answers: Nagle plus delayed ACK would hold them back.
        stream.set_nodelay(true)?;
        let mut conn = Self {
            stream,
            buf: BytesMut::with_capacity(4096),
        };
        let mut out = Vec::new();
        let mut oks = 0;
        if let Some(password) = password {
            command(&mut out, &[b"AUTH", password.as_bytes()]);
            oks += 1;
        }
        if db != 0 {
            command(&mut out, &[b"SELECT", db.to_string().as_bytes()]);
            oks += 1;
        }
        if oks > 0 {
            conn.stream.write_all(&out).await?;
            conn.answer(|buf| {
                let mut at = 0;
                for _ in 0..oks {
                    match line(buf, &mut at)? {
                        Some(b"+OK") => {}
                        Some(_) => return Err(error_or(buf, "+OK")),
                        None => return Ok(None),
                    }
                }
                Ok(Some(((), at)))
            })
            .await?;
        }
        Ok(conn)
    }

    async fn read(&mut self, keys: &[&str]) -> Result<(u64, Vec<Option<u64>>), FlagError> {
        let mut out = Vec::with_capacity(32 + keys.iter().map(|k| k.len() + 16).sum::<usize>());
        command(&mut out, &[b"TIME"]);
        let mut mget: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
        mget.push(b"MGET");
        mget.extend(keys.iter().map(|k| k.as_bytes()));
        command(&mut out, &mget);
        self.stream.write_all(&out).await?;
        let n = keys.len();
        self.answer(|buf| {
            let mut at = 0;
            let Some(time) = values(buf, &mut at, 2, "TIME's two numbers")? else {
                return Ok(None);
            };
            let Some(flags) = values(buf, &mut at, n, "one value per key")? else {
                return Ok(None);
            };
            let [Some(secs), Some(us)] = time[..] else {
                return Err(FlagError::Shape("TIME's two numbers"));
            };
            let now = secs.saturating_mul(1_000_000).saturating_add(us);
            Ok(Some(((now, flags), at)))
        })
        .await
    }

    /// Read until `parse` finds a whole answer (`Ok(Some((value, length)))`) at the start
    /// of the buffer; the buffer then starts after it.
    async fn answer<T>(
        &mut self,
        parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, FlagError>,
    ) -> Result<T, FlagError> {
        loop {
            if let Some((value, used)) = parse(&self.buf)? {
                let _ = self.buf.split_to(used);
                return Ok(value);
            }
            if self.buf.len() >= MAX_ANSWER {
                return Err(FlagError::Shape("an answer of bounded size"));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        }
    }
}

/// One command as a RESP array of bulk strings (written in place: no string per key).
fn command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", parts.len());
    for part in parts {
        let _ = write!(out, "${}\r\n", part.len());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

/// The line at `*at` without its CRLF (`None`: not all here yet); `*at` moves past it.
fn line<'a>(buf: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, FlagError> {
    let rest = buf.get(*at..).unwrap_or_default();
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(end) => {
            *at += end + 2;
            Ok(Some(&rest[..end]))
        }
        None if window.len() > MAX_LINE => Err(FlagError::Shape("a short header line")),
        None => Ok(None),
    }
}

/// An error reply at the start of `buf` as such, else a shape error.
fn error_or(buf: &[u8], expected: &'static str) -> FlagError {
    match buf.strip_prefix(b"-") {
        Some(text) => {
            let text = &text[..text.len().min(200)];
            let end = text
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap_or(text.len());
            FlagError::Redis(String::from_utf8_lossy(&text[..end]).into_owned())
        }
        None => FlagError::Shape(expected),
    }
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > MAX_VALUE || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// An array of `len` bulk strings or nils, each a decimal number.
fn values(
    buf: &[u8],
    at: &mut usize,
    len: usize,
    what: &'static str,
) -> Result<Option<Vec<Option<u64>>>, FlagError> {
    let start = *at;
    let Some(head) = line(buf, at)? else {
        return Ok(None);
    };
    let count = match head.strip_prefix(b"*").and_then(number) {
        Some(c) if c == len as u64 => len,
        _ => return Err(error_or(&buf[start..], what)),
    };
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(head) = line(buf, at)? else {
            return Ok(None);
        };
        if head == b"$-1" {
            out.push(None);
            continue;
        }
        let size = head
            .strip_prefix(b"$")
            .and_then(number)
            .filter(|&s| s as usize <= MAX_VALUE)
            .ok_or(FlagError::Shape(what))? as usize;
        let Some(body) = buf.get(*at..*at + size + 2) else {
            return Ok(None);
        };
        if &body[size..] != b"\r\n" {
            return Err(FlagError::Shape(what));
        }
        out.push(Some(number(&body[..size]).ok_or(FlagError::Shape(what))?));
        *at += size + 2;
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8], n: usize) -> Result<Option<Vec<Option<u64>>>, FlagError> {
        values(buf, &mut 0, n, "test")
    }

    #[test]
    fn commands_are_resp_arrays() {
        let mut out = Vec::new();
        command(&mut out, &[b"MGET", b"a:b", b""]);
        assert_eq!(out, b"*3\r\n$4\r\nMGET\r\n$3\r\na:b\r\n$0\r\n\r\n");
    }

    #[test]
    fn reads_values_and_nils_and_waits_for_the_rest() {
        let whole = b"*3\r\n$2\r\n17\r\n$-1\r\n$1\r\n0\r\n";
        assert_eq!(
            parse(whole, 3).unwrap(),
            Some(vec![Some(17), None, Some(0)])
        );
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut], 3).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn refuses_every_other_shape() {
        for bad in [
            &b"*2\r\n$1\r\n1\r\n$-1\r\n"[..],          // another count
            b"-NOAUTH Authentication required.\r\n",   // an error reply
            b"$1\r\n1\r\n",                            // not an array
            b"*1\r\n$2\r\nab\r\n",                     // not a number
            b"*1\r\n$21\r\n123456789012345678901\r\n", // too long
            b"*1\r\n$1\r\n12\r\n",                     // length disagrees
            b"*1\r\n:5\r\n",                           // an integer reply
            b"*1\r\n$-2\r\n",
            b"*0000000000000000000000000000001\r\n", // an over-long line
        ] {
            assert!(parse(bad, 1).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(
            parse(b"-ERR nope\r\n", 1),
            Err(FlagError::Redis(t)) if t == "ERR nope"
        ));
    }

    /// Generated inputs: mutations of real answers (bytes replaced, inserted, removed,
    /// cut). Nothing panics, and whatever this parser accepts, the redis crate's parser
    /// reads as the same values (the reference reading of RESP).
    #[test]
    fn mutated_answers_never_panic_and_agree_with_the_redis_crate() {
        let seeds: [&[u8]; 3] = [
            b"*3\r\n$2\r\n17\r\n$-1\r\n$16\r\n1795651200123456\r\n",
            b"*2\r\n$10\r\n1795651200\r\n$6\r\n123456\r\n",
            b"*1\r\n$-1\r\n",
        ];
        let alphabet = b"*$-+:_0123456789\r\nab";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % bound as u64) as usize
        };
        let mut accepted = 0;
        for i in 0..60_000 {
            let mut buf = seeds[i % seeds.len()].to_vec();
            for _ in 0..1 + next(3) {
                let at = next(buf.len() + 1);
                let byte = alphabet[next(alphabet.len())];
                match next(4) {
                    0 if at < buf.len() => buf[at] = byte,
                    1 => buf.insert(at, byte),
                    2 if at < buf.len() => {
                        buf.remove(at);
                    }
                    _ => buf.truncate(at),
                }
            }
            for n in [1, 2, 3] {
                let mut at = 0;
                let Ok(Some(ours)) = values(&buf, &mut at, n, "test") else {
                    continue;
                };
                accepted += 1;
                assert!(at <= buf.len());
                let theirs = redis::parse_redis_value(&buf[..at])
                    .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(&buf)));
                let redis::Value::Array(items) = theirs else {
                    panic!(
                        "{:?} is no array to the crate",
                        String::from_utf8_lossy(&buf)
                    );
                };
                let theirs: Vec<Option<u64>> = items
                    .iter()
                    .map(|v| match v {
                        redis::Value::Nil => None,
                        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&buf));
            }
        }
        // The mutations leave enough answers whole for the comparison to mean something.
        assert!(accepted > 1000, "only {accepted} accepted");
        eprintln!("{accepted} mutated answers accepted and compared");
    }

    #[test]
    fn a_header_line_without_end_is_bounded() {
        let long = vec![b'*'; MAX_LINE + 3];
        assert!(parse(&long, 1).is_err());
        assert_eq!(parse(&long[..MAX_LINE], 1).unwrap(), None);
    }
}
