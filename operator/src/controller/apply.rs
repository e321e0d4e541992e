//! The apply step: server-side apply with one field manager, and deletion of the objects an
//! owner no longer wants.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::naming::MANAGER;
use crate::{Error, Result};

/// Applies `obj` with server-side apply as the operator's field manager, taking over fields
/// another manager set (the operator's view of its objects wins). Returns the object as
/// stored.
pub async fn apply<K>(client: &Client, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    Api::<K>::namespaced(client.clone(), &namespace)
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .map_err(|source| Error::Kube {
            action: format!("apply {} {namespace}/{name}", K::kind(&())),
            source,
        })
}

/// Deletes the objects of kind `K` that carry `selector`, are controlled by the owner with
/// `owner_uid`, and are not named in `keep`: what an owner built before but wants no more.
/// Returns the names deleted.
pub async fn delete_orphans<K>(
    client: &Client,
    namespace: &str,
    selector: &str,
    owner_uid: &str,
    keep: &[String],
) -> Result<Vec<String>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(client.clone(), namespace);
    let kube_error = |action: String| move |source| Error::Kube { action, source };
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(kube_error(format!(
            "list {} in {namespace}",
            K::plural(&())
        )))?;
    let mut deleted = Vec::new();
    for obj in list.items {
        let name = obj.name_any();
        let owned = obj
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && o.uid == owner_uid);
        if !owned || keep.contains(&name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(name),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Kube {
                    action: format!("delete {} {namespace}/{name}", K::kind(&())),
                    source,
                });
            }
        }
    }
    Ok(deleted)
}

/// Applies `pdb` when an owner wants one, and deletes the budgets of that owner (`owner`,
/// `owner_uid`, found by `selector`) it no longer wants.
pub async fn apply_budget(
    client: &Client,
    pdb: Option<&PodDisruptionBudget>,
    namespace: &str,
    selector: &str,
    owner: &str,
    owner_uid: &str,
) -> Result<()> {
    let mut keep = Vec::new();
    if let Some(pdb) = pdb {
        keep.push(apply(client, pdb).await?.name_any());
    }
    for name in
        delete_orphans::<PodDisruptionBudget>(client, namespace, selector, owner_uid, &keep).await?
    {
        tracing::info!(pdb = %name, owner, "deleted a PodDisruptionBudget no longer needed");
    }
    Ok(())
}
