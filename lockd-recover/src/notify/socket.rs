//! Step 4b: the source sockets, one non-blocking UDP socket per address family in use, bound
//! with sm-notify's port policy.

use super::plan::{Phase, Target};
use super::{ClientStatus, NotifyConfig, NotifyError, PortChoice};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};

/// The sockets a round sends from.
pub(super) struct Sockets {
    pub(super) v4: Option<UdpSocket>,
    pub(super) v6: Option<UdpSocket>,
}

impl Sockets {
    /// Binds a socket for each family some target needs. Targets whose family the source
    /// address cannot reach fail here. `seed` picks the first reserved port tried.
    pub(super) fn open(
        targets: &mut [Target],
        cfg: &NotifyConfig,
        seed: u32,
        warnings: &mut Vec<String>,
    ) -> Result<Self, NotifyError> {
        let need_v4 = targets.iter().any(|t| t.addr.is_some_and(|a| a.is_ipv4()));
        let need_v6 = targets.iter().any(|t| t.addr.is_some_and(|a| a.is_ipv6()));
        fail_family_mismatches(targets, cfg.source_addr);
        let mut socks = Sockets { v4: None, v6: None };
        if need_v4 && cfg.source_addr.is_none_or_v4() {
            let ip = cfg.source_addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            socks.v4 = Some(bind_socket(ip, cfg.source_port, seed, warnings)?);
        }
        if need_v6 && cfg.source_addr.is_none_or_v6() {
            let ip = cfg.source_addr.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
            socks.v6 = Some(bind_socket(
                ip,
                cfg.source_port,
                seed.wrapping_add(97),
                warnings,
            )?);
        }
        Ok(socks)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &UdpSocket> {
        self.v4.iter().chain(self.v6.iter())
    }

    /// The socket that reaches `addr`, if its family is in use.
    pub(super) fn for_addr(&self, addr: Option<IpAddr>) -> Option<&UdpSocket> {
        match addr {
            Some(IpAddr::V4(_)) => self.v4.as_ref(),
            _ => self.v6.as_ref(),
        }
    }

    pub(super) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.iter().filter_map(|s| s.local_addr().ok()).collect()
    }
}

/// A source address of one family cannot reach a client of the other.
fn fail_family_mismatches(targets: &mut [Target], source: Option<IpAddr>) {
    for t in targets.iter_mut() {
        if let (Some(src), Some(dst)) = (source, t.addr) {
            if src.is_ipv4() != dst.is_ipv4() {
                t.phase = Phase::Failed;
                t.problem = Some((
                    ClientStatus::SendFailed,
                    NotifyError::FamilyMismatch {
                        src,
                        src_family: family_name(src),
                        host: t.host.clone(),
                        dst,
                    }
                    .to_string(),
                ));
            }
        }
    }
}

/// UDP ports listed in /etc/services, which `bindresvport` users avoid (sm-notify retries
/// when the chosen port is a known service, `smn_create_socket()`).
fn services_ports() -> Vec<u16> {
    let Ok(text) = std::fs::read_to_string("/etc/services") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split('#').next()?.split_whitespace().nth(1))
        .filter_map(|p| p.strip_suffix("/udp")?.parse().ok())
        .collect()
}

pub(super) fn family_name(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

fn make_socket(local: SocketAddr) -> io::Result<UdpSocket> {
    let family = if local.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket::socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    match local {
        SocketAddr::V4(a) => socket::bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => {
            // Separate v4 and v6 sockets, so the v6 one must not claim the v4 port space.
            socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
            socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?;
        }
    }
    Ok(UdpSocket::from(fd))
}

/// Binds a UDP socket on `ip` with the port policy.
pub(super) fn bind_socket(
    ip: IpAddr,
    choice: PortChoice,
    seed: u32,
    warnings: &mut Vec<String>,
) -> Result<UdpSocket, NotifyError> {
    let err = |op, e| NotifyError::Socket {
        op,
        source_addr: ip.to_string(),
        err: e,
    };
    let reserved = match choice {
        PortChoice::Fixed(p) => {
            return make_socket(SocketAddr::new(ip, p)).map_err(|e| err("bind", e))
        }
        PortChoice::Ephemeral => false,
        PortChoice::Reserved => true,
        PortChoice::Auto => nix::unistd::geteuid().is_root(),
    };
    if reserved {
        let avoid = services_ports();
        // Like bindresvport: a pseudo-random start in 600..1024, then sequential.
        let span = 1024 - 600;
        let mut last = io::Error::from(io::ErrorKind::AddrInUse);
        for i in 0..span {
            let port = 600 + ((seed as usize + i) % span) as u16;
            if avoid.contains(&port) {
                continue;
            }
            match make_socket(SocketAddr::new(ip, port)) {
                Ok(s) => return Ok(s),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        if choice == PortChoice::Reserved {
            return Err(NotifyError::NoReservedPort(ip.to_string(), last));
        }
        warnings.push(format!(
            "no reserved source port available ({last}); using an ephemeral port"
        ));
    }
    make_socket(SocketAddr::new(ip, 0)).map_err(|e| err("bind", e))
}

trait SourceFamily {
    fn is_none_or_v4(&self) -> bool;
    fn is_none_or_v6(&self) -> bool;
}

impl SourceFamily for Option<IpAddr> {
    fn is_none_or_v4(&self) -> bool {
        !matches!(self, Some(a) if a.is_ipv6())
    }
    fn is_none_or_v6(&self) -> bool {
        !matches!(self, Some(a) if a.is_ipv4())
    }
}
