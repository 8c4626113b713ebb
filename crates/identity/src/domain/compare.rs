//! String and date comparators used by search and matching.

/// Jaro-Winkler similarity in [0, 1] (prefix scale 0.1, at most four prefix characters).
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    by_units(a, b, winkler, winkler)
}

/// `ascii` over the bytes of two ASCII strings, else `wide` over their characters. Normalised
/// names are ASCII: comparing their bytes keeps this hot path free of allocation.
fn by_units<R>(
    a: &str,
    b: &str,
    ascii: fn(&[u8], &[u8]) -> R,
    wide: fn(&[char], &[char]) -> R,
) -> R {
    if a.is_ascii() && b.is_ascii() {
        return ascii(a.as_bytes(), b.as_bytes());
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    wide(&a, &b)
}

fn winkler<T: PartialEq>(a: &[T], b: &[T]) -> f64 {
    let jaro = jaro(a, b);
    let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count();
    jaro + prefix as f64 * 0.1 * (1.0 - jaro)
}

fn jaro<T: PartialEq>(a: &[T], b: &[T]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    // Match flags on the stack for names; on the heap beyond 64 characters (long addresses).
    let (mut a_small, mut b_small) = ([false; 64], [false; 64]);
    let (mut a_large, mut b_large): (Vec<bool>, Vec<bool>);
    let (a_matched, b_matched): (&mut [bool], &mut [bool]) = if a.len() <= 64 && b.len() <= 64 {
        (&mut a_small[..a.len()], &mut b_small[..b.len()])
    } else {
        a_large = vec![false; a.len()];
        b_large = vec![false; b.len()];
        (&mut a_large, &mut b_large)
    };
    let mut matches = 0usize;
    for (i, ca) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        for j in lo..hi {
            if !b_matched[j] && b[j] == *ca {
                a_matched[i] = true;
                b_matched[j] = true;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let mut k = 0usize;
    for (i, ca) in a.iter().enumerate() {
        if a_matched[i] {
            while !b_matched[k] {
                k += 1;
            }
            if *ca != b[k] {
                transpositions += 1;
            }
            k += 1;
        }
    }
    let m = matches as f64;
    (m / a.len() as f64 + m / b.len() as f64 + (m - (transpositions / 2) as f64) / m) / 3.0
}

/// Damerau-Levenshtein distance (optimal string alignment: insertions, deletions,
/// substitutions and adjacent transpositions).
pub fn damerau_levenshtein(a: &str, b: &str) -> usize {
    by_units(a, b, osa_distance, osa_distance)
}

/// The dynamic programme over three rolling rows (the transposition looks two rows back), on the
/// stack for values up to 64 characters.
fn osa_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return n.max(m);
    }
    let width = m + 1;
    let mut small = [0usize; 3 * 65];
    let mut large: Vec<usize>;
    let rows: &mut [usize] = if width <= 65 {
        &mut small[..3 * width]
    } else {
        large = vec![0; 3 * width];
        &mut large
    };
    for (j, cell) in rows[..width].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        let (cur, prev, before) = (
            (i % 3) * width,
            ((i - 1) % 3) * width,
            ((i + 1) % 3) * width, // row i - 2
        );
        rows[cur] = i;
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[prev + j] + 1)
                .min(rows[cur + j - 1] + 1)
                .min(rows[prev + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[before + j - 2] + 1);
            }
            rows[cur + j] = best;
        }
    }
    rows[(n % 3) * width + m]
}

/// 1 - distance / length of the longer value.
pub fn distance_similarity(distance: usize, a: &str, b: &str) -> f64 {
    let longer = a.chars().count().max(b.chars().count());
    if longer == 0 {
        1.0
    } else {
        1.0 - distance as f64 / longer as f64
    }
}

/// Whether one family name is a part of the other, as when a double-barrelled name is recorded
/// whole on one record and in part on the other ("smithjones" and "jones", normalised): the
/// shorter is at least three characters and begins or ends the longer.
pub fn one_part_of_other(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let short = short.trim();
    short.len() >= 3
        && long.len() >= short.len() + 3
        && (long.starts_with(short) || long.ends_with(short))
}

/// How two dates relate, for tolerant date comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateAgreement {
    Exact,
    /// Day and month transposed (for example 03/07 against 07/03).
    Swapped,
    /// One digit of YYYYMMDD mis-keyed, or two adjacent digits transposed.
    OneTypo,
    Different,
}

/// Compares two dates as `(year, month, day)`.
pub fn compare_dates(a: (i32, i32, i32), b: (i32, i32, i32)) -> DateAgreement {
    if a == b {
        return DateAgreement::Exact;
    }
    if a.0 == b.0 && a.1 == b.2 && a.2 == b.1 {
        return DateAgreement::Swapped;
    }
    let (Some(xa), Some(xb)) = (date_digits(a), date_digits(b)) else {
        return DateAgreement::Different;
    };
    // Positions where the YYYYMMDD digits differ; more than two is already different.
    let mut diffs = [0usize; 2];
    let mut n = 0;
    for i in 0..8 {
        if xa[i] != xb[i] {
            if n == 2 {
                return DateAgreement::Different;
            }
            diffs[n] = i;
            n += 1;
        }
    }
    match (n, diffs) {
        (1, _) => DateAgreement::OneTypo,
        (2, [i, j]) if j == i + 1 && xa[i] == xb[j] && xa[j] == xb[i] => DateAgreement::OneTypo,
        _ => DateAgreement::Different,
    }
}

/// A date's YYYYMMDD digits, on the stack (matching runs this for most candidates); `None` for a
/// date that has no such eight digits.
fn date_digits((year, month, day): (i32, i32, i32)) -> Option<[u8; 8]> {
    if !(0..=9999).contains(&year) || !(0..=99).contains(&month) || !(0..=99).contains(&day) {
        return None;
    }
    let mut digits = [0u8; 8];
    let mut put = |at: usize, value: i32, width: usize| {
        let mut v = value;
        for k in (0..width).rev() {
            digits[at + k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(4, month, 2);
    put(6, day, 2);
    Some(digits)
}

/// Token-set similarity of two multi-word values (addresses): the share of tokens of both that
/// find a close partner (Jaro-Winkler >= 0.9) in the other, in [0, 1].
pub fn token_set(a: &str, b: &str) -> f64 {
    // Up to 16 tokens a side on the stack: matching compares addresses for most candidates.
    let (mut small_a, mut small_b) = ([""; 16], [""; 16]);
    match (tokens_into(a, &mut small_a), tokens_into(b, &mut small_b)) {
        (Some(na), Some(nb)) => token_set_of(&small_a[..na], &small_b[..nb]),
        _ => {
            let ta: Vec<&str> = a.split(' ').filter(|t| !t.is_empty()).collect();
            let tb: Vec<&str> = b.split(' ').filter(|t| !t.is_empty()).collect();
            token_set_of(&ta, &tb)
        }
    }
}

/// The non-empty space-separated tokens of `s` in `out`, or `None` when they do not fit.
fn tokens_into<'a>(s: &'a str, out: &mut [&'a str]) -> Option<usize> {
    let mut n = 0;
    for token in s.split(' ').filter(|t| !t.is_empty()) {
        *out.get_mut(n)? = token;
        n += 1;
    }
    Some(n)
}

fn token_set_of(ta: &[&str], tb: &[&str]) -> f64 {
    if ta.is_empty() || tb.is_empty() {
        return 0.0;
    }
    let mut small = [false; 16];
    let mut large: Vec<bool>;
    let used: &mut [bool] = if tb.len() <= small.len() {
        &mut small[..tb.len()]
    } else {
        large = vec![false; tb.len()];
        &mut large
    };
    let mut matched = 0usize;
    for x in ta {
        let mut best: Option<(usize, f64)> = None;
        for (j, y) in tb.iter().enumerate() {
            if used[j] {
                continue;
            }
            let s = if x == y { 1.0 } else { jaro_winkler(x, y) };
            if s >= 0.9 && best.is_none_or(|(_, bs)| s > bs) {
                best = Some((j, s));
            }
        }
        if let Some((j, _)) = best {
            used[j] = true;
            matched += 1;
        }
    }
    2.0 * matched as f64 / (ta.len() + tb.len()) as f64
}

/// Dice coefficient of the character bigrams of two values with spaces removed, in [0, 1]:
/// robust to words split or joined ("jervoisstreet" / "jervois street") and to typos.
pub fn bigram_dice(a: &str, b: &str) -> f64 {
    // ASCII values of up to 128 bytes (normalised addresses) take their bigrams on the stack.
    const SMALL: usize = 128;
    if a.is_ascii() && b.is_ascii() && a.len() <= SMALL && b.len() <= SMALL {
        let (mut x, mut y) = ([0u16; SMALL], [0u16; SMALL]);
        let (nx, ny) = (ascii_bigrams(a, &mut x), ascii_bigrams(b, &mut y));
        return dice(&mut x[..nx], &mut y[..ny], a, b);
    }
    let grams = |s: &str| -> Vec<(char, char)> {
        let chars: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
        chars.windows(2).map(|w| (w[0], w[1])).collect()
    };
    let (mut x, mut y) = (grams(a), grams(b));
    dice(&mut x, &mut y, a, b)
}

/// The bigrams of an ASCII value with white space removed, each as two bytes in one `u16`.
fn ascii_bigrams(s: &str, out: &mut [u16]) -> usize {
    let mut n = 0;
    let mut previous: Option<u8> = None;
    for c in s.bytes().filter(|&c| !char::from(c).is_whitespace()) {
        if let Some(p) = previous {
            out[n] = u16::from(p) << 8 | u16::from(c);
            n += 1;
        }
        previous = Some(c);
    }
    n
}

/// The Dice coefficient of two bigram multisets (sorted here); `a` and `b` are the values they
/// came from, for the case of a value too short to have a bigram.
fn dice<T: Ord>(x: &mut [T], y: &mut [T], a: &str, b: &str) -> f64 {
    if x.is_empty() || y.is_empty() {
        return if a.trim() == b.trim() && !x.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    x.sort_unstable();
    y.sort_unstable();
    // Multiset intersection of two sorted lists.
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < x.len() && j < y.len() {
        match x[i].cmp(&y[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    2.0 * common as f64 / (x.len() + y.len()) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-3
    }

    #[test]
    fn jaro_winkler_matches_published_values() {
        assert!(close(jaro_winkler("martha", "marhta"), 0.961));
        assert!(close(jaro_winkler("dwayne", "duane"), 0.84));
        assert!(close(jaro_winkler("dixon", "dicksonx"), 0.813));
        assert!(close(jaro_winkler("same", "same"), 1.0));
        assert_eq!(jaro_winkler("", "abc"), 0.0);
        assert_eq!(jaro_winkler("abc", "xyz"), 0.0);
        let long_a = "a".repeat(70) + "b";
        let long_b = "a".repeat(70) + "c";
        assert!(jaro_winkler(&long_a, &long_b) > 0.95);
    }

    #[test]
    fn damerau_levenshtein_counts_transpositions_once() {
        assert_eq!(damerau_levenshtein("kitten", "sitting"), 3);
        assert_eq!(damerau_levenshtein("ab", "ba"), 1);
        assert_eq!(damerau_levenshtein("", "abc"), 3);
        assert_eq!(damerau_levenshtein("smith", "smith"), 0);
        assert!(close(distance_similarity(1, "smith", "smyth"), 0.8));
    }

    #[test]
    fn byte_and_character_paths_agree() {
        // Non-ASCII input takes the character path; the same letters in ASCII the byte path.
        let pairs = [
            ("zoe", "zeo"),
            ("siobhan", "shivaun"),
            ("", "x"),
            ("ab", "ba"),
            ("kitten", "sitting"),
        ];
        for (a, b) in pairs {
            let (wide_a, wide_b) = (format!("{a}é"), format!("{b}é"));
            let (chars_a, chars_b): (Vec<char>, Vec<char>) =
                (a.chars().collect(), b.chars().collect());
            assert_eq!(
                damerau_levenshtein(a, b),
                osa_distance(&chars_a, &chars_b),
                "{a} {b}"
            );
            assert_eq!(
                damerau_levenshtein(&wide_a, &wide_b),
                damerau_levenshtein(a, b),
                "{a} {b}"
            );
            assert!(
                close(jaro_winkler(a, b), winkler(&chars_a, &chars_b)),
                "{a} {b}"
            );
        }
        // Rows on the heap past 64 characters: one substitution and one transposition.
        let long_a = "ab".repeat(40) + "xy";
        let long_b = "ab".repeat(39) + "cb" + "yx";
        assert_eq!(damerau_levenshtein(&long_a, &long_b), 2);
        assert_eq!(damerau_levenshtein("é", "e"), 1);
    }

    #[test]
    fn dates_tolerate_swaps_and_single_typos() {
        let cases = [
            ((1980, 3, 7), (1980, 3, 7), DateAgreement::Exact),
            ((1980, 3, 7), (1980, 7, 3), DateAgreement::Swapped),
            ((1980, 3, 7), (1981, 3, 7), DateAgreement::OneTypo),
            ((1980, 3, 17), (1980, 3, 28), DateAgreement::Different),
            ((1989, 3, 7), (1998, 3, 7), DateAgreement::OneTypo),
            ((1980, 3, 7), (1975, 11, 20), DateAgreement::Different),
        ];
        for (a, b, agreement) in cases {
            assert_eq!(compare_dates(a, b), agreement, "{a:?} {b:?}");
        }
    }

    #[test]
    fn dates_out_of_range_are_different_not_a_typo() {
        assert_eq!(
            compare_dates((10000, 1, 1), (10001, 1, 1)),
            DateAgreement::Different
        );
    }

    #[test]
    fn stack_and_heap_paths_agree() {
        let words = "a bb ccc dddd high street leeds north yorkshire england";
        let pairs = [
            ("12 high street leeds", "high street 12 leeds"),
            ("jervois street coolaroo", "jervoisstreet coolar oo"),
            ("night", "nacht"),
            ("a", "a"),
            ("", "abc"),
            ("12 high street leeds", "4 church lane york"),
        ];
        for (a, b) in pairs {
            let mut heap_a: Vec<(char, char)> = Vec::new();
            let mut heap_b: Vec<(char, char)> = Vec::new();
            for (s, out) in [(a, &mut heap_a), (b, &mut heap_b)] {
                let chars: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
                out.extend(chars.windows(2).map(|w| (w[0], w[1])));
            }
            assert!(
                close(bigram_dice(a, b), dice(&mut heap_a, &mut heap_b, a, b)),
                "{a} / {b}"
            );
            let ta: Vec<&str> = a.split(' ').filter(|t| !t.is_empty()).collect();
            let tb: Vec<&str> = b.split(' ').filter(|t| !t.is_empty()).collect();
            assert!(close(token_set(a, b), token_set_of(&ta, &tb)), "{a} / {b}");
        }
        // Past 16 tokens and 128 bytes the heap path runs.
        let long_a = format!("{words} {words} {words}");
        let long_b = format!("{words} {words} {}", words.replace("high", "hihg"));
        assert!(long_a.len() > 128 && long_a.split(' ').count() > 16);
        assert!(close(token_set(&long_a, &long_b), 1.0));
        assert!(close(bigram_dice(&long_a, &long_a), 1.0));
        assert!(bigram_dice(&long_a, &long_b) > 0.9 && bigram_dice(&long_a, &long_b) < 1.0);
    }

    #[test]
    fn double_barrelled_names_contain_their_parts() {
        assert!(one_part_of_other("smithjones", "jones"));
        assert!(one_part_of_other("smith", "smithjones"));
        assert!(!one_part_of_other("smith", "smyth"));
        assert!(!one_part_of_other("li", "lin"));
    }

    #[test]
    fn bigrams_ignore_spacing() {
        assert!(close(
            bigram_dice("jervois street coolaroo", "jervoisstreet coolar oo"),
            1.0
        ));
        assert!(bigram_dice("12 high street leeds", "4 church lane york") < 0.3);
        assert_eq!(bigram_dice("", "abc"), 0.0);
        assert!(close(bigram_dice("night", "nacht"), 0.25));
    }

    #[test]
    fn token_sets_ignore_order_and_small_typos() {
        assert!(close(
            token_set("12 high street leeds", "high street 12 leeds"),
            1.0
        ));
        assert!(token_set("12 high street leeds", "12 hihg street leeds") > 0.99);
        assert!(token_set("12 high street leeds", "4 church lane york") < 0.01);
        assert_eq!(token_set("", "x"), 0.0);
    }
}
