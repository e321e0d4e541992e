//! Helpers of the node's integration tests: the recorded V6.16.1 exchanges and FastDFS's
//! trunk layout; the in-process clusters and the wait are the workspace's
//! (`fdfs_test_support`), re-exported here.

#![allow(dead_code)]

#[allow(unused_imports)]
pub use fdfs_test_support::{cluster::*, wait_until};
use serde_json::Value;

/// The shared test group as a type of each test crate, so a suite can give it the methods
/// it needs (`impl Group { … }`).
pub struct Group(pub TestGroup);

impl std::ops::Deref for Group {
    type Target = TestGroup;

    fn deref(&self) -> &TestGroup {
        &self.0
    }
}

impl std::ops::DerefMut for Group {
    fn deref_mut(&mut self) -> &mut TestGroup {
        &mut self.0
    }
}

/// All exchanges of the fixture file, parsed once per test binary.
pub fn exchanges() -> Vec<Value> {
    let text = include_str!("../fixtures/fastdfs-v6.16-exchanges.json");
    let doc: Value = serde_json::from_str(text).expect("fixture parses");
    doc["exchanges"]
        .as_array()
        .expect("exchanges array")
        .clone()
}

pub fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_default()).expect("hex")
}

/// One slot of a trunk file as FastDFS V6 writes it: the 24-byte header (type, allocated
/// size, file size, CRC-32, mtime, formatted ext; integers big-endian), then the bytes.
pub fn fastdfs_slot(alloc: u32, content: &[u8], mtime: u32, ext: &str) -> Vec<u8> {
    let mut slot = vec![b'F'];
    slot.extend_from_slice(&alloc.to_be_bytes());
    slot.extend_from_slice(&(content.len() as u32).to_be_bytes());
    slot.extend_from_slice(&crc32fast::hash(content).to_be_bytes());
    slot.extend_from_slice(&mtime.to_be_bytes());
    slot.extend_from_slice(ext.as_bytes());
    slot.extend_from_slice(content);
    slot.resize(alloc as usize, 0);
    slot
}

/// The name FastDFS gives a file in `slot` of trunk file 1 in `data/00/00` of store path 0:
/// the core with the trunk flag, the slot, the formatted ext (60 characters in all).
pub fn trunk_file_name(
    source: &str,
    content: &[u8],
    mtime: u32,
    slot: fdfs_node::fileid::TrunkSlot,
    ext: &str,
) -> fdfs_node::fileid::RemoteName {
    use fdfs_node::fileid::{NameCore, RemoteName, Source, TRUNK_FLAG};
    let core = NameCore {
        source: Source::Ip(source.parse().expect("ip")),
        timestamp: mtime,
        size_field: (0x8000_4321u64 << 32) | TRUNK_FLAG | content.len() as u64,
        crc32: crc32fast::hash(content),
    };
    let name = RemoteName::new(0, 0, 0, format!("{}{}{ext}", core.encode(), slot.encode()));
    assert_eq!(name.to_string().len(), 60);
    name
}
