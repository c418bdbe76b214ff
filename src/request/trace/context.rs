//! W3C trace context (<https://www.w3.org/TR/trace-context/>): reading a request's
//! `traceparent` and writing the one lb sends on. `tracestate` is never read or changed: it
//! goes on as the caller sent it (or is removed with a trace that could not be continued).

use http::{HeaderMap, HeaderValue};

/// The `traceparent` field.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
/// The `tracestate` field.
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// What a valid `traceparent` says: the trace, the caller's span and its sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The trace's id (never 0).
    pub trace_id: u128,
    /// The caller's span (never 0).
    pub span_id: u64,
    /// Whether the caller records the trace (flag `01`).
    pub sampled: bool,
}

/// The request's trace parent, if `headers` hold exactly one valid `traceparent` (W3C: two or
/// more are as good as none).
pub fn incoming(headers: &HeaderMap) -> Option<Parent> {
    let mut all = headers.get_all(TRACEPARENT).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    parse(first.as_bytes())
}

/// Parses `version-traceid-parentid-flags`, lower-case hex. Version `00` is exactly 55 bytes;
/// a later version (not `ff`) may add fields after a `-`, which are not read.
pub fn parse(value: &[u8]) -> Option<Parent> {
    if value.len() < 55 {
        return None;
    }
    let version = hex(&value[..2])? as u8;
    let well_formed = value[2] == b'-' && value[35] == b'-' && value[52] == b'-';
    let ends = match version {
        0 => value.len() == 55,
        0xff => false,
        _ => value.len() == 55 || value[55] == b'-',
    };
    if !(well_formed && ends) {
        return None;
    }
    let trace_id = hex(&value[3..35])?;
    let span_id = hex(&value[36..52])? as u64;
    let flags = hex(&value[53..55])? as u8;
    (trace_id != 0 && span_id != 0).then_some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// The number written in `digits` (at most 32 lower-case hex digits; nothing else).
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u128::from(v))
    })
}

/// `00-<trace>-<span>-01` (or `-00`): the `traceparent` naming `span_id` as the parent of
/// what follows.
pub fn traceparent(trace_id: u128, span_id: u64, sampled: bool) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    for i in 0..32 {
        out[3 + i] = HEX[(trace_id >> ((31 - i) * 4)) as usize & 0xf];
    }
    out[35] = b'-';
    for i in 0..16 {
        out[36 + i] = HEX[(span_id >> ((15 - i) * 4)) as usize & 0xf];
    }
    out[52..].copy_from_slice(if sampled { b"-01" } else { b"-00" });
    // Always valid: hex digits and dashes.
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specs_example_reads_and_writes_back() {
        let parent = parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            parent,
            Parent {
                trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
                span_id: 0x00f067aa0ba902b7,
                sampled: true
            }
        );
        assert_eq!(traceparent(parent.trace_id, parent.span_id, true), EXAMPLE);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(parse(unsampled.as_bytes()).map(|p| p.sampled), Some(false));
        assert_eq!(traceparent(parent.trace_id, parent.span_id, false), unsampled);
    }

    #[test]
    fn invalid_values_are_none() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
        // A later version may carry more after a dash.
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert!(parse(later.as_bytes()).is_some());
    }

    #[test]
    fn two_traceparents_are_none() {
        let mut headers = HeaderMap::new();
        headers.append(TRACEPARENT, HeaderValue::from_static(EXAMPLE));
        assert!(incoming(&headers).is_some());
        headers.append(TRACEPARENT, HeaderValue::from_static(EXAMPLE));
        assert_eq!(incoming(&headers), None);
        assert_eq!(incoming(&HeaderMap::new()), None);
    }

    /// The oracle: OpenTelemetry's own W3C propagator takes the same values as valid, with the
    /// same ids and flag, on the spec's example with bytes replaced. The propagator is laxer
    /// about the shape (it splits at dashes and takes hex of any length) and reads the version
    /// in either case, so where the dashes moved or the version has an upper-case digit (the
    /// spec's HEXDIGLC), lb's parser must refuse on its own.
    #[test]
    fn parsing_agrees_with_opentelemetrys_propagator() {
        use crate::testing::rng::XorShift;
        use opentelemetry::propagation::TextMapPropagator;
        use opentelemetry::trace::TraceContextExt;
        use opentelemetry_sdk::propagation::TraceContextPropagator;
        let propagator = TraceContextPropagator::new();
        let mut rng = XorShift(0x21);
        let alphabet = b"0123456789abcdefABCDEF-xf0";
        let (mut valid, mut sampled) = (0, 0);
        for i in 0..20_000 {
            // Half start sampled, half not, so both flags are common among the valid ones.
            let mut value = EXAMPLE.as_bytes().to_vec();
            if i % 2 == 1 {
                value[54] = b'0';
            }
            for _ in 0..=(i % 3) {
                let at = rng.below(value.len());
                value[at] = *rng.pick(alphabet);
            }
            let text = String::from_utf8(value).unwrap();
            let ours = parse(text.as_bytes());
            let dashes: Vec<usize> = text.match_indices('-').map(|(at, _)| at).collect();
            if dashes != [2, 35, 52] || text[..2].bytes().any(|b| b.is_ascii_uppercase()) {
                assert_eq!(ours, None, "{text}");
                continue;
            }
            let carrier: std::collections::HashMap<String, String> = [("traceparent".to_string(), text.clone())].into();
            let context = propagator.extract(&carrier);
            let theirs = context.span().span_context().clone();
            assert_eq!(ours.is_some(), theirs.is_valid(), "{text}");
            if let Some(ours) = ours {
                assert_eq!(ours.trace_id.to_be_bytes(), theirs.trace_id().to_bytes(), "{text}");
                assert_eq!(ours.span_id.to_be_bytes(), theirs.span_id().to_bytes(), "{text}");
                assert_eq!(ours.sampled, theirs.is_sampled(), "{text}");
                valid += 1;
                sampled += usize::from(ours.sampled);
            }
        }
        // The cases reached both sides of each decision.
        assert!(
            valid > 2_000 && sampled > 500 && valid - sampled > 500,
            "{valid} valid, {sampled} sampled"
        );
    }
}
