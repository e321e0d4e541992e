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
}

impl Pod {
    fn new(dir: &Path, name: &'static str, ip: &'static str) -> Self {
        let root = dir.join(name);
        std::fs::create_dir_all(root.join("etc/fdfs")).expect("config dir");
        std::fs::create_dir_all(root.join("var/lib/fdfs")).expect("data dir");
        Self { name, ip, root }
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
                let text = self.mount(&resolve_names(text.as_str().expect("text")));
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

/// Names in a config file replaced by what the cluster DNS answers for them.
fn resolve_names(text: &str) -> String {
    let names = dns();
    let mut out = String::new();
    for line in text.lines() {
        let mut lines = vec![line.to_owned()];
        for (name, ips) in &names {
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
