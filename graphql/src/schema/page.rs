//! Forward Relay pagination over the RPCs' page tokens. An RPC page has one
//! token for what follows it; a Relay edge needs a cursor of its own. A
//! cursor here is the token of the page an edge came from and how many of
//! that page's items precede the next edge: resuming from the middle of a
//! page reads that page again and skips what was seen. The last edge of a
//! page points at the next page's token, so paging through a whole list
//! edge by edge costs one RPC per page.

use async_graphql::{
    Context, OutputType, Result, SimpleObject,
    connection::{Edge, EmptyFields, PageInfo},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::errors;

/// Page size when `first` is not given.
pub const DEFAULT_PAGE: i32 = 20;

/// One page to ask an RPC for.
#[derive(Debug, Clone)]
pub struct Page {
    /// The RPC's page size.
    pub size: i32,
    /// The RPC's page token ("" for the first page).
    pub token: String,
}

/// The complexity of a connection field: its page size times its node's.
pub fn cost(first: Option<i32>, child_complexity: usize) -> usize {
    usize::try_from(first.unwrap_or(DEFAULT_PAGE)).unwrap_or(0).max(1) * child_complexity
}

fn encode(token: &str, skip: usize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::json!([token, skip]).to_string())
}

fn decode(cursor: &str) -> Result<(String, usize)> {
    let bad = || errors::refused("INVALID_ARGUMENT", "after: not a cursor of this connection");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    serde_json::from_slice::<(String, usize)>(&bytes).map_err(|_| bad())
}

/// One page of a list (a Relay connection): its items with their cursors,
/// and whether more follow.
#[derive(SimpleObject)]
#[graphql(concrete(name = "CustomerConnection", params(super::customer::Customer)))]
#[graphql(concrete(name = "ConsentDecisionConnection", params(super::consent::ConsentDecision)))]
#[graphql(concrete(name = "MergeCandidateConnection", params(super::identity::MergeCandidate)))]
pub struct Connection<T: OutputType> {
    /// The items, each with the cursor to resume after it.
    pub edges: Vec<Edge<String, T, EmptyFields>>,
    /// Where this page stands: `hasNextPage`, and `endCursor` to pass as `after` for the next page.
    pub page_info: PageInfo,
}

impl<T: OutputType> Connection<T> {
    fn new(has_previous_page: bool, has_next_page: bool, edges: Vec<Edge<String, T, EmptyFields>>) -> Self {
        let page_info = PageInfo {
            has_previous_page,
            has_next_page,
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        Self { edges, page_info }
    }
}

/// One forward page of a connection: `fetch` gets an RPC page and answers
/// its items and the next page token.
pub async fn forward<T, F, Fut>(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
    fetch: F,
) -> Result<Connection<T>>
where
    T: OutputType,
    F: FnOnce(Page) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String)>>,
{
    let limits = ctx.data_unchecked::<crate::Limits>();
    let first = first.unwrap_or(DEFAULT_PAGE);
    if first < 0 || first > limits.max_page_size {
        return Err(errors::refused(
            "INVALID_ARGUMENT",
            format!("first: {first} is outside 0 to {}, the page limit", limits.max_page_size),
        ));
    }
    let (token, skip) = match after.as_deref() {
        Some(cursor) if !cursor.is_empty() => decode(cursor)?,
        _ => (String::new(), 0),
    };
    // Cursors issued here skip less than a page: a larger skip is forged, and
    // would make the service read (and audit) rows nobody is shown.
    if skip > usize::try_from(limits.max_page_size).unwrap_or(0) {
        return Err(errors::refused("INVALID_ARGUMENT", "after: not a cursor of this connection"));
    }
    if first == 0 {
        return Ok(Connection::new(false, false, Vec::new()));
    }
    let size = i32::try_from(skip).unwrap_or(i32::MAX).saturating_add(first);
    let (items, next) = fetch(Page { size, token: token.clone() }).await?;
    let count = items.len();
    let edges = items
        .into_iter()
        .enumerate()
        .skip(skip)
        .map(|(i, item)| {
            let cursor = if i + 1 == count && !next.is_empty() { encode(&next, 0) } else { encode(&token, i + 1) };
            Edge::new(cursor, item)
        })
        .collect();
    Ok(Connection::new(!token.is_empty() || skip > 0, !next.is_empty(), edges))
}
