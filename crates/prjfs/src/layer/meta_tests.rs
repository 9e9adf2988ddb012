//! Unit tests of the item record and root marker formats ([`super`]).

use super::*;

fn sample() -> Record {
    Record {
        state: OnDiskState::PLACEHOLDER | OnDiskState::HYDRATED_PLACEHOLDER,
        kind: FileKind::File,
        size: 123_456_789_012,
        mtime: (1_700_000_000, 999_999_999),
        atime: (-5, 1),
        version: VersionInfo {
            provider_id: vec![7; VERSION_ID_MAX],
            content_id: b"abc".to_vec(),
        },
        origin: Some(PathBuf::from("dir/ø/file")),
        listed: false,
    }
}

fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - 4);
    let crc = crc32(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// The record of a hydrated 4 KiB file of the dir provider, with the
/// provider's content id (inode, size, mtime in ns as varints) for a
/// large inode number, and an atime a day after the mtime.
fn dir_provider_file(at: &Path) -> Record {
    let mtime = (1_764_500_000, 123_456_789);
    let mut content_id = Vec::new();
    put_varint(&mut content_id, u128::from(u32::MAX));
    put_varint(&mut content_id, 4096);
    put_varint(&mut content_id, zigzag(total_nanos(mtime)));
    Record {
        state: OnDiskState::PLACEHOLDER | OnDiskState::HYDRATED_PLACEHOLDER,
        kind: FileKind::File,
        size: 4096,
        mtime,
        atime: (mtime.0 + 86_400, 987_654_321),
        version: VersionInfo {
            provider_id: b"prjfs-dir".to_vec(),
            content_id,
        },
        origin: Some(at.to_path_buf()),
        listed: false,
    }
}

#[test]
fn crc32_known_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn varints_and_zigzag_round_trip() {
    for v in [0u128, 1, 127, 128, 300, u128::from(u64::MAX), u128::MAX] {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        let mut r = Reader { buf: &out, pos: 0 };
        assert_eq!(r.varint().expect("valid varint"), v);
        assert_eq!(r.pos, out.len());
    }
    for v in [0i128, -1, 1, i128::from(i64::MIN), i128::MAX, i128::MIN] {
        assert_eq!(unzigzag(zigzag(v)), v);
    }
    assert_eq!(zigzag(-1), 1);
    assert_eq!(zigzag(1), 2);
    // Longer than needed, and more than 128 bits.
    let mut r = Reader {
        buf: &[0x80, 0x00],
        pos: 0,
    };
    assert!(r.varint().unwrap_err().contains("longer"));
    let too_long = [0xffu8; 19];
    let mut r = Reader {
        buf: &too_long,
        pos: 0,
    };
    assert!(r.varint().unwrap_err().contains("range"));
}

#[test]
fn round_trip_every_kind_state_and_origin() {
    let states = [1u32, 3, 5, 7, 8, 16, 1 | 16];
    let here = Path::new("dir/ø/file");
    let times = [
        ((1_700_000_000, 999_999_999), (1_700_000_000, 999_999_999)),
        ((1_700_000_000, 5), (1_700_000_001, 0)),
        ((-5, 1), (i64::MAX, 999_999_999)),
        ((i64::MIN, 0), (i64::MAX, 999_999_999)),
        ((i64::MAX, 999_999_999), (i64::MIN, 0)),
    ];
    let ids: [&[u8]; 6] = [
        b"",
        b"prjfs-dir",
        b"git",
        b"prjfs-archive",
        b"s3",
        b"prjfs-mem",
    ];
    for kind in [FileKind::File, FileKind::Directory, FileKind::Symlink] {
        for state in states {
            for origin in [None, Some(here), Some(Path::new("elsewhere/x"))] {
                for (mtime, atime) in times {
                    for id in ids {
                        for listed in [false, true] {
                            let r = Record {
                                kind,
                                state: OnDiskState(state),
                                origin: origin.map(Path::to_path_buf),
                                mtime,
                                atime,
                                listed,
                                version: VersionInfo {
                                    provider_id: id.to_vec(),
                                    content_id: vec![9; 20],
                                },
                                ..sample()
                            };
                            for bytes in [r.encode(), r.encode_at(here)] {
                                assert!(bytes.len() <= MAX_RECORD_LEN);
                                let back = Record::decode(&bytes, here).expect("valid record");
                                assert_eq!(back, r);
                            }
                        }
                    }
                }
            }
        }
    }
    let long = Record {
        origin: Some(PathBuf::from("a".repeat(MAX_ORIGIN_LEN))),
        version: VersionInfo {
            provider_id: vec![1; VERSION_ID_MAX],
            content_id: vec![2; VERSION_ID_MAX],
        },
        size: u64::MAX,
        mtime: (i64::MIN, 999_999_999),
        atime: (i64::MAX, 999_999_999),
        ..sample()
    };
    let bytes = long.encode();
    assert!(bytes.len() <= MAX_RECORD_LEN);
    assert_eq!(Record::decode(&bytes, here).expect("valid"), long);
    let long_here = long.encode_at(long.origin.as_deref().expect("set"));
    assert_eq!(long_here.len(), bytes.len() - 2 - MAX_ORIGIN_LEN);
    assert_eq!(
        Record::decode(&long_here, long.origin.as_deref().expect("set")).expect("valid"),
        long
    );
}

#[test]
fn an_origin_left_out_is_the_path_the_record_is_read_at() {
    let here = Path::new("a/b");
    let r = Record {
        origin: Some(here.to_path_buf()),
        ..sample()
    };
    let implicit = r.encode_at(here);
    let stored = r.encode();
    assert!(origin_is_implicit(&implicit));
    assert!(!origin_is_implicit(&stored));
    assert_eq!(implicit.len() + 1 + here.as_os_str().len(), stored.len());
    // Read where it was written: the same record, either way.
    assert_eq!(Record::decode(&implicit, here).expect("valid"), r);
    assert_eq!(Record::decode(&stored, here).expect("valid"), r);
    // Read somewhere else (which is why moves store it first): only the
    // stored origin survives.
    let moved = Path::new("c/d");
    let read = Record::decode(&implicit, moved).expect("valid");
    assert_eq!(read.origin.as_deref(), Some(moved));
    let read = Record::decode(&stored, moved).expect("valid");
    assert_eq!(read.origin.as_deref(), Some(here));
    // An origin elsewhere is stored by encode_at too; none stays none.
    assert!(!origin_is_implicit(&r.encode_at(moved)));
    let none = Record {
        origin: None,
        ..sample()
    };
    assert!(!origin_is_implicit(&none.encode_at(here)));
    assert_eq!(
        Record::decode(&none.encode_at(here), here).expect("valid"),
        none
    );
    // Older formats always store it.
    assert!(!origin_is_implicit(&encode_v2(&r, FORMAT_V2)));
}

#[test]
fn typical_records_fit_in_an_ext4_inode() {
    let at = Path::new("src/module/file-00123.rs");
    let dir = dir_provider_file(at);
    let bytes = dir.encode_at(at);
    assert!(
        bytes.len() <= EXT4_INODE_BUDGET,
        "dir provider: {} bytes",
        bytes.len()
    );
    assert_eq!(Record::decode(&bytes, at).expect("valid"), dir);
    // The same record in format 2 did not fit (the reason for format 3).
    assert!(encode_v2(&dir, FORMAT_V2).len() > EXT4_INODE_BUDGET);
    // Dirty, and a directory placeholder: no bigger.
    let dirty = Record {
        state: dir.state | OnDiskState::DIRTY_PLACEHOLDER,
        ..dir.clone()
    };
    assert!(dirty.encode_at(at).len() <= EXT4_INODE_BUDGET);
    // A file of 4 GiB whose source was last read three years after it
    // was written (the longest atime delta and size varints in common
    // use), its content id as long as the provider makes it.
    let mut content_id = Vec::new();
    for v in [
        u128::from(u32::MAX),
        1 << 32,
        zigzag(total_nanos(dir.mtime)),
    ] {
        put_varint(&mut content_id, v);
    }
    let old = Record {
        size: 1 << 32,
        atime: (dir.mtime.0 + 3 * 365 * 86_400, 5),
        version: VersionInfo {
            provider_id: b"prjfs-dir".to_vec(),
            content_id,
        },
        ..dir.clone()
    };
    let n = old.encode_at(at).len();
    assert!(
        n <= EXT4_INODE_BUDGET,
        "a big file read years later: {n} bytes"
    );
    // git: kind byte and a SHA-1 (or SHA-256) object id; commit times,
    // atime = mtime.
    for oid_len in [20, 32] {
        let git = Record {
            mtime: (1_764_500_000, 0),
            atime: (1_764_500_000, 0),
            version: VersionInfo {
                provider_id: b"git".to_vec(),
                content_id: vec![b'f'; 1 + oid_len],
            },
            ..dir.clone()
        };
        let n = git.encode_at(at).len();
        assert!(
            n <= EXT4_INODE_BUDGET,
            "git ({oid_len}-byte oids): {n} bytes"
        );
    }
    // archive: 20-byte content id, atime = mtime, whole seconds.
    let archive = Record {
        mtime: (1_764_500_000, 0),
        atime: (1_764_500_000, 0),
        size: 1 << 30,
        version: VersionInfo {
            provider_id: b"prjfs-archive".to_vec(),
            content_id: vec![3; 20],
        },
        ..dir.clone()
    };
    let n = archive.encode_at(at).len();
    assert!(n <= EXT4_INODE_BUDGET, "archive: {n} bytes");
    // Marks and tombstones are tiny.
    let mark = Record {
        state: OnDiskState::FULL,
        version: VersionInfo::default(),
        origin: None,
        ..dir
    };
    assert!(mark.encode().len() <= 32);
}

#[test]
fn versions_1_and_2_still_decode() {
    let r = sample();
    let here = Path::new("somewhere/else");
    let v2 = encode_v2(&r, FORMAT_V2);
    assert_eq!(Record::decode(&v2, here).expect("version 2 is read"), r);
    let v1 = encode_v2(&r, FORMAT_V1);
    let decoded = Record::decode(&v1, here).expect("version 1 is read");
    assert_eq!(
        decoded,
        Record {
            origin: None,
            ..r.clone()
        }
    );
    // Written back, they become version 3.
    assert_eq!(decoded.encode()[2], FORMAT_VERSION);
    for old in [&v1, &v2] {
        for len in 0..old.len() {
            assert!(
                Record::decode(&old[..len], here).is_err(),
                "prefix of {len}"
            );
        }
        let mut flipped = old.clone();
        flipped[20] ^= 1;
        assert_eq!(
            Record::decode(&flipped, here).unwrap_err(),
            "checksum mismatch"
        );
    }
    let mut bad_version = v2.clone();
    bad_version[4] = 3;
    assert!(Record::decode(&bad_version, here)
        .unwrap_err()
        .contains("unsupported format version 3"));
    let mut flag = v2;
    flag[HEADER_LEN_V2 + 2 + VERSION_ID_MAX + 3] = 2;
    assert!(Record::decode(&reseal(flag), here)
        .unwrap_err()
        .contains("origin flag"));
}

#[test]
fn corrupt_records_are_rejected() {
    let here = Path::new("a/b");
    for good in [
        sample().encode(),
        sample().encode_at(Path::new("dir/ø/file")),
        dir_provider_file(here).encode_at(here),
    ] {
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert_eq!(Record::decode(&bad_magic, here).unwrap_err(), "bad magic");

        let mut bad_version = good.clone();
        bad_version[2] = 4;
        assert!(Record::decode(&bad_version, here)
            .unwrap_err()
            .contains("unsupported format version 4"));

        // Every single bit flipped after the version byte is caught.
        for i in 3..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                assert!(Record::decode(&bad, here).is_err(), "bit {bit} of byte {i}");
            }
        }
        for len in 0..good.len() {
            assert!(
                Record::decode(&good[..len], here).is_err(),
                "prefix of {len} bytes"
            );
        }
        let mut longer = good.clone();
        longer.insert(good.len() - 4, 0);
        assert!(Record::decode(&reseal(longer), here)
            .unwrap_err()
            .contains("trailing"));
    }
    assert!(Record::decode(&[], here).is_err());
}

#[test]
fn bad_fields_with_valid_checksum_are_rejected() {
    let here = Path::new("a/b");
    let r = Record {
        version: VersionInfo {
            provider_id: b"git".to_vec(),
            content_id: b"abc".to_vec(),
        },
        mtime: (1, 2),
        atime: (1, 3),
        size: 5,
        ..sample()
    };
    // magic, version, flags, state, size, mtime secs, mtime nsecs, atime
    // delta, provider id (known: 130), content id (3 bytes), origin.
    let good = r.encode();
    assert_eq!(good[5..10], [5, 2, 2, 2, KNOWN_ID_BASE + 1]);
    let err = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        Record::decode(&reseal(b), here).unwrap_err()
    };
    assert!(err(&|b| b[3] |= 0x40).contains("unknown flags"));
    assert!(err(&|b| b[3] &= !FLAG_KIND).contains("kind"));
    assert!(err(&|b| b[3] |= 3 << ORIGIN_SHIFT).contains("origin mode"));
    assert!(err(&|b| b[4] = 0).contains("state is 0"));
    assert!(err(&|b| b[4] = 8 | 16).contains("Full"));
    assert!(err(&|b| b[4] = 0x21).contains("unknown state bits"));
    assert!(err(&|b| b[9] = KNOWN_ID_BASE + 100).contains("unknown provider id"));
    assert!(err(&|b| b[10] = 129).contains("version id"));
    // nanoseconds of 10^9 (a varint of five bytes instead of one).
    let nsecs = err(&|b| {
        let mut ns = Vec::new();
        put_varint(&mut ns, 1_000_000_000);
        b.splice(7..8, ns);
    });
    assert!(nsecs.contains("nanoseconds"), "{nsecs}");
    // An atime delta of 0 must be the flag.
    assert!(err(&|b| b[8] = 0).contains("atime delta 0"));
    // A stored origin too long, absolute, or with a NUL.
    let origin_at = 10 + 1 + 3;
    assert_eq!(usize::from(good[origin_at]), "dir/ø/file".len());
    assert!(err(&|b| b[origin_at + 1] = b'/').contains("relative"));
    assert!(err(&|b| b[origin_at + 1] = 0).contains("relative"));
    let long = err(&|b| {
        let mut len = Vec::new();
        put_varint(&mut len, MAX_ORIGIN_LEN as u128 + 1);
        b.splice(origin_at..origin_at + 1, len);
    });
    assert!(long.contains("origin of"), "{long}");
}

#[test]
fn root_marker_round_trip_and_corruption() {
    let bytes = encode_root_marker("/src/ø", "dir");
    assert_eq!(
        decode_root_marker(&bytes).expect("valid"),
        ("/src/ø".to_string(), "dir".to_string())
    );
    let mut bad = bytes.clone();
    bad[7] ^= 1;
    assert!(decode_root_marker(&bad).is_err());
    assert!(decode_root_marker(&bytes[..bytes.len() - 1]).is_err());
}
