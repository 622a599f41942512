//! The payment attributes: the canonical details (what the card signs), the
//! result the card reads, and the seven Eapay values as any carrier gives them.
#![no_main]

use aaa_proto::payment::{PaymentDetails, PaymentResult};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(details) = PaymentDetails::from_canonical(bytes) {
        assert_eq!(details.canonical(), bytes, "the canonical form is unique");
    }
    let _ = PaymentResult::decode(bytes);
    // (type, length, value) runs, as the RADIUS and Diameter front ends hand them over.
    let mut pairs = Vec::new();
    let mut rest = bytes;
    while let [t, l, tail @ ..] = rest {
        let len = usize::from(*l).min(tail.len());
        pairs.push((*t, &tail[..len]));
        rest = &tail[len..];
    }
    let _ = PaymentDetails::from_attributes(pairs);
});
