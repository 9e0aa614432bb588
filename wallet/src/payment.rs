//! Payments: what a sender hands to the recipient so that the recipient's wallet can find
//! and check the outputs it was paid.
//!
//! A cbdc ledger stores only UHS ids (`SHA-256(tx_id ‖ index ‖ commitment ‖ value)`), so
//! a recipient cannot discover its money by scanning: it must be told the transaction id
//! and each paid output's index, value and program, recompute the UHS ids and ask the
//! ledger whether they are unspent. A [`Payment`] carries exactly that, and nothing
//! secret: anyone who sees it learns the amounts, but only the key holder can spend.
//!
//! # Text form
//!
//! A payment is one bech32m string with the prefix `usdpay` (so it reads `usdpay1…` and
//! cannot be mistaken for a `usd1…` address), short enough to copy and paste, with a
//! checksum that catches typing errors. Its data part is, in the canonical encoding of
//! [`cbdc_core::encoding`]:
//!
//! ```text
//! version u8 (= 1) ‖ tx_id[32] ‖ u32 n ‖ n × run
//! run = first_index u32 ‖ count u32 ‖ value u64 ‖ WitnessProgram
//! WitnessProgram = version u8 ‖ u32 len ‖ program[len]     (P2PK: 0x00, 32, pubkey)
//! ```
//!
//! A *run* stands for `count` consecutive outputs `first_index ..` of equal value locked
//! to the same program, so a fan-out of a thousand equal outputs to one address is as
//! short as a single payment (about 150 characters). Runs are in increasing index order
//! and never overlap; decoding refuses anything else, as well as zero values, trailing
//! bytes and more than [`MAX_PAID_OUTPUTS`] outputs.

use std::fmt;
use std::str::FromStr;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use cbdc_core::encoding::{put_u32, put_u64, Reader};
use cbdc_core::{Address, Amount, Decode, DecodeError, Encode, OutPoint, Output, TxId, UhsId};
use cbdc_core::{Hash, WitnessProgram};

/// The human-readable prefix of every payment string.
pub const PAYMENT_HRP: &str = "usdpay";
/// The only layout version this software writes and reads.
pub const PAYMENT_VERSION: u8 = 1;
/// Most outputs one payment may name (after expanding runs): far above any cluster's
/// output limit, and small enough that a hostile payment cannot make a wallet allocate
/// much.
pub const MAX_PAID_OUTPUTS: u64 = 65_536;

/// One paid output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidOutput {
    /// Its position among the transaction's outputs.
    pub index: u32,
    /// Its value.
    pub value: Amount,
    /// The program it is locked to (for P2PK, the recipient's public key).
    pub program: WitnessProgram,
}

/// A transaction id and the outputs of it that pay someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The transaction that created the outputs.
    pub tx_id: TxId,
    /// The paid outputs, in increasing index order.
    pub outputs: Vec<PaidOutput>,
}

/// Why a string is not a payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// Not bech32m, bad characters, a wrong checksum, or too long.
    #[error("not a payment string (bech32m, starting usdpay1): {0}")]
    Encoding(String),
    /// Another prefix (an address was pasted, say).
    #[error("prefix {found:?} is not a payment (payments start with \"usdpay1\")")]
    WrongPrefix {
        /// The prefix found.
        found: String,
    },
    /// A layout version this software does not know.
    #[error("payment version {0} is not supported (this wallet reads version 1)")]
    UnsupportedVersion(u8),
    /// The bytes do not decode.
    #[error("malformed payment: {0}")]
    Decode(#[from] DecodeError),
    /// No output at all.
    #[error("the payment names no output")]
    Empty,
    /// A run of zero outputs, or a zero-value output.
    #[error("the payment has an empty run or a zero-value output at index {index}")]
    Zero {
        /// The first index of the run.
        index: u32,
    },
    /// Runs out of order or overlapping.
    #[error("the payment's outputs are out of order or repeated at index {index}")]
    Order {
        /// The first index of the offending run.
        index: u32,
    },
    /// More outputs than [`MAX_PAID_OUTPUTS`] or an index past `u32`.
    #[error("the payment names too many outputs")]
    TooMany,
}

impl PaidOutput {
    /// The output as the ledger holds it.
    pub fn output(&self) -> Output {
        Output {
            commitment: self.program.commitment(),
            value: self.value,
        }
    }

    /// Where it was created.
    pub fn outpoint(&self, tx_id: TxId) -> OutPoint {
        OutPoint {
            tx_id,
            index: self.index,
        }
    }

    /// Its UHS id: what the ledger is asked about.
    pub fn uhs_id(&self, tx_id: TxId) -> UhsId {
        self.output().uhs_id(&self.outpoint(tx_id))
    }

    /// The address it pays.
    pub fn address(&self) -> Address {
        Address(self.program.clone())
    }
}

impl Payment {
    /// The sum of the paid values, or `None` if it overflows (only a forged payment can).
    pub fn total(&self) -> Option<Amount> {
        Amount::checked_sum(self.outputs.iter().map(|o| o.value))
    }

    /// The canonical bytes (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let runs = self.runs();
        let mut out = Vec::with_capacity(1 + 32 + 4 + runs.len() * 53);
        out.push(PAYMENT_VERSION);
        out.extend_from_slice(self.tx_id.as_bytes());
        put_u32(&mut out, runs.len() as u32);
        for (first, count, value, program) in runs {
            put_u32(&mut out, first);
            put_u32(&mut out, count);
            put_u64(&mut out, value.cents());
            program.encode_to(&mut out);
        }
        out
    }

    /// Groups consecutive outputs of equal value and program.
    fn runs(&self) -> Vec<(u32, u32, Amount, &WitnessProgram)> {
        let mut runs: Vec<(u32, u32, Amount, &WitnessProgram)> = Vec::new();
        for o in &self.outputs {
            if let Some(last) = runs.last_mut() {
                let next = last.0.checked_add(last.1);
                if next == Some(o.index) && last.2 == o.value && *last.3 == o.program {
                    last.1 += 1;
                    continue;
                }
            }
            runs.push((o.index, 1, o.value, &o.program));
        }
        runs
    }

    /// Reads the canonical bytes, refusing anything that is not a well-formed payment.
    pub fn from_bytes(bytes: &[u8]) -> Result<Payment, PaymentError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("payment version")?;
        if version != PAYMENT_VERSION {
            return Err(PaymentError::UnsupportedVersion(version));
        }
        let tx_id = TxId(r.hash("payment tx id")?);
        // Each run takes at least 4 + 4 + 8 + 5 bytes, which bounds the count by the
        // input's length before anything is allocated.
        let runs = r.len("payment runs", MAX_PAID_OUTPUTS as usize, 21)?;
        let mut outputs = Vec::new();
        let mut next_free: u64 = 0;
        for _ in 0..runs {
            let first = r.u32("run first index")?;
            let count = r.u32("run count")?;
            let value = Amount::from_cents(r.u64("run value")?);
            let program = WitnessProgram::decode_from(&mut r)?;
            if count == 0 || value.is_zero() {
                return Err(PaymentError::Zero { index: first });
            }
            if u64::from(first) < next_free {
                return Err(PaymentError::Order { index: first });
            }
            let end = u64::from(first) + u64::from(count);
            if end > u64::from(u32::MAX) + 1
                || outputs.len() as u64 + u64::from(count) > MAX_PAID_OUTPUTS
            {
                return Err(PaymentError::TooMany);
            }
            for index in first..=(first + (count - 1)) {
                outputs.push(PaidOutput {
                    index,
                    value,
                    program: program.clone(),
                });
            }
            next_free = end;
        }
        r.finish()?;
        if outputs.is_empty() {
            return Err(PaymentError::Empty);
        }
        Ok(Payment { tx_id, outputs })
    }

    /// The text form, `usdpay1…`. Fails only for a payment too long for bech32m (1023
    /// characters), which runs keep far away for any payment this wallet makes.
    pub fn encode(&self) -> Result<String, PaymentError> {
        let hrp = Hrp::parse_unchecked(PAYMENT_HRP);
        bech32::encode::<Bech32m>(hrp, &self.to_bytes())
            .map_err(|e| PaymentError::Encoding(e.to_string()))
    }

    /// A short name for logs and tables: the first bytes of the tx id.
    pub fn short_id(&self) -> String {
        short_hash(&self.tx_id.0)
    }
}

/// The first 8 bytes of a hash in hex, for human-readable output.
pub fn short_hash(h: &Hash) -> String {
    h.to_hex().chars().take(16).collect()
}

impl fmt::Display for Payment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.encode() {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for Payment {
    type Err = PaymentError;

    /// Parses the text form; surrounding whitespace (a pasted newline) is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let checked = CheckedHrpstring::new::<Bech32m>(s.trim())
            .map_err(|e| PaymentError::Encoding(e.to_string()))?;
        if !checked.hrp().as_str().eq_ignore_ascii_case(PAYMENT_HRP) {
            return Err(PaymentError::WrongPrefix {
                found: checked.hrp().to_string(),
            });
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        Payment::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cbdc_core::PublicKey;

    fn program(seed: u8) -> WitnessProgram {
        WitnessProgram::P2pk(PublicKey([seed; 32]))
    }

    fn paid(index: u32, cents: u64, seed: u8) -> PaidOutput {
        PaidOutput {
            index,
            value: Amount::from_cents(cents),
            program: program(seed),
        }
    }

    fn payment(outputs: Vec<PaidOutput>) -> Payment {
        Payment {
            tx_id: TxId::from([3; 32]),
            outputs,
        }
    }

    #[test]
    fn test_payment_round_trip_and_prefix() {
        let p = payment(vec![paid(0, 500, 1)]);
        let s = p.encode().unwrap();
        assert!(s.starts_with("usdpay1"), "{s}");
        assert!(s.len() < 160, "{} characters", s.len());
        assert_eq!(s.parse::<Payment>().unwrap(), p);
        assert_eq!(format!("  {s}\n").parse::<Payment>().unwrap(), p);
        assert_eq!(s.to_uppercase().parse::<Payment>().unwrap(), p);
    }

    #[test]
    fn test_payment_runs_keep_fan_outs_short() {
        let many: Vec<_> = (0..1000).map(|i| paid(i, 7, 1)).collect();
        let p = payment(many);
        let s = p.encode().unwrap();
        assert!(s.len() < 160, "{} characters", s.len());
        assert_eq!(s.parse::<Payment>().unwrap(), p);
        // Runs break on value, program and gaps.
        let mixed = payment(vec![
            paid(0, 5, 1),
            paid(1, 5, 1),
            paid(2, 6, 1),
            paid(3, 6, 2),
            paid(5, 6, 2),
        ]);
        assert_eq!(mixed.runs().len(), 4);
        assert_eq!(mixed.encode().unwrap().parse::<Payment>().unwrap(), mixed);
    }

    #[test]
    fn test_payment_rejects_bad_text() {
        let s = payment(vec![paid(0, 500, 1)]).encode().unwrap();
        let mut chars: Vec<char> = s.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'q' { 'p' } else { 'q' };
        let typo: String = chars.into_iter().collect();
        assert!(matches!(
            typo.parse::<Payment>(),
            Err(PaymentError::Encoding(_))
        ));
        let address = Address(program(1)).to_string();
        assert!(matches!(
            address.parse::<Payment>(),
            Err(PaymentError::WrongPrefix { .. })
        ));
        assert!("".parse::<Payment>().is_err());
        assert!("hello".parse::<Payment>().is_err());
    }

    fn encode_raw(bytes: &[u8]) -> String {
        bech32::encode::<Bech32m>(Hrp::parse_unchecked(PAYMENT_HRP), bytes).unwrap()
    }

    fn raw(runs: &[(u32, u32, u64)]) -> Vec<u8> {
        let mut out = vec![PAYMENT_VERSION];
        out.extend_from_slice(&[3; 32]);
        put_u32(&mut out, runs.len() as u32);
        for (first, count, value) in runs {
            put_u32(&mut out, *first);
            put_u32(&mut out, *count);
            put_u64(&mut out, *value);
            program(1).encode_to(&mut out);
        }
        out
    }

    #[test]
    fn test_payment_rejects_malformed_bytes() {
        assert_eq!(Payment::from_bytes(&raw(&[])), Err(PaymentError::Empty));
        assert_eq!(
            Payment::from_bytes(&raw(&[(0, 0, 5)])),
            Err(PaymentError::Zero { index: 0 })
        );
        assert_eq!(
            Payment::from_bytes(&raw(&[(0, 1, 0)])),
            Err(PaymentError::Zero { index: 0 })
        );
        assert_eq!(
            Payment::from_bytes(&raw(&[(2, 2, 5), (3, 1, 5)])),
            Err(PaymentError::Order { index: 3 })
        );
        assert_eq!(
            Payment::from_bytes(&raw(&[(0, 70_000, 5)])),
            Err(PaymentError::TooMany)
        );
        assert_eq!(
            Payment::from_bytes(&raw(&[(u32::MAX, 2, 5)])),
            Err(PaymentError::TooMany)
        );
        // The last possible index is fine.
        assert!(Payment::from_bytes(&raw(&[(u32::MAX, 1, 5)])).is_ok());
        let mut trailing = raw(&[(0, 1, 5)]);
        trailing.push(0);
        assert!(matches!(
            Payment::from_bytes(&trailing),
            Err(PaymentError::Decode(DecodeError::TrailingBytes { .. }))
        ));
        let mut v2 = raw(&[(0, 1, 5)]);
        v2[0] = 2;
        assert_eq!(
            encode_raw(&v2).parse::<Payment>(),
            Err(PaymentError::UnsupportedVersion(2))
        );
        let truncated = raw(&[(0, 1, 5)]);
        assert!(Payment::from_bytes(&truncated[..truncated.len() - 3]).is_err());
        // A huge run count with no bytes behind it is refused before allocating.
        let mut huge = vec![PAYMENT_VERSION];
        huge.extend_from_slice(&[3; 32]);
        put_u32(&mut huge, u32::MAX);
        assert!(Payment::from_bytes(&huge).is_err());
    }

    #[test]
    fn test_payment_decoding_never_panics_on_garbage() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = Payment::from_bytes(&bytes);
            let mut framed = raw(&[(0, 1, 5)]);
            let at = rng.gen_range(0..framed.len());
            framed[at] = rng.gen();
            let _ = Payment::from_bytes(&framed);
        }
    }
}
