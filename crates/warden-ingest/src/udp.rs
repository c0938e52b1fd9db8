//! What the IP receivers' UDP sockets share: a larger kernel receive buffer (a burst of
//! datagrams is kept while the receiver catches up, instead of being dropped by the kernel
//! unseen) and the kernel's count of datagrams dropped on the socket, exported as a metric
//! (`warden_udp_receive_drops_total{receiver}`), since a transmitter whose datagram was
//! dropped gets no answer and only its retry tells.

use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use warden_telemetry as m;

/// The kernel receive buffer asked for (Linux caps it at `net.core.rmem_max`; the size
/// obtained is logged).
pub const RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// Asks for [`RECEIVE_BUFFER`] on `socket` and logs what the kernel granted.
pub(crate) fn enlarge_receive_buffer(socket: &UdpSocket, receiver: &'static str) {
    let s = socket2::SockRef::from(socket);
    if let Err(e) = s.set_recv_buffer_size(RECEIVE_BUFFER) {
        warn!(receiver, error = %e, "could not enlarge the UDP receive buffer");
    }
    match s.recv_buffer_size() {
        Ok(n) if n < RECEIVE_BUFFER => info!(
            receiver,
            granted = n,
            asked = RECEIVE_BUFFER,
            "UDP receive buffer smaller than asked: raise net.core.rmem_max for larger bursts"
        ),
        Ok(n) => info!(receiver, granted = n, "UDP receive buffer"),
        Err(_) => {}
    }
}

/// The socket's inode, which names it in `/proc/net/udp`.
fn inode_of(socket: &UdpSocket) -> Option<u64> {
    use std::os::fd::AsRawFd as _;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
    let text = link.to_string_lossy();
    text.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The `drops` column of the line of `/proc/net/udp{,6}` (`table`) whose inode is `inode`.
/// Pure, for tests.
pub(crate) fn drops_in(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        (cols.get(9)?.parse::<u64>().ok()? == inode)
            .then(|| cols.get(12)?.parse().ok())
            .flatten()
    })
}

/// Publishes the kernel's drop count for `socket` every few seconds until `shutdown`.
pub(crate) async fn watch_drops(
    socket: std::sync::Arc<UdpSocket>,
    receiver: &'static str,
    shutdown: CancellationToken,
) {
    let Some(inode) = inode_of(&socket) else {
        return;
    };
    metrics::counter!(m::UDP_RECEIVE_DROPS, "receiver" => receiver).absolute(0);
    let mut last = 0;
    loop {
        let drops = ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .find_map(|t| drops_in(&t, inode));
        if let Some(n) = drops {
            if n > last {
                warn!(
                    receiver,
                    dropped = n - last,
                    total = n,
                    "the kernel dropped UDP datagrams before Warden read them (their senders get no answer and retry)"
                );
                last = n;
            }
            metrics::counter!(m::UDP_RECEIVE_DROPS, "receiver" => receiver).absolute(n);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_drops_column_of_the_socket_s_line_is_read() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n\
  120: 0100007F:270F 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 424242 2 0000000000000000 3549        \n\
  121: 0100007F:2710 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 424243 2 0000000000000000 0           \n";
        assert_eq!(super::drops_in(table, 424_242), Some(3549));
        assert_eq!(super::drops_in(table, 424_243), Some(0));
        assert_eq!(super::drops_in(table, 1), None);
        assert_eq!(super::drops_in("", 1), None);
    }

    #[tokio::test]
    async fn a_bound_socket_is_found_in_proc_with_no_drops() {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        super::enlarge_receive_buffer(&s, "test");
        let inode = super::inode_of(&s).expect("inode");
        let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
        assert_eq!(super::drops_in(&table, inode), Some(0));
    }
}
