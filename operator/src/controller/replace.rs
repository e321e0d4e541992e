//! Replacing a member (a failed disk, a retired node): the annotation
//! `fdfs.dev/replace-member: "<ordinal>"` deletes that member's claim and Pod. The
//! StatefulSet brings the Pod back on a new, empty volume, and the storage copies every file
//! of the group from its peers, as a new member does. The operator takes the annotation away
//! once it has acted, so a replacement happens once per request.
//!
//! It acts only while every other member of the group is ACTIVE and caught up in every
//! tracker: the files of the member being replaced must exist elsewhere.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::crd::StorageGroup;
use crate::naming;
use crate::scale::{self, TrackerMembers};
use crate::{Error, Result};

/// Asks for one member to be replaced; the value is its StatefulSet ordinal.
pub const REPLACE_MEMBER_ANNOTATION: &str = "fdfs.dev/replace-member";

/// What a replacement request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replacement {
    /// No request.
    None,
    /// The member's claim and Pod were deleted; it comes back empty and copies the group.
    Started { ordinal: u32 },
    /// The request waits for the other members to be ACTIVE and caught up.
    Waiting { ordinal: u32, why: String },
    /// The request names no member of the group: someone has to correct it.
    Invalid(String),
}

/// Acts on the annotation, if there is one.
pub async fn step(
    client: &kube::Client,
    sg: &StorageGroup,
    views: &[TrackerMembers],
) -> Result<Replacement> {
    let Some(asked) = sg.annotations().get(REPLACE_MEMBER_ANNOTATION) else {
        return Ok(Replacement::None);
    };
    let replicas = u32::try_from(sg.spec.replicas.max(0)).unwrap_or(0);
    let ordinal = match asked.trim().parse::<u32>() {
        Ok(n) if n < replicas => n,
        _ => {
            return Ok(Replacement::Invalid(format!(
                "annotation {REPLACE_MEMBER_ANNOTATION}={asked:?} names no member: use an \
                 ordinal below spec.replicas ({replicas})"
            )));
        }
    };
    // The files of the member to replace must be on the others.
    let others: Vec<u32> = (0..replicas).filter(|o| *o != ordinal).collect();
    let why = if others.is_empty() {
        Some("the group has no other member to copy the files from".to_owned())
    } else {
        scale::not_ready(views, others, 0)
    };
    if let Some(why) = why {
        return Ok(Replacement::Waiting { ordinal, why });
    }
    let namespace = sg.namespace().unwrap_or_default();
    let sts = naming::group(&sg.name_any());
    let claim = format!("{}-{sts}-{ordinal}", crate::build::DATA_VOLUME);
    let pod = naming::pod(&sg.name_any(), ordinal);
    let kube_error = |action: String| move |source| Error::Kube { action, source };
    // The claim first: protected while the Pod uses it, it goes when the Pod does, and the
    // StatefulSet makes a new one for the Pod it starts again.
    match Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace)
        .delete(&claim, &DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => {
            return Err(kube_error(format!(
                "delete PersistentVolumeClaim {namespace}/{claim}"
            ))(e));
        }
    }
    match Api::<Pod>::namespaced(client.clone(), &namespace)
        .delete(&pod, &DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => return Err(kube_error(format!("delete Pod {namespace}/{pod}"))(e)),
    }
    let body = serde_json::json!({"metadata": {"annotations": {REPLACE_MEMBER_ANNOTATION: null}}});
    Api::<StorageGroup>::namespaced(client.clone(), &namespace)
        .patch(
            &sg.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
        .map_err(kube_error(format!(
            "remove {REPLACE_MEMBER_ANNOTATION} from StorageGroup {namespace}/{}",
            sg.name_any()
        )))?;
    Ok(Replacement::Started { ordinal })
}
