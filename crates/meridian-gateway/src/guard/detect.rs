//! Detectors: the built-in ones (regular expressions plus a checksum where the
//! format has one), custom regexes and word lists, compiled once per
//! `[guards]` entry. One pass of a `RegexSet` tells which expressions match
//! at all; only those are run to find where.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use meridian_config::{Builtin, Detector, Guard, GuardAction};
use regex::{Regex, RegexSet};

/// One finding: a rule fired on `text[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// Index of the rule in its [`Scanner`].
    pub rule: usize,
    pub start: usize,
    pub end: usize,
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Type name; hits share it (dropped with the guard on a reload).
    pub label: std::sync::Arc<str>,
    pub action: GuardAction,
    check: Option<fn(&str) -> bool>,
}

/// A `[guards]` entry, compiled.
#[derive(Debug)]
pub struct Scanner {
    pub rules: Vec<Rule>,
    /// Regex rules: (rule index, expression).
    regexes: Vec<(usize, Regex)>,
    set: Option<RegexSet>,
    /// Word-list rules: (rule index, matcher).
    words: Vec<(usize, AhoCorasick)>,
    /// The most words in one listed phrase.
    phrase_words: usize,
}

fn builtin_pattern(b: Builtin) -> &'static str {
    match b {
        Builtin::Email => {
            r"\b[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b"
        }
        // E.164 (+ and 7–15 digits, optionally grouped), North American
        // (415) 555-0100 / 415-555-0100, and national forms with a trunk 0
        // (020 7946 0958, 030 1234567, 01 23 45 67 89).
        Builtin::Phone => {
            r"(?:\+[1-9](?:[ .-]?\(?[0-9]\)?){6,14}\b|\(?\b[2-9][0-9]{2}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}\b|\b0[1-9][0-9]{0,3}(?:[ .-]?[0-9]{2,4}){2,4}\b)"
        }
        Builtin::Card => r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
        Builtin::Iban => r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b",
        Builtin::Ssn => r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
        Builtin::Ip => {
            r"(?:\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\b|(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4})"
        }
        Builtin::AwsAccessKey => r"\b(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[A-Z0-9]{16}\b",
        Builtin::AwsSecretKey => r"(?:^|[^A-Za-z0-9/+=])([A-Za-z0-9/+]{40})(?:$|[^A-Za-z0-9/+=])",
    }
}

fn builtin_check(b: Builtin) -> Option<fn(&str) -> bool> {
    match b {
        Builtin::Card => Some(luhn),
        Builtin::Iban => Some(iban_mod97),
        Builtin::Ssn => Some(ssn_valid),
        Builtin::Phone => Some(phone_digits),
        Builtin::Ip => Some(ip_valid),
        Builtin::AwsSecretKey => Some(secret_like),
        Builtin::Email | Builtin::AwsAccessKey => None,
    }
}

/// Luhn checksum over the digits, 13–19 of them.
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616: move the first four characters to the end, letters to
/// numbers, the whole modulo 97 is 1.
pub fn iban_mod97(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for &b in tail.iter().chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn ssn_valid(s: &str) -> bool {
    let (Some(area), Some(group), Some(serial)) = (s.get(0..3), s.get(4..6), s.get(7..11)) else {
        return false;
    };
    s.len() == 11
        && area != "000"
        && area != "666"
        && !area.starts_with('9')
        && group != "00"
        && serial != "0000"
}

fn phone_digits(s: &str) -> bool {
    let n = s.chars().filter(char::is_ascii_digit).count();
    (7..=15).contains(&n)
}

fn ip_valid(s: &str) -> bool {
    if s.contains(':') {
        s.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        s.parse::<std::net::Ipv4Addr>().is_ok()
    }
}

/// Forty characters of base64 with upper case, lower case and a digit:
/// not a hex digest, not a word.
fn secret_like(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_uppercase())
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && s.bytes().any(|b| b.is_ascii_digit())
}

/// The end of the longest part of `text[start..end]` that passes `check`:
/// the whole match, else the match cut at a separator (a card number
/// followed by other digits, an IBAN followed by an upper-case word).
fn checked_end(text: &str, start: usize, end: usize, check: fn(&str) -> bool) -> Option<usize> {
    if check(&text[start..end]) {
        return Some(end);
    }
    text[start..end]
        .char_indices()
        .rev()
        .filter(|(_, c)| matches!(c, ' ' | '-' | '.'))
        .map(|(i, _)| start + i)
        .find(|&cut| check(&text[start..cut]))
}

fn is_word_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

impl Scanner {
    /// Compiles a guard. Its expressions were checked when the config was
    /// loaded; one that still fails to compile is left out with a warning.
    pub fn new(guard: &Guard) -> Scanner {
        let mut rules = Vec::new();
        let mut regexes = Vec::new();
        let mut words = Vec::new();
        let mut phrase_words = 1;
        for r in &guard.rules {
            let idx = rules.len();
            let mut check = None;
            match &r.detector {
                Detector::Builtin(b) => {
                    check = builtin_check(*b);
                    match Regex::new(builtin_pattern(*b)) {
                        Ok(re) => regexes.push((idx, re)),
                        Err(e) => tracing::warn!(error = %e, "built-in detector left out"),
                    }
                }
                Detector::Regex { pattern, .. } => match Regex::new(pattern) {
                    Ok(re) => regexes.push((idx, re)),
                    Err(e) => tracing::warn!(error = %e, "custom detector left out"),
                },
                Detector::Words { words: list, .. } => {
                    for w in list {
                        phrase_words = phrase_words.max(w.split_whitespace().count());
                    }
                    match AhoCorasickBuilder::new()
                        .ascii_case_insensitive(true)
                        .match_kind(MatchKind::LeftmostLongest)
                        .build(list)
                    {
                        Ok(ac) => words.push((idx, ac)),
                        Err(e) => tracing::warn!(error = %e, "word list left out"),
                    }
                }
            }
            rules.push(Rule {
                label: r.detector.label().into(),
                action: r.action,
                check,
            });
        }
        let set = RegexSet::new(regexes.iter().map(|(_, re)| re.as_str())).ok();
        Scanner {
            rules,
            regexes,
            set,
            words,
            phrase_words,
        }
    }

    /// The most words in one listed phrase (1 without word lists).
    pub fn max_phrase_words(&self) -> usize {
        self.phrase_words
    }

    /// Every finding in `text`, in order, none overlapping (at one place the
    /// earliest-starting, then longest, then first-listed rule wins).
    pub fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        let before = out.len();
        if let Some(set) = &self.set {
            let hits = set.matches(text);
            if hits.matched_any() {
                for i in hits.iter() {
                    let (rule, re) = &self.regexes[i];
                    let check = self.rules[*rule].check;
                    for caps in re.captures_iter(text) {
                        // A pattern with a group marks the value inside it.
                        let Some(m) = caps.get(1).or_else(|| caps.get(0)) else {
                            continue;
                        };
                        if m.is_empty() {
                            continue;
                        }
                        let end = match check {
                            None => Some(m.end()),
                            Some(c) => checked_end(text, m.start(), m.end(), c),
                        };
                        if let Some(end) = end {
                            out.push(Finding {
                                rule: *rule,
                                start: m.start(),
                                end,
                            });
                        }
                    }
                }
            }
        }
        for (rule, ac) in &self.words {
            for m in ac.find_iter(text) {
                let before_c = text[..m.start()].chars().next_back();
                let after_c = text[m.end()..].chars().next();
                if is_word_char(before_c) || is_word_char(after_c) {
                    continue;
                }
                out.push(Finding {
                    rule: *rule,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
        let found = &mut out[before..];
        if found.len() > 1 {
            found.sort_by(|a, b| {
                a.start
                    .cmp(&b.start)
                    .then(b.end.cmp(&a.end))
                    .then(a.rule.cmp(&b.rule))
            });
            let mut keep = before;
            let mut reach = 0;
            for i in before..out.len() {
                if out[i].start >= reach || i == before {
                    reach = out[i].end;
                    out[keep] = out[i];
                    keep += 1;
                }
            }
            out.truncate(keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use meridian_config::GuardRule;

    use super::*;

    fn all(action: GuardAction) -> Scanner {
        let mut rules: Vec<GuardRule> = Builtin::ALL
            .iter()
            .map(|b| GuardRule {
                detector: Detector::Builtin(*b),
                action,
            })
            .collect();
        rules.push(GuardRule {
            detector: Detector::Regex {
                label: "TICKET".into(),
                pattern: r"TCK-[0-9]{6}".into(),
            },
            action,
        });
        rules.push(GuardRule {
            detector: Detector::Words {
                label: "CODENAME".into(),
                words: vec!["bluebird".into(), "night jar".into()],
            },
            action,
        });
        Scanner::new(&Guard {
            name: "t".into(),
            rules,
        })
    }

    /// Labels belong to their scanner: one a reload drops is freed (they
    /// were once leaked into a process-wide list that only grew).
    #[test]
    fn a_dropped_scanner_frees_its_labels() {
        let s = all(GuardAction::Mask);
        let Some(ticket) = s.rules.iter().find(|r| &*r.label == "TICKET") else {
            panic!("no TICKET rule");
        };
        let ticket = Arc::downgrade(&ticket.label);
        assert!(ticket.upgrade().is_some());
        drop(s);
        assert!(ticket.upgrade().is_none(), "the label outlived its scanner");
    }

    fn labels(s: &Scanner, text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        s.scan(text, &mut out);
        out.iter()
            .map(|f| {
                (
                    s.rules[f.rule].label.to_string(),
                    text[f.start..f.end].to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn each_builtin_detector_finds_its_kind_and_only_valid_ones() {
        let s = all(GuardAction::Mask);
        let cases: &[(&str, &str, &str)] = &[
            (
                "mail jane.doe+x@mail.example.co.uk now",
                "EMAIL",
                "jane.doe+x@mail.example.co.uk",
            ),
            ("card 4111 1111 1111 1111 ok", "CARD", "4111 1111 1111 1111"),
            ("card 4111111111111111.", "CARD", "4111111111111111"),
            (
                "iban DE89 3704 0044 0532 0130 00 ok",
                "IBAN",
                "DE89 3704 0044 0532 0130 00",
            ),
            (
                "iban GB29NWBK60161331926819",
                "IBAN",
                "GB29NWBK60161331926819",
            ),
            ("ssn 123-45-6789", "SSN", "123-45-6789"),
            ("host 192.168.10.1 up", "IP", "192.168.10.1"),
            (
                "host 2001:db8::8a2e:370:7334 up",
                "IP",
                "2001:db8::8a2e:370:7334",
            ),
            ("call +44 20 7946 0958", "PHONE", "+44 20 7946 0958"),
            ("call (415) 555-0100", "PHONE", "(415) 555-0100"),
            ("call 030 1234567", "PHONE", "030 1234567"),
            (
                "key AKIAIOSFODNN7EXAMPLE",
                "AWS_ACCESS_KEY",
                "AKIAIOSFODNN7EXAMPLE",
            ),
            (
                "secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "AWS_SECRET_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            ("ref TCK-123456", "TICKET", "TCK-123456"),
            ("the BlueBird flies", "CODENAME", "BlueBird"),
            ("a Night Jar sings", "CODENAME", "Night Jar"),
        ];
        for (text, label, value) in cases {
            assert_eq!(
                labels(&s, text),
                vec![(label.to_string(), value.to_string())],
                "{text}"
            );
        }
    }

    #[test]
    fn checksums_and_boundaries_reject_lookalikes() {
        let s = all(GuardAction::Mask);
        // (text, a type that must not be found in it)
        for (text, label) in [
            ("card 4111 1111 1111 1112", "CARD"),           // Luhn fails
            ("iban DE89 3704 0044 0532 0130 03", "IBAN"),   // mod-97 fails
            ("ssn 000-12-3456", "SSN"),                     // invalid area
            ("host 999.1.1.1", "IP"),                       // not an address
            ("bluebirds are not the codename", "CODENAME"), // not a whole word
            (
                "sha 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
                "AWS_SECRET_KEY",
            ), // a hex digest
            ("on 2026-12-02 at noon", "PHONE"),             // a date
        ] {
            let found = labels(&s, text);
            assert!(found.iter().all(|(l, _)| l != label), "{text}: {found:?}");
        }
        assert_eq!(labels(&s, "nothing to see here, 42 times"), vec![]);
    }

    #[test]
    fn luhn_and_mod97_agree_with_known_values() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("5500 0000 0000 0004"));
        assert!(!luhn("4111111111111121"));
        assert!(iban_mod97("DE89370400440532013000"));
        assert!(iban_mod97("FR1420041010050500013M02606"));
        assert!(!iban_mod97("DE89370400440532013001"));
    }
}
