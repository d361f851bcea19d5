//! Bad input of every kind gets its error-table code with a message, and changes nothing.

use super::fixture::{code, file_spec, raw_code, Target};
use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::Status;
use warren_client::{ErrorCode, LockMode, OpenOptions};
use warren_proto::pb;

#[tokio::test]
async fn bad_paths_are_refused_with_their_code() {
    let t = Target::start().await;
    let s = t.session().await;
    let create = || OpenOptions::new().write().create_file(Vec::new());
    for p in [
        "/a//b",
        "/a/../b",
        "/a/./b",
        "/a b",
        "/a:b",
        "/ls/local/",
        "/ls/otherdep/x",
    ] {
        let c = code(s.open(p, create()).await);
        assert_eq!(c, ErrorCode::InvalidArgument, "{p}");
    }
    let component = format!("/{}", "x".repeat(256));
    assert_eq!(
        code(s.open(&component, create()).await),
        ErrorCode::InvalidArgument
    );
    let long = format!("/{}", vec!["abcdefghij"; 400].join("/"));
    assert_eq!(code(s.open(&long, create()).await), ErrorCode::TooLarge);
    // Nothing was created.
    let (root, _) = s.open("/", OpenOptions::new().read()).await.unwrap();
    let names: Vec<String> = root
        .read_dir()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["acl"]);
}

#[tokio::test]
async fn oversized_contents_are_refused_and_the_file_is_unchanged() {
    let t = Target::start().await;
    let s = t.session().await;
    let (f, _) = s
        .open(
            "/f",
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"keep".to_vec()),
        )
        .await
        .unwrap();
    let big = vec![7u8; 256 * 1024 + 1];
    assert_eq!(code(f.set_contents(big.clone()).await), ErrorCode::TooLarge);
    assert_eq!(
        code(
            s.open("/g", OpenOptions::new().write().create_file(big))
                .await
        ),
        ErrorCode::TooLarge
    );
    // Exactly the limit is fine.
    let (g, _) = s
        .open(
            "/g",
            OpenOptions::new()
                .write()
                .create_file(vec![1u8; 256 * 1024]),
        )
        .await
        .unwrap();
    g.close().await;
    let (data, stat) = f.contents().await.unwrap();
    assert_eq!(
        (data.as_slice(), stat.content_generation),
        (&b"keep"[..], 0)
    );
}

#[tokio::test]
async fn forged_truncated_and_foreign_handles_are_invalid() {
    let t = Target::start().await;
    let mut raw = t.raw().await;
    let h = raw
        .open("/ls/local/f", 3, file_spec(b"keep"))
        .await
        .unwrap()
        .handle;
    let mut forged = h.clone();
    let mid = forged.len() / 2;
    forged[mid] ^= 0x40;
    for bad in [
        forged,
        h[..h.len() - 1].to_vec(),
        h[..5].to_vec(),
        Vec::new(),
        vec![0u8; 64],
    ] {
        let r = raw
            .client
            .set_contents(pb::SetContentsRequest {
                ctx: raw.ctx(),
                handle: bad,
                contents: b"evil".to_vec(),
                if_content_generation: None,
            })
            .await;
        assert_eq!(raw_code(r), warren_proto::ErrorCode::HandleInvalid);
    }
    // Another session's handle.
    let mut other = t.raw().await;
    let r = other
        .client
        .set_contents(pb::SetContentsRequest {
            ctx: other.ctx(),
            handle: h.clone(),
            contents: b"evil".to_vec(),
            if_content_generation: None,
        })
        .await;
    assert_eq!(raw_code(r), warren_proto::ErrorCode::HandleInvalid);
    assert_eq!(raw.read(&h).await.unwrap().contents, b"keep");
}

#[tokio::test]
async fn wrong_secret_stale_epoch_and_malformed_contexts() {
    let t = Target::start().await;
    let mut raw = t.raw().await;
    let h = raw
        .open("/ls/local/f", 3, file_spec(b"keep"))
        .await
        .unwrap()
        .handle;
    let write = |ctx: pb::SessionContext| pb::SetContentsRequest {
        ctx: Some(ctx),
        handle: h.clone(),
        contents: b"evil".to_vec(),
        if_content_generation: None,
    };
    let mut wrong = raw.ctx.clone();
    wrong.secret = vec![0; 16];
    assert_eq!(
        raw_code(raw.client.set_contents(write(wrong)).await),
        warren_proto::ErrorCode::PermissionDenied
    );
    let mut stale = raw.ctx.clone();
    stale.epoch -= 1;
    let st = raw.client.set_contents(write(stale)).await.unwrap_err();
    let e = warren_proto::WarrenError::from_status(&st).unwrap();
    assert_eq!(
        (e.code, e.epoch),
        (warren_proto::ErrorCode::StaleEpoch, raw.ctx.epoch)
    );
    let mut short = raw.ctx.clone();
    short.session_id.truncate(5);
    assert_eq!(
        raw_code(raw.client.set_contents(write(short)).await),
        warren_proto::ErrorCode::InvalidArgument
    );
    let mut unknown = raw.ctx.clone();
    unknown.session_id = vec![1; 16];
    assert_eq!(
        raw_code(raw.client.set_contents(write(unknown)).await),
        warren_proto::ErrorCode::SessionExpired
    );
    let r = raw
        .client
        .set_contents(pb::SetContentsRequest {
            ctx: None,
            handle: h.clone(),
            contents: vec![],
            if_content_generation: None,
        })
        .await;
    assert_eq!(raw_code(r), warren_proto::ErrorCode::InvalidArgument);
    // Unknown enum values.
    let r = raw
        .client
        .try_acquire(pb::TryAcquireRequest {
            ctx: raw.ctx(),
            handle: h.clone(),
            mode: 99,
        })
        .await;
    assert_eq!(raw_code(r), warren_proto::ErrorCode::InvalidArgument);
    let mut spec = file_spec(b"").unwrap();
    spec.kind = 42;
    assert_eq!(
        raw_code(raw.open("/ls/local/g", 3, Some(spec)).await),
        warren_proto::ErrorCode::InvalidArgument
    );
    assert_eq!(
        raw_code(raw.open("/ls/local/f", 1 << 9, None).await),
        warren_proto::ErrorCode::InvalidArgument
    );
    let got = raw.read(&h).await.unwrap();
    assert_eq!(
        (
            got.contents.as_slice(),
            got.stat.unwrap().content_generation
        ),
        (&b"keep"[..], 0)
    );
}

#[tokio::test]
async fn lock_calls_need_write_intent_and_delete_needs_an_empty_directory() {
    let t = Target::start().await;
    let s = t.session().await;
    let (d, _) = s
        .open("/d", OpenOptions::new().write().create_dir())
        .await
        .unwrap();
    let (f, _) = s
        .open("/d/f", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .unwrap();
    f.close().await;
    let (r, _) = s.open("/d/f", OpenOptions::new().read()).await.unwrap();
    assert_eq!(
        code(r.try_acquire(LockMode::Exclusive).await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(r.acquire(LockMode::Shared, None).await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(r.set_contents(b"x".to_vec()).await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(code(d.delete().await), ErrorCode::NotEmpty);
    assert_eq!(d.stat().await.unwrap().child_count, 1);
    assert_eq!(r.stat().await.unwrap().lock_generation, 0);
}

/// Sends bytes as they are, to see what the server makes of them.
#[derive(Clone, Default)]
struct RawBytes;
struct RawEnc;
struct RawDec;
impl Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}
impl Decoder for RawDec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}
impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

#[tokio::test]
async fn garbage_protobuf_is_invalid_argument_not_internal() {
    let t = Target::start().await;
    let channel = crate::fixture::connect(&t.addr()).await;
    let mut grpc = tonic::client::Grpc::new(channel);
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff, 0xff, 0xff, 0xff], // not a valid key
        vec![0x12, 0x02, 0xff, 0xfe], // path (field 2) that is not UTF-8
        vec![0x12, 0x40, b'a'],       // length beyond the message
        vec![0x10, 0x01],             // path sent with the varint wire type
    ];
    for (i, bytes) in garbage.into_iter().enumerate() {
        grpc.ready().await.unwrap();
        let r = grpc
            .unary(
                tonic::Request::new(bytes),
                PathAndQuery::from_static("/warren.v1.Warren/Open"),
                RawBytes,
            )
            .await;
        let st = r.expect_err("garbage accepted");
        let e = warren_proto::WarrenError::from_status(&st)
            .unwrap_or_else(|| panic!("case {i}: no Warren detail in {st:?}"));
        assert_eq!(
            e.code,
            warren_proto::ErrorCode::InvalidArgument,
            "case {i}: {st:?}"
        );
        assert!(e.message.contains("could not be decoded"), "{}", e.message);
    }
    // The server is fine afterwards.
    let s = t.session().await;
    s.open("/", OpenOptions::new().read()).await.unwrap();
}

#[tokio::test]
async fn a_request_over_the_message_limit_is_too_large_not_a_transport_error() {
    let t = Target::start().await;
    let mut raw = t.raw().await;
    let h = raw
        .open("/ls/local/f", 3, file_spec(b"keep"))
        .await
        .unwrap()
        .handle;
    let huge = vec![0u8; 5 * 1024 * 1024];
    let r = raw
        .client
        .set_contents(pb::SetContentsRequest {
            ctx: raw.ctx(),
            handle: h.clone(),
            contents: huge,
            if_content_generation: None,
        })
        .await;
    let st = r.expect_err("a 5 MiB request was accepted");
    let e = warren_proto::WarrenError::from_status(&st)
        .unwrap_or_else(|| panic!("no Warren detail: {st:?}"));
    assert_eq!(e.code, warren_proto::ErrorCode::TooLarge, "{e}");
    assert_eq!(raw.read(&h).await.unwrap().contents, b"keep");
}
