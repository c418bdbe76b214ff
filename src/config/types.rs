//! Value types of the config file that parse themselves with a clear message: socket addresses,
//! durations (`"5s"`, `"250ms"`), HTTP status sets and hash keys. Field paths are added by the loader.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// An `IP:port` socket address (`127.0.0.1:9001`, `[::1]:8080`). Host names are resolved only
/// where a field says so (a backend's `address`, see [`resolved_addr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr(pub SocketAddr);

impl Addr {
    /// Parses `IP:port`, explaining what is wrong otherwise.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map(Addr)
            .map_err(|_| format!("{text:?} is not an IP:port address (e.g. 127.0.0.1:9001)"))
    }
}

impl Addr {
    /// Parses `IP:port`, or `host:port` with the host name resolved now (the system's resolver,
    /// `/etc/hosts` included) to its first address, IPv4 first.
    pub fn resolve(text: &str) -> Result<Self, String> {
        if let Ok(addr) = Self::parse(text) {
            return Ok(addr);
        }
        let shape = || format!("{text:?} is not an IP:port or host:port address (e.g. 127.0.0.1:9001)");
        let (host, port) = text.trim().rsplit_once(':').ok_or_else(shape)?;
        let port: u16 = port.parse().map_err(|_| shape())?;
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !host_ok {
            return Err(shape());
        }
        let found = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .map_err(|e| format!("{host:?} does not resolve: {e}"))?;
        found
            .min_by_key(SocketAddr::is_ipv6)
            .map(Addr)
            .ok_or_else(|| format!("{host:?} resolves to no address"))
    }
}

/// Deserializes a backend's address: `IP:port`, or `host:port` resolved by [`Addr::resolve`].
pub fn resolved_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Addr, D::Error> {
    let text = String::deserialize(d)?;
    Addr::resolve(&text).map_err(de::Error::custom)
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Addr::parse(&text).map_err(de::Error::custom)
    }
}

/// A duration written with a unit: `"250ms"`, `"5s"`, `"2m"`, `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses `<number><unit>` where unit is `ms`, `s`, `m` or `h`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a duration (write e.g. \"250ms\", \"5s\", \"2m\")");
        let text_t = text.trim();
        let split = text_t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text_t.split_at(split);
        let n: u64 = number.parse().map_err(|_| bad())?;
        let ms = match unit {
            "ms" => Some(n),
            "s" => n.checked_mul(1_000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            _ => return Err(bad()),
        };
        ms.map(|ms| Dur(Duration::from_millis(ms))).ok_or_else(bad)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl serde::Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Dur::parse(&text).map_err(de::Error::custom)
    }
}

/// A size in bytes, written as a number of bytes or with a unit: `512`, `8KiB`, `1MiB`, `2GiB`
/// (also nginx's `8k`, `1m`, `1g`; all units are powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    /// Parses `<number>[unit]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a size (write e.g. 512, \"8KiB\", \"1MiB\")");
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: u64 = number.parse().map_err(|_| bad())?;
        let shift = match unit.trim() {
            "" | "B" | "b" => 0,
            "KiB" | "KB" | "K" | "k" => 10,
            "MiB" | "MB" | "M" | "m" => 20,
            "GiB" | "GB" | "G" | "g" => 30,
            _ => return Err(bad()),
        };
        n.checked_mul(1 << shift).map(Size).ok_or_else(bad)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            n if n > 0 && n % (1 << 20) == 0 => write!(f, "{}MiB", n >> 20),
            n if n > 0 && n % (1 << 10) == 0 => write!(f, "{}KiB", n >> 10),
            n => write!(f, "{n}B"),
        }
    }
}

impl serde::Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Size::parse(&scalar_text(d)?).map_err(de::Error::custom)
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(ipnet::IpNet);

impl Cidr {
    /// Parses `IP/bits` or `IP`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not an IP network (write e.g. 10.0.0.0/8 or 192.0.2.7)");
        let text = text.trim();
        let net = if text.contains('/') {
            text.parse().map_err(|_| bad())?
        } else {
            ipnet::IpNet::from(text.parse::<std::net::IpAddr>().map_err(|_| bad())?)
        };
        Ok(Cidr(net))
    }

    /// Whether `ip` is in the network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Cidr::parse(&text).map_err(de::Error::custom)
    }
}

/// A set of accepted HTTP status codes, written as a list of codes (`200`), classes (`"2xx"`)
/// and ranges (`"200-299"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl Default for StatusSet {
    /// 2xx and 3xx, as HAProxy and nginx accept by default.
    fn default() -> Self {
        StatusSet(vec![(200, 399)])
    }
}

impl StatusSet {
    /// Whether `code` is in the set.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= code && code <= hi)
    }

    fn parse_item(text: &str) -> Result<(u16, u16), String> {
        let bad = || format!("{text:?} is not a status code, class (\"2xx\") or range (\"200-299\")");
        let code = |s: &str| -> Result<u16, String> {
            let n: u16 = s.trim().parse().map_err(|_| bad())?;
            (100..=599).contains(&n).then_some(n).ok_or_else(bad)
        };
        let text = text.trim();
        if let Some(class) = text.strip_suffix("xx") {
            let c = code(&format!("{class}00"))?;
            return Ok((c, c + 99));
        }
        match text.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (code(lo)?, code(hi)?);
                (lo <= hi).then_some((lo, hi)).ok_or_else(bad)
            }
            None => code(text).map(|c| (c, c)),
        }
    }
}

impl<'de> Deserialize<'de> for StatusSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatusSet;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of status codes, classes (\"2xx\") or ranges (\"200-299\")")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StatusSet, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<serde_yaml::Value>()? {
                    let text = match item {
                        serde_yaml::Value::Number(n) => n.to_string(),
                        serde_yaml::Value::String(s) => s,
                        other => format!("{other:?}"),
                    };
                    items.push(StatusSet::parse_item(&text).map_err(de::Error::custom)?);
                }
                if items.is_empty() {
                    return Err(de::Error::custom("the list of accepted statuses is empty"));
                }
                Ok(StatusSet(items))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Where a hashing algorithm takes its key from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// Path and query string (`/a/b?x=1`): nginx's `hash $request_uri`.
    Uri,
    /// Path without the query string.
    Path,
    /// The client's IP address.
    SourceIp,
    /// The first value of a request header (parsed once, at load).
    Header(http::HeaderName),
    /// The value of a cookie.
    Cookie(String),
}

impl HashKey {
    /// Parses `uri`, `path`, `source_ip`, `header:NAME` or `cookie:NAME`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a hash key (use uri, path, source_ip, header:NAME or cookie:NAME)");
        match text.trim() {
            "uri" => Ok(HashKey::Uri),
            "path" => Ok(HashKey::Path),
            "source_ip" => Ok(HashKey::SourceIp),
            other => {
                let (kind, name) = other.split_once(':').ok_or_else(bad)?;
                Self::named(kind.trim(), name.trim()).ok_or_else(bad)
            }
        }
    }

    fn named(kind: &str, name: &str) -> Option<Self> {
        let header = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
        match kind {
            "header" => Some(HashKey::Header(header)),
            // Cookie names follow the same token rules as header names.
            "cookie" => Some(HashKey::Cookie(name.to_string())),
            _ => None,
        }
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::Uri => f.write_str("uri"),
            HashKey::Path => f.write_str("path"),
            HashKey::SourceIp => f.write_str("source_ip"),
            HashKey::Header(name) => write!(f, "header:{name}"),
            HashKey::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

impl serde::Serialize for HashKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HashKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("uri, path, source_ip, {header: NAME} or {cookie: NAME}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HashKey, E> {
                HashKey::parse(v).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HashKey, A::Error> {
                let entry: Option<(String, String)> = map.next_entry()?;
                let extra: Option<(String, serde_yaml::Value)> = map.next_entry()?;
                let bad = || de::Error::custom("write {header: NAME} or {cookie: NAME}");
                match (entry, extra) {
                    (Some((kind, name)), None) => HashKey::named(&kind, &name).ok_or_else(bad),
                    _ => Err(bad()),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML scalar as text (`1024` and `"1KiB"` alike), for the types that parse their own syntax
/// (sizes, shares); anything else as its debug form, which their parsers then refuse.
pub(crate) fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_yaml::Value::deserialize(d)? {
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::String(s) => s,
        other => format!("{other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(Dur::parse("250ms").unwrap().0, Duration::from_millis(250));
        assert_eq!(Dur::parse("5s").unwrap().0, Duration::from_secs(5));
        assert_eq!(Dur::parse("2m").unwrap().0, Duration::from_secs(120));
        for bad in ["5", "s", "", "1.5s", "-1s", "5 sec", "99999999999999999h"] {
            assert!(Dur::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn status_sets_take_codes_classes_and_ranges() {
        let set: StatusSet = serde_yaml::from_str("[204, \"3xx\", \"500-502\"]").unwrap();
        assert!(set.contains(204) && set.contains(302) && set.contains(501));
        assert!(!set.contains(200) && !set.contains(503));
        assert!(StatusSet::default().contains(301) && !StatusSet::default().contains(404));
        for bad in ["[]", "[99]", "[\"6xx\"]", "[\"300-200\"]", "[\"abc\"]"] {
            assert!(serde_yaml::from_str::<StatusSet>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hash_keys_parse_from_strings_and_maps() {
        let key = |s: &str| serde_yaml::from_str::<HashKey>(s);
        assert_eq!(key("uri").unwrap(), HashKey::Uri);
        assert_eq!(key("source_ip").unwrap(), HashKey::SourceIp);
        assert_eq!(
            key("{header: X-User}").unwrap(),
            HashKey::Header(http::HeaderName::from_static("x-user"))
        );
        assert_eq!(key("cookie: sid").unwrap(), HashKey::Cookie("sid".into()));
        assert_eq!(
            HashKey::parse("header:X-A").unwrap(),
            HashKey::Header(http::HeaderName::from_static("x-a"))
        );
        for bad in [
            "host",
            "{header: ''}",
            "{query: a}",
            "{header: a, cookie: b}",
            "header:",
        ] {
            assert!(key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(Size::parse("512").unwrap().0, 512);
        assert_eq!(Size::parse("8KiB").unwrap().0, 8192);
        assert_eq!(Size::parse("8k").unwrap().0, 8192);
        assert_eq!(Size::parse("1MiB").unwrap().0, 1 << 20);
        assert_eq!(Size::parse("2g").unwrap().0, 2 << 30);
        assert_eq!(serde_yaml::from_str::<Size>("4096").unwrap().0, 4096);
        for bad in ["", "k", "1.5MiB", "-1", "1 TB", "99999999999999999999G"] {
            assert!(Size::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Size(1 << 20).to_string(), "1MiB");
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()) && !one.contains("192.0.2.8".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/33").unwrap();
        assert!(v6.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8:8000::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0/8", "::/129", "x", "10.0.0.0/", "/8"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Cidr::parse(" 192.0.2.7 ").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.1.2.3/8");
    }

    #[test]
    fn addresses_are_ip_and_port() {
        assert!(Addr::parse("127.0.0.1:80").is_ok());
        assert!(Addr::parse("[::1]:80").is_ok());
        let err = Addr::parse("10.0.0.x:80").unwrap_err();
        assert!(err.contains("\"10.0.0.x:80\" is not an IP:port"), "{err}");
        assert!(Addr::parse("localhost:80").is_err());
    }
}
