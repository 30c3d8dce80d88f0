//! The parameter rule: every request field the gateway does not consume itself
//! reaches the agent's `params`, and through the assistant the provider, with
//! the name and the value the client sent. Unknown fields pass too, so a new
//! OpenAI parameter works without a release. The gateway only checks the type
//! of the parameters it knows, as OpenAI does, so a typo fails here with the
//! field named rather than upstream.

use serde_json::{Map, Value};

use crate::http::error::ApiError;

/// What a known parameter must be (`null` is always accepted).
#[derive(Clone, Copy)]
enum Expect {
    Number,
    Integer,
    Bool,
    Object,
    StringOrStrings,
}

/// The parameters whose type is checked; anything else passes unchecked.
const KNOWN: &[(&str, Expect)] = &[
    ("temperature", Expect::Number),
    ("top_p", Expect::Number),
    ("presence_penalty", Expect::Number),
    ("frequency_penalty", Expect::Number),
    ("max_tokens", Expect::Integer),
    ("max_completion_tokens", Expect::Integer),
    ("seed", Expect::Integer),
    ("top_logprobs", Expect::Integer),
    ("parallel_tool_calls", Expect::Bool),
    ("logit_bias", Expect::Object),
    ("metadata", Expect::Object),
    ("response_format", Expect::Object),
    ("stop", Expect::StringOrStrings),
];

/// The fields a door did not consume, checked, as the agent's `params` object.
pub fn agent_params(rest: &Map<String, Value>) -> Result<Value, ApiError> {
    for (name, expect) in KNOWN {
        let Some(value) = rest.get(*name).filter(|v| !v.is_null()) else { continue };
        let ok = match expect {
            Expect::Number => value.is_number(),
            Expect::Integer => value.is_i64() || value.is_u64(),
            Expect::Bool => value.is_boolean(),
            Expect::Object => value.is_object(),
            Expect::StringOrStrings => {
                value.is_string() || value.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            }
        };
        if !ok {
            let wanted = match expect {
                Expect::Number => "a number",
                Expect::Integer => "an integer",
                Expect::Bool => "a boolean",
                Expect::Object => "an object",
                Expect::StringOrStrings => "a string or an array of strings",
            };
            return Err(ApiError::invalid_request(
                format!("Invalid request: `{name}` must be {wanted}, got {value}"),
                Some((*name).into()),
            ));
        }
    }
    Ok(Value::Object(rest.clone()))
}

/// Agents produce one choice; `n` (or `best_of`) above 1 is refused rather
/// than answered with one choice the client did not ask for.
pub fn one_choice(param: &str, n: Option<u32>) -> Result<(), ApiError> {
    match n {
        None | Some(1) => Ok(()),
        Some(n) => Err(ApiError::invalid_request(
            format!("`{param}` is {n}, but agents produce a single choice; only `{param}: 1` is served"),
            Some(param.into()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rest(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn params_pass_as_sent_and_known_ones_are_type_checked() {
        let sent = json!({"max_completion_tokens": 5, "temperature": 1, "top_p": null, "logit_bias": {"50256": -100},
                          "reasoning_effort": "low", "brand_new": [1, {"x": true}]});
        assert_eq!(agent_params(&rest(sent.clone())).unwrap(), sent, "names and values unchanged");
        for (name, bad) in [("temperature", json!("hot")), ("max_tokens", json!(1.5)), ("stop", json!([1]))] {
            let e = agent_params(&rest(json!({ name: bad }))).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(name));
        }
    }

    #[test]
    fn more_than_one_choice_is_refused() {
        assert!(one_choice("n", None).is_ok() && one_choice("n", Some(1)).is_ok());
        assert_eq!(one_choice("n", Some(2)).unwrap_err().param.as_deref(), Some("n"));
        assert!(one_choice("n", Some(0)).is_err());
    }
}
