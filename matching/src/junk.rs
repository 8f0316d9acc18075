//! Placeholders: values that records carry for want of a real one (an
//! email typed to get past a form, a phone of all zeros, an address of
//! "N/A"). Shared by strangers, they are no evidence of one person: the
//! matcher neither compares nor blocks on them. A tenant adds its own
//! (a shop's switchboard number, its own info@ address) in its settings.

use crate::names::fold;

/// Mailbox names that say there is no mailbox (compared without dots,
/// dashes and underscores). Only names no one has: `test@` and `info@`
/// are real mailboxes often enough (a shop's own `info@` is for a
/// tenant's blocklist).
const PLACEHOLDER_MAILBOXES: &[&str] = &[
    "noemail",
    "nomail",
    "none",
    "noreply",
    "donotreply",
    "noaddress",
    "unknown",
    "null",
    "dummy",
    "fake",
    "invalid",
    "notprovided",
    "notgiven",
    "declined",
    "refused",
];

/// Domains that are no one's.
const PLACEHOLDER_DOMAINS: &[&str] = &["noemail.com", "nomail.com", "none.com", "donotreply.com"];

/// Address texts (folded) that say there is no address.
const PLACEHOLDER_ADDRESSES: &[&str] = &[
    "na",
    "n a",
    "none",
    "unknown",
    "no address",
    "not known",
    "not provided",
    "not given",
    "test",
    "test address",
    "xxx",
    "tba",
    "tbc",
];

/// Whether an email address (lower-case) is a placeholder.
pub fn placeholder_email(address: &str) -> bool {
    let (mailbox, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let mailbox: String = mailbox.chars().filter(|c| !matches!(c, '.' | '-' | '_')).collect();
    // `.invalid` is reserved never to resolve (RFC 2606).
    PLACEHOLDER_MAILBOXES.contains(&mailbox.as_str())
        || PLACEHOLDER_DOMAINS.contains(&domain)
        || domain.ends_with(".invalid")
}

/// Whether a phone number (E.164 or digits) is a placeholder: fewer than
/// seven digits, or its last seven one digit repeated (`+44 000 0000000`).
/// Numbers that count (`…1234567`) are not: real numbers end so too.
pub fn placeholder_phone(number: &str) -> bool {
    let digits: Vec<u8> = number.bytes().filter(u8::is_ascii_digit).collect();
    digits.len() < 7 || digits[digits.len() - 7..].windows(2).all(|w| w[0] == w[1])
}

/// Whether an address text is a placeholder (an empty one is no address:
/// its town and postal code may still speak).
pub fn placeholder_address(text: &str) -> bool {
    placeholder_address_key(&address_key(text))
}

/// [`placeholder_address`] of a text already made an [`address_key`].
pub fn placeholder_address_key(key: &str) -> bool {
    PLACEHOLDER_ADDRESSES.contains(&key)
}

/// An address text as a tenant's list of junk values holds it: folded, so
/// "12 High St." and "12 HIGH ST" are one entry.
pub fn address_key(text: &str) -> String {
    fold(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_told_from_real_values() {
        for junk in
            ["noemail@gmail.com", "no.email@shop.co.uk", "none@x.org", "ann@noemail.com", "a@b.invalid", "UNKNOWN"]
        {
            assert!(placeholder_email(&junk.to_lowercase()), "{junk}");
        }
        for real in ["ann.lee@gmail.com", "nona@example.org", "test@example.com", "info@shop.example"] {
            assert!(!placeholder_email(real), "{real}");
        }
        for junk in ["+440000000000", "+11111111111", "+49 30 9999999", "0"] {
            assert!(placeholder_phone(junk), "{junk}");
        }
        for real in ["+442079460018", "+14155550100", "+15551234567", "+441234567890"] {
            assert!(!placeholder_phone(real), "{real}");
        }
        for junk in ["N/A", "n.a.", "Unknown", "Test address"] {
            assert!(placeholder_address(junk), "{junk}");
        }
        assert!(!placeholder_address("12 Harbour Street") && !placeholder_address("  "));
        assert_eq!(address_key("12 HIGH ST."), address_key("12 high st"));
    }
}
