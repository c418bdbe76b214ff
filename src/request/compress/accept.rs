//! Content negotiation on `Accept-Encoding` (RFC 9110 §12.5.3): which of the encodings lb offers
//! a request accepts, weighted by its q-values. Nothing here touches a response.

use crate::config::Encoding;
use http::HeaderValue;

/// A q-value in thousandths, 0 (not acceptable) to 1000.
type Weight = u16;

/// What a request's `Accept-Encoding` fields say, coding by coding: the weight given to each
/// encoding lb knows, to `identity` and to `*` (`None`: not named).
#[derive(Debug, Default, PartialEq, Eq)]
struct Weights {
    zstd: Option<Weight>,
    br: Option<Weight>,
    gzip: Option<Weight>,
    identity: Option<Weight>,
    any: Option<Weight>,
}

impl Weights {
    /// Reads every element of `fields`; an element with a malformed weight is ignored, and the
    /// first element naming a coding is the one that counts.
    fn of<'a>(fields: impl Iterator<Item = &'a HeaderValue>) -> Self {
        let mut weights = Weights::default();
        for field in fields {
            let Ok(text) = field.to_str() else { continue };
            for element in text.split(',') {
                let mut parts = element.split(';');
                let coding = parts.next().unwrap_or("").trim();
                if coding.is_empty() {
                    continue;
                }
                let Some(q) = weight(parts) else { continue };
                if let Some(slot) = weights.slot(coding) {
                    slot.get_or_insert(q);
                }
            }
        }
        weights
    }

    /// Where the weight of `coding` goes (`x-gzip` is gzip, RFC 9110 §8.4.1.3); `None` for a
    /// coding lb does not know.
    fn slot(&mut self, coding: &str) -> Option<&mut Option<Weight>> {
        let is = |name: &str| coding.eq_ignore_ascii_case(name);
        if is("gzip") || is("x-gzip") {
            Some(&mut self.gzip)
        } else if is("br") {
            Some(&mut self.br)
        } else if is("zstd") {
            Some(&mut self.zstd)
        } else if is("identity") {
            Some(&mut self.identity)
        } else if coding == "*" {
            Some(&mut self.any)
        } else {
            None
        }
    }

    /// The weight of `encoding`: its own, else that of `*`, else 0 (not acceptable).
    fn of_encoding(&self, encoding: Encoding) -> Weight {
        let own = match encoding {
            Encoding::Zstd => self.zstd,
            Encoding::Br => self.br,
            Encoding::Gzip => self.gzip,
        };
        own.or(self.any).unwrap_or(0)
    }
}

/// The weight in `params` (`q=0.5`; none given: 1), `None` if malformed.
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<Weight> {
    let mut q = 1000;
    for param in params {
        let (name, value) = param.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("q") {
            q = qvalue(value.trim())?;
        }
    }
    Some(q)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn qvalue(text: &str) -> Option<Weight> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = frac.as_bytes();
    let thousandths = (0..3).fold(0, |t: Weight, i| {
        t * 10 + digits.get(i).map_or(0, |d| Weight::from(d - b'0'))
    });
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The encoding of the response to a request with `fields` as its `Accept-Encoding`, among
/// `offered` (lb's order of preference): the one with the highest weight above 0, the first
/// offered among equals; `None` when the request accepts none of them, or ranks `identity` above
/// the best (named, or through `*`). A request without the field gets none, as from nginx: RFC
/// 9110 lets a server pick any coding then, but such clients are mostly tools that would not
/// decode it.
pub(crate) fn choose<'a>(fields: impl Iterator<Item = &'a HeaderValue>, offered: &[Encoding]) -> Option<Encoding> {
    let mut fields = fields.peekable();
    fields.peek()?;
    let weights = Weights::of(fields);
    let mut best: Option<(Encoding, Weight)> = None;
    for &encoding in offered {
        let q = weights.of_encoding(encoding);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((encoding, q));
        }
    }
    let (encoding, q) = best?;
    let identity = weights.identity.or(weights.any);
    if identity.is_some_and(|i| i > q) {
        return None;
    }
    Some(encoding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::{Br, Gzip, Zstd};

    const ALL: [Encoding; 3] = [Zstd, Br, Gzip];

    fn pick(fields: &[&str], offered: &[Encoding]) -> Option<Encoding> {
        let values: Vec<HeaderValue> = fields.iter().map(|f| HeaderValue::from_str(f).unwrap()).collect();
        choose(values.iter(), offered)
    }

    #[test]
    fn server_order_breaks_ties() {
        assert_eq!(pick(&["gzip, deflate, br, zstd"], &ALL), Some(Zstd));
        assert_eq!(pick(&["gzip, br"], &ALL), Some(Br));
        assert_eq!(pick(&["gzip, br"], &[Gzip, Br]), Some(Gzip));
        assert_eq!(pick(&["gzip"], &ALL), Some(Gzip));
        assert_eq!(pick(&["x-gzip"], &ALL), Some(Gzip));
        assert_eq!(pick(&["GZIP"], &ALL), Some(Gzip));
    }

    #[test]
    fn q_values_rank_before_the_server_order() {
        assert_eq!(pick(&["zstd;q=0.5, gzip"], &ALL), Some(Gzip));
        assert_eq!(pick(&["br;q=1.0, gzip;q=0.8, zstd;q=0.9"], &ALL), Some(Br));
        assert_eq!(pick(&["gzip ; q=0.3 , br ;Q=0.2"], &ALL), Some(Gzip));
        assert_eq!(pick(&["gzip;q=0.001"], &ALL), Some(Gzip));
        // Parameters other than q do not change the weight.
        assert_eq!(pick(&["zstd;level=3;q=0.1, br;foo=bar"], &ALL), Some(Br));
    }

    #[test]
    fn q_zero_refuses() {
        assert_eq!(pick(&["gzip;q=0"], &ALL), None);
        assert_eq!(pick(&["gzip;q=0.000"], &ALL), None);
        assert_eq!(pick(&["gzip;q=0."], &ALL), None);
        assert_eq!(pick(&["zstd;q=0, br;q=0, gzip"], &ALL), Some(Gzip));
        assert_eq!(pick(&["*;q=0, gzip"], &ALL), Some(Gzip));
        assert_eq!(pick(&["*, br;q=0"], &[Br, Gzip]), Some(Gzip));
    }

    #[test]
    fn star_stands_for_the_codings_not_named() {
        assert_eq!(pick(&["*"], &ALL), Some(Zstd));
        assert_eq!(pick(&["*;q=0.5, br"], &ALL), Some(Br));
        assert_eq!(pick(&["*;q=0"], &ALL), None);
    }

    #[test]
    fn identity_ranked_higher_wins() {
        assert_eq!(pick(&["gzip;q=0.5, identity"], &ALL), None);
        assert_eq!(pick(&["gzip;q=0.5, *;q=0.6"], &[Gzip]), None);
        assert_eq!(pick(&["gzip, identity;q=0.5"], &ALL), Some(Gzip));
        assert_eq!(pick(&["gzip, identity;q=0"], &ALL), Some(Gzip));
        assert_eq!(pick(&["gzip, identity"], &ALL), Some(Gzip));
        assert_eq!(pick(&["identity"], &ALL), None);
    }

    #[test]
    fn absent_empty_and_unknown_fields_get_nothing() {
        assert_eq!(pick(&[], &ALL), None);
        assert_eq!(pick(&[""], &ALL), None);
        assert_eq!(pick(&[" , ,"], &ALL), None);
        assert_eq!(pick(&["deflate, compress"], &ALL), None);
        assert_eq!(pick(&["br"], &[Gzip, Zstd]), None);
    }

    #[test]
    fn fields_combine_and_the_first_mention_counts() {
        assert_eq!(pick(&["gzip;q=0.2", "br;q=0.4"], &ALL), Some(Br));
        assert_eq!(pick(&["br;q=0", "br"], &ALL), None);
        assert_eq!(pick(&["gzip, gzip;q=0"], &ALL), Some(Gzip));
    }

    #[test]
    fn malformed_weights_drop_their_element_only() {
        for bad in ["2", "1.5", "1.001", "0.0001", "-1", "", "abc", "0.5x"] {
            assert_eq!(
                pick(&[&format!("zstd;q={bad}, gzip;q=0.5")], &ALL),
                Some(Gzip),
                "q={bad}"
            );
        }
        assert_eq!(pick(&["zstd;q, gzip"], &ALL), Some(Gzip));
        assert_eq!(pick(&["zstd;q=1.000"], &ALL), Some(Zstd));
    }

    #[test]
    fn qvalues_in_thousandths() {
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.25"), Some(250));
        assert_eq!(qvalue("0.125"), Some(125));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1."), Some(1000));
        assert_eq!(qvalue("1.0"), Some(1000));
        assert_eq!(qvalue("1.01"), None);
        assert_eq!(qvalue(".5"), None);
    }
}
