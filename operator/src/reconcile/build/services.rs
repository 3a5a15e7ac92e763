//! The Services: headless ones give every controller and broker a stable DNS
//! name (published before the pod is ready, so Raft peers and brokers can find
//! each other while starting); the bootstrap Service spreads clients' first
//! connection over ready brokers.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{metadata, METADATA_PORT, RAFT_PORT};
use crate::labels::{self, Component};
use crate::names;
use crate::reconcile::validate::ValidatedCluster;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

fn headless(
    cluster: &ValidatedCluster,
    name: String,
    component: Component,
    ports: Vec<ServicePort>,
) -> Service {
    Service {
        metadata: metadata(cluster, name, Some(component)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels::selector(&cluster.name, component)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Controller headless, broker headless, bootstrap.
pub(super) fn services(cluster: &ValidatedCluster) -> Vec<Service> {
    let c = &cluster.name;
    let health = port(names::HEALTH_PORT, floe_crds::HEALTH_PORT);
    let kafka = port(names::KAFKA_PORT, cluster.listener.port);
    vec![
        headless(
            cluster,
            names::controller_headless_service(c),
            Component::Controller,
            vec![
                port(names::RAFT_PORT, RAFT_PORT),
                port(names::METADATA_PORT, METADATA_PORT),
                health.clone(),
            ],
        ),
        headless(
            cluster,
            names::broker_headless_service(c),
            Component::Broker,
            vec![kafka.clone(), health],
        ),
        Service {
            metadata: metadata(
                cluster,
                names::bootstrap_service(c),
                Some(Component::Broker),
            ),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".to_string()),
                selector: Some(labels::selector(c, Component::Broker)),
                ports: Some(vec![kafka]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
    ]
}
