//! Objects the controller writes back: Ingress status and its IngressClass.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{
    IngressClass, IngressClassSpec, IngressLoadBalancerIngress, IngressLoadBalancerStatus,
    IngressStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// `spec.controller` of the IngressClass served here.
pub const CONTROLLER_NAME: &str = "skiff.io/ingress";

/// `status` for an Ingress served by nodes with `node_ips` (what k3s's ServiceLB publishes):
/// one entry per distinct address, sorted, so that an unchanged set compares equal and the
/// caller can skip the write.
pub fn ingress_status(node_ips: &[IpAddr]) -> IngressStatus {
    let mut ips: Vec<IpAddr> = node_ips.to_vec();
    ips.sort();
    ips.dedup();
    IngressStatus {
        load_balancer: Some(IngressLoadBalancerStatus {
            ingress: Some(
                ips.into_iter()
                    .map(|ip| IngressLoadBalancerIngress {
                        ip: Some(ip.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }),
    }
}

/// The IngressClass object for `name`, marked as the cluster default when `default` is true.
pub fn ingress_class(name: &str, default: bool) -> IngressClass {
    let annotations = default.then(|| {
        BTreeMap::from([(
            "ingressclass.kubernetes.io/is-default-class".to_string(),
            "true".to_string(),
        )])
    });
    IngressClass {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            annotations,
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some(CONTROLLER_NAME.to_string()),
            parameters: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_sorted_and_deduplicated() {
        let ips: Vec<IpAddr> = ["10.0.0.2", "10.0.0.1", "10.0.0.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let st = ingress_status(&ips);
        let got: Vec<_> = st
            .load_balancer
            .unwrap()
            .ingress
            .unwrap()
            .into_iter()
            .map(|i| i.ip.unwrap())
            .collect();
        assert_eq!(got, ["10.0.0.1", "10.0.0.2"]);
        let c = ingress_class("skiff", true);
        assert_eq!(
            c.metadata.annotations.unwrap()["ingressclass.kubernetes.io/is-default-class"],
            "true"
        );
        assert!(ingress_class("skiff", false).metadata.annotations.is_none());
    }
}
