//! The environment of a pod's container as the kubelet resolves it, and
//! the rewriting of its addresses onto loopback, for the process kubelet
//! (`support/kubelet.rs`; what is and is not supported is listed there).
#![allow(dead_code)]

use std::collections::BTreeMap;

use anyhow::bail;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::api::Api;
use kube::Client;
use serde_json::Value;

/// The container's environment, in the kubelet's order: `envFrom`, then
/// `env` (later entries win; `$(VAR)` refers to entries before).
pub async fn resolve(
    client: &Client,
    namespace: &str,
    container: &Container,
    meta: &Value,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = Vec::new();
    fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, optional, what) = if let Some(r) = &from.config_map_ref {
            (
                config_map(client, namespace, &r.name).await?,
                r.optional,
                &r.name,
            )
        } else if let Some(r) = &from.secret_ref {
            (
                secret(client, namespace, &r.name).await?,
                r.optional,
                &r.name,
            )
        } else {
            bail!("envFrom without a configMapRef or secretRef");
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    set(&mut env, format!("{prefix}{k}"), v);
                }
            }
            None if optional == Some(true) => {}
            None => bail!("envFrom {what} does not exist (the pod would not start)"),
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(v) = &var.value {
            expand(v, &env)
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                field(meta, &f.field_path)?
            } else if let Some(r) = &from.secret_key_ref {
                let data = secret(client, namespace, &r.name)
                    .await?
                    .unwrap_or_default();
                match data.get(&r.key) {
                    Some(v) => v.clone(),
                    None if r.optional == Some(true) => continue,
                    None => bail!("{}: Secret {} has no key {}", var.name, r.name, r.key),
                }
            } else if let Some(r) = &from.config_map_key_ref {
                let data = config_map(client, namespace, &r.name)
                    .await?
                    .unwrap_or_default();
                match data.get(&r.key) {
                    Some(v) => v.clone(),
                    None if r.optional == Some(true) => continue,
                    None => bail!("{}: ConfigMap {} has no key {}", var.name, r.name, r.key),
                }
            } else {
                bail!(
                    "{}: only fieldRef, secretKeyRef and configMapKeyRef are supported",
                    var.name
                );
            }
        } else {
            String::new()
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

async fn config_map(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(api.get_opt(name).await?.map(|c| c.data.unwrap_or_default()))
}

async fn secret(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    Ok(api.get_opt(name).await?.map(|s| {
        let mut data: BTreeMap<String, String> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        data.extend(s.string_data.unwrap_or_default());
        data
    }))
}

/// A downward-API field of the pod.
fn field(meta: &Value, path: &str) -> anyhow::Result<String> {
    let keyed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['"))
            .and_then(|r| r.strip_suffix("']"))
    };
    let value = if let Some(key) = keyed("metadata.labels") {
        meta["labels"][key].as_str().map(str::to_string)
    } else if let Some(key) = keyed("metadata.annotations") {
        meta["annotations"][key].as_str().map(str::to_string)
    } else {
        match path {
            "metadata.name" => meta["name"].as_str().map(str::to_string),
            "metadata.namespace" => meta["namespace"].as_str().map(str::to_string),
            "spec.nodeName" => Some("localhost".into()),
            "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
            other => bail!("fieldRef {other} is not supported here"),
        }
    };
    Ok(value.unwrap_or_default())
}

/// `$(VAR)` of an earlier variable is replaced, `$$` is a `$`, anything
/// else stays (the kubelet's rules).
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
            continue;
        }
        if let (Some(r), Some(end)) = (rest.strip_prefix("$("), rest.find(')')) {
            if let Some((_, v)) = env.iter().find(|(k, _)| *k == r[..end - 2]) {
                out.push_str(v);
                rest = &rest[end + 1..];
                continue;
            }
        }
        out.push('$');
        rest = &rest[1..];
    }
    out.push_str(rest);
    out
}

/// Every `host:port` in `value` (between `,` `=` `/` `;` and spaces) whose
/// host is `0.0.0.0` (a listen address of `pod`) or a pod's DNS name
/// `<pod>.<service>.<namespace>.svc[.cluster.local]` → `127.0.0.1:P`.
pub fn rewrite_addresses(value: &str, pod: &str, port_of: &dyn Fn(&str, u16) -> u16) -> String {
    let mut out = String::with_capacity(value.len());
    let mut token = String::new();
    for c in value.chars().chain(std::iter::once('\0')) {
        if matches!(c, ',' | '=' | '/' | ';' | ' ' | '\0') {
            out.push_str(&rewrite_address(&token, pod, port_of));
            token.clear();
            if c != '\0' {
                out.push(c);
            }
        } else {
            token.push(c);
        }
    }
    out
}

fn rewrite_address(token: &str, pod: &str, port_of: &dyn Fn(&str, u16) -> u16) -> String {
    let Some((host, port)) = token.rsplit_once(':') else {
        return token.to_string();
    };
    let Ok(port) = port.parse::<u16>() else {
        return token.to_string();
    };
    let name = host.strip_suffix(".cluster.local").unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    let target = if host == "0.0.0.0" {
        pod
    } else if labels.len() == 4 && labels[3] == "svc" {
        labels[0]
    } else {
        return token.to_string();
    };
    format!("127.0.0.1:{}", port_of(target, port))
}

#[test]
fn addresses_are_rewritten_per_pod_and_port() {
    let ports = std::sync::Mutex::new(Vec::<(String, u16)>::new());
    let port_of = |pod: &str, port: u16| {
        let mut ports = ports.lock().unwrap();
        let key = (pod.to_string(), port);
        let i = ports.iter().position(|k| *k == key).unwrap_or_else(|| {
            ports.push(key);
            ports.len() - 1
        });
        20_000 + i as u16
    };
    let peers = "0=c-controller-0.c-controller-headless.ns.svc:9093,1=c-controller-1.c-controller-headless.ns.svc.cluster.local:9093";
    assert_eq!(
        rewrite_addresses(peers, "c-broker-0", &port_of),
        "0=127.0.0.1:20000,1=127.0.0.1:20001"
    );
    assert_eq!(
        rewrite_addresses("0.0.0.0:9093", "c-controller-1", &port_of),
        "127.0.0.1:20001"
    );
    assert_eq!(
        rewrite_addresses("0.0.0.0:9092", "c-broker-0", &port_of),
        "127.0.0.1:20002"
    );
    for unchanged in [
        "http://127.0.0.1:5000",
        "c-bootstrap.ns.svc:9092",
        "s3://b/p/",
    ] {
        assert_eq!(rewrite_addresses(unchanged, "p", &port_of), unchanged);
    }
    assert_eq!(
        expand(
            "$(POD_NAME).h.ns.svc:9092 $$(X) $(NOPE)",
            &[("POD_NAME".into(), "c-broker-3".into())]
        ),
        "c-broker-3.h.ns.svc:9092 $(X) $(NOPE)"
    );
}
