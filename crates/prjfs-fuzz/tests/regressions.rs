//! Request sequences the fuzzers found, kept as named regression tests. Each
//! runs through [`Harness`], so every check of a fuzz run applies.

use prjfs_fuse::abi::*;
use prjfs_fuzz::gen::message;
use prjfs_fuzz::harness::Harness;
use zerocopy::IntoBytes;

const IDS: (u32, u32, u32) = (0, 0, 4321);

fn started() -> Harness {
    let mut h = Harness::new(true);
    let init = FuseInitIn {
        major: 7,
        minor: 40,
        flags: u32::MAX,
        flags2: u32::MAX,
        ..Default::default()
    };
    assert!(h.send(message(FUSE_INIT, 1, 0, IDS, init.as_bytes())));
    h
}

fn with_name(head: &[u8], name: &str) -> Vec<u8> {
    let mut b = head.to_vec();
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    b
}

/// The node id and open handle of a new special file `name` of type `kind`.
fn open_special(h: &mut Harness, kind: u32, name: &str, flags: i32) -> Option<u64> {
    let mknod = FuseMknodIn {
        mode: kind | 0o644,
        ..Default::default()
    };
    h.send(message(
        FUSE_MKNOD,
        10,
        FUSE_ROOT_ID,
        IDS,
        &with_name(mknod.as_bytes(), name),
    ));
    let node = *h.pools().nodes.last().expect("MKNOD answered an entry");
    assert_ne!(node, FUSE_ROOT_ID, "MKNOD succeeded");
    let open = FuseOpenIn {
        flags: flags as u32,
        open_flags: 0,
    };
    let files = h.pools().files.len();
    h.send(message(FUSE_OPEN, 11, node, IDS, open.as_bytes()));
    (h.pools().files.len() > files).then(|| *h.pools().files.last().expect("a handle"))
}

/// A forged OPEN then READ of a FIFO (the kernel itself never sends either for
/// one) hung a worker forever in `open(2)` of the on-disk FIFO. OPEN of a
/// special file is now refused; the harness's timeout would catch a hang.
#[test]
fn fifo_open_and_read_do_not_hang_a_worker() {
    let mut h = started();
    let fh = open_special(&mut h, libc::S_IFIFO, "p", libc::O_RDONLY);
    let read = FuseReadIn {
        fh: fh.unwrap_or(1),
        size: 4096,
        ..Default::default()
    };
    h.send(message(FUSE_READ, 12, FUSE_ROOT_ID, IDS, read.as_bytes()));
    assert_eq!(h.answers_to(12), 1);
    h.finish();
}

/// A forged READ of 4 GiB from a large sparse file made a worker allocate and
/// copy gigabytes (past the harness's timeout under load). READ sizes are
/// now capped at what INIT allows (`InitInfo::max_read`, 1 MiB here).
#[test]
fn huge_read_is_capped_at_max_read() {
    let mut h = started();
    let create = FuseCreateIn {
        flags: (libc::O_RDWR | libc::O_CREAT) as u32,
        mode: libc::S_IFREG | 0o644,
        ..Default::default()
    };
    let body = with_name(create.as_bytes(), "big");
    h.send(message(FUSE_CREATE, 20, FUSE_ROOT_ID, IDS, &body));
    let node = *h.pools().nodes.last().expect("CREATE answered an entry");
    let fh = *h.pools().files.last().expect("CREATE answered a handle");
    let setattr = FuseSetattrIn {
        valid: FATTR_SIZE,
        size: 1 << 33,
        ..Default::default()
    };
    h.send(message(FUSE_SETATTR, 21, node, IDS, setattr.as_bytes()));
    let read = FuseReadIn {
        fh,
        size: u32::MAX,
        ..Default::default()
    };
    // The harness checks the answer's size against `max_read`.
    h.send(message(FUSE_READ, 22, node, IDS, read.as_bytes()));
    assert_eq!(h.answers_to(22), 1);
    h.finish();
}

/// Found by the dispatcher fuzzer (seed 3): a READDIRPLUS of the root's
/// handle whose header named node 3, not handed out yet, counted the entries
/// under node 3; entry "dir" then got id 3 and became its own parent, and the
/// next request resolving a path under it (UNLINK) looped forever, growing a
/// vector. Nodes under an unknown parent are now born detached.
#[test]
fn readdirplus_under_an_unknown_node_makes_no_cycle() {
    let mut h = started();
    let open = FuseOpenIn::default();
    h.send(message(
        FUSE_OPENDIR,
        30,
        FUSE_ROOT_ID,
        IDS,
        open.as_bytes(),
    ));
    let fh = *h.pools().dirs.last().expect("OPENDIR answered a handle");
    let read = FuseReadIn {
        fh,
        size: 26272,
        ..Default::default()
    };
    h.send(message(FUSE_READDIRPLUS, 31, 3, IDS, read.as_bytes()));
    for node in [2, 3, 4] {
        h.send(message(FUSE_UNLINK, 32 + node, node, IDS, b"c\0"));
        h.send(message(FUSE_GETATTR, 40 + node, node, IDS, &[0; 16]));
    }
    h.finish();
}
