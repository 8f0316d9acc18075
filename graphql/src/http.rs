//! `/graphql` over HTTP and WebSocket, and GraphiQL.
//!
//! - POST: a JSON body `{query, variables, operationName, extensions}`.
//! - GET with `query` parameters: queries only (a mutation over GET could be
//!   triggered by a link or an image tag).
//! - GET from a browser (HTML accepted, no query): GraphiQL, served with its
//!   assets from this binary.
//! - GET with a WebSocket upgrade: subscriptions (graphql-transport-ws, and
//!   the older graphql-ws protocol); the token comes in `connection_init`'s
//!   payload, since browsers cannot set headers on a WebSocket.
//!
//! Every answer carries `extensions.upstreamCalls`: the gRPC calls the
//! query cost.

use async_graphql::{
    Data, ServerError,
    http::{ALL_WEBSOCKET_PROTOCOLS, parse_query_string},
    parser::types::OperationType,
};
use async_graphql_axum::{GraphQLProtocol, GraphQLResponse, GraphQLWebSocket};
use axum::{
    Router,
    body::Bytes,
    extract::{FromRequestParts, Path, Request, State, WebSocketUpgrade},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{Facade, Origins, loaders::Loaders, upstream::Session};

/// The facade's routes.
pub fn router(facade: Facade) -> Router {
    let cors = cors(&facade.options.origins);
    // Bodies carry variables besides the query: room for both, bounded.
    let body_limit = facade.options.limits.max_query_bytes.saturating_mul(8).max(64 * 1024);
    let mut router = Router::new()
        .route("/graphql", get(get_graphql).post(post_graphql))
        .route("/graphql/assets/{file}", get(asset))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(facade);
    if let Some(cors) = cors {
        router = router.layer(cors);
    }
    router
}

fn cors(origins: &Origins) -> Option<CorsLayer> {
    let allow = match origins {
        Origins::None => return None,
        Origins::Any => AllowOrigin::any(),
        Origins::List(list) => AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok())),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    )
}

/// The bearer token of an `Authorization` value.
fn bearer(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim().to_owned())
}

fn token_of(headers: &HeaderMap) -> Option<String> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer)
}

/// Runs one request as the caller of `token`.
async fn execute(facade: &Facade, token: Option<String>, request: async_graphql::Request) -> Response {
    if request.query.len() > facade.options.limits.max_query_bytes {
        let message = format!(
            "the query is {} bytes, above the limit of {}",
            request.query.len(),
            facade.options.limits.max_query_bytes
        );
        return refused("QUERY_TOO_LARGE", message);
    }
    let session = facade.upstream.session(token);
    let loaders = Loaders::new(&session);
    let mut response = facade.schema.execute(request.data(session.clone()).data(loaders)).await;
    response.extensions.insert("upstreamCalls".to_owned(), async_graphql::Value::from(session.calls() as u64));
    GraphQLResponse::from(response).into_response()
}

/// A request refused before it ran, in GraphQL's error shape.
fn refused(code: &'static str, message: String) -> Response {
    let mut error = ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", code);
    error.extensions = Some(extensions);
    GraphQLResponse::from(async_graphql::Response::from_errors(vec![error])).into_response()
}

async fn post_graphql(State(facade): State<Facade>, headers: HeaderMap, body: Bytes) -> Response {
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("the body is not a GraphQL request (JSON): {e}")).into_response();
        }
    };
    execute(&facade, token_of(&headers), request).await
}

async fn get_graphql(State(facade): State<Facade>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    if parts.headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")) {
        let (Ok(protocol), Ok(upgrade)) = (
            GraphQLProtocol::from_request_parts(&mut parts, &()).await,
            WebSocketUpgrade::from_request_parts(&mut parts, &()).await,
        ) else {
            return (StatusCode::BAD_REQUEST, "not a GraphQL WebSocket handshake").into_response();
        };
        return websocket(facade, token_of(&parts.headers), protocol, upgrade);
    }
    let query = parts.uri.query().unwrap_or_default();
    let wants_html = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if query.is_empty() && wants_html {
        return Html(GRAPHIQL_PAGE).into_response();
    }
    let request = match parse_query_string(query) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not a GraphQL request: {e}")).into_response(),
    };
    // A persisted query sent by hash alone is not known here until it runs:
    // over GET it could be a mutation, so GET must carry the text.
    if request.query.trim().is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "a GET request carries its query text; send persisted queries by hash with POST",
        )
            .into_response();
    }
    if is_mutation(&request) {
        return (StatusCode::METHOD_NOT_ALLOWED, "mutations are sent with POST").into_response();
    }
    execute(&facade, token_of(&parts.headers), request).await
}

/// Whether the operation a request selects is a mutation (a query that does
/// not parse is left for the executor to report).
fn is_mutation(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else { return false };
    document.operations.iter().any(|(name, operation)| {
        let selected = match (&request.operation_name, name) {
            (Some(wanted), Some(name)) => wanted == name.as_str(),
            _ => true,
        };
        selected && operation.node.ty == OperationType::Mutation
    })
}

/// Subscriptions over one WebSocket. The token comes from `connection_init`
/// (`{"Authorization": "Bearer …"}`, `{"authorization": …}`, `{"token": …}` or
/// `{"headers": {"Authorization": …}}`), else from the handshake's header.
fn websocket(
    facade: Facade,
    header_token: Option<String>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| async move {
        let schema = facade.schema.clone();
        let upstream = facade.upstream.clone();
        GraphQLWebSocket::new(socket, schema, protocol)
            .on_connection_init(move |payload| async move {
                let token = init_token(&payload).or(header_token);
                let session: Session = upstream.session(token);
                let mut data = Data::default();
                data.insert(Loaders::new(&session));
                data.insert(session);
                Ok(data)
            })
            .serve()
            .await;
    })
}

/// The bearer token in a `connection_init` payload.
fn init_token(payload: &serde_json::Value) -> Option<String> {
    let header = |object: &serde_json::Value| {
        ["Authorization", "authorization"]
            .iter()
            .find_map(|key| object.get(*key).and_then(|v| v.as_str()))
            .and_then(bearer)
    };
    header(payload)
        .or_else(|| payload.get("headers").and_then(header))
        .or_else(|| payload.get("token").and_then(|v| v.as_str()).map(str::to_owned))
}

/// GraphiQL's page: the vendored assets, the headers editor open for the
/// caller's `Authorization` header, subscriptions over this origin's WebSocket.
const GRAPHIQL_PAGE: &str = include_str!("../assets/graphiql.html");

/// GraphiQL 3.8.3, React 18.3.1 (npm; `graphql/assets/vendor.sh` fetches and
/// compresses them), served gzip-encoded as stored.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("graphiql.min.js", "text/javascript", include_bytes!("../assets/graphiql.min.js.gz")),
    ("graphiql.min.css", "text/css", include_bytes!("../assets/graphiql.min.css.gz")),
    ("react.production.min.js", "text/javascript", include_bytes!("../assets/react.production.min.js.gz")),
    ("react-dom.production.min.js", "text/javascript", include_bytes!("../assets/react-dom.production.min.js.gz")),
];

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CONTENT_ENCODING, "gzip"),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_headers_and_init_payloads() {
        assert_eq!(bearer("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(bearer("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(init_token(&serde_json::json!({"Authorization": "Bearer t1"})).as_deref(), Some("t1"));
        assert_eq!(init_token(&serde_json::json!({"headers": {"authorization": "Bearer t2"}})).as_deref(), Some("t2"));
        assert_eq!(init_token(&serde_json::json!({"token": "t3"})).as_deref(), Some("t3"));
        assert_eq!(init_token(&serde_json::json!({})), None);
    }
}
