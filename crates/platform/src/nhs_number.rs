//! NHS numbers: ten digits with a modulus-11 check digit.

/// Why an NHS number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NhsNumberError {
    /// A character other than a digit, space or dash.
    BadCharacter,
    /// Not ten digits once spaces and dashes are removed.
    WrongLength,
    /// The tenth digit is not the modulus-11 check digit (or the check is 10).
    CheckDigit,
}

impl NhsNumberError {
    pub fn description(self) -> &'static str {
        match self {
            NhsNumberError::BadCharacter => "must contain only digits, spaces and dashes",
            NhsNumberError::WrongLength => "must be ten digits",
            NhsNumberError::CheckDigit => "fails the modulus-11 check",
        }
    }
}

/// The ten digits of `raw` with spaces and dashes removed, without checking the check digit.
pub fn digits(raw: &str) -> Result<String, NhsNumberError> {
    let mut out = String::with_capacity(10);
    for c in raw.trim().chars() {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '-' => {}
            _ => return Err(NhsNumberError::BadCharacter),
        }
    }
    if out.len() != 10 {
        return Err(NhsNumberError::WrongLength);
    }
    Ok(out)
}

/// The normalised NHS number (ten digits) if `raw` is valid, check digit included.
pub fn normalise(raw: &str) -> Result<String, NhsNumberError> {
    let number = digits(raw)?;
    let bytes = number.as_bytes();
    if check_digit(&bytes[..9]) != Some(bytes[9] - b'0') {
        return Err(NhsNumberError::CheckDigit);
    }
    Ok(number)
}

/// The check digit of nine ASCII digits, or `None` when the remainder gives 10 (no valid number).
pub fn check_digit(first_nine: &[u8]) -> Option<u8> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        check => Some(check as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_numbers_are_normalised() {
        assert_eq!(normalise("9434765919").unwrap(), "9434765919");
        assert_eq!(normalise("943 476 5919").unwrap(), "9434765919");
        assert_eq!(normalise("943-476-5919").unwrap(), "9434765919");
        assert_eq!(normalise(" 4010232137 ").unwrap(), "4010232137");
    }

    #[test]
    fn invalid_numbers_are_refused_with_the_reason() {
        assert_eq!(normalise("9434765918"), Err(NhsNumberError::CheckDigit));
        assert_eq!(normalise("943476591"), Err(NhsNumberError::WrongLength));
        assert_eq!(normalise("94347659190"), Err(NhsNumberError::WrongLength));
        assert_eq!(normalise("943476591O"), Err(NhsNumberError::BadCharacter));
        assert_eq!(normalise("943.476.5919"), Err(NhsNumberError::BadCharacter));
        assert_eq!(normalise(""), Err(NhsNumberError::WrongLength));
    }

    #[test]
    fn remainder_eleven_maps_to_zero_and_ten_is_invalid() {
        // 1,0,0,0,0,0,0,0,1: sum 10 + 2 = 12, 12 mod 11 = 1, check 10: no valid number.
        assert_eq!(check_digit(b"100000001"), None);
        assert_eq!(normalise("1000000010"), Err(NhsNumberError::CheckDigit));
        // sum 0: check 11 -> 0.
        assert_eq!(check_digit(b"000000000"), Some(0));
        assert_eq!(normalise("0000000000").unwrap(), "0000000000");
        // 9434765919: the published example.
        assert_eq!(check_digit(b"943476591"), Some(9));
    }
}
