//! One association's two byte streams, relayed concurrently: requestor -> acceptor and
//! acceptor -> requestor, each through a [`Walker`]. Data moves from the read buffer to the
//! other socket with no copy of our own; only held command PDUs and control PDUs are
//! copied. Replies from an inspector (refusal responses) and A-ABORTs are written only at
//! PDU boundaries of the stream they join.

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::inspect::{Abort, Direction};
use super::pdu::{abort_pdu, AbortReason};
use super::session::Session;
use super::walker::{Action, Outbox, Walker};
use crate::server::{linger, LastIo, Tracked};
use crate::sync::{into_inner, lock};

/// Read batch sizes: start small (most associations exchange a few small PDUs) and grow
/// while reads keep filling the buffer (a C-STORE data set), so each write to the other
/// socket carries many PDUs.
const MIN_CHUNK: usize = 16 * 1024;
const MAX_CHUNK: usize = 256 * 1024;
/// Replies a peer may leave unread before the association is aborted.
const REPLY_QUEUE: usize = 16;
/// Bound on writing the final A-ABORT / close_notify to a peer that does not read.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// After one peer has closed, how long the other may take to close too (PS3.8 §9.1.5's
/// ARTIM default is 30 s; a peer that keeps its end open after a release is not going to
/// send anything useful). Not a lingering close (`server::linger`): both pumps still
/// forward meanwhile.
const LINGER: Duration = Duration::from_secs(30);

/// How an association ended, for the log line (and the audit record later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Both peers closed (normally after A-RELEASE).
    Closed,
    /// The gateway aborted: a protocol violation or a refused stream.
    Aborted(Abort),
    /// No byte moved for the idle timeout.
    IdleTimeout,
    /// A socket failed.
    Failed(String),
}

pub struct Report {
    pub ending: Ending,
    pub bytes_from_requestor: u64,
    pub bytes_from_acceptor: u64,
    pub session: Session,
}

/// Why the association is being stopped early; set once, by whoever stops first.
struct Stop {
    token: CancellationToken,
    ending: Mutex<Option<Ending>>,
}

impl Stop {
    fn stop(&self, ending: Ending) {
        let mut slot = lock(&self.ending);
        slot.get_or_insert(ending);
        self.token.cancel();
    }
}

/// The relay's timers.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// No byte either way for this long: A-ABORT.
    pub idle: Duration,
    /// From the replayed RQ to the acceptor's answer (AC, RJ or A-ABORT): an acceptor that
    /// never answers is aborted on the same ARTIM timer as a requestor that never asks
    /// (PS3.8 §9.1.5; dcmtk's SCUs use 30 s, `-ta`, for this wait).
    pub artim: Duration,
}

/// Relay until both sides close, the gateway aborts, or the association idles out.
pub async fn relay<C, U>(requestor: C, acceptor: U, session: Session, timeouts: Timeouts) -> Report
where
    C: AsyncRead + AsyncWrite + Send,
    U: AsyncRead + AsyncWrite + Send,
{
    let activity = LastIo::new();
    let (mut req_read, req_write) = tokio::io::split(Tracked::new(requestor, activity.clone()));
    let (acc_read, acc_write) = tokio::io::split(Tracked::new(acceptor, activity.clone()));
    let session = Mutex::new(session);
    let stop = Stop {
        token: CancellationToken::new(),
        ending: Mutex::new(None),
    };
    let (to_requestor_tx, to_requestor_rx) = mpsc::channel(REPLY_QUEUE);
    let (to_acceptor_tx, to_acceptor_rx) = mpsc::channel(REPLY_QUEUE);
    let upward = Pump {
        from: Direction::FromRequestor,
        session: &session,
        stop: &stop,
        replies_back: to_requestor_tx,
        replies_in: to_acceptor_rx,
    }
    .run(&mut req_read, acc_write);
    let downward = Pump {
        from: Direction::FromAcceptor,
        session: &session,
        stop: &stop,
        replies_back: to_acceptor_tx,
        replies_in: to_requestor_rx,
    }
    .run(acc_read, req_write);
    let (up, down) = wait_both((upward, downward), &session, &activity, timeouts, &stop).await;
    let ending = into_inner(stop.ending).unwrap_or(Ending::Closed);
    if matches!(ending, Ending::Aborted(_)) {
        // The requestor may still be sending (a data set behind the PDU we refused):
        // closing with its bytes unread would reset the connection before it read the
        // A-ABORT, so its side closes lingering, like a refusal before the association.
        linger::drain(&mut req_read, linger::DICOM).await;
    }
    Report {
        ending,
        bytes_from_requestor: up,
        bytes_from_acceptor: down,
        session: into_inner(session),
    }
}

/// Drive both directions until both end; stop them on idleness or an acceptor that does
/// not answer the RQ, and stop the second one if it lingers after the first closed.
async fn wait_both(
    (upward, downward): (
        impl std::future::Future<Output = u64>,
        impl std::future::Future<Output = u64>,
    ),
    session: &Mutex<Session>,
    activity: &LastIo,
    timeouts: Timeouts,
    stop: &Stop,
) -> (u64, u64) {
    tokio::pin!(upward, downward);
    let idle = activity.idle_timeout(timeouts.idle);
    let artim = tokio::time::sleep(timeouts.artim);
    tokio::pin!(idle, artim);
    let mut artim_running = true;
    let (mut up, mut down) = (None, None);
    let mut linger_until = None;
    while up.is_none() || down.is_none() {
        let linger = async {
            match linger_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            n = &mut upward, if up.is_none() => up = Some(n),
            n = &mut downward, if down.is_none() => down = Some(n),
            () = &mut idle, if !stop.token.is_cancelled() => stop.stop(Ending::IdleTimeout),
            () = &mut artim, if artim_running && !stop.token.is_cancelled() => {
                artim_running = false;
                if lock(session).awaiting_accept() {
                    stop.stop(Ending::Aborted(Abort::new(
                        AbortReason::Unspecified,
                        "no answer to the A-ASSOCIATE-RQ before the ARTIM timeout",
                    )));
                }
            }
            () = linger, if !stop.token.is_cancelled() => stop.stop(Ending::Closed),
        }
        if linger_until.is_none() && (up.is_some() || down.is_some()) {
            linger_until = Some(tokio::time::Instant::now() + LINGER);
        }
    }
    (up.unwrap_or(0), down.unwrap_or(0))
}

/// One direction: read from one peer, walk, write to the other.
struct Pump<'a> {
    from: Direction,
    session: &'a Mutex<Session>,
    stop: &'a Stop,
    /// Replies to the peer we read from (written by the other pump).
    replies_back: mpsc::Sender<Bytes>,
    /// Replies to the peer we write to (queued by the other pump).
    replies_in: mpsc::Receiver<Bytes>,
}

impl Pump<'_> {
    /// Returns the number of bytes read from the source.
    async fn run<R, W>(mut self, mut src: R, mut dst: W) -> u64
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut walker = Walker::new(self.from);
        let mut chunk = MIN_CHUNK;
        let mut buf = BytesMut::with_capacity(chunk);
        let mut out = Outbox::default();
        let mut total = 0u64;
        let result = loop {
            buf.reserve(chunk);
            let at_boundary = walker.at_boundary();
            let read = tokio::select! {
                biased;
                () = self.stop.token.cancelled() => break Ok(Flow::Stopped { dst_clean: at_boundary }),
                Some(reply) = self.replies_in.recv(), if at_boundary => {
                    if let Err(e) = write_flush(&mut dst, &reply).await {
                        break Err(e);
                    }
                    continue;
                }
                r = src.read_buf(&mut buf) => r,
            };
            match read {
                Ok(0) => {
                    break Ok(Flow::Eof {
                        mid_pdu: !at_boundary || !buf.is_empty(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // pynetdicom closes TLS without close_notify: a normal close.
                    break Ok(Flow::Eof {
                        mid_pdu: !at_boundary || !buf.is_empty(),
                    });
                }
                Err(e) => break Err(e),
                Ok(_) => {}
            }
            if read_more_now(&mut src, &mut buf).await {
                chunk = (chunk * 2).min(MAX_CHUNK);
            }
            out.clear();
            let fed = {
                let mut session = lock(self.session);
                walker.feed(&buf, &mut session, &mut out)
            };
            let consumed = match fed {
                Ok(n) => n,
                Err(abort) => {
                    break Ok(Flow::Abort {
                        abort,
                        dst_clean: at_boundary,
                    })
                }
            };
            if let Err(e) = execute(&out.actions, &buf, &mut dst).await {
                break Err(e);
            }
            for reply in out.replies.queued.drain(..) {
                if self.replies_back.try_send(reply).is_err() {
                    let abort = Abort::new(
                        AbortReason::Unspecified,
                        "peer does not read the gateway's replies",
                    );
                    self.stop.stop(Ending::Aborted(abort));
                }
            }
            total += consumed as u64;
            buf.advance(consumed);
        };
        self.finish(result, &mut dst).await;
        total
    }

    async fn finish<W: AsyncWrite + Unpin>(&mut self, result: io::Result<Flow>, dst: &mut W) {
        let send_abort = match result {
            Ok(Flow::Eof { mid_pdu }) => {
                if mid_pdu {
                    tracing::debug!(from = ?self.from, "peer closed in the middle of a PDU");
                }
                false
            }
            Ok(Flow::Stopped { dst_clean }) => dst_clean && self.stopped_by_abort(),
            Ok(Flow::Abort { abort, dst_clean }) => {
                tracing::info!(from = ?self.from, reason = ?abort.reason, "aborting the association: {}", abort.why);
                self.stop.stop(Ending::Aborted(abort));
                dst_clean
            }
            Err(e) => {
                tracing::debug!(from = ?self.from, error = %e, "association socket failed");
                self.stop.stop(Ending::Failed(e.to_string()));
                false
            }
        };
        let close = async {
            if send_abort {
                let reason = self.abort_reason();
                let _ = write_flush(dst, &abort_pdu(reason)).await;
            }
            let _ = dst.shutdown().await;
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }

    fn stopped_by_abort(&self) -> bool {
        let ending = lock(&self.stop.ending);
        matches!(*ending, Some(Ending::Aborted(_) | Ending::IdleTimeout))
    }

    fn abort_reason(&self) -> AbortReason {
        let ending = lock(&self.stop.ending);
        match &*ending {
            Some(Ending::Aborted(a)) => a.reason,
            _ => AbortReason::Unspecified,
        }
    }
}

/// Take whatever more the source has ready without waiting, up to the buffer's capacity,
/// so one walk and one write cover it. Returns true if the buffer filled up. An EOF or
/// error seen here is seen again by the next regular read.
async fn read_more_now<R: AsyncRead + Unpin>(src: &mut R, buf: &mut BytesMut) -> bool {
    use futures_util::FutureExt;
    while buf.capacity() > buf.len() {
        match src.read_buf(buf).now_or_never() {
            Some(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
    true
}

enum Flow {
    Eof { mid_pdu: bool },
    Stopped { dst_clean: bool },
    Abort { abort: Abort, dst_clean: bool },
}

async fn execute<W: AsyncWrite + Unpin>(
    actions: &[Action],
    buf: &[u8],
    dst: &mut W,
) -> io::Result<()> {
    for action in actions {
        match action {
            Action::Forward(range) => dst.write_all(&buf[range.clone()]).await?,
            Action::Send(bytes) => dst.write_all(bytes).await?,
        }
    }
    dst.flush().await
}

async fn write_flush<W: AsyncWrite + Unpin>(dst: &mut W, bytes: &[u8]) -> io::Result<()> {
    dst.write_all(bytes).await?;
    dst.flush().await
}
