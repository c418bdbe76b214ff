//! The pieces both line formats are written with, by hand: `write!` costs ~1k instructions a
//! field, most of a line. Numbers, seconds, addresses, hex ids and the civil date.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `n` in decimal.
pub(super) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `n` in two digits (`05`).
pub(super) fn push_2(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&[b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]);
}

/// `n` in three digits (`005`).
pub(super) fn push_3(out: &mut Vec<u8>, n: u64) {
    out.push(b'0' + (n / 100 % 10) as u8);
    push_2(out, n % 100);
}

/// Seconds with millisecond precision: `0.003`.
pub(super) fn push_secs(out: &mut Vec<u8>, d: Duration) {
    let ms = d.as_millis() as u64;
    push_u64(out, ms / 1000);
    out.push(b'.');
    push_3(out, ms % 1000);
}

/// An address as nginx writes it: `10.0.0.7`, `[::1]`.
pub(super) fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, octet.into());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "[{v6}]");
        }
    }
}

/// `IP:port`, an IPv6 address in brackets.
pub(super) fn push_socket(out: &mut Vec<u8>, addr: SocketAddr) {
    push_ip(out, addr.ip());
    out.push(b':');
    push_u64(out, addr.port().into());
}

/// A 128-bit id in 32 lower-case hex digits (a W3C trace id).
pub(super) fn push_hex128(out: &mut Vec<u8>, id: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..32).rev() {
        out.push(HEX[((id >> (shift * 4)) & 0xf) as usize]);
    }
}

/// `(year, month 1-12, day 1-31)` of the day `days` after 1970-01-01 (Howard Hinnant's
/// algorithm).
pub(super) fn civil(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month as u64, day as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_addresses_and_seconds() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, 18_446_744_073_709_551_615);
        out.push(b' ');
        push_secs(&mut out, Duration::from_micros(12_345_678));
        out.push(b' ');
        push_ip(&mut out, "10.200.3.4".parse().unwrap());
        out.push(b' ');
        push_ip(&mut out, "::1".parse().unwrap());
        out.push(b' ');
        push_socket(&mut out, "[::1]:80".parse().unwrap());
        out.push(b' ');
        push_hex128(&mut out, 0x0af7651916cd43dd8448eb211c80319c);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0 18446744073709551615 12.345 10.200.3.4 [::1] [::1]:80 0af7651916cd43dd8448eb211c80319c"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_778), (2026, 11, 21));
    }
}
