//! The console's listener over real sockets: a client that sends its request head slowly
//! (or nothing) is cut off at the header-read timeout, connections over the caps per
//! address and per listener are closed at once while the others go on working, and the
//! live-push WebSocket refuses large messages and closes when its session would have ended
//! for idleness, however much the client pings.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use common::{App, test_config};
use futures::{SinkExt as _, StreamExt as _};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use warden_console::ConsoleConfig;

/// Serves the app's console on a real socket (port 0) until the app stops.
async fn listen(app: &App) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(warden_console::serve(
        listener,
        app.console.clone(),
        app.stop.clone(),
    ));
    addr
}

/// A connection to `to` from the loopback address `from` (127.0.0.1, 127.0.0.2, …).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind the client side");
    socket.connect(to).await.expect("connect")
}

/// Sends `GET path` on a kept-alive connection and reads the answer's status, or `None`
/// when the server closed the connection instead of answering.
async fn get(stream: &mut TcpStream, path: &str) -> Option<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: warden.test\r\n\r\n");
    if stream.write_all(req.as_bytes()).await.is_err() {
        return None;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().expect("a length"));
                if buf.len() >= end + 4 + length {
                    let status = head.split_whitespace().nth(1).expect("a status");
                    return Some(status.parse().expect("a numeric status"));
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    read.expect("an answer or a close within 5 s")
}

/// How long the server took to close `stream` (reading and discarding whatever it sends),
/// meanwhile writing `dribble` every 200 ms if given; `None` if still open after `wait`.
async fn closed_after(
    stream: &mut TcpStream,
    dribble: Option<&[u8]>,
    wait: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(started + wait) => return None,
            r = stream.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {}
            },
            _ = tick.tick(), if dribble.is_some() => {
                if stream.write_all(dribble.unwrap_or_default()).await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_client_sending_its_headers_slowly_is_cut_off_at_the_header_timeout(pool: PgPool) {
    let app = App::with_config(
        pool,
        ConsoleConfig {
            header_read_timeout: Duration::from_secs(1),
            ..test_config()
        },
    )
    .await;
    let addr = listen(&app).await;

    // Slowloris: a request line, then one header line every 200 ms, never the blank line.
    let mut slow = connect_from([127, 0, 0, 1], addr).await;
    slow.write_all(b"GET /api/v1/me HTTP/1.1\r\nHost: warden.test\r\n")
        .await
        .expect("write");
    // A client that connects and says nothing at all.
    let mut silent = connect_from([127, 0, 0, 1], addr).await;
    // A prompt client is served meanwhile, on a connection of its own.
    let mut prompt = connect_from([127, 0, 0, 1], addr).await;
    assert_eq!(get(&mut prompt, "/api/v1/me").await, Some(401));

    let slow_closed = closed_after(&mut slow, Some(b"X-Slow: a\r\n"), Duration::from_secs(5))
        .await
        .expect("the slow client is cut off");
    assert!(
        slow_closed >= Duration::from_millis(700) && slow_closed <= Duration::from_secs(3),
        "cut off after {slow_closed:?}, expected about 1 s"
    );
    let silent_closed = closed_after(&mut silent, None, Duration::from_secs(5))
        .await
        .expect("the silent client is cut off");
    assert!(silent_closed <= Duration::from_secs(3), "{silent_closed:?}");
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_connection_over_the_cap_per_address_is_closed_while_the_others_still_work(pool: PgPool) {
    let app = App::with_config(
        pool,
        ConsoleConfig {
            max_connections: 100,
            max_connections_per_address: 2,
            ..test_config()
        },
    )
    .await;
    let addr = listen(&app).await;

    let mut first = connect_from([127, 0, 0, 1], addr).await;
    let mut second = connect_from([127, 0, 0, 1], addr).await;
    assert_eq!(get(&mut first, "/api/v1/me").await, Some(401));
    assert_eq!(get(&mut second, "/api/v1/me").await, Some(401));

    // The third from the same address is closed unanswered...
    let mut third = connect_from([127, 0, 0, 1], addr).await;
    assert_eq!(get(&mut third, "/api/v1/me").await, None);
    // ...while another address is served, and so are the first two, again.
    let mut other = connect_from([127, 0, 0, 2], addr).await;
    assert_eq!(get(&mut other, "/api/v1/me").await, Some(401));
    assert_eq!(get(&mut first, "/api/v1/me").await, Some(401));
    assert_eq!(get(&mut second, "/api/v1/me").await, Some(401));

    // A connection that closes gives its place back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut again = connect_from([127, 0, 0, 1], addr).await;
        if get(&mut again, "/api/v1/me").await == Some(401) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connection's place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_connection_over_the_listener_cap_is_closed_whatever_its_address(pool: PgPool) {
    let app = App::with_config(
        pool,
        ConsoleConfig {
            max_connections: 2,
            max_connections_per_address: 10,
            ..test_config()
        },
    )
    .await;
    let addr = listen(&app).await;
    let mut a = connect_from([127, 0, 0, 1], addr).await;
    let mut b = connect_from([127, 0, 0, 2], addr).await;
    assert_eq!(get(&mut a, "/api/v1/me").await, Some(401));
    assert_eq!(get(&mut b, "/api/v1/me").await, Some(401));
    let mut c = connect_from([127, 0, 0, 3], addr).await;
    assert_eq!(get(&mut c, "/api/v1/me").await, None);
    assert_eq!(get(&mut a, "/api/v1/me").await, Some(401));
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens the live-push socket with a session cookie and reads its `hello`.
async fn open_socket(addr: SocketAddr, cookie: &str) -> Ws {
    let mut req = format!("ws://{addr}/api/v1/ws")
        .into_client_request()
        .expect("a request");
    req.headers_mut()
        .insert("cookie", cookie.parse().expect("a header value"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("the socket opens");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    match ws.next().await {
        Some(Ok(Message::Text(t))) => assert!(t.contains("\"hello\""), "{t}"),
        other => panic!("expected hello, got {other:?}"),
    }
    ws
}

/// Whether the server ended the socket (a close frame, an error or the end of the stream)
/// within `wait`, answering its pings meanwhile and sending one of its own every 300 ms.
async fn socket_closed_within(ws: &mut Ws, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut ping = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(started + wait) => return None,
            _ = ping.tick() => {
                if ws.send(Message::Ping(b"still here".to_vec().into())).await.is_err() {
                    return Some(started.elapsed());
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return Some(started.elapsed()),
                Some(Ok(_)) => {}
            },
        }
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_websocket_message_over_the_cap_closes_the_socket(pool: PgPool) {
    let app = App::start(pool).await;
    let addr = listen(&app).await;
    let s = app.login_as("operator").await;
    let mut ws = open_socket(addr, &s.cookie).await;
    // Something small is ignored and the socket stays open.
    ws.send(Message::Text("hi".into())).await.expect("send");
    assert_eq!(
        socket_closed_within(&mut ws, Duration::from_millis(500)).await,
        None,
        "a small message does not close the socket"
    );
    let big = "x".repeat(64 * 1024);
    // The send itself may fail once the server has closed.
    let _ = ws.send(Message::Text(big.into())).await;
    assert!(
        socket_closed_within(&mut ws, Duration::from_secs(3))
            .await
            .is_some(),
        "a 64 KiB message must close the socket"
    );
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_socket_sending_only_pings_is_closed_at_the_idle_timeout(pool: PgPool) {
    let app = App::with_config(
        pool,
        ConsoleConfig {
            idle_timeout: Duration::from_secs(2),
            ..test_config()
        },
    )
    .await;
    let addr = listen(&app).await;
    let s = app.login_as("operator").await;

    // Real activity (requests) keeps the session, and with it the socket, alive...
    let mut ws = open_socket(addr, &s.cookie).await;
    let busy_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < busy_until {
        app.get(&s, "/api/v1/me").await.expect(StatusCode::OK);
        assert_eq!(
            socket_closed_within(&mut ws, Duration::from_millis(500)).await,
            None,
            "the socket closed while the session was in use"
        );
    }
    // ...its own pings and pongs do not: it closes about 2 s after the last request.
    let closed = socket_closed_within(&mut ws, Duration::from_secs(6))
        .await
        .expect("a socket that only pings is closed at the idle timeout");
    assert!(
        closed >= Duration::from_secs(1) && closed <= Duration::from_secs(4),
        "closed {closed:?} after the last request, expected about 2 s"
    );
    // And the session itself has ended: the socket did not extend it.
    app.call(axum::http::Method::GET, "/api/v1/me")
        .session(&s)
        .send()
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "session_expired");
}
