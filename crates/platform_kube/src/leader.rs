//! Leader election through a `coordination.k8s.io/v1` Lease, so that of
//! several controller replicas exactly one acts: the holder renews the
//! Lease every `renew_every`; the others try to take it once it has not been
//! renewed for `lease_duration`. Every write is conditional on the Lease's
//! resourceVersion, so two candidates can never both win one term.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::{Error, is_not_found};

/// Which Lease, who we are, and how fast a dead leader is replaced.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// A Lease not renewed for this long may be taken over.
    pub lease_duration: Duration,
    /// How often the holder renews (well under `lease_duration`).
    pub renew_every: Duration,
}

impl LeaderElection {
    /// Defaults: Lease `serin-controller`, 15 s duration, renewed every 2 s.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: "serin-controller".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
        }
    }

    /// Takes or renews the Lease; `Ok(true)` when this replica holds it now.
    pub async fn try_acquire_or_renew(&self, client: &Client) -> Result<bool, Error> {
        let api: Api<Lease> = Api::namespaced(client.clone(), &self.namespace);
        let now = Timestamp::now();
        let secs = i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let current = api
            .get_opt(&self.name)
            .await
            .map_err(Error::kube(format!("reading Lease {}", self.name)))?;
        let Some(mut lease) = current else {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": secs,
                         "leaseTransitions": 0},
            }))
            .map_err(|e| Error::Invalid(e.to_string()))?;
            let mut lease = lease;
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.acquire_time = Some(MicroTime(now));
            spec.renew_time = Some(MicroTime(now));
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(Error::kube("creating the Lease")(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !mine {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(secs));
            let expired = spec.renew_time.as_ref().is_none_or(|t| {
                t.0.checked_add(SignedDuration::from_secs(duration))
                    .is_ok_and(|end| end < now)
            });
            if !expired {
                return Ok(false);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.lease_duration_seconds = Some(secs);
        }
        spec.renew_time = Some(MicroTime(now));
        // Conditional on the version read (metadata.resourceVersion is kept).
        match api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(Error::kube("renewing the Lease")(e)),
        }
    }
}
