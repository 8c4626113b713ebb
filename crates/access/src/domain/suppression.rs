//! Small-number suppression of aggregate counts: 1 to 7 withheld, everything else rounded to the
//! nearest multiple of 5.

/// A protected count: `(count, suppressed)`.
pub fn protect(true_count: u64) -> (u64, bool) {
    match true_count {
        0 => (0, false),
        1..=7 => (0, true),
        // Nearest multiple of 5; a tie cannot arise for integers.
        n => (n.saturating_add(2) / 5 * 5, false),
    }
}

#[cfg(test)]
mod tests {
    use super::protect;

    #[test]
    fn small_counts_are_suppressed_and_others_rounded() {
        assert_eq!(protect(0), (0, false));
        for n in 1..=7 {
            assert_eq!(protect(n), (0, true), "{n}");
        }
        assert_eq!(protect(8), (10, false));
        assert_eq!(protect(12), (10, false));
        assert_eq!(protect(13), (15, false));
        assert_eq!(protect(15), (15, false));
        assert_eq!(protect(17), (15, false));
        assert_eq!(protect(18), (20, false));
        assert_eq!(protect(1_000_001), (1_000_000, false));
    }
}
