//! Ports for servers a test starts on an address it chose beforehand: a log
//! group's nodes name each other in their configuration, a process killed
//! and started again keeps its address, and `nats-server`, `chromedriver`
//! and Alertmanager take a port as an argument.
//!
//! A port the kernel handed out for `127.0.0.1:0` and that was released
//! again lies in the ephemeral range, from which the kernel also picks the
//! local port of every outbound connection: any test's client may hold it
//! when the server binds, and the bind fails ("address already in use").
//! These ports come from below that range, where the kernel picks none by
//! itself, and each is held by a lock on a file for the life of the test
//! process, so that parallel tests (nextest runs each in its own process)
//! never pick the same one. The lock goes with the process, also when it is
//! killed.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The lowest port handed out.
const LOWEST: u16 = 10_000;

/// The lock files of the ports this process holds.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A loopback port nothing listens on, that no other test process holds and
/// that the kernel gives no outbound connection; held until this process
/// exits.
pub fn reserve() -> u16 {
    let ceiling = ephemeral_floor();
    assert!(ceiling > LOWEST + 1000, "the ephemeral port range starts at {ceiling}: no room below it for test ports");
    let span = u64::from(ceiling - LOWEST);
    let folder = std::env::temp_dir().join("klaxon-test-ports");
    std::fs::create_dir_all(&folder).expect("create the folder of port locks");
    let mut state = seed();
    for _ in 0..10_000 {
        // xorshift: a sequence of its own per process, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = LOWEST + (state % span) as u16;
        if let Some(lock) = hold(folder.join(port.to_string()))
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            HELD.lock().expect("the held ports").push(lock);
            return port;
        }
    }
    panic!("no free loopback port between {LOWEST} and {ceiling} after 10,000 tries");
}

/// `127.0.0.1:<port>` for a port from [`reserve`].
pub fn address() -> String {
    format!("127.0.0.1:{}", reserve())
}

/// The lock on `path`, unless another process holds it.
fn hold(path: PathBuf) -> Option<File> {
    let file = File::options().create(true).truncate(false).write(true).open(&path).ok()?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
    Some(file)
}

/// Where the kernel's ephemeral ports start (Linux's default when unknown).
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

fn seed() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mixed = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    mixed | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_free_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| reserve()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice: {ports:?}");
        let floor = ephemeral_floor();
        for port in ports {
            assert!((LOWEST..floor).contains(&port), "{port} is outside {LOWEST}..{floor}");
            // Nothing listens on it: a server given it can bind it.
            TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("bind {port}: {e}"));
        }
    }

    #[test]
    fn a_port_whose_lock_another_holder_has_is_not_handed_out() {
        let folder = std::env::temp_dir().join("klaxon-test-ports");
        let port = reserve();
        // A second open file holding the lock is another holder (flock locks
        // belong to the open file, not the process).
        assert!(hold(folder.join(port.to_string())).is_none(), "the lock on {port} was taken twice");
    }
}
