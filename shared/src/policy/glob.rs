//! The one pattern language of the policy: `*` matches any run of characters
//! (including none), `?` exactly one character, everything else itself. Used
//! for topic patterns and `iam_arn` conditions.
//!
//! Matching is iterative and remembers only the most recent `*`: on a
//! mismatch it lets that star swallow one more character and retries. An
//! earlier star never needs revisiting, because whatever it could have
//! swallowed instead the later star can swallow too. Worst case is
//! O(pattern × text) with no recursion and no allocation; patterns are written
//! by operators and texts are short names, so `a*a*a*a*b` against a long run of
//! `a`s stays cheap rather than exploding as naive backtracking would.

use std::fmt;

/// A compiled glob pattern.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Glob {
    pattern: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// No wildcard: plain equality.
    Literal,
    /// Exactly `*`: matches everything.
    Everything,
    Wildcard,
}

impl Glob {
    /// Compiles `pattern`. Every string is a valid pattern; runs of `*` are
    /// collapsed because they mean the same as one.
    pub fn new(pattern: &str) -> Self {
        let mut collapsed = String::with_capacity(pattern.len());
        for c in pattern.chars() {
            if !(c == '*' && collapsed.ends_with('*')) {
                collapsed.push(c);
            }
        }
        let kind = if collapsed == "*" {
            Kind::Everything
        } else if collapsed.contains(['*', '?']) {
            Kind::Wildcard
        } else {
            Kind::Literal
        };
        Self {
            pattern: collapsed,
            kind,
        }
    }

    /// The pattern as compiled (runs of `*` collapsed).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern matches all of `text`.
    pub fn matches(&self, text: &str) -> bool {
        match self.kind {
            Kind::Literal => self.pattern == text,
            Kind::Everything => true,
            Kind::Wildcard => wildcard_match(self.pattern.as_bytes(), text.as_bytes()),
        }
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Works on UTF-8 bytes. Literal bytes compare byte by byte (equal characters
/// have equal encodings), while `?` and a star's growth step over a whole
/// character, so `?` means one character even outside ASCII. Both indices sit
/// on character boundaries whenever a wildcard is consulted, because only
/// whole characters of the pattern are ever matched literally.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After the latest `*`: the pattern position following it, and the text
    // position up to which the star has swallowed.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, t));
                continue;
            }
            Some(b'?') => {
                p += 1;
                t += char_len(text[t]);
                continue;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        let Some((after_star, swallowed)) = star else {
            return false;
        };
        let grown = swallowed + char_len(text[swallowed]);
        star = Some((after_star, grown));
        p = after_star;
        t = grown;
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Length of the UTF-8 sequence a leading byte starts.
fn char_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).matches(text)
    }

    /// Textbook dynamic programme over characters: obviously right, too slow
    /// for production, the oracle for the property test.
    fn reference(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let mut dp = vec![vec![false; t.len() + 1]; p.len() + 1];
        dp[0][0] = true;
        for i in 1..=p.len() {
            dp[i][0] = dp[i - 1][0] && p[i - 1] == '*';
            for j in 1..=t.len() {
                dp[i][j] = match p[i - 1] {
                    '*' => dp[i - 1][j] || dp[i][j - 1],
                    '?' => dp[i - 1][j - 1],
                    c => dp[i - 1][j - 1] && c == t[j - 1],
                };
            }
        }
        dp[p.len()][t.len()]
    }

    #[test]
    fn literals_match_only_themselves() {
        assert!(m("orders", "orders"));
        assert!(!m("orders", "orders2"));
        assert!(!m("orders", "order"));
        assert!(!m("orders", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn star_matches_any_run_including_none() {
        assert!(m("*", ""));
        assert!(m("*", "anything at all"));
        assert!(m("order-*", "order-"));
        assert!(m("order-*", "order-created"));
        assert!(!m("order-*", "order"));
        assert!(m("*-created", "order-created"));
        assert!(!m("*-created", "order-created2"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("a**b", "ab"));
        assert_eq!(Glob::new("a***b").as_str(), "a*b");
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        assert!(m("v?", "v1"));
        assert!(!m("v?", "v"));
        assert!(!m("v?", "v12"));
        assert!(m("??", "ab"));
        assert!(m("?*", "a"));
        assert!(!m("?*", ""));
        assert!(m("caf?", "café"));
        assert!(m("?", "é"));
        assert!(m("*?", "日本"));
        assert!(!m("?", "日本"));
        assert!(m("日*語", "日本語"));
    }

    #[test]
    fn backtracking_retries_the_last_star() {
        assert!(m("*ab", "aab"));
        assert!(m("*aab", "aaab"));
        assert!(m("a*ab", "aaab"));
        assert!(m("*a*b", "xaxxb"));
        assert!(!m("*a*b", "xaxx"));
        assert!(m("*.v?", "order.created.v2"));
        assert!(m(
            "arn:aws:iam::*:role/ci-*",
            "arn:aws:iam::123456789012:role/ci-deploy"
        ));
        assert!(!m(
            "arn:aws:iam::*:role/ci-*",
            "arn:aws:iam::123456789012:user/ci-deploy"
        ));
    }

    #[test]
    fn pathological_patterns_finish_and_are_right() {
        let long_a = "a".repeat(20_000);
        assert!(!m("a*a*a*a*b", &long_a));
        assert!(m("a*a*a*a*b", &format!("{long_a}b")));
        assert!(!m("*a*a*a*a*a*a*a*a*a*a*b", &long_a));
        assert!(m("*a*a*a*a*a*a*a*a*a*a*", &long_a));
        let stars = "*a".repeat(200) + "*b";
        assert!(!m(&stars, &"a".repeat(5_000)));
        assert!(!m(&"?".repeat(10_001), &long_a[..10_000]));
        assert!(m(&"?".repeat(10_000), &long_a[..10_000]));
        assert!(m(&"*".repeat(10_000), &long_a));
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(
            pattern in "[ab*?é]{0,12}",
            text in "[abé]{0,24}",
        ) {
            prop_assert_eq!(m(&pattern, &text), reference(&pattern, &text));
        }

        #[test]
        fn a_literal_pattern_matches_itself(text in "[A-Za-z0-9_.=-]{0,40}") {
            prop_assert!(m(&text, &text));
            prop_assert!(m("*", &text));
        }
    }
}
