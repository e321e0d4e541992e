//! The crate's error type.

/// Everything that can go wrong in the operator library.
///
/// Validation variants describe a spec the operator refuses to act on; their [`Error::reason`]
/// becomes the reason of the resource's condition and Event.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `FdfsCluster` named by a `StorageGroup` does not exist in its namespace.
    #[error("FdfsCluster {cluster:?} not found in namespace {namespace:?}")]
    ClusterNotFound {
        /// Value of `spec.clusterRef`.
        cluster: String,
        /// Namespace of the `StorageGroup`.
        namespace: String,
    },

    /// Neither `spec.image` of an `FdfsCluster` nor the operator's default names an image.
    #[error("spec.image must name a container image (the operator has no default image)")]
    MissingImage,

    /// A resource name from which the operator derives object names does not fit Kubernetes'
    /// rules for them (DNS labels of at most 63 characters, Pod names of StatefulSets).
    #[error("{kind} name {name:?} is unusable: {reason}")]
    InvalidResourceName {
        /// Kind of the resource (`FdfsCluster`, `StorageGroup`).
        kind: &'static str,
        /// The name.
        name: String,
        /// What rule it breaks.
        reason: String,
    },

    /// The storage ids derived from this group's name collide with those of an older group of
    /// the same cluster.
    #[error(
        "group {group_name:?} derives the same storage ids as group {other_group:?} of \
         StorageGroup {claimed_by:?}; choose another group name"
    )]
    StorageIdConflict {
        /// This group's name.
        group_name: String,
        /// The other group's name.
        other_group: String,
        /// Name of the `StorageGroup` that keeps the ids.
        claimed_by: String,
    },

    /// A replica count is outside the range FastDFS supports.
    #[error("{field} is {replicas}, but must be between {min} and {max}")]
    InvalidReplicas {
        /// Path of the offending field.
        field: &'static str,
        /// The value found.
        replicas: i32,
        /// Smallest allowed value.
        min: i32,
        /// Largest allowed value.
        max: i32,
    },

    /// A group name is empty.
    #[error("{field} must not be empty")]
    GroupNameEmpty {
        /// Where the name came from (`spec.groupName`, `metadata.name`, ...).
        field: &'static str,
    },

    /// A group name does not fit FastDFS's 16-byte field.
    #[error("{field} {name:?} is {len} bytes long; FastDFS group names have at most {max} bytes")]
    GroupNameTooLong {
        /// Where the name came from (`spec.groupName`, `metadata.name`, ...).
        field: &'static str,
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A group name contains a character FastDFS rejects.
    #[error(
        "{field} {name:?} contains {character:?}; FastDFS group names allow only ASCII letters \
         and digits{hint}",
        hint = group_name_hint(.field)
    )]
    GroupNameInvalidCharacter {
        /// Where the name came from (`spec.groupName`, `metadata.name`, ...).
        field: &'static str,
        /// The name.
        name: String,
        /// The first character that is not allowed.
        character: char,
    },

    /// Another, older `StorageGroup` of the same cluster already claims the group name.
    #[error("group name {group_name:?} is already claimed by StorageGroup {claimed_by:?}")]
    GroupNameConflict {
        /// The contested group name.
        group_name: String,
        /// Name of the `StorageGroup` that keeps it.
        claimed_by: String,
    },

    /// `settings.reservedStorageSpace` is neither a ratio nor a size with a unit.
    #[error(
        "reservedStorageSpace {value:?} must be a ratio such as \"10%\" or a size such as \
         \"1024M\" or \"10G\""
    )]
    InvalidReservedSpace {
        /// The value found.
        value: String,
    },

    /// `settings.storeLookup` is `SpecifiedGroup` without `settings.storeGroup`.
    #[error("settings.storeGroup is required when settings.storeLookup is SpecifiedGroup")]
    MissingStoreGroup,

    /// `volume.storePaths` is outside 1..=256.
    #[error("spec.volume.storePaths is {store_paths}, but must be between 1 and 256")]
    InvalidStorePaths {
        /// The value found.
        store_paths: i32,
    },

    /// `volume.subdirCountPerPath` is outside 1..=256.
    #[error("spec.volume.subdirCountPerPath is {count}, but must be between 1 and 256")]
    InvalidSubdirCount {
        /// The value found.
        count: i32,
    },

    /// An entry of `spec.trackers.external` is not `host:port`.
    #[error("spec.trackers.external: {endpoint:?} is not host:port with a port from 1 to 65535")]
    InvalidTrackerEndpoint {
        /// The entry.
        endpoint: String,
    },

    /// `spec.trackers.externalStorageIds` names no usable `storage_ids.conf`.
    #[error("spec.trackers.externalStorageIds (ConfigMap {config_map:?}, key {key:?}): {reason}")]
    InvalidExternalStorageIds {
        /// Name of the ConfigMap.
        config_map: String,
        /// Key within it.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// `spec.expose` cannot work as given.
    #[error("spec.expose: {reason}")]
    InvalidExpose {
        /// What is wrong.
        reason: String,
    },

    /// `settings.compat.ipFieldWidth` is neither 15 nor 45.
    #[error(
        "settings.trunk sizes do not fit: slotMinSize {slot_min} must be 64 to 65536, \
         slotMaxSize {slot_max} above it and at most half of trunkFileSize {trunk_file}, \
         which must be 4 MiB to 1 GiB"
    )]
    InvalidTrunkSizes {
        /// `slotMinSize`.
        slot_min: i32,
        /// `slotMaxSize`.
        slot_max: i32,
        /// `trunkFileSize`.
        trunk_file: i32,
    },
    #[error("settings.compat.ipFieldWidth is {width}, but must be 15 or 45")]
    InvalidIpFieldWidth {
        /// The value found.
        width: i32,
    },

    /// A port is outside 1..=65535.
    #[error("{field} is {port}, but must be between 1 and 65535")]
    InvalidPort {
        /// Path of the offending field.
        field: &'static str,
        /// The value found.
        port: i32,
    },

    /// Two listeners of the same Pod were given the same port.
    #[error("spec.trackers.port and spec.trackers.httpPort are both {port}")]
    PortConflict {
        /// The shared port.
        port: i32,
    },

    /// The `FdfsCluster` a `StorageGroup` belongs to fails its own validation.
    #[error("FdfsCluster {cluster:?} is invalid")]
    ClusterInvalid {
        /// Name of the cluster.
        cluster: String,
        /// Why the cluster is invalid.
        #[source]
        source: Box<Error>,
    },

    /// A call to the Kubernetes API failed.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing, e.g. `apply StatefulSet fdfs/group1`.
        action: String,
        /// What the client reported.
        #[source]
        source: kube::Error,
    },

    /// No tracker of a cluster could be asked over the FastDFS protocol.
    #[error("cannot reach the trackers of FdfsCluster {cluster:?}: {source}")]
    TrackerUnreachable {
        /// Name of the cluster.
        cluster: String,
        /// What the FastDFS client reported.
        #[source]
        source: fdfs_node::client::ClientError,
    },

    /// A tracker refused to remove a storage (FastDFS command 93).
    #[error("tracker {tracker} refused to delete storage {storage_id} of group {group}: {status}")]
    DeleteStorageRefused {
        /// Address of the tracker.
        tracker: String,
        /// FastDFS group name.
        group: String,
        /// Server id of the storage.
        storage_id: String,
        /// The status the tracker answered.
        status: fdfs_node::proto::Status,
    },

    /// Another operator replica took over the leader Lease.
    #[error("lost the leader Lease {lease:?} to another replica")]
    LeaseLost {
        /// Name of the Lease.
        lease: String,
    },

    /// A CRD could not be rendered as YAML.
    #[error("cannot render CRD {name} as YAML")]
    RenderCrd {
        /// Name of the CRD.
        name: String,
        /// What the YAML serializer reported.
        #[source]
        source: serde_norway::Error,
    },
}

impl Error {
    /// CamelCase reason for a condition or Event about this error; also a stable metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ClusterNotFound { .. } => "ClusterNotFound",
            Self::MissingImage => "MissingImage",
            Self::InvalidResourceName { .. } => "InvalidResourceName",
            Self::StorageIdConflict { .. } => "StorageIdConflict",
            Self::InvalidReplicas { .. } => "InvalidReplicas",
            Self::GroupNameEmpty { .. } => "GroupNameEmpty",
            Self::GroupNameTooLong { .. } => "GroupNameTooLong",
            Self::GroupNameInvalidCharacter { .. } => "GroupNameInvalidCharacter",
            Self::GroupNameConflict { .. } => "GroupNameConflict",
            Self::InvalidReservedSpace { .. } => "InvalidReservedSpace",
            Self::MissingStoreGroup => "MissingStoreGroup",
            Self::InvalidStorePaths { .. } => "InvalidStorePaths",
            Self::InvalidSubdirCount { .. } => "InvalidSubdirCount",
            Self::InvalidExpose { .. } => "InvalidExpose",
            Self::InvalidTrackerEndpoint { .. } => "InvalidTrackerEndpoint",
            Self::InvalidExternalStorageIds { .. } => "InvalidExternalStorageIds",
            Self::InvalidIpFieldWidth { .. } => "InvalidIpFieldWidth",
            Self::InvalidTrunkSizes { .. } => "InvalidTrunkSizes",
            Self::InvalidPort { .. } => "InvalidPort",
            Self::PortConflict { .. } => "PortConflict",
            Self::ClusterInvalid { .. } => "ClusterInvalid",
            Self::RenderCrd { .. } => "RenderCrd",
            Self::Kube { .. } => "KubeApiError",
            Self::TrackerUnreachable { .. } => "TrackerUnreachable",
            Self::DeleteStorageRefused { .. } => "DeleteStorageRefused",
            Self::LeaseLost { .. } => "LeaseLost",
        }
    }

    /// Whether the error is about the spec itself: retrying cannot help until the resource (or
    /// one it refers to) changes, so the operator reports it and waits for a change.
    pub fn is_invalid_spec(&self) -> bool {
        !matches!(
            self,
            Self::Kube { .. }
                | Self::TrackerUnreachable { .. }
                | Self::DeleteStorageRefused { .. }
                | Self::LeaseLost { .. }
                | Self::RenderCrd { .. }
        )
    }
}

/// Where the name was taken from `metadata.name`, point at the field that overrides it.
fn group_name_hint(field: &str) -> &'static str {
    if field == "metadata.name" {
        " (set spec.groupName)"
    } else {
        ""
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
