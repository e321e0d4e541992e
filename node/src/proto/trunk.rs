//! Trunk-space bodies, between a group's members and its trunk server (27–29), and
//! between the trunk server and the trackers (72–74).
//!
//! ```text
//! trunk info (15):        | store_path u8 | sub_high u8 | sub_low u8 | id u32 | offset u32 | size u32 |
//! TRUNK_ALLOC_SPACE (27): | group[16] | size u32 (slot header included) | store_path u8 |
//!   reply:                trunk info
//! ALLOC_CONFIRM (28):     | group[16] | trunk info |   header status = the write's result
//! FREE_SPACE (29):        | group[16] | trunk info |
//! FETCH_TRUNK_FID (72):   reply | trunk file id u32 |
//! REPORT_TRUNK_FID (73):  | trunk file id u32 |
//! REPORT_TRUNK_FREE (74): | free MB u64 |
//! ```

use super::ProtoError;
use super::fields::{GROUP_NAME_LEN, Reader, fixed_text, put_fixed, put_u32};
use crate::fileid::TrunkSlot;

/// Bytes of an encoded [`TrunkBlock`].
pub const TRUNK_INFO_LEN: usize = 15;

/// A run of bytes inside one trunk file: a slot given to a file, or free space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrunkBlock {
    pub store_path: u8,
    pub hh: u8,
    pub ll: u8,
    pub id: u32,
    pub offset: u32,
    pub size: u32,
}

impl TrunkBlock {
    pub fn slot(&self) -> TrunkSlot {
        TrunkSlot {
            id: self.id,
            offset: self.offset,
            size: self.size,
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.store_path, self.hh, self.ll]);
        put_u32(out, self.id);
        put_u32(out, self.offset);
        put_u32(out, self.size);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TRUNK_INFO_LEN);
        self.encode_into(&mut out);
        out
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ProtoError> {
        Ok(TrunkBlock {
            store_path: r.u8()?,
            hh: r.u8()?,
            ll: r.u8()?,
            id: r.u32()?,
            offset: r.u32()?,
            size: r.u32()?,
        })
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "trunk info");
        let b = Self::read(&mut r)?;
        r.finish()?;
        Ok(b)
    }
}

/// TRUNK_ALLOC_SPACE (27): room for `size` bytes (the slot header included) on a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkAllocRequest {
    pub group: String,
    pub size: u32,
    pub store_path: u8,
}

impl TrunkAllocRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GROUP_NAME_LEN + 5);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        put_u32(&mut out, self.size);
        out.push(self.store_path);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "trunk alloc");
        let group = fixed_text(r.take(GROUP_NAME_LEN)?);
        let size = r.u32()?;
        let store_path = r.u8()?;
        r.finish()?;
        Ok(TrunkAllocRequest {
            group,
            size,
            store_path,
        })
    }
}

/// ALLOC_CONFIRM (28) and FREE_SPACE (29): a group and a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkBlockRequest {
    pub group: String,
    pub block: TrunkBlock,
}

impl TrunkBlockRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GROUP_NAME_LEN + TRUNK_INFO_LEN);
        put_fixed(&mut out, self.group.as_bytes(), GROUP_NAME_LEN);
        self.block.encode_into(&mut out);
        out
    }

    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "trunk block");
        let group = fixed_text(r.take(GROUP_NAME_LEN)?);
        let block = TrunkBlock::read(&mut r)?;
        r.finish()?;
        Ok(TrunkBlockRequest { group, block })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_bodies_have_fastdfs_layouts() {
        let block = TrunkBlock {
            store_path: 1,
            hh: 0x0A,
            ll: 0xFF,
            id: 7,
            offset: 0x0102_0304,
            size: 512,
        };
        let bytes = block.encode();
        assert_eq!(
            bytes,
            [1, 0x0A, 0xFF, 0, 0, 0, 7, 1, 2, 3, 4, 0, 0, 2, 0].to_vec()
        );
        assert_eq!(TrunkBlock::decode(&bytes).ok(), Some(block));
        assert!(TrunkBlock::decode(&bytes[..14]).is_err());

        let alloc = TrunkAllocRequest {
            group: "group1".into(),
            size: 24 + 4096,
            store_path: 0,
        };
        let bytes = alloc.encode();
        assert_eq!(bytes.len(), 21);
        assert_eq!(&bytes[..6], b"group1");
        assert_eq!(&bytes[16..20], &4120u32.to_be_bytes());
        assert_eq!(TrunkAllocRequest::decode(&bytes).ok(), Some(alloc));

        let confirm = TrunkBlockRequest {
            group: "group1".into(),
            block,
        };
        let bytes = confirm.encode();
        assert_eq!(bytes.len(), 31);
        assert_eq!(&bytes[16..], &block.encode()[..]);
        assert_eq!(TrunkBlockRequest::decode(&bytes).ok(), Some(confirm));
        assert!(TrunkBlockRequest::decode(&bytes[..30]).is_err());
    }
}
