//! NYSIIS phonetic codes (New York State Identification and Intelligence System), for blocking
//! and partial agreement of names: `Smith`/`Smyth`/`Schmidt` share codes more often than their
//! spellings do. Input is a normalised name (lower case ASCII letters; others are ignored).

/// The NYSIIS code of `name`, upper case, untruncated; empty when `name` has no letters.
pub fn nysiis(name: &str) -> String {
    let mut w: Vec<u8> = name
        .bytes()
        .filter(u8::is_ascii_alphabetic)
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if w.is_empty() {
        return String::new();
    }
    // Prefixes.
    let replace_prefix = |w: &mut Vec<u8>, from: &[u8], to: &[u8]| {
        if w.starts_with(from) {
            w.splice(..from.len(), to.iter().copied());
            true
        } else {
            false
        }
    };
    let _ = replace_prefix(&mut w, b"MAC", b"MCC")
        || replace_prefix(&mut w, b"KN", b"NN")
        || replace_prefix(&mut w, b"K", b"C")
        || replace_prefix(&mut w, b"PH", b"FF")
        || replace_prefix(&mut w, b"PF", b"FF")
        || replace_prefix(&mut w, b"SCH", b"SSS");
    // Suffixes.
    for (from, to) in [
        (&b"EE"[..], &b"Y"[..]),
        (b"IE", b"Y"),
        (b"DT", b"D"),
        (b"RT", b"D"),
        (b"RD", b"D"),
        (b"NT", b"D"),
        (b"ND", b"D"),
    ] {
        if w.ends_with(from) {
            let at = w.len() - from.len();
            w.splice(at.., to.iter().copied());
            break;
        }
    }
    let first = w[0];
    let mut key = vec![first];
    let is_vowel = |c: u8| matches!(c, b'A' | b'E' | b'I' | b'O' | b'U');
    let mut i = 1;
    while i < w.len() {
        let c = w[i];
        let next = w.get(i + 1).copied();
        let prev = w[i - 1];
        let mut replacement: Vec<u8> = match c {
            b'E' if next == Some(b'V') => {
                w[i + 1] = b'F';
                vec![b'A']
            }
            _ if is_vowel(c) => vec![b'A'],
            b'Q' => vec![b'G'],
            b'Z' => vec![b'S'],
            b'M' => vec![b'N'],
            b'K' if next == Some(b'N') => vec![b'N'],
            b'K' => vec![b'C'],
            b'S' if w[i..].starts_with(b"SCH") => {
                w[i + 1] = b'S';
                w[i + 2] = b'S';
                vec![b'S']
            }
            b'P' if next == Some(b'H') => {
                w[i + 1] = b'F';
                vec![b'F']
            }
            b'H' if !is_vowel(prev) || next.is_none_or(|n| !is_vowel(n)) => vec![prev],
            b'W' if is_vowel(prev) => vec![prev],
            _ => vec![c],
        };
        // The replacement stands in the word for later context rules.
        if replacement.len() == 1 {
            w[i] = replacement[0];
        }
        replacement.retain(|&r| key.last() != Some(&r));
        key.extend(replacement);
        i += 1;
    }
    if key.len() > 1 && key.last() == Some(&b'S') {
        key.pop();
    }
    if key.ends_with(b"AY") {
        let at = key.len() - 2;
        key.splice(at.., [b'Y']);
    }
    if key.len() > 1 && key.last() == Some(&b'A') {
        key.pop();
    }
    String::from_utf8(key).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_spellings_share_a_code() {
        assert_eq!(nysiis("macdonald"), nysiis("mcdonald"));
        assert_eq!(nysiis("knight"), nysiis("night"));
        assert_eq!(nysiis("phillips"), nysiis("fillips"));
        assert_ne!(nysiis("smith"), nysiis("jones"));
    }

    #[test]
    fn known_codes() {
        assert_eq!(nysiis("johnson"), "JANSAN");
        assert_eq!(nysiis("williams"), "WALAN");
        assert_eq!(nysiis("brown"), "BRAN");
        assert_eq!(nysiis(""), "");
        assert_eq!(nysiis("o"), "O");
    }
}
