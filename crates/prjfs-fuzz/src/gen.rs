//! Level 2 inputs: the fuzzer's bytes read as a sequence of FUSE requests.
//!
//! Each request starts well-formed (the kernel's layout for its opcode) with
//! fields drawn from menus of telling values: node ids, handles and names the
//! file system handed out earlier in the same run ([`Pools`], filled from its
//! answers), the root, zero, unknown and extreme ids, names with slashes, dots,
//! NULs and lengths around `NAME_MAX`, offsets and sizes at page and type
//! boundaries. About one request in five is then mutated at the byte level
//! (bit flips, truncation, trailing garbage, a wrong `len`, `total_extlen` or
//! opcode), and some are raw bytes from the input.
//!
//! Invariant: [`next_message`] builds a message for any input; [`guard`] then
//! keeps the run from touching the machine (see there).

use prjfs_fuse::abi::*;
use prjfs_fuse::request::{decode, Operation};
use zerocopy::IntoBytes;

use crate::input::Input;

/// What earlier answers handed out, for later requests to name.
pub struct Pools {
    /// Node ids (the root first).
    pub nodes: Vec<u64>,
    /// File handles from OPEN and CREATE.
    pub files: Vec<u64>,
    /// Directory handles from OPENDIR.
    pub dirs: Vec<u64>,
    /// Names seen in listings or created.
    pub names: Vec<Vec<u8>>,
    /// Uniques sent so far (targets for INTERRUPT).
    pub uniques: Vec<u64>,
    next_unique: u64,
    /// This process's id: requests from it take the provider's own-thread paths.
    pub own_pid: u32,
}

/// Pools hold at most this many entries each (the oldest go first).
const POOL_MAX: usize = 64;

impl Pools {
    /// Pools knowing the root and the names of the fuzzing tree.
    pub fn new(names: &[&str]) -> Self {
        Self {
            nodes: vec![FUSE_ROOT_ID],
            files: Vec::new(),
            dirs: Vec::new(),
            names: names.iter().map(|n| n.as_bytes().to_vec()).collect(),
            uniques: Vec::new(),
            next_unique: 2,
            own_pid: std::process::id(),
        }
    }

    /// Remember a value handed out by the file system.
    pub fn add(pool: &mut Vec<u64>, v: u64) {
        if !pool.contains(&v) {
            if pool.len() >= POOL_MAX {
                pool.remove(0);
            }
            pool.push(v);
        }
    }

    /// Remember a name.
    pub fn add_name(&mut self, name: &[u8]) {
        if !self.names.iter().any(|n| n == name) {
            if self.names.len() >= POOL_MAX {
                self.names.remove(0);
            }
            self.names.push(name.to_vec());
        }
    }

    fn unique(&mut self, inp: &mut Input<'_>) -> u64 {
        self.next_unique += 1;
        let u = match inp.below(40) {
            0 => 0,
            1 => u64::MAX,
            2 => self.next_unique | (1 << 63), // FUSE_UNIQUE_RESEND
            3 => self.uniques.last().copied().unwrap_or(1),
            _ => self.next_unique,
        };
        if self.uniques.len() >= POOL_MAX {
            self.uniques.remove(0);
        }
        self.uniques.push(u);
        u
    }
}

fn from_pool(inp: &mut Input<'_>, pool: &[u64], fallback: u64) -> u64 {
    if pool.is_empty() {
        fallback
    } else {
        pool[inp.below(pool.len())]
    }
}

fn nodeid(inp: &mut Input<'_>, p: &Pools) -> u64 {
    match inp.below(16) {
        0 => 0,
        1 => FUSE_ROOT_ID,
        2 => inp.pick(&[u64::MAX, 2, 3, 1 << 32]),
        3 => inp.u64(),
        _ => from_pool(inp, &p.nodes, FUSE_ROOT_ID),
    }
}

fn fh(inp: &mut Input<'_>, pool: &[u64], other: &[u64]) -> u64 {
    match inp.below(12) {
        0 => 0,
        1 => inp.pick(&[u64::MAX, 1, 2]),
        2 => inp.u64(),
        3 => from_pool(inp, other, 1),
        _ => from_pool(inp, pool, 1),
    }
}

fn offset(inp: &mut Input<'_>) -> u64 {
    match inp.below(10) {
        0..=2 => 0,
        3 => u64::from(inp.u16()),
        4 => 4096 * u64::from(inp.u8()) + inp.pick(&[0, 1, 4095]),
        5 => inp.pick(&[u64::MAX, i64::MAX as u64, (i64::MAX as u64) + 1, 1 << 40]),
        6 => inp.u64(),
        _ => u64::from(inp.u8()),
    }
}

fn size(inp: &mut Input<'_>) -> u32 {
    match inp.below(8) {
        0 => 0,
        1 => inp.pick(&[1, 4096, 4097, 128 << 10, (1 << 20) + 1, u32::MAX]),
        2 => inp.u32(),
        3 => u32::from(inp.u16()),
        _ => inp.pick(&[4096, 8192, 65536, 16, 200]),
    }
}

/// Names with a meaning to the file system, and some it must refuse.
const NAMES: [&[u8]; 14] = [
    b"a",
    b"new",
    b"dir2",
    b".",
    b"..",
    b"",
    b".prjfs",
    b"x/y",
    b"/",
    b"a\xff\xfe",
    b"A.TXT",
    b"user.test",
    b"trusted.x",
    b"user.prjfs.state",
];

fn name(inp: &mut Input<'_>, p: &Pools) -> Vec<u8> {
    match inp.below(12) {
        0 => NAMES[inp.below(NAMES.len())].to_vec(),
        1 => vec![b'n'; inp.pick(&[255, 256, 1024, 4096])],
        2 => {
            let n = inp.below(24);
            inp.bytes(n).to_vec()
        }
        3 => b"user.".iter().chain(inp.bytes(8)).copied().collect(),
        _ if p.names.is_empty() => b"a".to_vec(),
        _ => p.names[inp.below(p.names.len())].clone(),
    }
}

/// `name` and its NUL, as a request body carries it.
fn cname(inp: &mut Input<'_>, p: &Pools) -> Vec<u8> {
    let mut n = name(inp, p);
    n.push(0);
    n
}

fn mode(inp: &mut Input<'_>) -> u32 {
    let kind = inp.pick(&[
        libc::S_IFREG,
        libc::S_IFREG,
        libc::S_IFDIR,
        libc::S_IFIFO,
        libc::S_IFSOCK,
        libc::S_IFLNK,
        libc::S_IFCHR,
        0,
    ]);
    match inp.below(6) {
        0 => inp.u32(),
        _ => kind | inp.pick(&[0o644, 0o755, 0o000, 0o7777, 0o600]),
    }
}

fn open_flags(inp: &mut Input<'_>) -> u32 {
    let acc = inp.pick(&[libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR, 3]) as u32;
    let extra = inp.pick(&[
        0,
        libc::O_TRUNC,
        libc::O_APPEND,
        libc::O_DIRECT,
        libc::O_EXCL,
    ]) as u32;
    match inp.below(8) {
        0 => inp.u32(),
        _ => acc | extra,
    }
}

fn setattr_in(inp: &mut Input<'_>, p: &Pools) -> FuseSetattrIn {
    let valid = match inp.below(4) {
        0 => inp.u32(),
        _ => inp.pick(&[
            FATTR_SIZE,
            FATTR_SIZE | FATTR_FH,
            FATTR_MODE,
            FATTR_UID | FATTR_GID,
            FATTR_ATIME | FATTR_MTIME,
            FATTR_ATIME | FATTR_ATIME_NOW | FATTR_MTIME | FATTR_MTIME_NOW,
            FATTR_CTIME,
            0,
        ]),
    };
    FuseSetattrIn {
        valid,
        fh: fh(inp, &p.files, &p.dirs),
        size: match inp.below(3) {
            0 => offset(inp),
            _ => u64::from(inp.u16()),
        },
        atime: inp.pick(&[0, 1, u64::MAX, 1 << 62]),
        mtime: inp.pick(&[0, 1_700_000_000, u64::MAX, 1 << 62]),
        atimensec: inp.pick(&[0, 999_999_999, 1_000_000_000, u32::MAX]),
        mtimensec: inp.pick(&[0, 999_999_999, 1_000_000_000, u32::MAX]),
        mode: mode(inp),
        uid: inp.pick(&[0, 1000, u32::MAX]),
        gid: inp.pick(&[0, 1000, u32::MAX]),
        ..Default::default()
    }
}

/// The opcodes [`body`] builds, weighted toward the ones with most logic.
const OPCODES: [u32; 48] = [
    FUSE_LOOKUP,
    FUSE_LOOKUP,
    FUSE_LOOKUP,
    FUSE_GETATTR,
    FUSE_SETATTR,
    FUSE_SETATTR,
    FUSE_READLINK,
    FUSE_SYMLINK,
    FUSE_MKNOD,
    FUSE_MKDIR,
    FUSE_UNLINK,
    FUSE_RMDIR,
    FUSE_RENAME,
    FUSE_RENAME2,
    FUSE_LINK,
    FUSE_OPEN,
    FUSE_OPEN,
    FUSE_READ,
    FUSE_READ,
    FUSE_WRITE,
    FUSE_WRITE,
    FUSE_STATFS,
    FUSE_RELEASE,
    FUSE_FSYNC,
    FUSE_SETXATTR,
    FUSE_GETXATTR,
    FUSE_LISTXATTR,
    FUSE_REMOVEXATTR,
    FUSE_FLUSH,
    FUSE_OPENDIR,
    FUSE_OPENDIR,
    FUSE_READDIR,
    FUSE_READDIRPLUS,
    FUSE_READDIRPLUS,
    FUSE_RELEASEDIR,
    FUSE_FSYNCDIR,
    FUSE_ACCESS,
    FUSE_CREATE,
    FUSE_CREATE,
    FUSE_INTERRUPT,
    FUSE_FORGET,
    FUSE_BATCH_FORGET,
    FUSE_FALLOCATE,
    FUSE_LSEEK,
    FUSE_COPY_FILE_RANGE,
    FUSE_INIT,
    FUSE_DESTROY,
    FUSE_GETLK,
];

/// The body of a well-formed request of `opcode`.
fn body(inp: &mut Input<'_>, p: &Pools, opcode: u32) -> Vec<u8> {
    let mut b = Vec::new();
    let files = &p.files;
    let dirs = &p.dirs;
    match opcode {
        FUSE_LOOKUP | FUSE_UNLINK | FUSE_RMDIR | FUSE_REMOVEXATTR => b = cname(inp, p),
        FUSE_FORGET => b.extend_from_slice(
            FuseForgetIn {
                nlookup: inp.pick(&[1, 2, 0, u64::MAX]),
            }
            .as_bytes(),
        ),
        FUSE_BATCH_FORGET => {
            let n = inp.below(5);
            let count = if inp.chance(10) { inp.u32() } else { n as u32 };
            b.extend_from_slice(FuseBatchForgetIn { count, dummy: 0 }.as_bytes());
            for _ in 0..n {
                let one = FuseForgetOne {
                    nodeid: nodeid(inp, p),
                    nlookup: inp.pick(&[1, 2, u64::MAX]),
                };
                b.extend_from_slice(one.as_bytes());
            }
        }
        FUSE_GETATTR => {
            let g = FuseGetattrIn {
                getattr_flags: inp.pick(&[0, FUSE_GETATTR_FH]),
                dummy: 0,
                fh: fh(inp, files, dirs),
            };
            b.extend_from_slice(g.as_bytes());
        }
        FUSE_SETATTR => b.extend_from_slice(setattr_in(inp, p).as_bytes()),
        FUSE_SYMLINK => {
            b = cname(inp, p);
            let target = match inp.below(4) {
                0 => b"/etc/passwd".to_vec(),
                1 => b"../../..".to_vec(),
                _ => name(inp, p),
            };
            b.extend_from_slice(&target);
            b.push(0);
        }
        FUSE_MKNOD => {
            let m = FuseMknodIn {
                mode: mode(inp),
                rdev: inp.pick(&[0, 0x0103]),
                umask: inp.pick(&[0o022, 0]),
                padding: 0,
            };
            b.extend_from_slice(m.as_bytes());
            b.extend(cname(inp, p));
        }
        FUSE_MKDIR => {
            let m = FuseMkdirIn {
                mode: mode(inp),
                umask: 0o022,
            };
            b.extend_from_slice(m.as_bytes());
            b.extend(cname(inp, p));
        }
        FUSE_RENAME | FUSE_RENAME2 => {
            let newdir = nodeid(inp, p);
            if opcode == FUSE_RENAME {
                b.extend_from_slice(FuseRenameIn { newdir }.as_bytes());
            } else {
                let flags = match inp.below(6) {
                    0 => inp.u32(),
                    n => [0, 1, 2, 4, 3][n - 1],
                };
                let r = FuseRename2In {
                    newdir,
                    flags,
                    padding: 0,
                };
                b.extend_from_slice(r.as_bytes());
            }
            b.extend(cname(inp, p));
            b.extend(cname(inp, p));
        }
        FUSE_LINK => {
            b.extend_from_slice(
                FuseLinkIn {
                    oldnodeid: nodeid(inp, p),
                }
                .as_bytes(),
            );
            b.extend(cname(inp, p));
        }
        FUSE_OPEN | FUSE_OPENDIR => {
            let o = FuseOpenIn {
                flags: open_flags(inp),
                open_flags: 0,
            };
            b.extend_from_slice(o.as_bytes());
        }
        FUSE_READ | FUSE_READDIR | FUSE_READDIRPLUS => {
            let (pool, other) = if opcode == FUSE_READ {
                (files, dirs)
            } else {
                (dirs, files)
            };
            let r = FuseReadIn {
                fh: fh(inp, pool, other),
                offset: offset(inp),
                size: size(inp),
                read_flags: inp.pick(&[0, FUSE_READ_LOCKOWNER]),
                ..Default::default()
            };
            b.extend_from_slice(r.as_bytes());
        }
        FUSE_WRITE => {
            let n = match inp.below(8) {
                0 => 4096 + inp.below(200),
                1 => 0,
                _ => inp.below(64),
            };
            let data = vec![inp.u8(); n];
            let w = FuseWriteIn {
                fh: fh(inp, files, dirs),
                offset: offset(inp),
                size: n as u32,
                ..Default::default()
            };
            b.extend_from_slice(w.as_bytes());
            b.extend_from_slice(&data);
        }
        FUSE_RELEASE | FUSE_RELEASEDIR => {
            let (pool, other) = if opcode == FUSE_RELEASE {
                (files, dirs)
            } else {
                (dirs, files)
            };
            let r = FuseReleaseIn {
                fh: fh(inp, pool, other),
                ..Default::default()
            };
            b.extend_from_slice(r.as_bytes());
        }
        FUSE_FSYNC | FUSE_FSYNCDIR => {
            let f = FuseFsyncIn {
                fh: fh(inp, files, dirs),
                fsync_flags: inp.pick(&[0, 1]),
                padding: 0,
            };
            b.extend_from_slice(f.as_bytes());
        }
        FUSE_SETXATTR => {
            let n = inp.below(40);
            let s = FuseSetxattrIn {
                size: n as u32,
                flags: inp.pick(&[0, 1, 2, 3]),
                ..Default::default()
            };
            // Without FUSE_SETXATTR_EXT the kernel sends the 8-byte form.
            b.extend_from_slice(&s.as_bytes()[..FUSE_COMPAT_SETXATTR_IN_SIZE]);
            b.extend(cname(inp, p));
            b.extend_from_slice(&vec![b'v'; n]);
        }
        FUSE_GETXATTR | FUSE_LISTXATTR => {
            let g = FuseGetxattrIn {
                size: size(inp),
                padding: 0,
            };
            b.extend_from_slice(g.as_bytes());
            if opcode == FUSE_GETXATTR {
                b.extend(cname(inp, p));
            }
        }
        FUSE_FLUSH => {
            let f = FuseFlushIn {
                fh: fh(inp, files, dirs),
                ..Default::default()
            };
            b.extend_from_slice(f.as_bytes());
        }
        FUSE_ACCESS => b.extend_from_slice(
            FuseAccessIn {
                mask: inp.pick(&[0, 1, 2, 4, 7]),
                padding: 0,
            }
            .as_bytes(),
        ),
        FUSE_CREATE => {
            let c = FuseCreateIn {
                flags: open_flags(inp) | libc::O_CREAT as u32,
                mode: mode(inp),
                umask: 0o022,
                open_flags: 0,
            };
            b.extend_from_slice(c.as_bytes());
            b.extend(cname(inp, p));
        }
        FUSE_INTERRUPT => {
            let target = match inp.below(4) {
                0 => inp.u64(),
                _ => from_pool(inp, &p.uniques, 0),
            };
            b.extend_from_slice(FuseInterruptIn { unique: target }.as_bytes());
        }
        FUSE_FALLOCATE => {
            let f = FuseFallocateIn {
                fh: fh(inp, files, dirs),
                offset: offset(inp),
                length: offset(inp),
                mode: match inp.below(4) {
                    0 => inp.u32(),
                    _ => inp.pick(&[0, 1, 3, 0x10, 0x20]),
                },
                padding: 0,
            };
            b.extend_from_slice(f.as_bytes());
        }
        FUSE_LSEEK => {
            let l = FuseLseekIn {
                fh: fh(inp, files, dirs),
                offset: offset(inp),
                whence: inp.pick(&[3, 4, 0, 99]),
                padding: 0,
            };
            b.extend_from_slice(l.as_bytes());
        }
        FUSE_COPY_FILE_RANGE => {
            let c = FuseCopyFileRangeIn {
                fh_in: fh(inp, files, dirs),
                off_in: offset(inp),
                nodeid_out: nodeid(inp, p),
                fh_out: fh(inp, files, dirs),
                off_out: offset(inp),
                len: offset(inp),
                flags: 0,
            };
            b.extend_from_slice(c.as_bytes());
        }
        FUSE_INIT => b.extend_from_slice(init_in(inp).as_bytes()),
        _ => {
            let n = inp.below(64);
            b.extend_from_slice(inp.bytes(n));
        }
    }
    b
}

fn init_in(inp: &mut Input<'_>) -> FuseInitIn {
    let flags = match inp.below(4) {
        0 => inp.u64(),
        1 => 0,
        _ => u64::MAX,
    };
    FuseInitIn {
        major: inp.pick(&[7, 7, 7, 7, 7, 7, 8, 6]),
        minor: inp.pick(&[40, 40, 40, 36, 31, 12, 9, 8, 45]),
        max_readahead: 1 << 20,
        flags: flags as u32,
        flags2: (flags >> 32) as u32,
        ..Default::default()
    }
}

/// A whole message: `fuse_in_header` (with `len` right, `ids` the caller's
/// uid, gid and pid) then `body`.
pub fn message(
    opcode: u32,
    unique: u64,
    nodeid: u64,
    ids: (u32, u32, u32),
    body: &[u8],
) -> Vec<u8> {
    let h = FuseInHeader {
        len: (40 + body.len()) as u32,
        opcode,
        unique,
        nodeid,
        uid: ids.0,
        gid: ids.1,
        pid: ids.2,
        ..Default::default()
    };
    let mut msg = h.as_bytes().to_vec();
    msg.extend_from_slice(body);
    msg
}

/// The first message of a run: usually a good INIT (with fuzzed flags and
/// minor), sometimes a bad one or another request.
pub fn first_message(inp: &mut Input<'_>, p: &mut Pools) -> Vec<u8> {
    if !inp.chance(5) {
        let init = init_in(inp);
        message(FUSE_INIT, 1, 0, (0, 0, 0), init.as_bytes())
    } else {
        next_message(inp, p)
    }
}

/// The next request of a run.
pub fn next_message(inp: &mut Input<'_>, p: &mut Pools) -> Vec<u8> {
    let unique = p.unique(inp);
    if inp.chance(3) {
        // Raw bytes, header and all.
        let n = inp.below(120);
        return inp.bytes(n).to_vec();
    }
    let opcode = match inp.below(32) {
        0 => inp.u32(),
        _ => OPCODES[inp.below(OPCODES.len())],
    };
    let node = match opcode {
        FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT if inp.chance(50) => 0,
        _ => nodeid(inp, p),
    };
    let ids = match inp.below(8) {
        0 => (1000, 1000, 4321),
        1 => (inp.u32(), inp.u32(), inp.u32()),
        2 => (0, 0, p.own_pid),
        _ => (0, 0, 4321),
    };
    let body = body(inp, p, opcode);
    let mut msg = message(opcode, unique, node, ids, &body);
    if inp.chance(20) {
        mutate(inp, &mut msg);
    }
    msg
}

/// Byte-level damage to a well-formed message.
fn mutate(inp: &mut Input<'_>, msg: &mut Vec<u8>) {
    let at = |inp: &mut Input<'_>, len: usize| inp.u16() as usize % len.max(1);
    for _ in 0..=inp.below(3) {
        match inp.below(8) {
            0 if !msg.is_empty() => {
                let i = at(inp, msg.len());
                msg[i] ^= 1 << inp.below(8);
            }
            1 => {
                let n = at(inp, msg.len() + 1);
                msg.truncate(n);
            }
            2 => {
                let n = inp.below(64);
                msg.extend_from_slice(inp.bytes(n));
            }
            3 if msg.len() >= 4 => {
                let any = inp.u32();
                let len = inp.pick(&[0, 39, 40, msg.len() as u32 + 1, u32::MAX, any]);
                msg[..4].copy_from_slice(&len.to_ne_bytes());
            }
            4 if msg.len() >= 40 => {
                let any = inp.u16();
                let ext = inp.pick(&[1, 2, u16::MAX, any]);
                msg[36..38].copy_from_slice(&ext.to_ne_bytes());
            }
            5 if msg.len() >= 8 => {
                let op = OPCODES[inp.below(OPCODES.len())];
                msg[4..8].copy_from_slice(&op.to_ne_bytes());
            }
            6 if msg.len() > 40 => {
                // Cut the body's last NUL: a name that runs to the end.
                if let Some(i) = msg.iter().rposition(|&c| c == 0) {
                    msg[i] = b'z';
                }
            }
            _ if msg.len() >= 48 => {
                let i = 40 + at(inp, msg.len() - 47);
                let any = inp.u64();
                let v = inp.pick(&[0, u64::MAX, 1 << 63, 1, any]);
                msg[i..i + 8].copy_from_slice(&v.to_ne_bytes());
            }
            _ => {}
        }
    }
}

/// The largest range FALLOCATE may allocate in a run.
pub const FALLOCATE_MAX: u64 = 1 << 20;

/// Keep a run from reaching past its temporary root, whatever the bytes say:
/// a MKNOD of a character or block device becomes one of a FIFO (a forged
/// OPEN of a device node would open the machine's real device), and
/// FALLOCATE ranges are cut to [`FALLOCATE_MAX`] (a failed huge allocation
/// may keep the blocks it got). The message is decoded as the server will
/// decode it (`minor`) and patched in place.
pub fn guard(msg: &mut [u8], minor: u32) {
    let Ok((h, op)) = decode(msg, minor) else {
        return;
    };
    match (h.opcode, op) {
        (FUSE_MKNOD, Operation::MkNod { mode, .. })
            if matches!(mode & libc::S_IFMT, libc::S_IFCHR | libc::S_IFBLK) =>
        {
            let safe = (mode & !libc::S_IFMT) | libc::S_IFIFO;
            msg[40..44].copy_from_slice(&safe.to_ne_bytes());
        }
        (FUSE_FALLOCATE, Operation::Fallocate { length, .. }) if length > FALLOCATE_MAX => {
            // fuse_fallocate_in: fh, offset, then length at body offset 16.
            msg[56..64].copy_from_slice(&FALLOCATE_MAX.to_ne_bytes());
        }
        _ => {}
    }
}
