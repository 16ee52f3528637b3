//! A "PACS" that misbehaves on purpose (fault injection: Orthanc cannot be made to stall).
//! A plain TCP listener on its own thread; each connection reads the request head, then
//! does what its [`Fault`] says, and reports to the test when the head arrived and when the
//! gateway closed the connection (so tests wait on events, never on sleeps).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Read the head and never answer.
    Stall,
    /// Read the head, then neither read the body nor answer (hold the socket for good).
    HeadOnly,
    /// Answer a head announcing `length` bytes (chunked if `None`), send `sent` of them,
    /// then stall.
    StallMidBody { length: Option<usize>, sent: usize },
    /// Read the head, then close without a byte.
    Close,
    /// Read the head, answer something that is not HTTP.
    Garbage,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A request head arrived (its first line).
    Head(String),
    /// The gateway closed (or reset) the connection, this long after the head.
    Closed(Duration),
}

pub struct FaultyPacs {
    pub port: u16,
    events: Receiver<Event>,
}

impl FaultyPacs {
    pub fn start(fault: Fault) -> FaultyPacs {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind faulty PACS");
        let port = listener.local_addr().expect("addr").port();
        let (tx, events) = channel();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || serve(tcp, fault, &tx));
            }
        });
        FaultyPacs { port, events }
    }

    /// The next event, or a panic naming `what` after `timeout`.
    pub fn next(&self, what: &str, timeout: Duration) -> Event {
        match self.events.recv_timeout(timeout) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => panic!("faulty PACS: no {what} within {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("faulty PACS thread ended"),
        }
    }

    /// Waits for the gateway to close the connection; returns how long after the head.
    pub fn closed(&self, timeout: Duration) -> Duration {
        loop {
            if let Event::Closed(after) = self.next("close by the gateway", timeout) {
                return after;
            }
        }
    }
}

fn serve(mut tcp: TcpStream, fault: Fault, tx: &Sender<Event>) {
    let Some(head) = read_head(&mut tcp) else {
        return;
    };
    let _ = tx.send(Event::Head(head.lines().next().unwrap_or("").to_string()));
    let started = Instant::now();
    match fault {
        Fault::Close => return,
        Fault::Garbage => {
            let _ = tcp.write_all(b"SURPRISE\r\n\r\n");
        }
        Fault::StallMidBody { length, sent } => {
            let framing = match length {
                Some(n) => format!("Content-Length: {n}"),
                None => "Transfer-Encoding: chunked".to_string(),
            };
            let head = format!("HTTP/1.1 200 OK\r\n{framing}\r\n\r\n");
            let _ = tcp.write_all(head.as_bytes());
            if length.is_none() {
                let _ = write!(tcp, "{sent:x}\r\n");
            }
            let _ = tcp.write_all(&vec![b'x'; sent]);
        }
        Fault::HeadOnly => loop {
            // Holds `tcp` unread until the test process ends.
            std::thread::park();
        },
        Fault::Stall => {}
    }
    // Stall: read (and discard) until the gateway closes the connection.
    let mut buf = [0u8; 65536];
    while matches!(tcp.read(&mut buf), Ok(n) if n > 0) {}
    let _ = tx.send(Event::Closed(started.elapsed()));
}

fn read_head(tcp: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 65536 {
            return None;
        }
    }
    String::from_utf8(head).ok()
}
