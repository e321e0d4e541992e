//! How GitOps tools read a resource's health: the kstatus rules Flux and `kubectl` tooling
//! apply to any resource (as kstatus documents them), and the chart's Argo CD health script
//! run by a real Lua 5.1 interpreter, the Lua version Argo CD embeds.

use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaSerdeExt, Table};
use serde_json::Value;

/// The Argo CD health script shipped with the chart.
pub const ARGOCD_HEALTH_LUA: &str =
    include_str!("../../../charts/fdfs-operator/files/argocd/health.lua");

/// kstatus's verdict on a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KStatus {
    /// Reconciled, nothing left to do.
    Current,
    /// The controller is still working (or has not seen the latest generation).
    InProgress,
    /// The controller cannot make progress.
    Failed,
    /// Being deleted.
    Terminating,
}

/// kstatus on `obj`: deletion first, then an unobserved generation, then the first of the
/// abnormal-true conditions `Reconciling` and `Stalled` that is `True`, else current.
pub fn kstatus(obj: &Value) -> KStatus {
    if obj["metadata"]["deletionTimestamp"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return KStatus::Terminating;
    }
    if let (Some(generation), Some(observed)) = (
        obj["metadata"]["generation"].as_i64(),
        obj["status"]["observedGeneration"].as_i64(),
    ) && generation != observed
    {
        return KStatus::InProgress;
    }
    for c in obj["status"]["conditions"].as_array().into_iter().flatten() {
        match (c["type"].as_str(), c["status"].as_str()) {
            (Some("Reconciling"), Some("True")) => return KStatus::InProgress,
            (Some("Stalled"), Some("True")) => return KStatus::Failed,
            _ => {}
        }
    }
    KStatus::Current
}

/// Argo CD's health of `obj` from the chart's script: `(status, message)`.
pub fn argocd(obj: &Value) -> (String, String) {
    let lua = Lua::new();
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let value = lua
        .to_value_with(obj, options)
        .expect("object converts to Lua");
    lua.globals().set("obj", value).expect("global obj");
    let hs: Table = lua
        .load(ARGOCD_HEALTH_LUA)
        .set_name("health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health.lua fails on {obj:#}: {e}"));
    (
        hs.get("status").expect("hs.status"),
        hs.get("message").expect("hs.message"),
    )
}

fn condition_holds(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == type_ && c["status"] == "True")
}

/// `object` with `status` as the operator wrote it.
pub fn with_status(object: &Value, status: &Value) -> Value {
    let mut obj = object.clone();
    obj["status"] = status.clone();
    obj
}

/// Checks what kstatus and Argo CD make of `obj`, and that both agree with `Ready` once the
/// operator has seen the latest generation: current and healthy exactly when `Ready` is
/// `True` (a paused resource aside, which is current to kstatus and suspended to Argo CD).
pub fn expect(obj: &Value, want_kstatus: KStatus, want_argocd: &str) {
    let got = kstatus(obj);
    let (argo, message) = argocd(obj);
    assert_eq!(got, want_kstatus, "kstatus of {obj:#}");
    assert_eq!(argo, want_argocd, "Argo CD health of {obj:#} ({message})");
    assert!(
        !message.is_empty(),
        "Argo CD health of {obj:#} has no message"
    );
    let ready = condition_holds(obj, "Ready");
    let paused = condition_holds(obj, "Paused");
    let observed = obj["status"]["observedGeneration"].as_i64();
    let current_generation =
        observed.is_none() || observed == obj["metadata"]["generation"].as_i64();
    if got != KStatus::Terminating && !paused && current_generation {
        assert_eq!(
            got == KStatus::Current,
            ready,
            "kstatus {got:?} disagrees with Ready in {obj:#}"
        );
    }
    if argo == "Healthy" {
        assert!(ready, "Healthy without Ready=True in {obj:#}");
    }
}
