//! Built-in PII detectors: `pii.ssn`, `pii.email`, `pii.phone`,
//! `pii.credit_card`, `pii.iban`. Each takes a string and says whether it
//! is a well-formed identifier of its kind (a check of form and checksum,
//! not a lookup).

use serde::{Deserialize, Serialize};

/// Which detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Detector {
    /// US Social Security number.
    Ssn,
    /// E-mail address.
    Email,
    /// Phone number: E.164 or NANP.
    Phone,
    /// Payment card number (Luhn).
    CreditCard,
    /// International bank account number (mod 97).
    Iban,
}

impl Detector {
    /// The detector called `pii.<name>`.
    pub fn from_name(name: &str) -> Option<Detector> {
        Some(match name {
            "ssn" => Detector::Ssn,
            "email" => Detector::Email,
            "phone" => Detector::Phone,
            "credit_card" => Detector::CreditCard,
            "iban" => Detector::Iban,
            _ => return None,
        })
    }

    /// The name after `pii.`.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Ssn => "ssn",
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::CreditCard => "credit_card",
            Detector::Iban => "iban",
        }
    }

    /// Whether `s` is an identifier of this kind.
    pub fn matches(self, s: &str) -> bool {
        match self {
            Detector::Ssn => is_ssn(s),
            Detector::Email => is_email(s),
            Detector::Phone => is_phone(s),
            Detector::CreditCard => is_credit_card(s),
            Detector::Iban => is_iban(s),
        }
    }
}

/// `AAA-GG-SSSS` or nine digits, by the SSA's rules: area not 000, 666 or
/// 900–999; group not 00; serial not 0000.
pub(crate) fn is_ssn(s: &str) -> bool {
    let digits: Vec<u8> = match s.len() {
        11 => {
            let b = s.as_bytes();
            if b[3] != b'-' || b[6] != b'-' {
                return false;
            }
            b.iter()
                .enumerate()
                .filter(|(i, _)| *i != 3 && *i != 6)
                .map(|(_, c)| *c)
                .collect()
        }
        9 => s.as_bytes().to_vec(),
        _ => return false,
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        digits[r]
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
    };
    let (area, group, serial) = (num(0..3), num(3..5), num(5..9));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// `local@domain.tld`: a dot-atom local part, a domain of at least two
/// labels of letters, digits and inner hyphens, a top-level label of at
/// least two letters.
pub(crate) fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.len() > 253 {
        return false;
    }
    let local_ok = local.split('.').all(|atom| {
        !atom.is_empty()
            && atom
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c))
    });
    let labels: Vec<&str> = domain.split('.').collect();
    let labels_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    let tld = labels.last().copied().unwrap_or("");
    local_ok && labels_ok && tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic())
}

/// E.164 (`+` then 8–15 digits, no leading zero) or a NANP number
/// (`NXX-NXX-XXXX` with optional `+1`/`1`, parentheses, spaces, dots or
/// hyphens; area and exchange codes start with 2–9).
pub(crate) fn is_phone(s: &str) -> bool {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('+') {
        let digits: String = rest
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.'))
            .collect();
        if !rest.starts_with("1") || digits.len() != 11 {
            return !digits.is_empty()
                && digits.len() >= 8
                && digits.len() <= 15
                && digits.chars().all(|c| c.is_ascii_digit())
                && !digits.starts_with('0');
        }
    }
    // NANP.
    if !s
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')' | '+'))
    {
        return false;
    }
    let mut digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 11 && digits.starts_with('1') {
        digits.remove(0);
    }
    let b = digits.as_bytes();
    b.len() == 10 && (b'2'..=b'9').contains(&b[0]) && (b'2'..=b'9').contains(&b[3])
}

/// 12–19 digits (spaces and hyphens allowed) passing the Luhn check.
pub(crate) fn is_credit_card(s: &str) -> bool {
    if !s
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return false;
    }
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(12..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A country code, two check digits and up to 30 alphanumerics (spaces
/// allowed), 15–34 characters, whose mod-97 remainder (ISO 13616) is 1.
pub(crate) fn is_iban(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| *c != ' ').collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(char::is_ascii_uppercase)
        || !compact[2..4].iter().all(char::is_ascii_digit)
        || !compact[4..]
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u32 = 0;
    for c in rearranged {
        let v = c.to_digit(36).expect("checked alphanumeric above");
        remainder = if v < 10 {
            (remainder * 10 + v) % 97
        } else {
            (remainder * 100 + v) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssn_follows_the_ssa_rules() {
        assert!(is_ssn("123-45-6789"));
        assert!(is_ssn("123456789"));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
            "12-345-6789",
            "123-45-678",
            "abc-de-fghi",
            "",
        ] {
            assert!(!is_ssn(bad), "{bad}");
        }
    }

    #[test]
    fn email() {
        assert!(is_email("ines.muller841@example.org"));
        assert!(is_email("a+b@sub.example.co"));
        for bad in [
            "",
            "plain",
            "@example.org",
            "a@b",
            "a@-b.org",
            "a..b@example.org",
            "a@example.c0",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn phone_e164_and_nanp() {
        for good in [
            "+14155552671",
            "+442071838750",
            "(415) 555-2671",
            "415-555-2671",
            "1 415 555 2671",
        ] {
            assert!(is_phone(good), "{good}");
        }
        for bad in [
            "+0123456789",
            "+12",
            "015-555-2671",
            "415-055-2671",
            "555-2671",
            "phone",
        ] {
            assert!(!is_phone(bad), "{bad}");
        }
    }

    #[test]
    fn credit_card_luhn() {
        assert!(is_credit_card("4111 1111 1111 1111"));
        assert!(is_credit_card("5500-0000-0000-0004"));
        assert!(!is_credit_card("4111 1111 1111 1112"));
        assert!(!is_credit_card("4111"));
    }

    #[test]
    fn iban_mod97() {
        assert!(is_iban("GB82 WEST 1234 5698 7654 32"));
        assert!(is_iban("DE89370400440532013000"));
        assert!(!is_iban("GB82 WEST 1234 5698 7654 33"));
        assert!(!is_iban("gb82west12345698765432"));
    }
}
