//! Text helpers for entry values shared by the dissectors and the query side.

/// Decodes `application/x-www-form-urlencoded` text (query strings, form bodies): `+` is a
/// space, `%XX` a byte; a `%` not followed by two hex digits is kept as is. Invalid UTF-8 in the
/// result is replaced, never an error.
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_plus_and_percent_and_keeps_bad_escapes() {
        assert_eq!(super::url_decode("a+b%3Dc%zz%4"), "a b=c%zz%4");
    }
}
