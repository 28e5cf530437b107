//! What the seed may do to a simulated world: [`Faults`].

/// The faults a [`World`](super::World) injects, each drawn from the seed. Probabilities are in
/// parts per million (`10_000` is 1 %); ranges are inclusive, in virtual milliseconds.
///
/// [`Faults::none`] is a healthy world (what a plain fiber run and a world without `.faults(..)`
/// get): a 1 ms network, an instant disk, nothing lost, nothing crashed. [`Faults::default`] is
/// a hostile but recoverable one: latency and jitter, lost packets, partitions that heal, hosts
/// that crash and come back, disk errors, torn unsynced writes, short transfers, late cancels
/// and buggify. A file system that lies about `fsync` is opt-in ([`DiskFaults::lying_fsync`]).
///
/// ```
/// use io_fiber::sim::Faults;
/// let mut faults = Faults::default();
/// faults.crash_every_ms = None; // no crashes in this test
/// faults.net.loss_ppm = 50_000; // 5 % of packets lost
/// assert!(faults.partition_every_ms.is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Faults {
    /// The network's behaviour.
    pub net: NetFaults,
    /// The disks' behaviour.
    pub disk: DiskFaults,
    /// A host (not a client) crashes after a time drawn from this range, again and again.
    pub crash_every_ms: Option<(u64, u64)>,
    /// A crashed host boots again after a time drawn from this range (`None`: it stays down).
    pub restart_after_ms: Option<(u64, u64)>,
    /// A partition starts after a time drawn from this range, again and again: one host cut off
    /// from another, one way or both (the seed chooses).
    pub partition_every_ms: Option<(u64, u64)>,
    /// How long a partition lasts before it heals.
    pub partition_for_ms: (u64, u64),
    /// Each host's clock is ahead of the world's by up to this much (drawn once per host).
    pub clock_skew_ms: u64,
    /// io_uring's freedom to move fewer bytes than asked, on sends, receives, reads and writes.
    pub short_transfer_ppm: u32,
    /// io_uring's freedom to deliver a cancel late: a canceled op may still complete within
    /// this many milliseconds (its result is then returned, rule 3). `0`: cancels land at once.
    pub late_cancel_ms: u64,
    /// io_uring's freedom to complete ops out of order: this share of the ops that are done at
    /// once report their result up to `late_completion_ms` later, so completions arrive in
    /// another order than their submissions (the op's effect is done; it can no longer be
    /// canceled).
    pub late_completion_ppm: u32,
    /// How late such a report may come.
    pub late_completion_ms: u64,
    /// Whether `cx.buggify(..)` fault points may fire.
    pub buggify: bool,
    /// How long a `spawn_blocking` closure takes: it runs on the loop's thread this long after
    /// it was submitted (a time drawn from the range), and then completes. Long enough that a
    /// program's timeouts and cancels can meet it running, as they would a real pool's job.
    pub blocking_ms: (u64, u64),
}

/// The network's behaviour: see [`Faults`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetFaults {
    /// One-way latency between two hosts (a host talks to itself with none).
    pub latency_ms: (u64, u64),
    /// Share of packets lost: a TCP segment is sent again after a retransmission timeout; a
    /// UDP datagram is gone.
    pub loss_ppm: u32,
    /// Share of UDP datagrams the network delivers twice.
    pub duplicate_ppm: u32,
    /// Share of UDP datagrams held back on the way (by one more latency), so later ones
    /// overtake them. (Datagrams may overtake each other anyway when latency varies.)
    pub reorder_ppm: u32,
    /// A connect with no answer fails with `TimedOut` after this long.
    pub connect_timeout_ms: u64,
    /// A connection whose data has not arrived for this long is given up: `TimedOut`.
    pub give_up_ms: u64,
}

/// The disks' behaviour: see [`Faults`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskFaults {
    /// How long a file op takes.
    pub latency_ms: (u64, u64),
    /// Share of reads, writes and syncs that fail with `EIO` (nothing is read, written or made
    /// durable).
    pub eio_ppm: u32,
    /// Share of writes that fail with `ENOSPC` (nothing is written).
    pub enospc_ppm: u32,
    /// On a crash, an unsynced write may also be torn (a prefix of it kept). Off: each unsynced
    /// write is lost or kept whole (as a healthy disk may do either).
    pub torn_writes: bool,
    /// Opt-in lying hardware: a completed `sync_all` may still lose the writes before it on a
    /// crash.
    pub lying_fsync: bool,
}

impl Faults {
    /// A healthy world: a 1 ms network, an instant disk, 10 ms per blocking closure, no faults
    /// at all.
    pub fn none() -> Faults {
        Faults {
            net: NetFaults {
                latency_ms: (1, 1),
                loss_ppm: 0,
                duplicate_ppm: 0,
                reorder_ppm: 0,
                connect_timeout_ms: 75_000,
                give_up_ms: 120_000,
            },
            disk: DiskFaults {
                latency_ms: (0, 0),
                eio_ppm: 0,
                enospc_ppm: 0,
                torn_writes: false,
                lying_fsync: false,
            },
            crash_every_ms: None,
            restart_after_ms: None,
            partition_every_ms: None,
            partition_for_ms: (0, 0),
            clock_skew_ms: 0,
            short_transfer_ppm: 0,
            late_cancel_ms: 0,
            late_completion_ppm: 0,
            late_completion_ms: 0,
            buggify: false,
            blocking_ms: (10, 10),
        }
    }
}

impl Default for Faults {
    /// A hostile but recoverable world (see [`Faults`]).
    fn default() -> Faults {
        Faults {
            net: NetFaults {
                latency_ms: (1, 20),
                loss_ppm: 10_000,
                duplicate_ppm: 1_000,
                reorder_ppm: 10_000,
                connect_timeout_ms: 10_000,
                give_up_ms: 15_000,
            },
            disk: DiskFaults {
                latency_ms: (0, 5),
                eio_ppm: 1_000,
                enospc_ppm: 1_000,
                torn_writes: true,
                lying_fsync: false,
            },
            crash_every_ms: Some((5_000, 30_000)),
            restart_after_ms: Some((500, 5_000)),
            partition_every_ms: Some((3_000, 20_000)),
            partition_for_ms: (500, 8_000),
            clock_skew_ms: 100,
            short_transfer_ppm: 50_000,
            late_cancel_ms: 5,
            late_completion_ppm: 100_000,
            late_completion_ms: 3,
            buggify: true,
            blocking_ms: (1, 50),
        }
    }
}
