//! Socket addresses by name: [`ToAddrs`], what connect, bind and send-to accept, and
//! [`lookup_host`], the lookup written once over op submission.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::offload::Offload;
use crate::op::Op;
use crate::Cx;

/// What an address argument turned out to be: addresses already, or a host name to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Addresses, tried in order.
    Addrs(Vec<SocketAddr>),
    /// A host name (not an address literal) and a port.
    Lookup {
        /// The name.
        host: String,
        /// The port.
        port: u16,
    },
}

/// An input that names one or more socket addresses: a [`SocketAddr`] (or V4/V6), an
/// `(IpAddr, u16)`, a `"host:port"` string (`"localhost:8080"`, `"db-1:5432"`, `"[::1]:80"`), a
/// `(&str, u16)` pair, or a slice of addresses. The I/O types' connect, bind and send-to take
/// it, as std's take `ToSocketAddrs`.
///
/// Names are looked up by the backend, off the loop's thread ([`lookup_host`]); on the fiber
/// backend, in the simulated world's host table. Address literals are never looked up.
///
/// ```
/// use io_core::addr::{Target, ToAddrs};
/// let addr: std::net::SocketAddr = "127.0.0.1:80".parse().unwrap();
/// assert_eq!("127.0.0.1:80".to_target().unwrap(), Target::Addrs(vec![addr]));
/// assert_eq!(
///     ("db-1", 5432).to_target().unwrap(),
///     Target::Lookup { host: "db-1".into(), port: 5432 }
/// );
/// assert!("no-port".to_target().is_err());
/// ```
pub trait ToAddrs {
    /// The addresses, or the name to look up; a malformed input is an
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) error.
    fn to_target(&self) -> io::Result<Target>;
}

impl ToAddrs for SocketAddr {
    fn to_target(&self) -> io::Result<Target> {
        Ok(Target::Addrs(vec![*self]))
    }
}

impl ToAddrs for SocketAddrV4 {
    fn to_target(&self) -> io::Result<Target> {
        SocketAddr::V4(*self).to_target()
    }
}

impl ToAddrs for SocketAddrV6 {
    fn to_target(&self) -> io::Result<Target> {
        SocketAddr::V6(*self).to_target()
    }
}

impl ToAddrs for (IpAddr, u16) {
    fn to_target(&self) -> io::Result<Target> {
        SocketAddr::from(*self).to_target()
    }
}

impl ToAddrs for (Ipv4Addr, u16) {
    fn to_target(&self) -> io::Result<Target> {
        SocketAddr::from(*self).to_target()
    }
}

impl ToAddrs for (Ipv6Addr, u16) {
    fn to_target(&self) -> io::Result<Target> {
        SocketAddr::from(*self).to_target()
    }
}

impl ToAddrs for (&str, u16) {
    fn to_target(&self) -> io::Result<Target> {
        let (host, port) = *self;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return (ip, port).to_target();
        }
        if host.is_empty() {
            return Err(invalid("an empty host name"));
        }
        Ok(Target::Lookup {
            host: host.to_owned(),
            port,
        })
    }
}

impl ToAddrs for (String, u16) {
    fn to_target(&self) -> io::Result<Target> {
        (self.0.as_str(), self.1).to_target()
    }
}

impl ToAddrs for str {
    fn to_target(&self) -> io::Result<Target> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return addr.to_target();
        }
        let (host, port) = self
            .rsplit_once(':')
            .ok_or_else(|| invalid("an address without a port (expected `host:port`)"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| invalid("an address with an invalid port"))?;
        (host, port).to_target()
    }
}

impl ToAddrs for String {
    fn to_target(&self) -> io::Result<Target> {
        self.as_str().to_target()
    }
}

impl ToAddrs for [SocketAddr] {
    fn to_target(&self) -> io::Result<Target> {
        Ok(Target::Addrs(self.to_vec()))
    }
}

impl ToAddrs for Vec<SocketAddr> {
    fn to_target(&self) -> io::Result<Target> {
        self.as_slice().to_target()
    }
}

impl<T: ToAddrs + ?Sized> ToAddrs for &T {
    fn to_target(&self) -> io::Result<Target> {
        (**self).to_target()
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_owned())
}

/// The addresses `target` names, looking a host name up on `cx`'s backend (an
/// [`Offload::Resolve`] op): off the loop's thread on real backends, in the simulated world's
/// host table on fiber. A name with no address is a [`NotFound`](io::ErrorKind::NotFound)
/// error.
pub async fn lookup_host(cx: &Cx, target: impl ToAddrs) -> io::Result<Vec<SocketAddr>> {
    resolve(cx, target.to_target()?).await
}

pub(crate) async fn resolve(cx: &Cx, target: Target) -> io::Result<Vec<SocketAddr>> {
    let (host, port) = match target {
        Target::Addrs(addrs) if addrs.is_empty() => {
            return Err(invalid("no address given"));
        }
        Target::Addrs(addrs) => return Ok(addrs),
        Target::Lookup { host, port } => (host, port),
    };
    let done = cx
        .submit(Op::Offload(Offload::Resolve {
            host,
            port,
            addrs: Vec::new(),
        }))
        .await;
    done.result?;
    match done.op {
        Op::Offload(Offload::Resolve { addrs, host, .. }) if addrs.is_empty() => {
            Err(crate::offload::no_address(&host))
        }
        Op::Offload(Offload::Resolve { addrs, .. }) => Ok(addrs),
        op => Err(crate::fs::missing_output(&op)),
    }
}

/// Runs `attempt` on each address `target` names, in order, until one succeeds; the last
/// error otherwise. What connect and bind do with several addresses.
pub(crate) async fn first_that_works<T, F, Fut>(
    cx: &Cx,
    target: impl ToAddrs,
    mut attempt: F,
) -> io::Result<T>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    let addrs = resolve(cx, target.to_target()?).await?;
    let mut last = None;
    for addr in addrs {
        match attempt(addr).await {
            Ok(done) => return Ok(done),
            Err(e) if crate::Canceled::is_canceled(&e) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("resolve gives at least one address"))
}
