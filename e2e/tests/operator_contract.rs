//! Contract between the operator and the node: the operator renders the tracker StatefulSet and
//! a group's StatefulSet and ConfigMaps for a sample cluster, and real `fdfs-node` processes
//! run with exactly the rendered command, arguments, environment and configuration files.
//! The storages must join every tracker, and an upload and a download must work.
//!
//! What the kubelet and the cluster network would do is emulated, and nothing else:
//!
//! | Kubernetes | here |
//! |---|---|
//! | each Pod has its own IP | each Pod gets its own loopback address, 127.0.31.x (table below) |
//! | the image's `PATH` finds `fdfs-node` | `command[0]` is this build's `fdfs-node` binary |
//! | downward API env (`metadata.name`, `metadata.namespace`, `status.podIP`) | the Pod's name, `fdfs`, its loopback address |
//! | `$(VAR)` in `args` expanded from the container env | the same expansion |
//! | ConfigMaps projected into `/etc/fdfs`, the data volume at `/var/lib/fdfs` | a directory per Pod; paths under those mounts, in args and in config files, point into it |
//! | cluster DNS: a Pod's name under its headless Service resolves to its IP; the tracker headless Service name resolves to every tracker Pod | names in config files replaced by addresses; a `tracker_server` line whose name stands for N trackers becomes N lines, one per address, as the node treats a name with N addresses |
//!
//! | Pod | address |
//! |---|---|
//! | tracker Pods `main-tracker-0`, `main-tracker-1` | 127.0.31.1, 127.0.31.2 |
//! | storage Pods `group1-0`, `group1-1` | 127.0.31.11, 127.0.31.12 |

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fdfs_node::client::{Client, ClientConfig};
use fdfs_node::proto::StorageStatus;
use fdfs_operator::build::{self, BuildOptions, conf::GroupIds};
use fdfs_operator::crd::{FdfsCluster, StorageGroup};
use fdfs_operator::validate::{validate_cluster, validate_storage_group};
use serde_json::{Value, json};

const NAMESPACE: &str = "fdfs";
const CLUSTER_DOMAIN: &str = "cluster.local";
const TRACKER_PODS: [(&str, &str); 2] = [
    ("main-tracker-0", "127.0.31.1"),
    ("main-tracker-1", "127.0.31.2"),
];
const STORAGE_PODS: [(&str, &str); 2] = [("group1-0", "127.0.31.11"), ("group1-1", "127.0.31.12")];

fn sample() -> (FdfsCluster, StorageGroup) {
    let cluster = serde_json::from_value(json!({
        "apiVersion": "fdfs.dev/v1alpha1", "kind": "FdfsCluster",
        "metadata": {"name": "main", "namespace": NAMESPACE, "uid": "cluster-uid"},
        // A small absolute reserve: the test must not depend on how full the host disk is.
        "spec": {"image": "fdfs-node:contract", "trackers": {"replicas": 2},
                 "settings": {"reservedStorageSpace": "1MB"}},
    }))
    .expect("cluster");
    let group = serde_json::from_value(json!({
        "apiVersion": "fdfs.dev/v1alpha1", "kind": "StorageGroup",
        "metadata": {"name": "group1", "namespace": NAMESPACE, "uid": "group-uid"},
        "spec": {"clusterRef": "main", "replicas": 2,
                 "volume": {"size": "1Gi", "storePaths": 2, "subdirCountPerPath": 4}},
    }))
    .expect("group");
    (cluster, group)
}

/// What the cluster's DNS answers.
fn dns() -> BTreeMap<String, Vec<String>> {
    let mut names = BTreeMap::new();
    names.insert(
        format!("main-tracker-headless.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"),
        TRACKER_PODS
            .iter()
            .map(|(_, ip)| (*ip).to_owned())
            .collect(),
    );
    for (pod, ip) in STORAGE_PODS {
        names.insert(
            format!("{pod}.group1.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"),
            vec![ip.to_owned()],
        );
    }
    names
}

/// One emulated Pod: its directory, address and the container's rendered spec.
struct Pod {
    name: &'static str,
    ip: &'static str,
    root: PathBuf,
    /// What the cluster's DNS answers.
    names: BTreeMap<String, Vec<String>>,
}

impl Pod {
    fn new(dir: &Path, name: &'static str, ip: &'static str) -> Self {
        Self::with_names(dir, name, ip, dns())
    }

    fn with_names(
        dir: &Path,
        name: &'static str,
        ip: &'static str,
        names: BTreeMap<String, Vec<String>>,
    ) -> Self {
        let root = dir.join(name);
        std::fs::create_dir_all(root.join("etc/fdfs")).expect("config dir");
        std::fs::create_dir_all(root.join("var/lib/fdfs")).expect("data dir");
        Self {
            name,
            ip,
            root,
            names,
        }
    }

    /// A path inside the container, as the host sees it.
    fn mount(&self, text: &str) -> String {
        text.replace(
            "/etc/fdfs",
            &self.root.join("etc/fdfs").display().to_string(),
        )
        .replace(
            "/var/lib/fdfs",
            &self.root.join("var/lib/fdfs").display().to_string(),
        )
    }

    /// Writes the files of the ConfigMaps the Pod's projected volume names.
    fn project(&self, pod_spec: &Value, config_maps: &BTreeMap<String, Value>) {
        let sources = pod_spec["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == "config")
            .and_then(|v| v["projected"]["sources"].as_array())
            .expect("projected config volume")
            .clone();
        for source in sources {
            let name = source["configMap"]["name"]
                .as_str()
                .expect("configMap name");
            let data = config_maps[name]["data"].as_object().expect("data");
            for (file, text) in data {
                let text = self.mount(&resolve_names(text.as_str().expect("text"), &self.names));
                std::fs::write(self.root.join("etc/fdfs").join(file), text).expect("write");
            }
        }
    }

    /// The container's environment as the kubelet sets it.
    fn env(&self, container: &Value) -> Vec<(String, String)> {
        container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let name = e["name"].as_str().expect("env name").to_owned();
                let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                    Some("metadata.name") => self.name.to_owned(),
                    Some("metadata.namespace") => NAMESPACE.to_owned(),
                    Some("status.podIP") => self.ip.to_owned(),
                    // The StatefulSet controller labels each Pod with its ordinal.
                    Some("metadata.labels['apps.kubernetes.io/pod-index']") => self
                        .name
                        .rsplit_once('-')
                        .map(|(_, ordinal)| ordinal.to_owned())
                        .expect("a StatefulSet Pod name ends in its ordinal"),
                    Some(other) => panic!("no emulation for field {other}"),
                    None => e["value"].as_str().expect("plain value").to_owned(),
                };
                (name, value)
            })
            .collect()
    }

    /// Starts the container's command and waits for the node's start-up line.
    fn start(&self, container: &Value, binary: &Path) -> anyhow::Result<Node> {
        let env = self.env(container);
        let command: Vec<&str> = container["command"]
            .as_array()
            .context("command")?
            .iter()
            .map(|v| v.as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            command,
            ["fdfs-node"],
            "the image runs fdfs-node from its PATH"
        );
        let args: Vec<String> = container["args"]
            .as_array()
            .context("args")?
            .iter()
            .map(|a| self.mount(&expand(a.as_str().unwrap_or_default(), &env)))
            .collect();
        let mut child = Command::new(binary)
            .args(&args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .current_dir(&self.root)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} {args:?}", self.name))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let node = Node {
            name: self.name,
            child,
        };
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(line) => {
                eprintln!("{}: {line}", self.name);
                Ok(node)
            }
            Err(_) => bail!("{} printed no start-up line with args {args:?}", self.name),
        }
    }
}

/// `$(VAR)` expansion of container args, as the kubelet does it.
fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = arg.to_owned();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// Names in a config file replaced by what the cluster DNS (`names`) answers for them.
fn resolve_names(text: &str, names: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut lines = vec![line.to_owned()];
        for (name, ips) in names {
            if line.contains(name.as_str()) {
                lines = ips
                    .iter()
                    .map(|ip| line.replace(name.as_str(), ip))
                    .collect();
                break;
            }
        }
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// A running node process, stopped with SIGTERM when dropped.
struct Node {
    name: &'static str,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} ignored SIGTERM", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn to_value<T: serde::Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).expect("object serializes")
}

fn container(workload: &Value) -> (Value, Value) {
    let pod_spec = workload["spec"]["template"]["spec"].clone();
    let container = pod_spec["containers"][0].clone();
    (pod_spec, container)
}

/// Polls the trackers until `done` holds for the storages of group1 in every one of them.
async fn wait_until(
    trackers: &[String],
    what: &str,
    done: impl Fn(&[fdfs_node::proto::monitor::StorageStat]) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    for tracker in trackers {
        let client = Client::new(ClientConfig::new(vec![tracker.clone()])).await?;
        loop {
            if let Ok(list) = client.list_storages("group1").await
                && done(&list)
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let list = client.list_storages("group1").await;
                bail!("tracker {tracker}: {what} did not happen; storages: {list:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_trackers_and_storages_form_a_working_cluster() -> anyhow::Result<()> {
    let binary = fdfs_e2e::workspace_binary("fdfs-node")?;
    let dir = tempfile::tempdir()?;
    let (cluster, group) = sample();
    let opts = BuildOptions {
        cluster_domain: CLUSTER_DOMAIN.into(),
    };
    let valid_cluster = validate_cluster(&cluster, None)?;
    let valid_group =
        validate_storage_group(&group, Some(&cluster), std::slice::from_ref(&group), None)?;
    let tracker_objects = build::tracker_objects(
        &cluster,
        &valid_cluster,
        &[GroupIds {
            group_name: valid_group.group_name.clone(),
            storage_group: "group1".into(),
            replicas: 2,
            writable: 2,
            ..Default::default()
        }],
        &opts,
    );
    let group_objects = build::group_objects(&cluster, &group, &valid_group, 2, &opts);
    let config_maps: BTreeMap<String, Value> = [
        &tracker_objects.config,
        &tracker_objects.storage_ids,
        &group_objects.config,
    ]
    .into_iter()
    .map(|cm| (cm.metadata.name.clone().unwrap_or_default(), to_value(cm)))
    .collect();

    let deployment = to_value(&tracker_objects.statefulset);
    let statefulset = to_value(&group_objects.statefulset);
    assert_eq!(deployment["spec"]["replicas"], TRACKER_PODS.len());
    assert_eq!(statefulset["spec"]["replicas"], STORAGE_PODS.len());

    // The probes look where the rendered configuration tells the node to serve HTTP.
    for (workload, file) in [
        (&deployment, "main-tracker-config"),
        (&statefulset, "group1-config"),
    ] {
        let (_, c) = container(workload);
        let http = c["ports"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "http"))
            .expect("http port")["containerPort"]
            .clone();
        let conf = config_maps[file]["data"]
            .as_object()
            .and_then(|d| d.values().next())
            .and_then(Value::as_str)
            .expect("conf");
        assert!(
            conf.contains(&format!("http.server_port = {http}\n")),
            "{file} does not serve HTTP on the probed port {http}"
        );
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    }

    let mut nodes = Vec::new();
    let (tracker_pod_spec, tracker_container) = container(&deployment);
    let mut trackers = Vec::new();
    for (name, ip) in TRACKER_PODS {
        let pod = Pod::new(dir.path(), name, ip);
        pod.project(&tracker_pod_spec, &config_maps);
        nodes.push(pod.start(&tracker_container, &binary)?);
        trackers.push(format!("{ip}:22122"));
    }
    let (storage_pod_spec, storage_container) = container(&statefulset);
    for (name, ip) in STORAGE_PODS {
        let pod = Pod::new(dir.path(), name, ip);
        pod.project(&storage_pod_spec, &config_maps);
        let conf = std::fs::read_to_string(pod.root.join("etc/fdfs/storage.conf"))?;
        assert_eq!(
            conf.matches("tracker_server = ").count(),
            TRACKER_PODS.len(),
            "the tracker Service name stands for every tracker:\n{conf}"
        );
        nodes.push(pod.start(&storage_container, &binary)?);
        // The StatefulSet starts the next Pod once this one is ready: ACTIVE everywhere.
        if name == "group1-0" {
            wait_until(&trackers, "group1-0 ACTIVE", |list| {
                list.iter()
                    .any(|s| s.ip == ip && s.status == StorageStatus::Active as u8)
            })
            .await?;
        }
    }

    // Both storages joined both trackers; the first one serves.
    wait_until(&trackers, "both storages joined", |list| {
        STORAGE_PODS
            .iter()
            .all(|(_, ip)| list.iter().any(|s| s.ip == *ip))
    })
    .await?;

    let client = Client::new(ClientConfig::new(trackers.clone())).await?;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let id = client.upload_bytes(&data, "bin", None).await?;
    assert!(id.to_string().starts_with("group1/M0"), "{id}");
    let back = client.download_bytes(&id, 0, 0).await?;
    assert!(back == data, "downloaded {} bytes differ", back.len());
    for tracker in &trackers {
        let one = Client::new(ClientConfig::new(vec![tracker.clone()])).await?;
        assert_eq!(
            one.download_bytes(&id, 0, 0).await?,
            data,
            "through {tracker}"
        );
    }

    drop(nodes);
    Ok(())
}

/// Pod addresses of the exposed cluster: the Pod network, reachable inside only.
const EXPOSED_TRACKER: (&str, &str) = ("main-tracker-0", "172.20.0.1");
const EXPOSED_STORAGES: [(&str, &str); 4] = [
    ("group1-0", "172.20.0.11"),
    ("group1-1", "172.20.0.12"),
    ("group2-0", "172.20.0.21"),
    ("group2-1", "172.20.0.22"),
];
/// The node network: the node's address (NodePorts) and the load balancers' addresses.
const NODE_IP: &str = "10.79.0.1";
const LB_IPS: [&str; 2] = ["10.79.0.11", "10.79.0.12"];
/// A client outside the Kubernetes cluster.
const OUTSIDE_IP: &str = "10.79.0.2";

/// Two network namespaces joined by a veth pair: the Kubernetes cluster (Pod addresses on
/// its loopback, the node and load balancer addresses on its end of the link) and a host
/// outside it, which reaches the node network and, as through a load balancer that keeps
/// client addresses, the tracker Pod, but no other Pod. Deleted when dropped.
struct Networks {
    cluster: String,
    outside: String,
}

impl Networks {
    fn new() -> anyhow::Result<Self> {
        let id = std::process::id();
        let nets = Networks {
            cluster: format!("fdfs-k8s-{id}"),
            outside: format!("fdfs-out-{id}"),
        };
        let ip = fdfs_e2e::ip;
        ip(&["netns", "add", &nets.cluster])?;
        ip(&["netns", "add", &nets.outside])?;
        ip(&[
            "link",
            "add",
            "veth-k8s",
            "netns",
            &nets.cluster,
            "type",
            "veth",
            "peer",
            "name",
            "veth-out",
            "netns",
            &nets.outside,
        ])?;
        let (k8s, out) = (nets.cluster.as_str(), nets.outside.as_str());
        for addr in [NODE_IP].iter().chain(&LB_IPS) {
            ip(&[
                "-n",
                k8s,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "veth-k8s",
            ])?;
        }
        for (_, addr) in std::iter::once(&EXPOSED_TRACKER).chain(&EXPOSED_STORAGES) {
            ip(&["-n", k8s, "addr", "add", &format!("{addr}/32"), "dev", "lo"])?;
        }
        ip(&[
            "-n",
            out,
            "addr",
            "add",
            &format!("{OUTSIDE_IP}/24"),
            "dev",
            "veth-out",
        ])?;
        for (ns, dev) in [(k8s, "veth-k8s"), (out, "veth-out")] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        ip(&[
            "-n",
            out,
            "route",
            "add",
            &format!("{}/32", EXPOSED_TRACKER.1),
            "via",
            NODE_IP,
        ])?;
        Ok(nets)
    }
}

impl Drop for Networks {
    fn drop(&mut self) {
        let _ = fdfs_e2e::ip(&["netns", "del", &self.cluster]);
        let _ = fdfs_e2e::ip(&["netns", "del", &self.outside]);
    }
}

/// What a load balancer or a NodePort does: connections to `listen` go on to `target`.
async fn forward(listen: String, target: String) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(())
}

fn exposed_sample() -> (FdfsCluster, Vec<StorageGroup>) {
    let cluster = serde_json::from_value(json!({
        "apiVersion": "fdfs.dev/v1alpha1", "kind": "FdfsCluster",
        "metadata": {"name": "main", "namespace": NAMESPACE, "uid": "cluster-uid"},
        "spec": {"image": "fdfs-node:contract", "trackers": {"replicas": 1},
                 "clientService": {"type": "LoadBalancer"},
                 "settings": {"reservedStorageSpace": "1MB"}},
    }))
    .expect("cluster");
    let group = |name: &str, expose: Value| -> StorageGroup {
        serde_json::from_value(json!({
            "apiVersion": "fdfs.dev/v1alpha1", "kind": "StorageGroup",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": format!("{name}-uid")},
            "spec": {"clusterRef": "main", "replicas": 2, "expose": expose,
                     "volume": {"size": "1Gi", "subdirCountPerPath": 2}},
        }))
        .expect("group")
    };
    let groups = vec![
        group("group1", json!({"type": "LoadBalancer"})),
        group(
            "group2",
            json!({"type": "NodePort", "nodeAddress": NODE_IP, "nodePortBase": 30100}),
        ),
    ];
    (cluster, groups)
}

fn exposed_dns() -> BTreeMap<String, Vec<String>> {
    let mut names = BTreeMap::new();
    names.insert(
        format!("main-tracker-headless.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"),
        vec![EXPOSED_TRACKER.1.to_owned()],
    );
    for (pod, ip) in EXPOSED_STORAGES {
        let group = pod.rsplit_once('-').expect("ordinal").0;
        names.insert(
            format!("{pod}.{group}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"),
            vec![ip.to_owned()],
        );
    }
    names
}

/// Every storage of `group` ACTIVE in the tracker.
async fn group_active(client: &Client, group: &str, count: usize) -> bool {
    client.list_storages(group).await.is_ok_and(|list| {
        list.len() == count && list.iter().all(|s| s.status == StorageStatus::Active as u8)
    })
}

fn body(seed: u32) -> Vec<u8> {
    (0..150_000u32).map(|i| (i * seed % 251) as u8).collect()
}

/// A group published through per-storage load balancers and one through NodePorts, rendered
/// by the operator and run as real nodes: a client inside the cluster is given Pod
/// addresses, a client outside (another network namespace, which cannot reach the storage
/// Pods at all) is given the load balancer and node addresses, and each completes uploads
/// and downloads, including of the other's files.
#[test]
fn exposed_storages_serve_clients_inside_and_outside_the_cluster() -> anyhow::Result<()> {
    let nets = Networks::new()?;
    let binary = fdfs_e2e::workspace_binary("fdfs-node")?;
    let dir = tempfile::tempdir()?;
    let (cluster, groups) = exposed_sample();
    let opts = BuildOptions {
        cluster_domain: CLUSTER_DOMAIN.into(),
    };
    let valid_cluster = validate_cluster(&cluster, None)?;
    let mut ids = Vec::new();
    let mut workloads = Vec::new();
    let mut config_maps = BTreeMap::new();
    for (sg, lb) in groups.iter().zip([true, false]) {
        let valid = validate_storage_group(sg, Some(&cluster), &groups, None)?;
        let objects = build::group_objects(&cluster, sg, &valid, 2, &opts);
        // The cloud gives each load balancer an address; NodePorts need none.
        let mut stored = objects.outside.clone();
        if lb {
            for (service, ip) in stored.iter_mut().zip(LB_IPS) {
                service.status = serde_json::from_value(json!({
                    "loadBalancer": {"ingress": [{"ip": ip}]}
                }))?;
            }
        }
        let outside = build::outside_addresses(
            sg.metadata.name.as_deref().unwrap_or_default(),
            &sg.spec.expose,
            &stored,
        );
        ids.push(GroupIds {
            group_name: valid.group_name.clone(),
            storage_group: sg.metadata.name.clone().unwrap_or_default(),
            replicas: 2,
            writable: 2,
            expose: sg.spec.expose.clone(),
            outside,
        });
        config_maps.insert(
            objects.config.metadata.name.clone().unwrap_or_default(),
            to_value(&objects.config),
        );
        workloads.push(to_value(&objects.statefulset));
    }
    let trackers = build::tracker_objects(&cluster, &valid_cluster, &ids, &opts);
    for cm in [&trackers.config, &trackers.storage_ids] {
        config_maps.insert(cm.metadata.name.clone().unwrap_or_default(), to_value(cm));
    }
    let storage_ids = to_value(&trackers.storage_ids)["data"]["storage_ids.conf"].clone();
    assert!(
        storage_ids
            .as_str()
            .is_some_and(|t| t.contains(",10.79.0.11:23000") && t.contains(",10.79.0.1:30101")),
        "{storage_ids}"
    );
    let tracker_workload = to_value(&trackers.statefulset);
    let tracker = format!("{}:22122", EXPOSED_TRACKER.1);

    let outside_net = nets.outside.clone();
    let dir_path = dir.path().to_path_buf();
    fdfs_e2e::in_netns(&nets.cluster.clone(), async move || {
        let names = exposed_dns();
        let mut nodes = Vec::new();
        let (spec, container_spec) = container(&tracker_workload);
        let (name, ip) = EXPOSED_TRACKER;
        let pod = Pod::with_names(&dir_path, name, ip, names.clone());
        pod.project(&spec, &config_maps);
        nodes.push(pod.start(&container_spec, &binary)?);
        let inside = Client::new(ClientConfig::new(vec![tracker.clone()])).await?;
        for (workload, group) in workloads.iter().zip(["group1", "group2"]) {
            let (spec, container_spec) = container(workload);
            for (ordinal, (name, ip)) in EXPOSED_STORAGES
                .iter()
                .filter(|(name, _)| name.starts_with(group))
                .enumerate()
            {
                let pod = Pod::with_names(&dir_path, name, ip, names.clone());
                pod.project(&spec, &config_maps);
                nodes.push(pod.start(&container_spec, &binary)?);
                fdfs_e2e::wait_for(
                    &format!("{name} ACTIVE"),
                    Duration::from_secs(120),
                    async || group_active(&inside, group, ordinal + 1).await,
                )
                .await?;
            }
        }
        // The load balancers and NodePorts.
        for (lb, (_, pod_ip)) in LB_IPS.iter().zip(&EXPOSED_STORAGES[..2]) {
            forward(format!("{lb}:23000"), format!("{pod_ip}:23000")).await?;
        }
        for (n, (_, pod_ip)) in EXPOSED_STORAGES[2..].iter().enumerate() {
            let port = 30100 + n;
            forward(format!("{NODE_IP}:{port}"), format!("{pod_ip}:{port}")).await?;
        }

        // Inside: Pod addresses, and the NodePort group's own ports.
        let pods: Vec<String> = EXPOSED_STORAGES
            .iter()
            .map(|(_, ip)| (*ip).to_owned())
            .collect();
        for _ in 0..4 {
            let t = inside.query_store(Some("group1")).await?;
            anyhow::ensure!(
                pods[..2].contains(&t.addr.ip) && t.addr.port == 23000,
                "inside client given {:?}",
                t.addr
            );
            let t = inside.query_store(Some("group2")).await?;
            let n = pods[2..]
                .iter()
                .position(|ip| *ip == t.addr.ip)
                .context("a group2 Pod")?;
            anyhow::ensure!(t.addr.port == 30100 + n as u64, "{:?}", t.addr);
        }
        let mut inside_files = Vec::new();
        for (seed, group) in [(7, "group1"), (11, "group2")] {
            let data = body(seed);
            let id = inside.upload_bytes(&data, "bin", Some(group)).await?;
            anyhow::ensure!(inside.download_bytes(&id, 0, 0).await? == data, "{id}");
            inside_files.push((id, data));
        }

        // Outside: the load balancer and node addresses, which it can reach; the Pods it
        // cannot.
        let files = inside_files.clone();
        let outside_files = tokio::task::spawn_blocking(move || {
            fdfs_e2e::in_netns(&outside_net, async move || {
                let refused = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::TcpStream::connect(format!("{}:23000", EXPOSED_STORAGES[0].1)),
                )
                .await;
                anyhow::ensure!(
                    !matches!(refused, Ok(Ok(_))),
                    "a storage Pod is reachable from outside: the test would prove nothing"
                );
                let client = Client::new(ClientConfig::new(vec![tracker])).await?;
                for _ in 0..4 {
                    let t = client.query_store(Some("group1")).await?;
                    anyhow::ensure!(
                        LB_IPS.contains(&t.addr.ip.as_str()) && t.addr.port == 23000,
                        "outside client given {:?}",
                        t.addr
                    );
                    let t = client.query_store(Some("group2")).await?;
                    anyhow::ensure!(
                        t.addr.ip == NODE_IP && [30100, 30101].contains(&t.addr.port),
                        "outside client given {:?}",
                        t.addr
                    );
                }
                for (id, data) in &files {
                    let at = client.query_fetch(id).await?;
                    anyhow::ensure!(
                        at.addr.ip == NODE_IP || LB_IPS.contains(&at.addr.ip.as_str()),
                        "{id} fetched at {:?}",
                        at.addr
                    );
                    anyhow::ensure!(client.download_bytes(id, 0, 0).await? == *data, "{id}");
                }
                let mut uploaded = Vec::new();
                for (seed, group) in [(13, "group1"), (17, "group2")] {
                    let data = body(seed);
                    let id = client.upload_bytes(&data, "bin", Some(group)).await?;
                    anyhow::ensure!(client.download_bytes(&id, 0, 0).await? == data, "{id}");
                    uploaded.push((id, data));
                }
                Ok(uploaded)
            })
        })
        .await??;

        // What the outside client uploaded, inside.
        for (id, data) in &outside_files {
            anyhow::ensure!(inside.download_bytes(id, 0, 0).await? == *data, "{id}");
        }
        drop(nodes);
        Ok(())
    })
}

/// The FastDFS cluster on VMs the group moves from: a tracker and a storage configured from
/// FastDFS's own `tracker.conf` / `storage.conf` keys, with IP identities.
const OLD_TRACKER: &str = "127.0.33.1";
const OLD_STORAGE: &str = "127.0.33.5";
/// The Pod of the StorageGroup that joins the old group.
const JOINING_POD: (&str, &str) = ("photos-0", "127.0.33.11");

fn old_cluster_confs(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let tracker = dir.join("old-tracker.conf");
    std::fs::write(
        &tracker,
        format!(
            "disabled = false\nbind_addr = {OLD_TRACKER}\nport = 22122\nbase_path = {}\n\
             store_lookup = 2\nuse_storage_id = false\ncheck_active_interval = 5\n",
            dir.join("old-tracker").display()
        ),
    )?;
    let storage = dir.join("old-storage.conf");
    let base = dir.join("old-storage");
    std::fs::write(
        &storage,
        format!(
            "disabled = false\ngroup_name = group1\nbind_addr = {OLD_STORAGE}\nport = 23000\n\
             base_path = {base}\nstore_path_count = 1\nstore_path0 = {base}\n\
             subdir_count_per_path = 4\ntracker_server = {OLD_TRACKER}:22122\n\
             heart_beat_interval = 1\nstat_report_interval = 1\n",
            base = base.display()
        ),
    )?;
    Ok((tracker, storage))
}

/// A StorageGroup joins a running group of another FastDFS cluster, through that cluster's
/// trackers (`spec.trackers.external`, no tracker Pods, IP identities as the old cluster
/// has): its storage, run from the rendered Pod spec, receives every file, takes uploads
/// while the old storage still serves, and serves every file alone once the old storage is
/// retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_group_joins_a_running_group_through_its_trackers() -> anyhow::Result<()> {
    let binary = fdfs_e2e::workspace_binary("fdfs-node")?;
    let dir = tempfile::tempdir()?;
    let (tracker_conf, storage_conf) = old_cluster_confs(dir.path())?;
    let _old_tracker =
        fdfs_e2e::NodeProcess::start(&["tracker", "--config", &tracker_conf.to_string_lossy()])?;
    let old_storage =
        fdfs_e2e::NodeProcess::start(&["storage", "--config", &storage_conf.to_string_lossy()])?;
    let tracker = format!("{OLD_TRACKER}:22122");
    let client = Client::new(ClientConfig::new(vec![tracker.clone()])).await?;
    fdfs_e2e::wait_for(
        "the old storage ACTIVE",
        Duration::from_secs(60),
        async || group_active(&client, "group1", 1).await,
    )
    .await?;
    let mut files = Vec::new();
    for seed in 1..=20 {
        let data = body(seed);
        files.push((client.upload_bytes(&data, "jpg", None).await?, data));
    }

    let cluster: FdfsCluster = serde_json::from_value(json!({
        "apiVersion": "fdfs.dev/v1alpha1", "kind": "FdfsCluster",
        "metadata": {"name": "main", "namespace": NAMESPACE, "uid": "cluster-uid"},
        "spec": {"image": "fdfs-node:contract",
                 "trackers": {"replicas": 0, "external": [tracker]},
                 "settings": {"useStorageId": false, "idTypeInFilename": "Ip",
                              "reservedStorageSpace": "1MB"}},
    }))?;
    let group = photos_joining_group1()?;
    let opts = BuildOptions {
        cluster_domain: CLUSTER_DOMAIN.into(),
    };
    let valid = validate_storage_group(&group, Some(&cluster), std::slice::from_ref(&group), None)?;
    let objects = build::group_objects(&cluster, &group, &valid, 1, &opts);
    let trackers = build::tracker_objects(&cluster, &validate_cluster(&cluster, None)?, &[], &opts);
    assert_eq!(
        to_value(&trackers.statefulset)["spec"]["replicas"],
        0,
        "no tracker Pods"
    );
    let config_maps: BTreeMap<String, Value> = [&objects.config, &trackers.storage_ids]
        .into_iter()
        .map(|cm| (cm.metadata.name.clone().unwrap_or_default(), to_value(cm)))
        .collect();
    let (spec, container_spec) = container(&to_value(&objects.statefulset));
    let (name, ip) = JOINING_POD;
    let names = BTreeMap::from([(
        format!("{name}.photos.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"),
        vec![ip.to_owned()],
    )]);
    let pod = Pod::with_names(dir.path(), name, ip, names);
    pod.project(&spec, &config_maps);
    let conf = std::fs::read_to_string(pod.root.join("etc/fdfs/storage.conf"))?;
    assert_eq!(
        conf.lines()
            .filter(|l| l.starts_with("tracker_server"))
            .collect::<Vec<_>>(),
        [format!("tracker_server = {OLD_TRACKER}:22122")],
        "{conf}"
    );
    let joining = pod.start(&container_spec, &binary)?;

    // It copies the group while uploads go on, and turns ACTIVE.
    for seed in 21..=30 {
        let data = body(seed);
        files.push((client.upload_bytes(&data, "jpg", None).await?, data));
    }
    fdfs_e2e::wait_for(
        "both storages ACTIVE",
        Duration::from_secs(120),
        async || group_active(&client, "group1", 2).await,
    )
    .await?;
    for seed in 31..=40 {
        let data = body(seed);
        files.push((client.upload_bytes(&data, "jpg", None).await?, data));
    }
    every_file_on(&pod, &files).await?;

    // The old storage retires: stopped, then deleted from the tracker. Every file is served.
    drop(old_storage);
    fdfs_e2e::wait_for(
        "the old storage OFFLINE",
        Duration::from_secs(60),
        async || {
            client.list_storages("group1").await.is_ok_and(|list| {
                list.iter()
                    .any(|s| s.ip == OLD_STORAGE && s.status != StorageStatus::Active as u8)
            })
        },
    )
    .await?;
    for (tracker, status) in client.delete_storage("group1", OLD_STORAGE).await {
        anyhow::ensure!(
            matches!(status, Ok(fdfs_node::proto::Status::Ok)),
            "tracker {tracker}: {status:?}"
        );
    }
    let left: Vec<String> = client
        .list_storages("group1")
        .await?
        .into_iter()
        .filter(|s| s.status != StorageStatus::Deleted as u8)
        .map(|s| s.ip)
        .collect();
    assert_eq!(left, [ip.to_owned()]);
    for (id, data) in &files {
        assert!(client.download_bytes(id, 0, 0).await? == *data, "{id}");
    }
    drop(joining);
    Ok(())
}

/// The StorageGroup `photos` of cluster `main`, one storage joining the old `group1`.
fn photos_joining_group1() -> anyhow::Result<StorageGroup> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "fdfs.dev/v1alpha1", "kind": "StorageGroup",
        "metadata": {"name": "photos", "namespace": NAMESPACE, "uid": "photos-uid"},
        "spec": {"clusterRef": "main", "groupName": "group1", "replicas": 1,
                 "volume": {"size": "1Gi", "subdirCountPerPath": 4}},
    }))?)
}

/// Waits until every file is on `pod`'s store path, byte for byte.
async fn every_file_on(pod: &Pod, files: &[StoredFile]) -> anyhow::Result<()> {
    let on_pod = |id: &fdfs_node::fileid::FileId| {
        pod.root
            .join("var/lib/fdfs/M00")
            .join(id.remote.relative_path())
    };
    fdfs_e2e::wait_for(
        "every file on the new storage",
        Duration::from_secs(120),
        async || {
            files
                .iter()
                .all(|(id, data)| std::fs::read(on_pod(id)).is_ok_and(|b| b == *data))
        },
    )
    .await?;
    Ok(())
}

/// The cluster on VMs that moves onto the operator's cluster in the migration below: a
/// tracker and a storage per group, configured from FastDFS's own conf keys, with IP
/// identities.
const VM_TRACKER: &str = "127.0.35.1";
const VM_STORAGES: [(&str, &str); 2] = [("group1", "127.0.35.5"), ("group2", "127.0.35.6")];
/// The operator's cluster: one tracker Pod, and a StorageGroup joining each old group.
const NEW_TRACKER: (&str, &str) = ("main-tracker-0", "127.0.35.21");
const NEW_STORAGES: [(&str, &str, &str); 2] = [
    ("photos-0", "photos", "127.0.35.11"),
    ("docs-0", "docs", "127.0.35.12"),
];
/// Where `photos-0` comes back after a restart (Pod addresses change).
const MOVED_PHOTOS: &str = "127.0.35.13";

/// A file a client was told is stored, and its bytes.
type StoredFile = (fdfs_node::fileid::FileId, Vec<u8>);

/// An old storage's `storage.conf`, reporting to `trackers`.
fn vm_storage_conf(
    dir: &Path,
    group: &str,
    ip: &str,
    trackers: &[&str],
) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("vm-{ip}.conf"));
    let base = dir.join(format!("vm-{ip}"));
    let mut text = format!(
        "disabled = false\ngroup_name = {group}\nbind_addr = {ip}\nport = 23000\n\
         base_path = {base}\nstore_path_count = 1\nstore_path0 = {base}\n\
         subdir_count_per_path = 4\nheart_beat_interval = 1\nstat_report_interval = 1\n",
        base = base.display()
    );
    for t in trackers {
        text.push_str(&format!("tracker_server = {t}:22122\n"));
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Storages of `group` that `tracker` (an address, port 22122) lists, with their status,
/// leaving out the records
/// deleted or left behind at an old address.
async fn members_at(tracker: &str, group: &str) -> Vec<(String, u8)> {
    let Ok(client) = Client::new(ClientConfig::new(vec![format!("{tracker}:22122")])).await else {
        return Vec::new();
    };
    let mut list: Vec<(String, u8)> = client
        .list_storages(group)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|s| {
            s.status != StorageStatus::Deleted as u8 && s.status != StorageStatus::IpChanged as u8
        })
        .map(|s| (s.ip, s.status))
        .collect();
    list.sort();
    list
}

/// Whether every tracker in `trackers` lists exactly `ips` in `group`, all ACTIVE.
async fn active_everywhere(trackers: &[&str], group: &str, ips: &[&str]) -> bool {
    let mut want: Vec<(String, u8)> = ips
        .iter()
        .map(|ip| ((*ip).to_owned(), StorageStatus::Active as u8))
        .collect();
    want.sort();
    for t in trackers {
        if members_at(t, group).await != want {
            return false;
        }
    }
    true
}

/// The migration of a running FastDFS cluster on VMs (two groups, IP identities) onto the
/// operator's cluster, step by step as `docs/migration.md` gives it, with uploads running
/// from start to end: the operator's tracker Pod and StorageGroups are added beside the old
/// tracker (`trackers.external`), the old storages report to both trackers, the new storages
/// copy each group, one of them comes back at another address after a restart, the old
/// storages are retired and then the old tracker. Every file written before and during the
/// migration downloads byte for byte through the new tracker alone, from the new storages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cluster_moves_onto_the_operators_cluster_losing_no_file() -> anyhow::Result<()> {
    use std::sync::{Arc, Mutex};
    let binary = fdfs_e2e::workspace_binary("fdfs-node")?;
    let dir = tempfile::tempdir()?;
    let old_tracker_conf = dir.path().join("vm-tracker.conf");
    std::fs::write(
        &old_tracker_conf,
        format!(
            "disabled = false\nbind_addr = {VM_TRACKER}\nport = 22122\nbase_path = {}\n\
             store_lookup = 0\nuse_storage_id = false\ncheck_active_interval = 120\n",
            dir.path().join("vm-tracker").display()
        ),
    )?;
    let old_tracker = fdfs_e2e::NodeProcess::start(&[
        "tracker",
        "--config",
        &old_tracker_conf.to_string_lossy(),
    ])?;
    let start_vm_storage = |group: &str, ip: &str, trackers: &[&str]| -> anyhow::Result<_> {
        let conf = vm_storage_conf(dir.path(), group, ip, trackers)?;
        fdfs_e2e::NodeProcess::start(&["storage", "--config", &conf.to_string_lossy()])
    };
    let mut vm_storages = Vec::new();
    for (group, ip) in VM_STORAGES {
        vm_storages.push(start_vm_storage(group, ip, &[VM_TRACKER])?);
    }
    for (group, ip) in VM_STORAGES {
        fdfs_e2e::wait_for(
            "the old storages ACTIVE",
            Duration::from_secs(60),
            async || active_everywhere(&[VM_TRACKER], group, &[ip]).await,
        )
        .await?;
    }
    let old_client = Client::new(ClientConfig::new(vec![format!("{VM_TRACKER}:22122")])).await?;
    let files: Arc<Mutex<Vec<StoredFile>>> = Arc::default();
    for seed in 1..=10 {
        for (group, _) in VM_STORAGES {
            let data = body(seed);
            let id = old_client.upload_bytes(&data, "jpg", Some(group)).await?;
            files.lock().expect("files").push((id, data));
        }
    }

    // The operator's cluster: a tracker Pod beside the old tracker, by IP address as the old
    // cluster names storages.
    let cluster: FdfsCluster = serde_json::from_value(json!({
        "apiVersion": "fdfs.dev/v1alpha1", "kind": "FdfsCluster",
        "metadata": {"name": "main", "namespace": NAMESPACE, "uid": "cluster-uid"},
        "spec": {"image": "fdfs-node:contract",
                 "trackers": {"replicas": 1, "external": [format!("{VM_TRACKER}:22122")]},
                 "settings": {"useStorageId": false, "idTypeInFilename": "Ip",
                              "reservedStorageSpace": "1MB"}},
    }))?;
    let opts = BuildOptions {
        cluster_domain: CLUSTER_DOMAIN.into(),
    };
    let trackers = build::tracker_objects(&cluster, &validate_cluster(&cluster, None)?, &[], &opts);
    let mut names = BTreeMap::from([(
        format!("main-tracker-headless.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"),
        vec![NEW_TRACKER.1.to_owned()],
    )]);
    for (pod, set, ip) in NEW_STORAGES {
        names.insert(
            format!("{pod}.{set}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"),
            vec![ip.to_owned()],
        );
    }
    let mut config_maps: BTreeMap<String, Value> = [&trackers.config, &trackers.storage_ids]
        .into_iter()
        .map(|cm| (cm.metadata.name.clone().unwrap_or_default(), to_value(cm)))
        .collect();
    let (tracker_spec, tracker_container) = container(&to_value(&trackers.statefulset));
    let tracker_pod = Pod::with_names(dir.path(), NEW_TRACKER.0, NEW_TRACKER.1, names.clone());
    tracker_pod.project(&tracker_spec, &config_maps);
    let _new_tracker = tracker_pod.start(&tracker_container, &binary)?;
    let both = [VM_TRACKER, NEW_TRACKER.1];

    // Step: the old storages report to the new tracker too (a `tracker_server` line more,
    // and a restart each); both trackers then agree.
    for s in vm_storages.drain(..) {
        s.terminate()?;
    }
    for (group, ip) in VM_STORAGES {
        vm_storages.push(start_vm_storage(group, ip, &both)?);
    }
    for (group, ip) in VM_STORAGES {
        fdfs_e2e::wait_for(
            "both trackers list the old storages ACTIVE",
            Duration::from_secs(60),
            async || active_everywhere(&both, group, &[ip]).await,
        )
        .await?;
    }

    // Step: clients move to the new tracker; uploads go on through it until the end.
    let stop_uploads = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let uploader = {
        let (files, stop) = (files.clone(), stop_uploads.clone());
        let client =
            Client::new(ClientConfig::new(vec![format!("{}:22122", NEW_TRACKER.1)])).await?;
        tokio::spawn(async move {
            let mut seed = 1000;
            let mut failures = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seed += 1;
                let group = VM_STORAGES[seed as usize % 2].0;
                let data = body(seed);
                match client.upload_bytes(&data, "jpg", Some(group)).await {
                    Ok(id) => files.lock().expect("files").push((id, data)),
                    // A storage going away mid-upload: the application tries again.
                    Err(_) => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures
        })
    };

    // Step: a StorageGroup joins each old group and copies it.
    let mut pods = Vec::new();
    let mut new_nodes = Vec::new();
    for (pod_name, set, ip) in NEW_STORAGES {
        let group_name = if set == "photos" { "group1" } else { "group2" };
        let group: StorageGroup = serde_json::from_value(json!({
            "apiVersion": "fdfs.dev/v1alpha1", "kind": "StorageGroup",
            "metadata": {"name": set, "namespace": NAMESPACE, "uid": format!("{set}-uid")},
            "spec": {"clusterRef": "main", "groupName": group_name, "replicas": 1,
                     "volume": {"size": "1Gi", "subdirCountPerPath": 4}},
        }))?;
        let valid =
            validate_storage_group(&group, Some(&cluster), std::slice::from_ref(&group), None)?;
        let objects = build::group_objects(&cluster, &group, &valid, 1, &opts);
        config_maps.insert(
            objects.config.metadata.name.clone().unwrap_or_default(),
            to_value(&objects.config),
        );
        let (spec, container_spec) = container(&to_value(&objects.statefulset));
        let pod = Pod::with_names(dir.path(), pod_name, ip, names.clone());
        pod.project(&spec, &config_maps);
        let conf = std::fs::read_to_string(pod.root.join("etc/fdfs/storage.conf"))?;
        let lines: Vec<&str> = conf
            .lines()
            .filter(|l| l.starts_with("tracker_server"))
            .collect();
        anyhow::ensure!(
            lines
                == [
                    format!("tracker_server = {}:22122", NEW_TRACKER.1),
                    format!("tracker_server = {VM_TRACKER}:22122")
                ],
            "{conf}"
        );
        new_nodes.push(pod.start(&container_spec, &binary)?);
        pods.push((pod, spec, container_spec));
    }
    for ((group, old_ip), (_, _, new_ip)) in VM_STORAGES.into_iter().zip(NEW_STORAGES) {
        fdfs_e2e::wait_for(
            "old and new storages ACTIVE on both trackers",
            Duration::from_secs(120),
            async || active_everywhere(&both, group, &[old_ip, new_ip]).await,
        )
        .await?;
    }

    // A Pod restart moves photos-0 to another address: it reports the move to both trackers,
    // which keep its record (no second copy of the group), and the old storage's marks follow.
    let photos = new_nodes.remove(0);
    drop(photos);
    let (photos_pod, photos_spec, photos_container) = pods.remove(0);
    let mut moved_names = names.clone();
    moved_names.insert(
        format!("photos-0.photos.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"),
        vec![MOVED_PHOTOS.to_owned()],
    );
    let moved = Pod::with_names(dir.path(), photos_pod.name, MOVED_PHOTOS, moved_names);
    moved.project(&photos_spec, &config_maps);
    new_nodes.insert(0, moved.start(&photos_container, &binary)?);
    fdfs_e2e::wait_for(
        "photos-0 ACTIVE at its new address on both trackers",
        Duration::from_secs(120),
        async || active_everywhere(&both, "group1", &[VM_STORAGES[0].1, MOVED_PHOTOS]).await,
    )
    .await?;
    for t in both {
        let client = Client::new(ClientConfig::new(vec![format!("{t}:22122")])).await?;
        let list = client.list_storages("group1").await?;
        anyhow::ensure!(
            list.iter()
                .any(|s| s.ip == NEW_STORAGES[0].2 && s.status == StorageStatus::IpChanged as u8),
            "tracker {t}: {list:?}"
        );
    }

    // Step: the old storages retire, one group at a time: stopped, then deleted from every
    // tracker once the trackers show their files on the new storages.
    let retire_client = Client::new(ClientConfig::new(vec![
        format!("{VM_TRACKER}:22122"),
        format!("{}:22122", NEW_TRACKER.1),
    ]))
    .await?;
    let retire_config = ClientConfig::new(vec![
        format!("{VM_TRACKER}:22122"),
        format!("{}:22122", NEW_TRACKER.1),
    ]);
    for (i, (group, ip)) in VM_STORAGES.into_iter().enumerate().rev() {
        // Fenced first (no uploads routed to it), then `fdfs migrate status`: every file it
        // took is on the new storage, by every tracker's account. Then it stops as the
        // runbook stops it (SIGTERM: it pushes what it took since first), and is deleted
        // once the trackers agree again.
        for (tracker, status) in retire_client.fence_storage(group, ip, true).await {
            anyhow::ensure!(
                matches!(status, Ok(fdfs_node::proto::Status::Ok)),
                "{tracker}: {status:?}"
            );
        }
        fdfs_e2e::wait_for(
            "the old storage's files on the new one",
            Duration::from_secs(120),
            async || {
                for t in retire_client.trackers() {
                    let standing =
                        fdfs_node::client::migrate::standing(&retire_config, *t, group, ip, None)
                            .await;
                    if !matches!(
                        standing,
                        Ok(fdfs_node::client::migrate::Standing::Running {
                            held_elsewhere: Ok(()),
                            ..
                        })
                    ) {
                        return false;
                    }
                }
                true
            },
        )
        .await?;
        vm_storages.remove(i).terminate()?;
        fdfs_node::client::migrate::retire(
            &retire_client,
            &retire_config,
            group,
            ip,
            Duration::from_secs(120),
            |why| eprintln!("retire {group} {ip}: {why}"),
        )
        .await?;
    }
    for ((group, _), new_ip) in VM_STORAGES
        .into_iter()
        .zip([MOVED_PHOTOS, NEW_STORAGES[1].2])
    {
        anyhow::ensure!(
            active_everywhere(&both, group, &[new_ip]).await,
            "{group} is its new storage alone"
        );
    }

    // Step: the old tracker retires. Uploads stop; every file, from before and during the
    // migration, downloads through the new tracker alone.
    drop(old_tracker);
    stop_uploads.store(true, std::sync::atomic::Ordering::Relaxed);
    let failures = uploader.await?;
    let files = files.lock().expect("files").clone();
    let during = files.len() - 20;
    anyhow::ensure!(during >= 20, "only {during} uploads during the migration");
    eprintln!("{during} uploads during the migration, {failures} retried");
    let new_client =
        Client::new(ClientConfig::new(vec![format!("{}:22122", NEW_TRACKER.1)])).await?;
    for (id, data) in &files {
        let back = new_client
            .download_bytes(id, 0, 0)
            .await
            .with_context(|| format!("{id}"))?;
        anyhow::ensure!(back == *data, "{id} differs");
    }
    drop(new_nodes);
    Ok(())
}

/// The cluster on VMs of the test below, which names its storages by id.
const IDS_VM_TRACKER: &str = "127.0.36.1";
const IDS_VM_STORAGE: &str = "127.0.36.5";
const IDS_NEW_TRACKER: (&str, &str) = ("main-tracker-0", "127.0.36.21");
const IDS_NEW_STORAGE: (&str, &str) = ("photos-0", "127.0.36.11");

/// Whether `tracker` lists exactly `members` (id, address) in group1, all ACTIVE.
async fn active_by_id(tracker: &str, members: &[(&str, &str)]) -> bool {
    let Ok(client) = Client::new(ClientConfig::new(vec![format!("{tracker}:22122")])).await else {
        return false;
    };
    let mut seen: Vec<(String, String, u8)> = client
        .list_storages("group1")
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.id, s.ip, s.status))
        .collect();
    seen.sort();
    let mut want: Vec<(String, String, u8)> = members
        .iter()
        .map(|(id, ip)| {
            (
                (*id).to_owned(),
                (*ip).to_owned(),
                StorageStatus::Active as u8,
            )
        })
        .collect();
    want.sort();
    seen == want
}

/// An old cluster that names storages with `storage_ids.conf`: the FdfsCluster reads the old
/// file from a ConfigMap (`trackers.externalStorageIds`) into the ids its tracker Pod and
/// storages load, and gives the lines the old tracker needs for the new storage
/// (`status.storageIdsForExternalTrackers`, here from the same pure function). With those
/// lines added on the old tracker, both trackers know both storages by their ids, the new
/// storage copies the group, and files uploaded through either tracker download through the
/// new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_group_joins_an_old_cluster_that_names_storages_by_id() -> anyhow::Result<()> {
    const OLD_ID: &str = "100001";
    let binary = fdfs_e2e::workspace_binary("fdfs-node")?;
    let dir = tempfile::tempdir()?;
    let old_ids_path = dir.path().join("vm-storage_ids.conf");
    let old_ids = format!("{OLD_ID} group1 {IDS_VM_STORAGE}\n");
    std::fs::write(&old_ids_path, &old_ids)?;
    let old_tracker_conf = dir.path().join("vm-tracker.conf");
    std::fs::write(
        &old_tracker_conf,
        format!(
            "disabled = false\nbind_addr = {IDS_VM_TRACKER}\nport = 22122\nbase_path = {}\n\
             store_lookup = 0\nuse_storage_id = true\nstorage_ids_filename = {}\n\
             id_type_in_filename = id\ncheck_active_interval = 120\n",
            dir.path().join("vm-tracker").display(),
            old_ids_path.display()
        ),
    )?;
    let start_old_tracker = || {
        fdfs_e2e::NodeProcess::start(&["tracker", "--config", &old_tracker_conf.to_string_lossy()])
    };
    let old_tracker = start_old_tracker()?;
    let storage_conf = vm_storage_conf(dir.path(), "group1", IDS_VM_STORAGE, &[IDS_VM_TRACKER])?;
    let old_storage =
        fdfs_e2e::NodeProcess::start(&["storage", "--config", &storage_conf.to_string_lossy()])?;
    fdfs_e2e::wait_for(
        "the old storage ACTIVE under its id",
        Duration::from_secs(60),
        async || active_by_id(IDS_VM_TRACKER, &[(OLD_ID, IDS_VM_STORAGE)]).await,
    )
    .await?;
    let old_client =
        Client::new(ClientConfig::new(vec![format!("{IDS_VM_TRACKER}:22122")])).await?;
    let mut files: Vec<StoredFile> = Vec::new();
    for seed in 1..=10 {
        let data = body(seed);
        files.push((old_client.upload_bytes(&data, "jpg", None).await?, data));
    }

    // The operator's cluster reads the old ids from a ConfigMap.
    let cluster: FdfsCluster = serde_json::from_value(json!({
        "apiVersion": "fdfs.dev/v1alpha1", "kind": "FdfsCluster",
        "metadata": {"name": "main", "namespace": NAMESPACE, "uid": "cluster-uid"},
        "spec": {"image": "fdfs-node:contract",
                 "trackers": {"replicas": 1, "external": [format!("{IDS_VM_TRACKER}:22122")],
                              "externalStorageIds": {"name": "old-ids"}},
                 "settings": {"useStorageId": true, "idTypeInFilename": "Id",
                              "reservedStorageSpace": "1MB"}},
    }))?;
    let group = photos_joining_group1()?;
    let opts = BuildOptions {
        cluster_domain: CLUSTER_DOMAIN.into(),
    };
    let mut valid_cluster = validate_cluster(&cluster, None)?;
    valid_cluster.external_ids = fdfs_operator::validate::external_storage_ids(
        &cluster,
        Some(Some(&old_ids)),
        &[("group1", "photos")],
    )?;
    let ids = [GroupIds {
        group_name: "group1".into(),
        storage_group: "photos".into(),
        replicas: 1,
        writable: 1,
        ..Default::default()
    }];
    let trackers = build::tracker_objects(&cluster, &valid_cluster, &ids, &opts);
    let new_id = fdfs_operator::naming::storage_id("group1", 0).to_string();

    // The old tracker learns the new storage's id: the status lines, then a restart (FastDFS
    // trackers read storage_ids.conf when they start).
    let entries = build::conf::storage_id_entries(NAMESPACE, &ids, &opts);
    let lines = build::conf::lines_for_external_trackers(
        &entries,
        &BTreeMap::from([(IDS_NEW_STORAGE.0.to_owned(), IDS_NEW_STORAGE.1.to_owned())]),
    );
    assert_eq!(
        lines,
        [format!("{new_id} group1 {}:23000", IDS_NEW_STORAGE.1)]
    );
    std::fs::write(&old_ids_path, format!("{old_ids}{}\n", lines.join("\n")))?;
    old_tracker.terminate()?;
    let _old_tracker = start_old_tracker()?;

    // The tracker Pod and the new storage, from their rendered specs; the old storage
    // reports to both trackers.
    let names = BTreeMap::from([
        (
            format!("main-tracker-headless.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"),
            vec![IDS_NEW_TRACKER.1.to_owned()],
        ),
        (
            format!("photos-0.photos.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"),
            vec![IDS_NEW_STORAGE.1.to_owned()],
        ),
    ]);
    let valid_group =
        validate_storage_group(&group, Some(&cluster), std::slice::from_ref(&group), None)?;
    let objects = build::group_objects(&cluster, &group, &valid_group, 1, &opts);
    let config_maps: BTreeMap<String, Value> =
        [&trackers.config, &trackers.storage_ids, &objects.config]
            .into_iter()
            .map(|cm| (cm.metadata.name.clone().unwrap_or_default(), to_value(cm)))
            .collect();
    let (tracker_spec, tracker_container) = container(&to_value(&trackers.statefulset));
    let tracker_pod = Pod::with_names(
        dir.path(),
        IDS_NEW_TRACKER.0,
        IDS_NEW_TRACKER.1,
        names.clone(),
    );
    tracker_pod.project(&tracker_spec, &config_maps);
    let _new_tracker = tracker_pod.start(&tracker_container, &binary)?;
    old_storage.terminate()?;
    let conf = vm_storage_conf(
        dir.path(),
        "group1",
        IDS_VM_STORAGE,
        &[IDS_VM_TRACKER, IDS_NEW_TRACKER.1],
    )?;
    let _old_storage =
        fdfs_e2e::NodeProcess::start(&["storage", "--config", &conf.to_string_lossy()])?;
    let (spec, container_spec) = container(&to_value(&objects.statefulset));
    let pod = Pod::with_names(dir.path(), IDS_NEW_STORAGE.0, IDS_NEW_STORAGE.1, names);
    pod.project(&spec, &config_maps);
    let _new_storage = pod.start(&container_spec, &binary)?;

    let members = [
        (OLD_ID, IDS_VM_STORAGE),
        (new_id.as_str(), IDS_NEW_STORAGE.1),
    ];
    for tracker in [IDS_VM_TRACKER, IDS_NEW_TRACKER.1] {
        fdfs_e2e::wait_for(
            "both storages ACTIVE under their ids on both trackers",
            Duration::from_secs(120),
            async || active_by_id(tracker, &members).await,
        )
        .await?;
    }
    let new_client = Client::new(ClientConfig::new(vec![format!(
        "{}:22122",
        IDS_NEW_TRACKER.1
    )]))
    .await?;
    for seed in 11..=20 {
        let data = body(seed);
        files.push((new_client.upload_bytes(&data, "jpg", None).await?, data));
    }
    every_file_on(&pod, &files).await?;
    for (id, data) in &files {
        let back = new_client
            .download_bytes(id, 0, 0)
            .await
            .with_context(|| format!("{id}"))?;
        anyhow::ensure!(back == *data, "{id} differs");
    }
    Ok(())
}
