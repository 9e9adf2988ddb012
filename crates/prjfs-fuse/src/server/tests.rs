//! Tests of [`Server`] without a kernel: messages in, answers from a [`Recorder`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use zerocopy::IntoBytes;

use super::*;
use crate::abi::*;
use crate::transport::{Recorded, Recorder};

/// Answers LOOKUP `ok` with an empty success, LOOKUP `panic` by panicking,
/// LOOKUP `later` from another thread, keeps GETATTR pending (until an
/// interrupt), and counts forgets.
#[derive(Default)]
struct TestFs {
    forgets: AtomicUsize,
    inits: AtomicUsize,
}

impl Filesystem for TestFs {
    fn init(&self, _info: &InitInfo) {
        self.inits.fetch_add(1, Ordering::SeqCst);
    }

    fn dispatch(&self, req: Request<'_>, reply: Reply) {
        match req.op {
            Operation::Lookup { name } if name == "ok" => reply.ok(),
            Operation::Lookup { name } if name == "panic" => panic!("test panic in dispatch"),
            Operation::Lookup { name } if name == "later" => {
                std::thread::spawn(move || reply.error(libc::ENOENT));
            }
            Operation::GetAttr { .. } => {
                // Answered by the interrupt hook only.
                let slot = Arc::new(Mutex::new(None::<Reply>));
                let hook_slot = slot.clone();
                reply.on_interrupt(move || {
                    if let Some(r) = hook_slot.lock().unwrap().take() {
                        r.error(libc::EINTR)
                    }
                });
                *slot.lock().unwrap() = Some(reply);
            }
            _ => reply.error(libc::ENOSYS),
        }
    }

    fn forget(&self, _req: Request<'_>) {
        self.forgets.fetch_add(1, Ordering::SeqCst);
    }
}

fn message(opcode: u32, unique: u64, body: &[u8]) -> Vec<u8> {
    let mut msg = FuseInHeader {
        len: (40 + body.len()) as u32,
        opcode,
        unique,
        nodeid: FUSE_ROOT_ID,
        ..Default::default()
    }
    .as_bytes()
    .to_vec();
    msg.extend_from_slice(body);
    msg
}

fn init_message(unique: u64, major: u32) -> Vec<u8> {
    let init = FuseInitIn {
        major,
        minor: 40,
        max_readahead: 1 << 20,
        flags: FUSE_INIT_EXT as u32,
        ..Default::default()
    };
    message(FUSE_INIT, unique, init.as_bytes())
}

fn server() -> (Arc<Recorder>, Arc<TestFs>, Server<TestFs>) {
    let rec = Arc::new(Recorder::new());
    let fs = Arc::new(TestFs::default());
    let server = Server::new(rec.clone(), SessionConfig::default(), fs.clone());
    (rec, fs, server)
}

fn started() -> (Arc<Recorder>, Arc<TestFs>, Server<TestFs>) {
    let (rec, fs, server) = server();
    server.handle(&init_message(1, 7)).expect("INIT succeeds");
    let init = rec.take();
    assert_eq!(init.len(), 1);
    assert_eq!((init[0].unique, init[0].error), (1, 0));
    (rec, fs, server)
}

fn answers(rec: &Recorder) -> Vec<(u64, i32)> {
    rec.take()
        .iter()
        .map(|m: &Recorded| {
            assert_eq!(
                m.len as usize, m.written,
                "header length matches the message"
            );
            (m.unique, m.error)
        })
        .collect()
}

#[test]
fn init_first_then_requests() {
    let (rec, fs, server) = server();
    server.handle(&message(FUSE_LOOKUP, 5, b"ok\0")).unwrap();
    assert_eq!(answers(&rec), [(5, -libc::EIO)], "nothing but INIT first");
    assert!(server.init_info().is_none());
    server.handle(&init_message(6, 8)).unwrap();
    assert_eq!(
        answers(&rec),
        [(6, 0)],
        "a newer major is answered with ours"
    );
    server.handle(&init_message(7, 7)).unwrap();
    assert_eq!(answers(&rec), [(7, 0)]);
    assert_eq!(server.init_info().map(|i| i.minor), Some(40));
    assert_eq!(fs.inits.load(Ordering::SeqCst), 1);
    server.handle(&message(FUSE_LOOKUP, 8, b"ok\0")).unwrap();
    assert_eq!(answers(&rec), [(8, 0)]);
}

#[test]
fn bad_init_is_answered_and_fatal() {
    let (rec, _, server) = server();
    assert!(server.handle(&init_message(3, 6)).is_err());
    assert_eq!(answers(&rec), [(3, -libc::EPROTO)]);
    // An INIT whose body is too short to hold major and minor.
    assert!(server.handle(&message(FUSE_INIT, 4, &[7, 0, 0])).is_err());
    assert_eq!(answers(&rec), [(4, -libc::EIO)]);
    // No readable header: nothing to answer.
    assert!(server.handle(&[0u8; 20]).is_err());
    assert!(rec.is_empty());
}

#[test]
fn undecodable_requests_get_eio_unless_headerless() {
    let (rec, _, server) = started();
    server.handle(&message(FUSE_LOOKUP, 9, b"no-nul")).unwrap();
    let mut bad_len = message(FUSE_STATFS, 10, &[]);
    bad_len[0] = 200; // len beyond the buffer
    server.handle(&bad_len).unwrap();
    server.handle(&bad_len[..39]).unwrap();
    assert_eq!(answers(&rec), [(9, -libc::EIO), (10, -libc::EIO)]);
}

#[test]
fn forgets_get_no_answer_and_reach_the_fs() {
    let (rec, fs, server) = started();
    server
        .handle(&message(
            FUSE_FORGET,
            11,
            FuseForgetIn { nlookup: 1 }.as_bytes(),
        ))
        .unwrap();
    let mut batch = FuseBatchForgetIn { count: 1, dummy: 0 }.as_bytes().to_vec();
    batch.extend_from_slice(
        FuseForgetOne {
            nodeid: 2,
            nlookup: 1,
        }
        .as_bytes(),
    );
    server
        .handle(&message(FUSE_BATCH_FORGET, 12, &batch))
        .unwrap();
    assert!(rec.is_empty());
    assert_eq!(fs.forgets.load(Ordering::SeqCst), 2);
}

#[test]
fn panics_are_answered_eio_and_late_answers_arrive() {
    let (rec, _, server) = started();
    server
        .handle(&message(FUSE_LOOKUP, 13, b"panic\0"))
        .unwrap();
    assert_eq!(answers(&rec), [(13, -libc::EIO)]);
    server
        .handle(&message(FUSE_LOOKUP, 14, b"later\0"))
        .unwrap();
    assert!(rec.wait_until(Duration::from_secs(5), |m| m.len() == 1));
    assert_eq!(answers(&rec), [(14, -libc::ENOENT)]);
    assert_eq!(server.inflight(), 0);
}

#[test]
fn interrupts() {
    let (rec, _, server) = started();
    let interrupt = |unique, target: u64| {
        message(
            FUSE_INTERRUPT,
            unique,
            FuseInterruptIn { unique: target }.as_bytes(),
        )
    };
    // Unknown target: EAGAIN for the interrupt itself.
    server.handle(&interrupt(15, 999)).unwrap();
    assert_eq!(answers(&rec), [(15, -libc::EAGAIN)]);
    // A pending request: the interrupt is not answered, the request is.
    let getattr = FuseGetattrIn::default();
    server
        .handle(&message(FUSE_GETATTR, 16, getattr.as_bytes()))
        .unwrap();
    assert!(rec.is_empty());
    assert_eq!(server.inflight(), 1);
    server.handle(&interrupt(17, 16)).unwrap();
    assert_eq!(answers(&rec), [(16, -libc::EINTR)]);
    assert_eq!(server.inflight(), 0);
}
