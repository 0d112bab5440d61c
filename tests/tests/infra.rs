//! The SAM template agrees with the workspace and with the state machine definition: every
//! function resource builds a binary that a `functions/*` crate declares (and every such binary is
//! deployed), the state machine may invoke exactly the template's functions, and the
//! DefinitionSubstitutions keys are exactly the ASL's `${Name}` placeholders.
//!
//! Offline: reads infra/template.yaml, statemachine/sync.asl.json and `cargo metadata --no-deps`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use tidemark::steps::Function;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

/// infra/template.yaml; CloudFormation short tags (`!Ref`, `!GetAtt`, `!Sub`, `!If`…) come back
/// as `Value::Tagged`.
fn template() -> Value {
    let path = workspace_root().join("infra/template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(tag, value)` of a tagged node, the tag without its `!` (e.g. `GetAtt`).
fn tagged(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_owned(),
            &t.value,
        )),
        _ => None,
    }
}

fn resources(template: &Value) -> Vec<(String, &Value)> {
    template["Resources"]
        .as_mapping()
        .expect("Resources is a mapping")
        .iter()
        .map(|(k, v)| (k.as_str().expect("logical ids are strings").to_owned(), v))
        .collect()
}

/// Logical ids of the `AWS::Serverless::Function` resources.
fn function_ids(template: &Value) -> BTreeSet<String> {
    resources(template)
        .into_iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, _)| id)
        .collect()
}

/// A function's property, from the resource or else from `Globals.Function`.
fn function_property<'a>(template: &'a Value, resource: &'a Value, name: &str) -> &'a Value {
    match resource["Properties"].get(name) {
        Some(value) => value,
        None => &template["Globals"]["Function"][name],
    }
}

/// `[[bin]]` names of the `functions/*` crates, from `cargo metadata` (what cargo will build).
fn function_binaries() -> BTreeSet<String> {
    let root = workspace_root();
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let functions_dir = root.join("functions");
    let mut binaries = BTreeSet::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest_path"));
        if !manifest.starts_with(&functions_dir) {
            continue;
        }
        for target in package["targets"].as_array().expect("targets") {
            let kinds = target["kind"].as_array().expect("kind");
            if kinds.iter().any(|k| k == "bin") {
                binaries.insert(target["name"].as_str().expect("name").to_owned());
            }
        }
    }
    binaries
}

/// The `${Name}` placeholders of an ASL definition's text.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('}') else { break };
        let name = &rest[..end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "`${{{name}}}` is not a DefinitionSubstitutions placeholder"
        );
        names.insert(name.to_owned());
        rest = &rest[end + 1..];
    }
    names
}

/// The logical id a `!GetAtt X.Arn` or `!Sub "${X.Arn}…"` refers to, with the rest of the Sub.
fn arn_reference(value: &Value) -> Option<(String, String)> {
    let (tag, inner) = tagged(value)?;
    let text = inner.as_str()?;
    match tag.as_str() {
        "GetAtt" => Some((text.strip_suffix(".Arn")?.to_owned(), String::new())),
        "Sub" => {
            let rest = text.strip_prefix("${")?;
            let (id, suffix) = rest.split_once(".Arn}")?;
            Some((id.to_owned(), suffix.to_owned()))
        }
        _ => None,
    }
}

#[test]
fn cloudformation_short_tags_parse_as_tagged_values() {
    let template = template();
    let extract = &template["Resources"]["ExtractFunction"]["Properties"];
    let (tag, value) = tagged(&extract["Role"]).expect("Role is `!GetAtt ExtractRole.Arn`");
    assert_eq!(
        (tag.as_str(), value.as_str()),
        ("GetAtt", Some("ExtractRole.Arn"))
    );
    let (tag, _) = tagged(&extract["FunctionName"]).expect("FunctionName is a `!Sub`");
    assert_eq!(tag, "Sub");
    assert_eq!(template["Transform"], "AWS::Serverless-2016-10-31");
}

#[test]
fn every_function_builds_a_binary_of_a_function_crate() {
    let template = template();
    let binaries = function_binaries();
    assert!(
        !binaries.is_empty(),
        "no [[bin]] found under functions/: is cargo metadata reading the right workspace?"
    );
    let mut deployed = BTreeSet::new();
    for (id, resource) in resources(&template) {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let metadata = &resource["Metadata"];
        assert_eq!(
            metadata["BuildMethod"], "rust-cargolambda",
            "{id}: Metadata.BuildMethod"
        );
        let binary = metadata["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: Metadata.BuildProperties.Binary is missing"));
        assert!(
            binaries.contains(binary),
            "{id}: BuildProperties.Binary `{binary}` is not a [[bin]] of a functions/* crate \
             (those are: {binaries:?})"
        );
        assert!(
            deployed.insert(binary.to_owned()),
            "{id}: `{binary}` is deployed twice"
        );
        assert_eq!(
            function_property(&template, resource, "CodeUri"),
            "..",
            "{id}: CodeUri is the workspace root, relative to infra/"
        );
        assert_eq!(
            function_property(&template, resource, "Handler"),
            "bootstrap",
            "{id}"
        );
        assert_eq!(
            function_property(&template, resource, "Runtime"),
            "provided.al2023",
            "{id}"
        );
    }
    assert_eq!(
        deployed, binaries,
        "every functions/* binary is deployed by exactly one function resource"
    );
}

/// The functions a run's steps are made of: every function but the operator's.
fn step_function_ids(template: &Value) -> BTreeSet<String> {
    let mut ids = function_ids(template);
    assert!(
        ids.remove("OperatorFunction"),
        "the template has an OperatorFunction"
    );
    ids
}

/// The statements of a role's inline policies, or of a managed policy.
fn statements(resource: &Value) -> Vec<&Value> {
    let documents: Vec<&Value> = match resource["Type"].as_str() {
        Some("AWS::IAM::ManagedPolicy") => vec![&resource["Properties"]["PolicyDocument"]],
        _ => resource["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|policy| &policy["PolicyDocument"])
            .collect(),
    };
    documents
        .into_iter()
        .flat_map(|document| document["Statement"].as_sequence().into_iter().flatten())
        .collect()
}

/// The functions `statement` names, each seen both unqualified and as `:*` (versions, aliases).
fn invoked_functions(statement: &Value) -> BTreeSet<String> {
    let mut unqualified = BTreeSet::new();
    let mut qualified = BTreeSet::new();
    for resource in statement["Resource"].as_sequence().expect("a list of ARNs") {
        let (id, suffix) = arn_reference(resource)
            .unwrap_or_else(|| panic!("not a function ARN reference: {resource:?}"));
        match suffix.as_str() {
            "" => unqualified.insert(id),
            ":*" => qualified.insert(id),
            other => panic!("{id}: unexpected ARN suffix `{other}`"),
        };
    }
    assert_eq!(unqualified, qualified, "each function's ARN and its `:*`");
    unqualified
}

/// The statements of `resource` with `effect` on `lambda:InvokeFunction`.
fn invoke_statements<'v>(resource: &'v Value, effect: &str) -> Vec<&'v Value> {
    statements(resource)
        .into_iter()
        .filter(|s| s["Action"] == "lambda:InvokeFunction" && s["Effect"] == effect)
        .collect()
}

#[test]
fn the_state_machine_invokes_exactly_the_step_functions() {
    let template = template();
    let invoke = invoke_statements(&template["Resources"]["StateMachineRole"], "Allow");
    assert_eq!(
        invoke.len(),
        1,
        "one statement grants lambda:InvokeFunction"
    );
    assert_eq!(invoked_functions(invoke[0]), step_function_ids(&template));
}

/// Issue #25 item 3: only the state machine may invoke a run's steps. Operators get a policy for
/// the operator function that denies the steps outright; the cleanup schedule may invoke cleanup
/// only; no other role or policy of the stack may invoke a function.
#[test]
fn operators_may_invoke_only_the_operator_function() {
    let template = template();
    let policy = &template["Resources"]["OperatorAccessPolicy"];
    let allowed = invoke_statements(policy, "Allow");
    assert_eq!(allowed.len(), 1);
    assert_eq!(
        invoked_functions(allowed[0]),
        BTreeSet::from(["OperatorFunction".to_owned()])
    );
    let denied = invoke_statements(policy, "Deny");
    assert_eq!(denied.len(), 1);
    assert_eq!(invoked_functions(denied[0]), step_function_ids(&template));
    let schedule = invoke_statements(&template["Resources"]["CleanupScheduleRole"], "Allow");
    assert_eq!(schedule.len(), 1);
    assert_eq!(
        invoked_functions(schedule[0]),
        BTreeSet::from(["CleanupFunction".to_owned()])
    );
    for (id, resource) in resources(&template) {
        if [
            "StateMachineRole",
            "OperatorAccessPolicy",
            "CleanupScheduleRole",
            "ExecutionEndedPermission",
        ]
        .contains(&id.as_str())
        {
            continue;
        }
        let text = serde_yaml::to_string(resource).unwrap_or_default();
        assert!(
            !text.contains("lambda:InvokeFunction") && !text.contains("lambda:*"),
            "{id} may invoke a function"
        );
    }
}

#[test]
fn definition_substitutions_match_the_asl_placeholders() {
    let template = template();
    let machine = &template["Resources"]["SyncStateMachine"]["Properties"];
    assert_eq!(machine["DefinitionUri"], "../statemachine/sync.asl.json");
    let substitutions = machine["DefinitionSubstitutions"]
        .as_mapping()
        .expect("DefinitionSubstitutions is a mapping");
    let functions = function_ids(&template);
    let mut keys = BTreeSet::new();
    for (key, value) in substitutions {
        let key = key.as_str().expect("string keys").to_owned();
        // `XFunctionArn` is `!GetAtt XFunction.Arn` of a function of this template.
        if let Some(id) = key
            .strip_suffix("Arn")
            .filter(|id| id.ends_with("Function"))
        {
            assert!(functions.contains(id), "{key}: no function resource `{id}`");
            assert_eq!(
                arn_reference(value),
                Some((id.to_owned(), String::new())),
                "{key}"
            );
        }
        keys.insert(key);
    }

    let asl = workspace_root().join("statemachine/sync.asl.json");
    let text = std::fs::read_to_string(&asl).unwrap_or_else(|e| panic!("{}: {e}", asl.display()));
    let used = placeholders(&text);
    let unknown: Vec<_> = used.difference(&keys).collect();
    let unused: Vec<_> = keys.difference(&used).collect();
    assert!(
        unknown.is_empty(),
        "the ASL uses placeholders the template does not substitute: {unknown:?}"
    );
    assert!(
        unused.is_empty(),
        "the template substitutes keys the ASL never uses: {unused:?}"
    );
}

#[test]
fn placeholders_are_found_and_jsonpath_is_not_mistaken_for_one() {
    let text = r#"{"Resource": "${ExtractFunctionArn}", "InputPath": "$.x", "T": ${SyncTimeoutSeconds},
                  "Ctx.$": "$$.Execution.Id", "F.$": "States.Format('{}', $.a)"}"#;
    assert_eq!(
        placeholders(text),
        BTreeSet::from([
            "ExtractFunctionArn".to_owned(),
            "SyncTimeoutSeconds".to_owned()
        ])
    );
}

/// Every name a `Retry` or `Catch` of the state machine matches is a Step Functions name
/// (`States.*`), a Lambda service error (`Lambda.*`), or an error kind the library produces: a
/// misspelt `Retryable` would silently turn off retries.
#[test]
fn the_state_machine_matches_only_error_names_the_library_produces() {
    fn names(value: &serde_json::Value, found: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    if key == "ErrorEquals" {
                        found.extend(
                            inner
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|n| n.as_str().map(str::to_owned)),
                        );
                    }
                    names(inner, found);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| names(v, found)),
            _ => {}
        }
    }
    let definition: serde_json::Value =
        serde_json::from_str(tidemark::steps::local_sync::DEFINITION).unwrap();
    let mut found = BTreeSet::new();
    names(&definition, &mut found);
    assert!(found.contains("Retryable"), "{found:?}");
    let kinds: Vec<&str> = tidemark::ErrorKind::ALL.iter().map(|k| k.name()).collect();
    let unknown: Vec<&String> = found
        .iter()
        .filter(|n| {
            !n.starts_with("States.") && !n.starts_with("Lambda.") && !kinds.contains(&n.as_str())
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "ErrorEquals names no error kind: {unknown:?}"
    );
}

/// Only the watermark and operator functions may write or delete `watermarks/` (issue #25 item
/// 5): every other function's role denies it explicitly, whatever its Allow statements cover.
#[test]
fn only_the_watermark_and_operator_roles_may_write_watermarks() {
    let template = template();
    let denies_watermarks = |role: &Value| {
        role["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|policy| {
                policy["PolicyDocument"]["Statement"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
            })
            .any(|statement| {
                let actions: Vec<&str> = statement["Action"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let resource = tagged(&statement["Resource"])
                    .and_then(|(_, v)| v.as_str())
                    .unwrap_or_default();
                statement["Effect"] == "Deny"
                    && actions.contains(&"s3:PutObject")
                    && actions.contains(&"s3:DeleteObject")
                    && resource.ends_with("/${DataPrefix}/watermarks/*")
            })
    };
    for (id, resource) in resources(&template) {
        if resource["Type"] != "AWS::IAM::Role" || !id.ends_with("Role") {
            continue;
        }
        let text = serde_yaml::to_string(resource).unwrap_or_default();
        let writes_s3 = text.contains("s3:PutObject") || text.contains("s3:DeleteObject");
        match id.as_str() {
            "WatermarkRole" | "OperatorRole" => {
                assert!(!denies_watermarks(resource), "{id} must write watermarks")
            }
            _ if writes_s3 => assert!(
                denies_watermarks(resource),
                "{id} may write or delete watermarks"
            ),
            _ => {}
        }
    }
}

/// Parameters that end up in IAM resource names carry an `AllowedPattern` that refuses a
/// wildcard, so a typo or a hostile value cannot widen a policy (issue #25).
#[test]
fn parameters_that_reach_iam_refuse_wildcards() {
    let template = template();
    for (name, valid) in [
        ("RedshiftClusterIdentifier", "analytics-1"),
        ("RedshiftDbUser", "tidemark_loader"),
        ("RedshiftWorkgroupArn", "arn:aws:redshift-serverless:eu-west-1:123456789012:workgroup/0f1e2d3c-aaaa-bbbb-cccc-0123456789ab"),
        ("DataBucket", "my-data-bucket"),
        ("SourceSecretArns", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tidemark/shop-AbCdEf"),
        ("TargetSecretArns", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tidemark/dw-AbCdEf"),
    ] {
        let pattern = template["Parameters"][name]["AllowedPattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no AllowedPattern"));
        let pattern = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(pattern.is_match(valid), "{name} refuses `{valid}`");
        for widening in ["*", "a*", "a/b", "*:*"] {
            assert!(!pattern.is_match(widening), "{name} takes `{widening}`");
        }
    }
}

/// The data bucket is always this account's (every S3 statement on it is conditioned on
/// `s3:ResourceAccount`), the log groups outlive the stack, and the optional stack-owned bucket
/// is hardened (issue #25 items 4 and 6).
#[test]
fn the_data_bucket_is_this_account_s_and_hardened_when_created() {
    let template = template();
    let mut conditioned = 0;
    for (id, resource) in resources(&template) {
        if resource["Type"] == "AWS::Logs::LogGroup" {
            assert_eq!(resource["DeletionPolicy"], "Retain", "{id}");
        }
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        for policy in resource["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            for statement in policy["PolicyDocument"]["Statement"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                let text = serde_yaml::to_string(statement).unwrap_or_default();
                if statement["Effect"] == "Allow" && text.contains("${DataBucket}") {
                    assert!(
                        statement["Condition"]["StringEquals"]["s3:ResourceAccount"] != Value::Null,
                        "{id}: {text}"
                    );
                    conditioned += 1;
                }
            }
        }
    }
    assert!(
        conditioned >= 10,
        "{conditioned} statements on the data bucket"
    );
    let bucket = &template["Resources"]["HardenedDataBucket"]["Properties"];
    assert_eq!(bucket["VersioningConfiguration"]["Status"], "Enabled");
    assert_eq!(
        bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"],
        true
    );
    assert_eq!(
        bucket["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
        "BucketOwnerEnforced"
    );
    assert_eq!(
        bucket["LifecycleConfiguration"]["Rules"][0]["AbortIncompleteMultipartUpload"]
            ["DaysAfterInitiation"],
        7
    );
    let https = &template["Resources"]["HardenedDataBucketPolicy"]["Properties"]["PolicyDocument"]
        ["Statement"][0];
    assert_eq!(https["Effect"], "Deny");
    assert_eq!(https["Condition"]["Bool"]["aws:SecureTransport"], "false");
}

/// Secrets per function (issue #25 item 8): extract reads only source secrets, load only target
/// ones (warehouse, Data API, tunnel key), watermark both (the source's clock, the target's
/// counts), cleanup none.
#[test]
fn each_role_reads_only_its_own_secrets() {
    let template = template();
    let role = |id: &str| serde_yaml::to_string(&template["Resources"][id]).unwrap_or_default();
    for (id, source, target) in [
        ("ExtractRole", true, false),
        ("WatermarkRole", true, true),
        ("OperatorRole", true, true),
        ("LoadRole", false, true),
        ("CleanupRole", false, false),
    ] {
        let text = role(id);
        assert_eq!(text.contains("SourceSecretArns"), source, "{id}");
        assert_eq!(text.contains("TargetSecretArns"), target, "{id}");
    }
}

/// `(effect, actions, resource text, condition)` of each statement of `resource` on `audit/`.
fn audit_statements(resource: &Value) -> Vec<(String, BTreeSet<String>, Value)> {
    statements(resource)
        .into_iter()
        .filter(|statement| {
            tagged(&statement["Resource"])
                .and_then(|(_, v)| v.as_str())
                .is_some_and(|r| r.ends_with("/${DataPrefix}/audit/*"))
        })
        .map(|statement| {
            let actions = match &statement["Action"] {
                Value::Sequence(list) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                other => other.as_str().map(str::to_owned).into_iter().collect(),
            };
            (
                statement["Effect"].as_str().unwrap_or_default().to_owned(),
                actions,
                statement["Condition"].clone(),
            )
        })
        .collect()
}

/// Issue #25 item 4: the audit record of operator edits is append-only. Every role that writes
/// to S3 is denied writing or deleting `audit/`, except the operator's, which may add entries
/// only with `If-None-Match` (an entry cannot be replaced) and may never delete one.
#[test]
fn the_audit_record_is_append_only() {
    let template = template();
    let set = |actions: &[&str]| -> BTreeSet<String> {
        actions.iter().map(|a| (*a).to_owned()).collect()
    };
    let deletes = set(&["s3:DeleteObject", "s3:DeleteObjectVersion"]);
    for (id, resource) in resources(&template) {
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        let text = serde_yaml::to_string(resource).unwrap_or_default();
        if !(text.contains("s3:PutObject") || text.contains("s3:DeleteObject")) {
            continue;
        }
        let audit = audit_statements(resource);
        let denied_unconditionally = |actions: &BTreeSet<String>| {
            audit.iter().any(|(effect, a, condition)| {
                effect == "Deny" && condition.is_null() && actions.is_subset(a)
            })
        };
        assert!(
            denied_unconditionally(&deletes),
            "{id} may delete audit entries"
        );
        if id == "OperatorRole" {
            let put_without_if_none_match = audit.iter().any(|(effect, actions, condition)| {
                effect == "Deny"
                    && actions.contains("s3:PutObject")
                    && condition["Null"]["s3:if-none-match"] == "true"
            });
            assert!(
                put_without_if_none_match,
                "{id} may overwrite an audit entry"
            );
            assert!(
                audit
                    .iter()
                    .any(|(effect, actions, _)| effect == "Allow"
                        && actions.contains("s3:PutObject")),
                "{id} must add audit entries"
            );
        } else {
            assert!(
                denied_unconditionally(&set(&["s3:PutObject"])),
                "{id} may write audit entries"
            );
        }
    }
}

/// Every function that reaches the warehouse gets the Data API policy (load runs the load,
/// watermark's commit_load reads the load ledger, operator's validate_counts counts the target);
/// extract and cleanup never do.
#[test]
fn the_functions_that_reach_the_warehouse_have_the_data_api() {
    let template = template();
    for (id, reaches) in [
        ("ExtractRole", false),
        ("WatermarkRole", true),
        ("OperatorRole", true),
        ("LoadRole", true),
        ("CleanupRole", false),
    ] {
        let text =
            serde_yaml::to_string(&template["Resources"][id]["Properties"]["ManagedPolicyArns"])
                .unwrap_or_default();
        assert_eq!(text.contains("WarehouseAccessPolicy"), reaches, "{id}");
    }
    let policy =
        serde_yaml::to_string(&template["Resources"]["WarehouseAccessPolicy"]).unwrap_or_default();
    for action in [
        "redshift-data:ExecuteStatement",
        "redshift-data:DescribeStatement",
        "redshift:GetClusterCredentialsWithIAM",
        "redshift-serverless:GetCredentials",
    ] {
        assert!(policy.contains(action), "{action}");
    }
}

/// The template's functions, their binaries and the library's `Function` agree: each
/// `XFunction` runs binary `tidemark-x`, the variant whose ARN substitution is `XFunctionArn`.
#[test]
fn every_template_function_is_a_library_function() {
    let template = template();
    let mut from_template = BTreeSet::new();
    for (id, resource) in resources(&template) {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} names no binary"));
        let function = Function::from_substitution(&format!("{id}Arn"))
            .unwrap_or_else(|| panic!("{id}: no Function has substitution `{id}Arn`"));
        assert_eq!(function.binary(), binary, "{id}");
        from_template.insert(binary.to_owned());
    }
    let library: BTreeSet<String> = Function::ALL
        .iter()
        .map(|f| f.binary().to_owned())
        .collect();
    assert_eq!(from_template, library);
    assert_eq!(library, function_binaries());
}

/// Issue #26 items 4 and 5: every Retry of the definition jitters; every schedule hands an event
/// it cannot deliver to a dead-letter queue its role may send to, which alarms; a failed cleanup
/// alarms; the extract function's concurrency can be reserved.
#[test]
fn retries_jitter_and_schedules_keep_their_dead_letters() {
    fn retries<'v>(value: &'v serde_json::Value, found: &mut Vec<&'v serde_json::Value>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(rules)) = map.get("Retry") {
                    found.extend(rules);
                }
                map.values().for_each(|v| retries(v, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| retries(v, found)),
            _ => {}
        }
    }
    let definition: serde_json::Value =
        serde_json::from_str(tidemark::steps::local_sync::DEFINITION).unwrap();
    let mut rules = Vec::new();
    retries(&definition, &mut rules);
    assert!(rules.len() >= 5, "{} Retry rules", rules.len());
    for rule in rules {
        assert_eq!(rule["JitterStrategy"], "FULL", "{rule}");
    }

    let template = template();
    let declared = &template["Resources"];
    // The sync schedules are `tidemark schedules apply`'s (cli/tests/schedules.rs checks their
    // dead-letter queue, the stack's output `ScheduleDeadLetterQueueArn`); their role may send
    // to it as the cleanup schedule's does.
    let dead_letters =
        &declared["CleanupSchedule"]["Properties"]["Target"]["DeadLetterConfig"]["Arn"];
    assert_eq!(
        arn_reference(dead_letters).map(|(id, _)| id).as_deref(),
        Some("ScheduleDeadLetterQueue"),
    );
    assert_eq!(
        arn_reference(&template["Outputs"]["ScheduleDeadLetterQueueArn"]["Value"])
            .map(|(id, _)| id)
            .as_deref(),
        Some("ScheduleDeadLetterQueue"),
    );
    for role in ["SyncScheduleRole", "CleanupScheduleRole"] {
        let may_send = statements(&declared[role]).into_iter().any(|s| {
            s["Action"] == "sqs:SendMessage"
                && arn_reference(&s["Resource"]).map(|(id, _)| id).as_deref()
                    == Some("ScheduleDeadLetterQueue")
        });
        assert!(may_send, "{role} cannot send to the dead-letter queue");
    }
    let alarmed = |metric: &str, dimension: &str| {
        resources(&template).into_iter().any(|(_, r)| {
            r["Type"] == "AWS::CloudWatch::Alarm"
                && r["Properties"]["MetricName"] == metric
                && serde_yaml::to_string(&r["Properties"]["Dimensions"])
                    .unwrap_or_default()
                    .contains(dimension)
        })
    };
    assert!(alarmed(
        "ApproximateNumberOfMessagesVisible",
        "ScheduleDeadLetterQueue"
    ));
    assert!(alarmed("Errors", "CleanupFunction"));
    // The per-pipeline alarms (failed tables, freshness, quarantined runs, differing rows, loads
    // through the tunnel) are `tidemark schedules apply`'s, one set per pipeline of the config:
    // `schedules::tests::each_pipeline_gets_the_schedule_and_alarms_its_settings_call_for`.
    assert!(
        serde_yaml::to_string(&declared["ExtractFunction"]["Properties"])
            .unwrap_or_default()
            .contains("ExtractReservedConcurrency"),
        "the extract function's reserved concurrency is a parameter"
    );
}

/// Issue #26 item 7: with an SSE-KMS data bucket every function may use its key (through S3
/// only), and every function that reads keys which may not exist yet — cleanup reads
/// watermarks — may list the bucket without a prefix condition, so a missing key is a 404 and
/// not a 403.
#[test]
fn every_role_can_use_an_sse_kms_bucket_and_tell_a_missing_key() {
    let template = template();
    for role in [
        "ExtractRole",
        "WatermarkRole",
        "OperatorRole",
        "LoadRole",
        "CleanupRole",
    ] {
        let declared = &template["Resources"][role];
        let managed =
            serde_yaml::to_string(&declared["Properties"]["ManagedPolicyArns"]).unwrap_or_default();
        assert!(managed.contains("DataBucketKmsPolicy"), "{role}");
        let lists = statements(declared).into_iter().any(|s| {
            s["Effect"] == "Allow"
                && s["Action"] == "s3:ListBucket"
                && s["Condition"].get("StringLike").is_none()
        });
        assert!(
            lists,
            "{role} may not list the bucket: a missing key would read as 403"
        );
    }
    let key =
        serde_yaml::to_string(&template["Resources"]["DataBucketKmsPolicy"]).unwrap_or_default();
    assert!(key.contains("kms:ViaService") && key.contains("kms:GenerateDataKey"));
}

/// Issue #26 item 3: a sync execution that fails, times out or is aborted — where no `Catch`
/// may run — is handed to the watermark function's `release` by an EventBridge rule, the one
/// caller besides the state machine allowed to invoke it; the rule's input is a payload the
/// function accepts.
#[test]
fn an_ended_execution_reaches_the_watermark_function_as_a_release() {
    let template = template();
    let declared = &template["Resources"];
    let rule = &declared["ExecutionEndedRule"]["Properties"];
    let pattern = &rule["EventPattern"];
    assert_eq!(pattern["source"][0], "aws.states");
    let statuses: BTreeSet<&str> = pattern["detail"]["status"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(statuses, BTreeSet::from(["FAILED", "TIMED_OUT", "ABORTED"]));
    let machine = tagged(&pattern["detail"]["stateMachineArn"][0]);
    assert_eq!(
        machine.and_then(|(tag, v)| (tag == "Ref").then(|| v.as_str()).flatten()),
        Some("SyncStateMachine")
    );
    let target = &rule["Targets"][0];
    assert_eq!(
        arn_reference(&target["Arn"]).map(|(id, _)| id).as_deref(),
        Some("WatermarkFunction")
    );
    let transformer = &target["InputTransformer"];
    assert_eq!(
        transformer["InputPathsMap"]["execution"],
        "$.detail.executionArn"
    );
    assert_eq!(transformer["InputPathsMap"]["status"], "$.detail.status");
    // EventBridge puts a string variable into a JSON template as a JSON string.
    let payload = transformer["InputTemplate"]
        .as_str()
        .unwrap()
        .replace(
            "<execution>",
            "\"arn:aws:states:eu-west-1:123456789012:execution:tidemark-sync:x\"",
        )
        .replace("<status>", "\"TIMED_OUT\"");
    let request =
        tidemark::steps::watermark::parse_request(serde_json::from_str(&payload).unwrap())
            .unwrap_or_else(|e| panic!("{payload}: {e}"));
    assert!(
        matches!(
            request,
            tidemark::steps::watermark::WatermarkRequest::Release(_)
        ),
        "{payload}"
    );
    let permission = &declared["ExecutionEndedPermission"]["Properties"];
    assert_eq!(permission["Principal"], "events.amazonaws.com");
    assert_eq!(
        tagged(&permission["FunctionName"]).map(|(_, v)| v.as_str()),
        Some(Some("WatermarkFunction"))
    );
    assert_eq!(
        arn_reference(&permission["SourceArn"])
            .map(|(id, _)| id)
            .as_deref(),
        Some("ExecutionEndedRule")
    );
}

/// Issue #26 item 7: the files of failed runs do not stay forever — the scheduled cleanup deletes
/// orphans (past the 24-hour safety age) unless `CleanupOrphans` says otherwise, and its input is
/// a payload the cleanup step accepts.
#[test]
fn the_scheduled_cleanup_deletes_the_files_of_failed_runs() {
    let template = template();
    let parameter = &template["Parameters"]["CleanupOrphans"];
    assert_eq!(parameter["Default"], "true");
    let input = tagged(&template["Resources"]["CleanupSchedule"]["Properties"]["Target"]["Input"])
        .and_then(|(_, v)| v.as_str().map(str::to_owned))
        .unwrap();
    let payload = input
        .replace("${CleanupOlderThan}", "7d")
        .replace("${CleanupOrphans}", "true");
    let request =
        tidemark::steps::cleanup::parse_request(serde_json::from_str(&payload).unwrap()).unwrap();
    assert!(request.orphans && !request.dry_run, "{payload}");
}

/// A statement of a role's policies (inline, or a managed policy the role attaches, under either
/// branch of an `!If`), with its actions and its resources as text (`!Sub` templates as written,
/// `!Ref X` as `${X}`).
#[derive(Debug)]
struct Grant {
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
    conditional: bool,
}

/// Every text a node can stand for: a string, a `!Sub` template, `${X}` for `!Ref X` and
/// `!GetAtt X`, both branches of an `!If`, each item of a list.
fn texts(value: &Value) -> Vec<String> {
    match (tagged(value), value) {
        (Some((tag, inner)), _) => match tag.as_str() {
            "Sub" => match inner {
                Value::Sequence(parts) => parts.first().map(texts).unwrap_or_default(),
                other => texts(other),
            },
            "Ref" | "GetAtt" => inner
                .as_str()
                .map(|name| vec![format!("${{{name}}}")])
                .unwrap_or_default(),
            "If" => inner
                .as_sequence()
                .into_iter()
                .flatten()
                .skip(1)
                .flat_map(texts)
                .collect(),
            _ => Vec::new(),
        },
        (None, Value::String(text)) => vec![text.clone()],
        (None, Value::Sequence(items)) => items.iter().flat_map(texts).collect(),
        _ => Vec::new(),
    }
}

/// The statement mappings of `document`, an `!If`'s branches included.
fn statement_nodes(statement: &Value) -> Vec<&Value> {
    match tagged(statement) {
        Some((tag, inner)) if tag == "If" => inner
            .as_sequence()
            .into_iter()
            .flatten()
            .skip(1)
            .flat_map(statement_nodes)
            .collect(),
        Some(_) => Vec::new(),
        None if statement.is_mapping() => vec![statement],
        None => Vec::new(),
    }
}

/// What `role` is granted and denied, its attached managed policies included.
fn grants(template: &Value, role: &str) -> Vec<Grant> {
    let resource = &template["Resources"][role];
    let mut documents: Vec<&Value> = vec![resource];
    for attached in texts(&resource["Properties"]["ManagedPolicyArns"]) {
        let Some(name) = attached
            .strip_prefix("${")
            .and_then(|rest| rest.strip_suffix('}'))
        else {
            continue;
        };
        let policy = &template["Resources"][name];
        if policy["Type"] == "AWS::IAM::ManagedPolicy" {
            documents.push(policy);
        }
    }
    documents
        .into_iter()
        .flat_map(statements)
        .flat_map(statement_nodes)
        .map(|statement| Grant {
            allow: statement["Effect"] == "Allow",
            actions: texts(&statement["Action"]),
            resources: texts(&statement["Resource"]),
            conditional: !statement["Condition"].is_null(),
        })
        .collect()
}

/// `pattern` (IAM's `*` wildcard) matches `text`.
fn glob_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (0..=text.len() - head.len())
                    .any(|skip| glob_matches(tail, &text[head.len() + skip..]))
        }
    }
}

fn grant_covers(grant: &Grant, action: &str, resource: &str) -> bool {
    grant
        .actions
        .iter()
        .any(|pattern| glob_matches(pattern, action))
        && grant
            .resources
            .iter()
            .any(|pattern| glob_matches(pattern, resource))
}

/// Each S3 and Data API action the code performs, by the function that performs it, on the keys
/// it performs it on, is allowed to that function's role and not denied to it (issue #26 item 7).
/// The keys follow `naming::StorageLayout`; `x` stands for any rest of a key.
#[test]
fn every_action_the_code_performs_is_granted_to_its_role() {
    let template = template();
    let bucket = "arn:${AWS::Partition}:s3:::${DataBucket}";
    let object = |sub: &str| format!("{bucket}/${{DataPrefix}}/{sub}/x");
    // storage.rs: get_object, put_object (and multipart, which is s3:PutObject), abort,
    // list_objects_v2 (s3:ListBucket), delete_objects (s3:DeleteObject per key).
    // Not listed: extract deleting the files of an invocation that fails (best effort; its role
    // may not, and the scheduled cleanup removes such orphans, see the template's comment).
    let config = "arn:${AWS::Partition}:s3:::${Path}".to_owned();
    let mut s3: Vec<(&str, &str, String)> = [
        "ExtractRole",
        "WatermarkRole",
        "LoadRole",
        "CleanupRole",
        "OperatorRole",
    ]
    .into_iter()
    .map(|role| (role, "s3:GetObject", config.clone()))
    .collect();
    s3.extend([
        // extract: Parquet parts, chunk manifests and progress objects; reads progress back.
        ("ExtractRole", "s3:PutObject", object("data")),
        ("ExtractRole", "s3:AbortMultipartUpload", object("data")),
        ("ExtractRole", "s3:PutObject", object("runs")),
        ("ExtractRole", "s3:GetObject", object("runs")),
        ("ExtractRole", "s3:ListBucket", bucket.to_owned()),
        // watermark: the watermark and its history; run manifests from chunk manifests.
        ("WatermarkRole", "s3:GetObject", object("watermarks")),
        ("WatermarkRole", "s3:PutObject", object("watermarks")),
        // Versions past `watermark_history` and `watermark_history_age` are deleted.
        (
            "WatermarkRole",
            "s3:DeleteObject",
            object("watermarks/_history"),
        ),
        ("WatermarkRole", "s3:GetObject", object("runs")),
        ("WatermarkRole", "s3:PutObject", object("runs")),
        // record_outcome and summarize.
        ("WatermarkRole", "s3:PutObject", object("executions")),
        ("WatermarkRole", "s3:GetObject", object("executions")),
        ("WatermarkRole", "s3:ListBucket", bucket.to_owned()),
        // load: run manifests and Parquet files in, COPY manifests out.
        ("LoadRole", "s3:GetObject", object("runs")),
        ("LoadRole", "s3:GetObject", object("data")),
        ("LoadRole", "s3:PutObject", object("copy")),
        ("LoadRole", "s3:GetObject", object("watermarks")),
        ("LoadRole", "s3:ListBucket", bucket.to_owned()),
        // cleanup: lists, reads watermarks and manifests, deletes loaded runs' files.
        ("CleanupRole", "s3:ListBucket", bucket.to_owned()),
        ("CleanupRole", "s3:GetObject", object("watermarks")),
        ("CleanupRole", "s3:GetObject", object("runs")),
        ("CleanupRole", "s3:DeleteObject", object("data")),
        ("CleanupRole", "s3:DeleteObject", object("runs")),
        ("CleanupRole", "s3:DeleteObject", object("copy")),
        // operator: watermarks and their history, the audit record, manifests for `--show-files`.
        ("OperatorRole", "s3:GetObject", object("watermarks")),
        ("OperatorRole", "s3:PutObject", object("watermarks")),
        (
            "OperatorRole",
            "s3:DeleteObject",
            object("watermarks/_history"),
        ),
        ("OperatorRole", "s3:PutObject", object("audit")),
        ("OperatorRole", "s3:GetObject", object("runs")),
        ("OperatorRole", "s3:ListBucket", bucket.to_owned()),
    ]);
    // load/data_api.rs: batches for the load; single statements (schema step, counts); polling,
    // results and cancelling of the role's own statements.
    let warehouse = "${RedshiftWorkgroupArn}".to_owned();
    let mut data_api: Vec<(&str, &str, String)> = Vec::new();
    for role in ["LoadRole", "WatermarkRole", "OperatorRole"] {
        data_api.push((role, "redshift-data:ExecuteStatement", warehouse.clone()));
        data_api.push((role, "redshift-data:DescribeStatement", "*".to_owned()));
        data_api.push((role, "redshift-data:GetStatementResult", "*".to_owned()));
        data_api.push((role, "redshift-data:CancelStatement", "*".to_owned()));
        data_api.push((
            role,
            "redshift-serverless:GetCredentials",
            warehouse.clone(),
        ));
    }
    data_api.push(("LoadRole", "redshift-data:BatchExecuteStatement", warehouse));
    // The Distributed Map starts, follows and stops each table's child execution.
    let machine = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}";
    let states: Vec<(&str, &str, String)> = vec![
        (
            "StateMachineRole",
            "states:StartExecution",
            format!("{machine}:stateMachine:${{NamePrefix}}-sync"),
        ),
        (
            "StateMachineRole",
            "states:DescribeExecution",
            format!("{machine}:execution:${{NamePrefix}}-sync/table:x"),
        ),
        (
            "StateMachineRole",
            "states:StopExecution",
            format!("{machine}:execution:${{NamePrefix}}-sync/table:x"),
        ),
    ];
    for (role, action, resource) in s3.iter().chain(&data_api).chain(&states) {
        let grants = grants(&template, role);
        assert!(
            grants
                .iter()
                .any(|g| g.allow && grant_covers(g, action, resource)),
            "{role} may not {action} on {resource}"
        );
        assert!(
            !grants
                .iter()
                .any(|g| !g.allow && !g.conditional && grant_covers(g, action, resource)),
            "{role} is denied {action} on {resource}"
        );
    }
}

#[test]
fn globs_match_as_iam_does() {
    assert!(glob_matches("arn:a/${P}/data/*", "arn:a/${P}/data/x"));
    assert!(glob_matches("*", "anything"));
    assert!(glob_matches("s3:*", "s3:GetObject"));
    assert!(glob_matches("a*b*c", "a-b-c"));
    assert!(!glob_matches("arn:a/${P}/data/*", "arn:a/${P}/runs/x"));
    assert!(!glob_matches("a*b", "a-c"));
}

/// The template's dashboard is the body the library generates from the metrics it emits
/// (`tidemark::dashboard`), so no widget names a metric nothing emits.
#[test]
fn the_dashboard_is_generated_from_the_emitted_metrics() {
    let template = template();
    let (_, dashboard) = resources(&template)
        .into_iter()
        .find(|(_, r)| r["Type"] == "AWS::CloudWatch::Dashboard")
        .expect("the template has a dashboard");
    let expected = tidemark::dashboard::body("${AWS::Region}");
    let (tag, text) =
        tagged(&dashboard["Properties"]["DashboardBody"]).expect("DashboardBody is a !Sub");
    assert_eq!(tag, "Sub");
    let written: serde_json::Value =
        serde_json::from_str(text.as_str().expect("a !Sub of one string"))
            .expect("the body is JSON");
    assert_eq!(
        written,
        expected,
        "write the generated body into infra/template.yaml:\n{}",
        serde_json::to_string(&expected).unwrap()
    );
    for name in tidemark::dashboard::metric_names() {
        assert!(tidemark::metrics::EMITTED.contains(&name), "{name}");
        assert!(
            text.as_str()
                .unwrap()
                .contains(&format!("MetricName=\\\"{name}\\\"")),
            "{name}"
        );
    }
}
