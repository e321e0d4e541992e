//! The fetch step: reads the objects a reconcile looks at, fresh from the API server.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::crd::{ConfigMapKeyRef, FdfsCluster, SecretKeyRef, StorageGroup};
use crate::{Error, Result};

async fn get_opt<K>(client: &Client, namespace: &str, name: &str) -> Result<Option<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::Kube {
            action: format!("get {} {namespace}/{name}", K::kind(&())),
            source,
        })
}

async fn list<K>(client: &Client, namespace: &str, selector: Option<&str>) -> Result<Vec<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let mut params = ListParams::default();
    if let Some(selector) = selector {
        params = params.labels(selector);
    }
    Api::<K>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
        .map(|list| list.items)
        .map_err(|source| Error::Kube {
            action: format!("list {} in {namespace}", K::plural(&())),
            source,
        })
}

/// The `FdfsCluster` a `StorageGroup` names, if it exists.
pub async fn cluster(client: &Client, namespace: &str, name: &str) -> Result<Option<FdfsCluster>> {
    get_opt(client, namespace, name).await
}

/// Every `StorageGroup` of a namespace: the groups of a cluster, and the claims on group names
/// and storage ids that validation compares.
pub async fn storage_groups(client: &Client, namespace: &str) -> Result<Vec<StorageGroup>> {
    list(client, namespace, None).await
}

/// A StatefulSet (a group's, or the trackers') as it is now.
pub async fn statefulset(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<StatefulSet>> {
    get_opt(client, namespace, name).await
}

/// The Pods matching a label selector.
pub async fn pods(client: &Client, namespace: &str, selector: &str) -> Result<Vec<Pod>> {
    list(client, namespace, Some(selector)).await
}

/// The value of one key of a Secret; `None` when the Secret or the key does not exist (the
/// Pods that mount it then wait for it, as Kubernetes makes them).
pub async fn secret_value(
    client: &Client,
    namespace: &str,
    key: &SecretKeyRef,
) -> Result<Option<Vec<u8>>> {
    let secret: Option<Secret> = get_opt(client, namespace, &key.name).await?;
    Ok(secret
        .and_then(|s| s.data)
        .and_then(|mut data| data.remove(&key.key))
        .map(|value| value.0))
}

/// The text under one key of a ConfigMap: `Ok(None)` when the ConfigMap does not exist,
/// `Ok(Some(None))` when it lacks the key.
pub async fn config_map_value(
    client: &Client,
    namespace: &str,
    key: &ConfigMapKeyRef,
) -> Result<Option<Option<String>>> {
    let map: Option<ConfigMap> = get_opt(client, namespace, &key.name).await?;
    Ok(map.map(|m| m.data.and_then(|mut data| data.remove(&key.key))))
}
