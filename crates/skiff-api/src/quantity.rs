//! Kubernetes `resource.Quantity`: parsing, comparison, arithmetic and canonical formatting.
//!
//! A quantity is a signed decimal number with a suffix: decimal SI (`n u m "" k M G T P E`),
//! binary SI (`Ki Mi Gi Ti Pi Ei`) or a decimal exponent (`e3`, `E-2`). Values are kept as an
//! exact decimal (digits plus a power-of-ten exponent) so that nothing is lost between parse
//! and print, and are rounded *up* to the nearest nano unit on parse, as upstream does (if you
//! ask for some resource you get at least the smallest representable amount).
//!
//! Canonical formatting follows upstream: `1000m` prints as `1`, `0.5` as `500m`, `1024Mi` as
//! `1Gi`, `1.5Gi` as `1536Mi`, `1500000` as `1500k`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a string is not a quantity. Messages match upstream's so that they can be returned in
/// 400/422 responses unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string does not have the shape `<number><suffix>`.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    FormatWrong,
    /// The suffix is not one of the known decimal, binary or exponent suffixes.
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// The number part could not be represented (for example an absurdly large exponent).
    #[error("unable to parse numeric part of quantity")]
    Numeric,
}

/// How a quantity prints; it is the format of the suffix it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Decimal SI suffixes (`m`, `k`, `M`, ...), also used for bare numbers.
    #[default]
    DecimalSI,
    /// Binary SI suffixes (`Ki`, `Mi`, ...).
    BinarySI,
    /// Exponent notation (`1e3`).
    DecimalExponent,
}

/// Largest decimal magnitude (in digits before the decimal point) accepted on parse. Upstream
/// accepts arbitrary precision, but nothing real comes close and an unbounded exponent would
/// let a client make the server materialise gigabytes of digits.
const MAX_INTEGER_DIGITS: i64 = 400;

/// Parse-time rounding unit: upstream keeps at most nine fractional digits.
const NANO_EXP: i64 = -9;

/// A Kubernetes resource quantity such as `100m`, `1Gi` or `1.5e3`.
///
/// Equality and ordering compare numeric values; the format only affects printing.
#[derive(Debug, Clone, Default)]
pub struct Quantity {
    negative: bool,
    /// Decimal digits, most significant first, with no leading or trailing zeros; empty
    /// means zero.
    digits: Vec<u8>,
    /// The value is `digits * 10^exp`.
    exp: i64,
    format: Format,
}

impl Quantity {
    /// Parses a quantity the way upstream's `resource.ParseQuantity` does.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        parse(s)
    }

    /// A quantity of `value` whole units in the given format.
    pub fn from_value(value: i64, format: Format) -> Quantity {
        Quantity::from_scaled(value as i128, 0, format)
    }

    /// A quantity of `milli` thousandths of a unit in the given format.
    pub fn from_milli(milli: i64, format: Format) -> Quantity {
        Quantity::from_scaled(milli as i128, -3, format)
    }

    fn from_scaled(value: i128, exp: i64, format: Format) -> Quantity {
        let digits = value
            .unsigned_abs()
            .to_string()
            .bytes()
            .map(|b| b - b'0')
            .collect();
        let mut q = Quantity {
            negative: value < 0,
            digits,
            exp,
            format,
        };
        q.normalize();
        q
    }

    /// The zero quantity.
    pub fn zero() -> Quantity {
        Quantity::default()
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative && !self.is_zero()
    }

    /// The format the quantity prints in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The value in thousandths of a unit, rounded up and saturated to the `i64` range
    /// (upstream `MilliValue`); CPU is usually handled this way.
    pub fn milli_value(&self) -> i64 {
        self.scaled_ceil(3)
    }

    /// The value in whole units (bytes for memory), rounded up and saturated to the `i64`
    /// range (upstream `Value`).
    pub fn value(&self) -> i64 {
        self.scaled_ceil(0)
    }

    /// An approximate floating-point value, for ratios and scoring where exactness is not
    /// needed.
    pub fn as_f64(&self) -> f64 {
        let mut s = String::with_capacity(self.digits.len() + 8);
        if self.negative {
            s.push('-');
        }
        if self.digits.is_empty() {
            return 0.0;
        }
        s.extend(self.digits.iter().map(|d| (b'0' + d) as char));
        s.push('e');
        s.push_str(&self.exp.to_string());
        s.parse().unwrap_or(0.0)
    }

    /// `self + other`; the result keeps `self`'s format unless `self` is zero (as upstream's
    /// `Add` does).
    pub fn add(&self, other: &Quantity) -> Quantity {
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        let mut r = signed_add(self, other.negative, other);
        r.format = format;
        r
    }

    /// `self - other`, with the format rules of [`Quantity::add`].
    pub fn sub(&self, other: &Quantity) -> Quantity {
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        let mut r = signed_add(self, !other.negative, other);
        r.format = format;
        r
    }

    /// The negated quantity.
    pub fn neg(&self) -> Quantity {
        let mut q = self.clone();
        q.negative = !q.negative && !q.is_zero();
        q
    }

    /// Rounds the value up to `10^-places` and returns it times `10^places`, saturated.
    fn scaled_ceil(&self, places: i64) -> i64 {
        if self.is_zero() {
            return 0;
        }
        let exp = self.exp + places;
        let len = self.digits.len() as i64;
        if len + exp > 19 {
            return if self.negative { i64::MIN } else { i64::MAX };
        }
        let (int_digits, has_fraction) = if exp >= 0 {
            (self.digits.clone(), false)
        } else {
            let keep = (len + exp).max(0) as usize;
            (self.digits[..keep].to_vec(), true)
        };
        let mut v: i128 = 0;
        for d in int_digits {
            v = v * 10 + d as i128;
        }
        for _ in 0..exp.max(0) {
            v *= 10;
        }
        if self.negative {
            v = -v;
        } else if has_fraction {
            // Trailing zeros are stripped, so any dropped digit means a non-zero fraction.
            v += 1;
        }
        v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Strips leading and trailing zeros so that equal values have one representation.
    fn normalize(&mut self) {
        let lead = self.digits.iter().take_while(|d| **d == 0).count();
        self.digits.drain(..lead);
        while self.digits.last() == Some(&0) {
            self.digits.pop();
            self.exp += 1;
        }
        if self.digits.is_empty() {
            self.exp = 0;
            self.negative = false;
        }
    }

    /// Rounds the magnitude up to a whole number of nano units.
    fn round_to_nano(&mut self) {
        if self.is_zero() || self.exp >= NANO_EXP {
            return;
        }
        let drop = (NANO_EXP - self.exp) as usize;
        if drop >= self.digits.len() {
            self.digits = vec![1];
        } else {
            self.digits.truncate(self.digits.len() - drop);
            increment(&mut self.digits);
        }
        self.exp = NANO_EXP;
        self.normalize();
    }

    /// The magnitude as an unsigned integer if it is whole and fits.
    fn whole_u128(&self) -> Option<u128> {
        if self.exp < 0 || self.digits.len() as i64 + self.exp > 38 {
            return None;
        }
        let mut v: u128 = 0;
        for d in &self.digits {
            v = v * 10 + *d as u128;
        }
        for _ in 0..self.exp {
            v *= 10;
        }
        Some(v)
    }

    fn cmp_magnitude(&self, other: &Quantity) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let a = self.digits.len() as i64 + self.exp;
        let b = other.digits.len() as i64 + other.exp;
        if a != b {
            return a.cmp(&b);
        }
        let n = self.digits.len().max(other.digits.len());
        for i in 0..n {
            let x = self.digits.get(i).copied().unwrap_or(0);
            let y = other.digits.get(i).copied().unwrap_or(0);
            if x != y {
                return x.cmp(&y);
            }
        }
        Ordering::Equal
    }

    /// Canonical decimal rendering: mantissa digits and an exponent that is a multiple of 3.
    fn decimal_parts(&self) -> (String, i64) {
        let mut digits: String = self.digits.iter().map(|d| (b'0' + d) as char).collect();
        let r = self.exp.rem_euclid(3);
        for _ in 0..r {
            digits.push('0');
        }
        (digits, self.exp - r)
    }
}

/// Adds one to a big-endian decimal digit vector.
fn increment(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == 9 {
            *d = 0;
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, 1);
}

/// Digits of `q` padded with zeros to exponent `exp` (which must be <= q.exp), least
/// significant first.
fn aligned_le(q: &Quantity, exp: i64) -> Vec<u8> {
    let mut v: Vec<u8> = vec![0; (q.exp - exp) as usize];
    v.extend(q.digits.iter().rev());
    v
}

/// `a + (-1)^b_negative * |b|`.
fn signed_add(a: &Quantity, b_negative: bool, b: &Quantity) -> Quantity {
    if b.is_zero() {
        return a.clone();
    }
    if a.is_zero() {
        let mut r = b.clone();
        r.negative = b_negative;
        return r;
    }
    let exp = a.exp.min(b.exp);
    let x = aligned_le(a, exp);
    let y = aligned_le(b, exp);
    let (negative, digits_le) = if a.negative == b_negative {
        (a.negative, add_le(&x, &y))
    } else {
        match a.cmp_magnitude(b) {
            Ordering::Equal => return Quantity::zero(),
            Ordering::Greater => (a.negative, sub_le(&x, &y)),
            Ordering::Less => (b_negative, sub_le(&y, &x)),
        }
    };
    let mut r = Quantity {
        negative,
        digits: digits_le.into_iter().rev().collect(),
        exp,
        format: a.format,
    };
    r.normalize();
    r
}

fn add_le(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len().max(y.len()) + 1);
    let mut carry = 0;
    for i in 0..x.len().max(y.len()) {
        let s = x.get(i).copied().unwrap_or(0) + y.get(i).copied().unwrap_or(0) + carry;
        out.push(s % 10);
        carry = s / 10;
    }
    if carry > 0 {
        out.push(carry);
    }
    out
}

/// `x - y` for little-endian digit vectors with `x >= y`.
fn sub_le(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len());
    let mut borrow = 0i8;
    for (i, xd) in x.iter().enumerate() {
        let mut d = *xd as i8 - y.get(i).copied().unwrap_or(0) as i8 - borrow;
        borrow = 0;
        if d < 0 {
            d += 10;
            borrow = 1;
        }
        out.push(d as u8);
    }
    out
}

/// Multiplies a big-endian decimal digit vector by a small factor.
fn mul_small(digits: &[u8], factor: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(digits.len() + 10);
    let mut carry: u64 = 0;
    for d in digits.iter().rev() {
        let v = *d as u64 * factor as u64 + carry;
        out.push((v % 10) as u8);
        carry = v / 10;
    }
    while carry > 0 {
        out.push((carry % 10) as u8);
        carry /= 10;
    }
    out.reverse();
    out
}

/// Suffix table: (suffix, base, exponent). Base 10 exponents are powers of ten, base 2 are
/// powers of two.
const SUFFIXES: &[(&str, u32, i64)] = &[
    ("n", 10, -9),
    ("u", 10, -6),
    ("m", 10, -3),
    ("", 10, 0),
    ("k", 10, 3),
    ("M", 10, 6),
    ("G", 10, 9),
    ("T", 10, 12),
    ("P", 10, 15),
    ("E", 10, 18),
    ("Ki", 2, 10),
    ("Mi", 2, 20),
    ("Gi", 2, 30),
    ("Ti", 2, 40),
    ("Pi", 2, 50),
    ("Ei", 2, 60),
];

/// Interprets a suffix as (base, exponent, format).
fn interpret_suffix(suffix: &str) -> Option<(u32, i64, Format)> {
    if let Some((_, base, exp)) = SUFFIXES.iter().find(|(s, _, _)| *s == suffix) {
        let format = if *base == 2 {
            Format::BinarySI
        } else {
            Format::DecimalSI
        };
        return Some((*base, *exp, format));
    }
    let rest = suffix.strip_prefix(['e', 'E'])?;
    if rest.is_empty() {
        return None;
    }
    // Upstream truncates the parsed exponent to 32 bits; refuse instead of wrapping.
    let exp: i32 = rest.parse().ok()?;
    Some((10, exp as i64, Format::DecimalExponent))
}

/// Whether `suffix` has the shape upstream's scanner accepts: suffix letters, then an
/// optional sign, then digits. Anything else is a format error rather than a suffix error.
fn suffix_shape_ok(suffix: &str) -> bool {
    let rest = suffix.trim_start_matches(|c: char| "eEinumkKMGTP".contains(c));
    let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    rest.bytes().all(|b| b.is_ascii_digit())
}

fn parse(s: &str) -> Result<Quantity, QuantityError> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut negative = false;
    match bytes.first() {
        Some(b'-') => {
            negative = true;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        Some(_) => {}
        None => return Err(QuantityError::FormatWrong),
    }
    let int_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_part = &s[int_start..pos];
    let mut frac_part = "";
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_part = &s[frac_start..pos];
    }
    // Upstream's scanner quietly reads "", "." and "Mi" as zero; requiring a digit is stricter
    // and matches the regular expression it documents.
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(QuantityError::FormatWrong);
    }
    let suffix = &s[pos..];
    if !suffix_shape_ok(suffix) {
        return Err(QuantityError::FormatWrong);
    }
    let (base, exponent, format) = interpret_suffix(suffix).ok_or(QuantityError::Suffix)?;

    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .map(|b| b - b'0')
        .collect();
    let mut exp = -(frac_part.len() as i64);
    if base == 10 {
        exp += exponent;
    } else {
        // 2^exponent as repeated doubling by 1024 keeps the digit arithmetic small.
        for _ in 0..exponent / 10 {
            digits = mul_small(&digits, 1024);
        }
    }
    let mut q = Quantity {
        negative,
        digits,
        exp,
        format,
    };
    q.normalize();
    if !q.is_zero() && q.digits.len() as i64 + q.exp > MAX_INTEGER_DIGITS {
        return Err(QuantityError::Numeric);
    }
    q.round_to_nano();
    if q.format == Format::BinarySI {
        // Upstream caps binary quantities at the largest int64.
        let max = Quantity::from_value(i64::MAX, Format::BinarySI);
        if q.cmp_magnitude(&max) == Ordering::Greater {
            let neg = q.negative;
            q = max;
            q.negative = neg;
        }
        // A fraction of a unit cannot be written with a binary suffix.
        if !q.is_zero() && q.digits.len() as i64 + q.exp <= 0 {
            q.format = Format::DecimalSI;
        }
    }
    Ok(q)
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl fmt::Display for Quantity {
    /// Canonical form, as upstream's `Quantity.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        let sign = if self.negative { "-" } else { "" };
        if self.format == Format::BinarySI {
            // Below 1024 or with a fraction, binary suffixes would need rounding; upstream
            // falls back to decimal there.
            if let Some(mut v) = self.whole_u128().filter(|v| *v >= 1024) {
                let mut i = 0;
                while i < 6 && v % 1024 == 0 {
                    v /= 1024;
                    i += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
                return write!(f, "{sign}{v}{suffix}");
            }
        }
        let (digits, exp) = self.decimal_parts();
        let suffix = match self.format {
            Format::DecimalExponent if exp == 0 => String::new(),
            Format::DecimalExponent => format!("e{exp}"),
            // Outside n..E upstream has no suffix; exponent form keeps the value right.
            _ => SUFFIXES
                .iter()
                .find(|(_, b, e)| *b == 10 && *e == exp)
                .map(|(s, _, _)| s.to_string())
                .unwrap_or_else(|| format!("e{exp}")),
        };
        write!(f, "{sign}{digits}{suffix}")
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.is_negative(), other.is_negative()) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl std::hash::Hash for Quantity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Normalised representation is unique per value, so hashing it agrees with Eq.
        self.negative.hash(state);
        self.digits.hash(state);
        self.exp.hash(state);
    }
}

/// Parses a quantity from a JSON value: a string, or a bare number as upstream also accepts.
pub fn from_json(v: &serde_json::Value) -> Result<Quantity, QuantityError> {
    match v {
        // Upstream's JSON decoding trims surrounding whitespace; the parser itself does not.
        serde_json::Value::String(s) => parse(s.trim()),
        serde_json::Value::Number(n) => parse(&n.to_string()),
        _ => Err(QuantityError::FormatWrong),
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(deserializer)?;
        if v.is_null() {
            return Ok(Quantity::zero());
        }
        from_json(&v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    #[test]
    fn canonical_forms() {
        let cases = [
            ("0", "0"),
            ("0Mi", "0"),
            ("-0", "0"),
            ("1", "1"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("500m", "500m"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Ki", "512"),
            ("1536", "1536"),
            ("1Ki", "1Ki"),
            ("1023Ki", "1023Ki"),
            ("1500000", "1500k"),
            ("1000000", "1M"),
            ("100M", "100M"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("1E6", "1e6"),
            ("1e-3", "1e-3"),
            ("12e", "12"), // not a valid suffix: see the error test
            ("0.1m", "100u"),
            ("1n", "1n"),
            ("0.0000000001", "1n"),
            ("-1.5", "-1500m"),
            ("+2k", "2k"),
            ("1.", "1"),
            (".5", "500m"),
            ("007", "7"),
            ("1E", "1E"),
            ("1000E", "1e21"),
            ("100Gi", "100Gi"),
            ("2048Ei", "9223372036854775807"),
            ("9223372036854775807Ki", "9223372036854775807"),
            ("12E", "12E"),
            ("100.035k", "100035"),
            ("0.0005k", "500m"),
            ("10.035M", "10035k"),
            ("1.3E+6", "1300e3"),
            ("1.53E12", "1530e9"),
            ("8.1k", "8100"),
            ("6.987654321G", "6987654321"),
            ("3.001n", "4n"),
            ("1.1E-9", "2e-9"),
            ("0.00000012345", "124n"),
            ("100.035Ki", "102435840m"),
            ("0.5Mi", "512Ki"),
            ("1.G", "1G"),
            (".001Ki", "1024m"),
            (".000000000001Ki", "2n"),
            ("300Mi", "300Mi"),
            ("1001Gi", "1001Gi"),
            ("1025", "1025"),
            ("80e-3", "80e-3"),
            ("300e6", "300e6"),
        ];
        for (input, want) in cases.into_iter().filter(|(i, _)| *i != "12e") {
            assert_eq!(canon(input), want, "input {input}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(Quantity::parse(""), Err(QuantityError::FormatWrong));
        assert_eq!(Quantity::parse("abc"), Err(QuantityError::FormatWrong));
        assert_eq!(Quantity::parse("1 "), Err(QuantityError::FormatWrong));
        assert_eq!(Quantity::parse("1.2.3"), Err(QuantityError::FormatWrong));
        assert_eq!(Quantity::parse("12e"), Err(QuantityError::Suffix));
        assert_eq!(Quantity::parse("1ki"), Err(QuantityError::Suffix));
        assert_eq!(Quantity::parse("1K"), Err(QuantityError::Suffix));
        assert_eq!(Quantity::parse("1Mi3"), Err(QuantityError::Suffix));
        assert_eq!(Quantity::parse("1e999999"), Err(QuantityError::Numeric));
        for bad in [
            "1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01i", "-3.01e-", " 1",
            "1 ",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad} parsed");
        }
        assert_eq!(Quantity::parse("0Ki").unwrap().format(), Format::BinarySI);
        assert_eq!(
            Quantity::parse(".000000000001Ki").unwrap().format(),
            Format::DecimalSI
        );
        assert_eq!(
            QuantityError::Suffix.to_string(),
            "unable to parse quantity's suffix"
        );
    }

    #[test]
    fn values_and_rounding() {
        let q = Quantity::parse("100m").unwrap();
        assert_eq!(q.milli_value(), 100);
        assert_eq!(q.value(), 1); // rounds up
        assert_eq!(Quantity::parse("1Gi").unwrap().value(), 1 << 30);
        assert_eq!(Quantity::parse("2").unwrap().milli_value(), 2000);
        assert_eq!(Quantity::parse("1.0001m").unwrap().milli_value(), 2);
        assert_eq!(Quantity::parse("-1.5").unwrap().value(), -1);
        assert_eq!(Quantity::parse("1E").unwrap().milli_value(), i64::MAX);
        assert_eq!(Quantity::parse("1e-12").unwrap().to_string(), "1e-9");
        assert!((Quantity::parse("250m").unwrap().as_f64() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn comparison() {
        let p = |s: &str| Quantity::parse(s).unwrap();
        assert_eq!(p("1"), p("1000m"));
        assert_eq!(p("1Ki"), p("1024"));
        assert!(p("1Gi") > p("1G"));
        assert!(p("999m") < p("1"));
        assert!(p("-1") < p("0"));
        assert!(p("-2") < p("-1"));
        assert!(p("1e3") == p("1k"));
        assert!(p("0.1") > p("99m"));
    }

    #[test]
    fn arithmetic() {
        let p = |s: &str| Quantity::parse(s).unwrap();
        assert_eq!(p("100m").add(&p("900m")).to_string(), "1");
        assert_eq!(p("1Gi").add(&p("1Gi")).to_string(), "2Gi");
        assert_eq!(p("1").sub(&p("1500m")).to_string(), "-500m");
        assert_eq!(p("1Gi").sub(&p("1Gi")).to_string(), "0");
        assert_eq!(Quantity::zero().add(&p("1Mi")).format(), Format::BinarySI);
        assert_eq!(
            Quantity::from_milli(1500, Format::DecimalSI).to_string(),
            "1500m"
        );
        assert_eq!(
            Quantity::from_value(2048, Format::BinarySI).to_string(),
            "2Ki"
        );
        assert_eq!(p("3").neg().to_string(), "-3");
    }

    #[test]
    fn serde_round_trip() {
        let q: Quantity = serde_json::from_str("\"1024Mi\"").unwrap();
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"1Gi\"");
        let n: Quantity = serde_json::from_str("2.5").unwrap();
        assert_eq!(n.to_string(), "2500m");
        assert!(serde_json::from_str::<Quantity>("\"x\"").is_err());
        let t: Quantity = serde_json::from_str("\" 1 \"").unwrap();
        assert_eq!(t.to_string(), "1");
    }
}
