//! infra/template.yaml evaluated the way CloudFormation would for one stack: parameters checked
//! against their declared constraints, and the intrinsic functions the functions' environment,
//! the state machine's `DefinitionSubstitutions` and the schedules' `Input` use (`!Ref`,
//! `!GetAtt <function>.Arn`, `!Sub`). Anything else is refused by name, so a template change that
//! the local deployment cannot follow fails loudly instead of deploying something else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde_yaml::Value;

/// The account, region and partition every local resource lives in (moto's defaults).
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
const PARTITION: &str = "aws";

/// One function of the template, as the stack would deploy it.
#[derive(Debug, Clone)]
pub struct DeployedFunction {
    /// Logical id, e.g. `ExtractFunction`.
    pub logical_id: String,
    /// `FunctionName` (`{NamePrefix}-extract`).
    pub name: String,
    /// `Metadata.BuildProperties.Binary`: the workspace binary SAM builds.
    pub binary: String,
    pub arn: String,
    pub timeout_seconds: u64,
    pub memory_mb: u64,
    /// `Globals.Function.Environment` merged with the function's own.
    pub environment: BTreeMap<String, String>,
}

/// The template with this stack's parameter values.
pub struct Template {
    root: PathBuf,
    document: Value,
    parameters: BTreeMap<String, String>,
}

impl Template {
    /// infra/template.yaml of the workspace at `root`, with `overrides` over the defaults. Every
    /// parameter must end with a value that satisfies its `AllowedPattern`, `AllowedValues`,
    /// `MinValue` and `MaxValue`, as CloudFormation checks before it creates anything.
    pub fn load(root: &Path, overrides: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let path = root.join("infra/template.yaml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        let document: Value =
            serde_yaml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let declared = document["Parameters"]
            .as_mapping()
            .context("the template declares no Parameters")?;
        for name in overrides.keys() {
            if !declared.contains_key(name.as_str()) {
                bail!("parameter `{name}` is not declared in infra/template.yaml");
            }
        }
        let mut parameters = BTreeMap::new();
        for (name, declaration) in declared {
            let name = name.as_str().context("parameter names are strings")?;
            let value = match overrides.get(name) {
                Some(value) => value.clone(),
                None => match &declaration["Default"] {
                    Value::Null => bail!("parameter `{name}` has no Default: give it a value"),
                    default => scalar(default)
                        .with_context(|| format!("the Default of parameter `{name}`"))?,
                },
            };
            check_parameter(name, declaration, &value)?;
            parameters.insert(name.to_owned(), value);
        }
        Ok(Template {
            root: root.to_path_buf(),
            document,
            parameters,
        })
    }

    /// A parameter's value.
    pub fn parameter(&self, name: &str) -> anyhow::Result<&str> {
        self.parameters
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the template has no parameter `{name}`"))
    }

    fn resource(&self, logical_id: &str) -> anyhow::Result<&Value> {
        self.document["Resources"]
            .get(logical_id)
            .ok_or_else(|| anyhow!("the template has no resource `{logical_id}`"))
    }

    /// Every `AWS::Serverless::Function`, with its name, binary, limits and environment.
    pub fn functions(&self) -> anyhow::Result<Vec<DeployedFunction>> {
        let resources = self.document["Resources"]
            .as_mapping()
            .context("Resources is a mapping")?;
        let globals = &self.document["Globals"]["Function"];
        let mut functions = Vec::new();
        for (id, resource) in resources {
            if resource["Type"] != "AWS::Serverless::Function" {
                continue;
            }
            let logical_id = id.as_str().context("logical ids are strings")?.to_owned();
            let properties = &resource["Properties"];
            let property = |name: &str| match properties.get(name) {
                Some(value) => value,
                None => &globals[name],
            };
            let mut environment = BTreeMap::new();
            for variables in [
                &globals["Environment"]["Variables"],
                &properties["Environment"]["Variables"],
            ] {
                for (key, value) in variables.as_mapping().into_iter().flatten() {
                    let key = key.as_str().context("variable names are strings")?;
                    environment.insert(
                        key.to_owned(),
                        self.evaluate(value)
                            .with_context(|| format!("{logical_id}: variable {key}"))?,
                    );
                }
            }
            let name = self.evaluate(property("FunctionName"))?;
            let number = |name: &str| -> anyhow::Result<u64> {
                let text = self.evaluate(property(name))?;
                text.parse()
                    .with_context(|| format!("{logical_id}: {name} `{text}` is not a number"))
            };
            functions.push(DeployedFunction {
                binary: resource["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .with_context(|| format!("{logical_id}: no BuildProperties.Binary"))?
                    .to_owned(),
                arn: function_arn(&name),
                timeout_seconds: number("Timeout")?,
                memory_mb: number("MemorySize")?,
                environment,
                name,
                logical_id,
            });
        }
        Ok(functions)
    }

    /// The state machine's `Name` and its definition: `DefinitionUri`'s file with the
    /// `DefinitionSubstitutions` written in, as SAM does.
    pub fn state_machine(&self, logical_id: &str) -> anyhow::Result<(String, String)> {
        let properties = &self.resource(logical_id)?["Properties"];
        let name = self.evaluate(&properties["Name"])?;
        let uri = properties["DefinitionUri"]
            .as_str()
            .context("DefinitionUri is a path")?;
        let path = self.root.join("infra").join(uri);
        let mut definition =
            std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        for (key, value) in properties["DefinitionSubstitutions"]
            .as_mapping()
            .into_iter()
            .flatten()
        {
            let key = key.as_str().context("substitution names are strings")?;
            definition = definition.replace(&format!("${{{key}}}"), &self.evaluate(value)?);
        }
        Ok((name, definition))
    }

    /// `Properties.<path>` of resource `logical_id`, evaluated (e.g. a schedule's
    /// `Target.Input`); a number steps into a list.
    pub fn property(&self, logical_id: &str, path: &[&str]) -> anyhow::Result<String> {
        let mut node = &self.resource(logical_id)?["Properties"];
        for step in path {
            let next = match (node, step.parse::<usize>()) {
                (Value::Sequence(items), Ok(index)) => items.get(index),
                _ => node.get(*step),
            };
            node =
                next.with_context(|| format!("{logical_id} has no property {}", path.join(".")))?;
        }
        self.evaluate(node)
    }

    /// A value with its intrinsic functions resolved to text.
    fn evaluate(&self, value: &Value) -> anyhow::Result<String> {
        let Value::Tagged(tagged) = value else {
            return scalar(value);
        };
        let tag = tagged.tag.to_string();
        match (tag.trim_start_matches('!'), &tagged.value) {
            ("Ref", Value::String(name)) => self.reference(name),
            ("GetAtt", Value::String(target)) => self.attribute(target),
            ("Sub", Value::String(text)) => self.substitute(text),
            (other, argument) => bail!(
                "the local deployment does not evaluate `!{other} {argument:?}`: extend tests/src/local_aws/template.rs"
            ),
        }
    }

    fn reference(&self, name: &str) -> anyhow::Result<String> {
        if let Some(value) = self.parameters.get(name) {
            return Ok(value.clone());
        }
        match name {
            "AWS::Region" => return Ok(REGION.to_owned()),
            "AWS::AccountId" => return Ok(ACCOUNT.to_owned()),
            "AWS::Partition" => return Ok(PARTITION.to_owned()),
            _ => {}
        }
        let resource = self.resource(name)?;
        let name_of = || self.evaluate(&resource["Properties"]["Name"]);
        match resource["Type"].as_str() {
            Some("AWS::Serverless::Function") => {
                self.evaluate(&resource["Properties"]["FunctionName"])
            }
            Some("AWS::Serverless::StateMachine") => Ok(state_machine_arn(&name_of()?)),
            other => bail!("the local deployment does not resolve `!Ref {name}` ({other:?})"),
        }
    }

    fn attribute(&self, target: &str) -> anyhow::Result<String> {
        let (id, attribute) = target
            .split_once('.')
            .with_context(|| format!("`!GetAtt {target}` names no attribute"))?;
        let resource = self.resource(id)?;
        match (resource["Type"].as_str(), attribute) {
            (Some("AWS::Serverless::Function"), "Arn") => Ok(function_arn(
                &self.evaluate(&resource["Properties"]["FunctionName"])?,
            )),
            (kind, _) => {
                bail!("the local deployment does not resolve `!GetAtt {target}` ({kind:?})")
            }
        }
    }

    /// `!Sub` text: each `${Name}` or `${Resource.Attribute}` replaced; `${!Literal}` kept.
    fn substitute(&self, text: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .with_context(|| format!("unclosed `${{` in !Sub {text:?}"))?;
            let name = &after[..end];
            match name.strip_prefix('!') {
                Some(literal) => out.push_str(&format!("${{{literal}}}")),
                None if name.contains('.') => out.push_str(&self.attribute(name)?),
                None => out.push_str(&self.reference(name)?),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// `arn:aws:lambda:<region>:<account>:function:<name>`.
pub fn function_arn(name: &str) -> String {
    format!("arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}")
}

/// `arn:aws:states:<region>:<account>:stateMachine:<name>`.
pub fn state_machine_arn(name: &str) -> String {
    format!("arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{name}")
}

fn scalar(value: &Value) -> anyhow::Result<String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        other => bail!("expected a scalar, found {other:?}"),
    }
}

/// CloudFormation's parameter constraints
/// (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/parameters-section-structure.html).
fn check_parameter(name: &str, declaration: &Value, value: &str) -> anyhow::Result<()> {
    let explain = || {
        declaration["ConstraintDescription"]
            .as_str()
            .map(|text| format!(": {text}"))
            .unwrap_or_default()
    };
    if let Some(pattern) = declaration["AllowedPattern"].as_str() {
        let anchored = regex::Regex::new(&format!("^(?:{pattern})$"))?;
        if !anchored.is_match(value) {
            bail!(
                "parameter `{name}` = `{value}` does not match its AllowedPattern {pattern}{}",
                explain()
            );
        }
    }
    if let Some(allowed) = declaration["AllowedValues"].as_sequence() {
        let allowed: Vec<String> = allowed.iter().filter_map(|v| scalar(v).ok()).collect();
        if !allowed.iter().any(|a| a == value) {
            bail!("parameter `{name}` = `{value}` is not one of {allowed:?}");
        }
    }
    if declaration["Type"] == "Number" {
        let number: f64 = value
            .parse()
            .with_context(|| format!("parameter `{name}` = `{value}` is not a number"))?;
        for (bound, below) in [("MinValue", true), ("MaxValue", false)] {
            if let Some(limit) = declaration[bound].as_f64() {
                if (below && number < limit) || (!below && number > limit) {
                    bail!("parameter `{name}` = {value} is outside its {bound} {limit}");
                }
            }
        }
    }
    Ok(())
}
