//! End-to-end, real kubectl: a CustomResourceDefinition (schema, printer columns, status and
//! scale subresources, short names, categories) and its custom resources.

mod kubectl_common;

use kubectl_common::{cluster, fails_stdin, get_opt, ok_stdin, poll, scratch, write};
use skiff_testkit::Cluster;

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    listKind: WidgetList
    shortNames: [wd]
    categories: [all, gadgets]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A widget for the e2e suite.
        properties:
          spec:
            type: object
            description: What the widget should be.
            properties:
              size:
                type: integer
                minimum: 1
                description: How big the widget is.
              color:
                type: string
                default: blue
                enum: [blue, red, green]
              replicas:
                type: integer
            required: [size]
          status:
            type: object
            properties:
              phase:
                type: string
              replicas:
                type: integer
              selector:
                type: string
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Phase
      type: string
      jsonPath: .status.phase
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"#;

fn install(c: &Cluster) {
    let dir = scratch(c, "crd");
    let f = write(&dir, "crd.yaml", CRD);
    assert_eq!(c.ok(&["apply", "-f", &f]).unwrap().trim(), "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created");
    c.ok(&["wait", "crd/widgets.example.com", "--for=condition=Established", "--timeout=10s"]).unwrap();
}

fn widget(name: &str, spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// The cells of the row for `name` in a table.
fn row(table: &str, name: &str) -> Vec<String> {
    table.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("{name} not in:\n{table}")).split_whitespace().map(str::to_string).collect()
}

#[test]
fn crd_and_custom_resources() {
    let c = cluster();
    install(&c);
    let crd = c.json(&["get", "crd", "widgets.example.com"]).unwrap();
    let conds = crd["status"]["conditions"].as_array().unwrap();
    assert!(conds.iter().any(|c| c["type"] == "Established" && c["status"] == "True"), "{conds:?}");
    assert!(conds.iter().any(|c| c["type"] == "NamesAccepted" && c["status"] == "True"), "{conds:?}");
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    let crds = c.ok(&["get", "crd"]).unwrap();
    assert!(crds.starts_with("NAME") && crds.contains("CREATED AT") && crds.contains("widgets.example.com"), "{crds}");

    // Discovery: api-resources shows the short name, kind and verbs; api-versions the group.
    let res = c.ok(&["api-resources", "--api-group=example.com", "-o", "wide"]).unwrap();
    let r = row(&res, "widgets");
    assert_eq!(r[1..5], ["wd", "example.com/v1", "true", "Widget"].map(String::from), "{res}");
    assert!(res.contains("gadgets") && res.contains("all"), "categories: {res}");
    assert!(c.ok(&["api-versions"]).unwrap().lines().any(|l| l == "example.com/v1"));

    // Create and get with printer columns.
    ok_stdin(&c, &["apply", "-f", "-"], &widget("w1", "  size: 3\n  color: red\n  replicas: 1\n"));
    ok_stdin(&c, &["create", "-f", "-"], &widget("w2", "  size: 5\n  color: green\n"));
    let table = c.ok(&["get", "widgets"]).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "COLOR", "PHASE", "AGE"], "{table}");
    let r = row(&table, "w1");
    assert_eq!(r[1..3], ["3", "red"].map(String::from), "{table}");
    // Short name, singular, fully qualified, kind; categories.
    for name in ["wd", "widget", "widgets.example.com", "widgets.v1.example.com", "Widget"] {
        let out = c.ok(&["get", name, "-o", "name"]).unwrap();
        assert_eq!(out.lines().collect::<Vec<_>>(), ["widget.example.com/w1", "widget.example.com/w2"], "{name}: {out}");
    }
    assert!(c.ok(&["get", "gadgets", "-o", "name"]).unwrap().contains("widget.example.com/w1"));
    let all = c.ok(&["get", "all"]).unwrap();
    assert!(all.contains("widget.example.com/w1") && all.contains("service/kubernetes"), "{all}");
    let wide = c.ok(&["get", "wd", "w2", "-o", "wide"]).unwrap();
    assert!(wide.contains("green"), "{wide}");
    let cr = c.json(&["get", "wd", "w1"]).unwrap();
    assert_eq!(cr["apiVersion"], "example.com/v1");
    assert_eq!(cr["kind"], "Widget");
    assert_eq!(cr["metadata"]["generation"], 1);

    // patch --type=merge bumps generation.
    c.ok(&["patch", "wd", "w1", "--type=merge", "-p", r#"{"spec":{"color":"blue"}}"#]).unwrap();
    let cr = c.json(&["get", "wd", "w1"]).unwrap();
    assert_eq!(cr["spec"]["color"], "blue");
    assert_eq!(cr["metadata"]["generation"], 2);
    // JSON patch works too; strategic merge does not apply to custom resources (415).
    c.ok(&["patch", "wd", "w1", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/size","value":4}]"#]).unwrap();
    assert_eq!(c.json(&["get", "wd", "w1"]).unwrap()["spec"]["size"], 4);
    let e = c.fails(&["patch", "wd", "w1", "--type=strategic", "-p", r#"{"spec":{"size":6}}"#]).unwrap();
    assert!(e.contains("application/strategic-merge-patch+json is not supported"), "{e}");
    // Labels and label selectors.
    c.ok(&["label", "wd", "w2", "tier=gold"]).unwrap();
    assert_eq!(c.ok(&["get", "wd", "-l", "tier=gold", "-o", "name"]).unwrap().trim(), "widget.example.com/w2");
    assert_eq!(c.ok(&["get", "wd", "--field-selector", "metadata.name=w1", "-o", "name"]).unwrap().trim(), "widget.example.com/w1");

    // The status subresource: status through it only; it does not bump generation.
    c.ok(&["patch", "wd", "w1", "--type=merge", "-p", r#"{"status":{"phase":"Sneaky"}}"#]).unwrap();
    assert!(c.json(&["get", "wd", "w1"]).unwrap().get("status").is_none());
    c.ok(&["patch", "wd", "w1", "--subresource=status", "--type=merge", "-p", r#"{"status":{"phase":"Ready","replicas":1,"selector":"app=w1"}}"#]).unwrap();
    let cr = c.json(&["get", "wd", "w1"]).unwrap();
    assert_eq!(cr["status"]["phase"], "Ready");
    assert_eq!(cr["metadata"]["generation"], 3);
    assert_eq!(row(&c.ok(&["get", "wd"]).unwrap(), "w1")[3], "Ready", "PHASE column");
    // Spec sent to the status subresource is ignored.
    c.ok(&["patch", "wd", "w1", "--subresource=status", "--type=merge", "-p", r#"{"spec":{"size":99}}"#]).unwrap();
    assert_eq!(c.json(&["get", "wd", "w1"]).unwrap()["spec"]["size"], 4);

    // The scale subresource.
    let scale: serde_json::Value = serde_json::from_str(&c.ok(&["get", "--raw", "/apis/example.com/v1/namespaces/default/widgets/w1/scale"]).unwrap()).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=w1");
    assert_eq!(c.ok(&["scale", "wd", "w1", "--replicas=4"]).unwrap().trim(), "widget.example.com/w1 scaled");
    let cr = c.json(&["get", "wd", "w1"]).unwrap();
    assert_eq!(cr["spec"]["replicas"], 4);
    assert_eq!(cr["metadata"]["generation"], 4);
    let e = c.fails(&["scale", "wd", "w1", "--replicas=5", "--current-replicas=2"]).unwrap();
    assert!(e.contains("xpected replicas to be 2, was 4"), "{e}");

    // explain reads the schema from OpenAPI.
    let ex = c.ok(&["explain", "widgets.spec"]).unwrap();
    assert!(ex.contains("KIND:       Widget") && ex.contains("What the widget should be.") && ex.contains("size\t<integer> -required-") && ex.contains("How big the widget is."), "{ex}");

    // A cluster-scoped CRD alongside.
    ok_stdin(&c, &["apply", "-f", "-"], r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"regions.example.com"},"spec":{"group":"example.com","scope":"Cluster","names":{"plural":"regions","singular":"region","kind":"Region"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}"#);
    c.ok(&["wait", "crd/regions.example.com", "--for=condition=Established", "--timeout=10s"]).unwrap();
    ok_stdin(&c, &["create", "-f", "-"], r#"{"apiVersion":"example.com/v1","kind":"Region","metadata":{"name":"eu"},"spec":{"anything":{"goes":true}}}"#);
    assert_eq!(c.ok(&["get", "regions", "-A", "-o", "name"]).unwrap().trim(), "region.example.com/eu");
    assert_eq!(c.json(&["get", "region", "eu"]).unwrap()["spec"]["anything"]["goes"], true);

    // Deleting the CRD removes its resources and its API.
    c.ok(&["delete", "crd", "widgets.example.com", "--timeout=10s"]).unwrap();
    poll(std::time::Duration::from_secs(10), "widgets API gone", || c.fails(&["get", "--raw", "/apis/example.com/v1/namespaces/default/widgets"]).ok());
    let e = c.fails(&["get", "widgets"]).unwrap();
    assert!(e.contains("the server doesn't have a resource type \"widgets\"") || e.contains("NotFound"), "{e}");
    assert!(c.ok(&["get", "regions", "-o", "name"]).unwrap().contains("region.example.com/eu"), "the other CRD is untouched");
    // Re-creating the CRD does not bring the old objects back.
    install(&c);
    let out = c.kubectl(&["get", "widgets"]).unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim().is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(get_opt(&c, &["wd", "w1"]).is_none());
}

#[test]
fn crd_schema_validation_pruning_and_defaults() {
    let c = cluster();
    install(&c);
    // Defaults fill in, unknown fields are pruned (with --validate=false kubectl does not ask
    // the server to refuse them).
    ok_stdin(&c, &["create", "--validate=false", "-f", "-"], &widget("w", "  size: 2\n  junk: dropped\n"));
    let cr = c.json(&["get", "wd", "w"]).unwrap();
    assert_eq!(cr["spec"]["color"], "blue", "default applied: {cr}");
    assert!(cr["spec"].get("junk").is_none(), "unknown field pruned: {cr}");
    // Schema violations are 422 with the field path.
    let e = fails_stdin(&c, &["create", "-f", "-"], &widget("small", "  size: 0\n"));
    assert!(e.contains("is invalid") && e.contains("spec.size") && e.contains("should be greater than or equal to 1"), "{e}");
    let e = fails_stdin(&c, &["create", "-f", "-"], &widget("nosize", "  color: red\n"));
    assert!(e.contains("spec.size") && e.contains("Required value"), "{e}");
    let e = fails_stdin(&c, &["create", "-f", "-"], &widget("typed", "  size: big\n"));
    assert!(e.contains("spec.size") && e.contains("must be of type integer"), "{e}");
    let e = fails_stdin(&c, &["create", "-f", "-"], &widget("colour", "  size: 1\n  color: purple\n"));
    assert!(e.contains("spec.color") && e.contains("Unsupported value: \"purple\""), "{e}");
    // Updates are validated too.
    let e = c.fails(&["patch", "wd", "w", "--type=merge", "-p", r#"{"spec":{"size":-1}}"#]).unwrap();
    assert!(e.contains("spec.size"), "{e}");
    let e = c.fails(&["patch", "wd", "w", "--subresource=status", "--type=merge", "-p", r#"{"status":{"replicas":"many"}}"#]).unwrap();
    assert!(e.contains("status.replicas"), "{e}");
}

#[test]
fn crd_strict_field_validation_refuses_unknown_fields() {
    let c = cluster();
    install(&c);
    let e = fails_stdin(&c, &["create", "-f", "-"], &widget("strict", "  size: 2\n  junk: 1\n"));
    assert!(e.contains("BadRequest") && e.contains("strict decoding error") && e.contains("unknown field \"spec.junk\""), "{e}");
    // --validate=warn creates the object and prints the server's warning.
    let out = c.kubectl_stdin(&["create", "--validate=warn", "-f", "-"], &widget("warned", "  size: 2\n  junk: 1\n")).unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field \"spec.junk\""), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(c.json(&["get", "wd", "warned"]).unwrap()["spec"].get("junk").is_none());
}

#[test]
fn custom_resources_survive_a_restart() {
    let mut c = cluster();
    install(&c);
    ok_stdin(&c, &["create", "-f", "-"], &widget("keep", "  size: 7\n  color: green\n"));
    c.ok(&["patch", "wd", "keep", "--subresource=status", "--type=merge", "-p", r#"{"status":{"phase":"Ready"}}"#]).unwrap();
    let before = c.json(&["get", "wd", "keep"]).unwrap();
    let status = c.stop().unwrap();
    assert!(status.success(), "{status}");
    c.restart().unwrap();
    // The CRD's API is served again straight after startup, with its printer columns.
    let after = c.json(&["get", "wd", "keep"]).unwrap();
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"]);
    assert_eq!(after["status"]["phase"], "Ready");
    let table = c.ok(&["get", "widgets"]).unwrap();
    assert_eq!(row(&table, "keep")[1..4], ["7", "green", "Ready"].map(String::from), "{table}");
    assert!(c.ok(&["api-resources", "--api-group=example.com"]).unwrap().contains("widgets"));
    // Schema validation is back in force too.
    let e = fails_stdin(&c, &["create", "-f", "-"], &widget("small", "  size: 0\n"));
    assert!(e.contains("spec.size"), "{e}");
}
