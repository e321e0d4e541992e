//! Replacing a member (a failed disk, a retired node): the annotation
//! `fdfs.dev/replace-member: "<ordinal>"` deletes that member's claim and Pod. The
//! StatefulSet brings the Pod back on a new, empty volume, and the storage copies every file
//! of the group from its peers, as a new member does. The operator takes the annotation away
//! once it has acted, so a replacement happens once per request.
//!
//! It acts only while every other member of the group is ACTIVE and caught up in every
//! tracker, and every tracker that lists the member being replaced holds its files on the
//! others (`fdfs migrate`'s rule): they must exist elsewhere. A member whose disk is lost
//! with changes it never pushed can only be replaced by accepting that loss, in a second
//! annotation, `fdfs.dev/replace-member-discard-unsent: "true"`.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::crd::StorageGroup;
use crate::naming;
use crate::scale::{self, TrackerMembers};
use crate::{Error, Result};

/// Asks for one member to be replaced; the value is its StatefulSet ordinal.
pub const REPLACE_MEMBER_ANNOTATION: &str = "fdfs.dev/replace-member";
/// `"true"`: replace the member even though changes it took are on no other member.
pub const DISCARD_UNSENT_ANNOTATION: &str = "fdfs.dev/replace-member-discard-unsent";

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
    let discard_unsent = sg
        .annotations()
        .get(DISCARD_UNSENT_ANNOTATION)
        .is_some_and(|v| v.trim() == "true");
    if let Some(why) = blocker(views, ordinal, replicas, discard_unsent) {
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
    let body = serde_json::json!({"metadata": {"annotations": {
        REPLACE_MEMBER_ANNOTATION: null,
        DISCARD_UNSENT_ANNOTATION: null,
    }}});
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

/// Why member `ordinal` of a group of `replicas` cannot be replaced now, if it cannot: the
/// files of the member to replace must be on the others, ACTIVE and caught up; changes it
/// took that no other member has are lost unless `discard_unsent` accepts that.
fn blocker(
    views: &[TrackerMembers],
    ordinal: u32,
    replicas: u32,
    discard_unsent: bool,
) -> Option<String> {
    let others: Vec<u32> = (0..replicas).filter(|o| *o != ordinal).collect();
    if others.is_empty() {
        return Some("the group has no other member to copy the files from".to_owned());
    }
    if let Some(why) = scale::not_ready(views, others, 0) {
        return Some(why);
    }
    if discard_unsent {
        return None;
    }
    views.iter().find_map(|view| {
        let members = view.members.as_ref().ok()?;
        let m = members.iter().find(|m| m.ordinal == Some(ordinal))?;
        let why = m.not_held_elsewhere.as_ref()?;
        Some(format!(
            "tracker {}: {why}; to replace it anyway, losing those changes, annotate \
             {DISCARD_UNSENT_ANNOTATION}=true",
            view.tracker
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::Member;
    use fdfs_node::proto::StorageStatus;

    fn member(ordinal: u32, not_held_elsewhere: Option<&str>) -> Member {
        Member {
            id: format!("10.0.0.{ordinal}"),
            address: format!("10.0.0.{ordinal}"),
            ordinal: Some(ordinal),
            status: Some(StorageStatus::Active),
            sync_lag: Some(0),
            sync_lag_bytes: Some(0),
            unsent_bytes: Some(0),
            backlog_seconds: None,
            writable: true,
            not_held_elsewhere: not_held_elsewhere.map(str::to_owned),
        }
    }

    fn view(members: Vec<Member>) -> Vec<TrackerMembers> {
        vec![TrackerMembers {
            tracker: "10.0.1.1:22122".into(),
            members: Ok(members),
        }]
    }

    #[test]
    fn a_member_whose_changes_are_nowhere_else_is_replaced_only_when_the_loss_is_accepted() {
        let mut crashed = member(2, Some("10.0.0.2 still has 4096 bytes of changes to push"));
        crashed.status = Some(StorageStatus::Offline);
        let views = view(vec![member(0, None), member(1, None), crashed]);
        let why = blocker(&views, 2, 3, false).expect("waits");
        assert!(why.contains("4096 bytes"), "{why}");
        assert!(why.contains(DISCARD_UNSENT_ANNOTATION), "{why}");
        assert_eq!(blocker(&views, 2, 3, true), None);
        // Its files on the others: replaced.
        let views = view(vec![member(0, None), member(1, None), member(2, None)]);
        assert_eq!(blocker(&views, 2, 3, false), None);
    }

    #[test]
    fn the_others_must_be_ready_even_when_the_loss_is_accepted() {
        let mut behind = member(0, None);
        behind.sync_lag = Some(30);
        let views = view(vec![behind, member(1, None)]);
        assert!(blocker(&views, 1, 2, true).is_some());
        assert!(blocker(&view(vec![member(0, None)]), 0, 1, true).is_some());
    }
}
