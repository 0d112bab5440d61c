//! Secret values: the type that never prints, and resolution through AWS Secrets Manager.
//!
//! A secret's value must never reach a log line, an error message or `config show`: it lives in
//! [`SecretString`], whose `Debug` prints a placeholder. Errors name the secret's id, never its value.

use std::collections::HashMap;

use secrecy::ExposeSecret;
pub use secrecy::SecretString;
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// What `config show` and every summary print in place of a secret.
pub const MASK: &str = "********";

/// Resolves Secrets Manager ids (name or ARN) to values, once per process per id.
#[derive(Debug)]
pub struct SecretResolver {
    client: aws_sdk_secretsmanager::Client,
    cache: Mutex<HashMap<String, SecretString>>,
}

impl SecretResolver {
    /// A resolver using `client`.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        SecretResolver {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The secret's string value. A JSON secret (the RDS/Redshift convention,
    /// `{"username": …, "password": …}`) yields its `password` field.
    pub async fn password(&self, id: &str) -> Result<SecretString> {
        let raw = self.text(id).await?;
        password_from_secret_text(expose(&raw))
            .map(SecretString::from)
            .map_err(|reason| Error::Secret {
                id: id.to_owned(),
                reason,
            })
    }

    /// The secret's whole string (a password document, a PEM certificate bundle, a key).
    pub async fn text(&self, id: &str) -> Result<SecretString> {
        let mut cache = self.cache.lock().await;
        if let Some(value) = cache.get(id) {
            return Ok(value.clone());
        }
        let output = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|err| Error::Secret {
                id: id.to_owned(),
                reason: format!(
                    "could not read it from Secrets Manager ({}); check the id and that this role may call secretsmanager:GetSecretValue",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&err)
                ),
            })?;
        let value = SecretString::from(output.secret_string().ok_or_else(|| Error::Secret {
            id: id.to_owned(),
            reason: "it holds binary data; store it as a string".to_owned(),
        })?);
        cache.insert(id.to_owned(), value.clone());
        Ok(value)
    }
}

/// The password inside a secret's text: its `password` field when the text is a JSON object,
/// else the whole text. A JSON object without a string `password` is refused, naming the fields
/// it has (never their values): sending the whole document as a password only earns "Access
/// denied".
fn password_from_secret_text(raw: &str) -> std::result::Result<String, String> {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw) {
        Ok(object) => match object.get("password") {
            Some(serde_json::Value::String(password)) => Ok(password.clone()),
            _ => Err(format!(
                "it is a JSON object without a string `password` field (its fields: {}); store the password under `password`, as RDS and Redshift secrets do",
                object
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
        Err(_) => Ok(raw.to_owned()),
    }
}

/// Exposes a secret for the one place that must hand it to a driver.
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_secrets_yield_their_password_field() {
        assert_eq!(
            password_from_secret_text(r#"{"username":"u","password":"p\"@ss"}"#).unwrap(),
            "p\"@ss"
        );
        assert_eq!(password_from_secret_text("plain").unwrap(), "plain");
        let refused = password_from_secret_text(r#"{"user":"u","pass":"hunter2"}"#).unwrap_err();
        assert!(
            refused.contains("`user`, `pass`") || refused.contains("`pass`, `user`"),
            "{refused}"
        );
        assert!(!refused.contains("hunter2"), "{refused}");
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = SecretString::from("hunter2".to_owned());
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
