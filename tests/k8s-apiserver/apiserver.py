#!/usr/bin/env python3
"""A test DOUBLE of the Kubernetes API server (not a real API server).

It speaks the real wire protocol (HTTP/1.1, JSON) closely enough that the
real kubectl and client libraries (kube-rs, client-go) can discover, list,
watch, create, replace, patch and delete a fixed set of resources (and the
status subresource of those that have one): core v1
namespaces, pods and services, discovery.k8s.io/v1 endpointslices,
networking.k8s.io/v1 networkpolicies and the Calico kinds in
projectcalico.org/v3 and crd.projectcalico.org/v1.

Standard library only (Python 3.11). See README.md beside this file for what
is faithful, what is not, and the test-control endpoints under /_double/.

Layout, top to bottom:
  resources    the served kinds and how a real server treats each one
  selectors    label and field selectors
  patches      JSON merge patch (RFC 7386), JSON patch (RFC 6902) and the
               subset of strategic merge patch the double understands
  store        objects, the global resourceVersion, the event history
  tables       meta.k8s.io/v1 Table output (what `kubectl get` asks for)
  discovery    /api, /apis, aggregated discovery and /openapi/v3
  http         the request handler
  main         command line, kubeconfig, signals
"""

import argparse
import base64
import bisect
import copy
import hashlib
import json
import re
import secrets
import select
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-causeway-double",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# --------------------------------------------------------------------------
# resources
# --------------------------------------------------------------------------

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class Resource:
    """One served resource and the real server's behaviour for it."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple = ()
    categories: tuple = ()
    # metadata.generation is kept (bumped when anything outside metadata and
    # status changes), as for CRs, NetworkPolicy and EndpointSlice.
    generation: bool = True
    # DELETE answers with the deleted object (pods, services, namespaces)
    # rather than a Status (the generic registry's default).
    delete_returns_object: bool = False
    # Items of a list carry no apiVersion/kind for compiled-in (typed)
    # kinds; CRs are unstructured and keep them.
    typed: bool = True
    # A status subresource (NAME/status: get, update, patch) that writes
    # only .status (and metadata), while the main endpoint ignores changes
    # to .status.
    status_subresource: bool = False

    @property
    def group_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self):
        """The `plural.group` a real server names in its messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def verbs(self):
        if self.kind == "Namespace":
            return [v for v in ALL_VERBS if v != "deletecollection"]
        return ALL_VERBS


def _calico(group, version, typed):
    # Short names as the Calico API server declares them; the CRDs have none.
    shorts = typed
    return [
        Resource(group, version, "globalnetworkpolicies", "globalnetworkpolicy",
                 "GlobalNetworkPolicy", False, ("gnp", "cgnp", "calicoglobalnetworkpolicies") if shorts else (),
                 typed=typed),
        Resource(group, version, "networkpolicies", "networkpolicy", "NetworkPolicy", True,
                 ("cnp", "caliconetworkpolicy", "caliconetworkpolicies") if shorts else (), typed=typed),
        Resource(group, version, "tiers", "tier", "Tier", False, typed=typed),
        Resource(group, version, "globalnetworksets", "globalnetworkset", "GlobalNetworkSet", False,
                 typed=typed),
        Resource(group, version, "networksets", "networkset", "NetworkSet", True,
                 ("netsets",) if shorts else (), typed=typed),
    ]


# In the order a real server lists them: built-in groups first, then the
# Calico API server (groupPriorityMinimum 1500), then CRDs (1000).
RESOURCES = [
    Resource("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",), generation=False,
             delete_returns_object=True, status_subresource=True),
    Resource("", "v1", "pods", "pod", "Pod", True, ("po",), ("all",), generation=False,
             delete_returns_object=True, status_subresource=True),
    Resource("", "v1", "services", "service", "Service", True, ("svc",), ("all",), generation=False,
             delete_returns_object=True, status_subresource=True),
    Resource("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", True,
             ("netpol",)),
    Resource("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", True),
    *_calico("projectcalico.org", "v3", typed=True),
    *_calico("crd.projectcalico.org", "v1", typed=False),
]

GROUP_VERSIONS = []  # ("", "v1"), ("networking.k8s.io", "v1"), ... in order
for _r in RESOURCES:
    if (_r.group, _r.version) not in GROUP_VERSIONS:
        GROUP_VERSIONS.append((_r.group, _r.version))


def find_resource(group, version, plural):
    for r in RESOURCES:
        if r.group == group and r.version == version and r.plural == plural:
            return r
    return None


NAMESPACES = find_resource("", "v1", "namespaces")


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


class ApiError(Exception):
    """A failure answered as a meta/v1 Status, as a real server does."""

    def __init__(self, code, reason, message, details=None, list_meta=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.list_meta = list_meta

    def status(self):
        s = {"kind": "Status", "apiVersion": "v1", "metadata": self.list_meta or {},
             "status": "Failure", "message": self.message, "reason": self.reason}
        if self.details is not None:
            s["details"] = self.details
        s["code"] = self.code
        return s


def _details(res, name):
    d = {"name": name}
    if res.group:
        d["group"] = res.group
    d["kind"] = res.plural  # real servers put the resource here, not the kind
    return d


def not_found(res, name):
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', _details(res, name))


def already_exists(res, name):
    return ApiError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists',
                    _details(res, name))


def conflict(res, name, why="the object has been modified; please apply your changes to the "
                           "latest version and try again"):
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {res.qualified} "{name}": {why}',
                    _details(res, name))


def bad_request(message):
    return ApiError(400, "BadRequest", message)


def invalid(res, name, field_path, value, detail):
    cause = {"reason": "FieldValueInvalid", "message": f"Invalid value: {json.dumps(value)}: {detail}",
             "field": field_path}
    d = _details(res, name)
    d["kind"] = res.kind  # Invalid names the kind
    d["causes"] = [cause]
    return ApiError(422, "Invalid",
                    f'{res.kind} "{name}" is invalid: {field_path}: {cause["message"]}', d)


def expired(message, list_meta=None):
    return ApiError(410, "Expired", message, list_meta=list_meta)


SERVER_NOT_FOUND = "the server could not find the requested resource"
METHOD_NOT_ALLOWED = "the server does not allow this method on the requested resource"
CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list."
)

# --------------------------------------------------------------------------
# selectors
# --------------------------------------------------------------------------

_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")


def _split_top_level(text):
    """Splits on commas that are not inside `in (...)` parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_label_selector(text):
    """Returns requirements (key, op, values) of a labelSelector.

    Operators: =, ==, !=, in, notin, exists (`key`), doesnotexist (`!key`),
    gt and lt, as in apimachinery's labels.Parse.
    """
    reqs = []
    if not text or not text.strip():
        return reqs
    for part in _split_top_level(text):
        part = part.strip()
        if not part:
            raise bad_request(f"unable to parse requirement: found '', expected: identifier in {text!r}")
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s*\((.*)\)", part)
        if m:
            key, op = m.group(1), m.group(2)
            values = [v.strip() for v in m.group(3).split(",")]
            if not any(values):
                raise bad_request(f"unable to parse requirement: for 'in', 'notin' operators, values set can't be empty")
        elif part.startswith("!"):
            key, op, values = part[1:].strip(), "doesnotexist", []
        else:
            m = re.fullmatch(r"([^=!<>\s]+)\s*(==|!=|=|>|<)\s*(\S*)", part)
            if m:
                key, op, values = m.group(1), m.group(2), [m.group(3)]
                op = {"==": "=", ">": "gt", "<": "lt"}.get(op, op)
            elif re.fullmatch(r"\S+", part):
                key, op, values = part, "exists", []
            else:
                raise bad_request(f"unable to parse requirement: {part!r}")
        if not _LABEL_KEY.match(key):
            raise bad_request(f"unable to parse requirement: invalid label key \"{key}\"")
        for v in values:
            if op in ("gt", "lt"):
                if not re.fullmatch(r"-?\d+", v):
                    raise bad_request(f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer")
            elif not _LABEL_VALUE.match(v):
                raise bad_request(f"unable to parse requirement: invalid label value: \"{v}\"")
        reqs.append((key, op, set(values) if op in ("in", "notin", "=", "!=") else values))
    return reqs


def labels_match(reqs, obj):
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for key, op, values in reqs:
        present = key in labels
        value = labels.get(key)
        if op in ("=", "in"):
            ok = present and value in values
        elif op in ("!=", "notin"):
            ok = not present or value not in values
        elif op == "exists":
            ok = present
        elif op == "doesnotexist":
            ok = not present
        else:  # gt, lt
            try:
                n = int(value)
            except (TypeError, ValueError):
                return False
            ok = n > int(values[0]) if op == "gt" else n < int(values[0])
        if not ok:
            return False
    return True


# Field labels each kind accepts beyond metadata.name and metadata.namespace.
FIELD_LABELS = {
    "Pod": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"},
    "Namespace": {"status.phase"},
    "Service": {"spec.clusterIP", "spec.type"},
}


def parse_field_selector(text, res):
    reqs = []
    if not text or not text.strip():
        return reqs
    for part in text.split(","):
        m = re.fullmatch(r"\s*([^=!\s]+)\s*(==|!=|=)\s*(.*?)\s*", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, value = m.groups()
        if key not in ("metadata.name", "metadata.namespace") and key not in FIELD_LABELS.get(res.kind, ()):
            raise bad_request(f'field label not supported: {key}')
        reqs.append((key, "!=" if op == "!=" else "=", value))
    return reqs


def fields_match(reqs, obj):
    for key, op, value in reqs:
        cur = obj
        for part in key.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(cur, bool):
            cur = "true" if cur else "false"
        cur = "" if cur is None else str(cur)
        if (cur == value) != (op == "="):
            return False
    return True


# --------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------


def json_merge_patch(target, patch):
    """RFC 7386 section 2."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


# Lists of maps merged by key under strategic merge patch; every other list
# is replaced, as in JSON merge patch. A subset of the real patch metadata.
SMP_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "imagePullSecrets": "name", "volumeMounts": "mountPath",
    "ownerReferences": "uid", "conditions": "type",
}
SMP_PRIMITIVE_MERGE = {"finalizers"}


def _smp_merge_key(field_name, items):
    if field_name == "ports":
        return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"
    return SMP_MERGE_KEYS.get(field_name)


def strategic_merge_patch(target, patch):
    """The subset of strategic merge patch a double needs: JSON merge patch,
    plus lists of maps merged by their merge key (SMP_MERGE_KEYS), `$patch`
    replace/delete, `$retainKeys`, `$setElementOrder/` and
    `$deleteFromPrimitiveList/` directives."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    patch = dict(patch)
    directive = patch.pop("$patch", None)
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.pop("$retainKeys", None)
    orders = {}
    for key in [k for k in patch if k.startswith("$setElementOrder/")]:
        orders[key.split("/", 1)[1]] = patch.pop(key)
    for key in [k for k in patch if k.startswith("$deleteFromPrimitiveList/")]:
        name = key.split("/", 1)[1]
        drop = patch.pop(key) or []
        if isinstance(result.get(name), list):
            result[name] = [v for v in result[name] if v not in drop]
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _smp_list(key, result[key], value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    for name, order in orders.items():
        if isinstance(result.get(name), list):
            result[name] = _smp_order(name, result[name], order)
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(name, current, patch):
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if name in SMP_PRIMITIVE_MERGE:
        return current + [v for v in patch if v not in current]
    key = _smp_merge_key(name, current + patch)
    if key is None or not all(isinstance(i, dict) and key in i for i in patch):
        return copy.deepcopy(patch)
    out = [copy.deepcopy(i) for i in current]
    for item in patch:
        idx = next((n for n, c in enumerate(out) if isinstance(c, dict) and c.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
        elif idx is None:
            out.append(strategic_merge_patch({}, item))
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out


def _smp_order(name, items, order):
    key = _smp_merge_key(name, items)
    if key is None:
        ranks = {json.dumps(v, sort_keys=True): n for n, v in enumerate(order)}
        return sorted(items, key=lambda v: ranks.get(json.dumps(v, sort_keys=True), len(ranks)))
    ranks = {o.get(key): n for n, o in enumerate(order) if isinstance(o, dict)}
    return sorted(items, key=lambda i: ranks.get(i.get(key) if isinstance(i, dict) else None, len(ranks)))


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts):
    cur = doc
    for p in parts:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    return cur


def json_patch(doc, ops):
    """RFC 6902 section 4: add, remove, replace, move, copy, test."""
    doc = copy.deepcopy(doc)

    def add(parts, value):
        nonlocal doc
        if not parts:
            doc = value
            return
        parent = _walk(doc, parts[:-1])
        last = parts[-1]
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[last] = value

    def remove(parts):
        parent = _walk(doc, parts[:-1])
        last = parts[-1]
        return parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)

    for op in ops:
        kind, path = op.get("op"), _pointer(op.get("path", ""))
        if kind == "add":
            add(path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            remove(path)
        elif kind == "replace":
            remove(path)
            add(path, copy.deepcopy(op["value"]))
        elif kind == "move":
            add(path, remove(_pointer(op["from"])))
        elif kind == "copy":
            add(path, copy.deepcopy(_walk(doc, _pointer(op["from"]))))
        elif kind == "test":
            if _walk(doc, path) != op.get("value"):
                raise ValueError(f"testing value {op.get('path')} failed")
        else:
            raise ValueError(f"Unexpected kind: {kind}")
    return doc


# --------------------------------------------------------------------------
# protobuf
# --------------------------------------------------------------------------

PROTOBUF = "application/vnd.kubernetes.protobuf"
PROTO_MAGIC = b"k8s\x00"


def _proto_fields(data):
    """Protocol buffers wire format: field number -> list of values (ints
    for varints, bytes for length-delimited; fixed32/64 kept as bytes)."""
    out, i = {}, 0

    def varint():
        nonlocal i
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(data):
        tag = varint()
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value = varint()
        elif wire == 2:
            n = varint()
            value, i = data[i:i + n], i + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            value, i = data[i:i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _proto_str(fields, n):
    return fields[n][-1].decode() if n in fields else None


def _proto_map(fields, n):
    entries = (_proto_fields(e) for e in fields.get(n, []))
    return {_proto_str(e, 1) or "": _proto_str(e, 2) or "" for e in entries}


def _proto_object_meta(data):
    f = _proto_fields(data)
    meta = {}
    for n, key in ((1, "name"), (2, "generateName"), (3, "namespace"), (5, "uid"), (6, "resourceVersion")):
        if _proto_str(f, n):
            meta[key] = _proto_str(f, n)
    if f.get(11):
        meta["labels"] = _proto_map(f, 11)
    if f.get(12):
        meta["annotations"] = _proto_map(f, 12)
    if f.get(14):
        meta["finalizers"] = [v.decode() for v in f[14]]
    return meta


def decode_protobuf(data):
    """The runtime.Unknown envelope of a Kubernetes protobuf body, and inside
    it a Namespace (what `kubectl create namespace` sends). Other kinds are
    refused with 415: the double reads JSON for everything else."""
    if not data.startswith(PROTO_MAGIC):
        raise bad_request("protobuf body without the k8s\\x00 prefix")
    envelope = _proto_fields(data[len(PROTO_MAGIC):])
    type_meta = _proto_fields(envelope.get(1, [b""])[-1])
    api_version, kind = _proto_str(type_meta, 1), _proto_str(type_meta, 2)
    if (api_version, kind) != ("v1", "Namespace"):
        raise ApiError(415, "UnsupportedMediaType",
                       f"the double decodes protobuf only for v1 Namespace, not {api_version} {kind}: send "
                       f"application/json", {})
    raw = _proto_fields(envelope.get(2, [b""])[-1])
    obj = {"apiVersion": api_version, "kind": kind,
           "metadata": _proto_object_meta(raw.get(1, [b""])[-1])}
    spec = _proto_fields(raw.get(2, [b""])[-1])
    if spec.get(1):
        obj["spec"] = {"finalizers": [v.decode() for v in spec[1]]}
    return obj


# --------------------------------------------------------------------------
# store
# --------------------------------------------------------------------------


def now_rfc3339():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sort_key(ns, name):
    """The order of etcd keys under /registry/<resource>/."""
    return f"{ns}/{name}" if ns else name


@dataclass
class Event:
    rv: int
    res: Resource
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict  # the object after the write (for DELETED: its last state at rv)
    prev: dict = None  # the object before the write (MODIFIED, DELETED)

    @property
    def key(self):
        m = self.obj["metadata"]
        return (m.get("namespace", ""), m["name"])


@dataclass
class Store:
    """Every object, one global resourceVersion (etcd's revision) bumped on
    each write, and the history of writes after `compacted`."""

    history_limit: int = 100000
    rv: int = 1
    compacted: int = 0
    objects: dict = field(default_factory=dict)  # Resource -> {(ns, name): obj}
    history: list = field(default_factory=list)
    history_rvs: list = field(default_factory=list)
    watch_epoch: int = 0
    open_watches: int = 0
    stopping: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)
    next_cluster_ip: int = 10

    def table(self, res):
        return self.objects.setdefault(res, {})

    def commit(self, res, type_, obj, prev=None):
        """Writes one change under the lock; returns the stored copy."""
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if type_ == "DELETED":
            self.table(res).pop(key, None)
        else:
            self.table(res)[key] = obj
        self.history.append(Event(self.rv, res, type_, obj, prev))
        self.history_rvs.append(self.rv)
        if len(self.history) > self.history_limit:
            self.compact(self.history[len(self.history) - self.history_limit].rv)
        self.cond.notify_all()
        return copy.deepcopy(obj)

    def compact(self, rv):
        """Forgets events at or before `rv`: afterwards anything that refers
        to a resourceVersion older than `rv` gets 410 Expired."""
        rv = min(rv, self.rv)
        if rv <= self.compacted:
            return
        cut = bisect.bisect_right(self.history_rvs, rv)
        del self.history[:cut]
        del self.history_rvs[:cut]
        self.compacted = rv
        self.cond.notify_all()

    def events_after(self, rv):
        return self.history[bisect.bisect_right(self.history_rvs, rv):]

    def state_at(self, res, rv):
        """The objects of `res` as they were at `rv` (rolled back from now
        through the history); the caller checks rv >= compacted."""
        objs = dict(self.table(res))
        for ev in reversed(self.events_after(rv)):
            if ev.res is not res:
                continue
            if ev.type == "ADDED":
                objs.pop(ev.key, None)
            else:
                objs[ev.key] = ev.prev
        return objs


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------


def human_duration(seconds):
    """apimachinery's duration.HumanDuration, which the Age column uses."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _age(obj):
    ts = obj["metadata"].get("creationTimestamp")
    if not ts:
        return "<unknown>"
    created = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return human_duration((datetime.now(timezone.utc) - created).total_seconds())


def _col(name, type_="string", fmt="", priority=0, description=""):
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


NAME_COL = _col("Name", fmt="name", description="Name must be unique within a namespace.")
AGE_COL = _col("Age", description="CreationTimestamp is a timestamp representing the server time "
                                  "when this object was created.")


def _pod_cells(o):
    spec, status = o.get("spec") or {}, o.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    gates = spec.get("readinessGates")
    return [o["metadata"]["name"], f"{ready}/{len(spec.get('containers') or [])}",
            status.get("reason") or status.get("phase") or "", restarts, _age(o),
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>",
            "<none>" if not gates else f"0/{len(gates)}"]


def _service_ports(o):
    ports = (o.get("spec") or {}).get("ports") or []
    out = []
    for p in ports:
        s = f"{p.get('port')}/{p.get('protocol', 'TCP')}"
        if p.get("nodePort"):
            s = f"{p.get('port')}:{p['nodePort']}/{p.get('protocol', 'TCP')}"
        out.append(s)
    return ",".join(out) or "<none>"


def _selector_text(sel):
    labels = (sel or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


PRINTERS = {
    ("", "Pod"): ([NAME_COL, _col("Ready"), _col("Status"), _col("Restarts", "integer"), AGE_COL,
                   _col("IP", priority=1), _col("Node", priority=1), _col("Nominated Node", priority=1),
                   _col("Readiness Gates", priority=1)], _pod_cells),
    ("", "Namespace"): ([NAME_COL, _col("Status"), AGE_COL],
                        lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""), _age(o)]),
    ("", "Service"): ([NAME_COL, _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"),
                       AGE_COL, _col("Selector", priority=1)],
                      lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("type", ""),
                                 (o.get("spec") or {}).get("clusterIP") or "<none>", "<none>",
                                 _service_ports(o), _age(o),
                                 ",".join(f"{k}={v}" for k, v in sorted(((o.get("spec") or {}).get("selector") or {}).items())) or "<none>"]),
    ("networking.k8s.io", "NetworkPolicy"): (
        [NAME_COL, _col("Pod-Selector"), AGE_COL],
        lambda o: [o["metadata"]["name"], _selector_text((o.get("spec") or {}).get("podSelector")), _age(o)]),
}
# Kinds without a printer get what a real server gives CRDs without
# additionalPrinterColumns: Name and Created At.
DEFAULT_PRINTER = ([NAME_COL, _col("Created At", "date", description="CreationTimestamp is a timestamp "
                                   "representing the server time when this object was created.")],
                   lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")])


def wants_table(accept):
    for part in (accept or "").split(","):
        params = {p.strip() for p in part.split(";")[1:]}
        if "as=Table" in params and "g=meta.k8s.io" in params and params & {"v=v1", "v=v1beta1"}:
            return "v1beta1" if "v=v1beta1" in params else "v1"
        if part.split(";")[0].strip() in ("application/json", "*/*", "application/*"):
            if not params:
                return None
    return None


def to_table(res, objs, meta, include, version="v1"):
    cols, cells = PRINTERS.get((res.group, res.kind), DEFAULT_PRINTER)
    rows = []
    for o in objs:
        row = {"cells": cells(o)}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
                             "metadata": o["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{version}", "metadata": meta,
            "columnDefinitions": cols, "rows": rows}


# --------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------


def _resources_of(group, version):
    return [r for r in RESOURCES if r.group == group and r.version == version]


def api_resource_list(group, version):
    gv = f"{group}/{version}" if group else version
    out = []
    for r in _resources_of(group, version):
        e = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
             "verbs": r.verbs}
        if r.short_names:
            e["shortNames"] = list(r.short_names)
        if r.categories:
            e["categories"] = list(r.categories)
        e["storageVersionHash"] = base64.b64encode(hashlib.sha256(f"{gv}/{r.kind}".encode()).digest()[:8]).decode()
        out.append(e)
        if r.status_subresource:
            out.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": list(SUBRESOURCE_VERBS)})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def api_group(group):
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in GROUP_VERSIONS if g == group]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list():
    groups = []
    for g, _ in GROUP_VERSIONS:
        if g and all(x["name"] != g for x in groups):
            groups.append(api_group(g))
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def aggregated_discovery(core, version):
    """apidiscovery.k8s.io/v2 (or v2beta1) APIGroupDiscoveryList."""
    items = []
    for g in ([""] if core else [x["name"] for x in api_group_list()["groups"]]):
        versions = []
        for gg, v in GROUP_VERSIONS:
            if gg != g:
                continue
            resources = []
            for r in _resources_of(g, v):
                e = {"resource": r.plural, "responseKind": {"group": g, "version": v, "kind": r.kind},
                     "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular,
                     "verbs": r.verbs}
                if r.short_names:
                    e["shortNames"] = list(r.short_names)
                if r.categories:
                    e["categories"] = list(r.categories)
                if r.status_subresource:
                    e["subresources"] = [{"subresource": "status", "responseKind": dict(e["responseKind"]),
                                          "verbs": list(SUBRESOURCE_VERBS)}]
                resources.append(e)
            versions.append({"version": v, "resources": resources, "freshness": "Current"})
        meta = {"creationTimestamp": None}
        if g:
            meta["name"] = g
        items.append({"metadata": meta, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def wants_aggregated(accept):
    """The first aggregated-discovery version the Accept header lists."""
    for part in (accept or "").split(","):
        params = {p.strip() for p in part.split(";")[1:]}
        if "as=APIGroupDiscoveryList" in params and "g=apidiscovery.k8s.io" in params:
            for v in ("v2", "v2beta1"):
                if f"v={v}" in params:
                    return v
    return None


def _gv_path(group, version):
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(r):
    g = r.group or "core"
    if r.group in ("", "networking.k8s.io", "discovery.k8s.io"):
        g = {"": "core", "networking.k8s.io": "networking", "discovery.k8s.io": "discovery"}[r.group]
        return f"io.k8s.api.{g}.{r.version}.{r.kind}"
    return f"org.projectcalico.{g}.{r.version}.{r.kind}"


def openapi_v3_doc(group, version):
    """A sparse OpenAPI v3 document for one group-version: every path and
    operation kubectl looks for (PATCH with x-kubernetes-group-version-kind
    and the fieldValidation parameter), schemas that accept any fields.

    The PATCH request bodies do not list application/strategic-merge-patch+json,
    so kubectl builds its patches from its compiled-in types (or as JSON
    merge patch for kinds it does not know) instead of from these schemas.
    """
    meta_ref = {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    schemas = {
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                           "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                           "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                           "resourceVersion": {"type": "string"}, "uid": {"type": "string"}}},
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch": {"type": "object"},
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status": {"type": "object"},
    }
    paths = {}

    def q(name, type_="string"):
        return {"name": name, "in": "query", "schema": {"type": type_, "uniqueItems": True}}

    def p(name):
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "uniqueItems": True}}

    list_params = [q(n) for n in ("continue", "fieldSelector", "labelSelector", "resourceVersion",
                                  "resourceVersionMatch")] + [q("limit", "integer"), q("timeoutSeconds", "integer"),
                                                              q("watch", "boolean"), q("allowWatchBookmarks", "boolean")]
    write_params = [q("dryRun"), q("fieldManager"), q("fieldValidation"), q("pretty")]
    for r in _resources_of(group, version):
        gvk = {"group": group, "version": version, "kind": r.kind}
        ref = {"$ref": f"#/components/schemas/{_schema_name(r)}"}
        list_ref = {"$ref": f"#/components/schemas/{_schema_name(r)}List"}
        schemas[_schema_name(r)] = {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": meta_ref,
                           "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                           "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            "x-kubernetes-group-version-kind": [gvk]}
        schemas[f"{_schema_name(r)}List"] = {
            "type": "object", "required": ["items"],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "items": {"type": "array", "items": ref}, "metadata": {"type": "object"}},
            "x-kubernetes-group-version-kind": [{**gvk, "kind": f"{r.kind}List"}]}

        def op(action, body=None, ok=ref, params=(), _gvk=gvk, _kind=r.kind, suffix=""):
            o = {"operationId": f"{action}{_kind}{suffix}", "parameters": list(params),
                 "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
                               "401": {"description": "Unauthorized"}},
                 "x-kubernetes-action": action, "x-kubernetes-group-version-kind": _gvk}
            if body:
                o["requestBody"] = {"content": {t: {"schema": s} for t, s in body.items()}, "required": True}
            return o

        base = "/" + _gv_path(group, version)
        coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
        ns_params = [p("namespace")] if r.namespaced else []
        patch_ref = {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}
        paths[coll] = {
            "get": op("list", ok=list_ref, params=list_params),
            "post": op("post", body={"application/json": ref, "application/yaml": ref}, params=write_params),
            "delete": op("deletecollection", ok={"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Status"},
                         params=list_params),
            "parameters": ns_params,
        }
        paths[f"{coll}/{{name}}"] = {
            "get": op("get"),
            "put": op("put", body={"application/json": ref, "application/yaml": ref}, params=write_params),
            "patch": op("patch", body={t: patch_ref for t in ("application/json-patch+json", "application/merge-patch+json",
                                                              "application/apply-patch+yaml")},
                        params=write_params + [q("force", "boolean")]),
            "delete": op("delete", params=[q("dryRun"), q("gracePeriodSeconds", "integer"), q("propagationPolicy")]),
            "parameters": ns_params + [p("name")],
        }
        if r.status_subresource:
            paths[f"{coll}/{{name}}/status"] = {
                "get": op("get", suffix="Status"),
                "put": op("put", body={"application/json": ref, "application/yaml": ref}, params=write_params,
                          suffix="Status"),
                "patch": op("patch", body={t: patch_ref for t in ("application/json-patch+json",
                                                                  "application/merge-patch+json",
                                                                  "application/apply-patch+yaml")},
                            params=write_params + [q("force", "boolean")], suffix="Status"),
                "parameters": ns_params + [p("name")],
            }
        if r.namespaced:
            paths[f"{base}/{r.plural}"] = {"get": op("list", ok=list_ref, params=list_params)}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": schemas}}


def _doc_hash(doc):
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest().upper()


OPENAPI_V3 = {_gv_path(g, v): openapi_v3_doc(g, v) for g, v in GROUP_VERSIONS}
OPENAPI_V3_INDEX = {"paths": {path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={_doc_hash(doc)}"}
                              for path, doc in OPENAPI_V3.items()}}


# --------------------------------------------------------------------------
# http
# --------------------------------------------------------------------------

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json",
               "application/json-patch+json", "application/apply-patch+yaml")


class DropWatch(Exception):
    """The watch is to be cut without the closing chunk (/_double/drop-watches)."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "causeway-k8s-double"
    sys_version = ""

    # Set by main().
    store: Store = None
    token: str = None
    bookmark_interval: float = 5.0
    aggregated: bool = True
    verbose: bool = False

    def log_message(self, fmt, *args):
        if self.verbose:
            sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    # -- plumbing ----------------------------------------------------------

    def _send(self, code, body, content_type="application/json"):
        if isinstance(body, (dict, list)):
            pretty = self.params.get("pretty") in ("true", "1") if hasattr(self, "params") else False
            text = json.dumps(body, indent=2 if pretty else None, separators=None if pretty else (",", ":"))
            data = (text + "\n").encode()
        else:
            data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self, required=True):
        raw = self._body()
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() == PROTOBUF:
            try:
                return decode_protobuf(raw)
            except (ValueError, IndexError, UnicodeDecodeError) as e:
                raise bad_request(f"cannot decode the protobuf body: {e}")
        if not raw.strip():
            if required:
                raise bad_request("the body of the request was in an unknown format - accepted media types "
                                  "include: application/json, application/yaml")
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise bad_request(f"the double reads JSON bodies only: {e}")

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def _dispatch(self):
        url = urlsplit(self.path)
        self.params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        segs = [s for s in url.path.split("/") if s]
        try:
            auth = self.headers.get("Authorization")
            if auth is not None and self.token and auth != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self._route(segs)
        except ApiError as e:
            self._send(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError, DropWatch):
            self.close_connection = True
        except Exception as e:  # a bug in the double: answer as a real server would, and say so
            import traceback
            traceback.print_exc()
            self._send(500, ApiError(500, "InternalError", f"Internal error occurred: {e}").status())

    def _route(self, segs):
        if not segs:
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]
            paths += [f"/apis/{g}" for g in dict.fromkeys(g for g, _ in GROUP_VERSIONS if g)]
            paths += [f"/{_gv_path(g, v)}" for g, v in GROUP_VERSIONS if g]
            return self._send(200, {"paths": sorted(paths)})
        head = segs[0]
        if head == "version" and len(segs) == 1:
            return self._send(200, SERVER_VERSION)
        if head in ("healthz", "livez", "readyz"):
            return self._send(200, "ok", "text/plain; charset=utf-8")
        if head == "openapi":
            return self._openapi(segs[1:])
        if head == "_double":
            return self._control(segs[1:])
        if head == "api":
            if len(segs) == 1:
                return self._discovery(core=True)
            if segs[1] != "v1":
                raise ApiError(404, "NotFound", SERVER_NOT_FOUND, {})
            if len(segs) == 2:
                return self._send(200, api_resource_list("", "v1"))
            return self._resource("", "v1", segs[2:])
        if head == "apis":
            if len(segs) == 1:
                return self._discovery(core=False)
            group = segs[1]
            if not any(g == group for g, _ in GROUP_VERSIONS):
                raise ApiError(404, "NotFound", SERVER_NOT_FOUND, {})
            if len(segs) == 2:
                return self._send(200, {"kind": "APIGroup", "apiVersion": "v1", **api_group(group)})
            if (group, segs[2]) not in GROUP_VERSIONS:
                raise ApiError(404, "NotFound", SERVER_NOT_FOUND, {})
            if len(segs) == 3:
                return self._send(200, api_resource_list(group, segs[2]))
            return self._resource(group, segs[2], segs[3:])
        self._send(404, "404 page not found\n", "text/plain; charset=utf-8")

    def _discovery(self, core):
        version = wants_aggregated(self.headers.get("Accept")) if self.aggregated else None
        if version:
            ctype = f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
            return self._send(200, aggregated_discovery(core, version), ctype)
        if core:
            host = self.server.server_address
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{host[0]}:{host[1]}"}]})
        return self._send(200, api_group_list())

    def _openapi(self, rest):
        if rest == ["v3"]:
            return self._send(200, OPENAPI_V3_INDEX)
        if len(rest) > 1 and rest[0] == "v3" and "/".join(rest[1:]) in OPENAPI_V3:
            return self._send(200, OPENAPI_V3["/".join(rest[1:])])
        # /openapi/v2 is not served: kubectl then uses v3 for field
        # validation and its compiled-in types for strategic merge patch.
        self._send(404, "404 page not found\n", "text/plain; charset=utf-8")

    # -- test control ------------------------------------------------------

    def _control(self, rest):
        store = self.store
        if rest == ["state"] and self.command == "GET":
            with store.cond:
                counts = {r.qualified: len(store.table(r)) for r in RESOURCES}
                return self._send(200, {
                    "resourceVersion": store.rv, "compacted": store.compacted,
                    "history": len(store.history), "openWatches": store.open_watches,
                    "objects": counts})
        if rest == ["compact"] and self.command == "POST":
            try:
                rv = int(self.params.get("rv", ""))
            except ValueError:
                raise bad_request("compact needs ?rv=N")
            self._body()
            with store.cond:
                store.compact(rv)
                return self._send(200, {"compacted": store.compacted, "resourceVersion": store.rv})
        if rest == ["drop-watches"] and self.command == "POST":
            self._body()
            with store.cond:
                store.watch_epoch += 1
                dropped = store.open_watches
                store.cond.notify_all()
            return self._send(200, {"dropped": dropped})
        self._send(404, "404 page not found\n", "text/plain; charset=utf-8")

    # -- resources ---------------------------------------------------------

    def _resource(self, group, version, rest):
        watch_path = False
        if rest and rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces" and find_resource(group, version, rest[2]):
            ns, rest = rest[1], rest[2:]
        sub = None
        if len(rest) == 3:
            rest, sub = rest[:2], rest[2]
        if not rest or len(rest) > 2:
            raise ApiError(404, "NotFound", SERVER_NOT_FOUND, {})
        res = find_resource(group, version, rest[0])
        if res is None or (ns is not None and not res.namespaced):
            raise ApiError(404, "NotFound", SERVER_NOT_FOUND, {})
        name = rest[1] if len(rest) == 2 else None
        if name is not None and res.namespaced and ns is None:
            raise ApiError(404, "NotFound", SERVER_NOT_FOUND, {})
        method = self.command
        if sub is not None:
            # Only the status subresource is served (not scale, log, ...),
            # and only for the kinds that have one on a real server.
            if sub != "status" or not res.status_subresource or watch_path:
                raise ApiError(404, "NotFound", SERVER_NOT_FOUND, {})
            if method in ("GET", "HEAD"):
                return self._get(res, ns, name)
            if method == "PUT":
                return self._update(res, ns, name, status=True)
            if method == "PATCH":
                return self._patch(res, ns, name, status=True)
            raise ApiError(405, "MethodNotAllowed", METHOD_NOT_ALLOWED, {})
        if watch_path and method != "GET":
            raise ApiError(405, "MethodNotAllowed", METHOD_NOT_ALLOWED, {})
        watching = watch_path or self.params.get("watch") in ("true", "1")
        if method in ("GET", "HEAD"):
            if watching:
                return self._watch(res, ns, name)
            if name is not None:
                return self._get(res, ns, name)
            return self._list(res, ns)
        if method == "POST" and name is None:
            return self._create(res, ns)
        if method == "PUT" and name is not None:
            return self._update(res, ns, name)
        if method == "PATCH" and name is not None:
            return self._patch(res, ns, name)
        if method == "DELETE":
            if name is not None:
                return self._delete(res, ns, name)
            return self._delete_collection(res, ns)
        raise ApiError(405, "MethodNotAllowed", METHOD_NOT_ALLOWED, {})

    def _out(self, res, obj, code=200):
        """Answers one object, as a Table when the client asked for one."""
        version = wants_table(self.headers.get("Accept"))
        if version:
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            table = to_table(res, [obj], meta, self.params.get("includeObject", "PartialObjectMetadata"), version)
            return self._send(code, table, f"application/json;as=Table;v={version};g=meta.k8s.io")
        self._send(code, obj)

    def _get(self, res, ns, name):
        with self.store.cond:
            obj = self.store.table(res).get((ns or "", name))
            obj = copy.deepcopy(obj)
        if obj is None:
            raise not_found(res, name)
        self._out(res, obj)

    def _selectors(self, res, ns, name=None):
        labels = parse_label_selector(self.params.get("labelSelector", ""))
        fields = parse_field_selector(self.params.get("fieldSelector", ""), res)
        if ns is not None:
            fields.append(("metadata.namespace", "=", ns))
        if name is not None:
            fields.append(("metadata.name", "=", name))
        return lambda o: labels_match(labels, o) and fields_match(fields, o)

    def _list(self, res, ns):
        store = self.store
        match = self._selectors(res, ns)
        rv_param = self.params.get("resourceVersion", "")
        rv_match = self.params.get("resourceVersionMatch", "")
        token = self.params.get("continue", "")
        try:
            limit = int(self.params.get("limit") or 0)
        except ValueError:
            raise bad_request(f"invalid limit: {self.params.get('limit')!r}")
        start = None
        if token:
            if rv_param:
                raise bad_request("specifying resource version is not allowed when using continue")
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
                at, start = int(decoded["rv"]), decoded["start"].rstrip("\x00")
                if decoded.get("v") != "meta.k8s.io/v1":
                    raise ValueError("wrong version")
            except (ValueError, KeyError, TypeError) as e:
                raise bad_request(f"continue key is not valid: {e}")
        elif rv_match and not rv_param:
            raise bad_request(f"resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided")
        with store.cond:
            if token:
                if at == -1:
                    at = store.rv
                elif at < store.compacted:
                    new = _encode_continue(-1, start)
                    raise expired(CONTINUE_TOO_OLD, {"continue": new})
            elif rv_param in ("", "0") or rv_match == "NotOlderThan" or not rv_match:
                at = store.rv
                if rv_param not in ("", "0"):
                    wanted = _parse_rv(rv_param)
                    if not store.cond.wait_for(lambda: store.rv >= wanted, timeout=3):
                        raise ApiError(504, "Timeout", f"Too large resource version: {wanted}, current: {store.rv}",
                                       {"causes": [{"reason": "ResourceVersionTooLarge",
                                                    "message": "Too large resource version"}],
                                        "retryAfterSeconds": 1})
                    at = store.rv
            elif rv_match == "Exact":
                at = _parse_rv(rv_param)
                if at < store.compacted:
                    raise expired("The resourceVersion for the provided list is too old.")
                if at > store.rv:
                    raise ApiError(504, "Timeout", f"Too large resource version: {at}, current: {store.rv}",
                                   {"causes": [{"reason": "ResourceVersionTooLarge",
                                                "message": "Too large resource version"}],
                                    "retryAfterSeconds": 1})
            else:
                raise bad_request(f'resourceVersionMatch: Unsupported value: "{rv_match}": supported values: '
                                  f'"Exact", "NotOlderThan"')
            objs = store.state_at(res, at) if at != store.rv else dict(store.table(res))
            items = sorted(((sort_key(*k), o) for k, o in objs.items()), key=lambda kv: kv[0])
            items = [(k, copy.deepcopy(o)) for k, o in items if (start is None or k > start) and match(o)]
        meta = {"resourceVersion": str(at)}
        if limit > 0 and len(items) > limit:
            meta["continue"] = _encode_continue(at, items[limit - 1][0])
            if not self.params.get("labelSelector") and not self.params.get("fieldSelector"):
                meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        objs = [o for _, o in items]
        version = wants_table(self.headers.get("Accept"))
        if version:
            table = to_table(res, objs, meta, self.params.get("includeObject", "PartialObjectMetadata"), version)
            return self._send(200, table, f"application/json;as=Table;v={version};g=meta.k8s.io")
        if res.typed:
            for o in objs:
                o.pop("apiVersion", None)
                o.pop("kind", None)
        self._send(200, {"kind": f"{res.kind}List", "apiVersion": res.group_version, "metadata": meta,
                         "items": objs})

    # -- watch -------------------------------------------------------------

    def _watch(self, res, ns, name):
        store = self.store
        match = self._selectors(res, ns, name)
        rv_param = self.params.get("resourceVersion", "")
        bookmarks = self.params.get("allowWatchBookmarks") in ("true", "1")
        try:
            timeout = float(self.params.get("timeoutSeconds") or 1800)
        except ValueError:
            raise bad_request("invalid timeoutSeconds")
        table = wants_table(self.headers.get("Accept"))
        deadline = time.monotonic() + timeout
        with store.cond:
            epoch = store.watch_epoch
            if rv_param in ("", "0"):
                pos = store.rv
                initial = [("ADDED", copy.deepcopy(o)) for _, o in
                           sorted(store.table(res).items(), key=lambda kv: sort_key(*kv[0])) if match(o)]
            else:
                pos = _parse_rv(rv_param)
                initial = []
                if pos < store.compacted:
                    initial = None
                    gone = expired(f"too old resource version: {pos} ({store.compacted})").status()
            store.open_watches += 1
        try:
            self.send_response(200)
            ctype = f"application/json;as=Table;v={table};g=meta.k8s.io" if table else "application/json"
            self.send_header("Content-Type", ctype)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            if initial is None:
                self._chunk({"type": "ERROR", "object": gone})
                return self._end_chunks()
            for type_, obj in initial:
                self._event(res, type_, obj, table)
            last_bookmark = time.monotonic()
            while True:
                with store.cond:
                    while True:
                        if store.watch_epoch != epoch:
                            raise DropWatch()
                        if store.stopping:
                            return self._end_chunks()
                        if pos < store.compacted:
                            err = expired(f"too old resource version: {pos} ({store.compacted})").status()
                            break
                        err = None
                        if store.history_rvs and store.history_rvs[-1] > pos:
                            break
                        now = time.monotonic()
                        if now >= deadline or (bookmarks and now - last_bookmark >= self.bookmark_interval):
                            break
                        wake = deadline - now
                        if bookmarks:
                            wake = min(wake, self.bookmark_interval - (now - last_bookmark))
                        store.cond.wait(min(wake, 1.0))
                        if self._client_gone():
                            return
                    events = [] if err else list(store.events_after(pos))
                    if not err:
                        pos = store.rv
                if err:
                    self._chunk({"type": "ERROR", "object": err})
                    return self._end_chunks()
                for ev in events:
                    out = _filter_event(ev, res, match)
                    if out:
                        self._event(res, out[0], out[1], table)
                now = time.monotonic()
                if bookmarks and now - last_bookmark >= self.bookmark_interval:
                    meta = {"resourceVersion": str(pos)}
                    if res.typed:
                        meta["creationTimestamp"] = None
                    self._chunk({"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.group_version,
                                                                "metadata": meta}})
                    last_bookmark = now
                if now >= deadline:
                    return self._end_chunks()
        except DropWatch:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            raise
        finally:
            with store.cond:
                store.open_watches -= 1

    def _client_gone(self):
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _event(self, res, type_, obj, table):
        if table:
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            obj = to_table(res, [obj], meta, self.params.get("includeObject", "PartialObjectMetadata"), table)
        self._chunk({"type": type_, "object": obj})

    def _chunk(self, obj):
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")

    # -- writes ------------------------------------------------------------

    def _dry_run(self):
        return self.params.get("dryRun") == "All"

    def _check_type(self, res, body):
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        if not body.get("kind"):
            raise bad_request(f"Object 'Kind' is missing in '{json.dumps(body)[:200]}'")
        if body.get("apiVersion") != res.group_version:
            raise bad_request(f"the API version in the data ({body.get('apiVersion')}) does not match the "
                              f"expected API version ({res.group_version})")
        if body["kind"] != res.kind:
            raise bad_request(f"the kind in the data ({body['kind']}) does not match the expected kind ({res.kind})")
        if not isinstance(body.setdefault("metadata", {}), dict):
            raise bad_request("metadata must be an object")

    def _check_name(self, res, name):
        pattern = LABEL_RE if res.kind in ("Namespace", "Service") else NAME_RE
        if not pattern.match(name) or len(name) > (63 if pattern is LABEL_RE else 253):
            what = "RFC 1123 label" if pattern is LABEL_RE else "RFC 1123 subdomain"
            raise invalid(res, name, "metadata.name", name,
                          f"a lowercase {what} must consist of lower case alphanumeric characters, '-' or '.', "
                          f"and must start and end with an alphanumeric character")

    def _create(self, res, ns, body=None, code=201):
        body = self._json_body() if body is None else body
        self._check_type(res, body)
        meta = body["metadata"]
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789")
                                                              for _ in range(5))
            else:
                raise invalid(res, "", "metadata.name", "", "name or generateName is required")
        name = meta["name"]
        self._check_name(res, name)
        store = self.store
        with store.cond:
            if res.namespaced and ("", ns) not in store.table(NAMESPACES):
                raise not_found(NAMESPACES, ns)
            if (ns or "", name) in store.table(res):
                raise already_exists(res, name)
            for k in ("uid", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
                meta.pop(k, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if res.generation:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            _defaults(store, res, body, None)
            if self._dry_run():
                body["metadata"]["resourceVersion"] = ""
                out = body
            else:
                out = store.commit(res, "ADDED", body)
        self._out(res, out, code)

    def _update(self, res, ns, name, status=False):
        body = self._json_body()
        self._check_type(res, body)
        self._replace(res, ns, name, lambda old: body, status=status)

    def _replace(self, res, ns, name, make, create_missing=None, status=False):
        """Reads the object, builds its new state with `make(old)` and writes
        it: the path shared by PUT and PATCH, on the main endpoint or (with
        `status`) on the status subresource."""
        store = self.store
        with store.cond:
            old = store.table(res).get((ns or "", name))
            if old is None:
                if create_missing is not None:
                    return self._create(res, ns, create_missing, 201)
                raise not_found(res, name)
            new = make(copy.deepcopy(old))
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                raise bad_request("the patched object is not a Kubernetes object")
            self._check_type(res, new)
            meta = new["metadata"]
            if meta.get("name") != name:
                raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
            if res.namespaced:
                if meta.get("namespace", ns) != ns:
                    raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            old_meta = old["metadata"]
            if meta.get("resourceVersion") and meta["resourceVersion"] != old_meta["resourceVersion"]:
                raise conflict(res, name)
            if meta.get("uid") and meta["uid"] != old_meta["uid"]:
                raise conflict(res, name, f"Precondition failed: UID in precondition: {meta['uid']}, "
                                          f"UID in object meta: {old_meta['uid']}")
            for k in ("uid", "creationTimestamp", "resourceVersion", "generation", "deletionTimestamp"):
                if k in old_meta:
                    meta[k] = old_meta[k]
                else:
                    meta.pop(k, None)
            if status:
                # The status strategies of pods, services and namespaces:
                # everything but metadata and status stays as it was (spec);
                # pods also keep their ownerReferences. Labels and
                # annotations do change, as on a real server.
                for k in set(old) | set(new):
                    if k not in ("apiVersion", "kind", "metadata", "status"):
                        _keep(new, old, k)
                if res.kind == "Pod":
                    _keep(meta, old_meta, "ownerReferences")
            elif res.status_subresource:
                _keep(new, old, "status")
            _defaults(store, res, new, old)
            if res.generation:
                strip = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}
                if strip(new) != strip(old):
                    meta["generation"] = old_meta.get("generation", 0) + 1
            if new == old or self._dry_run():
                out = new  # a no-op write keeps the resourceVersion and makes no event
            else:
                out = store.commit(res, "MODIFIED", new, old)
        self._out(res, out)

    def _patch(self, res, ns, name, status=False):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype not in PATCH_TYPES:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format - accepted media types include: "
                           f"{', '.join(PATCH_TYPES)}", {})
        patch = self._json_body()
        if ctype == "application/json-patch+json":
            if not isinstance(patch, list):
                raise bad_request("json patch must be a list of operations")

            def make(old):
                try:
                    return json_patch(old, patch)
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}")
            return self._replace(res, ns, name, make, status=status)
        if not isinstance(patch, dict):
            raise bad_request("the patch must be a JSON object")
        if ctype == "application/apply-patch+yaml":
            # Server-side apply, reduced to: create when missing, else merge
            # the applied configuration in (fields the manager stops
            # applying are not removed; no managedFields, no conflicts).
            if not self.params.get("fieldManager"):
                raise invalid(res, name, "fieldManager", "", "is required for apply patch")
            self._check_type(res, patch)
            create = None
            if not status:  # applying to a missing object's status is 404
                create = copy.deepcopy(patch)
                create["metadata"].setdefault("name", name)
            return self._replace(res, ns, name, lambda old: json_merge_patch(old, patch), create_missing=create,
                                 status=status)
        merge = strategic_merge_patch if ctype == "application/strategic-merge-patch+json" else json_merge_patch
        return self._replace(res, ns, name, lambda old: merge(old, patch), status=status)

    def _delete(self, res, ns, name):
        opts = self._json_body(required=False) or {}
        pre = opts.get("preconditions") or {}
        store = self.store
        with store.cond:
            old = store.table(res).get((ns or "", name))
            if old is None:
                raise not_found(res, name)
            meta = old["metadata"]
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise conflict(res, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                                          f"UID in object meta: {meta['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise conflict(res, name, f"Precondition failed: ResourceVersion in precondition: "
                                          f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                          f"{meta['resourceVersion']}")
            if self._dry_run():
                out = copy.deepcopy(old)
            else:
                if res is NAMESPACES:
                    # The namespace controller's work, done at once.
                    for r in RESOURCES:
                        if r.namespaced:
                            for key in sorted(k for k in store.table(r) if k[0] == name):
                                store.commit(r, "DELETED", store.table(r)[key], store.table(r)[key])
                out = store.commit(res, "DELETED", old, old)
        if res.delete_returns_object:
            return self._send(200, out)
        self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {**_details(res, name), "uid": meta["uid"]}})

    def _delete_collection(self, res, ns):
        self._json_body(required=False)
        match = self._selectors(res, ns)
        store = self.store
        with store.cond:
            doomed = [o for _, o in sorted(store.table(res).items()) if match(o)]
            out = [copy.deepcopy(o) if self._dry_run() else store.commit(res, "DELETED", o, o) for o in doomed]
            rv = store.rv
        if res.typed:
            for o in out:
                o.pop("apiVersion", None)
                o.pop("kind", None)
        self._send(200, {"kind": f"{res.kind}List", "apiVersion": res.group_version,
                         "metadata": {"resourceVersion": str(rv)}, "items": out})


def _parse_rv(text):
    try:
        rv = int(text)
        if rv < 0:
            raise ValueError
        return rv
    except ValueError:
        raise bad_request(f'resourceVersion: Invalid value: "{text}": must be a non-negative integer') from None


def _encode_continue(rv, start):
    token = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00"}, separators=(",", ":"))
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def _filter_event(ev, res, match):
    """What a watcher with selector `match` sees of `ev` (the watch cache's
    rule: an object that starts or stops matching is ADDED or DELETED)."""
    if ev.res is not res:
        return None
    if ev.type == "ADDED":
        return ("ADDED", copy.deepcopy(ev.obj)) if match(ev.obj) else None
    if ev.type == "DELETED":
        return ("DELETED", copy.deepcopy(ev.obj)) if match(ev.obj) else None
    now, before = match(ev.obj), match(ev.prev)
    if now and before:
        return "MODIFIED", copy.deepcopy(ev.obj)
    if now:
        return "ADDED", copy.deepcopy(ev.obj)
    if before:
        gone = copy.deepcopy(ev.prev)
        gone["metadata"]["resourceVersion"] = str(ev.rv)
        return "DELETED", gone
    return None


def _keep(new, old, key):
    """Sets new[key] back to old[key] (or removes it when old has none)."""
    if key in old:
        new[key] = copy.deepcopy(old[key])
    else:
        new.pop(key, None)


def _defaults(store, res, obj, old):
    """The few defaults a real server fills in that clients rely on."""
    if res.kind == "Namespace":
        meta = obj["metadata"]
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        if old is None:
            obj["status"] = {"phase": "Active"}
    elif res.kind == "Pod" and old is None:
        obj["status"] = {"phase": "Pending"}
    elif res.kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        old_spec = (old or {}).get("spec") or {}
        if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
            if old_spec.get("clusterIP"):
                spec["clusterIP"] = old_spec["clusterIP"]
            else:
                n = store.next_cluster_ip
                store.next_cluster_ip += 1
                spec["clusterIP"] = f"10.96.{n // 256}.{n % 256}"
        if spec.get("clusterIP") and spec["clusterIP"] != "None":
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
        if old is None:
            obj["status"] = {"loadBalancer": {}}


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def kubeconfig_text(url, token):
    return f"""apiVersion: v1
kind: Config
clusters:
- name: causeway-double
  cluster:
    server: {url}
users:
- name: causeway-double
  user:
    token: {token}
contexts:
- name: causeway-double
  context:
    cluster: causeway-double
    user: causeway-double
    namespace: default
current-context: causeway-double
preferences: {{}}
"""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class Server6(Server):
    address_family = socket.AF_INET6


def main(argv=None):
    ap = argparse.ArgumentParser(description="A Kubernetes API server test DOUBLE (not a real API server).")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to bind (port 0 picks one); default %(default)s")
    ap.add_argument("--kubeconfig", help="write a kubeconfig for this server to PATH")
    ap.add_argument("--token", default=None, help="bearer token put in the kubeconfig (random by default)")
    ap.add_argument("--bookmark-interval", type=float, default=5.0,
                    help="seconds between BOOKMARK events on watches that allow them; default %(default)s")
    ap.add_argument("--history-limit", type=int, default=100000,
                    help="events kept for watches and continue tokens before older ones are compacted")
    ap.add_argument("--no-aggregated-discovery", action="store_true",
                    help="answer /api and /apis only in the plain (non-aggregated) form")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)

    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    server = (Server6 if ":" in host else Server)((host, int(port)), Handler)
    bound_port = server.server_address[1]
    url_host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        url_host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    url = f"http://{url_host}:{bound_port}"

    store = Store(history_limit=args.history_limit)
    Handler.store = store
    Handler.token = args.token or secrets.token_hex(16)
    Handler.bookmark_interval = args.bookmark_interval
    Handler.aggregated = not args.no_aggregated_discovery
    Handler.verbose = args.verbose
    # The namespaces every cluster starts with.
    with store.cond:
        for ns in ("default", "kube-node-lease", "kube-public", "kube-system"):
            obj = {"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": ns, "uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339()}}
            _defaults(store, NAMESPACES, obj, None)
            store.commit(NAMESPACES, "ADDED", obj)

    if args.kubeconfig:
        with open(args.kubeconfig, "w") as f:
            f.write(kubeconfig_text(url, Handler.token))

    def stop(_signum, _frame):
        with store.cond:
            store.stopping = True
            store.cond.notify_all()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on {url}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
