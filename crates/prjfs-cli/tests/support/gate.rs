//! A loopback TCP proxy that can hold the server's answers: once armed, it
//! forwards `limit` more bytes from the server and then stops forwarding
//! (the server blocks on a full socket) until opened. For putting a change
//! in the store between the first and the last bytes of a hydration,
//! deterministically.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

#[derive(Default)]
struct State {
    /// Bytes still allowed through while armed; `None`: not armed.
    allowance: Option<u64>,
    /// Armed and the allowance is used up.
    held: bool,
}

/// The proxy; its threads end when their connections close.
pub struct Gate {
    /// `http://127.0.0.1:PORT` to give the client.
    pub endpoint: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Gate {
    /// Proxy to `127.0.0.1:port`.
    pub fn start(port: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let st = state.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || copy(c2, s2, None));
                let st = st.clone();
                thread::spawn(move || copy(server, client, Some(st)));
            }
        });
        Gate { endpoint, state }
    }

    /// Let `limit` more bytes from the server through, then hold.
    pub fn arm(&self, limit: u64) {
        let mut s = self.state.0.lock().unwrap();
        s.allowance = Some(limit);
        s.held = false;
    }

    /// Whether the allowance is used up and answers are held.
    pub fn held(&self) -> bool {
        self.state.0.lock().unwrap().held
    }

    /// Forward everything again.
    pub fn open(&self) {
        let mut s = self.state.0.lock().unwrap();
        s.allowance = None;
        s.held = false;
        self.state.1.notify_all();
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream, gate: Option<Arc<(Mutex<State>, Condvar)>>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // How much may pass now (waiting while held).
        let max = match &gate {
            None => buf.len(),
            Some(g) => {
                let mut s = g.0.lock().unwrap();
                loop {
                    match s.allowance {
                        None => break buf.len(),
                        Some(0) => {
                            s.held = true;
                            s = g.1.wait(s).unwrap();
                        }
                        Some(n) => break buf.len().min(n as usize),
                    }
                }
            }
        };
        let n = match from.read(&mut buf[..max]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(g) = &gate {
            let mut s = g.0.lock().unwrap();
            if let Some(a) = s.allowance.as_mut() {
                *a = a.saturating_sub(n as u64);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
