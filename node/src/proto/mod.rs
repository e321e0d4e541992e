//! The FastDFS wire protocol: framing, codes and message bodies.
//!
//! Everything here is pure: bytes in, typed values out, and back. Decoding never
//! panics on any input (see the property tests); it returns a [`ProtoError`] that
//! the servers turn into an EINVAL reply.

pub mod cluster;
mod codes;
pub mod fields;
mod header;
pub mod monitor;
pub mod query;
pub mod report;
pub mod storage;
pub mod sync;
pub mod trunk;

pub use codes::{Command, Status, StorageStatus};
pub use fields::IpWidth;
pub use header::{HEADER_LEN, Header};

/// Version string our nodes announce where FastDFS carries one (JOIN, LIST_STORAGE).
pub const VERSION_TEXT: &str = "6.16.1";

/// Why a packet or body could not be decoded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProtoError {
    #[error("command {cmd:?} announces a negative body length {len}")]
    NegativeLength { cmd: Command, len: i64 },
    #[error("command {cmd:?} announces a {len}-byte body, above the {max}-byte limit")]
    BodyTooLarge { cmd: Command, len: u64, max: u64 },
    #[error("{what}: body too short, need {need} more bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("{what}: {extra} unexpected trailing bytes")]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("{what}: invalid body length {len}")]
    BadLength { what: &'static str, len: usize },
    #[error("{what}: {reason}")]
    BadField { what: &'static str, reason: String },
}

impl ProtoError {
    /// The status FastDFS answers a malformed request with.
    pub fn status(&self) -> Status {
        Status::InvalidArgument
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// No body decoder may panic, whatever the bytes.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = query::StoreTarget::decode(&bytes);
            let _ = query::StoreTargets::decode(&bytes, None);
            let _ = query::FetchTarget::decode(&bytes);
            let _ = query::FetchAll::decode(&bytes, None);
            let _ = query::GroupRequest::decode(&bytes);
            let _ = query::FileRequest::decode(&bytes);
            let _ = monitor::GroupStat::decode_all(&bytes);
            let _ = monitor::StorageStat::decode_all(&bytes);
            let _ = monitor::ListStorageRequest::decode(&bytes);
            let _ = report::JoinRequest::decode(&bytes);
            let _ = report::JoinResponse::decode(&bytes);
            let _ = report::BeatRequest::decode(&bytes);
            let _ = report::DiskUsage::decode(&bytes);
            let _ = report::HeartbeatReply::decode(&bytes);
            let _ = report::SyncReport::decode(&bytes);
            let _ = report::Parameters::decode(&bytes);
            let _ = report::GetMyIpRequest::decode(&bytes);
            let _ = storage::UploadHead::decode(&bytes);
            let _ = storage::UploadResponse::decode(&bytes);
            let _ = storage::DownloadRequest::decode(&bytes);
            let _ = storage::SlaveHead::decode(&bytes);
            let _ = storage::WriteHead::decode(&bytes, true);
            let _ = storage::WriteHead::decode(&bytes, false);
            let _ = storage::TruncateRequest::decode(&bytes);
            let _ = storage::SetMetadataRequest::decode(&bytes);
            let _ = storage::FileInfo::decode(&bytes);
            let _ = crate::storage::meta::parse(&bytes);
            let _ = sync::SyncFileHead::decode(&bytes);
            let _ = sync::SyncRangeHead::decode(&bytes);
            let _ = sync::SyncDelete::decode(&bytes);
            let _ = sync::SyncPair::decode(&bytes);
            let _ = sync::FetchBinlog::decode(&bytes);
            let _ = sync::binlog_reply_text(&bytes);
            let _ = monitor::GroupStat::decode_all_classic(&bytes);
            let _ = monitor::StorageStat::decode_all_classic(&bytes);
            let _ = cluster::TrackerStatus::decode(&bytes);
            let _ = cluster::JoinLeader::decode(&bytes);
            let _ = cluster::PingLeader::decode(&bytes);
            let _ = cluster::decode_host_port(&bytes);
            let _ = cluster::GroupAndId::decode(&bytes);
            let _ = cluster::GroupAndHost::decode(&bytes);
            let _ = cluster::FetchStorageIds::decode(&bytes);
            let _ = cluster::StorageIdsPage::decode(&bytes);
            let _ = cluster::ReportStatus::decode(&bytes);
            let _ = cluster::decode_briefs(&bytes);
            let _ = cluster::SyncSrcReq::decode(&bytes);
            let _ = cluster::TrackerStatFilter::decode(&bytes);
            let _ = cluster::TrackerStat::decode_all(&bytes);
            let _ = cluster::StorageStatFilter::decode(&bytes);
            let _ = cluster::StorageClusterStats::decode(&bytes);
            let _ = cluster::VolumeStatFilter::decode(&bytes);
            let _ = cluster::VolumeStats::decode(&bytes);
            let _ = report::SyncSource::decode(&bytes);
            if bytes.len() >= HEADER_LEN {
                let mut h = [0u8; HEADER_LEN];
                h.copy_from_slice(&bytes[..HEADER_LEN]);
                let _ = Header::decode(&h, 1 << 20);
            }
        }

        #[test]
        fn header_round_trips(len in 0u64..(1u64 << 62), cmd in any::<u8>(), status in any::<u8>()) {
            let h = Header { body_len: len, cmd: Command::from(cmd), status };
            prop_assert_eq!(Header::decode(&h.encode(), u64::MAX).ok(), Some(h));
        }
    }
}
