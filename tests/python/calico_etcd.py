#!/usr/bin/env python3
"""Writes Calico v3 resources into etcd the way calicoctl (etcdv3 datastore) does.

libcalico-go's etcdv3 backend keeps each resource at
  /calico/resources/v3/projectcalico.org/<plural>/<name>              (cluster-wide kinds)
  /calico/resources/v3/projectcalico.org/<plural>/<namespace>/<name>  (namespaced kinds)
with the whole v3 object as JSON (no resourceVersion: that is the key's
ModRevision), a create as a transaction "if CreateRevision(key) == 0 then put",
an update as "if ModRevision(key) == rev then put", a delete as "if
ModRevision(key) == rev then delete". This script does the same through
etcd's gRPC-JSON gateway (/v3/kv/*), with the standard library only, so the
tests and the demo need neither calicoctl nor a Go toolchain.

  calico_etcd.py [--endpoint URL] apply FILE.json|-     create or update each object (a JSON object or a List)
  calico_etcd.py [--endpoint URL] delete KIND NAME [NAMESPACE]
  calico_etcd.py [--endpoint URL] put-raw KEY VALUE      write bytes as they are (tests of bad input)
  calico_etcd.py [--endpoint URL] compact                compact to the current revision
  calico_etcd.py [--endpoint URL] churn KIND NAME N [NAMESPACE]
      N updates in a row of one resource, flipping metadata.labels.churn; prints the last value
"""
import argparse
import base64
import datetime
import json
import sys
import urllib.request
import uuid

PREFIX = "/calico/resources/v3/projectcalico.org/"
PLURALS = {
    "GlobalNetworkPolicy": "globalnetworkpolicies",
    "NetworkPolicy": "networkpolicies",
    "Tier": "tiers",
    "GlobalNetworkSet": "globalnetworksets",
    "NetworkSet": "networksets",
    "WorkloadEndpoint": "workloadendpoints",
    "HostEndpoint": "hostendpoints",
    "Profile": "profiles",
}
NAMESPACED = {"NetworkPolicy", "NetworkSet", "WorkloadEndpoint"}


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


class Etcd:
    def __init__(self, endpoint):
        self.endpoint = endpoint.rstrip("/")

    def call(self, path, body):
        req = urllib.request.Request(self.endpoint + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def mod_revision(self, key):
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        return int(kvs[0]["mod_revision"]) if kvs else 0

    def txn(self, compare, success):
        r = self.call("/v3/kv/txn", {"compare": [compare], "success": [success]})
        return bool(r.get("succeeded")), int(r["header"]["revision"])


def key_of(kind, name, namespace=None):
    if kind not in PLURALS:
        sys.exit(f"calico_etcd: unknown kind {kind}")
    if kind in NAMESPACED:
        return f"{PREFIX}{PLURALS[kind]}/{namespace or 'default'}/{name}"
    return f"{PREFIX}{PLURALS[kind]}/{name}"


def stored(obj, existing_meta=None):
    """The object as calicoctl stores it: server-set metadata, no resourceVersion."""
    obj = json.loads(json.dumps(obj))
    meta = obj.setdefault("metadata", {})
    meta.pop("resourceVersion", None)
    if obj["kind"] in NAMESPACED:
        meta.setdefault("namespace", "default")
    base = existing_meta or {}
    meta["uid"] = base.get("uid") or str(uuid.uuid4())
    meta["creationTimestamp"] = base.get("creationTimestamp") or \
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj["apiVersion"] = "projectcalico.org/v3"
    return obj


def apply(etcd, obj):
    meta = obj["metadata"]
    key = key_of(obj["kind"], meta["name"], meta.get("namespace"))
    for _ in range(5):
        kvs = etcd.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        if kvs:
            rev = int(kvs[0]["mod_revision"])
            old = json.loads(base64.b64decode(kvs[0]["value"]))
            value = json.dumps(stored(obj, old.get("metadata")), separators=(",", ":"))
            ok, at = etcd.txn({"target": "MOD", "key": b64(key), "mod_revision": str(rev)},
                              {"request_put": {"key": b64(key), "value": b64(value)}})
            verb = "configured"
        else:
            value = json.dumps(stored(obj), separators=(",", ":"))
            ok, at = etcd.txn({"target": "CREATE", "key": b64(key), "create_revision": "0"},
                              {"request_put": {"key": b64(key), "value": b64(value)}})
            verb = "created"
        if ok:
            print(f"{obj['kind']}/{meta['name']} {verb} (revision {at})")
            return at
    sys.exit(f"calico_etcd: {key} kept changing under us")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", default="http://127.0.0.1:2379")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("apply"); a.add_argument("file")
    d = sub.add_parser("delete"); d.add_argument("kind"); d.add_argument("name"); d.add_argument("namespace", nargs="?")
    r = sub.add_parser("put-raw"); r.add_argument("key"); r.add_argument("value")
    sub.add_parser("compact")
    c = sub.add_parser("churn"); c.add_argument("kind"); c.add_argument("name"); c.add_argument("n", type=int)
    c.add_argument("namespace", nargs="?")
    args = p.parse_args()
    etcd = Etcd(args.endpoint)
    if args.cmd == "apply":
        text = sys.stdin.read() if args.file == "-" else open(args.file).read()
        doc = json.loads(text)
        for obj in doc["items"] if doc.get("kind") == "List" else [doc]:
            apply(etcd, obj)
    elif args.cmd == "delete":
        key = key_of(args.kind, args.name, args.namespace)
        rev = etcd.mod_revision(key)
        if not rev:
            sys.exit(f"calico_etcd: {args.kind}/{args.name} not found")
        ok, at = etcd.txn({"target": "MOD", "key": b64(key), "mod_revision": str(rev)},
                          {"request_delete_range": {"key": b64(key)}})
        print(f"{args.kind}/{args.name} deleted (revision {at})" if ok else "conflict")
    elif args.cmd == "put-raw":
        r = etcd.call("/v3/kv/put", {"key": b64(args.key), "value": b64(args.value)})
        print(f"put (revision {r['header']['revision']})")
    elif args.cmd == "compact":
        rev = int(etcd.call("/v3/kv/range", {"key": b64("/"), "limit": 1})["header"]["revision"])
        etcd.call("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        print(f"compacted at revision {rev}")
    elif args.cmd == "churn":
        key = key_of(args.kind, args.name, args.namespace)
        kvs = etcd.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        if not kvs:
            sys.exit(f"calico_etcd: {key} not found")
        obj = json.loads(base64.b64decode(kvs[0]["value"]))
        rev = int(kvs[0]["mod_revision"])
        last = None
        for i in range(args.n):
            obj.setdefault("metadata", {}).setdefault("labels", {})["churn"] = str(i)
            value = json.dumps(obj, separators=(",", ":"))
            ok, rev = etcd.txn({"target": "MOD", "key": b64(key), "mod_revision": str(rev)},
                               {"request_put": {"key": b64(key), "value": b64(value)}})
            if not ok:
                sys.exit(f"calico_etcd: {key} changed under the churn")
            last = str(i)
        print(last)


if __name__ == "__main__":
    main()
