//! Disk recovery: FETCH_ONE_PATH_BINLOG (26) byte for byte against the recorded
//! V6.16.1 reply and its refusals.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use fdfs_node::storage::binlog::{Op, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw request bytes and reads everything until the storage closes.
async fn exchange_until_close(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("send");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("storage closes the connection")
        .expect("read");
    out
}

fn request_26(group: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut body = group.to_vec();
    body.resize(16, 0);
    body.extend_from_slice(rest);
    let mut req = (body.len() as u64).to_be_bytes().to_vec();
    req.extend_from_slice(&[26, 0]);
    req.extend_from_slice(&body);
    req
}

const RECORDED_NAME: &str = "M00/05/4B/fwAABGsHltqAV__gAAAAZBVz5RY383.txt";

#[tokio::test]
async fn fetch_one_path_binlog_matches_the_recorded_reply() {
    let ex = common::exchanges()
        .into_iter()
        .find(|e| e["cmd"] == 26)
        .expect("a recorded command-26 exchange");
    let request = [
        common::hex_field(&ex["request"], "header_hex"),
        common::hex_field(&ex["request"], "body_hex"),
    ]
    .concat();
    let reply = [
        common::hex_field(&ex["response"], "header_hex"),
        common::hex_field(&ex["response"], "body_hex"),
    ]
    .concat();
    assert_eq!(ex["response"]["truncated"], false);

    // storage3 of the recording: group2, one path, the recorded file on disk, and
    // around its create record the kinds FastDFS leaves out.
    let cluster = common::Cluster::start(&["group2"], 256).await;
    let node = &cluster.storages[0].node;
    let root = cluster.store_root(0).join("data");
    std::fs::write(root.join(&RECORDED_NAME[4..]), b"recorded file").expect("file");
    std::fs::write(root.join("05/4B/appended.bin"), b"x").expect("file");
    node.binlog
        .append(&[
            Record::new(1_795_659_470, Op::Create, "M00/05/4B/gone.txt"),
            Record::new(1_795_659_471, Op::Append, RECORDED_NAME).with_extra("0 5"),
            Record::new(1_795_659_472, Op::Update, "M00/05/4B/appended.bin"),
            Record::new(1_795_659_473, Op::Delete, "M00/05/4B/gone.txt"),
            Record::new(1_795_659_482, Op::Create, RECORDED_NAME),
            Record::new(1_795_659_483, Op::Modify, RECORDED_NAME).with_extra("1 2"),
            Record::new(1_795_659_484, Op::Truncate, RECORDED_NAME).with_extra("5 3"),
        ])
        .expect("binlog");
    let got = exchange_until_close(cluster.storage_addr(0), &request).await;
    assert_eq!(hex::encode(&got), hex::encode(&reply));

    // Renames go as creates of the new name, replica records keep their lower
    // case, other paths' records and missing files are left out.
    std::fs::write(root.join("00/00/renamed.txt"), b"r").expect("file");
    std::fs::write(root.join("00/00/copy.txt"), b"c").expect("file");
    node.binlog
        .append(&[
            Record::new(1_795_659_490, Op::Rename, "M00/00/00/renamed.txt")
                .with_extra("M00/00/00/appender.txt"),
            Record::new(1_795_659_491, Op::Create, "M00/00/00/copy.txt").replica(),
            Record::new(1_795_659_492, Op::Create, "M01/00/00/copy.txt"),
        ])
        .expect("binlog");
    let got = exchange_until_close(cluster.storage_addr(0), &request).await;
    let text = format!(
        "1795659482 C {RECORDED_NAME}\n1795659490 C M00/00/00/renamed.txt\n1795659491 c M00/00/00/copy.txt\n"
    );
    let mut want = hex::decode("04000000000000006400").expect("hex");
    want.extend_from_slice(text.as_bytes());
    want.extend_from_slice(&(text.len() as u64).to_be_bytes());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[tokio::test]
async fn bad_fetch_binlog_requests_get_einval_and_change_nothing() {
    let cluster = common::Cluster::start(&["group1"], 2).await;
    let node = &cluster.storages[0].node;
    let addr = cluster.storage_addr(0);
    node.binlog
        .append(&[Record::new(1, Op::Create, "M00/00/00/x.txt")])
        .expect("binlog");
    let before = node.binlog.end();
    let einval_then_close = hex::decode("00000000000000006416").expect("hex");
    for (what, req) in [
        ("other group", request_26(b"group2", &[0])),
        ("index past the last path", request_26(b"group1", &[1])),
        ("negative index", request_26(b"group1", &[0xFF])),
        ("cut-off body", request_26(b"group1", &[])),
        ("body too long", request_26(b"group1", &[0, 0])),
    ] {
        let got = exchange_until_close(addr, &req).await;
        assert_eq!(hex::encode(got), hex::encode(&einval_then_close), "{what}");
    }
    assert_eq!(node.binlog.end(), before);
    // A good request still works, and the file it names is not there: empty slice.
    let got = exchange_until_close(addr, &request_26(b"group1", &[0])).await;
    assert_eq!(hex::encode(got), "040000000000000064000000000000000000");
}
