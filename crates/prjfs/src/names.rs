//! ProjFS's name rules: matching with DOS wildcards (`PrjFileNameMatch`),
//! collation (`PrjFileNameCompare`), validation.
//!
//! Names on Linux are bytes. Both matching and comparison first turn a name into a
//! sequence of *units*: each character of a valid UTF-8 run is one unit (its code
//! point, upper-cased for [`Collation::CaseInsensitive`]), and each byte that is not
//! part of valid UTF-8 is one unit of its own, placed above every code point. For a
//! name that is not UTF-8 this is the byte-wise fallback with ASCII upper-casing
//! (a stray byte is always `>= 0x80`, so upper-casing never touches it), while the
//! valid parts of such a name still fold like any other name. Because every name
//! maps to one key, the comparison is a total order even over mixed names.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::types::Collation;

/// Longest name one path component may have, in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// `*`: any run of characters, including the empty run.
const STAR: u32 = b'*' as u32;
/// `?`: exactly one character.
const QM: u32 = b'?' as u32;
/// `<` (DOS_STAR): any run of characters that does not go past the final `.`.
const DOS_STAR: u32 = b'<' as u32;
/// `>` (DOS_QM): one character; zero width at a `.` or at the end of the name.
const DOS_QM: u32 = b'>' as u32;
/// `"` (DOS_DOT): a `.`, or nothing at the end of the name.
const DOS_DOT: u32 = b'"' as u32;
/// A literal period.
const DOT: u32 = b'.' as u32;
/// Units for bytes that are not valid UTF-8 start here, above `char::MAX`.
const RAW_BYTE_BASE: u32 = 0x11_0000;

/// The simple (one-to-one) upper-case mapping of `c`, as a file system's upcase
/// table has it: characters whose upper case is several characters (`ß` → `SS`)
/// stay as they are, so a name keeps its length in units and `?` stays one char.
fn upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// The units of `name` (see the module documentation), folded when `fold` is set.
fn units(name: &OsStr, fold: bool) -> Vec<u32> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.extend(
            chunk
                .valid()
                .chars()
                .map(|c| if fold { upper(c) } else { c } as u32),
        );
        out.extend(
            chunk
                .invalid()
                .iter()
                .map(|&b| RAW_BYTE_BASE + u32::from(b)),
        );
    }
    out
}

/// Whether `name` matches `pattern` under the ProjFS rules, case-insensitively
/// (`PrjFileNameMatch`). An empty or absent pattern matches everything.
///
/// Wildcards: `*` any run; `?` one character; `<` any run up to and including the
/// final `.` (like `*` when the name has no `.`); `>` one character, but nothing at
/// a `.` or at the end of the name; `"` a `.`, or nothing at the end of the name.
pub fn file_name_match(name: &OsStr, pattern: Option<&OsStr>) -> bool {
    file_name_match_with(name, pattern, Collation::CaseInsensitive)
}

/// [`file_name_match`] under `collation`: with [`Collation::CaseSensitive`] the
/// literal characters of the pattern compare exactly.
pub fn file_name_match_with(name: &OsStr, pattern: Option<&OsStr>, collation: Collation) -> bool {
    let Some(pattern) = pattern.filter(|p| !p.is_empty()) else {
        return true;
    };
    let fold = collation == Collation::CaseInsensitive;
    match_units(&units(name, fold), &units(pattern, fold))
}

/// The matcher proper: a dynamic program over (name position, pattern position).
///
/// `row[j]` holds whether `pat[j..]` matches `name[i..]` for the row `i` being
/// computed; `next[j]` holds the same for `i + 1`. Rows are filled from the end of
/// the name backwards, and inside a row from the end of the pattern backwards,
/// because `*` and `<` look at `row[j + 1]` (consume nothing) and `next[j]`
/// (consume one unit and stay). Time `O(n·m)`, memory `O(m)`.
fn match_units(name: &[u32], pat: &[u32]) -> bool {
    let n = name.len();
    let m = pat.len();
    // `<` may consume units at positions `< dos_star_limit`: up to and including the
    // final `.`, or the whole name when there is none.
    let dos_star_limit = name.iter().rposition(|&u| u == DOT).map_or(n, |d| d + 1);

    // Row i = n: only a pattern rest that can match the empty string succeeds.
    let mut next = vec![false; m + 1];
    next[m] = true;
    for j in (0..m).rev() {
        next[j] = matches!(pat[j], STAR | DOS_STAR | DOS_QM | DOS_DOT) && next[j + 1];
    }

    let mut row = vec![false; m + 1];
    for i in (0..n).rev() {
        let c = name[i];
        row[m] = false; // pattern exhausted, name not
        for j in (0..m).rev() {
            row[j] = match pat[j] {
                STAR => row[j + 1] || next[j],
                QM => next[j + 1],
                DOS_STAR => row[j + 1] || (i < dos_star_limit && next[j]),
                // At a `.` the `>` is zero width; the following `>`s then are too.
                DOS_QM if c == DOT => row[j + 1],
                DOS_QM => next[j + 1],
                // Not at the end of the name, `"` must consume a `.`.
                DOS_DOT => c == DOT && next[j + 1],
                lit => lit == c && next[j + 1],
            };
        }
        std::mem::swap(&mut row, &mut next);
    }
    next[0]
}

/// ProjFS collation (`PrjFileNameCompare`): ordinal comparison of the upper-cased names, so `_`
/// sorts after the letters (`"a_b"` after `"abc"`).
pub fn file_name_compare(a: &OsStr, b: &OsStr) -> Ordering {
    compare_with(a, b, Collation::CaseInsensitive)
}

/// Compare two names under `collation`. [`Collation::CaseSensitive`] is plain byte
/// order; [`Collation::CaseInsensitive`] is [`file_name_compare`].
pub fn compare_with(a: &OsStr, b: &OsStr, collation: Collation) -> Ordering {
    match collation {
        Collation::CaseSensitive => a.as_bytes().cmp(b.as_bytes()),
        Collation::CaseInsensitive => {
            // Fast path: ASCII names fold byte-wise, which equals the unit order.
            if a.is_ascii() && b.is_ascii() {
                let fa = a.as_bytes().iter().map(u8::to_ascii_uppercase);
                let fb = b.as_bytes().iter().map(u8::to_ascii_uppercase);
                return fa.cmp(fb);
            }
            units(a, true).cmp(&units(b, true))
        }
    }
}

/// Whether `name` contains any of the wildcard characters `* ? < > "`.
pub fn contains_wildcards(name: &OsStr) -> bool {
    name.as_bytes()
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'<' | b'>' | b'"'))
}

/// Check that `name` is one valid path component: not empty, not `.` or `..`, no
/// `/`, no NUL, at most [`NAME_MAX`] bytes. The error says what is wrong.
pub fn validate_name(name: &OsStr) -> Result<(), String> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err("name is empty".to_string());
    }
    if bytes == b"." || bytes == b".." {
        return Err(format!("name {name:?} is reserved"));
    }
    if bytes.contains(&b'/') {
        return Err(format!("name {name:?} contains '/'"));
    }
    if bytes.contains(&0) {
        return Err(format!("name {name:?} contains a NUL byte"));
    }
    if bytes.len() > NAME_MAX {
        return Err(format!(
            "name is {} bytes long, more than the limit of {NAME_MAX}",
            bytes.len()
        ));
    }
    Ok(())
}

/// Whether `name` is longer than [`NAME_MAX`] bytes: every request that takes a
/// name answers `ENAMETOOLONG` for it, as ext4 does (the kernel passes FUSE
/// names of up to 1024 bytes and refuses longer ones itself).
pub fn name_too_long(name: &OsStr) -> bool {
    name.as_bytes().len() > NAME_MAX
}

/// The errno of a name [`validate_name`] refuses, for a request that would
/// create or remove it: `ENAMETOOLONG` for a name longer than [`NAME_MAX`],
/// else `EINVAL`.
pub fn invalid_name_errno(name: &OsStr) -> i32 {
    if name_too_long(name) {
        libc::ENAMETOOLONG
    } else {
        libc::EINVAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn raw(b: &[u8]) -> &OsStr {
        OsStr::from_bytes(b)
    }

    /// Case-insensitive match, the ProjFS default.
    fn m(name: &str, pattern: &str) -> bool {
        file_name_match(os(name), Some(os(pattern)))
    }

    /// Case-sensitive match.
    fn ms(name: &str, pattern: &str) -> bool {
        file_name_match_with(os(name), Some(os(pattern)), Collation::CaseSensitive)
    }

    /// `(name, pattern, expected)` under the ProjFS (case-insensitive) rules.
    const CASES: &[(&str, &str, bool)] = &[
        // The ProjFS documentation's examples.
        ("Test", "*.*", false),
        ("Test", "Test>", true),
        ("Test", "Test\"", true),
        ("Test.", "Test\"", true),
        ("Test.txt", "Test\"", false),
        ("Test.txt", "t<txt", true),
        // Literals.
        ("abc", "abc", true),
        ("abc", "abd", false),
        ("abc", "abcd", false),
        ("abcd", "abc", false),
        ("a.b", "a.b", true),
        // `*`.
        ("anything.at.all", "*", true),
        ("Test.txt", "*.*", true),
        (".hidden", "*.*", true),
        ("a.b.txt", "*.txt", true),
        ("a.txt.bak", "*.txt", false),
        ("aXbYc", "a*b*c", true),
        ("abc", "a*b*c", true),
        ("acb", "a*b*c", false),
        ("abc", "**c", true),
        ("abc", "abc*", true),
        // `?`.
        ("a", "?", true),
        ("ab", "?", false),
        ("ab", "??", true),
        ("abc", "a?c", true),
        ("ac", "a?c", false),
        ("a.b", "a?b", true),
        // `<` (DOS_STAR): any run up to and including the final `.`.
        ("abc", "<", true),
        ("a.", "<", true),
        ("a.b", "<", false),
        ("a.b", "<b", true),
        ("a.txt", "<.txt", true),
        ("a.b.txt", "<.txt", true),
        ("a.b.txt", "<txt", true),
        ("a.b.txt", "<b.txt", true),
        ("a.b.txt", "a<xt", false),
        ("Test", "<\"*", true),
        ("Test.txt", "<\"*", true),
        // `>` (DOS_QM): one char; zero width at a `.` or the end.
        ("Tests", "Test>", true),
        ("Tests1", "Test>", false),
        ("", ">>>", true),
        ("ab", ">>>", true),
        ("abc", ">>>", true),
        ("abcd", ">>>", false),
        ("ab.txt", ">>>.txt", true),
        ("abc.txt", ">>>.txt", true),
        ("abcd.txt", ">>>.txt", false),
        ("a.b", "a>>.b", true),
        ("a.b", "a>b", false),
        ("a.b", "a>.>", true),
        // `"` (DOS_DOT): a `.`, or nothing at the end.
        ("a.b", "a\"b", true),
        ("ab", "a\"b", false),
        ("a", "a\"", true),
        ("a.", "a\"\"", true),
        ("a..", "a\"\"", true),
        // Mixed.
        ("readme.md", "R?A*<\"md", true),
        ("readme.md", "r?a*\"txt", false),
        ("readme.md", "R?A*\"md", true),
        ("x.tar.gz", "*.>>>.gz", true),
        ("x.tar.gz", "*.>>.gz", false),
        // Case folding, also beyond ASCII.
        ("test.txt", "TEST.TXT", true),
        ("TEST.TXT", "t*.txt", true),
        ("äbc.txt", "ÄBC*", true),
        ("σοφος", "ΣΟΦΟΣ", true),
        ("straße", "STRAßE", true),
        // `ß` has no one-character upper case, so it does not fold to "SS".
        ("straße", "STRASSE", false),
        // `?` is one character, not one byte.
        ("é", "?", true),
        ("é", "??", false),
        ("日本.txt", "??.txt", true),
        // Wildcard characters in a name are matched literally by literals.
        ("a*b", "a*b", true),
        ("a?b", "a\\?b", false),
    ];

    #[test]
    fn match_table() {
        let failures: Vec<_> = CASES
            .iter()
            .filter(|(name, pattern, want)| m(name, pattern) != *want)
            .collect();
        assert!(failures.is_empty(), "mismatches: {failures:?}");
        assert!(CASES.len() >= 30);
    }

    #[test]
    fn empty_or_absent_pattern_matches_everything() {
        for name in ["a", "Test.txt", ".", "", "日本"] {
            assert!(file_name_match(os(name), None), "{name:?} with None");
            assert!(
                file_name_match(os(name), Some(os(""))),
                "{name:?} with \"\""
            );
            assert!(file_name_match_with(
                os(name),
                None,
                Collation::CaseSensitive
            ));
        }
        assert!(file_name_match(raw(b"\xff\xfe"), None));
    }

    #[test]
    fn empty_name_matches_only_patterns_that_can_be_empty() {
        assert!(m("", "*"));
        assert!(m("", "<"));
        assert!(m("", "\""));
        assert!(!m("", "?"));
        assert!(!m("", "a"));
    }

    #[test]
    fn case_sensitive_collation_compares_literals_exactly() {
        assert!(!ms("test.txt", "TEST.TXT"));
        assert!(ms("test.txt", "test.txt"));
        assert!(ms("a.TXT", "*.TXT"));
        assert!(!ms("a.txt", "*.TXT"));
        assert!(!ms("äbc", "ÄBC"));
        // Wildcards keep their meaning.
        assert!(ms("Test", "Test>"));
        assert!(!ms("Test.txt", "t<txt"), "'t' must not match 'T'");
        assert!(ms("Test.txt", "T<txt"));
        assert!(ms("Test.", "Test\""));
    }

    #[test]
    fn non_utf8_names_fall_back_to_bytes() {
        // A stray byte is one unit; ASCII around it is folded.
        assert!(file_name_match(raw(b"a\xffb"), Some(os("a?b"))));
        assert!(file_name_match(raw(b"a\xffb"), Some(os("A?B"))));
        assert!(file_name_match(raw(b"a\xffb"), Some(os("a*"))));
        assert!(!file_name_match(raw(b"a\xffb"), Some(os("a??b"))));
        assert!(file_name_match(raw(b"\xffx"), Some(raw(b"\xff*"))));
        assert!(!file_name_match(raw(b"\xfex"), Some(raw(b"\xff*"))));
        // The valid parts of such a name still fold fully.
        assert!(file_name_match(raw(b"\xc3\xa9\xff"), Some(os("É?"))));
        assert!(!file_name_match_with(
            raw(b"\xc3\xa9\xff"),
            Some(os("É?")),
            Collation::CaseSensitive
        ));
        // A truncated UTF-8 sequence is two stray bytes, not one character.
        assert!(file_name_match(raw(b"\xe6\x97"), Some(os("??"))));
        assert!(!file_name_match(raw(b"\xe6\x97"), Some(os("?"))));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let name = "a".repeat(255);
        let pattern = "*a".repeat(100) + "*b";
        let start = std::time::Instant::now();
        assert!(!m(&name, &pattern));
        assert!(m(&name, &"*a".repeat(100)));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn contains_wildcards_finds_each() {
        for w in ["*", "?", "<", ">", "\"", "a*b", "x.tx?"] {
            assert!(contains_wildcards(os(w)), "{w:?}");
        }
        for plain in ["", "abc", "a.b", "[x]", "a|b", "日本"] {
            assert!(!contains_wildcards(os(plain)), "{plain:?}");
        }
        assert!(!contains_wildcards(raw(b"\xff\xfe")));
    }

    #[test]
    fn compare_projfs_collation() {
        use Ordering::*;
        // `_` (0x5F) sorts after the upper-case letters.
        assert_eq!(file_name_compare(os("a_b"), os("abc")), Greater);
        assert_eq!(file_name_compare(os("abc"), os("a_b")), Less);
        assert_eq!(file_name_compare(os("ABC"), os("abc")), Equal);
        assert_eq!(file_name_compare(os("Readme.MD"), os("README.md")), Equal);
        assert_eq!(file_name_compare(os("äbc"), os("ÄBC")), Equal);
        assert_eq!(file_name_compare(os("a"), os("ab")), Less);
        assert_eq!(file_name_compare(os("B"), os("a")), Greater);
        assert_eq!(file_name_compare(os(""), os("a")), Less);
        // Non-ASCII sorts after ASCII; a stray byte after every character.
        assert_eq!(file_name_compare(os("z"), os("é")), Less);
        assert_eq!(file_name_compare(os("\u{10FFFF}"), raw(b"\xff")), Less);
        assert_eq!(file_name_compare(raw(b"a\xff"), raw(b"A\xff")), Equal);
        assert_eq!(
            file_name_compare(os("x"), os("y")),
            compare_with(os("x"), os("y"), Collation::CaseInsensitive)
        );
    }

    #[test]
    fn compare_case_sensitive_is_byte_order() {
        use Ordering::*;
        let cs = |a: &OsStr, b: &OsStr| compare_with(a, b, Collation::CaseSensitive);
        assert_eq!(cs(os("a_b"), os("abc")), Less);
        assert_eq!(cs(os("ABC"), os("abc")), Less);
        assert_eq!(cs(os("B"), os("a")), Less);
        assert_eq!(cs(os("abc"), os("abc")), Equal);
        assert_eq!(cs(os("é"), os("z")), Greater);
        assert_eq!(cs(raw(b"\x7f"), raw(b"\x80")), Less);
        let mut names = vec!["b", "_", "B", "a", "A"];
        names.sort_by(|a, b| cs(os(a), os(b)));
        assert_eq!(names, ["A", "B", "_", "a", "b"]);
        names.sort_by(|a, b| file_name_compare(os(a), os(b)).then(a.cmp(b)));
        assert_eq!(names, ["A", "a", "B", "b", "_"]);
    }

    #[test]
    fn validate_name_rejects_each_bad_input() {
        let cases: [(&OsStr, &str); 5] = [
            (os(""), "empty"),
            (os("."), "reserved"),
            (os(".."), "reserved"),
            (os("a/b"), "'/'"),
            (raw(b"a\0b"), "NUL"),
        ];
        for (name, needle) in cases {
            let err = validate_name(name).expect_err("bad name should be rejected");
            assert!(err.contains(needle), "{name:?}: {err}");
        }
        let long = "x".repeat(NAME_MAX + 1);
        let err = validate_name(os(&long)).expect_err("256 bytes is too long");
        assert!(err.contains("256") && err.contains("255"), "{err}");
        // Multi-byte characters count in bytes: 128 × 2 bytes = 256.
        assert!(validate_name(os(&"é".repeat(128))).is_err());
    }

    #[test]
    fn too_long_names_are_enametoolong_other_bad_names_einval() {
        assert!(!name_too_long(os(&"x".repeat(NAME_MAX))));
        assert!(name_too_long(os(&"x".repeat(NAME_MAX + 1))));
        assert!(name_too_long(os(&"é".repeat(128))));
        assert_eq!(
            invalid_name_errno(os(&"x".repeat(NAME_MAX + 1))),
            libc::ENAMETOOLONG
        );
        for bad in ["", ".", "..", "a/b"] {
            assert_eq!(invalid_name_errno(os(bad)), libc::EINVAL, "{bad:?}");
        }
    }

    #[test]
    fn validate_name_accepts_good_names() {
        for name in ["a", "...", ".hidden", "a b", "*?<>\"", "日本語", "-"] {
            assert_eq!(validate_name(os(name)), Ok(()), "{name:?}");
        }
        assert_eq!(validate_name(os(&"x".repeat(NAME_MAX))), Ok(()));
        assert_eq!(validate_name(raw(b"\xff\xfe")), Ok(()));
    }

    /// A direct reading of the wildcard rules, trying every run length: exponential,
    /// fine for short inputs, and independent of the DP's row bookkeeping.
    fn reference(name: &[u8], pat: &[u8]) -> bool {
        let last_dot = name.iter().rposition(|&c| c == b'.');
        let limit = last_dot.map_or(name.len(), |d| d + 1);
        fn rec(name: &[u8], pat: &[u8], limit: usize, i: usize, j: usize) -> bool {
            let n = name.len();
            let Some(&p) = pat.get(j) else { return i == n };
            let at = name.get(i).copied();
            match p {
                b'*' => (i..=n).any(|k| rec(name, pat, limit, k, j + 1)),
                b'?' => at.is_some() && rec(name, pat, limit, i + 1, j + 1),
                b'<' => (i..=n)
                    .filter(|&k| k == i || k <= limit)
                    .any(|k| rec(name, pat, limit, k, j + 1)),
                b'>' => match at {
                    None | Some(b'.') => rec(name, pat, limit, i, j + 1),
                    Some(_) => rec(name, pat, limit, i + 1, j + 1),
                },
                b'"' => match at {
                    None => rec(name, pat, limit, i, j + 1),
                    Some(c) => c == b'.' && rec(name, pat, limit, i + 1, j + 1),
                },
                lit => {
                    at.is_some_and(|c| c.eq_ignore_ascii_case(&lit))
                        && rec(name, pat, limit, i + 1, j + 1)
                }
            }
        }
        rec(name, pat, limit, 0, 0)
    }

    proptest! {
        #[test]
        fn dp_agrees_with_reference(name in "[aB.]{0,8}", pattern in "[Ab.*?<>\"]{1,6}") {
            prop_assert_eq!(
                m(&name, &pattern),
                reference(name.as_bytes(), pattern.as_bytes()),
                "name {:?} pattern {:?}", name, pattern
            );
        }

        #[test]
        fn star_matches_anything(name in proptest::collection::vec(any::<u8>(), 0..40)) {
            let name = OsString::from_vec(name);
            prop_assert!(file_name_match(&name, Some(os("*"))));
            prop_assert!(file_name_match_with(&name, Some(os("*")), Collation::CaseSensitive));
        }

        #[test]
        fn plain_name_matches_itself_in_any_case(name in "[a-zA-Z0-9._ éßΣ-]{1,20}") {
            prop_assert!(m(&name, &name));
            prop_assert!(ms(&name, &name));
            prop_assert!(m(&name, &name.to_ascii_uppercase()));
            prop_assert!(m(&name.to_ascii_lowercase(), &name));
        }

        #[test]
        fn question_marks_count_characters(name in "[a-zé.]{0,10}", k in 0usize..12) {
            let pattern = "?".repeat(k);
            let want = k == 0 || name.chars().count() == k;
            prop_assert_eq!(m(&name, &pattern), want);
        }

        #[test]
        fn compare_is_a_total_order(
            names in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![Just(b'a'), Just(b'A'), Just(b'_'), Just(b'b'), Just(0xc3), Just(0xa9), Just(0xff)],
                    0..5,
                ),
                0..12,
            ),
            ci in any::<bool>(),
        ) {
            let collation = if ci { Collation::CaseInsensitive } else { Collation::CaseSensitive };
            let mut names: Vec<OsString> = names.into_iter().map(OsString::from_vec).collect();
            for a in &names {
                prop_assert_eq!(compare_with(a, a, collation), Ordering::Equal);
                for b in &names {
                    prop_assert_eq!(compare_with(a, b, collation), compare_with(b, a, collation).reverse());
                }
            }
            names.sort_by(|a, b| compare_with(a, b, collation));
            for (i, a) in names.iter().enumerate() {
                for b in &names[i..] {
                    prop_assert_ne!(compare_with(a, b, collation), Ordering::Greater, "{:?} {:?}", a, b);
                }
            }
        }

        #[test]
        fn equal_names_are_exactly_the_literal_matches(
            a in "[aAbB_é]{0,4}",
            b in "[aAbBÉ_]{0,4}",
        ) {
            prop_assume!(!a.is_empty() && !b.is_empty());
            prop_assert_eq!(file_name_compare(os(&a), os(&b)) == Ordering::Equal, m(&a, &b));
            prop_assert_eq!(
                compare_with(os(&a), os(&b), Collation::CaseSensitive) == Ordering::Equal,
                ms(&a, &b)
            );
        }
    }
}
