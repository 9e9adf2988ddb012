//! Name rules of spec §6: matching with DOS wildcards, collation, validation.
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
/// (spec §6). An empty or absent pattern matches everything.
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

/// ProjFS collation (spec §6): ordinal comparison of the upper-cased names, so `_`
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
