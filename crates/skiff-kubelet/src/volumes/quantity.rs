//! Exact arithmetic on resource quantities (`250m`, `1Gi`, `1e3`), as the downward API and
//! tmpfs size limits need it.
//!
//! Floating point is not good enough here: `ceil(memory / divisor)` must give the same
//! integer upstream's `resource.Quantity` gives, so a quantity is kept as a fraction.

/// A parsed quantity: `num / den`, with `den > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    num: i128,
    den: i128,
}

impl Quantity {
    /// Parse the Kubernetes quantity syntax: an optionally signed decimal number followed by
    /// a binary (`Ki`..`Ei`), decimal SI (`n`, `u`, `m`, `k`, `M`..`E`) or exponent (`e3`)
    /// suffix. `None` when the text is not a quantity or too large to hold exactly.
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let (neg, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(end);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return None;
        }
        let digits = format!("{int}{frac}");
        let mut num: i128 = digits.parse().ok()?;
        let mut den: i128 = 10i128.checked_pow(frac.len() as u32)?;
        let (mul, div): (i128, i128) = match suffix {
            "" => (1, 1),
            "n" => (1, 1_000_000_000),
            "u" => (1, 1_000_000),
            "m" => (1, 1_000),
            "k" => (1_000, 1),
            "M" => (1_000_000, 1),
            "G" => (1_000_000_000, 1),
            "T" => (10i128.pow(12), 1),
            "P" => (10i128.pow(15), 1),
            "E" => (10i128.pow(18), 1),
            "Ki" => (1 << 10, 1),
            "Mi" => (1 << 20, 1),
            "Gi" => (1 << 30, 1),
            "Ti" => (1 << 40, 1),
            "Pi" => (1 << 50, 1),
            "Ei" => (1 << 60, 1),
            e if e.starts_with(['e', 'E']) => {
                let exp: i32 = e[1..].parse().ok()?;
                let p = 10i128.checked_pow(exp.unsigned_abs())?;
                if exp >= 0 {
                    (p, 1)
                } else {
                    (1, p)
                }
            }
            _ => return None,
        };
        num = num.checked_mul(mul)?;
        den = den.checked_mul(div)?;
        if neg {
            num = -num;
        }
        Some(Quantity { num, den })
    }

    /// The value rounded up to an integer (upstream's `Quantity.Value()`).
    pub fn value(&self) -> i128 {
        div_ceil(self.num, self.den)
    }

    /// The value in thousandths, rounded up (upstream's `Quantity.MilliValue()`).
    pub fn milli_value(&self) -> i128 {
        div_ceil(self.num.saturating_mul(1000), self.den)
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.num == 0
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && ((a > 0) == (b > 0)) {
        q + 1
    } else {
        q
    }
}

/// `ceil(a / b)` of two integers as upstream's `int64(math.Ceil(float64(a) / float64(b)))`
/// computes it, without the float rounding; `None` when `b` is zero.
pub fn ceil_ratio(a: i128, b: i128) -> Option<i128> {
    (b != 0).then(|| div_ceil(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        assert_eq!(Quantity::parse("1Gi").unwrap().value(), 1 << 30);
        assert_eq!(Quantity::parse("500M").unwrap().value(), 500_000_000);
        assert_eq!(Quantity::parse("250m").unwrap().milli_value(), 250);
        assert_eq!(Quantity::parse("250m").unwrap().value(), 1, "value rounds up");
        assert_eq!(Quantity::parse("1.5").unwrap().milli_value(), 1500);
        assert_eq!(Quantity::parse("1e3").unwrap().value(), 1000);
        assert_eq!(Quantity::parse("12000n").unwrap().milli_value(), 1, "0.012m rounds up to 1m");
        assert_eq!(Quantity::parse("0").unwrap().value(), 0);
        assert!(Quantity::parse("0").unwrap().is_zero());
        assert_eq!(Quantity::parse("-1k").unwrap().value(), -1000);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "Gi", "1.2.3", "1x", "1 Gi", "."] {
            assert!(Quantity::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn ceil_ratio_rounds_up() {
        assert_eq!(ceil_ratio(1, 2), Some(1));
        assert_eq!(ceil_ratio(4, 2), Some(2));
        assert_eq!(ceil_ratio(0, 2), Some(0));
        assert_eq!(ceil_ratio(1, 0), None);
    }
}
