//! Money as integers, so sums never drift: prices in micro-dollars per
//! million tokens, costs in pico-dollars (10⁻¹² USD), which is exactly one
//! token at a price with six decimals.

use super::Tokens;

/// USD per million tokens, exact to six decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    input: u64,
    output: u64,
    cached_input: u64,
}

/// Pico-dollars one million tokens may cost at most (a million dollars): a
/// typo in a price must not overflow every sum.
const MAX_MICROS_PER_MTOK: u64 = 1_000_000 * 1_000_000;

impl Price {
    /// From USD per million tokens; `cached_input` defaults to `input`.
    /// `Err` names what is wrong with a figure (negative, not finite, too large).
    pub fn per_mtok(input: f64, output: f64, cached_input: Option<f64>) -> Result<Self, String> {
        let micros = |usd: f64| -> Result<u64, String> {
            if !usd.is_finite() || usd < 0.0 {
                return Err(format!("{usd} is not a price (USD per million tokens, 0 or more)"));
            }
            let micros = (usd * 1e6).round();
            if micros > MAX_MICROS_PER_MTOK as f64 {
                return Err(format!("{usd} USD per million tokens is more than this gateway accounts for"));
            }
            Ok(micros as u64)
        };
        let input = micros(input)?;
        Ok(Self {
            input,
            output: micros(output)?,
            cached_input: cached_input.map(micros).transpose()?.unwrap_or(input),
        })
    }

    /// What `tokens` cost: cached prompt tokens at their price, the rest of
    /// the prompt at the input price, the completion at the output price.
    pub fn cost(&self, tokens: &Tokens) -> Cost {
        let cached = tokens.cached_input.min(tokens.input);
        let fresh = tokens.input - cached;
        let picos = (fresh as u128 * self.input as u128)
            + (cached as u128 * self.cached_input as u128)
            + (tokens.output as u128 * self.output as u128);
        Cost(u64::try_from(picos).unwrap_or(u64::MAX))
    }
}

/// An amount in pico-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Cost(pub u64);

impl Cost {
    /// From whole pico-dollars.
    pub fn from_picos(picos: u64) -> Self {
        Self(picos)
    }

    /// From dollars (a budget's `usd`), rounded to the pico-dollar.
    pub fn from_usd(usd: f64) -> Self {
        Self((usd.max(0.0) * 1e12).round().min(u64::MAX as f64) as u64)
    }

    /// Pico-dollars.
    pub fn picos(self) -> u64 {
        self.0
    }

    /// The sum, saturating.
    pub fn plus(self, other: Cost) -> Cost {
        Cost(self.0.saturating_add(other.0))
    }

    /// Dollars as a JSON number: the exact decimal, parsed once at the end.
    pub fn usd(self) -> serde_json::Number {
        let text = self.to_string();
        text.parse::<serde_json::Number>().unwrap_or_else(|_| serde_json::Number::from(0))
    }
}

impl std::fmt::Display for Cost {
    /// Dollars in decimal, without trailing zeros (`0.00002`, `3`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, frac) = (self.0 / 1_000_000_000_000, self.0 % 1_000_000_000_000);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let frac = format!("{frac:012}");
        write!(f, "{whole}.{}", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_add_up_exactly_where_floats_drift() {
        // $0.10 per million output tokens; three calls of a million each.
        let price = Price::per_mtok(0.0, 0.1, None).unwrap();
        let call = price.cost(&Tokens { output: 1_000_000, ..Tokens::default() });
        let sum = call.plus(call).plus(call);
        assert_eq!(sum.to_string(), "0.3");
        assert_ne!(0.1_f64 + 0.1 + 0.1, 0.3, "what a float sum would have said");
        assert_eq!(sum.usd().to_string(), "0.3");
    }

    #[test]
    fn cached_prompt_tokens_are_priced_apart_from_the_rest() {
        let price = Price::per_mtok(2.5, 10.0, Some(1.25)).unwrap();
        let tokens = Tokens { input: 1000, cached_input: 400, output: 100, reasoning: 50 };
        // 600 × 2.5 + 400 × 1.25 + 100 × 10 micro-dollars = 3000 µ$ = $0.003
        assert_eq!(price.cost(&tokens).to_string(), "0.003");
        let same = Price::per_mtok(2.5, 10.0, None).unwrap();
        assert_eq!(same.cost(&tokens).to_string(), "0.0035", "without a cached price, the input price");
    }

    #[test]
    fn prices_that_cannot_be_are_refused() {
        assert!(Price::per_mtok(-1.0, 0.0, None).is_err());
        assert!(Price::per_mtok(f64::NAN, 0.0, None).is_err());
        assert!(Price::per_mtok(0.0, 1e13, None).is_err());
        assert_eq!(Cost::from_usd(0.5).to_string(), "0.5");
        assert_eq!(Cost::from_picos(1).to_string(), "0.000000000001");
    }
}
