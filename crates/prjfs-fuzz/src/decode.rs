//! Level 1: bytes into the request decoder. [`check_decode`] asserts what
//! [`prjfs_fuse::request::decode_with`] promises for any bytes at all.

use std::os::unix::ffi::OsStrExt;

use prjfs_fuse::request::{decode_with, Negotiated, Operation};

/// The protocol minors the decoder distinguishes (body layouts change at 9
/// and 12), plus ours and one beyond.
const MINORS: [u32; 6] = [0, 8, 9, 12, 40, 99];

/// Decode `data` (its first byte picks the connection state, the rest is the
/// message) and assert the decoder's contract:
/// - it returns (never panics);
/// - `Ok` only for a buffer of at least a header whose `len` fits it, with every
///   borrowed name and payload inside `[40, len)` and names free of NUL;
/// - `Err` carries the `unique` exactly when 40 bytes of header were there.
///
/// Panics (the fuzzer's crash) when the contract is broken.
pub fn check_decode(data: &[u8]) {
    let (conf, msg) = data.split_first().unwrap_or((&0, &[]));
    let neg = Negotiated {
        minor: MINORS[usize::from(conf & 7) % MINORS.len()],
        setxattr_ext: conf & 8 != 0,
    };
    match decode_with(msg, neg) {
        Ok((header, op)) => {
            let len = header.len as usize;
            assert!(len >= 40 && len <= msg.len(), "Ok with header len {len}");
            let body = msg.as_ptr() as usize + 40..msg.as_ptr() as usize + len;
            for part in borrowed(&op) {
                let (start, end) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
                assert!(
                    part.is_empty() || (body.start <= start && end <= body.end),
                    "{op:?} borrows outside the request body"
                );
            }
            for name in names(&op) {
                assert!(!name.contains(&0), "{op:?}: a name holds a NUL");
            }
            if let Operation::Write { data, .. } = op {
                // `fuse_write_in.size` follows `fh` and `offset` in every layout.
                let size = u32::from_ne_bytes(msg[56..60].try_into().expect("4 bytes"));
                assert_eq!(data.len(), size as usize, "write payload = size field");
            }
        }
        Err(e) => {
            assert_eq!(e.unique.is_some(), msg.len() >= 40, "{e}");
        }
    }
}

/// Every byte slice an operation borrows from the request.
fn borrowed<'a>(op: &Operation<'a>) -> Vec<&'a [u8]> {
    let mut out: Vec<&[u8]> = names(op);
    match op {
        Operation::Write { data, .. } => out.push(data),
        Operation::SetXattr { value, .. } => out.push(value),
        _ => {}
    }
    out
}

/// The names an operation carries.
fn names<'a>(op: &Operation<'a>) -> Vec<&'a [u8]> {
    match *op {
        Operation::Lookup { name }
        | Operation::Unlink { name }
        | Operation::RmDir { name }
        | Operation::MkDir { name, .. }
        | Operation::MkNod { name, .. }
        | Operation::Create { name, .. }
        | Operation::SetXattr { name, .. }
        | Operation::GetXattr { name, .. }
        | Operation::RemoveXattr { name } => vec![name.as_bytes()],
        Operation::Symlink { name, target } => vec![name.as_bytes(), target.as_bytes()],
        Operation::Rename { name, newname, .. } => vec![name.as_bytes(), newname.as_bytes()],
        Operation::Link { newname, .. } => vec![newname.as_bytes()],
        _ => Vec::new(),
    }
}
