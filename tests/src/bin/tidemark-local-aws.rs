//! `tidemark-local-aws`: deploys infra/template.yaml locally for a configuration file and keeps
//! it running until stopped (what `scripts/stack up --aws CONFIG` starts), so that
//! `tidemark sync --aws` rehearses the deployment: the state machine in moto's Step Functions
//! engine, the real function binaries behind a local Lambda (see `tidemark_tests::local_aws`).
//!
//! ```text
//! tidemark-local-aws --config FILE [--parameter Name=Value]... [--env-file PATH]
//! ```
//! The configuration is checked, then uploaded to `s3://<bucket of its first pipeline by
//! name>/config/tidemark.yaml` (the bucket is created when missing) and becomes `ConfigUri`;
//! `DataBucket` and `DataPrefix` come from the same pipeline. The variables `tidemark sync --aws` needs are printed as
//! `export` lines, and written to `--env-file` once the deployment is ready.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use tidemark_tests::local_aws::{Deployment, LocalAws};

struct Arguments {
    config: String,
    parameters: BTreeMap<String, String>,
    env_file: Option<String>,
}

fn arguments() -> anyhow::Result<Arguments> {
    let mut config = None;
    let mut parameters = BTreeMap::new();
    let mut env_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--config" => config = Some(value()?),
            "--env-file" => env_file = Some(value()?),
            "--parameter" => {
                let pair = value()?;
                let (name, value) = pair
                    .split_once('=')
                    .with_context(|| format!("--parameter `{pair}`: expected Name=Value"))?;
                parameters.insert(name.to_owned(), value.to_owned());
            }
            other => bail!(
                "unknown argument `{other}`; usage: tidemark-local-aws --config FILE [--parameter Name=Value]... [--env-file PATH]"
            ),
        }
    }
    Ok(Arguments {
        config: config.context("--config FILE is required")?,
        parameters,
        env_file,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments = arguments()?;
    let text = std::fs::read_to_string(&arguments.config)
        .with_context(|| format!("reading {}", arguments.config))?;
    // Checked as `tidemark config check` checks it: a broken configuration stops here, not in
    // the functions' first cold start.
    let environment: tidemark::config::Environment = std::env::vars().collect();
    let config = tidemark::config::Config::from_yaml(&text, &arguments.config, &environment)?;
    let storage = &config
        .pipelines
        .values()
        .next()
        .context("the configuration has no pipeline")?
        .s3;
    let (bucket, prefix) = (storage.bucket.clone(), storage.prefix.clone());
    let s3 = tidemark::storage::client_from_env().await;
    if s3.head_bucket().bucket(&bucket).send().await.is_err() {
        s3.create_bucket().bucket(&bucket).send().await?;
    }
    let key = "config/tidemark.yaml";
    s3.put_object()
        .bucket(&bucket)
        .key(key)
        .body(text.into_bytes().into())
        .send()
        .await?;
    let mut parameters: BTreeMap<String, String> = [
        ("ConfigUri", format!("s3://{bucket}/{key}")),
        ("DataBucket", bucket),
        ("DataPrefix", prefix),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    parameters.extend(arguments.parameters);
    let aws = LocalAws::deploy(Deployment {
        parameters,
        function_environment: BTreeMap::new(),
        instances: 2,
    })
    .await?;
    let exports: String = aws
        .cli_environment()
        .into_iter()
        .map(|(name, value)| format!("export {name}={value}\n"))
        .collect();
    std::io::Write::write_all(&mut std::io::stdout(), exports.as_bytes())?;
    if let Some(path) = &arguments.env_file {
        std::fs::write(path, &exports).with_context(|| format!("writing {path}"))?;
    }
    eprintln!(
        "tidemark-local-aws: state machine {} ready; functions log to {}; stop with Ctrl-C or SIGTERM",
        aws.state_machine_arn(),
        aws.logs_dir().display()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        stopped = tokio::signal::ctrl_c() => stopped?,
        _ = terminate.recv() => {}
    }
    // Dropping the deployment stops moto and the functions' processes.
    drop(aws);
    Ok(())
}
