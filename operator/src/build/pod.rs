//! The Pod template both node roles share: one `fdfs-node` container started with its rendered
//! configuration, probes on the node's HTTP port, and a shutdown that lets the node drain.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapProjection, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, Lifecycle, LifecycleHandler, ObjectFieldSelector, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, SleepAction,
    TopologySpreadConstraint, Volume, VolumeMount, VolumeProjection, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::{ImagePullPolicy, Scheduling, SecretKeyRef};
use crate::naming;

use super::{
    CONFIG_DIR, DATA_DIR, DATA_VOLUME, FASTDFS_PORT_NAME, HTTP_PORT_NAME, HTTP_SECRET_ENV,
};

/// Seconds the kubelet waits before sending SIGTERM, so Endpoints and clients stop sending
/// new requests to a Pod that is going away.
pub const PRE_STOP_SECONDS: i64 = 5;
/// Unprivileged user and group the node runs as; also the owner group of its volume.
pub const NODE_UID: i64 = 65532;

/// The role a node Pod plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `fdfs-node tracker`.
    Tracker,
    /// `fdfs-node storage`.
    Storage,
}

impl Role {
    /// What a node of the role asks for when its resource lists none: a scheduler that
    /// counts it, and a QoS class above BestEffort. No limits: a storage copying a group
    /// needs bursts.
    pub fn default_requests(self) -> ResourceRequirements {
        let (cpu, memory) = match self {
            Self::Tracker => ("50m", "64Mi"),
            Self::Storage => ("100m", "128Mi"),
        };
        ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity(cpu.into())),
                ("memory".to_owned(), Quantity(memory.into())),
            ])),
            ..Default::default()
        }
    }

    /// The `fdfs-node` subcommand, also the container name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tracker => "tracker",
            Self::Storage => "storage",
        }
    }

    /// Seconds the node gets after SIGTERM: the preStop pause, the node's own drain deadline
    /// (5 s for a tracker; 10 s for a storage, which first tells its trackers it is leaving)
    /// and a margin.
    pub fn grace_period_seconds(self) -> i64 {
        match self {
            Self::Tracker => PRE_STOP_SECONDS + 5 + 10,
            Self::Storage => PRE_STOP_SECONDS + 10 + 15,
        }
    }
}

/// Everything that differs between the Pods of the two roles.
#[derive(Debug)]
pub struct NodePod<'a> {
    pub role: Role,
    pub image: &'a str,
    pub pull_policy: Option<ImagePullPolicy>,
    /// File name of the role's configuration inside [`CONFIG_DIR`].
    pub config_file: &'a str,
    /// ConfigMap holding that file.
    pub config_map: String,
    /// The cluster's ConfigMap holding `storage_ids.conf`.
    pub storage_ids_config_map: String,
    pub port: i32,
    pub http_port: i32,
    pub resources: Option<&'a ResourceRequirements>,
    pub scheduling: &'a Scheduling,
    pub labels: BTreeMap<String, String>,
    /// Hash of the rendered configuration; a change rolls the Pods.
    pub config_hash: String,
    pub http_secret: Option<&'a SecretKeyRef>,
    /// On the node's network (`hostNetwork`): the Pod's address is its node's.
    pub host_network: bool,
    /// Listens on `port` plus the Pod's StatefulSet index (a NodePort per storage).
    pub port_from_index: bool,
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(HTTP_PORT_NAME.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

impl NodePod<'_> {
    /// The `fdfs-node` command line. `$(POD_IP)` is expanded by the kubelet from the
    /// environment, so each node listens on its own Pod address.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            self.role.as_str().into(),
            "--config".into(),
            format!("{CONFIG_DIR}/{}", self.config_file),
            "--bind".into(),
            format!("$(POD_IP):{}", self.port),
        ];
        if self.port_from_index {
            args.extend(["--port-offset".into(), "$(POD_INDEX)".into()]);
        }
        args
    }

    fn env(&self) -> Vec<EnvVar> {
        let mut env = vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_IP", "status.podIP"),
        ];
        if self.port_from_index {
            env.push(field_env(
                "POD_INDEX",
                &format!("metadata.labels['{}']", naming::POD_INDEX_LABEL),
            ));
        }
        if let Some(secret) = self.http_secret {
            env.push(EnvVar {
                name: HTTP_SECRET_ENV.into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.name.clone(),
                        key: secret.key.clone(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        env
    }

    fn container(&self) -> Container {
        Container {
            name: self.role.as_str().into(),
            image: Some(self.image.into()),
            image_pull_policy: self.pull_policy.map(|p| p.as_str().into()),
            command: Some(vec!["fdfs-node".into()]),
            args: Some(self.args()),
            env: Some(self.env()),
            ports: Some(vec![
                ContainerPort {
                    name: Some(FASTDFS_PORT_NAME.into()),
                    container_port: self.port,
                    // Declared on the node too, so the scheduler keeps two storages that
                    // would take the same node port apart.
                    host_port: self.host_network.then_some(self.port),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
                ContainerPort {
                    name: Some(HTTP_PORT_NAME.into()),
                    container_port: self.http_port,
                    host_port: self.host_network.then_some(self.http_port),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
            ]),
            // A storage creates its directory tree and may copy a whole group before it is
            // ready; the startup probe keeps liveness out of the way until the node answers.
            startup_probe: Some(http_probe("/healthz", 5, 120)),
            liveness_probe: Some(http_probe("/healthz", 10, 6)),
            // Ready means: a tracker that answers, or a storage every tracker sees ACTIVE and
            // caught up with its peers. StatefulSet rolls wait on it.
            readiness_probe: Some(http_probe("/readyz", 5, 3)),
            lifecycle: Some(Lifecycle {
                pre_stop: Some(LifecycleHandler {
                    sleep: Some(SleepAction {
                        seconds: PRE_STOP_SECONDS,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            resources: Some(
                self.resources
                    .cloned()
                    .unwrap_or_else(|| self.role.default_requests()),
            ),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "config".into(),
                    mount_path: CONFIG_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: DATA_VOLUME.into(),
                    mount_path: DATA_DIR.into(),
                    ..Default::default()
                },
            ]),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn volumes(&self) -> Vec<Volume> {
        let config_map = |name: &str| VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: name.into(),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        // The data volume comes from the StatefulSet's claim template.
        vec![Volume {
            name: "config".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![
                    config_map(&self.config_map),
                    config_map(&self.storage_ids_config_map),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }]
    }

    /// Pods of one component (the trackers of a cluster, the members of a group) prefer
    /// different nodes: one node lost must not take every copy of a group.
    fn default_affinity(&self) -> Affinity {
        Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            label_selector: Some(self.selector()),
                            topology_key: "kubernetes.io/hostname".into(),
                            ..Default::default()
                        },
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// ... and spread over zones where there are some, never at the cost of not running.
    fn default_spread(&self) -> Vec<TopologySpreadConstraint> {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(self.selector()),
            ..Default::default()
        }]
    }

    fn selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.labels.clone()),
            ..Default::default()
        }
    }

    /// The Pod template.
    pub fn template(&self) -> PodTemplateSpec {
        let scheduling = self.scheduling;
        let non_empty = |v: bool| v.then_some(());
        let spread = scheduling
            .topology_spread_constraints
            .clone()
            .unwrap_or_else(|| self.default_spread());
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(self.labels.clone()),
                annotations: Some(BTreeMap::from([(
                    naming::CONFIG_HASH_ANNOTATION.into(),
                    self.config_hash.clone(),
                )])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![self.container()],
                volumes: Some(self.volumes()),
                termination_grace_period_seconds: Some(self.role.grace_period_seconds()),
                enable_service_links: Some(false),
                host_network: self.host_network.then_some(true),
                // On the node's network, cluster names must still resolve.
                dns_policy: self.host_network.then(|| "ClusterFirstWithHostNet".into()),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(NODE_UID),
                    run_as_group: Some(NODE_UID),
                    fs_group: Some(NODE_UID),
                    // Only a volume whose root has another owner is walked and re-owned:
                    // a storage holds millions of files.
                    fs_group_change_policy: Some("OnRootMismatch".into()),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                node_selector: non_empty(!scheduling.node_selector.is_empty())
                    .map(|()| scheduling.node_selector.clone()),
                tolerations: non_empty(!scheduling.tolerations.is_empty())
                    .map(|()| scheduling.tolerations.clone()),
                affinity: Some(
                    scheduling
                        .affinity
                        .clone()
                        .unwrap_or_else(|| self.default_affinity()),
                )
                .filter(|a| *a != Affinity::default()),
                topology_spread_constraints: non_empty(!spread.is_empty()).map(|()| spread),
                ..Default::default()
            }),
        }
    }
}
