#!/usr/bin/env python3
"""Regenerates `src/protobuf/schema.txt`, the field table the protobuf decoder walks.

Rerun (from crates/skiff-api, after any build that fetched the two crates,
e.g. `cargo test` of the protobuf module, which uses k8s-pb as a dev-dependency):

    python3 tools/gen_protobuf_schema.py > src/protobuf/schema.txt

or name the crates' `src` folders explicitly:

    python3 tools/gen_protobuf_schema.py K8S_PB_SRC K8S_OPENAPI_SRC > src/protobuf/schema.txt

Inputs: only the sources of the `k8s-pb` and `k8s-openapi` crates as cargo
keeps them under ~/.cargo/registry/src. Nothing else is read and nothing is
fetched. Notes on what it could not settle go to stderr.

Why a generated table: the wire format only carries field numbers, so decoding
into JSON needs, per message, the number -> (JSON name, wire type, nested
message) mapping. `k8s-pb` has numbers and types (in its prost attributes) but
no JSON names and no reflection; `k8s-openapi` has the exact JSON names (in its
serde code). This script joins the two, so the runtime needs neither crate.

Zero scalars. A Go client writes every non-pointer scalar to the wire, zero or
not, while Go's JSON for the same object leaves out the zeros of optional
(`omitempty`) fields; a pointer field, in contrast, is written only when set,
and then its zero is meaningful. Neither crate says which fields are pointers
(k8s-pb declares every scalar `optional`), so the table marks a scalar `k`
(keep a zero that is on the wire) by these rules:

  1. The field is required in k8s-openapi (a plain, non-`Option` Rust type; it
     serialises it always, zero or not): keep.
  2. Otherwise it is optional. Strings and bytes: drop the empty value.
  3. Optional numbers and booleans: keep the zero only when the field's own
     documentation (k8s-pb's doc comments) shows that leaving it out means
     something else than zero:
       - it names a default that is not the zero value ("Defaults to 1",
         "Default is true", "+default=10"), and no zero default;
       - or it calls the field a pointer, or speaks of it being nil or null.
     A field with no documentation at all is judged by k8s-openapi's own
     model (an `Option` that is present is set): keep.
     Anything else (including "Defaults to 0"/"false") drops the zero,
     which cannot change meaning when absent and zero mean the same.

k8s-openapi carries several Kubernetes releases whose required fields
differ; the release whose structs have the same fields as k8s-pb's is read
first (1.35 for k8s-pb 0.9), the nearest others stand in for what it lacks.
When no release has the struct (types of older group versions, options
types, admission reviews), the same struct name in another version of the
same group stands in, then a struct of that name elsewhere if there is
exactly one; failing both, k8s-pb's `+optional`/`+required` markers decide
(unmarked fields count as required, as the Kubernetes OpenAPI generator
counts them).

These rules are a best reading, not Go's exact behaviour: a pointer field
whose documentation says nothing of its unset state loses an explicit zero
(e.g. `automountServiceAccountToken: false`), and a plain field documented
with a non-zero default keeps a zero a Go client wrote for "unset" (e.g.
`Probe.periodSeconds: 0`).

Message fields need no flag: the decoder prints whatever message is on the
wire, a zero time as null, as Go prints a non-pointer struct field.

Output lines:
  M <message>                      starts a message
  F <tag> <json> <type> [flags]    a field (json `-`: inlined into the parent); type is one of
        s i32 i64 b y d            string, int32, int64, bool, bytes, double
        m:<message>                a nested message
      prefixed by `*` when repeated, or `{` for a map with string keys;
      flags: `k` keep a zero scalar (absent: a zero scalar is dropped).
  K <apiVersion> <Kind> <message>  a kind carried in runtime.Unknown
                                   (apiVersion `*` matches every group version)
"""

import glob
import os
import re
import sys

HOME = os.path.expanduser("~")


def crate_src(name, arg_index):
    if len(sys.argv) > arg_index:
        return sys.argv[arg_index]
    found = sorted(glob.glob(f"{HOME}/.cargo/registry/src/*/{name}/src"))
    if not found:
        sys.exit(f"cannot find {name} in the cargo registry")
    return found[-1]


PB = crate_src("k8s-pb-0.9.0", 1)
OPENAPI = crate_src("k8s-openapi-0.29.0", 2)

# Module directory (under k8s-pb/src) -> API group; the version is the last segment.
GROUPS = {
    "api/core": "",
    "api/apps": "apps",
    "api/batch": "batch",
    "api/autoscaling": "autoscaling",
    "api/policy": "policy",
    "api/extensions": "extensions",
    "api/networking": "networking.k8s.io",
    "api/rbac": "rbac.authorization.k8s.io",
    "api/storage": "storage.k8s.io",
    "api/authentication": "authentication.k8s.io",
    "api/authorization": "authorization.k8s.io",
    "api/certificates": "certificates.k8s.io",
    "api/coordination": "coordination.k8s.io",
    "api/discovery": "discovery.k8s.io",
    "api/events": "events.k8s.io",
    "api/flowcontrol": "flowcontrol.apiserver.k8s.io",
    "api/node": "node.k8s.io",
    "api/scheduling": "scheduling.k8s.io",
    "api/resource": "resource.k8s.io",
    "api/admissionregistration": "admissionregistration.k8s.io",
    "api/apiserverinternal": "internal.apiserver.k8s.io",
    "api/storagemigration": "storagemigration.k8s.io",
    "api/admission": "admission.k8s.io",
    "api/imagepolicy": "imagepolicy.k8s.io",
    "api/apidiscovery": "apidiscovery.k8s.io",
    "apiextensions_apiserver/pkg/apis/apiextensions": "apiextensions.k8s.io",
    "kube_aggregator/pkg/apis/apiregistration": "apiregistration.k8s.io",
    "metrics/pkg/apis/metrics": "metrics.k8s.io",
    "metrics/pkg/apis/custom_metrics": "custom.metrics.k8s.io",
    "metrics/pkg/apis/external_metrics": "external.metrics.k8s.io",
}

# Kinds of meta/v1 that every group version accepts (upstream registers them
# everywhere, e.g. DeleteOptions in an Eviction or a delete body).
META_KINDS = [
    "DeleteOptions", "CreateOptions", "UpdateOptions", "PatchOptions",
    "GetOptions", "ListOptions", "Status", "WatchEvent", "APIGroup",
    "APIGroupList", "APIResourceList", "APIVersions", "PartialObjectMetadata",
    "PartialObjectMetadataList",
]

SKIP_DIRS = ("apimachinery/pkg/apis/testapigroup",)

SCALARS = {"string": "s", "int32": "i32", "int64": "i64", "bool": "b", "double": "d", "bytes": "y"}


def short_package(mod):
    """A short unique package name: the last two module segments."""
    parts = mod.split("/")
    return ".".join(parts[-2:])


def version_rank(version):
    """Sort key preferring stable over beta over alpha, newer numbers first."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (0, 0, 0)
    stage = {"alpha": 1, "beta": 2, None: 3}[m.group(2)]
    return (stage, int(m.group(1)), int(m.group(3) or 0))


class OpenApi:
    """What k8s-openapi knows of each struct: JSON names and which fields are required.

    k8s-openapi carries several Kubernetes releases, and which fields are
    required shifts between them, so required-ness is read from the release
    that k8s-pb was generated from (the one whose structs have the same fields
    as k8s-pb's), other releases standing in for structs and fields it lacks.
    """

    def __init__(self):
        # (lowercase module, lowercase struct) -> {rust field: json name}
        self.names = {}
        # release -> (lowercase module, lowercase struct) -> {json name: required}
        self.releases = {}
        # lowercase struct -> set of lowercase modules holding it
        self.modules_of = {}
        self.global_names = {}
        for version_dir in sorted(glob.glob(f"{OPENAPI}/v1_*"), key=release_number):
            release = self.releases.setdefault(release_number(version_dir), {})
            for path in glob.glob(f"{version_dir}/**/*.rs", recursive=True):
                rel = os.path.relpath(os.path.dirname(path), version_dir).lower()
                text = open(path).read()
                names = dict(
                    (rust, json)
                    for json, rust in re.findall(r'"([^"]+)" => Field::Key_(\w+),', text)
                )
                for struct, body in re.findall(r"^pub struct (\w+) \{\n(.*?)^\}", text, re.S | re.M):
                    key = (rel, struct.lower())
                    self.modules_of.setdefault(struct.lower(), set()).add(rel)
                    if names:
                        self.names.setdefault(key, {}).update(names)
                        for rust, json in names.items():
                            self.global_names.setdefault(rust, json)
                    required = release.setdefault(key, {})
                    for rust, rust_type in re.findall(r"^    pub (?:r#)?(\w+): (.*),$", body, re.M):
                        required[names.get(rust, rust)] = not rust_type.startswith("Option<")
        self.order = list(self.releases)

    def match_release(self, pb_structs):
        """Puts first the release whose structs have exactly k8s-pb's fields most often.

        `pb_structs` maps (lowercase module, lowercase struct) to k8s-pb's set of
        normalised field names.
        """
        def score(release):
            fields = self.releases[release]
            return sum(
                1 for key, names in pb_structs.items()
                if key in fields and {norm(n) for n in fields[key]} == names
            )
        best = max(self.order, key=lambda r: (score(r), r))
        # Then the nearest releases, older before newer at the same distance.
        self.order = sorted(self.order, key=lambda r: (abs(r - best), r > best))
        return best

    def required(self, mod, struct, json):
        """Whether k8s-openapi makes field `json` of k8s-pb's `mod`/`struct` required.

        Looks for the struct in the same module, then in another version of the
        group (stable first), then anywhere if only one module has it; None
        when no release knows the field.
        """
        struct = struct.lower()
        keys = [(mod.lower(), struct)]
        group = "/".join(mod.lower().split("/")[:-1])
        in_group = [m for m in self.modules_of.get(struct, ()) if m.rsplit("/", 1)[0] == group]
        keys += [(m, struct) for m in sorted(in_group, key=lambda m: version_rank(m.rsplit("/", 1)[1]), reverse=True)]
        anywhere = self.modules_of.get(struct, set())
        if len(anywhere) == 1:
            keys.append((next(iter(anywhere)), struct))
        for key in keys:
            for release in self.order:
                fields = self.releases[release].get(key)
                if fields is not None and json in fields:
                    return fields[json]
        return None


def release_number(version_dir):
    """`.../v1_35` -> 35."""
    return int(version_dir.rsplit("_", 1)[1])


# Fields whose JSON name no k8s-openapi struct spells (types it does not carry).
OVERRIDES = {
    "core.v1.PodLogOptions.insecure_skip_tls_verify_backend": "insecureSkipTLSVerifyBackend",
    "apiextensions.v1.ConversionRequest.desired_api_version": "desiredAPIVersion",
    "apiextensions.v1beta1.ConversionRequest.desired_api_version": "desiredAPIVersion",
    "apiextensions.v1.JsonSchemaProps.ref": "$ref",
    "apiextensions.v1.JsonSchemaProps.schema": "$schema",
    "apiextensions.v1beta1.JsonSchemaProps.ref": "$ref",
    "apiextensions.v1beta1.JsonSchemaProps.schema": "$schema",
}


inlined = []

# Embedded structs of types k8s-openapi does not carry, so the rule in
# json_name cannot find them.
INLINE = {
    "extensions.v1beta1.IngressRule.ingress_rule_value",
    "networking.v1beta1.IngressRule.ingress_rule_value",
}


def norm(name):
    return name.replace("_", "").replace("-", "").lower()


def json_name(pkg, struct, rust, names, global_names, unresolved, is_message):
    """Exact JSON name of a k8s-pb field, from k8s-openapi where it can be found."""
    if f"{pkg}.{struct}.{rust}" in INLINE:
        inlined.append(f"{pkg}.{struct}.{rust}")
        return "-"
    override = OVERRIDES.get(f"{pkg}.{struct}.{rust}")
    if override:
        return override
    if rust in names:
        return names[rust]
    # Same field, spelled differently by the two generators (e.g. `u_id` / `uid`).
    for json in names.values():
        if norm(json) == norm(rust):
            return json
    if names and is_message:
        # k8s-openapi knows the struct but not this field: Go embeds the field's
        # struct with `json:",inline"`, so its fields sit in the parent's JSON.
        inlined.append(f"{pkg}.{struct}.{rust}")
        return "-"
    if rust in global_names:
        return global_names[rust]
    for json in global_names.values():
        if norm(json) == norm(rust) and not json.startswith("$"):
            return json
    unresolved.append(f"{pkg}.{struct}.{rust} -> {camel(rust)}")
    return camel(rust)


def camel(rust):
    head, *rest = rust.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def resolve(mod, rust_type):
    """Resolves a prost type path, relative to module `mod`, to `package.Message`."""
    rust_type = rust_type.strip()
    if rust_type.startswith("::prost::alloc::boxed::Box<"):
        rust_type = rust_type[len("::prost::alloc::boxed::Box<"):-1]
    parts = rust_type.split("::")
    base = mod.split("/")
    while parts and parts[0] == "super":
        base = base[:-1]
        parts = parts[1:]
    target_mod = "/".join(base + parts[:-1])
    return f"{short_package(target_mod)}.{parts[-1]}"


def field_type(mod, attr, rust_type):
    rust_type = re.sub(r"\s+", "", rust_type).rstrip(",").replace(",>", ">")
    kind = attr.split(",")[0].strip()
    if kind.startswith("btree_map") or kind.startswith("map"):
        value = attr.split('"')[1].split(",")[1].strip()
        if value == "message":
            inner = re.match(r".*BTreeMap<::prost::alloc::string::String,(.*)>$", rust_type).group(1)
            return "{m:" + resolve(mod, inner)
        return "{" + SCALARS[value]
    if kind.startswith("bytes"):
        kind = "bytes"
    repeated = "repeated" in attr
    if kind == "message":
        inner = rust_type
        for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<"):
            if inner.startswith(wrapper):
                inner = inner[len(wrapper):-1]
        ty = "m:" + resolve(mod, inner)
    else:
        ty = SCALARS[kind]
    return ("*" if repeated else "") + ty


def prost_fields(body):
    """(doc lines, prost attribute, rust name, rust type) of each field of a struct body."""
    fields = []
    docs = []
    lines = body.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if line.startswith("///"):
            docs.append(line[3:].strip())
            continue
        attr = re.fullmatch(r"#\[prost\((.*)\)\]", line)
        if not attr:
            if not line.startswith("#["):
                docs = []
            continue
        decl = ""
        while i < len(lines):
            decl += " " + lines[i].strip()
            i += 1
            if decl.endswith(",") and decl.count("<") == decl.count(">"):
                break
        m = re.fullmatch(r"\s*pub (?:r#)?(\w+):\s*(.*),", decl)
        fields.append((docs, attr.group(1), m.group(1), m.group(2)))
        docs = []
    return fields


ZERO_DEFAULTS = {"0", "0s", "zero", "false", "empty", "nil", "null", "none", "unset", '""', "''"}
DEFAULT_RE = re.compile(
    r"(?:\bdefaults?(?:\s+value)?(?:\s+(?:to|is|of))?\s*[:=]?|\bdefaulted\s+to|\+default=)\s*[`\"']?(\"\"|[\w.-]+)",
    re.I,
)


def zero_is_meaningful(docs, scalar):
    """Rule 3: whether a number's or boolean's documentation shows that absent is not zero."""
    text = " ".join(docs)
    if not text.strip():
        return True
    defaults = [m.group(1).lower().rstrip(".") for m in DEFAULT_RE.finditer(text)]
    if scalar == "b":
        non_zero = [v for v in defaults if v == "true"]
    else:
        non_zero = [v for v in defaults if re.fullmatch(r"-?\d+\w*", v) and not re.fullmatch(r"0+\w*", v)]
    if any(v in ZERO_DEFAULTS for v in defaults) and not non_zero:
        return False
    if non_zero:
        return True
    if re.search(r"\bpointer\b", text, re.I):
        return True
    return bool(re.search(r"(?<!non-)\b(nil|null)\b", text))


def marked_required(docs):
    """Fallback when k8s-openapi lacks the struct: k8s-pb's markers, unmarked counting as required."""
    markers = {word for line in docs for word in line.split() if word.startswith("+")}
    if "+required" in markers or "+k8s:required" in markers:
        return True
    return "+optional" not in markers and "+k8s:optional" not in markers


def main():
    openapi = OpenApi()
    pb_structs = {}
    for path in glob.glob(f"{PB}/**/mod.rs", recursive=True):
        mod = os.path.relpath(os.path.dirname(path), PB).lower()
        for name, body in re.findall(r"pub struct (\w+) \{(\}|.*?\n\})", open(path).read(), re.S):
            pb_structs[(mod, name.lower())] = {norm(f[2]) for f in prost_fields(body)}
    release = openapi.match_release(pb_structs)
    out = []
    kinds = []
    unresolved = []
    guessed = set()
    seen_packages = {}
    for path in sorted(glob.glob(f"{PB}/**/mod.rs", recursive=True)):
        mod = os.path.relpath(os.path.dirname(path), PB)
        if mod.startswith(SKIP_DIRS):
            continue
        text = open(path).read()
        # `{}` alone is an empty message; otherwise the body runs to the closing brace.
        structs = re.findall(r"pub struct (\w+) \{(\}|.*?\n\})", text, re.S)
        if not structs:
            continue
        pkg = short_package(mod)
        if seen_packages.setdefault(pkg, mod) != mod:
            sys.exit(f"package name clash: {pkg}")
        group_dir = "/".join(mod.split("/")[:-1])
        version = mod.split("/")[-1]
        group = GROUPS.get(group_dir)
        for name, body in structs:
            out.append(f"M {pkg}.{name}")
            names = openapi.names.get((mod.lower(), name.lower()), {})
            has_object_meta = False
            for docs, attr, rust, ty in prost_fields(body):
                tag = re.search(r'tag = "(\d+)"', attr).group(1)
                json = json_name(pkg, name, rust, names, openapi.global_names, unresolved, "message" in attr)
                ftype = field_type(mod, attr, ty)
                if rust == "metadata" and ftype.endswith(("meta.v1.ObjectMeta", "meta.v1.ListMeta")):
                    has_object_meta = True
                line = f"F {tag} {json} {ftype}"
                if ftype in ("s", "i32", "i64", "b", "d", "y"):
                    is_required = openapi.required(mod, name, json)
                    if is_required is None:
                        guessed.add(f"{pkg}.{name}.{json}")
                        is_required = marked_required(docs)
                    if is_required or (ftype not in ("s", "y") and zero_is_meaningful(docs, ftype)):
                        line += " k"
                out.append(line)
            if group is not None and has_object_meta and not name.endswith("Spec"):
                api_version = f"{group}/{version}" if group else version
                kinds.append(f"K {api_version} {name} {pkg}.{name}")
    for kind in META_KINDS:
        kinds.append(f"K * {kind} meta.v1.{kind}")
    print("# generated by tools/gen_protobuf_schema.py from the k8s-pb and k8s-openapi crates; do not edit")
    print("\n".join(out))
    print("\n".join(kinds))
    for line in inlined:
        print(f"inlined: {line}", file=sys.stderr)
    for line in unresolved:
        print(f"unresolved json name: {line}", file=sys.stderr)
    print(f"required-ness from k8s-openapi release 1.{release} first", file=sys.stderr)
    for line in sorted(guessed):
        print(f"required-ness from doc markers: {line}", file=sys.stderr)


main()
