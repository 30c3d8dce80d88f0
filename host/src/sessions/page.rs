//! Paging of session listings: a bounded page, most recent first, and an
//! opaque cursor naming where the next page starts.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::access::Visible;
use super::store::SessionSummary;

/// Sessions per page when a client names no `limit`.
pub const DEFAULT_PAGE: usize = 100;
/// The most sessions one page holds.
pub const MAX_PAGE: usize = 1000;

/// What a listing selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionQuery {
    /// Only this agent's sessions.
    pub agent: Option<String>,
    /// Whose sessions the caller may see.
    pub visible: Visible,
    /// Start after this position (from the previous page's [`SessionPage::next`]).
    pub after: Option<Cursor>,
    /// At most this many, 1 to [`MAX_PAGE`].
    pub limit: usize,
}

impl SessionQuery {
    /// The first page of every session, [`MAX_PAGE`] at a time (the CLI's listing).
    pub fn everything(agent: Option<String>) -> Self {
        Self { agent, visible: Visible::default(), after: None, limit: MAX_PAGE }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct SessionPage {
    pub sessions: Vec<SessionSummary>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

impl SessionPage {
    /// The page of the first `limit` of `rows` (the store fetched `limit + 1`
    /// to learn whether more follow).
    pub fn of(mut rows: Vec<SessionSummary>, limit: usize) -> Self {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = rows.last().filter(|_| more).map(|s| Cursor { last_activity: s.last_activity, key: s.key.clone() });
        Self { sessions: rows, next }
    }
}

/// A position in the listing's order (`last_activity` descending, then key):
/// the last row of a page. Clients see it only as an opaque string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub last_activity: u64,
    pub key: String,
}

/// A `limit` or `cursor` a client sent that cannot be used; names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidPage {
    pub param: &'static str,
    pub message: String,
}

impl Cursor {
    /// The opaque form clients pass back.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.last_activity, self.key))
    }

    /// Inverse of [`encode`](Self::encode).
    pub fn decode(text: &str) -> Result<Self, InvalidPage> {
        let bad = || InvalidPage { param: "cursor", message: "cursor is not one this gateway gave out".into() };
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (at, key) = text.split_once(':').ok_or_else(bad)?;
        Ok(Self { last_activity: at.parse().map_err(|_| bad())?, key: key.to_string() })
    }
}

/// A client's `limit` (default [`DEFAULT_PAGE`], 1 to [`MAX_PAGE`]) and `cursor`.
pub fn parse(limit: Option<u64>, cursor: Option<&str>) -> Result<(usize, Option<Cursor>), InvalidPage> {
    let limit = match limit {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE as u64).contains(&n) => n as usize,
        Some(_) => {
            return Err(InvalidPage {
                param: "limit",
                message: format!("limit must be a whole number from 1 to {MAX_PAGE}"),
            });
        }
    };
    let after = cursor.filter(|c| !c.is_empty()).map(Cursor::decode).transpose()?;
    Ok((limit, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let c = Cursor { last_activity: 1_780_000_000_123, key: "team chat:1/ü".into() };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for junk in ["", "!!", "bm90LWEtY3Vyc29y", &URL_SAFE_NO_PAD.encode("x:key")] {
            assert_eq!(Cursor::decode(junk).unwrap_err().param, "cursor", "{junk:?}");
        }
    }

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(parse(None, None).unwrap(), (DEFAULT_PAGE, None));
        assert_eq!(parse(Some(1000), Some("")).unwrap().0, 1000);
        for bad in [0, 1001, u64::MAX] {
            assert_eq!(parse(Some(bad), None).unwrap_err().param, "limit");
        }
    }

    #[test]
    fn a_page_says_whether_more_follow() {
        let row = |k: &str, at| SessionSummary {
            key: k.into(),
            agent: "main".into(),
            owner: "operator".into(),
            message_count: 0,
            last_activity: at,
        };
        let page = SessionPage::of(vec![row("a", 3), row("b", 2), row("c", 1)], 2);
        assert_eq!(page.sessions.len(), 2);
        assert_eq!(page.next, Some(Cursor { last_activity: 2, key: "b".into() }));
        assert_eq!(SessionPage::of(vec![row("a", 3), row("b", 2)], 2).next, None, "no empty last page");
    }
}
