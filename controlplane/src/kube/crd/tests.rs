use super::*;
use crate::kube::printer_columns::cell;
use time::OffsetDateTime;

fn crontab() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "crontabs.stable.example.com" },
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": { "plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"] },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                    "spec": { "type": "object", "properties": { "cronSpec": { "type": "string" } } }
                } } },
                "subresources": { "status": {} },
                "additionalPrinterColumns": [{ "name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec" }]
            }]
        }
    })
}

fn now() -> OffsetDateTime {
    crate::kube::table::parse_rfc3339("2026-11-28T18:00:00Z").expect("parses")
}

#[test]
fn a_good_crd_gets_defaults_and_the_established_status() {
    let mut crd = crontab();
    prepare_definition(&mut crd, None, &[], now()).expect("valid");
    assert_eq!(crd["spec"]["names"]["singular"], "crontab");
    assert_eq!(crd["spec"]["names"]["listKind"], "CronTabList");
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "CronTab");
    let conditions = crd["status"]["conditions"].as_array().expect("conditions");
    for kind in ["NamesAccepted", "Established"] {
        assert!(conditions
            .iter()
            .any(|c| c["type"] == kind && c["status"] == "True"));
    }
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    let definition = Definition::parse(&crd).expect("parses");
    let custom = definition.versions[0].custom;
    assert_eq!(
        custom.resource.storage,
        "/registry/stable.example.com/crontabs"
    );
    assert!(custom.status && custom.resource.namespaced);
    assert!(std::ptr::eq(
        custom,
        Definition::parse(&crd).expect("parses").versions[0].custom
    ));
    assert!(crate::kube::crd::custom(&custom.resource).is_some());
}

#[test]
fn a_bad_crd_is_invalid_with_every_cause() {
    let mut crd = crontab();
    crd["metadata"]["name"] = json!("wrong");
    crd["spec"]["scope"] = json!("Galactic");
    crd["spec"]["versions"][0]["schema"] = json!(null);
    let error = prepare_definition(&mut crd, None, &[], now()).expect_err("invalid");
    assert_eq!((error.code, error.reason), (422, "Invalid"));
    assert!(
        error.message.starts_with(
            "CustomResourceDefinition.apiextensions.k8s.io \"wrong\" is invalid: [metadata.name: Invalid value: \"wrong\": must be spec.names.plural+\".\"+spec.group"
        ),
        "{}",
        error.message
    );
    assert!(error
        .message
        .contains("spec.scope: Unsupported value: \"Galactic\""));
    assert!(error
        .message
        .contains("spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"));
    let mut protected = crontab();
    protected["spec"]["group"] = json!("stable.k8s.io");
    protected["metadata"]["name"] = json!("crontabs.stable.k8s.io");
    let error = prepare_definition(&mut protected, None, &[], now()).expect_err("protected");
    assert!(
        error.message.contains("api-approved.kubernetes.io"),
        "{}",
        error.message
    );
}

#[test]
fn printer_cells_follow_their_json_path_and_type() {
    let object = json!({
        "metadata": { "creationTimestamp": "2026-11-28T17:59:00Z" },
        "spec": { "cronSpec": "* * * * */5", "replicas": 3, "items": [{ "name": "a" }] }
    });
    let column = |kind: &str, path: &str| PrinterColumn {
        name: "X".into(),
        kind: kind.into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: path.into(),
    };
    assert_eq!(
        cell(&column("string", ".spec.cronSpec"), &object, now()),
        json!("* * * * */5")
    );
    assert_eq!(
        cell(&column("integer", ".spec.replicas"), &object, now()),
        json!(3)
    );
    assert_eq!(
        cell(&column("string", ".spec.items[0].name"), &object, now()),
        json!("a")
    );
    assert_eq!(
        cell(
            &column("date", ".metadata.creationTimestamp"),
            &object,
            now()
        ),
        json!("60s")
    );
    assert_eq!(
        cell(&column("string", ".spec.missing"), &object, now()),
        Value::Null
    );
}

#[test]
fn discovery_lists_custom_groups_with_versions_in_kube_s_priority() {
    let mut crd = crontab();
    let mut beta = crd["spec"]["versions"][0].clone();
    beta["name"] = json!("v1beta1");
    beta["storage"] = json!(false);
    let mut alpha = beta.clone();
    alpha["name"] = json!("v2alpha1");
    crd["spec"]["versions"] = json!([beta, crd["spec"]["versions"][0].clone(), alpha]);
    crd["spec"]["names"]["categories"] = json!(["all"]);
    prepare_definition(&mut crd, None, &[], now()).expect("valid");
    let served = Served {
        definitions: vec![Arc::new(Definition::parse(&crd).expect("parses"))],
    };
    let extra = served.resources();
    let group = crate::kube::discovery::group("stable.example.com", &extra).expect("served");
    let versions: Vec<&str> = group["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["version"].as_str())
        .collect();
    assert_eq!(versions, ["v1", "v1beta1", "v2alpha1"]);
    assert_eq!(group["preferredVersion"]["version"], "v1");
    let list =
        crate::kube::discovery::resource_list("stable.example.com", "v1", &extra).expect("served");
    assert_eq!(list["resources"][0]["shortNames"], json!(["ct"]));
    assert_eq!(list["resources"][0]["categories"], json!(["all"]));
    assert_eq!(list["resources"][1]["name"], "crontabs/status");
    let document =
        crate::kube::discovery::openapi_v3_document("apis/stable.example.com/v1", &served)
            .expect("served");
    let schema = &document["components"]["schemas"]["com.example.stable.v1.CronTab"];
    assert_eq!(
        schema["x-kubernetes-group-version-kind"][0]["kind"],
        "CronTab"
    );
    assert!(schema["properties"]["metadata"]["allOf"].is_array());
    assert!(crate::kube::discovery::group("stable.example.com", &[]).is_none());
}

#[test]
fn strict_writes_refuse_only_the_unknown_fields_they_bring() {
    let mut crd = crontab();
    prepare_definition(&mut crd, None, &[], now()).expect("valid");
    let custom = Definition::parse(&crd).expect("parses").versions[0].custom;
    let stored = json!({
        "apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": { "name": "a", "namespace": "default" },
        "spec": { "cronSpec": "* * * * *", "dropped": 1 },
    });
    let mut update = stored.clone();
    update["spec"]["cronSpec"] = json!("0 * * * *");
    prepare_custom(custom, &mut update, Some(&stored), false, true).expect("accepted");
    assert_eq!(update["spec"], json!({ "cronSpec": "0 * * * *" }));
    let mut update = stored.clone();
    update["spec"]["brought"] = json!(2);
    let error =
        prepare_custom(custom, &mut update, Some(&stored), false, true).expect_err("strict");
    assert_eq!((error.code, error.reason), (400, "BadRequest"));
    assert!(
        error
            .message
            .ends_with("strict decoding error: unknown field \"spec.brought\""),
        "{}",
        error.message
    );
    let mut read = stored.clone();
    serve_as(&custom.resource, &mut read);
    assert_eq!(read["spec"], json!({ "cronSpec": "* * * * *" }));
}
