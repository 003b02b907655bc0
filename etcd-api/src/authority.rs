//! Accepts the `:authority` that etcd's Go clients send when an endpoint is written as a URL.
//!
//! etcdctl 3.4 and clientv3 dial `passthrough:///http://127.0.0.1:2379` for some requests
//! (`endpoint status`, `endpoint hash`, the `--cluster` forms), and grpc-go then sends
//! `:authority: http://127.0.0.1:2379`. etcd's Go server takes it; Rust's HTTP/2 server resets
//! the stream as malformed, so the client sees `PROTOCOL_ERROR`. [`AuthorityRepair`] sits
//! between the connection and the HTTP/2 server and rewrites such an authority to its
//! `host:port` before the server parses it.
//!
//! Guarantees:
//! - Bytes are passed through untouched until the connection's first header block; if that
//!   block's `:authority` is acceptable (the case for every Rust, Python and most Go clients)
//!   the rest of the connection is passed through untouched too, without any decoding.
//! - Otherwise every header block of the connection is decoded (HPACK, with the client's dynamic
//!   table) and re-encoded as plain literals that do not touch the server's dynamic table, with
//!   the authority repaired (or dropped when nothing valid remains). All other fields, their
//!   order, the stream, END_STREAM and priority are kept; padding is dropped.
//! - A header block that cannot be decoded is passed on as it came, so the HTTP/2 server reports
//!   the client's error itself. The write side is never touched.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::codegen::http::uri::Authority;
use tonic::transport::server::Connected;

/// The client connection preface every HTTP/2 connection starts with.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 server accepts (SETTINGS_MAX_FRAME_SIZE's initial value).
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// Header frames above this are not buffered for inspection but passed on for the server to
/// refuse (a header block of a gRPC request is a few hundred bytes).
const MAX_BUFFERED_HEADER_BLOCK: usize = 1024 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// How the connection's header blocks are treated.
enum Mode {
    /// Waiting for the first header block to decide.
    Inspect,
    /// Every header block is decoded and re-encoded.
    Rewrite,
    /// Everything passes through untouched.
    PassThrough,
}

/// A header block waiting for its CONTINUATION frames.
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as they came, passed on unchanged when no rewrite happens.
    original: Vec<u8>,
}

/// An accepted connection whose incoming HTTP/2 header blocks get their `:authority` repaired.
pub struct AuthorityRepair<IO> {
    inner: IO,
    mode: Mode,
    /// Bytes to pass on unchanged before the next frame header: the connection preface at
    /// first, then the payload of a frame that is not a header frame.
    copy_left: usize,
    /// Bytes read from the connection and not yet processed.
    input: BytesMut,
    /// Processed bytes for the HTTP/2 server.
    output: BytesMut,
    pending: Option<PendingBlock>,
    decoder: loona_hpack::Decoder<'static>,
    /// Where reads land before they are appended to `input`.
    scratch: Box<[u8]>,
    eof: bool,
}

impl<IO> AuthorityRepair<IO> {
    pub fn new(inner: IO) -> Self {
        Self {
            inner,
            mode: Mode::Inspect,
            copy_left: PREFACE_LEN,
            input: BytesMut::new(),
            output: BytesMut::new(),
            pending: None,
            decoder: loona_hpack::Decoder::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            eof: false,
        }
    }

    /// Moves as much of `input` to `output` as can be decided on now.
    fn process(&mut self) {
        loop {
            if matches!(self.mode, Mode::PassThrough) && self.pending.is_none() {
                let all = self.input.split();
                self.output.unsplit(all);
                return;
            }
            if self.copy_left > 0 {
                let n = self.copy_left.min(self.input.len());
                if n == 0 {
                    return;
                }
                self.copy_left -= n;
                let bytes = self.input.split_to(n);
                self.output.unsplit(bytes);
                continue;
            }
            if self.input.len() < FRAME_HEADER_LEN {
                return;
            }
            let length =
                u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
            let kind = self.input[3];
            let is_header_frame = kind == FRAME_HEADERS || kind == FRAME_CONTINUATION;
            if !is_header_frame || length > MAX_BUFFERED_HEADER_BLOCK {
                self.flush_pending_unchanged();
                let header = self.input.split_to(FRAME_HEADER_LEN);
                self.output.unsplit(header);
                self.copy_left = length;
                continue;
            }
            if self.input.len() < FRAME_HEADER_LEN + length {
                return;
            }
            let frame = self.input.split_to(FRAME_HEADER_LEN + length);
            self.on_header_frame(&frame);
        }
    }

    /// Handles a whole HEADERS or CONTINUATION frame.
    fn on_header_frame(&mut self, frame: &[u8]) {
        let kind = frame[3];
        let flags = frame[4];
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER_LEN..];
        if kind == FRAME_CONTINUATION {
            match self.pending.as_mut() {
                Some(pending) if pending.stream_id == stream_id => {
                    pending.fragment.extend_from_slice(payload);
                    pending.original.extend_from_slice(frame);
                }
                // Out of sequence: the server will refuse it; nothing to repair.
                _ => {
                    self.flush_pending_unchanged();
                    self.output.extend_from_slice(frame);
                    return;
                }
            }
        } else {
            self.flush_pending_unchanged();
            let Some((priority, fragment)) = split_headers_payload(flags, payload) else {
                self.output.extend_from_slice(frame);
                return;
            };
            self.pending = Some(PendingBlock {
                stream_id,
                end_stream: flags & FLAG_END_STREAM != 0,
                priority,
                fragment: fragment.to_vec(),
                original: frame.to_vec(),
            });
        }
        if flags & FLAG_END_HEADERS != 0 {
            if let Some(block) = self.pending.take() {
                self.on_header_block(block);
            }
        }
    }

    /// Decides on one complete header block.
    fn on_header_block(&mut self, block: PendingBlock) {
        if matches!(self.mode, Mode::PassThrough) {
            self.output.extend_from_slice(&block.original);
            return;
        }
        let fields = match self.decoder.decode(&block.fragment) {
            Ok(fields) => fields,
            Err(error) => {
                tracing::debug!(
                    ?error,
                    "undecodable header block passed on to the HTTP/2 server"
                );
                self.mode = Mode::PassThrough;
                self.output.extend_from_slice(&block.original);
                return;
            }
        };
        let needs_repair = fields
            .iter()
            .any(|(name, value)| name.as_slice() == b":authority" && !is_valid_authority(value));
        if matches!(self.mode, Mode::Inspect) {
            if !needs_repair {
                self.mode = Mode::PassThrough;
                self.output.extend_from_slice(&block.original);
                return;
            }
            self.mode = Mode::Rewrite;
        }
        let mut encoded = Vec::with_capacity(block.fragment.len() * 2);
        for (name, value) in &fields {
            if name.as_slice() == b":authority" {
                match repaired_authority(value) {
                    Some(authority) => encode_literal(&mut encoded, name, authority),
                    None => continue,
                }
            } else {
                encode_literal(&mut encoded, name, value);
            }
        }
        write_header_frames(&mut self.output, &block, &encoded);
    }

    /// Passes a header block that never got its END_HEADERS on as it came.
    fn flush_pending_unchanged(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.output.extend_from_slice(&pending.original);
        }
    }
}

/// Splits a HEADERS payload into its priority fields and header block fragment, without padding.
fn split_headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut padding = 0usize;
    if flags & FLAG_PADDED != 0 {
        padding = usize::from(*rest.first()?);
        rest = &rest[1..];
    }
    let priority = if flags & FLAG_PRIORITY != 0 {
        let fields: [u8; 5] = rest.get(..5)?.try_into().ok()?;
        rest = &rest[5..];
        Some(fields)
    } else {
        None
    };
    let end = rest.len().checked_sub(padding)?;
    Some((priority, &rest[..end]))
}

fn is_valid_authority(value: &[u8]) -> bool {
    Authority::try_from(value).is_ok()
}

/// `http://host:port/anything` → `host:port`; `None` when no valid authority remains.
fn repaired_authority(value: &[u8]) -> Option<&[u8]> {
    if is_valid_authority(value) {
        return Some(value);
    }
    let after_scheme = value
        .windows(3)
        .position(|window| window == b"://")
        .map_or(value, |at| &value[at + 3..]);
    let host_port = after_scheme
        .iter()
        .position(|&byte| byte == b'/')
        .map_or(after_scheme, |at| &after_scheme[..at]);
    (!host_port.is_empty() && is_valid_authority(host_port)).then_some(host_port)
}

/// Appends a "literal header field without indexing — new name" (RFC 7541 §6.2.2), no Huffman.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    encode_string(out, name);
    encode_string(out, value);
}

fn encode_string(out: &mut Vec<u8>, bytes: &[u8]) {
    encode_integer(out, 0x00, 7, bytes.len());
    out.extend_from_slice(bytes);
}

/// RFC 7541 §5.1 integer with an `prefix_bits`-bit prefix after the `flags` bits.
fn encode_integer(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, value: usize) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Writes `encoded` as a HEADERS frame plus CONTINUATION frames, none above the default frame size.
fn write_header_frames(out: &mut BytesMut, block: &PendingBlock, encoded: &[u8]) {
    let priority_len = if block.priority.is_some() { 5 } else { 0 };
    let first_len = encoded.len().min(MAX_FRAME_PAYLOAD - priority_len);
    let (first, mut rest) = encoded.split_at(first_len);
    let mut flags = 0;
    if block.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    put_frame_header(
        out,
        priority_len + first.len(),
        FRAME_HEADERS,
        flags,
        block.stream_id,
    );
    if let Some(priority) = block.priority {
        out.extend_from_slice(&priority);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, remaining) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
        rest = remaining;
        let flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        put_frame_header(out, chunk.len(), FRAME_CONTINUATION, flags, block.stream_id);
        out.extend_from_slice(chunk);
    }
}

fn put_frame_header(out: &mut BytesMut, length: usize, kind: u8, flags: u8, stream_id: u32) {
    let length = (length as u32).to_be_bytes();
    out.extend_from_slice(&length[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id);
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityRepair<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // Whatever stayed buffered is an incomplete frame; the server sees the cut.
                let rest = this.input.split();
                if let Some(pending) = this.pending.take() {
                    this.output.extend_from_slice(&pending.original);
                }
                this.output.unsplit(rest);
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let settled = matches!(this.mode, Mode::PassThrough)
                && this.pending.is_none()
                && this.input.is_empty();
            if settled {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut read_buf = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read_buf))?;
            let read = read_buf.filled();
            if read.is_empty() {
                this.eof = true;
                continue;
            }
            this.input.extend_from_slice(read);
            this.process();
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for AuthorityRepair<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests;
