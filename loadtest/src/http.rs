//! A plain HTTP/1.1 GET for the admin pages of cells and proxies (`/metrics`, `/readyz`):
//! one request per connection, `Connection: close`, the reply read to its end.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A reply: its status code, its head (status line and headers) and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// `GET http://ADDR{path}`, all of it within `timeout` (else an error of kind `TimedOut`,
/// "timed out after …"); a reply without a status code is `InvalidData`.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> io::Result<Reply> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, io::Error>(buf)
    };
    let buf = tokio::time::timeout(timeout, fetch).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out after {timeout:?}"),
        )
    })??;
    parse(&String::from_utf8_lossy(&buf))
}

fn parse(text: &str) -> io::Result<Reply> {
    let not_http = || io::Error::new(io::ErrorKind::InvalidData, "not an HTTP reply");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(not_http)?;
    Ok(Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        let r = parse("HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\r\nwait\n")
            .unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "wait\n");
        assert!(r.head.ends_with("content-type: text/plain"));
        assert_eq!(parse("HTTP/1.1 200 OK\r\n").unwrap().body, "");
        assert_eq!(
            parse("garbage").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
