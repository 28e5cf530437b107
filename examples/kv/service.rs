//! A primary/backup replicated key-value store, written once against ioswap: the same code
//! serves on 127.0.0.1 on a real backend (`cargo run --example kv`) and runs in the fiber
//! backend's simulated world under crashes, partitions and disk faults (`tests/sim_kv.rs`).
//!
//! - **Primary** (`primary`): serves `SET key value` and `GET key` over TCP, one line each. A
//!   `SET` is appended to the primary's log and synced, then sent to the backup, and answered
//!   `OK` only once the backup has synced it too: an acknowledged write is on two disks.
//! - **Backup** (`backup`): appends what the primary sends to its own log, syncs, and answers
//!   with the record's sequence number.
//! - **Recovery**: a host that boots replays its log (a torn last record, from a crash mid-write,
//!   is cut off); the primary then asks the backup for the records it lacks, so a write the
//!   backup acknowledged survives the primary losing it.
//!
//! The planted bug (`Config::ack_before_sync`): the primary answers `OK` as soon as it has
//! written the record, before syncing it and before the backup has it. A crash at the wrong
//! moment then loses an acknowledged write, and the simulator finds the seed that shows it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;

use ioswap::channel::{self, Receiver, Sender};
use ioswap::{Cx, File, OpenOptions, TcpListener, TcpStream};

/// Where a store listens and keeps its log.
#[derive(Clone, Debug)]
pub struct Config {
    /// The primary's client address.
    pub primary: SocketAddr,
    /// The backup's replication address.
    pub backup: SocketAddr,
    /// This host's log file.
    pub log: PathBuf,
    /// The planted bug: acknowledge a write before it is synced anywhere.
    pub ack_before_sync: bool,
}

/// One replicated write.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    seq: u64,
    key: String,
    value: String,
}

impl Record {
    fn line(&self) -> String {
        format!("{} {} {}\n", self.seq, self.key, self.value)
    }

    fn parse(line: &str) -> Option<Record> {
        let mut parts = line.splitn(3, ' ');
        let seq = parts.next()?.parse().ok()?;
        let key = parts.next()?.to_string();
        let value = parts.next()?.to_string();
        Some(Record { seq, key, value })
    }
}

/// A host's log: the records it has synced or written, and where the next one goes. Shared by
/// the tasks of a host (one writer at a time), so its bookkeeping is in cells.
struct Log {
    file: File,
    end: Cell<u64>,
    records: RefCell<Vec<Record>>,
}

impl Log {
    /// Opens the log and replays it; a torn tail (no final newline, or a line that does not
    /// parse) is dropped and will be overwritten.
    async fn open(cx: &Cx, path: &PathBuf) -> io::Result<Rc<Log>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .open(cx, path)
            .await?;
        let bytes = file.read_to_end().await?;
        let mut records = Vec::new();
        let mut end = 0;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let Some(text) = line.strip_suffix(b"\n") else {
                break;
            };
            let Some(record) = std::str::from_utf8(text).ok().and_then(Record::parse) else {
                break;
            };
            if record.seq != records.len() as u64 + 1 {
                break;
            }
            records.push(record);
            end += line.len() as u64;
        }
        Ok(Rc::new(Log {
            file,
            end: Cell::new(end),
            records: RefCell::new(records),
        }))
    }

    /// Appends `record`, synced unless `sync` is false.
    async fn append(&self, record: Record, sync: bool) -> io::Result<()> {
        let line = record.line().into_bytes();
        let len = line.len() as u64;
        self.file.write_all_at(line, self.end.get()).await.0?;
        if sync {
            self.file.sync_all().await?;
        }
        self.end.set(self.end.get() + len);
        self.records.borrow_mut().push(record);
        Ok(())
    }

    fn len(&self) -> usize {
        self.records.borrow().len()
    }

    fn next_seq(&self) -> u64 {
        self.len() as u64 + 1
    }

    /// The records from the `from`-th on.
    fn since(&self, from: usize) -> Vec<Record> {
        self.records.borrow().iter().skip(from).cloned().collect()
    }

    fn state(&self) -> BTreeMap<String, String> {
        self.records
            .borrow()
            .iter()
            .map(|r| (r.key.clone(), r.value.clone()))
            .collect()
    }
}

/// Reads newline-terminated lines from a stream.
pub struct Lines {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl Lines {
    /// Lines of `stream`.
    pub fn new(stream: TcpStream) -> Lines {
        Lines {
            stream,
            buffered: Vec::new(),
        }
    }

    /// The next line without its newline; `None` at the end of the stream.
    pub async fn next(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(at) = self.buffered.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffered.drain(..=at).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                return Ok(Some(text));
            }
            let (n, buf) = self.stream.read(Vec::with_capacity(4096)).await;
            if n? == 0 {
                return Ok(None);
            }
            self.buffered.extend_from_slice(&buf);
        }
    }

    /// Sends `line` and a newline.
    pub async fn send(&self, line: &str) -> io::Result<()> {
        self.stream
            .write_all(format!("{line}\n").into_bytes())
            .await
            .0
    }
}

/// A write waiting for the replicator, and where its answer goes.
type Job = (String, String, Sender<io::Result<()>>);

type State = Rc<RefCell<BTreeMap<String, String>>>;

/// Runs the primary until an error it cannot serve through. It serves clients only once it has
/// caught up with the backup, so a read never misses a write the backup acknowledged.
pub async fn primary(cx: Cx, config: Config) -> io::Result<()> {
    let log = Log::open(&cx, &config.log).await?;
    let backup = loop {
        if let Some(link) = sync_with_backup(&cx, &config, &log).await {
            break link;
        }
        cx.sleep(100).await?;
    };
    let state: State = Rc::new(RefCell::new(log.state()));
    let (jobs, queue) = channel::unbounded::<Job>(&cx);
    let replicator = {
        let (config, state) = (config.clone(), state.clone());
        cx.spawn(
            move |cx| async move { Ok(replicate(cx, config, log, backup, state, queue).await) },
        )
    };
    let listener = TcpListener::bind(&cx, config.primary).await?;
    let served = listener
        .serve(move |cx, stream| {
            let (jobs, state) = (jobs.clone(), state.clone());
            async move {
                let _ = session(cx, stream, jobs, state).await;
            }
        })
        .await;
    drop(replicator);
    served.map(|never| match never {})
}

/// One client connection of the primary.
async fn session(cx: Cx, stream: TcpStream, jobs: Sender<Job>, state: State) -> io::Result<()> {
    let mut lines = Lines::new(stream);
    while let Some(line) = lines.next().await? {
        let words: Vec<&str> = line.splitn(3, ' ').collect();
        let reply = match words.as_slice() {
            ["SET", key, value] => {
                let (done, answer) = channel::bounded(&cx, 1);
                let job = (key.to_string(), value.to_string(), done);
                if jobs.send(job).await.is_err() {
                    return Ok(());
                }
                match answer.recv().await {
                    Ok(Ok(())) => "OK".to_string(),
                    _ => "ERR".to_string(),
                }
            }
            ["GET", key] => match state.borrow().get(*key) {
                Some(value) => format!("VALUE {value}"),
                None => "NONE".to_string(),
            },
            _ => "ERR bad request".to_string(),
        };
        lines.send(&reply).await?;
    }
    Ok(())
}

/// The primary's replicator: logs each write, ships it to the backup, and answers the client
/// once both disks have it (or at once, with the planted bug).
async fn replicate(
    cx: Cx,
    config: Config,
    log: Rc<Log>,
    backup: Lines,
    state: State,
    queue: Receiver<Job>,
) -> io::Result<()> {
    let mut backup = Some(backup);
    while let Ok((key, value, done)) = queue.recv().await {
        let record = Record {
            seq: log.next_seq(),
            key,
            value,
        };
        let sync = !config.ack_before_sync;
        if let Err(err) = log.append(record.clone(), sync).await {
            let _ = done.try_send(Err(err));
            continue;
        }
        state
            .borrow_mut()
            .insert(record.key.clone(), record.value.clone());
        if config.ack_before_sync {
            let _ = done.try_send(Ok(()));
        }
        // Ship until the backup has it; a broken link is made again (with a catch-up).
        loop {
            if backup.is_none() {
                backup = sync_with_backup(&cx, &config, &log).await;
            }
            let Some(mut link) = backup.take() else {
                cx.sleep(100).await?;
                continue;
            };
            // A backup gone silent (crashed without a reset) must not stall the log forever.
            let shipping = record.clone();
            let shipped = ioswap::timeout(&cx, 2_000, move |_| async move {
                let shipped = ship(&mut link, &shipping).await;
                Ok((link, shipped))
            })
            .await?;
            if let Ok((link, Ok(()))) = shipped {
                backup = Some(link);
                break;
            }
        }
        if !config.ack_before_sync {
            let _ = done.try_send(Ok(()));
        }
    }
    Ok(())
}

/// Connects to the backup and exchanges what each lacks: the backup's records past this log's
/// end come here, this log's records past the backup's end go there. Gives up after 2 s.
async fn sync_with_backup(cx: &Cx, config: &Config, log: &Rc<Log>) -> Option<Lines> {
    let (addr, log) = (config.backup, log.clone());
    let attempt = move |cx: Cx| async move {
        let exchange = async {
            let stream = TcpStream::connect(&cx, addr).await?;
            let mut link = Lines::new(stream);
            link.send(&format!("HELLO {}", log.len())).await?;
            // The backup sends what it has past our end, then its own length.
            loop {
                let line = link.next().await?.ok_or(io::ErrorKind::UnexpectedEof)?;
                if let Some(count) = line.strip_prefix("HAVE ") {
                    let count: usize = count.parse().map_err(|_| io::ErrorKind::InvalidData)?;
                    for record in log.since(count) {
                        ship(&mut link, &record).await?;
                    }
                    return Ok::<_, io::Error>(link);
                }
                let record = Record::parse(&line).ok_or(io::ErrorKind::InvalidData)?;
                if record.seq == log.next_seq() {
                    log.append(record, true).await?;
                }
            }
        };
        Ok(exchange.await)
    };
    match ioswap::timeout(cx, 2_000, attempt).await {
        Ok(Ok(Ok(link))) => Some(link),
        _ => None,
    }
}

/// Sends one record to the backup and waits for its acknowledgement.
async fn ship(link: &mut Lines, record: &Record) -> io::Result<()> {
    link.send(record.line().trim_end()).await?;
    let ack = link.next().await?.ok_or(io::ErrorKind::UnexpectedEof)?;
    if ack == format!("ACK {}", record.seq) {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidData, ack))
    }
}

/// Runs the backup until an error it cannot serve through. One replication link at a time: a
/// new one (a primary that restarted, or re-made its link) replaces the old, whose primary may
/// be gone without a word.
pub async fn backup(cx: Cx, config: Config) -> io::Result<()> {
    let log = Log::open(&cx, &config.log).await?;
    let listener = TcpListener::bind(&cx, config.backup).await?;
    let mut current: Option<ioswap::Task<()>> = None;
    loop {
        let (stream, _) = listener.accept().await?;
        if let Some(old) = current.take() {
            old.cancel();
            let _ = old.await;
        }
        let log = log.clone();
        current = Some(cx.spawn(move |_| async move {
            let _ = follow(Lines::new(stream), &log).await;
            Ok(())
        }));
    }
}

/// Serves one replication link from the primary.
async fn follow(mut link: Lines, log: &Log) -> io::Result<()> {
    let hello = link.next().await?.ok_or(io::ErrorKind::UnexpectedEof)?;
    let theirs: usize = hello
        .strip_prefix("HELLO ")
        .and_then(|n| n.parse().ok())
        .ok_or(io::ErrorKind::InvalidData)?;
    for record in log.since(theirs) {
        link.send(record.line().trim_end()).await?;
    }
    link.send(&format!("HAVE {}", log.len())).await?;
    while let Some(line) = link.next().await? {
        let record = Record::parse(&line).ok_or(io::ErrorKind::InvalidData)?;
        if record.seq == log.next_seq() {
            log.append(record.clone(), true).await?;
        }
        if record.seq < log.next_seq() {
            link.send(&format!("ACK {}", record.seq)).await?;
        }
    }
    Ok(())
}

/// A client call: sends `request` on a new connection and returns the one-line answer.
pub async fn call(cx: &Cx, addr: SocketAddr, request: &str) -> io::Result<String> {
    let stream = TcpStream::connect(cx, addr).await?;
    let mut lines = Lines::new(stream);
    lines.send(request).await?;
    lines
        .next()
        .await?
        .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}
