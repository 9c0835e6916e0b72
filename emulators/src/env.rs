//! Selection of external endpoints from the standard `AWS_ENDPOINT_URL_*` variables.
//!
//! ```text
//!  env lookup (process env, or a closure in tests)
//!     AWS_ENDPOINT_URL_KINESIS  --> Some(url) -> Kinesis is external, start nothing for it
//!     AWS_ENDPOINT_URL_DYNAMODB --> Some(url) -> DynamoDB is external, start nothing for it
//!     unset or blank            --> None      -> start the chosen backend
//! ```

use crate::Error;

/// The standard variable the AWS SDKs read for a Kinesis-specific endpoint.
pub const KINESIS_ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL_KINESIS";
/// The standard variable the AWS SDKs read for a DynamoDB-specific endpoint.
pub const DYNAMODB_ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL_DYNAMODB";

/// External endpoints taken from the environment, one per service.
///
/// A service with an endpoint here is used as is: nothing is started for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOverrides {
    /// Kinesis endpoint from [`KINESIS_ENDPOINT_VAR`]; `None` means "start a local one".
    pub kinesis: Option<String>,
    /// DynamoDB endpoint from [`DYNAMODB_ENDPOINT_VAR`]; `None` means "start a local one".
    pub dynamodb: Option<String>,
}

impl EndpointOverrides {
    /// Reads the overrides from the process environment.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] when a variable is set to something that is not an
    /// `http://` or `https://` URL.
    pub fn from_process_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the overrides through `lookup`, which maps a variable name to its value.
    ///
    /// Blank values count as unset (as the AWS SDKs treat them). Taking the lookup as an
    /// argument lets tests check the selection without touching the process environment,
    /// which parallel tests share.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] when a variable is set to something that is not an
    /// `http://` or `https://` URL.
    pub fn from_lookup<F>(lookup: F) -> Result<Self, Error>
    where
        F: Fn(&str) -> Option<String>,
    {
        Ok(Self {
            kinesis: read_endpoint(&lookup, KINESIS_ENDPOINT_VAR)?,
            dynamodb: read_endpoint(&lookup, DYNAMODB_ENDPOINT_VAR)?,
        })
    }
}

fn read_endpoint<F>(lookup: &F, var: &'static str) -> Result<Option<String>, Error>
where
    F: Fn(&str) -> Option<String>,
{
    let Some(raw) = lookup(var) else {
        return Ok(None);
    };
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let valid = ["http://", "https://"].iter().any(|scheme| {
        value
            .get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
            && value.len() > scheme.len()
    });
    if !valid {
        return Err(Error::InvalidEndpoint {
            var,
            value: raw.clone(),
        });
    }
    Ok(Some(value.trim_end_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn nothing_set_means_start_everything() {
        let o = EndpointOverrides::from_lookup(lookup(&[])).expect("valid");
        assert_eq!(o, EndpointOverrides::default());
    }

    #[test]
    fn each_service_is_selected_independently() {
        let o = EndpointOverrides::from_lookup(lookup(&[(
            KINESIS_ENDPOINT_VAR,
            "http://127.0.0.1:4567/",
        )]))
        .expect("valid");
        assert_eq!(o.kinesis.as_deref(), Some("http://127.0.0.1:4567"));
        assert_eq!(o.dynamodb, None);

        let o = EndpointOverrides::from_lookup(lookup(&[(
            DYNAMODB_ENDPOINT_VAR,
            "https://dynamodb.us-east-1.amazonaws.com",
        )]))
        .expect("valid");
        assert_eq!(o.kinesis, None);
        assert_eq!(
            o.dynamodb.as_deref(),
            Some("https://dynamodb.us-east-1.amazonaws.com")
        );
    }

    #[test]
    fn blank_values_count_as_unset() {
        let o = EndpointOverrides::from_lookup(lookup(&[
            (KINESIS_ENDPOINT_VAR, "  "),
            (DYNAMODB_ENDPOINT_VAR, ""),
        ]))
        .expect("valid");
        assert_eq!(o, EndpointOverrides::default());
    }

    #[test]
    fn non_urls_are_rejected_with_the_variable_name() {
        for bad in ["localhost:4567", "http://", "ftp://x", "é"] {
            let err = EndpointOverrides::from_lookup(lookup(&[(KINESIS_ENDPOINT_VAR, bad)]))
                .expect_err(bad);
            assert!(err.to_string().contains(KINESIS_ENDPOINT_VAR), "{err}");
        }
    }
}
