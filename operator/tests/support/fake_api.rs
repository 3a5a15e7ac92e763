//! An in-memory Kubernetes API server for the reconciler's tests, served to a
//! real `kube::Client` through kube's `tower-test` mock service (no sockets).
//!
//! What it is: a store of JSON objects keyed by API group/version, resource,
//! namespace and name, answering the requests the operator makes — `get`,
//! `list` with equality label selectors, `watch` (a stream of ADDED /
//! MODIFIED / DELETED events after the requested `resourceVersion`, replayed
//! from a history, so list-then-watch loses nothing), `create`, `replace` with
//! `resourceVersion` conflicts, server-side apply (`PATCH
//! application/apply-patch+yaml`, also on `/status`), JSON patch (the
//! finalizer helper's test/add/remove), merge patch (Event series) and
//! `delete`, which only marks an object with finalizers as deleting and
//! removes it once its finalizers are gone. `resourceVersion` moves only when
//! an object changes and `generation` only when its `spec` does, so a re-run
//! that changes nothing is visible as such. Every request is logged.
//!
//! What it is not: an API server. Server-side apply here replaces the fields
//! the applied object sets (one field manager, no managedFields, no merge of
//! lists by key); watches never time out, send no bookmarks and ignore field
//! selectors; there is no admission (no CRD schema or CEL), no garbage
//! collection of owned objects, no controllers (StatefulSets never get pods
//! or status; `support/kubelet.rs` plays those for the local-process test),
//! no RBAC.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Response bodies: whole JSON documents, or a watch's stream of events.
type Reply = Response<UnsyncBoxBody<Bytes, std::convert::Infallible>>;

/// One logged request.
#[derive(Clone, Debug)]
pub struct Call {
    /// Sequence number, shared with other test doubles through [`Clock`].
    pub seq: u64,
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The decoded query.
    pub query: BTreeMap<String, String>,
    /// The `content-type` header.
    pub content_type: String,
    /// The JSON body (`Null` when empty).
    pub body: Value,
}

impl Call {
    /// `kind/name` of a server-side apply of a whole object (not `/status`).
    pub fn applied(&self) -> Option<String> {
        if self.method != "PATCH"
            || !self.content_type.starts_with("application/apply-patch")
            || self.path.ends_with("/status")
        {
            return None;
        }
        Some(format!(
            "{}/{}",
            self.body["kind"].as_str().unwrap_or_default(),
            self.body["metadata"]["name"].as_str().unwrap_or_default()
        ))
    }

    /// Whether this call wrote `/status`.
    pub fn is_status_write(&self) -> bool {
        matches!(self.method.as_str(), "PATCH" | "PUT") && self.path.ends_with("/status")
    }
}

/// A sequence shared by the fake and the other doubles, to assert the order
/// of calls across them (e.g. a drain before a StatefulSet shrinks).
#[derive(Clone, Default)]
pub struct Clock(Arc<Mutex<u64>>);

impl Clock {
    /// The next sequence number.
    pub fn tick(&self) -> u64 {
        let mut n = self.0.lock().unwrap();
        *n += 1;
        *n
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    group_version: String,
    plural: String,
    namespace: String,
    name: String,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    calls: Vec<Call>,
    resource_version: u64,
    uids: u64,
    /// Every change, in order: (resourceVersion, event type, key, object).
    history: Vec<(u64, &'static str, Key, Value)>,
    watches: Vec<Watch>,
}

/// An open watch.
struct Watch {
    group_version: String,
    plural: String,
    namespace: String,
    selector: String,
    events: mpsc::UnboundedSender<Bytes>,
}

impl Watch {
    fn wants(&self, key: &Key, object: &Value) -> bool {
        key.group_version == self.group_version
            && key.plural == self.plural
            && (self.namespace.is_empty() || key.namespace == self.namespace)
            && matches_selector(object, &self.selector)
    }
}

impl State {
    /// Record a change and send it to the watches that select it.
    fn emit(&mut self, type_: &'static str, key: &Key, object: &Value) {
        let rv = object["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.resource_version);
        self.history.push((rv, type_, key.clone(), object.clone()));
        let line = event_line(type_, object);
        self.watches
            .retain(|w| !w.wants(key, object) || w.events.send(line.clone()).is_ok());
    }

    /// Remove an object, as a DELETED event at a new resourceVersion.
    fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.emit("DELETED", key, &object);
        Some(object)
    }
}

fn event_line(type_: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

/// The fake API server; clones share the store.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    clock: Clock,
}

/// The path of an object or collection.
struct Route {
    group_version: String,
    plural: String,
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl FakeApi {
    /// A fake with an empty store, and a client talking to it.
    pub fn start(clock: Clock) -> (FakeApi, Client) {
        let fake = FakeApi {
            state: Arc::default(),
            clock,
        };
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Reply>();
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = server.serve(request).await;
                send.send_response(response);
            }
        });
        (fake, Client::new(service, "default"))
    }

    /// Store an object as if a user had created it (must carry `apiVersion`,
    /// `kind`, `metadata.namespace` and `metadata.name`).
    pub fn seed(&self, mut object: Value) -> Value {
        let key = key_of(&object);
        let mut s = self.state.lock().unwrap();
        s.resource_version += 1;
        s.uids += 1;
        let meta = &mut object["metadata"];
        if meta["uid"].is_null() {
            meta["uid"] = json!(format!("uid-{}", s.uids));
        }
        meta["resourceVersion"] = json!(s.resource_version.to_string());
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        s.objects.insert(key.clone(), object.clone());
        s.emit("ADDED", &key, &object);
        object
    }

    /// An object in the store.
    pub fn get(
        &self,
        group_version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&Key {
                group_version: group_version.into(),
                plural: plural.into(),
                namespace: namespace.into(),
                name: name.into(),
            })
            .cloned()
    }

    /// Every object of one resource in a namespace.
    pub fn list(&self, group_version: &str, plural: &str, namespace: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|(k, _)| {
                k.group_version == group_version && k.plural == plural && k.namespace == namespace
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Change a stored object as a user would (`kubectl edit`): bumps
    /// `resourceVersion`, and `generation` when the spec changed.
    pub fn edit(
        &self,
        group_version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) {
        let key = Key {
            group_version: group_version.into(),
            plural: plural.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        let mut s = self.state.lock().unwrap();
        let mut object = s.objects.get(&key).cloned().expect("object to edit exists");
        let before = object.clone();
        f(&mut object);
        s.resource_version += 1;
        let rv = s.resource_version;
        bump(&before, &mut object, rv);
        s.objects.insert(key.clone(), object.clone());
        s.emit("MODIFIED", &key, &object);
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Forget the logged requests.
    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// `reason` of every Event created so far, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut events: Vec<&Value> = s
            .objects
            .iter()
            .filter(|(k, _)| k.plural == "events")
            .map(|(_, v)| v)
            .collect();
        events.sort_by_key(|e| {
            e["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .parse::<u64>()
                .unwrap_or(0)
        });
        events
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    async fn serve(&self, request: Request<Body>) -> Reply {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON request body")
        };
        let query = parse_query(parts.uri.query().unwrap_or_default());
        let call = Call {
            seq: self.clock.tick(),
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: query.clone(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body: body.clone(),
        };
        let mut s = self.state.lock().unwrap();
        s.calls.push(call.clone());
        let Some(route) = parse_path(&call.path) else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no route {}", call.path),
            );
        };
        match (call.method.as_str(), &route.name) {
            ("GET", Some(_)) => match s.objects.get(&route.key()) {
                Some(o) => ok(StatusCode::OK, o),
                None => not_found(&route),
            },
            ("GET", None) => {
                let selector = query.get("labelSelector").cloned().unwrap_or_default();
                if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                    let since: u64 = query
                        .get("resourceVersion")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(s.resource_version);
                    let (tx, rx) = mpsc::unbounded_channel();
                    let watch = Watch {
                        group_version: route.group_version.clone(),
                        plural: route.plural.clone(),
                        namespace: route.namespace.clone(),
                        selector,
                        events: tx,
                    };
                    for (rv, type_, key, object) in &s.history {
                        if *rv > since && watch.wants(key, object) {
                            let _ = watch.events.send(event_line(type_, object));
                        }
                    }
                    s.watches.push(watch);
                    let frames = futures::stream::unfold(rx, |mut rx| async move {
                        rx.recv()
                            .await
                            .map(|line| (Ok(http_body::Frame::data(line)), rx))
                    });
                    return Response::builder()
                        .status(StatusCode::OK)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(BodyExt::boxed_unsync(StreamBody::new(frames)))
                        .unwrap();
                }
                let items: Vec<Value> = s
                    .objects
                    .iter()
                    .filter(|(k, o)| {
                        k.group_version == route.group_version
                            && k.plural == route.plural
                            && (route.namespace.is_empty() || k.namespace == route.namespace)
                            && matches_selector(o, &selector)
                    })
                    .map(|(_, o)| o.clone())
                    .collect();
                let rv = s.resource_version.to_string();
                ok(
                    StatusCode::OK,
                    &json!({"apiVersion": route.group_version, "kind": "List", "metadata": {"resourceVersion": rv}, "items": items}),
                )
            }
            ("POST", None) => {
                let mut object = body;
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let key = Key {
                    name: name.clone(),
                    ..route.key_without_name()
                };
                if s.objects.contains_key(&key) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("{} {name} already exists", route.plural),
                    );
                }
                s.resource_version += 1;
                s.uids += 1;
                let meta = &mut object["metadata"];
                meta["namespace"] = json!(route.namespace);
                meta["uid"] = json!(format!("uid-{}", s.uids));
                meta["resourceVersion"] = json!(s.resource_version.to_string());
                meta["generation"] = json!(1);
                meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                s.objects.insert(key.clone(), object.clone());
                s.emit("ADDED", &key, &object);
                ok(StatusCode::CREATED, &object)
            }
            ("PUT", Some(_)) => {
                let key = route.key();
                let Some(current) = s.objects.get(&key).cloned() else {
                    return not_found(&route);
                };
                let sent_rv = body["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default();
                if !sent_rv.is_empty()
                    && sent_rv
                        != current["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap_or_default()
                {
                    return status(StatusCode::CONFLICT, "Conflict", "the object has been modified; please apply your changes to the latest version and try again");
                }
                let mut object = body;
                for server_set in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
                    object["metadata"][server_set] = current["metadata"][server_set].clone();
                }
                if route.subresource.as_deref() == Some("status") {
                    let mut next = current.clone();
                    next["status"] = object["status"].clone();
                    object = next;
                } else {
                    object["status"] = current["status"].clone();
                }
                store(&mut s, key, &current, object)
            }
            ("PATCH", Some(_)) => {
                let key = route.key();
                let current = s.objects.get(&key).cloned();
                let next = if call.content_type.starts_with("application/apply-patch") {
                    if route.subresource.as_deref() == Some("status") {
                        let Some(current) = current.clone() else {
                            return not_found(&route);
                        };
                        let mut next = current;
                        next["status"] = body["status"].clone();
                        next
                    } else {
                        let mut next = body;
                        strip_null_status(&mut next);
                        if let Some(current) = &current {
                            for server_set in [
                                "uid",
                                "creationTimestamp",
                                "generation",
                                "resourceVersion",
                                "deletionTimestamp",
                                "finalizers",
                            ] {
                                if next["metadata"].get(server_set).is_none()
                                    && !current["metadata"][server_set].is_null()
                                {
                                    next["metadata"][server_set] =
                                        current["metadata"][server_set].clone();
                                }
                            }
                            if !current["status"].is_null() {
                                next["status"] = current["status"].clone();
                            }
                        } else {
                            s.uids += 1;
                            next["metadata"]["uid"] = json!(format!("uid-{}", s.uids));
                            next["metadata"]["generation"] = json!(1);
                            next["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                        }
                        next["metadata"]["namespace"] = json!(route.namespace);
                        next
                    }
                } else if call.content_type.starts_with("application/json-patch") {
                    let Some(current) = current.clone() else {
                        return not_found(&route);
                    };
                    // Like the API server, a `test` for null passes on a missing path.
                    let body = match body {
                        Value::Array(ops) => Value::Array(
                            ops.into_iter()
                                .filter(|op| {
                                    !(op["op"] == "test"
                                        && op["value"].is_null()
                                        && current
                                            .pointer(op["path"].as_str().unwrap_or_default())
                                            .is_none())
                                })
                                .collect(),
                        ),
                        other => other,
                    };
                    let patch: json_patch::Patch = match serde_json::from_value(body) {
                        Ok(p) => p,
                        Err(e) => {
                            return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string())
                        }
                    };
                    let mut next = current;
                    if let Err(e) = json_patch::patch(&mut next, &patch) {
                        return status(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Invalid",
                            &format!("the JSON patch failed: {e}"),
                        );
                    }
                    next
                } else if call.content_type.starts_with("application/merge-patch") {
                    let Some(current) = current.clone() else {
                        return not_found(&route);
                    };
                    let mut next = current;
                    json_patch::merge(&mut next, &body);
                    next
                } else {
                    return status(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "UnsupportedMediaType",
                        &call.content_type,
                    );
                };
                let before = current.unwrap_or(Value::Null);
                // An object being deleted goes once its last finalizer is removed.
                if !next["metadata"]["deletionTimestamp"].is_null()
                    && next["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|f| f.is_empty())
                {
                    s.remove(&key);
                    return ok(StatusCode::OK, &next);
                }
                store(&mut s, key, &before, next)
            }
            ("DELETE", Some(_)) => {
                let key = route.key();
                let Some(mut object) = s.objects.get(&key).cloned() else {
                    return not_found(&route);
                };
                if object["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
                {
                    if object["metadata"]["deletionTimestamp"].is_null() {
                        s.resource_version += 1;
                        object["metadata"]["deletionTimestamp"] = json!("2026-01-02T00:00:00Z");
                        object["metadata"]["resourceVersion"] =
                            json!(s.resource_version.to_string());
                        s.objects.insert(key.clone(), object.clone());
                        s.emit("MODIFIED", &key, &object);
                    }
                    return ok(StatusCode::ACCEPTED, &object);
                }
                let removed = s.remove(&key).unwrap_or(object);
                ok(StatusCode::OK, &removed)
            }
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("{} {}", call.method, call.path),
            ),
        }
    }
}

/// Store `next` in place of `before`: `resourceVersion` moves only if the
/// object changed, `generation` only if its spec did.
fn store(s: &mut State, key: Key, before: &Value, mut next: Value) -> Reply {
    let mut unchanged = next.clone();
    unchanged["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"].clone();
    unchanged["metadata"]["generation"] = before["metadata"]["generation"].clone();
    if !before.is_null() && &unchanged == before {
        return ok(StatusCode::OK, before);
    }
    s.resource_version += 1;
    let rv = s.resource_version;
    bump(before, &mut next, rv);
    s.objects.insert(key.clone(), next.clone());
    s.emit(
        if before.is_null() {
            "ADDED"
        } else {
            "MODIFIED"
        },
        &key,
        &next,
    );
    ok(StatusCode::OK, &next)
}

fn bump(before: &Value, next: &mut Value, resource_version: u64) {
    next["metadata"]["resourceVersion"] = json!(resource_version.to_string());
    let generation = before["metadata"]["generation"].as_i64().unwrap_or(0);
    let spec_changed = before.is_null() || before["spec"] != next["spec"];
    next["metadata"]["generation"] = json!(if spec_changed && !before.is_null() {
        generation + 1
    } else {
        generation.max(1)
    });
}

fn strip_null_status(object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        if map.get("status").is_some_and(Value::is_null) {
            map.remove("status");
        }
    }
}

impl Route {
    fn key(&self) -> Key {
        Key {
            name: self.name.clone().unwrap_or_default(),
            ..self.key_without_name()
        }
    }
    fn key_without_name(&self) -> Key {
        Key {
            group_version: self.group_version.clone(),
            plural: self.plural.clone(),
            namespace: self.namespace.clone(),
            name: String::new(),
        }
    }
}

fn key_of(object: &Value) -> Key {
    let api_version = object["apiVersion"]
        .as_str()
        .expect("apiVersion")
        .to_string();
    let kind = object["kind"].as_str().expect("kind");
    Key {
        group_version: api_version,
        plural: plural_of(kind),
        namespace: object["metadata"]["namespace"]
            .as_str()
            .expect("namespace")
            .to_string(),
        name: object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string(),
    }
}

/// The resource name of a kind, as the API server would list it.
pub fn plural_of(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

fn parse_path(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group_version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] => (namespace.to_string(), rest),
        rest => (String::new(), rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name.to_string()), None),
        [plural, name, sub] => (plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    Some(Route {
        group_version,
        plural: plural.to_string(),
        namespace,
        name,
        subresource,
    })
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn ok(code: StatusCode, object: &Value) -> Reply {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed_unsync(Full::new(Bytes::from(
            serde_json::to_vec(object).unwrap(),
        ))))
        .unwrap()
}

fn not_found(route: &Route) -> Reply {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!(
            "{} \"{}\" not found",
            route.plural,
            route.name.clone().unwrap_or_default()
        ),
    )
}

fn status(code: StatusCode, reason: &str, message: &str) -> Reply {
    ok(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        }),
    )
}
