//! Numbers as people read them in tables and reports.

/// `1234567` -> `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (14_714_688, "14,714,688"),
            (123_456, "123,456"),
        ];
        for (n, s) in cases {
            assert_eq!(thousands(n), s);
        }
    }
}
