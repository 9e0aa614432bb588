//! Money as an integer count of atomic units (cents), with checked arithmetic.
//!
//! Floating point never touches an amount: text is parsed digit by digit, and every sum is
//! checked so that an overflowing transaction can never appear to balance.

use std::fmt;
use std::str::FromStr;

/// Atomic units (cents) per currency unit.
pub const UNITS_PER_COIN: u64 = 100;
/// Digits after the decimal point in the text form.
pub const DECIMALS: usize = 2;

/// An amount of money in atomic units (cents).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u64);

/// Why a text amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The input was empty or had no digits.
    #[error("amount is empty")]
    Empty,
    /// A character other than a digit or a single decimal point.
    #[error("amount {0:?} is not a number like 12.34")]
    Malformed(String),
    /// More than [`DECIMALS`] digits after the point.
    #[error("amount {0:?} has more than 2 decimal places")]
    TooPrecise(String),
    /// The value does not fit in 64 bits of cents.
    #[error("amount {0:?} is too large")]
    TooLarge(String),
}

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);
    /// The largest representable amount.
    pub const MAX: Amount = Amount(u64::MAX);

    /// An amount of `cents` atomic units.
    pub const fn from_cents(cents: u64) -> Self {
        Amount(cents)
    }

    /// The amount in atomic units.
    pub const fn cents(self) -> u64 {
        self.0
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` if it would go below zero.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// `self * n`, or `None` on overflow.
    pub fn checked_mul(self, n: u64) -> Option<Amount> {
        self.0.checked_mul(n).map(Amount)
    }

    /// The sum of `amounts`, or `None` if any partial sum overflows.
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(amounts: I) -> Option<Amount> {
        amounts
            .into_iter()
            .try_fold(Amount::ZERO, |acc, a| acc.checked_add(a))
    }
}

impl fmt::Display for Amount {
    /// Prints as currency: 1234 cents is `12.34`, 5 cents is `0.05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:02}",
            self.0 / UNITS_PER_COIN,
            self.0 % UNITS_PER_COIN
        )
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    /// Parses `12`, `12.3` or `12.34` (at most two decimals); no sign, exponent,
    /// separators or whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(AmountError::Empty);
        }
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (s, None),
        };
        let malformed = || AmountError::Malformed(s.to_string());
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) {
            return Err(malformed());
        }
        let frac = frac.unwrap_or("");
        if !all_digits(frac) || (s.ends_with('.')) {
            return Err(malformed());
        }
        if frac.len() > DECIMALS {
            return Err(AmountError::TooPrecise(s.to_string()));
        }
        let too_large = || AmountError::TooLarge(s.to_string());
        let whole: u64 = whole.parse().map_err(|_| too_large())?;
        let mut cents: u64 = 0;
        for (i, digit) in frac.bytes().enumerate() {
            let scale = 10u64.pow((DECIMALS - 1 - i) as u32);
            cents += u64::from(digit - b'0') * scale;
        }
        whole
            .checked_mul(UNITS_PER_COIN)
            .and_then(|w| w.checked_add(cents))
            .map(Amount)
            .ok_or_else(too_large)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn test_parse_amount_forms() {
        assert_eq!("12.34".parse::<Amount>().unwrap().cents(), 1234);
        assert_eq!("12.3".parse::<Amount>().unwrap().cents(), 1230);
        assert_eq!("12".parse::<Amount>().unwrap().cents(), 1200);
        assert_eq!("0.05".parse::<Amount>().unwrap().cents(), 5);
        assert_eq!("007.00".parse::<Amount>().unwrap().cents(), 700);
    }

    #[test]
    fn test_parse_amount_rejects_malformed() {
        for bad in [
            "", ".5", "5.", "-1", "+1", "1,00", "1.2.3", " 1", "1e3", "abc", "1. 5",
        ] {
            assert!(bad.parse::<Amount>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            "1.234".parse::<Amount>(),
            Err(AmountError::TooPrecise("1.234".into()))
        );
        assert!(matches!(
            "184467440737095516.16".parse::<Amount>(),
            Err(AmountError::TooLarge(_))
        ));
        assert_eq!(
            "184467440737095516.15".parse::<Amount>().unwrap(),
            Amount::MAX
        );
    }

    #[test]
    fn test_amount_display() {
        assert_eq!(Amount::from_cents(1234).to_string(), "12.34");
        assert_eq!(Amount::from_cents(5).to_string(), "0.05");
        assert_eq!(Amount::ZERO.to_string(), "0.00");
    }

    #[test]
    fn test_amount_checked_arithmetic() {
        assert_eq!(Amount::MAX.checked_add(Amount::from_cents(1)), None);
        assert_eq!(Amount::ZERO.checked_sub(Amount::from_cents(1)), None);
        assert_eq!(
            Amount::checked_sum([Amount::MAX, Amount::from_cents(1)]),
            None
        );
        assert_eq!(
            Amount::checked_sum([Amount::from_cents(1), Amount::from_cents(2)]),
            Some(Amount::from_cents(3))
        );
    }

    proptest! {
        #[test]
        fn prop_amount_text_round_trips(cents in any::<u64>()) {
            let a = Amount::from_cents(cents);
            prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
        }
    }
}
