//! One listener per core on one address (`SO_REUSEPORT`), the kernel spreading connections.
//!
//! An address with a port binds at once on every core. Port 0 ("any free port") must become
//! one port for all of them: the first core to ask binds and publishes the port it got; the
//! others wait for it (a cross-thread wait, canceled like any wait) and bind the same port.
//!
//! The rendezvous is per bind, not per run: the `k`-th successful port-0 bind of an address on
//! each core shares one port (generation `k`), so a later bind (after the first listeners were
//! closed, say) gets a fresh free port, never a port remembered from before that something else
//! may hold by now. A generation is forgotten once every core has bound it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use io_core::op::SocketOptions;
use io_core::{Cancelable, Cx, TcpListener};

/// A port-0 address and a generation of binds of it.
type Key = (SocketAddr, u64);

/// The ports chosen for port-0 addresses, by the address asked for and generation.
pub(super) struct Ports {
    cores: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    slots: HashMap<Key, Slot>,
    /// How many port-0 binds of an address a core has made (successfully): its next
    /// generation.
    bound: HashMap<(SocketAddr, usize), u64>,
}

enum Slot {
    /// A core is binding; these wait for its port.
    Binding(Vec<Waker>),
    /// The port, and how many cores have bound it.
    Bound(SocketAddr, usize),
}

/// What a core does for an address: bind it as given, or wait for the port another core got.
enum Role {
    Bind(u64),
    Wait(u64),
    Use(u64, SocketAddr),
}

impl Ports {
    pub(super) fn new(cores: usize) -> Ports {
        Ports {
            cores,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn role(&self, core: usize, asked: SocketAddr) -> Role {
        let mut state = self.lock();
        let generation = state.bound.get(&(asked, core)).copied().unwrap_or(0);
        match state.slots.get(&(asked, generation)) {
            None => {
                state
                    .slots
                    .insert((asked, generation), Slot::Binding(Vec::new()));
                Role::Bind(generation)
            }
            Some(Slot::Bound(addr, _)) => Role::Use(generation, *addr),
            Some(Slot::Binding(_)) => Role::Wait(generation),
        }
    }

    /// `core` has bound the port of `key` (chosen by another core): it moves on to the next
    /// generation, and the last core to bind forgets this one.
    fn used(&self, core: usize, key: Key) {
        let mut state = self.lock();
        state.bound.insert((key.0, core), key.1 + 1);
        if let Some(Slot::Bound(_, cores)) = state.slots.get_mut(&key) {
            *cores += 1;
            if *cores >= self.cores {
                state.slots.remove(&key);
            }
        }
    }

    /// The binding core is done: publish its port, or (it failed) let another core try.
    fn settle(&self, core: usize, key: Key, bound: Option<SocketAddr>) {
        let waiters = {
            let mut state = self.lock();
            let slot = match bound {
                Some(addr) => {
                    state.bound.insert((key.0, core), key.1 + 1);
                    if self.cores > 1 {
                        state.slots.insert(key, Slot::Bound(addr, 1))
                    } else {
                        state.slots.remove(&key)
                    }
                }
                None => state.slots.remove(&key),
            };
            match slot {
                Some(Slot::Binding(waiters)) => waiters,
                _ => Vec::new(),
            }
        };
        waiters.into_iter().for_each(Waker::wake);
    }
}

/// Binds `addr` with `SO_REUSEPORT` on core `core`; see [`Core::bind_reuse_port`](super::Core).
pub(super) async fn bind(
    ports: &Arc<Ports>,
    core: usize,
    cx: &Cx,
    addr: SocketAddr,
    options: SocketOptions,
) -> io::Result<TcpListener> {
    let options = options.reuse_port(true);
    if addr.port() != 0 {
        return TcpListener::bind_with(cx, addr, options).await;
    }
    loop {
        match ports.role(core, addr) {
            Role::Use(generation, port) => {
                let listener = TcpListener::bind_with(cx, port, options).await?;
                ports.used(core, (addr, generation));
                return Ok(listener);
            }
            Role::Bind(generation) => {
                // Settled whatever happens to this future: a dropped bind lets another core try.
                let mut guard = Settle {
                    ports,
                    core,
                    key: (addr, generation),
                    bound: None,
                };
                let listener = TcpListener::bind_with(cx, addr, options).await?;
                guard.bound = Some(listener.local_addr()?);
                return Ok(listener);
            }
            Role::Wait(generation) => {
                Cancelable::new(Published {
                    ports,
                    key: (addr, generation),
                })
                .await?;
            }
        }
    }
}

struct Settle<'a> {
    ports: &'a Ports,
    core: usize,
    key: Key,
    bound: Option<SocketAddr>,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        self.ports.settle(self.core, self.key, self.bound);
    }
}

/// Waits until the binding core has settled (bound, or failed and left the role free).
struct Published<'a> {
    ports: &'a Ports,
    key: Key,
}

impl Future for Published<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.ports.lock();
        match state.slots.get_mut(&self.key) {
            Some(Slot::Binding(waiters)) => {
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}
