//! Kubernetes resource quantities (`20Gi`, `500m`, `1e3`): parsed only far
//! enough to refuse malformed or non-positive sizes and requests above limits
//! before the API server refuses the pods the StatefulSet creates (an error a
//! user would only find in the StatefulSet's events).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Why a quantity is not one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantityError {
    /// Not `<number><suffix>` with a known suffix.
    #[error("{value:?} is not a quantity: use a number with an optional suffix such as 500m, 2, 512Mi, 20Gi or 1e9")]
    Parse {
        /// The text that failed to parse.
        value: String,
    },
}

/// The value of a quantity as a float (bytes for sizes, cores for CPU).
/// Precision beyond `f64` is irrelevant for the comparisons made here.
pub fn parse(quantity: &Quantity) -> Result<f64, QuantityError> {
    let text = quantity.0.as_str();
    let err = || QuantityError::Parse {
        value: text.to_string(),
    };
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'-') => (-1.0, &text[1..]),
        Some(b'+') => (1.0, &text[1..]),
        _ => (1.0, text),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err());
    }
    let mantissa: f64 = number.parse().map_err(|_| err())?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let digits = &exp[1..];
            let unsigned = digits.trim_start_matches(['+', '-']);
            if unsigned.is_empty()
                || !unsigned.bytes().all(|b| b.is_ascii_digit())
                || digits.len() - unsigned.len() > 1
            {
                return Err(err());
            }
            let e: i32 = digits.parse().map_err(|_| err())?;
            10f64.powi(e)
        }
        _ => return Err(err()),
    };
    Ok(sign * mantissa * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<f64, QuantityError> {
        parse(&Quantity(s.to_string()))
    }

    #[test]
    fn parses_the_kubernetes_forms() {
        assert_eq!(q("20Gi").unwrap(), 20.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(q("500m").unwrap(), 0.5);
        assert_eq!(q("2").unwrap(), 2.0);
        assert_eq!(q("1.5").unwrap(), 1.5);
        assert_eq!(q(".5").unwrap(), 0.5);
        assert_eq!(q("1e3").unwrap(), 1000.0);
        assert_eq!(q("1E-3").unwrap(), 0.001);
        assert_eq!(q("1E").unwrap(), 1e18);
        assert_eq!(q("128974848").unwrap(), 128_974_848.0);
        assert_eq!(q("129M").unwrap(), 129e6);
        assert_eq!(q("-1").unwrap(), -1.0);
        assert!(q("1Gi").unwrap() > q("1G").unwrap());
    }

    #[test]
    fn refuses_malformed_quantities() {
        for bad in [
            "", "Gi", "20GB", "20 Gi", "1.2.3", ".", "ten", "1e", "1e+-3", "1x",
        ] {
            assert!(q(bad).is_err(), "{bad:?} parsed");
        }
        assert!(q("20GB").unwrap_err().to_string().contains("20Gi"));
    }
}
