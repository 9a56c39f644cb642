//! The response body: nothing, bytes in memory, or a part of a file streamed from disk.

use std::fs::File;
use std::future::Future as _;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use hyper::body::{Bytes, Frame, SizeHint};
use tokio::task::JoinHandle;

/// How much of a file one read takes. One chunk is read ahead while the previous one is
/// being written to the socket.
pub(crate) const CHUNK: u64 = 1024 * 1024;

/// A response body of the registry.
///
/// A file body never holds more than two chunks of 1 MiB in memory: the one being
/// sent and the one being read on the blocking pool. Its size is exact, so hyper sends
/// `Content-Length` rather than chunked encoding.
#[derive(Debug)]
pub struct Body {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Bytes(Option<Bytes>),
    File(FileBody),
}

/// A chunk read on the blocking pool.
type ChunkRead = JoinHandle<io::Result<Vec<u8>>>;

#[derive(Debug)]
struct FileBody {
    /// The file, read with positioned reads: one open file (a bundle tar) serves any
    /// number of bodies at once.
    file: Arc<File>,
    /// The offset in the file of the next byte to ask of a read.
    next: u64,
    /// Bytes of the range not yet handed to hyper.
    remaining: u64,
    /// Bytes of the range not yet asked of a read.
    unread: u64,
    /// The read in flight and how many bytes it was asked for.
    pending: Option<(ChunkRead, u64)>,
}

impl Body {
    /// No body.
    pub fn empty() -> Body {
        Body { inner: Inner::Bytes(None) }
    }

    /// A body held in memory.
    pub fn bytes(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        Body { inner: Inner::Bytes((!bytes.is_empty()).then_some(bytes)) }
    }

    /// `len` bytes of `file` from byte `offset` (a blob file from 0, or a blob inside a
    /// tar from its data's offset).
    pub(crate) fn file_at(file: Arc<File>, offset: u64, len: u64) -> Body {
        Body { inner: Inner::File(FileBody { file, next: offset, remaining: len, unread: len, pending: None }) }
    }
}

impl FileBody {
    /// Starts reading the next chunk on the blocking pool, if any is left.
    fn start_read(&mut self) {
        if self.unread == 0 || self.pending.is_some() {
            return;
        }
        let file = self.file.clone();
        let want = self.unread.min(CHUNK);
        let at = self.next;
        self.unread -= want;
        self.next += want;
        let handle = tokio::task::spawn_blocking(move || {
            let len = usize::try_from(want).map_err(io::Error::other)?;
            let mut buf = vec![0u8; len];
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut buf[filled..], at + filled as u64) {
                    Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the blob file ended early")),
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(buf)
        });
        self.pending = Some((handle, want));
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Bytes(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::File(body) => {
                if body.remaining == 0 {
                    return Poll::Ready(None);
                }
                body.start_read();
                let Some((handle, _)) = body.pending.as_mut() else {
                    return Poll::Ready(Some(Err(io::Error::other("the blob file is gone"))));
                };
                let joined = ready!(Pin::new(handle).poll(cx));
                let want = body.pending.take().map_or(0, |(_, want)| want);
                let chunk = match joined {
                    Ok(Ok(chunk)) => chunk,
                    Ok(Err(e)) => {
                        body.remaining = 0;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Err(e) => {
                        body.remaining = 0;
                        return Poll::Ready(Some(Err(io::Error::other(e))));
                    }
                };
                body.remaining -= want;
                body.start_read();
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Bytes(bytes) => bytes.is_none(),
            Inner::File(body) => body.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Bytes(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::File(body) => SizeHint::with_exact(body.remaining),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use std::io::Write as _;

    fn temp_file(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(&data).expect("write");
        (f, data)
    }

    #[tokio::test]
    async fn streams_a_range_of_a_file_in_chunks() {
        let len = (2 * CHUNK + 12345) as usize;
        let (f, data) = temp_file(len + 100);
        let file = Arc::new(File::open(f.path()).expect("open"));
        let mut body = Body::file_at(file, 50, len as u64);
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(len as u64));
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let chunk = frame.expect("frame").into_data().expect("data");
            assert!(chunk.len() as u64 <= CHUNK);
            got.extend_from_slice(&chunk);
            frames += 1;
        }
        assert_eq!(frames, 3);
        assert_eq!(got, data[50..50 + len]);
        assert!(hyper::body::Body::is_end_stream(&body));
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_is_an_error() {
        let (f, _) = temp_file(10);
        let file = Arc::new(File::open(f.path()).expect("open"));
        let body = Body::file_at(file, 0, 20);
        let err = body.collect().await.expect_err("short file");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn bytes_and_empty_bodies() {
        assert!(hyper::body::Body::is_end_stream(&Body::empty()));
        assert!(hyper::body::Body::is_end_stream(&Body::bytes(Bytes::new())));
        let body = Body::bytes(Bytes::from_static(b"{}"));
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(2));
        assert_eq!(body.collect().await.expect("collect").to_bytes(), Bytes::from_static(b"{}"));
    }
}
