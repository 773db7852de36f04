//! Content negotiation for the read route: which of the two bodies a read
//! answers with, decided from the request's `Accept` header (RFC 9110
//! §12.5.1) before any credential is checked, so a caller that can read
//! neither learns it without costing a broker read.
//!
//! | `Accept` | answer |
//! | --- | --- |
//! | absent, `application/json`, `*/*`, `application/*` | the page (`{"topic","messages","cursor"}`) |
//! | `application/cloudevents-batch+json` | a CloudEvents JSON batch ([`super::cloudevents`]) |
//! | anything that allows neither | 406 `not_acceptable` |
//!
//! Media ranges are weighed by their `q` and the most specific range that
//! matches a representation decides its weight (`application/json;q=0,
//! */*` allows only the batch). When both end up with the same weight, an
//! exact name beats a wildcard, and between two exact names the batch wins:
//! nobody names `application/cloudevents-batch+json` without being able to
//! read it, while `application/json` is the usual fallback a CloudEvents
//! client lists beside it. Between two wildcards the page wins (it is what
//! every existing caller reads).
//!
//! Lenient where real clients are sloppy, so no working caller starts
//! failing: media-type parameters other than `q` are ignored
//! (`application/json; charset=utf-8` is `application/json`), a bare `*`
//! is `*/*`, `q=.2` is 0.2 (Java's default header sends both), and an
//! element that cannot be read at all is skipped; a header with no readable
//! element counts as absent.

use crate::edge::problem::ApiError;
use crate::http::Headers;

/// The batch's media type (CloudEvents JSON format §4.2).
pub const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";

/// Which body a read answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: the page, as it always was.
    Page,
    /// `application/cloudevents-batch+json`: a bare array of CloudEvents.
    CloudEvents,
}

/// How well one media range matches a representation: its weight in
/// thousandths, and how specific it is (`*/*` 0, `type/*` 1, exact 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Match {
    weight: u16,
    specificity: u8,
}

/// One readable element of `Accept`.
struct Range {
    kind: String,
    subtype: String,
    weight: u16,
}

impl Range {
    fn matches(&self, kind: &str, subtype: &str) -> Option<u8> {
        match (self.kind.as_str(), self.subtype.as_str()) {
            ("*", "*") => Some(0),
            (k, "*") if k == kind => Some(1),
            (k, s) if k == kind && s == subtype => Some(2),
            _ => None,
        }
    }
}

/// Decides the body from every `Accept` header of the request.
pub fn negotiate(headers: &Headers) -> Result<Format, ApiError> {
    let ranges: Vec<Range> = headers
        .get_all("accept")
        .flat_map(|value| split_outside_quotes(value, ','))
        .filter_map(range)
        .collect();
    if ranges.is_empty() {
        return Ok(Format::Page);
    }
    let page = best(&ranges, "application", "json");
    let batch = best(&ranges, "application", "cloudevents-batch+json");
    let weight = |m: Option<Match>| m.map_or(0, |m| m.weight);
    match (page, batch) {
        _ if weight(page) == 0 && weight(batch) == 0 => Err(ApiError::NotAcceptable),
        (Some(p), Some(b)) if p.weight == b.weight => {
            if b.specificity > p.specificity || (b.specificity, p.specificity) == (2, 2) {
                Ok(Format::CloudEvents)
            } else {
                Ok(Format::Page)
            }
        }
        _ if weight(batch) > weight(page) => Ok(Format::CloudEvents),
        _ => Ok(Format::Page),
    }
}

/// The weight the most specific matching range gives `kind/subtype` (the
/// highest, if that range is listed more than once); `None` when no range
/// matches, which is weight 0.
fn best(ranges: &[Range], kind: &str, subtype: &str) -> Option<Match> {
    ranges
        .iter()
        .filter_map(|r| {
            r.matches(kind, subtype).map(|specificity| Match {
                weight: r.weight,
                specificity,
            })
        })
        .max_by_key(|m| (m.specificity, m.weight))
}

/// One element: `type/subtype *( ";" parameter )`, or `None` when it
/// cannot be read.
fn range(element: &str) -> Option<Range> {
    let mut parts = split_outside_quotes(element, ';');
    let name = parts.next()?.trim();
    let (kind, subtype) = if name == "*" {
        ("*".to_owned(), "*".to_owned())
    } else {
        media_type(name)?
    };
    if kind == "*" && subtype != "*" {
        return None;
    }
    let mut weight = 1000;
    for parameter in parts {
        let (key, value) = parameter.split_once('=')?;
        // Parameters after q are accept-extensions: ignored like the rest.
        if key.trim().eq_ignore_ascii_case("q") {
            weight = qvalue(value.trim())?;
            break;
        }
    }
    Some(Range {
        kind,
        subtype,
        weight,
    })
}

/// `type/subtype` (parameters stripped, lower-cased), both RFC 9110 tokens;
/// `None` when it is not a media type.
pub fn media_type(text: &str) -> Option<(String, String)> {
    let name = text.split(';').next().unwrap_or("").trim();
    let (kind, subtype) = name.split_once('/')?;
    (is_token(kind) && is_token(subtype))
        .then(|| (kind.to_ascii_lowercase(), subtype.to_ascii_lowercase()))
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A weight 0..=1 in thousandths: `1`, `0.5`, `.5`; more than three
/// decimals are cut.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.len() > 1
        || (whole.is_empty() && fraction.is_empty())
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u16 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut thousandths = 0;
    for (i, digit) in fraction.bytes().chain(*b"000").take(3).enumerate() {
        thousandths += u16::from(digit - b'0') * [100, 10, 1][i];
    }
    let weight = whole * 1000 + thousandths;
    (weight <= 1000).then_some(weight)
}

/// Splits on `separator` except inside a quoted string (a parameter value
/// may hold commas and semicolons).
fn split_outside_quotes(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(accept: &[&str]) -> Result<Format, &'static str> {
        let headers = Headers::from_pairs(accept.iter().map(|v| ("Accept", *v)));
        negotiate(&headers).map_err(|e| e.code())
    }

    #[test]
    fn accept_picks_the_page_the_batch_or_neither() {
        use Format::{CloudEvents as Ce, Page};
        for (accept, expected) in [
            (&[][..], Ok(Page)),
            (&["application/json"], Ok(Page)),
            (&["application/json; charset=utf-8"], Ok(Page)),
            (&["*/*"], Ok(Page)),
            (&["application/*"], Ok(Page)),
            (&["APPLICATION/JSON"], Ok(Page)),
            (&["application/cloudevents-batch+json"], Ok(Ce)),
            (&["Application/CloudEvents-Batch+JSON"], Ok(Ce)),
            (
                &["application/cloudevents-batch+json; charset=utf-8"],
                Ok(Ce),
            ),
            // Both exact and equal: the batch; both wildcards: the page.
            (
                &["application/json, application/cloudevents-batch+json"],
                Ok(Ce),
            ),
            (&["application/cloudevents-batch+json, */*"], Ok(Ce)),
            (
                &["application/cloudevents-batch+json, application/*"],
                Ok(Ce),
            ),
            (&["application/*, */*"], Ok(Page)),
            // Weights decide before specificity.
            (
                &["application/cloudevents-batch+json;q=0.5, application/json"],
                Ok(Page),
            ),
            (
                &["application/cloudevents-batch+json, application/json;q=0.9"],
                Ok(Ce),
            ),
            (&["application/json;q=0.1, */*;q=0.8"], Ok(Ce)),
            // The most specific range decides a representation's weight.
            (&["application/json;q=0, */*"], Ok(Ce)),
            (&["application/cloudevents-batch+json;q=0, */*"], Ok(Page)),
            (
                &["application/cloudevents-batch+json;q=0, application/json;q=0, */*"],
                Err("not_acceptable"),
            ),
            // Neither allowed.
            (&["text/html"], Err("not_acceptable")),
            (&["application/xml, text/*"], Err("not_acceptable")),
            (&["application/cloudevents+json"], Err("not_acceptable")),
            (&["application/json;q=0"], Err("not_acceptable")),
            (&["*/*;q=0"], Err("not_acceptable")),
            // Several headers are one list.
            (&["text/html", "application/cloudevents-batch+json"], Ok(Ce)),
            // Java's default header: a bare `*` and `q=.2`.
            (
                &["text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"],
                Ok(Page),
            ),
            // Unreadable elements are skipped; nothing readable is no header.
            (&["garbage, application/cloudevents-batch+json"], Ok(Ce)),
            (
                &["application/json;q=2, application/cloudevents-batch+json"],
                Ok(Ce),
            ),
            (
                &["application/json;q=abc, text/html"],
                Err("not_acceptable"),
            ),
            (&["*/json, text/html"], Err("not_acceptable")),
            (&["garbage"], Ok(Page)),
            (&[""], Ok(Page)),
            (&[" , ,"], Ok(Page)),
            // A quoted comma does not split the element.
            (
                &["application/cloudevents-batch+json;x=\"a,b\";q=1, application/json;q=0.5"],
                Ok(Ce),
            ),
            // Accept-extensions after q do not change the weight.
            (&["application/json;q=0.3;ext=1, text/html"], Ok(Page)),
        ] {
            assert_eq!(negotiated(accept), expected, "{accept:?}");
        }
    }

    #[test]
    fn not_acceptable_is_a_406() {
        let err = negotiate(&Headers::from_pairs([("accept", "text/html")])).unwrap_err();
        assert_eq!(err.status(), (406, "not_acceptable", "Not acceptable"));
        assert!(err.to_string().contains(CLOUDEVENTS_BATCH), "{err}");
    }

    #[test]
    fn weights_are_read_in_thousandths() {
        for (text, expected) in [
            ("1", Some(1000)),
            ("1.0", Some(1000)),
            ("1.000", Some(1000)),
            ("0", Some(0)),
            ("0.5", Some(500)),
            (".25", Some(250)),
            ("0.1234", Some(123)),
            ("0.", Some(0)),
            ("1.5", None),
            ("2", None),
            ("10", None),
            ("", None),
            (".", None),
            ("-0.5", None),
            ("0.5x", None),
        ] {
            assert_eq!(qvalue(text), expected, "{text:?}");
        }
    }

    #[test]
    fn media_types_are_two_tokens() {
        for (text, expected) in [
            ("application/json", Some(("application", "json"))),
            (" Text/Plain ; charset=utf-8", Some(("text", "plain"))),
            (
                "application/vnd.api+json",
                Some(("application", "vnd.api+json")),
            ),
            ("application", None),
            ("application/", None),
            ("/json", None),
            ("application/json extra", None),
            ("a/b/c", None),
        ] {
            let got = media_type(text);
            assert_eq!(
                got.as_ref().map(|(k, s)| (k.as_str(), s.as_str())),
                expected,
                "{text:?}"
            );
        }
    }
}
