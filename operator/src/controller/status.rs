//! The status step: writes a resource's status with server-side apply on the status
//! subresource.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::naming::{self, MANAGER};
use crate::{Error, Result};

use super::conditions::{self as cond, Want};
use super::{Context, error_chain};

/// A namespaced resource of this operator whose status it writes.
pub trait StatusObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> StatusObject for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
{
}

/// Replaces the operator's part of `obj`'s status with `status`.
pub async fn write<K, S>(client: &Client, obj: &K, status: &S) -> Result<()>
where
    K: StatusObject,
    S: Serialize,
{
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    Api::<K>::namespaced(client.clone(), &namespace)
        .patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map(|_| ())
        .map_err(|source| Error::Kube {
            action: format!("write status of {} {namespace}/{name}", K::kind(&())),
            source,
        })
}

/// A spec the operator refuses: `Ready=False` and `Stalled=True` with the error's reason
/// (someone has to change the spec), a Warning Event when that is news, the other conditions
/// left as they were, no objects built, and a slow requeue instead of a retry storm. `make`
/// turns the conditions into the status to write.
pub async fn invalid<K, S>(
    ctx: &Context,
    obj: &K,
    previous: &[Condition],
    err: Error,
    make: impl FnOnce(Vec<Condition>) -> S,
) -> Result<Action>
where
    K: StatusObject,
    S: Serialize,
{
    let ready = Want::no(cond::READY, err.reason(), error_chain(&err));
    if cond::changed(previous, &ready) {
        ctx.event(
            obj,
            EventType::Warning,
            err.reason(),
            "Validate",
            error_chain(&err),
        )
        .await;
    }
    let message = ready.message.clone();
    let stuck = [
        ready,
        Want::no(cond::RECONCILING, err.reason(), message.clone()),
        Want::yes(cond::STALLED, err.reason(), message),
    ];
    let now = Time(Timestamp::now());
    let mut conditions = cond::merge(previous, &stuck, obj.meta().generation, &now);
    conditions.extend(
        previous
            .iter()
            .filter(|c| !stuck.iter().any(|w| w.type_ == c.type_) && c.type_ != cond::PAUSED)
            .cloned(),
    );
    write(&ctx.client, obj, &make(conditions)).await?;
    tracing::info!(object = %obj.name_any(), error = %err, "invalid spec; nothing built");
    Ok(Action::requeue(ctx.config.invalid_interval))
}

/// The pause annotation: a `Paused` condition, a Normal Event when pausing starts, and
/// nothing else changed until the annotation goes. `Reconciling` and `Stalled` turn `False`:
/// a paused resource is not converging, and it needs no one but whoever pauses it.
pub async fn pause<K, S>(
    ctx: &Context,
    obj: &K,
    previous: &[Condition],
    make: impl FnOnce(Vec<Condition>) -> S,
) -> Result<Action>
where
    K: StatusObject,
    S: Serialize,
{
    let paused = Want::yes(
        cond::PAUSED,
        "ReconcilePaused",
        format!(
            "annotation {}=paused: the operator changes nothing",
            naming::RECONCILE_ANNOTATION
        ),
    );
    if cond::changed(previous, &paused) {
        ctx.event(
            obj,
            EventType::Normal,
            "ReconcilePaused",
            "Pause",
            paused.message.clone(),
        )
        .await;
    }
    let idle = [
        paused,
        Want::no(
            cond::RECONCILING,
            "ReconcilePaused",
            "the operator is paused",
        ),
        Want::no(cond::STALLED, "ReconcilePaused", "the operator is paused"),
    ];
    let now = Time(Timestamp::now());
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|c| !idle.iter().any(|w| w.type_ == c.type_))
        .cloned()
        .collect();
    conditions.extend(cond::merge(previous, &idle, obj.meta().generation, &now));
    write(&ctx.client, obj, &make(conditions)).await?;
    Ok(Action::await_change())
}
