//! A minimal IPv4 prefix type. The pod network only needs "parse, contains, nth address",
//! which does not justify another dependency.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network prefix such as `10.42.1.0/24`; the address is always the network address
/// (host bits cleared), so two equal prefixes compare equal whatever was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// Builds a prefix, clearing host bits; `None` when `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            return None;
        }
        let masked = u32::from(addr) & mask(prefix);
        Some(Self {
            addr: Ipv4Addr::from(masked),
            prefix,
        })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Number of addresses in the prefix (including network and broadcast).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The `n`-th address of the prefix (0 = network address), if inside it.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.addr) + n as u32))
    }

    /// Index of `ip` inside the prefix, if it belongs to it.
    pub fn index_of(&self, ip: Ipv4Addr) -> Option<u64> {
        self.contains(ip)
            .then(|| u64::from(u32::from(ip) - u32::from(self.addr)))
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether `other` lies entirely inside this prefix.
    pub fn contains_net(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Error returned when a string is not `a.b.c.d/len`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ipv4 cidr {0:?}")]
pub struct CidrParseError(pub String);

impl FromStr for Ipv4Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrParseError(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| err())?;
        let prefix: u8 = p.parse().map_err(|_| err())?;
        Ipv4Cidr::new(addr, prefix).ok_or_else(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks() {
        let c: Ipv4Cidr = "10.42.1.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.42.1.0/24");
        assert_eq!(c.size(), 256);
        assert_eq!(c.nth(1), Some(Ipv4Addr::new(10, 42, 1, 1)));
        assert_eq!(c.nth(256), None);
        assert!(c.contains(Ipv4Addr::new(10, 42, 1, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 42, 2, 0)));
        let cluster: Ipv4Cidr = "10.42.0.0/16".parse().unwrap();
        assert!(cluster.contains_net(&c));
        assert!(!c.contains_net(&cluster));
        assert!("10.42.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.42.0.0".parse::<Ipv4Cidr>().is_err());
        assert_eq!("0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().size(), 1 << 32);
    }
}
