//! A TCP proxy that can black-hole traffic: how the tests cut a network
//! link between two processes on loopback.
//!
//! While blocked, a proxy forwards nothing in either direction and answers
//! nothing: bytes are read and dropped, new connections are accepted and
//! left hanging, as behind a partition (the sender sees timeouts, not
//! resets). When unblocked, every connection that lost bytes is closed, so
//! that its ends reconnect cleanly; new connections are forwarded again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Proxies sharing one runtime; dropping it stops them all.
pub struct Proxies {
    runtime: tokio::runtime::Runtime,
}

/// One proxy: `address` forwards to its target.
#[derive(Clone)]
pub struct Proxy {
    /// `127.0.0.1:<port>`: connect here to reach the target.
    pub address: String,
    blocked: Arc<AtomicBool>,
}

impl Proxy {
    /// Black-holes (or, with `false`, forwards again) its traffic.
    pub fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::SeqCst);
    }
}

impl Default for Proxies {
    fn default() -> Self {
        Proxies::new()
    }
}

impl Proxies {
    /// A runtime for proxies.
    pub fn new() -> Proxies {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the proxies");
        Proxies { runtime }
    }

    /// A proxy on a free loopback port to `target`.
    pub fn start(&self, target: &str) -> Proxy {
        let listener = self.runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind a proxy");
        let address = listener.local_addr().expect("its address").to_string();
        let blocked = Arc::new(AtomicBool::new(false));
        let target = target.to_owned();
        let flag = blocked.clone();
        self.runtime.spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { return };
                let _ = inbound.set_nodelay(true);
                tokio::spawn(relay(inbound, target.clone(), flag.clone()));
            }
        });
        Proxy { address, blocked }
    }
}

/// Forwards one connection both ways, dropping bytes while blocked; closes
/// it once unblocked after losing bytes.
async fn relay(mut inbound: TcpStream, target: String, blocked: Arc<AtomicBool>) {
    let mut outbound = None;
    let mut lost = blocked.load(Ordering::SeqCst);
    if !lost {
        match TcpStream::connect(&target).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                outbound = Some(stream);
            }
            Err(_) => return,
        }
    }
    let mut up = vec![0u8; 64 * 1024];
    let mut down = vec![0u8; 64 * 1024];
    loop {
        if lost && !blocked.load(Ordering::SeqCst) {
            return; // the link is back: this connection lost bytes, so close it
        }
        let tick = tokio::time::sleep(std::time::Duration::from_millis(50));
        match outbound.as_mut() {
            None => {
                tokio::select! {
                    read = inbound.read(&mut up) => if matches!(read, Ok(0) | Err(_)) { return },
                    _ = tick => {}
                }
            }
            Some(out) => {
                tokio::select! {
                    read = inbound.read(&mut up) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if blocked.load(Ordering::SeqCst) {
                                lost = true;
                            } else if out.write_all(&up[..n]).await.is_err() {
                                return;
                            }
                        }
                    },
                    read = out.read(&mut down) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if blocked.load(Ordering::SeqCst) {
                                lost = true;
                            } else if inbound.write_all(&down[..n]).await.is_err() {
                                return;
                            }
                        }
                    },
                    _ = tick => {
                        if blocked.load(Ordering::SeqCst) {
                            lost = true;
                        }
                    }
                }
            }
        }
    }
}
