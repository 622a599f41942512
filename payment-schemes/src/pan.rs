//! Card numbers (ISO/IEC 7812-1, the paper's Fig. 1) and the brute force
//! behind one issuer prefix.
//!
//! A 16-digit PAN is a 6-digit IIN, a 9-digit account number and a Luhn check
//! digit: once the IIN is known (it is public, and DVCC even copies it into
//! the V-Card) a card number has 10^9 candidates, about 2^30. Any function
//! of the PAN alone, hashed or not, is inverted by trying them all. The
//! attacks search a restricted space holding the true PAN (known leading
//! digits) so a test ends in seconds, measure the rate, and extrapolate to
//! the whole space.

use std::time::{Duration, Instant};

/// Digits of a PAN.
pub const PAN_LEN: usize = 16;
/// Digits of an IIN.
pub const IIN_LEN: usize = 6;
/// log2 of the work below which an inversion counts as practical: 2^80
/// evaluations is the classic line of "computationally infeasible"
/// (NIST SP 800-57 retired 80-bit security in 2013, so this is generous).
pub const FEASIBLE_LOG2: f64 = 80.0;

/// The Luhn check digit (ASCII) for the 15 digits before it.
pub fn luhn_digit(body: &[u8]) -> u8 {
    // From the right, every other digit starting with the one next to the
    // check digit is doubled.
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d.wrapping_sub(b'0'));
            if i % 2 == 0 {
                let twice = d * 2;
                if twice > 9 {
                    twice - 9
                } else {
                    twice
                }
            } else {
                d
            }
        })
        .sum();
    b'0' + ((10 - sum % 10) % 10) as u8
}

pub fn is_luhn_valid(pan: &str) -> bool {
    let b = pan.as_bytes();
    !b.is_empty() && b.iter().all(u8::is_ascii_digit) && luhn_digit(&b[..b.len() - 1]) == b[b.len() - 1]
}

/// A random Luhn-valid 16-digit PAN under `iin`.
pub fn random_pan(iin: &str) -> String {
    let mut body = iin.to_owned();
    while body.len() < PAN_LEN - 1 {
        body.push(char::from(b'0' + rand::random::<u8>() % 10));
    }
    let check = luhn_digit(body.as_bytes());
    body.push(char::from(check));
    body
}

/// What the attacker searches: PANs starting with `pan_prefix` (at least the
/// IIN), and for schemes that mix in a PIN, PINs starting with `pin_prefix`.
#[derive(Debug, Clone)]
pub struct SearchSpace {
    pub pan_prefix: String,
    pub pin_prefix: String,
}

impl SearchSpace {
    /// The space the tests search: the true PAN's first 12 digits (1000
    /// candidates) and its PIN's first 2 digits (100).
    pub fn around(pan: &str, pin: &str) -> SearchSpace {
        SearchSpace { pan_prefix: pan[..12.min(pan.len())].to_owned(), pin_prefix: pin[..2.min(pin.len())].to_owned() }
    }

    /// [`SearchSpace::around`] the holder's PAN and PIN (the experiment's
    /// scaffolding: the attacker never reads the secrets, the known prefix
    /// only shortens the search the extrapolation stands for).
    pub fn for_holder(secrets: &crate::HolderSecrets) -> SearchSpace {
        let pin = secrets.reusable.iter().find(|(name, _)| name == "PIN").map(|(_, v)| v.as_slice());
        let pin = pin.and_then(|p| std::str::from_utf8(p).ok()).unwrap_or("0000");
        SearchSpace::around(&secrets.pan, pin)
    }

    /// Every Luhn-valid PAN with the prefix, as ASCII digits.
    pub fn pans(&self) -> impl Iterator<Item = [u8; PAN_LEN]> + '_ {
        let unknown = (PAN_LEN - 1).saturating_sub(self.pan_prefix.len());
        let count = 10u64.pow(unknown as u32);
        let prefix = self.pan_prefix.as_bytes();
        (0..count).map(move |n| {
            let mut pan = [b'0'; PAN_LEN];
            let known = prefix.len().min(PAN_LEN - 1);
            pan[..known].copy_from_slice(&prefix[..known]);
            let mut rest = n;
            for slot in pan[known..PAN_LEN - 1].iter_mut().rev() {
                *slot = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            pan[PAN_LEN - 1] = luhn_digit(&pan[..PAN_LEN - 1]);
            pan
        })
    }

    /// Every 4-digit PIN with the prefix.
    pub fn pins(&self) -> impl Iterator<Item = [u8; 4]> + '_ {
        let unknown = 4usize.saturating_sub(self.pin_prefix.len());
        let prefix = self.pin_prefix.as_bytes();
        (0..10u32.pow(unknown as u32)).map(move |n| {
            let mut pin = [b'0'; 4];
            let known = prefix.len().min(4);
            pin[..known].copy_from_slice(&prefix[..known]);
            let mut rest = n;
            for slot in pin[known..].iter_mut().rev() {
                *slot = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            pin
        })
    }
}

/// log2 of the account numbers behind one IIN (10^9).
pub fn pans_per_iin_log2() -> f64 {
    (10f64).powi((PAN_LEN - 1 - IIN_LEN) as i32).log2()
}

/// The result of trying to get the card number back.
#[derive(Debug, Clone)]
pub struct Inversion {
    /// What was inverted, in the paper's notation.
    pub target: String,
    /// The card number found in the restricted space.
    pub recovered: Option<String>,
    /// Candidates tried in the restricted space, and how long it took.
    pub tried: u64,
    pub elapsed: Duration,
    /// log2 of the evaluations over the whole space the attacker faces
    /// (one IIN, every secret it lacks). None: nothing to invert.
    pub full_work_log2: Option<f64>,
    /// Why it could not be tried, or what made it cheap.
    pub note: String,
}

impl Inversion {
    /// Nothing to invert in this source.
    pub fn not_applicable(note: impl Into<String>) -> Inversion {
        Inversion {
            target: String::new(),
            recovered: None,
            tried: 0,
            elapsed: Duration::ZERO,
            full_work_log2: None,
            note: note.into(),
        }
    }

    /// Inverting needs a key the attacker does not hold: its size is the work.
    pub fn needs_key(target: &str, key: &str, bits: u32) -> Inversion {
        Inversion {
            target: target.to_owned(),
            recovered: None,
            tried: 0,
            elapsed: Duration::ZERO,
            full_work_log2: Some(f64::from(bits)),
            note: format!("needs {key} ({bits} bits), which the attacker does not hold"),
        }
    }

    /// Candidates per second in the restricted search.
    pub fn rate(&self) -> Option<f64> {
        let secs = self.elapsed.as_secs_f64();
        (self.tried > 0 && secs > 0.0).then(|| self.tried as f64 / secs)
    }

    /// Seconds for the whole space at the measured rate, one core.
    pub fn extrapolated_secs(&self) -> Option<f64> {
        Some(2f64.powf(self.full_work_log2?) / self.rate()?)
    }

    /// Whether this inversion breaks one-wayness: the card number came back
    /// and the whole space is within practical reach.
    pub fn breaks(&self, pan: &str) -> bool {
        self.recovered.as_deref() == Some(pan) && self.full_work_log2.is_some_and(|w| w < FEASIBLE_LOG2)
    }

    /// One line for the table notes.
    pub fn describe(&self) -> String {
        let mut s = self.target.clone();
        if let Some(w) = self.full_work_log2 {
            s.push_str(&format!(": 2^{w:.1} evaluations"));
        }
        if let (Some(rate), Some(t)) = (self.rate(), self.extrapolated_secs()) {
            s.push_str(&format!(" at {} /s = {} on one core", si(rate), human_secs(t)));
        }
        if let Some(pan) = &self.recovered {
            s.push_str(&format!("; recovered {} in {} tries", mask(pan), self.tried));
        }
        if !self.note.is_empty() {
            s.push_str(&format!(" ({})", self.note));
        }
        s
    }
}

/// Runs `hit` on every candidate until it says yes.
pub fn search<C>(candidates: impl Iterator<Item = C>, mut hit: impl FnMut(&C) -> bool) -> (Option<C>, u64, Duration) {
    let start = Instant::now();
    let mut tried = 0u64;
    for c in candidates {
        tried += 1;
        if hit(&c) {
            return (Some(c), tried, start.elapsed());
        }
    }
    (None, tried, start.elapsed())
}

/// A PAN as printed in reports: IIN and last four only.
pub fn mask(pan: &str) -> String {
    if pan.len() < 10 {
        return pan.to_owned();
    }
    format!("{}******{}", &pan[..6], &pan[pan.len() - 4..])
}

fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// A duration in the largest sensible unit.
pub fn human(d: Duration) -> String {
    human_secs(d.as_secs_f64())
}

/// Seconds, however many, in the largest sensible unit.
pub fn human_secs(s: f64) -> String {
    const YEAR: f64 = 365.25 * 86400.0;
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 3.0 * 86400.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s < YEAR {
        format!("{:.0} days", s / 86400.0)
    } else if s < 1e6 * YEAR {
        format!("{:.0} years", s / YEAR)
    } else {
        format!("10^{:.0} years", (s / YEAR).log10())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_matches_known_numbers() {
        assert!(is_luhn_valid("4111111111111111"));
        assert!(is_luhn_valid("5555555555554444"));
        assert!(!is_luhn_valid("4111111111111112"));
        assert!(is_luhn_valid(&random_pan("999999")));
    }

    #[test]
    fn the_space_holds_the_pan_and_only_valid_numbers() {
        let pan = random_pan("400000");
        let space = SearchSpace::around(&pan, "1234");
        let all: Vec<String> = space.pans().map(|p| String::from_utf8(p.to_vec()).unwrap()).collect();
        assert_eq!(all.len(), 1000);
        assert!(all.contains(&pan));
        assert!(all.iter().all(|p| is_luhn_valid(p)));
        assert_eq!(space.pins().count(), 100);
        assert!(space.pins().any(|p| &p == b"1234"));
        assert!((pans_per_iin_log2() - 29.9).abs() < 0.1);
    }
}

/// The paper's H(R-Card) (SHA-256 of the PAN's digits) inverted by brute
/// force: a timed run over one IIN's candidates for the rate, and a real
/// inversion of one card number with its first `known` digits given.
#[derive(Debug, Clone)]
pub struct BruteForce {
    pub iin: String,
    pub hashes: u64,
    pub elapsed: Duration,
    /// The example: the PAN, what was found, and the candidates it took.
    pub pan: String,
    pub known: usize,
    pub recovered: Option<String>,
    pub tried: u64,
    pub inversion_time: Duration,
}

impl BruteForce {
    /// Hashes per second, one core.
    pub fn rate(&self) -> f64 {
        self.hashes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The 10^9 candidates of one IIN at that rate, on `cores` cores.
    pub fn whole_iin(&self, cores: usize) -> Duration {
        Duration::from_secs_f64(2f64.powf(pans_per_iin_log2()) / self.rate() / cores.max(1) as f64)
    }
}

/// Runs the measurement for about `budget`, then inverts a random PAN whose
/// first `known` digits are given.
pub fn brute_force_unkeyed(budget: Duration, known: usize) -> BruteForce {
    use sha2::{Digest, Sha256};
    let iin = "400000".to_owned();
    // The timed run: candidates behind the IIN in order, as an attacker would.
    let space = SearchSpace { pan_prefix: iin.clone(), pin_prefix: String::new() };
    let target = [0u8; 32]; // never matches: the run is for the rate
    let start = Instant::now();
    let mut hashes = 0u64;
    for p in space.pans() {
        if Sha256::digest(p).as_slice() == target {
            break;
        }
        hashes += 1;
        if hashes.is_multiple_of(4096) && start.elapsed() >= budget {
            break;
        }
    }
    let elapsed = start.elapsed();
    let pan = random_pan(&iin);
    let stored: [u8; 32] = Sha256::digest(pan.as_bytes()).into();
    let example =
        SearchSpace { pan_prefix: pan[..known.clamp(IIN_LEN, PAN_LEN - 1)].to_owned(), pin_prefix: String::new() };
    let (hit, tried, inversion_time) = search(example.pans(), |p| Sha256::digest(p).as_slice() == stored);
    BruteForce {
        iin,
        hashes,
        elapsed,
        pan: pan.clone(),
        known,
        recovered: hit.map(|p| String::from_utf8_lossy(&p).into_owned()),
        tried,
        inversion_time,
    }
}

#[cfg(test)]
mod brute_force_tests {
    use super::*;

    /// Correctness only: the rate is printed, never asserted.
    #[test]
    fn the_unkeyed_hash_of_a_card_number_is_inverted() {
        let b = brute_force_unkeyed(Duration::from_millis(200), 12);
        println!("{:.2e} hashes/s, whole IIN {} on one core", b.rate(), human(b.whole_iin(1)));
        assert!(b.hashes > 0);
        assert_eq!(b.recovered.as_deref(), Some(b.pan.as_str()), "{b:?}");
        assert!(b.tried <= 1000);
    }
}
