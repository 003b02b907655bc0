use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_DATA: u8 = 0x0;
const FRAME_SETTINGS: u8 = 0x4;

/// Serves `data` at most `chunk` bytes per read, so frames arrive cut at every possible place.
struct ChunkedReader {
    data: Vec<u8>,
    at: usize,
    chunk: usize,
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self
            .chunk
            .min(self.data.len() - self.at)
            .min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_frame_header(&mut out, payload.len(), kind, flags, stream_id);
    out.extend_from_slice(payload);
    out.to_vec()
}

/// A literal with incremental indexing, new name (RFC 7541 §6.2.1): enters the dynamic table.
fn indexed_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x40);
    encode_string(out, name.as_bytes());
    encode_string(out, value.as_bytes());
}

/// A reference to a table entry (RFC 7541 §6.1).
fn indexed(out: &mut Vec<u8>, index: usize) {
    encode_integer(out, 0x80, 7, index);
}

/// The first request of a grpc-go connection whose authority is `authority`, as grpc-go's encoder
/// writes it: every field enters the dynamic table.
fn first_block(authority: &str) -> Vec<u8> {
    let mut block = Vec::new();
    indexed(&mut block, 3); // :method POST
    indexed(&mut block, 6); // :scheme http
    indexed_literal(&mut block, ":path", "/etcdserverpb.Maintenance/Status");
    indexed_literal(&mut block, ":authority", authority);
    indexed_literal(&mut block, "content-type", "application/grpc");
    indexed_literal(&mut block, "te", "trailers");
    block
}

/// The second request: it repeats the first one's fields by dynamic table index only.
fn second_block() -> Vec<u8> {
    let mut block = Vec::new();
    indexed(&mut block, 3);
    indexed(&mut block, 6);
    // The dynamic table, newest first: te (62), content-type (63), :authority (64), :path (65).
    indexed(&mut block, 65);
    indexed(&mut block, 64);
    indexed(&mut block, 63);
    indexed(&mut block, 62);
    block
}

fn connection(authority: &str) -> Vec<u8> {
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(FRAME_SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
    let first = first_block(authority);
    let (head, tail) = first.split_at(10);
    // The first block arrives padded, with priority, split over a CONTINUATION frame.
    let mut payload = vec![3];
    payload.extend_from_slice(&[0, 0, 0, 0, 15]);
    payload.extend_from_slice(head);
    payload.extend_from_slice(&[0, 0, 0]);
    bytes.extend(frame(
        FRAME_HEADERS,
        FLAG_PADDED | FLAG_PRIORITY,
        1,
        &payload,
    ));
    bytes.extend(frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, tail));
    bytes.extend(frame(FRAME_DATA, 0x1, 1, b"\0\0\0\0\x02\x08\x01"));
    bytes.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, &second_block()));
    bytes.extend(frame(FRAME_DATA, 0x1, 3, b"\0\0\0\0\0"));
    bytes
}

async fn repaired(input: Vec<u8>, chunk: usize) -> Vec<u8> {
    let mut reader = AuthorityRepair::new(ChunkedReader {
        data: input,
        at: 0,
        chunk,
    });
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.expect("read");
    out
}

/// A parsed frame: type, flags, stream and payload.
type Frame = (u8, u8, u32, Vec<u8>);

fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    assert_eq!(&bytes[..PREFACE.len()], PREFACE);
    bytes = &bytes[PREFACE.len()..];
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let length = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        out.push((bytes[3], bytes[4], stream, bytes[9..9 + length].to_vec()));
        bytes = &bytes[9 + length..];
    }
    out
}

fn decode_all(decoder: &mut loona_hpack::Decoder<'_>, block: &[u8]) -> Vec<(String, String)> {
    decoder
        .decode(block)
        .expect("decodable block")
        .into_iter()
        .map(|(name, value)| {
            (
                String::from_utf8(name).expect("name"),
                String::from_utf8(value).expect("value"),
            )
        })
        .collect()
}

fn expected_fields(authority: &str) -> Vec<(String, String)> {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/etcdserverpb.Maintenance/Status"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

#[tokio::test]
async fn a_url_authority_becomes_host_and_port_in_every_request_of_the_connection() {
    for chunk in [1, 7, 64, 100_000] {
        let out = repaired(connection("http://127.0.0.1:2379"), chunk).await;
        let frames = frames(&out);
        let kinds: Vec<(u8, u32)> = frames.iter().map(|f| (f.0, f.2)).collect();
        assert_eq!(
            kinds,
            [
                (FRAME_SETTINGS, 0),
                (FRAME_HEADERS, 1),
                (FRAME_DATA, 1),
                (FRAME_HEADERS, 3),
                (FRAME_DATA, 3)
            ],
            "chunk {chunk}"
        );
        // Priority kept, padding dropped, the block whole in one frame.
        assert_eq!(frames[1].1, FLAG_PRIORITY | FLAG_END_HEADERS);
        assert_eq!(&frames[1].3[..5], &[0, 0, 0, 0, 15]);
        assert_eq!(frames[2].3, b"\0\0\0\0\x02\x08\x01");
        // A fresh decoder (the server's) reads both blocks without any dynamic table.
        let mut server = loona_hpack::Decoder::new();
        assert_eq!(
            decode_all(&mut server, &frames[1].3[5..]),
            expected_fields("127.0.0.1:2379")
        );
        assert_eq!(
            decode_all(&mut server, &frames[3].3),
            expected_fields("127.0.0.1:2379")
        );
    }
}

#[tokio::test]
async fn a_valid_authority_leaves_the_connection_byte_for_byte_unchanged() {
    for chunk in [1, 5, 100_000] {
        let input = connection("127.0.0.1:2379");
        assert_eq!(repaired(input.clone(), chunk).await, input, "chunk {chunk}");
    }
}

#[tokio::test]
async fn an_undecodable_block_reaches_the_server_as_it_came() {
    let mut input = PREFACE.to_vec();
    // Index 200 is in neither table.
    input.extend(frame(
        FRAME_HEADERS,
        FLAG_END_HEADERS,
        1,
        &[0x80 | 0x7f, 0x49],
    ));
    input.extend(frame(FRAME_DATA, 0x1, 1, b"\0\0\0\0\0"));
    assert_eq!(repaired(input.clone(), 3).await, input);
}

#[tokio::test]
async fn a_connection_cut_mid_frame_passes_on_what_came() {
    let mut input = connection("http://127.0.0.1:2379");
    input.truncate(PREFACE.len() + 15 + 12);
    let out = repaired(input.clone(), 4).await;
    assert_eq!(out, input);
}

#[test]
fn authorities_are_repaired_to_host_and_port() {
    let cases: [(&[u8], Option<&[u8]>); 6] = [
        (b"127.0.0.1:2379", Some(b"127.0.0.1:2379")),
        (b"http://127.0.0.1:2379", Some(b"127.0.0.1:2379")),
        (b"https://etcd.example:2379/", Some(b"etcd.example:2379")),
        (b"unix:///var/run/etcd.sock", None),
        (b"http://", None),
        (b"[::1]:2379", Some(b"[::1]:2379")),
    ];
    for (input, expected) in cases {
        assert_eq!(
            repaired_authority(input),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn long_header_blocks_are_split_at_the_default_frame_size() {
    let block = PendingBlock {
        stream_id: 5,
        end_stream: true,
        priority: None,
        fragment: Vec::new(),
        original: Vec::new(),
    };
    let mut encoded = Vec::new();
    encode_literal(&mut encoded, b"x-big", &vec![b'a'; 40_000]);
    let mut out = BytesMut::from(PREFACE);
    write_header_frames(&mut out, &block, &encoded);
    let frames = frames(&out);
    let shape: Vec<(u8, u8, usize)> = frames.iter().map(|f| (f.0, f.1, f.3.len())).collect();
    assert_eq!(
        shape,
        [
            (FRAME_HEADERS, FLAG_END_STREAM, MAX_FRAME_PAYLOAD),
            (FRAME_CONTINUATION, 0, MAX_FRAME_PAYLOAD),
            (
                FRAME_CONTINUATION,
                FLAG_END_HEADERS,
                encoded.len() - 2 * MAX_FRAME_PAYLOAD
            ),
        ]
    );
    let joined: Vec<u8> = frames.iter().flat_map(|f| f.3.clone()).collect();
    let mut decoder = loona_hpack::Decoder::new();
    let fields = decoder.decode(&joined).expect("decodable");
    assert_eq!(fields, [(b"x-big".to_vec(), vec![b'a'; 40_000])]);
}
