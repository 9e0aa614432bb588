//! Pins the protobuf bytes of fixed messages, so that any change to the wire format
//! (field numbers, types, order) shows up in review as a changed constant here.

mod common;

use cbdc_core::{CompactTransaction, Transaction};
use cbdc_proto::v1;
use common::{fixed_compact, fixed_transaction};
use prost::Message;

#[rustfmt::skip]
const TRANSACTION_HEX: &str = concat!(
    // field 1 (inputs), 77 bytes: outpoint { tx_id = 0x11.., index = 7 },
    // spent { commitment = 0x22.., value = 1234 }
    "0a4d",
    "0a24", "0a20", "1111111111111111111111111111111111111111111111111111111111111111", "1007",
    "1225", "0a20", "2222222222222222222222222222222222222222222222222222222222222222", "10d209",
    // field 2 (outputs), 37 bytes: { commitment = 0x33.., value = 1234 }
    "1225", "0a20", "3333333333333333333333333333333333333333333333333333333333333333", "10d209",
    // field 3 (nonce), 32 zero bytes
    "1a20", "0000000000000000000000000000000000000000000000000000000000000000",
    // field 4 (witnesses), 102 bytes: program { version 0 (the default, so absent),
    // program = 0x44.. }, signature = 0x55.. (64 bytes)
    "2266", "0a22", "1220", "4444444444444444444444444444444444444444444444444444444444444444",
    "1240", "55555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555",
);
#[rustfmt::skip]
const COMPACT_HEX: &str = concat!(
    // field 1 (id)
    "0a20", "6666666666666666666666666666666666666666666666666666666666666666",
    // field 2 (inputs): one UHS id
    "1220", "7777777777777777777777777777777777777777777777777777777777777777",
    // field 3 (outputs): { uhs_id = 0x88.., value = 500 }
    "1a25", "0a20", "8888888888888888888888888888888888888888888888888888888888888888", "10f403",
    // field 4 (attestations), 170 bytes: sentinel, root, signature, leaf_index = 1, path
    "22aa01",
    "0a20", "9999999999999999999999999999999999999999999999999999999999999999",
    "1220", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "1a40", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "2001",
    "2a20", "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
);

#[test]
fn test_snapshot_transaction_bytes() {
    let bytes = v1::Transaction::from(&fixed_transaction()).encode_to_vec();
    assert_eq!(hex::encode(&bytes), TRANSACTION_HEX);
    let back = Transaction::try_from(v1::Transaction::decode(bytes.as_slice()).unwrap());
    assert_eq!(back.unwrap(), fixed_transaction());
}

#[test]
fn test_snapshot_compact_transaction_bytes() {
    let bytes = v1::CompactTransaction::from(&fixed_compact()).encode_to_vec();
    assert_eq!(hex::encode(&bytes), COMPACT_HEX);
    let back =
        CompactTransaction::try_from(v1::CompactTransaction::decode(bytes.as_slice()).unwrap());
    assert_eq!(back.unwrap(), fixed_compact());
}
