//! The chart's alerting rules name only series that exist: every metric in an expression is
//! found in what a real tracker, a real storage and the operator export.

use std::collections::BTreeSet;
use std::time::Duration;

use fdfs_e2e::{http_get, repo_root, wait_for};
use fdfs_node::config::TrackerConfig;
use fdfs_test_support::cluster;

/// `(family, type)` of every `# TYPE` line of a Prometheus text exposition.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// The series names a family of `kind` exposes.
fn series_of(family: &str, kind: &str) -> Vec<String> {
    match kind {
        "counter" => vec![format!("{family}_total")],
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect(),
        _ => vec![family.to_owned()],
    }
}

/// Every `fdfs_*` name in the rules' expressions.
fn names_in_rules(rules: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for expr in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
    {
        let mut rest = expr;
        while let Some(at) = rest.find("fdfs_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

#[test]
fn every_metric_an_alert_uses_is_exported() -> anyhow::Result<()> {
    let rules = std::fs::read_to_string(
        repo_root().join("charts/fdfs-operator/files/alerts/fdfs-rules.yaml"),
    )?;
    let wanted = names_in_rules(&rules);
    anyhow::ensure!(wanted.len() >= 8, "rules name {wanted:?}");

    let rt = tokio::runtime::Runtime::new()?;
    let exported = rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let tracker_config = TrackerConfig {
            http_bind: "127.0.33.1:0".into(),
            ..TrackerConfig::default()
        };
        let tracker =
            cluster::tracker_at("127.0.33.1", tracker_config, dir.path().join("tracker")).await;
        // Two members of a group, so that replication series exist.
        let port = cluster::group_port(dir.path(), 23310);
        let mut members = Vec::new();
        for ip in ["127.0.33.2", "127.0.33.3"] {
            let mut config = cluster::member_config(dir.path(), ip, [tracker.addr], port);
            config.http.bind = format!("{ip}:0");
            members.push(cluster::start_member(config).await);
        }
        wait_for(
            "both members ACTIVE and known",
            Duration::from_secs(30),
            async || {
                members
                    .iter()
                    .all(|m| m.node.is_active_everywhere() && m.node.replication.peers().len() == 1)
            },
        )
        .await?;
        // A push B cannot write (its directory 00/00 is a file): B records the problem.
        let b = &members[1];
        let leaf = b.node.config.base_path.join("data/00/00");
        std::fs::remove_dir_all(&leaf)?;
        std::fs::write(&leaf, b"not a directory")?;
        let name = "M00/00/00/fwAhAmsHltmAfYkIAAAAZBVz5RY696.txt";
        let mut push = fdfs_node::proto::sync::SyncFileHead {
            name_len: name.len() as u64,
            file_size: 3,
            timestamp: 1,
            group: "group1".into(),
        }
        .encode();
        push.extend_from_slice(name.as_bytes());
        push.extend_from_slice(b"abc");
        let mut from_a = fdfs_node::client::Conn::connect(
            b.addr,
            Duration::from_secs(2),
            Duration::from_secs(5),
            Some("127.0.33.2".parse()?),
        )
        .await?;
        let (status, _) = from_a
            .call(fdfs_node::proto::Command::SyncCreateFile, &push, 1024)
            .await?;
        anyhow::ensure!(
            status != fdfs_node::proto::Status::Ok,
            "a write into a file instead of a directory succeeded"
        );
        let mut text = String::new();
        let mut scraped = vec![tracker.http_addr.expect("tracker HTTP")];
        scraped.extend(members.iter().map(|m| m.http_addr.expect("storage HTTP")));
        for addr in scraped {
            let (status, body) = http_get(addr, "/metrics").await?;
            anyhow::ensure!(status == 200, "/metrics of {addr}: {status}");
            text.push_str(&String::from_utf8(body)?);
        }
        // The operator's registry, after the reconciles it records.
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = fdfs_operator::metrics::Metrics::new(&mut registry);
        metrics.reconciled("StorageGroup", Duration::from_millis(5));
        metrics.failed("StorageGroup", "KubeApiError");
        metrics.succeeded("StorageGroup");
        metrics.group_replicas("fdfs", "group1", 2, 2);
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        for m in members {
            m.stop(Duration::from_secs(1)).await;
        }
        tracker.stop(Duration::from_secs(1)).await;
        anyhow::Ok(text)
    })?;
    let series: BTreeSet<String> = families(&exported)
        .iter()
        .flat_map(|(family, kind)| series_of(family, kind))
        .collect();
    let missing: Vec<&String> = wanted.difference(&series).collect();
    anyhow::ensure!(
        missing.is_empty(),
        "alerts name series nobody exports: {missing:?}"
    );
    Ok(())
}
