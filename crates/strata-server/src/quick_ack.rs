//! Accepted connections that acknowledge every read at once (`TCP_QUICKACK`, Linux).
//!
//! A client that leaves Nagle's algorithm on (the released `kurrentdb` Rust client does)
//! holds back its second small write — the DATA frame after a call's HEADERS — until the
//! first is acknowledged. Linux delays that acknowledgement by up to 40 ms, hoping to carry
//! it on an answer the server cannot give before the DATA frame arrives: every call would
//! wait for the timer. The kernel leaves quick-ack mode by itself, so it is re-armed after
//! each read that returned data, which also sends the pending acknowledgement at once.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// How long to wait before accepting again after `accept` failed (out of file
/// descriptors and the like): back off rather than spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// A server-side TCP connection: no Nagle delays on what it sends, no delayed
/// acknowledgements of what it receives.
#[derive(Debug)]
pub(crate) struct QuickAckStream {
    tcp: TcpStream,
}

impl QuickAckStream {
    pub(crate) fn new(tcp: TcpStream) -> Self {
        // gRPC answers are small and latency-bound.
        let _ = tcp.set_nodelay(true);
        let stream = Self { tcp };
        stream.rearm();
        stream
    }

    /// Failing is harmless (the connection only loses the optimisation), so errors are
    /// ignored.
    fn rearm(&self) {
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(&self.tcp).set_tcp_quickack(true);
    }
}

impl AsyncRead for QuickAckStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let filled_before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > filled_before {
            self.rearm();
        }
        polled
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Accepts the next connection, retrying (after a pause) when accepting fails.
pub(crate) async fn accept(listener: &TcpListener) -> (QuickAckStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => return (QuickAckStream::new(tcp), peer),
            Err(error) => {
                let address = listener.local_addr().ok();
                tracing::warn!(%error, ?address, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Request/answer exchanges put a Linux socket into delayed-ACK ("ping-pong") mode;
    /// after each read the wrapper must have switched it back to quick-ack mode.
    #[tokio::test]
    async fn quick_ack_mode_is_rearmed_after_every_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = accept(&listener).await;
        let mut byte = [0_u8; 1];
        for round in 0..20_u8 {
            client.write_all(&[round]).await.unwrap();
            server.read_exact(&mut byte).await.unwrap();
            assert_eq!(byte[0], round);
            let in_quick_ack = socket2::SockRef::from(&server.tcp).tcp_quickack().unwrap();
            assert!(
                in_quick_ack,
                "after read {round} the socket delays its ACKs"
            );
            server.write_all(&byte).await.unwrap();
            client.read_exact(&mut byte).await.unwrap();
        }
    }
}
