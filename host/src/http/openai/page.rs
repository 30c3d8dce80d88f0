//! `?limit=&order=&after=&before=`, read once for every OpenAI list endpoint
//! the gateway pages (response input items, conversation items).

use serde::Deserialize;

use crate::http::error::ApiError;

/// Items per page when a client names no `limit` (as OpenAI's).
const DEFAULT_LIMIT: usize = 20;
/// The most items one page holds (as OpenAI's).
const MAX_LIMIT: usize = 100;

/// The query as sent: text, so a bad value gets the OpenAI error shape, not axum's.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    order: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

/// A checked page request.
#[derive(Debug, PartialEq, Eq)]
pub struct Paging {
    /// 1 to 100.
    pub limit: usize,
    /// Newest first (`order=desc`, the default).
    pub descending: bool,
    /// Start after this item id (an empty value is none).
    pub after: Option<String>,
    /// End before this item id (an empty value is none).
    pub before: Option<String>,
}

impl PageQuery {
    /// The query from its parts (tests and callers that page without HTTP).
    pub fn new(limit: Option<&str>, order: Option<&str>, after: Option<&str>, before: Option<&str>) -> Self {
        let own = |s: Option<&str>| s.map(str::to_string);
        PageQuery { limit: own(limit), order: own(order), after: own(after), before: own(before) }
    }

    /// Checked against OpenAI's rules; an error names the parameter.
    pub fn paging(&self) -> Result<Paging, ApiError> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(text) => text.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                invalid(format!("`limit` must be an integer from 1 to {MAX_LIMIT}; got {text:?}"), "limit")
            })?,
        };
        let descending = match self.order.as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(other) => return Err(invalid(format!("`order` must be \"asc\" or \"desc\"; got {other:?}"), "order")),
        };
        let cursor = |c: &Option<String>| c.clone().filter(|c| !c.is_empty());
        Ok(Paging { limit, descending, after: cursor(&self.after), before: cursor(&self.before) })
    }
}

fn invalid(message: String, param: &str) -> ApiError {
    ApiError::invalid_request(message, Some(param.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_openai_s_and_errors_name_the_parameter() {
        let paging = PageQuery::default().paging().unwrap();
        assert_eq!(paging, Paging { limit: 20, descending: true, after: None, before: None });
        let asc = PageQuery::new(Some("100"), Some("asc"), Some(""), Some("x")).paging().unwrap();
        assert_eq!(asc, Paging { limit: 100, descending: false, after: None, before: Some("x".into()) });
        for (query, param) in [
            (PageQuery::new(Some("0"), None, None, None), "limit"),
            (PageQuery::new(Some("101"), None, None, None), "limit"),
            (PageQuery::new(Some("ten"), None, None, None), "limit"),
            (PageQuery::new(None, Some("up"), None, None), "order"),
        ] {
            let err = query.paging().unwrap_err();
            assert_eq!((err.status.as_u16(), err.param.as_deref()), (400, Some(param)));
        }
    }
}
