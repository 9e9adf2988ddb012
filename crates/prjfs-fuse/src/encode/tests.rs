//! Encoder tests: every expected byte sequence is written out field by field.

use super::*;
use zerocopy::FromBytes;

/// Reads host-order integers from the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split_at gave N bytes")
    }
    fn u32(&mut self) -> u32 {
        u32::from_ne_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_ne_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_ne_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_ne_bytes(self.take())
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

fn sample_attr() -> FileAttr {
    FileAttr {
        ino: 1234,
        size: 5000,
        blocks: 16,
        atime: (1_700_000_000, 1),
        mtime: (1_700_000_001, 2),
        ctime: (-1, 999_999_999),
        mode: libc::S_IFREG | 0o644,
        nlink: 1,
        uid: 1000,
        gid: 100,
        rdev: 0,
        blksize: 4096,
    }
}

#[test]
fn dirent_type_is_the_dt_value() {
    assert_eq!(dirent_type(libc::S_IFDIR | 0o755), u32::from(libc::DT_DIR));
    assert_eq!(dirent_type(libc::S_IFREG | 0o644), u32::from(libc::DT_REG));
    assert_eq!(dirent_type(libc::S_IFLNK | 0o777), u32::from(libc::DT_LNK));
    assert_eq!(dirent_type(libc::S_IFIFO), u32::from(libc::DT_FIFO));
    assert_eq!(dirent_type(0o644), u32::from(libc::DT_UNKNOWN));
}

#[test]
fn entry_out_fields() {
    let e = entry_out(
        7,
        3,
        &sample_attr(),
        Duration::new(1, 500),
        Duration::from_millis(2500),
    );
    let mut r = Reader(e.as_bytes());
    assert_eq!(r.u64(), 7, "nodeid");
    assert_eq!(r.u64(), 3, "generation");
    assert_eq!(r.u64(), 1, "entry_valid");
    assert_eq!(r.u64(), 2, "attr_valid");
    assert_eq!(r.u32(), 500, "entry_valid_nsec");
    assert_eq!(r.u32(), 500_000_000, "attr_valid_nsec");
    // fuse_attr
    assert_eq!(r.u64(), 1234, "ino");
    assert_eq!(r.u64(), 5000, "size");
    assert_eq!(r.u64(), 16, "blocks");
    assert_eq!(r.u64(), 1_700_000_000, "atime");
    assert_eq!(r.u64(), 1_700_000_001, "mtime");
    assert_eq!(r.i64(), -1, "ctime");
    assert_eq!(r.u32(), 1, "atimensec");
    assert_eq!(r.u32(), 2, "mtimensec");
    assert_eq!(r.u32(), 999_999_999, "ctimensec");
    assert_eq!(r.u32(), libc::S_IFREG | 0o644, "mode");
    assert_eq!(r.u32(), 1, "nlink");
    assert_eq!(r.u32(), 1000, "uid");
    assert_eq!(r.u32(), 100, "gid");
    assert_eq!(r.u32(), 0, "rdev");
    assert_eq!(r.u32(), 4096, "blksize");
    assert_eq!(r.u32(), 0, "flags");
    assert!(r.0.is_empty(), "fuse_entry_out is 128 bytes");
}

#[test]
fn attr_out_fields() {
    let a = attr_out(&sample_attr(), Duration::new(60, 7));
    let mut r = Reader(a.as_bytes());
    assert_eq!(r.u64(), 60, "attr_valid");
    assert_eq!(r.u32(), 7, "attr_valid_nsec");
    assert_eq!(r.u32(), 0, "dummy");
    assert_eq!(r.u64(), 1234, "attr.ino");
    assert_eq!(r.0.len(), 80, "rest of fuse_attr");
    assert_eq!(a.attr, sample_attr().to_fuse_attr());
}

#[test]
fn statfs_out_fields() {
    let s = statfs_out(&StatFs {
        blocks: 1,
        bfree: 2,
        bavail: 3,
        files: 4,
        ffree: 5,
        bsize: 4096,
        namelen: 255,
        frsize: 512,
    });
    let mut r = Reader(s.as_bytes());
    let head: Vec<u64> = (0..5).map(|_| r.u64()).collect();
    assert_eq!(head, [1, 2, 3, 4, 5], "blocks bfree bavail files ffree");
    assert_eq!(r.u32(), 4096, "bsize");
    assert_eq!(r.u32(), 255, "namelen");
    assert_eq!(r.u32(), 512, "frsize");
    assert_eq!(r.u32(), 0, "padding");
    assert_eq!(r.bytes(24), [0; 24], "spare[6]");
    assert!(r.0.is_empty());
}

#[test]
fn statfs_from_statvfs_of_a_real_directory() {
    let st = rustix::fs::statvfs("/").expect("statvfs of / should work");
    let s = StatFs::from_statvfs(&st);
    assert_eq!(s.blocks, st.f_blocks);
    assert!(s.namelen > 0 && s.bsize > 0);
}

#[test]
fn dirent_record_layout_and_padding() {
    let mut d = DirBuf::new(4096);
    assert!(d.is_empty());
    assert!(d.push(10, 1, libc::S_IFDIR | 0o755, OsStr::new("abc")));
    let mut r = Reader(d.as_bytes());
    assert_eq!(r.u64(), 10, "ino");
    assert_eq!(r.u64(), 1, "off: cookie of the next entry");
    assert_eq!(r.u32(), 3, "namelen");
    assert_eq!(r.u32(), u32::from(libc::DT_DIR), "type");
    assert_eq!(r.bytes(3), b"abc", "name");
    assert_eq!(r.bytes(5), [0; 5], "zero padding to 8 bytes");
    assert!(r.0.is_empty(), "24 + 3 rounds up to 32");
    assert!(!d.is_empty());
}

#[test]
fn dirent_records_stay_8_aligned() {
    let mut d = DirBuf::new(4096);
    let mut ends = Vec::new();
    for (i, name) in ["a", "12345678", "123456789", "1234567"].iter().enumerate() {
        assert!(d.push(i as u64 + 2, i as u64 + 1, libc::S_IFREG, OsStr::new(name)));
        ends.push(d.len());
    }
    // 24 + 1 -> 32, 24 + 8 -> 32, 24 + 9 -> 40, 24 + 7 -> 32
    assert_eq!(ends, [32, 64, 104, 136]);
    // Walk the buffer the way the kernel does.
    let mut rest = d.as_bytes();
    let mut names = Vec::new();
    while !rest.is_empty() {
        let (dirent, _) = FuseDirent::read_from_prefix(rest).expect("record header");
        let namelen = dirent.namelen as usize;
        names.push(rest[FUSE_NAME_OFFSET..FUSE_NAME_OFFSET + namelen].to_vec());
        rest = &rest[fuse_rec_align(FUSE_NAME_OFFSET + namelen)..];
    }
    assert_eq!(names, [&b"a"[..], b"12345678", b"123456789", b"1234567"]);
}

#[test]
fn dirbuf_full_refuses_without_adding() {
    // Room for exactly two 32-byte records and 31 more bytes.
    let mut d = DirBuf::new(95);
    assert!(d.push(2, 1, libc::S_IFREG, OsStr::new("a")));
    assert!(d.push(3, 2, libc::S_IFREG, OsStr::new("b")));
    let before = d.as_bytes().to_vec();
    assert!(!d.push(4, 3, libc::S_IFREG, OsStr::new("c")), "32 > 31");
    assert_eq!(d.as_bytes(), &before[..], "a refused push leaves no trace");
    assert_eq!(d.len(), 64);
}

#[test]
fn dirbuf_exact_fit() {
    let mut d = DirBuf::new(64);
    assert!(d.push(2, 1, libc::S_IFREG, OsStr::new("a")));
    assert!(d.push(3, 2, libc::S_IFREG, OsStr::new("b")));
    assert_eq!(d.len(), 64);
    assert!(!d.push(4, 3, libc::S_IFREG, OsStr::new("c")));
}

#[test]
fn dirbuf_smaller_than_one_record() {
    let mut d = DirBuf::new(31);
    assert!(!d.push(2, 1, libc::S_IFREG, OsStr::new("a")));
    assert!(d.is_empty());
    assert!(d.as_bytes().is_empty());
}

#[test]
fn direntplus_record_layout() {
    let entry = entry_out(
        9,
        0,
        &sample_attr(),
        Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut d = DirBuf::new(4096);
    assert!(d.push_plus(&entry, 5, libc::S_IFREG | 0o644, OsStr::new("file")));
    // 128 (entry_out) + 24 (dirent) + 4 (name) = 156, padded to 160.
    assert_eq!(d.len(), 160);
    let bytes = d.as_bytes();
    assert_eq!(&bytes[..128], entry.as_bytes(), "fuse_entry_out first");
    let mut r = Reader(&bytes[128..]);
    assert_eq!(r.u64(), 1234, "dirent.ino = attr.ino");
    assert_eq!(r.u64(), 5, "dirent.off");
    assert_eq!(r.u32(), 4, "namelen");
    assert_eq!(r.u32(), u32::from(libc::DT_REG), "type");
    assert_eq!(r.bytes(4), b"file");
    assert_eq!(r.bytes(4), [0; 4], "padding");
}

#[test]
fn direntplus_full() {
    let entry = FuseEntryOut::default();
    let mut d = DirBuf::new(159);
    assert!(!d.push_plus(&entry, 1, libc::S_IFREG, OsStr::new("file")));
    assert!(d.is_empty());
}

#[test]
fn inval_entry_notification_bytes() {
    let msg = inval_entry_notification(77, OsStr::new("name"));
    let mut r = Reader(&msg);
    assert_eq!(r.u32(), 16 + 16 + 4 + 1, "len: header + out + name + NUL");
    assert_eq!(r.i32(), FUSE_NOTIFY_INVAL_ENTRY, "error = notify code 3");
    assert_eq!(r.u64(), 0, "unique 0 marks a notification");
    assert_eq!(r.u64(), 77, "parent");
    assert_eq!(r.u32(), 4, "namelen, without the NUL");
    assert_eq!(r.u32(), 0, "flags");
    assert_eq!(r.bytes(5), b"name\0", "name and its NUL");
    assert!(r.0.is_empty());
}

#[test]
fn inval_inode_notification_bytes() {
    let msg = inval_inode_notification(12, -1, 0);
    let mut r = Reader(&msg);
    assert_eq!(r.u32(), 40, "len");
    assert_eq!(r.i32(), FUSE_NOTIFY_INVAL_INODE, "error = notify code 2");
    assert_eq!(r.u64(), 0, "unique");
    assert_eq!(r.u64(), 12, "ino");
    assert_eq!(r.i64(), -1, "off: attributes only");
    assert_eq!(r.i64(), 0, "len");
    assert!(r.0.is_empty());
}

#[test]
fn delete_notification_bytes() {
    let msg = delete_notification(1, 99, OsStr::new("gone"));
    let mut r = Reader(&msg);
    assert_eq!(r.u32(), 16 + 24 + 5, "len");
    assert_eq!(r.i32(), FUSE_NOTIFY_DELETE);
    assert_eq!(r.u64(), 0, "unique");
    assert_eq!(r.u64(), 1, "parent");
    assert_eq!(r.u64(), 99, "child");
    assert_eq!(r.u32(), 4, "namelen");
    assert_eq!(r.u32(), 0, "padding");
    assert_eq!(r.bytes(5), b"gone\0");
    assert!(r.0.is_empty());
}
