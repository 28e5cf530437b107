//! One listener per core on one address (`SO_REUSEPORT`), the kernel spreading connections.
//!
//! An address with a port binds at once on every core. Port 0 ("any free port") must become
//! one port for all of them: the first core to ask binds and publishes the port it got; the
//! others wait for it (a cross-thread wait, canceled like any wait) and bind the same port.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use io_core::op::SocketOptions;
use io_core::{Cancelable, Cx, TcpListener};

/// The ports chosen for port-0 addresses, by the address asked for.
#[derive(Default)]
pub(super) struct Ports(Mutex<HashMap<SocketAddr, Slot>>);

enum Slot {
    /// A core is binding; these wait for its port.
    Binding(Vec<Waker>),
    Bound(SocketAddr),
}

/// What a core does for an address: bind it as given, or wait for the port another core got.
enum Role {
    Bind,
    Wait,
    Use(SocketAddr),
}

impl Ports {
    fn role(&self, asked: SocketAddr) -> Role {
        let mut ports = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match ports.get_mut(&asked) {
            None => {
                ports.insert(asked, Slot::Binding(Vec::new()));
                Role::Bind
            }
            Some(Slot::Bound(addr)) => Role::Use(*addr),
            Some(Slot::Binding(_)) => Role::Wait,
        }
    }

    /// The binding core is done: publish its port, or (it failed) let another core try.
    fn settle(&self, asked: SocketAddr, bound: Option<SocketAddr>) {
        let waiters = {
            let mut ports = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let slot = match bound {
                Some(addr) => ports.insert(asked, Slot::Bound(addr)),
                None => ports.remove(&asked),
            };
            match slot {
                Some(Slot::Binding(waiters)) => waiters,
                _ => Vec::new(),
            }
        };
        waiters.into_iter().for_each(Waker::wake);
    }
}

/// Binds `addr` with `SO_REUSEPORT` on this core; see [`Core::bind_reuse_port`](super::Core).
pub(super) async fn bind(
    ports: &Arc<Ports>,
    cx: &Cx,
    addr: SocketAddr,
    options: SocketOptions,
) -> io::Result<TcpListener> {
    let options = options.reuse_port(true);
    if addr.port() != 0 {
        return TcpListener::bind_with(cx, addr, options).await;
    }
    loop {
        match ports.role(addr) {
            Role::Use(port) => return TcpListener::bind_with(cx, port, options).await,
            Role::Bind => {
                // Settled whatever happens to this future: a dropped bind lets another core try.
                let mut guard = Settle {
                    ports,
                    asked: addr,
                    bound: None,
                };
                let listener = TcpListener::bind_with(cx, addr, options).await?;
                guard.bound = Some(listener.local_addr()?);
                return Ok(listener);
            }
            Role::Wait => {
                Cancelable::new(Published { ports, asked: addr }).await?;
            }
        }
    }
}

struct Settle<'a> {
    ports: &'a Ports,
    asked: SocketAddr,
    bound: Option<SocketAddr>,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        self.ports.settle(self.asked, self.bound);
    }
}

/// Waits until the binding core has settled (bound, or failed and left the role free).
struct Published<'a> {
    ports: &'a Ports,
    asked: SocketAddr,
}

impl Future for Published<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut ports = self.ports.0.lock().unwrap_or_else(|e| e.into_inner());
        match ports.get_mut(&self.asked) {
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
