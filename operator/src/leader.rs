//! Leader election through a `coordination.k8s.io/v1` Lease, so several operator replicas can
//! run and exactly one reconciles.
//!
//! The holder renews the Lease every few seconds; another replica takes it over once it has
//! not been renewed for its duration. Writes carry the Lease's `resourceVersion`, so of two
//! replicas racing for an expired Lease only one succeeds. A leader that cannot renew in time
//! stops leading (the binary exits and is restarted), so two leaders never overlap for longer
//! than the Lease allows.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::{Error, Result};

/// Where the Lease is and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity, usually its Pod name.
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews, and how often others check.
    pub renew_every: Duration,
}

/// What to do with the Lease as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Somebody else holds it.
    Wait {
        /// The holder.
        holder: String,
    },
}

/// Decides from the Lease (`None` when it does not exist yet).
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let expired = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .is_none_or(|t| t.0 + duration < now);
    if holder.is_empty() || expired {
        Decision::Acquire
    } else {
        Decision::Wait { holder }
    }
}

fn kube_error(action: &str) -> impl FnOnce(kube::Error) -> Error + '_ {
    move |source| Error::Kube {
        action: action.to_owned(),
        source,
    }
}

/// One election round: returns whether this replica holds the Lease afterwards.
pub async fn try_lead(client: &Client, config: &LeaseConfig) -> Result<bool> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let now = Timestamp::now();
    let lease = api
        .get_opt(&config.name)
        .await
        .map_err(kube_error("get Lease"))?;
    let decision = decide(lease.as_ref(), &config.identity, now);
    let Decision::Wait { .. } = decision else {
        let previous = lease
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let transitions = previous.lease_transitions.unwrap_or(0);
        let spec = LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(config.duration.as_secs() as i32),
            acquire_time: match decision {
                Decision::Renew => previous.acquire_time,
                _ => Some(MicroTime(now)),
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(match decision {
                Decision::Acquire if lease.is_some() => transitions + 1,
                _ => transitions,
            }),
            ..Default::default()
        };
        let result = match lease {
            None => {
                let new = Lease {
                    metadata: ObjectMeta {
                        name: Some(config.name.clone()),
                        namespace: Some(config.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                api.create(&PostParams::default(), &new).await
            }
            Some(mut lease) => {
                // The resourceVersion read above makes this a compare-and-swap.
                lease.spec = Some(spec);
                api.replace(&config.name, &PostParams::default(), &lease)
                    .await
            }
        };
        return match result {
            Ok(_) => Ok(true),
            // Another replica wrote first.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(kube_error("write Lease")(source)),
        };
    };
    Ok(false)
}

/// Waits until this replica leads, then runs `work` while renewing the Lease. Returns when
/// `work` ends, or with an error when the Lease is lost or cannot be renewed in time.
pub async fn lead<T>(
    client: &Client,
    config: &LeaseConfig,
    work: impl Future<Output = T>,
) -> Result<T> {
    loop {
        match try_lead(client, config).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "leader election"),
        }
        tokio::time::sleep(config.renew_every).await;
    }
    tracing::info!(identity = %config.identity, lease = %config.name, "leading");
    let renew = async {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(config.renew_every).await;
            match try_lead(client, config).await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    return Error::LeaseLost {
                        lease: config.name.clone(),
                    };
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot renew the Lease");
                    if last_renewal.elapsed() + config.renew_every >= config.duration {
                        return err;
                    }
                }
            }
        }
    };
    tokio::select! {
        out = work => Ok(out),
        err = renew => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_at: i64, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(
                    Timestamp::from_second(renewed_at).expect("valid"),
                )),
                ..Default::default()
            }),
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("valid")
    }

    #[test]
    fn missing_or_expired_leases_are_taken() {
        assert_eq!(decide(None, "a", at(100)), Decision::Acquire);
        assert_eq!(
            decide(Some(&lease("b", 100, 15)), "a", at(116)),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease("", 100, 15)), "a", at(101)),
            Decision::Acquire
        );
    }

    #[test]
    fn a_live_lease_of_another_replica_is_respected() {
        assert_eq!(
            decide(Some(&lease("b", 100, 15)), "a", at(110)),
            Decision::Wait { holder: "b".into() }
        );
    }

    #[test]
    fn the_holder_renews() {
        assert_eq!(
            decide(Some(&lease("a", 100, 15)), "a", at(500)),
            Decision::Renew
        );
    }
}
