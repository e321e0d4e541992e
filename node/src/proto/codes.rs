//! Command codes (header byte 8) and status codes (header byte 9).
//!
//! Both are open sets on the wire: a peer may send any byte, so each enum keeps an
//! explicit `Unknown`/`Other` case instead of failing to decode.

macro_rules! byte_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident / $fallback:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A byte this implementation has no name for.
            $fallback(u8),
        }

        impl From<u8> for $name {
            fn from(byte: u8) -> Self {
                match byte {
                    $( $value => Self::$variant, )+
                    other => Self::$fallback(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> u8 {
                match value {
                    $( $name::$variant => $value, )+
                    $name::$fallback(other) => other,
                }
            }
        }
    };
}

byte_enum! {
    /// Every command code of the FastDFS protocol (V6.16), and this project's two
    /// replication-backlog commands (240, 241), which FastDFS servers answer EINVAL.
    pub enum Command / Unknown {
        /// Storage → storage: identify the sync source on this connection.
        ReportServerId = 9,
        UploadFile = 11,
        DeleteFile = 12,
        SetMetadata = 13,
        DownloadFile = 14,
        GetMetadata = 15,
        SyncCreateFile = 16,
        SyncDeleteFile = 17,
        SyncUpdateFile = 18,
        SyncCreateLink = 19,
        CreateLink = 20,
        UploadSlaveFile = 21,
        QueryFileInfo = 22,
        UploadAppenderFile = 23,
        AppendFile = 24,
        SyncAppendFile = 25,
        FetchOnePathBinlog = 26,
        TrunkAllocSpace = 27,
        TrunkAllocConfirm = 28,
        TrunkFreeSpace = 29,
        TrunkSyncBinlog = 30,
        TrunkGetBinlogSize = 31,
        TrunkDeleteBinlogMarks = 32,
        TrunkTruncateBinlogFile = 33,
        ModifyFile = 34,
        SyncModifyFile = 35,
        TruncateFile = 36,
        SyncTruncateFile = 37,
        RegenerateAppenderFilename = 38,
        SyncRenameFile = 40,
        TrackerJoinLeader = 58,
        StorageChangeStatus = 59,
        StorageGetMyIp = 60,
        TrackerGetSysFilesStart = 61,
        TrackerGetSysFilesEnd = 62,
        TrackerGetOneSysFile = 63,
        TrackerGetStatus = 64,
        TrackerPingLeader = 65,
        TrackerNotifyNextLeader = 66,
        TrackerCommitNextLeader = 67,
        TrackerNotifyReselectLeader = 68,
        StorageFetchStorageIds = 69,
        StorageGetServerId = 70,
        StorageGetStatus = 71,
        StorageFetchTrunkFid = 72,
        StorageReportTrunkFid = 73,
        StorageReportTrunkFree = 74,
        StorageParameterReq = 75,
        StorageReportStatus = 76,
        StorageChangelogReq = 77,
        StorageReportIpChanged = 78,
        StorageSyncDestQuery = 79,
        StorageJoin = 81,
        Quit = 82,
        StorageBeat = 83,
        StorageReportDiskUsage = 84,
        StorageReplicaChg = 85,
        StorageSyncSrcReq = 86,
        StorageSyncDestReq = 87,
        StorageSyncNotify = 88,
        StorageSyncReport = 89,
        ServerListOneGroup = 90,
        ServerListAllGroups = 91,
        ServerListStorage = 92,
        ServerDeleteStorage = 93,
        ServerSetTrunkServer = 94,
        ServerGetLeader = 95,
        ServerTrackerClusterStat = 96,
        ServerStorageClusterStat = 97,
        ServerStorageVolumnStat = 98,
        /// The command byte of every response.
        Resp = 100,
        QueryStoreWithoutGroupOne = 101,
        QueryFetchOne = 102,
        QueryUpdate = 103,
        QueryStoreWithGroupOne = 104,
        QueryFetchAll = 105,
        QueryStoreWithoutGroupAll = 106,
        QueryStoreWithGroupAll = 107,
        ServerDeleteGroup = 108,
        StorageGetGroupName = 109,
        ActiveTest = 111,
        /// Storage → tracker, this project's own: binlog bytes and seconds each peer has
        /// yet to receive (`SyncBacklogReport`).
        StorageReportSyncBacklog = 240,
        /// Client → tracker, this project's own: every backlog the members of a group
        /// reported (`SyncBacklogListing`).
        ServerListSyncBacklog = 241,
        /// Storage → tracker, this project's own: the peers whose pushes it cannot apply,
        /// and why (`SyncProblemReport`).
        StorageReportSyncProblems = 242,
        /// Client → tracker, this project's own: take uploads off a member, or give them
        /// back (`FenceRequest`).
        ServerFenceStorage = 243,
    }
}

byte_enum! {
    /// Status byte of a response: 0 or a Linux errno value.
    pub enum Status / Other {
        Ok = 0,
        /// EPERM
        PermissionDenied = 1,
        /// ENOENT
        NotFound = 2,
        /// EIO
        Io = 5,
        /// EAGAIN
        TryAgain = 11,
        /// ENOMEM
        OutOfMemory = 12,
        /// EACCES
        AccessDenied = 13,
        /// EFAULT
        Fault = 14,
        /// EBUSY
        Busy = 16,
        /// EEXIST
        AlreadyExists = 17,
        /// EISDIR
        IsDirectory = 21,
        /// EINVAL
        InvalidArgument = 22,
        /// ENOSPC
        NoSpace = 28,
        /// ENAMETOOLONG
        NameTooLong = 36,
        /// EOPNOTSUPP
        NotSupported = 95,
        /// EALREADY
        AlreadyDone = 114,
    }
}

impl Status {
    /// The errno name FastDFS logs for this status, e.g. `ENOENT`.
    pub fn errno_name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::PermissionDenied => "EPERM",
            Status::NotFound => "ENOENT",
            Status::Io => "EIO",
            Status::TryAgain => "EAGAIN",
            Status::OutOfMemory => "ENOMEM",
            Status::AccessDenied => "EACCES",
            Status::Fault => "EFAULT",
            Status::Busy => "EBUSY",
            Status::AlreadyExists => "EEXIST",
            Status::IsDirectory => "EISDIR",
            Status::InvalidArgument => "EINVAL",
            Status::NoSpace => "ENOSPC",
            Status::NameTooLong => "ENAMETOOLONG",
            Status::NotSupported => "EOPNOTSUPP",
            Status::AlreadyDone => "EALREADY",
            Status::Other(_) => "errno",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.errno_name(), u8::from(*self))
    }
}

/// Storage status values kept by trackers (protocol notes §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum StorageStatus {
    Init = 0,
    WaitSync = 1,
    Syncing = 2,
    IpChanged = 3,
    Deleted = 4,
    Offline = 5,
    Online = 6,
    Active = 7,
    Recovery = 9,
    /// Storage-local "unknown" sentinel; never stored by a tracker.
    None = 99,
}

impl StorageStatus {
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::Init,
            1 => Self::WaitSync,
            2 => Self::Syncing,
            3 => Self::IpChanged,
            4 => Self::Deleted,
            5 => Self::Offline,
            6 => Self::Online,
            7 => Self::Active,
            9 => Self::Recovery,
            99 => Self::None,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Init => "INIT",
            Self::WaitSync => "WAIT_SYNC",
            Self::Syncing => "SYNCING",
            Self::IpChanged => "IP_CHANGED",
            Self::Deleted => "DELETED",
            Self::Offline => "OFFLINE",
            Self::Online => "ONLINE",
            Self::Active => "ACTIVE",
            Self::Recovery => "RECOVERY",
            Self::None => "NONE",
        }
    }

    /// OFFLINE, ONLINE and ACTIVE: the statuses FastDFS calls "available".
    pub fn is_available(self) -> bool {
        matches!(self, Self::Offline | Self::Online | Self::Active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips() {
        for byte in 0..=u8::MAX {
            assert_eq!(u8::from(Command::from(byte)), byte);
            assert_eq!(u8::from(Status::from(byte)), byte);
        }
    }

    #[test]
    fn named_codes_match_the_protocol_table() {
        assert_eq!(Command::from(11), Command::UploadFile);
        assert_eq!(Command::from(100), Command::Resp);
        assert_eq!(Command::from(111), Command::ActiveTest);
        assert_eq!(Command::from(39), Command::Unknown(39));
        assert_eq!(Status::from(2), Status::NotFound);
        assert_eq!(Status::from(22), Status::InvalidArgument);
        assert_eq!(Status::from(95), Status::NotSupported);
        assert_eq!(Status::InvalidArgument.to_string(), "EINVAL (22)");
    }
}
