//! ISO 4217 currencies and exact decimal amounts in minor units.
//!
//! The table is the active code list (List One) as published in 2025: XCG,
//! ZWG and XAD are in; the withdrawn ANG, CUC, SLL, ZWL and HRK are not; BGN
//! stays while it is listed during Bulgaria's changeover to the euro. Codes
//! whose minor unit is "N.A." are left out on purpose (precious metals
//! XAU/XAG/XPD/XPT, bond-market units XBA..XBD, XDR, XSU, XUA, and the XTS /
//! XXX test and no-currency codes): no amount in minor units exists for them,
//! so a payment in one is an invalid transaction. ISO gives MGA and MRU 2
//! minor units although their subunits are fifths; so does this table.
//!
//! Amounts are never floats: text is parsed digit by digit into an integer.

/// One ISO 4217 currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    /// Alphabetic code, upper case, e.g. `USD`.
    pub alpha: &'static str,
    /// Numeric code, e.g. 840; the value of Eapay-Currency.
    pub numeric: u16,
    /// Digits after the decimal point (2 for USD, 0 for KRW, 3 for BHD).
    pub minor_units: u8,
}

/// Why a decimal amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("the amount is empty")]
    Empty,
    /// Signs, exponents, separators, spaces, or a point without digits on both sides.
    #[error("the amount is not a plain decimal number (digits, optionally '.' and more digits)")]
    NotDecimal,
    #[error("{alpha} has {minor_units} decimal places; the amount has more")]
    TooPrecise { alpha: &'static str, minor_units: u8 },
    /// More minor units than a signed 64-bit ledger column holds.
    #[error("the amount is too large")]
    Overflow,
}

const fn c(alpha: &'static str, numeric: u16, minor_units: u8) -> Currency {
    Currency { alpha, numeric, minor_units }
}

/// Sorted by numeric code, for binary search.
static CURRENCIES: &[Currency] = &[
    c("ALL", 8, 2),
    c("DZD", 12, 2),
    c("ARS", 32, 2),
    c("AUD", 36, 2),
    c("BSD", 44, 2),
    c("BHD", 48, 3),
    c("BDT", 50, 2),
    c("AMD", 51, 2),
    c("BBD", 52, 2),
    c("BMD", 60, 2),
    c("BTN", 64, 2),
    c("BOB", 68, 2),
    c("BWP", 72, 2),
    c("BZD", 84, 2),
    c("SBD", 90, 2),
    c("BND", 96, 2),
    c("MMK", 104, 2),
    c("BIF", 108, 0),
    c("KHR", 116, 2),
    c("CAD", 124, 2),
    c("CVE", 132, 2),
    c("KYD", 136, 2),
    c("LKR", 144, 2),
    c("CLP", 152, 0),
    c("CNY", 156, 2),
    c("COP", 170, 2),
    c("KMF", 174, 0),
    c("CRC", 188, 2),
    c("CUP", 192, 2),
    c("CZK", 203, 2),
    c("DKK", 208, 2),
    c("DOP", 214, 2),
    c("SVC", 222, 2),
    c("ETB", 230, 2),
    c("ERN", 232, 2),
    c("FKP", 238, 2),
    c("FJD", 242, 2),
    c("DJF", 262, 0),
    c("GMD", 270, 2),
    c("GIP", 292, 2),
    c("GTQ", 320, 2),
    c("GNF", 324, 0),
    c("GYD", 328, 2),
    c("HTG", 332, 2),
    c("HNL", 340, 2),
    c("HKD", 344, 2),
    c("HUF", 348, 2),
    c("ISK", 352, 0),
    c("INR", 356, 2),
    c("IDR", 360, 2),
    c("IRR", 364, 2),
    c("IQD", 368, 3),
    c("ILS", 376, 2),
    c("JMD", 388, 2),
    c("JPY", 392, 0),
    c("XAD", 396, 2),
    c("KZT", 398, 2),
    c("JOD", 400, 3),
    c("KES", 404, 2),
    c("KPW", 408, 2),
    c("KRW", 410, 0),
    c("KWD", 414, 3),
    c("KGS", 417, 2),
    c("LAK", 418, 2),
    c("LBP", 422, 2),
    c("LSL", 426, 2),
    c("LRD", 430, 2),
    c("LYD", 434, 3),
    c("MOP", 446, 2),
    c("MWK", 454, 2),
    c("MYR", 458, 2),
    c("MVR", 462, 2),
    c("MUR", 480, 2),
    c("MXN", 484, 2),
    c("MNT", 496, 2),
    c("MDL", 498, 2),
    c("MAD", 504, 2),
    c("OMR", 512, 3),
    c("NAD", 516, 2),
    c("NPR", 524, 2),
    c("XCG", 532, 2),
    c("AWG", 533, 2),
    c("VUV", 548, 0),
    c("NZD", 554, 2),
    c("NIO", 558, 2),
    c("NGN", 566, 2),
    c("NOK", 578, 2),
    c("PKR", 586, 2),
    c("PAB", 590, 2),
    c("PGK", 598, 2),
    c("PYG", 600, 0),
    c("PEN", 604, 2),
    c("PHP", 608, 2),
    c("QAR", 634, 2),
    c("RUB", 643, 2),
    c("RWF", 646, 0),
    c("SHP", 654, 2),
    c("SAR", 682, 2),
    c("SCR", 690, 2),
    c("SGD", 702, 2),
    c("VND", 704, 0),
    c("SOS", 706, 2),
    c("ZAR", 710, 2),
    c("SSP", 728, 2),
    c("SZL", 748, 2),
    c("SEK", 752, 2),
    c("CHF", 756, 2),
    c("SYP", 760, 2),
    c("THB", 764, 2),
    c("TOP", 776, 2),
    c("TTD", 780, 2),
    c("AED", 784, 2),
    c("TND", 788, 3),
    c("UGX", 800, 0),
    c("MKD", 807, 2),
    c("EGP", 818, 2),
    c("GBP", 826, 2),
    c("TZS", 834, 2),
    c("USD", 840, 2),
    c("UYU", 858, 2),
    c("UZS", 860, 2),
    c("WST", 882, 2),
    c("YER", 886, 2),
    c("TWD", 901, 2),
    c("ZWG", 924, 2),
    c("SLE", 925, 2),
    c("VED", 926, 2),
    c("UYW", 927, 4),
    c("VES", 928, 2),
    c("MRU", 929, 2),
    c("STN", 930, 2),
    c("BYN", 933, 2),
    c("TMT", 934, 2),
    c("GHS", 936, 2),
    c("SDG", 938, 2),
    c("UYI", 940, 0),
    c("RSD", 941, 2),
    c("MZN", 943, 2),
    c("AZN", 944, 2),
    c("RON", 946, 2),
    c("CHE", 947, 2),
    c("CHW", 948, 2),
    c("TRY", 949, 2),
    c("XAF", 950, 0),
    c("XCD", 951, 2),
    c("XOF", 952, 0),
    c("XPF", 953, 0),
    c("ZMW", 967, 2),
    c("SRD", 968, 2),
    c("MGA", 969, 2),
    c("COU", 970, 2),
    c("AFN", 971, 2),
    c("TJS", 972, 2),
    c("AOA", 973, 2),
    c("BGN", 975, 2),
    c("CDF", 976, 2),
    c("BAM", 977, 2),
    c("EUR", 978, 2),
    c("MXV", 979, 2),
    c("UAH", 980, 2),
    c("GEL", 981, 2),
    c("BOV", 984, 2),
    c("PLN", 985, 2),
    c("BRL", 986, 2),
    c("CLF", 990, 4),
    c("USN", 997, 2),
];

/// Every currency of the table, by ascending numeric code.
pub fn all() -> &'static [Currency] {
    CURRENCIES
}

/// The currency with ISO 4217 numeric code `numeric` (an Eapay-Currency value).
pub fn by_numeric(numeric: u32) -> Option<&'static Currency> {
    let numeric = u16::try_from(numeric).ok()?;
    CURRENCIES.binary_search_by_key(&numeric, |c| c.numeric).ok().and_then(|i| CURRENCIES.get(i))
}

/// The currency with alphabetic code `alpha`, case-insensitive.
pub fn by_alpha(alpha: &str) -> Option<&'static Currency> {
    CURRENCIES.iter().find(|c| c.alpha.eq_ignore_ascii_case(alpha))
}

/// "USD" or "840" -> currency. Numeric codes may be written with their
/// leading zeros ("048") or without ("48").
pub fn parse(text: &str) -> Option<&'static Currency> {
    if !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit()) {
        by_numeric(text.parse().ok()?)
    } else {
        by_alpha(text)
    }
}

/// Exact decimal text to minor units: "12.50" USD -> 1250, "1000" KRW -> 1000; more fraction digits than
/// minor_units, signs, exponents, empty, overflow past i64::MAX -> error. No floats anywhere.
///
/// Fewer fraction digits are padded ("12.5" USD = 1250); a trailing or
/// leading point ("12.", ".5") is refused as a likely typo.
pub fn parse_amount(text: &str, currency: &Currency) -> Result<u64, AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !fraction.is_none_or(digits) {
        return Err(AmountError::NotDecimal);
    }
    let fraction = fraction.unwrap_or_default();
    let minor_units = usize::from(currency.minor_units);
    if fraction.len() > minor_units {
        return Err(AmountError::TooPrecise { alpha: currency.alpha, minor_units: currency.minor_units });
    }
    // The fraction is padded with zeros to `minor_units`, then the digits
    // are read as one integer of minor units.
    let padding = std::iter::repeat_n(b'0', minor_units - fraction.len());
    let mut minor: u64 = 0;
    for b in whole.bytes().chain(fraction.bytes()).chain(padding) {
        minor = minor.checked_mul(10).and_then(|m| m.checked_add(u64::from(b - b'0'))).ok_or(AmountError::Overflow)?;
    }
    if minor > i64::MAX as u64 {
        return Err(AmountError::Overflow);
    }
    Ok(minor)
}

/// Minor units as text with the currency's decimal places and alphabetic
/// code: 1250 USD -> "12.50 USD", 1000 KRW -> "1000 KRW".
pub fn format_amount(minor: u64, currency: &Currency) -> String {
    let decimals = usize::from(currency.minor_units);
    if decimals == 0 {
        return format!("{minor} {}", currency.alpha);
    }
    let scale = 10u64.pow(u32::from(currency.minor_units));
    format!("{}.{:0decimals$} {}", minor / scale, minor % scale, currency.alpha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(alpha: &str) -> &'static Currency {
        by_alpha(alpha).unwrap()
    }

    #[test]
    fn table_is_sorted_unique_and_well_formed() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].numeric < w[1].numeric));
        for c in CURRENCIES {
            assert!(c.alpha.len() == 3 && c.alpha.bytes().all(|b| b.is_ascii_uppercase()), "{c:?}");
            assert!((1..=999).contains(&c.numeric) && c.minor_units <= 4, "{c:?}");
            assert_eq!(by_numeric(c.numeric.into()), Some(c));
            assert_eq!(by_alpha(c.alpha), Some(c));
            assert_eq!(CURRENCIES.iter().filter(|d| d.alpha == c.alpha).count(), 1);
        }
        assert_eq!(all().len(), 166);
    }

    #[test]
    fn known_codes() {
        let known = [
            ("USD", 840, 2),
            ("EUR", 978, 2),
            ("KRW", 410, 0),
            ("JPY", 392, 0),
            ("GBP", 826, 2),
            ("BHD", 48, 3),
            ("KWD", 414, 3),
            ("CLF", 990, 4),
            ("UYW", 927, 4),
            ("XCG", 532, 2),
            ("ZWG", 924, 2),
        ];
        for (alpha, numeric, minor_units) in known {
            assert_eq!(by_numeric(numeric.into()), Some(&Currency { alpha, numeric, minor_units }), "{alpha}");
        }
        assert_eq!(by_alpha("usd"), Some(cur("USD")));
        assert_eq!(parse("840"), Some(cur("USD")));
        assert_eq!(parse("048"), Some(cur("BHD")));
        assert_eq!(parse("48"), Some(cur("BHD")));
        assert_eq!(parse("Krw"), Some(cur("KRW")));
        for unknown in ["", "US", "USDX", "XAU", "XXX", "ANG", "0840", "000", "999", "+840", " USD"] {
            assert_eq!(parse(unknown), None, "{unknown:?}");
        }
        assert_eq!(by_numeric(840 + 65536), None);
        assert_eq!(by_numeric(0), None);
    }

    #[test]
    fn parse_amounts() {
        let (usd, krw, bhd, clf) = (cur("USD"), cur("KRW"), cur("BHD"), cur("CLF"));
        assert_eq!(parse_amount("12.50", usd), Ok(1250));
        assert_eq!(parse_amount("12.5", usd), Ok(1250));
        assert_eq!(parse_amount("12", usd), Ok(1200));
        assert_eq!(parse_amount("0", usd), Ok(0));
        assert_eq!(parse_amount("007.01", usd), Ok(701));
        assert_eq!(parse_amount("1000", krw), Ok(1000));
        assert_eq!(parse_amount("0.001", bhd), Ok(1));
        assert_eq!(parse_amount("1.2345", clf), Ok(12345));
        assert_eq!(parse_amount("12.505", usd), Err(AmountError::TooPrecise { alpha: "USD", minor_units: 2 }));
        assert_eq!(parse_amount("10.5", krw), Err(AmountError::TooPrecise { alpha: "KRW", minor_units: 0 }));
        assert_eq!(parse_amount("10.0", krw), Err(AmountError::TooPrecise { alpha: "KRW", minor_units: 0 }));
        assert_eq!(parse_amount("", usd), Err(AmountError::Empty));
        for bad in
            ["-1", "+1", "1e3", "1E3", ".", "12.", ".5", "1.2.3", "1,000", " 1", "1 ", "0x10", "١٢", "NaN", "inf"]
        {
            assert_eq!(parse_amount(bad, usd), Err(AmountError::NotDecimal), "{bad:?}");
        }
    }

    #[test]
    fn overflow() {
        let (usd, krw) = (cur("USD"), cur("KRW"));
        assert_eq!(parse_amount("9223372036854775807", krw), Ok(i64::MAX as u64));
        assert_eq!(parse_amount("9223372036854775808", krw), Err(AmountError::Overflow));
        assert_eq!(parse_amount("92233720368547758.07", usd), Ok(i64::MAX as u64));
        assert_eq!(parse_amount("92233720368547758.08", usd), Err(AmountError::Overflow));
        assert_eq!(parse_amount("184467440737095516160", krw), Err(AmountError::Overflow));
        assert_eq!(parse_amount(&"9".repeat(400), usd), Err(AmountError::Overflow));
        assert_eq!(parse_amount(&format!("{}1", "0".repeat(400)), krw), Ok(1));
    }

    #[test]
    fn format_amounts_round_trip() {
        assert_eq!(format_amount(1250, cur("USD")), "12.50 USD");
        assert_eq!(format_amount(5, cur("USD")), "0.05 USD");
        assert_eq!(format_amount(1000, cur("KRW")), "1000 KRW");
        assert_eq!(format_amount(1, cur("BHD")), "0.001 BHD");
        assert_eq!(format_amount(12345, cur("CLF")), "1.2345 CLF");
        assert_eq!(format_amount(u64::MAX, cur("USD")), "184467440737095516.15 USD");
        for c in all() {
            for minor in [0, 1, 9, 10, 99, 100, 1250, 123_456_789, i64::MAX as u64] {
                let text = format_amount(minor, c);
                let number = text.strip_suffix(&format!(" {}", c.alpha)).unwrap();
                assert_eq!(parse_amount(number, c), Ok(minor), "{text}");
            }
        }
    }
}
