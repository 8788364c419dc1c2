//! The target policy, compiled: which IP addresses the dialer may connect to.
//!
//! This module owns the address rules and nothing else: it never resolves a name and never opens a
//! socket. See the [`net`](super) module docs for the order of the checks and why.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::model::TargetPolicy;
use crate::{Error, Result};

/// An IP network: an address and a prefix length, with the host bits cleared.
///
/// Parsed from `a.b.c.d/n`, `x:y::z/n` or a bare address (a single host: `/32` or `/128`), the
/// grammar the admin API stores (see `normalise_cidr` in `hub::admin`). An IPv6 network inside
/// `::ffff:0:0/96` with a prefix of at least 96 is turned into the IPv4 network it maps, because
/// the policy checks mapped addresses as IPv4 (`::ffff:10.0.0.0/104` is `10.0.0.0/8`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network of `addr` with a prefix of `prefix` bits; host bits are cleared.
    ///
    /// Returns `None` when the prefix is longer than the address (32 or 128).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        match addr {
            IpAddr::V4(a) => {
                let mask = v4_mask(prefix)?;
                Some(Self {
                    network: IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)),
                    prefix,
                })
            }
            IpAddr::V6(a) => {
                let mask = v6_mask(prefix)?;
                let bits = u128::from(a) & mask;
                // A mapped IPv6 network is the IPv4 network it maps (see the type docs).
                if prefix >= 96 && bits >> 32 == 0xffff {
                    let v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
                    return Self::new(IpAddr::V4(v4), prefix - 96);
                }
                Some(Self {
                    network: IpAddr::V6(Ipv6Addr::from(bits)),
                    prefix,
                })
            }
        }
    }

    /// A single host (`/32` or `/128`).
    pub const fn host(addr: IpAddr) -> Self {
        let prefix = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        Self {
            network: addr,
            prefix,
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network. An IPv4 network never contains an IPv6 address and the
    /// reverse; callers normalise mapped addresses first (as [`Policy::check`] does).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                v4_mask(self.prefix).is_some_and(|m| u32::from(ip) & m == u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                v6_mask(self.prefix).is_some_and(|m| u128::from(ip) & m == u128::from(net))
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = Error;

    /// Parses `address[/prefix]`.
    ///
    /// # Errors
    /// `InvalidInput` (field `cidr`) for anything else; the value is not echoed.
    fn from_str(text: &str) -> Result<Self> {
        let invalid = || {
            Error::invalid(
                "cidr",
                "must be an IP network such as 127.0.0.0/8 or ::1/128",
            )
        };
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let prefix = match prefix {
            None => Self::host(addr).prefix,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| invalid())?
            }
            Some(_) => return Err(invalid()),
        };
        Self::new(addr, prefix).ok_or_else(invalid)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({self})")
    }
}

fn v4_mask(prefix: u8) -> Option<u32> {
    (prefix <= 32).then(|| u32::MAX.checked_shl(u32::from(32 - prefix)).unwrap_or(0))
}

fn v6_mask(prefix: u8) -> Option<u128> {
    (prefix <= 128).then(|| u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0))
}

/// Why an address is always denied, whatever the admin's policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlwaysDenied {
    /// `0.0.0.0/8` ("this network"; `0.0.0.0` reaches the local host on Linux) or `::`.
    Unspecified,
    /// IPv4 `224.0.0.0/4` or IPv6 `ff00::/8`.
    Multicast,
    /// `255.255.255.255` and the rest of the reserved `240.0.0.0/4`.
    BroadcastOrReserved,
    /// IPv4 `169.254.0.0/16` or IPv6 `fe80::/10`.
    LinkLocal,
    /// An instance metadata or platform service of a cloud ([`CLOUD_METADATA`]).
    CloudMetadata,
}

impl AlwaysDenied {
    /// A short lowercase description, e.g. `link-local address`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified address",
            Self::Multicast => "multicast address",
            Self::BroadcastOrReserved => "broadcast or reserved address",
            Self::LinkLocal => "link-local address",
            Self::CloudMetadata => "cloud metadata address",
        }
    }
}

/// Cloud instance-metadata and platform endpoints, always denied: they hand out credentials to
/// whoever asks from inside the instance, which is exactly what an SSRF is after.
///
/// Several are link-local and denied as such already; they are listed so the reason is precise
/// and so the list survives if the link-local rule ever changes.
pub const CLOUD_METADATA: &[IpAddr] = &[
    // AWS, GCP, Azure, OCI, DigitalOcean, OpenStack IMDS (also `metadata.google.internal`).
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    // AWS ECS task metadata and credentials endpoint.
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    // AWS IMDS over IPv6 (Nitro).
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
    // Alibaba Cloud ECS metadata.
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    // Azure WireServer (the platform's host agent endpoint; serves goal state and certificates).
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    // Oracle Cloud legacy metadata address.
    IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),
];

/// Why the policy refused an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyReason {
    /// One of the fixed rules no admin setting can lift.
    Always(AlwaysDenied),
    /// `allow_cidrs` is not empty and the address is in none of them.
    NotAllowed,
    /// The address is in one of the admin's `deny_cidrs`.
    Denied(Cidr),
}

/// The policy refused to let the dialer connect to an address.
///
/// Its `Display` names the address, which is what the user typed or what their DNS answered,
/// and the reason; it never names anything secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("address {addr} is blocked by policy ({})", reason_text(.reason))]
pub struct Denial {
    /// The address as resolved or typed (not normalised).
    pub addr: IpAddr,
    /// Why.
    pub reason: DenyReason,
}

fn reason_text(reason: &DenyReason) -> String {
    match reason {
        DenyReason::Always(a) => a.as_str().to_owned(),
        DenyReason::NotAllowed => "not in the allowed networks".to_owned(),
        DenyReason::Denied(cidr) => format!("in the denied network {cidr}"),
    }
}

/// A compiled target policy: the admin's allow and deny networks on top of the fixed rules.
///
/// [`Policy::default`] has no admin rules: every address passes except the always-denied ones,
/// like an empty [`TargetPolicy`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

impl Policy {
    /// A policy from already-parsed networks. An empty `allow` allows every address not denied.
    pub fn new(allow: Vec<Cidr>, deny: Vec<Cidr>) -> Self {
        Self { allow, deny }
    }

    /// Compiles the stored policy.
    ///
    /// # Errors
    /// `InvalidInput` on `allow_cidrs[i]` or `deny_cidrs[i]` if a stored network does not parse
    /// (the admin API normalises them, so this means a corrupt row). The caller must then refuse
    /// to dial: a policy that cannot be read fails closed.
    pub fn from_target(target: &TargetPolicy) -> Result<Self> {
        let parse = |field: &'static str, list: &[String]| -> Result<Vec<Cidr>> {
            list.iter()
                .enumerate()
                .map(|(i, c)| {
                    c.trim()
                        .parse::<Cidr>()
                        .map_err(|e| e.with_field(format!("{field}[{i}]")))
                })
                .collect()
        };
        Ok(Self {
            allow: parse("allow_cidrs", &target.allow_cidrs)?,
            deny: parse("deny_cidrs", &target.deny_cidrs)?,
        })
    }

    /// The admin's allowed networks (empty: any address not denied).
    pub fn allow(&self) -> &[Cidr] {
        &self.allow
    }

    /// The admin's denied networks.
    pub fn deny(&self) -> &[Cidr] {
        &self.deny
    }

    /// Whether the dialer may connect to `ip`.
    ///
    /// Order: the fixed rules, then `allow_cidrs` (when not empty), then `deny_cidrs`. The fixed
    /// rules and `deny_cidrs` are applied to the address as given *and* to every IPv4 address it
    /// embeds (mapped, compatible, NAT64, 6to4), so no spelling slips past an IPv4 rule; the
    /// allow list is matched against the address actually reached ([`canonical`]).
    ///
    /// # Errors
    /// A [`Denial`] naming `ip` and the first rule that refused it.
    pub fn check(&self, ip: IpAddr) -> std::result::Result<(), Denial> {
        let deny = |reason| Denial { addr: ip, reason };
        let forms = forms(ip);
        for form in forms.iter().flatten() {
            if let Some(why) = always_denied(*form) {
                return Err(deny(DenyReason::Always(why)));
            }
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|c| c.contains(canonical(ip))) {
            return Err(deny(DenyReason::NotAllowed));
        }
        for form in forms.iter().flatten() {
            if let Some(cidr) = self.deny.iter().find(|c| c.contains(*form)) {
                return Err(deny(DenyReason::Denied(*cidr)));
            }
        }
        Ok(())
    }
}

/// The address a connection to `ip` really reaches: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, except `::` and `::1`) and well-known-prefix NAT64
/// (`64:ff9b::a.b.c.d`) addresses become the IPv4 address; anything else is returned unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let high = bits >> 32;
            let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
            let mapped = high == 0xffff;
            let compatible = high == 0 && bits > 1;
            let nat64 = high == 0x0064_ff9b_0000_0000_0000_0000;
            if mapped || compatible || nat64 {
                IpAddr::V4(low)
            } else {
                ip
            }
        }
    }
}

/// The forms of `ip` the deny rules look at: the address itself, its canonical form, and the
/// IPv4 address inside a 6to4 address (`2002:aabb:ccdd::/48` tunnels to `a.b.c.d`).
fn forms(ip: IpAddr) -> [Option<IpAddr>; 3] {
    let canon = canonical(ip);
    let six_to_four = match ip {
        IpAddr::V6(v6) if v6.segments()[0] == 0x2002 => {
            let s = v6.segments();
            let v4 = (u32::from(s[1]) << 16) | u32::from(s[2]);
            Some(IpAddr::V4(Ipv4Addr::from(v4)))
        }
        _ => None,
    };
    [Some(ip), (canon != ip).then_some(canon), six_to_four]
}

/// The fixed rules, on one form of an address.
fn always_denied(ip: IpAddr) -> Option<AlwaysDenied> {
    if CLOUD_METADATA.contains(&ip) {
        return Some(AlwaysDenied::CloudMetadata);
    }
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if o[0] == 0 {
                Some(AlwaysDenied::Unspecified)
            } else if v4.is_multicast() {
                Some(AlwaysDenied::Multicast)
            } else if o[0] >= 240 {
                Some(AlwaysDenied::BroadcastOrReserved)
            } else if v4.is_link_local() {
                Some(AlwaysDenied::LinkLocal)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_unspecified() {
                Some(AlwaysDenied::Unspecified)
            } else if v6.is_multicast() {
                Some(AlwaysDenied::Multicast)
            } else if first & 0xffc0 == 0xfe80 {
                Some(AlwaysDenied::LinkLocal)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy(allow: &[&str], deny: &[&str]) -> Policy {
        Policy::from_target(&TargetPolicy {
            allow_cidrs: allow.iter().map(|s| (*s).to_owned()).collect(),
            deny_cidrs: deny.iter().map(|s| (*s).to_owned()).collect(),
            ..TargetPolicy::default()
        })
        .unwrap()
    }

    #[test]
    fn cidrs_parse_normalise_and_match() {
        for (input, expected) in [
            ("127.0.0.1", Some("127.0.0.1/32")),
            ("10.1.2.3/8", Some("10.0.0.0/8")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("::1", Some("::1/128")),
            ("fe80::1/10", Some("fe80::/10")),
            ("::/0", Some("::/0")),
            ("::ffff:10.1.2.3/104", Some("10.0.0.0/8")),
            ("::ffff:0:0/96", Some("0.0.0.0/0")),
            ("::ffff:0:0/95", Some("::fffe:0:0/95")),
            ("127.0.0.1/33", None),
            ("127.0.0.1/", None),
            ("127.0.0.1/+8", None),
            ("127.0.0.1/0008", None),
            ("127.1/8", None),
            ("localhost/8", None),
            ("", None),
            ("::1/129", None),
        ] {
            let got = input.parse::<Cidr>().ok().map(|c| c.to_string());
            assert_eq!(got.as_deref(), expected, "{input}");
        }
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(
            !c.contains(ip("::ffff:10.0.0.1")),
            "callers normalise first"
        );
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("255.255.255.255")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fdff::1")) && !v6.contains(ip("fe00::1")));
        assert_eq!(Cidr::new(ip("10.0.0.0"), 33), None);
    }

    #[test]
    fn a_corrupt_stored_policy_fails_closed_naming_the_entry() {
        let err = Policy::from_target(&TargetPolicy {
            deny_cidrs: vec!["127.0.0.0/8".into(), "nope".into()],
            ..TargetPolicy::default()
        })
        .unwrap_err();
        assert_eq!(err.field(), Some("deny_cidrs[1]"));
    }

    #[test]
    fn canonical_unwraps_embedded_ipv4() {
        for (input, expected) in [
            ("::ffff:127.0.0.1", "127.0.0.1"),
            ("::ffff:7f00:1", "127.0.0.1"),
            ("::127.0.0.1", "127.0.0.1"),
            ("64:ff9b::7f00:1", "127.0.0.1"),
            ("::1", "::1"),
            ("::", "::"),
            ("10.0.0.1", "10.0.0.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("64:ff9b:1::7f00:1", "64:ff9b:1::7f00:1"),
        ] {
            assert_eq!(canonical(ip(input)), ip(expected), "{input}");
        }
    }

    #[test]
    fn fixed_rules_hold_whatever_the_admin_allows() {
        let open = policy(&["0.0.0.0/0", "::/0"], &[]);
        for (input, why) in [
            ("0.0.0.0", AlwaysDenied::Unspecified),
            ("0.1.2.3", AlwaysDenied::Unspecified),
            ("::", AlwaysDenied::Unspecified),
            ("::ffff:0.0.0.0", AlwaysDenied::Unspecified),
            ("224.0.0.1", AlwaysDenied::Multicast),
            ("239.255.255.250", AlwaysDenied::Multicast),
            ("ff02::1", AlwaysDenied::Multicast),
            ("255.255.255.255", AlwaysDenied::BroadcastOrReserved),
            ("240.0.0.1", AlwaysDenied::BroadcastOrReserved),
            ("169.254.1.1", AlwaysDenied::LinkLocal),
            ("fe80::1", AlwaysDenied::LinkLocal),
            ("febf::1", AlwaysDenied::LinkLocal),
            ("169.254.169.254", AlwaysDenied::CloudMetadata),
            ("169.254.170.2", AlwaysDenied::CloudMetadata),
            ("fd00:ec2::254", AlwaysDenied::CloudMetadata),
            ("100.100.100.200", AlwaysDenied::CloudMetadata),
            ("168.63.129.16", AlwaysDenied::CloudMetadata),
            ("192.0.0.192", AlwaysDenied::CloudMetadata),
            ("::ffff:169.254.169.254", AlwaysDenied::CloudMetadata),
            ("::ffff:a9fe:a9fe", AlwaysDenied::CloudMetadata),
            ("::169.254.169.254", AlwaysDenied::CloudMetadata),
            ("64:ff9b::a9fe:a9fe", AlwaysDenied::CloudMetadata),
            ("2002:a9fe:a9fe::1", AlwaysDenied::CloudMetadata),
            ("64:ff9b::e000:1", AlwaysDenied::Multicast),
        ] {
            let d = open.check(ip(input)).unwrap_err();
            assert_eq!(d.reason, DenyReason::Always(why), "{input}");
            assert_eq!(d.addr, ip(input));
        }
        for ok in [
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "100.100.100.201",
            "fec0::1",
            "2001:db8::1",
        ] {
            assert_eq!(open.check(ip(ok)), Ok(()), "{ok}");
        }
        assert_eq!(
            Policy::default().check(ip("127.0.0.1")),
            Ok(()),
            "loopback is not fixed"
        );
    }

    #[test]
    fn admin_allow_then_deny() {
        let p = policy(&["10.0.0.0/8", "::1/128"], &["10.9.0.0/16"]);
        assert_eq!(p.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(
            p.check(ip("::ffff:10.1.2.3")),
            Ok(()),
            "mapped matches the IPv4 allow"
        );
        assert_eq!(p.check(ip("::1")), Ok(()));
        assert_eq!(
            p.check(ip("127.0.0.1")).unwrap_err().reason,
            DenyReason::NotAllowed
        );
        assert_eq!(
            p.check(ip("2002:0a01:0203::1")).unwrap_err().reason,
            DenyReason::NotAllowed,
            "a 6to4 address is reached through a relay, not the embedded address"
        );
        let d = p.check(ip("10.9.0.1")).unwrap_err();
        assert_eq!(d.reason, DenyReason::Denied("10.9.0.0/16".parse().unwrap()));
        assert_eq!(
            d.to_string(),
            "address 10.9.0.1 is blocked by policy (in the denied network 10.9.0.0/16)"
        );

        let p = policy(&[], &["127.0.0.0/8", "::/0"]);
        for input in [
            "127.0.0.1",
            "127.255.0.1",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "::1",
        ] {
            assert!(
                matches!(
                    p.check(ip(input)).unwrap_err().reason,
                    DenyReason::Denied(_)
                ),
                "{input}"
            );
        }
        assert_eq!(p.check(ip("10.0.0.1")), Ok(()));
        // A deny on `::/0` also covers mapped addresses (checked in both forms).
        let p = policy(&[], &["::/0"]);
        assert!(p.check(ip("::ffff:10.0.0.1")).is_err());
        // A mapped deny network is its IPv4 network.
        let p = policy(&[], &["::ffff:127.0.0.0/104"]);
        assert!(p.check(ip("127.0.0.1")).is_err());
    }
}
