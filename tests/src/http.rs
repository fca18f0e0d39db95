//! A blocking HTTP/1.1 client and server of the smallest kind, for tests that run services in
//! other processes (distributed tracing between a Rust and a Python service). One request per
//! connection; bodies by `Content-Length`.

use std::io::{BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// One request as a [`serve`] handler sees it.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers as sent (names in their letter case).
    pub headers: Vec<(String, String)>,
    /// The body, as text (lossy).
    pub body: String,
}

fn read_head(
    reader: &mut impl std::io::BufRead,
) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Ok((first.trim_end().to_owned(), headers))
}

fn content_length(headers: &[(String, String)]) -> usize {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Serves requests on `listener` with `handle` (returning status and body) until it returns
/// `None` for a request (answered with 200 "bye"), then returns.
///
/// # Errors
/// I/O errors of the listener.
pub fn serve(
    listener: &TcpListener,
    mut handle: impl FnMut(&Request) -> Option<(u16, String)>,
) -> std::io::Result<()> {
    for stream in listener.incoming() {
        let mut stream = stream?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let (first, headers) = read_head(&mut reader)?;
        let mut body = vec![0u8; content_length(&headers)];
        reader.read_exact(&mut body)?;
        let mut parts = first.split_whitespace();
        let request = Request {
            method: parts.next().unwrap_or_default().to_owned(),
            path: parts.next().unwrap_or_default().to_owned(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let answer = handle(&request);
        let (status, text) = answer.clone().unwrap_or((200, "bye".to_owned()));
        write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )?;
        stream.flush()?;
        if answer.is_none() {
            return Ok(());
        }
    }
    Ok(())
}

/// `POST http://127.0.0.1:<port><path>` with `headers` and `body`; returns the status and body.
///
/// # Errors
/// Connection and protocol errors, as text.
pub fn post<K: AsRef<str>, V: AsRef<str>>(
    port: u16,
    path: &str,
    headers: impl IntoIterator<Item = (K, V)>,
    body: &str,
) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{}: {}\r\n", k.as_ref(), v.as_ref()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut reader = BufReader::new(stream);
    let (first, headers) = read_head(&mut reader).map_err(|e| format!("read: {e}"))?;
    let status: u16 = first
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {first:?}"))?;
    let mut body = Vec::new();
    match content_length(&headers) {
        0 => {
            reader
                .read_to_end(&mut body)
                .map_err(|e| format!("read: {e}"))?;
        }
        n => {
            body.resize(n, 0);
            reader
                .read_exact(&mut body)
                .map_err(|e| format!("read: {e}"))?;
        }
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
