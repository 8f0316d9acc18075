//! The GraphQL facade, against the real server: every answer is compared
//! with what the gRPC API gives the same token.

use c360_server::auth::Role;
use c360_tests::{TENANT, TestApp, graphql, graphql_request, http_exchange};
use serde_json::{Value, json};

use crate::{create, organization, pb, person};

/// The profile fields the comparisons read, as a GraphQL selection.
const PROFILE_FIELDS: &str = "profileId kind status givenName familyName companyName segment birthDate \
    emails { address label primary } phones { number label primary } \
    externalIds { source id } attributes etag maskedFields hiddenFields redirectedFrom";

/// What `PROFILE_FIELDS` should show for a gRPC profile.
fn expected(p: &pb::Profile) -> Value {
    let kind = match p.kind {
        1 => json!("PERSON"),
        2 => json!("ORGANIZATION"),
        _ => Value::Null,
    };
    let status = ["", "PROSPECT", "ACTIVE", "INACTIVE", "MERGED", "ERASED"][p.status as usize];
    let attributes: serde_json::Map<String, Value> = p
        .attributes
        .as_ref()
        .map(|s| s.fields.iter().map(|(k, v)| (k.clone(), value_json(v))).collect())
        .unwrap_or_default();
    json!({
        "profileId": p.id,
        "kind": kind,
        "status": status,
        "givenName": p.given_name,
        "familyName": p.family_name,
        "companyName": p.company_name,
        "segment": p.segment,
        "birthDate": p.birth_date,
        "emails": p.emails.iter().map(|e| json!({"address": e.address, "label": e.label, "primary": e.primary})).collect::<Vec<_>>(),
        "phones": p.phones.iter().map(|e| json!({"number": e.number, "label": e.label, "primary": e.primary})).collect::<Vec<_>>(),
        "externalIds": p.external_ids.iter().map(|x| json!({"source": x.source, "id": x.id})).collect::<Vec<_>>(),
        "attributes": attributes,
        "etag": p.etag,
        "maskedFields": p.masked_fields,
        "hiddenFields": p.hidden_fields,
        "redirectedFrom": if p.redirected_from.is_empty() { Value::Null } else { json!(p.redirected_from) },
    })
}

fn value_json(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::StructValue(s)) => Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_json(v))).collect()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_json).collect()),
        _ => Value::Null,
    }
}

/// A person with a phone, a birth date and attributes, for masking to act on.
fn rich_person(given: &str, email: &str) -> pb::Profile {
    let mut p = person(given, "Doe", email);
    p.phones =
        vec![pb::PhoneNumber { number: "+14155552671".into(), label: "mobile".into(), primary: true, lineage: None }];
    p.birth_date = "1985-04-12".into();
    p.segment = "VIP".into();
    p.attributes = Some(prost_types::Struct {
        fields: [(
            "tier".to_owned(),
            prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("gold".into())) },
        )]
        .into(),
    });
    p.external_ids = vec![pb::ExternalId { source: "shopify".into(), id: format!("sh-{given}"), lineage: None }];
    p
}

async fn customer_screen(app: TestApp) {
    let admin = app.token(TENANT, &[Role::Admin]);
    let ada =
        app.admin().create_profile(create(rich_person("Ada", "ada@example.com"))).await.expect("ada").into_inner();
    let mut org = organization("Acme Corp", "ENTERPRISE");
    org.primary_contact_id = ada.id.clone();
    let org = app.admin().create_profile(create(org)).await.expect("org").into_inner();
    let mut consents = app.consents(TENANT, &[Role::Admin]);
    consents
        .set_consent(pb::SetConsentRequest {
            profile_id: ada.id.clone(),
            purpose: pb::ConsentPurpose::EmailMarketing as i32,
            status: pb::ConsentStatus::Granted as i32,
            ..Default::default()
        })
        .await
        .expect("consent");

    let query = format!(
        "query($id: ID!) {{ customer(id: $id) {{ {PROFILE_FIELDS} \
           identities {{ type value source }} \
           consents {{ purpose status allowed reason }} \
           consentHistory(first: 5) {{ edges {{ node {{ purpose status }} }} pageInfo {{ hasNextPage }} }} \
           mergeHistory {{ mergeId }} mergedFrom \
           primaryContactOf {{ profileId companyName primaryContact {{ profileId }} }} }} }}"
    );
    let answer = graphql(app.http_addr, Some(&admin), &query, json!({ "id": ada.id })).await;
    assert!(answer.get("errors").is_none(), "{answer}");
    let customer = &answer["data"]["customer"];
    let grpc = app.admin().get_profile(pb::GetProfileRequest { id: ada.id.clone() }).await.expect("get").into_inner();
    for (field, value) in expected(&grpc).as_object().expect("object") {
        assert_eq!(&customer[field], value, "{field}");
    }
    assert_eq!(
        customer["identities"],
        json!([
            {"type": "EMAIL", "value": "ada@example.com", "source": null},
            {"type": "PHONE", "value": "+14155552671", "source": null},
            {"type": "EXTERNAL_ID", "value": "sh-Ada", "source": "shopify"},
        ])
    );
    assert_eq!(
        customer["consents"],
        json!([{"purpose": "EMAIL_MARKETING", "status": "GRANTED", "allowed": true, "reason": "GRANTED"}])
    );
    assert_eq!(customer["consentHistory"]["edges"].as_array().map(Vec::len), Some(1));
    assert_eq!(customer["mergeHistory"], json!([]));
    assert_eq!(
        customer["primaryContactOf"],
        json!([{"profileId": org.id, "companyName": "Acme Corp", "primaryContact": {"profileId": ada.id}}])
    );
    // A global id finds the same customer through `node`.
    let global =
        graphql(app.http_addr, Some(&admin), "query($id: ID!) { customer(id: $id) { id } }", json!({"id": ada.id}))
            .await;
    let id = global["data"]["customer"]["id"].as_str().expect("global id").to_owned();
    let node = graphql(
        app.http_addr,
        Some(&admin),
        "query($id: ID!) { node(id: $id) { id ... on Customer { profileId } } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(node["data"]["node"], json!({"id": id, "profileId": ada.id}));
    // Unknown ids are null, not errors.
    let unknown = "0190a0a0-0000-7000-8000-000000000000";
    let missing = graphql(
        app.http_addr,
        Some(&admin),
        "query($id: ID!) { customer(id: $id) { profileId } }",
        json!({"id": unknown}),
    )
    .await;
    assert_eq!(missing, json!({"data": {"customer": null}, "extensions": {"upstreamCalls": 1}}));
    // By identifier.
    let by_email = graphql(
        app.http_addr,
        Some(&admin),
        "{ customerByIdentifier(type: EMAIL, value: \" ADA@example.com \") { profileId } }",
        json!({}),
    )
    .await;
    assert_eq!(by_email["data"]["customerByIdentifier"]["profileId"], json!(ada.id));
}
on_both!(a_customer_screen_is_one_query, customer_screen);

/// The facade adds and removes nothing: each role sees what gRPC shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_sees_exactly_what_grpc_shows_it() {
    let app = TestApp::spawn().await;
    let ada =
        app.admin().create_profile(create(rich_person("Ada", "ada@example.com"))).await.expect("ada").into_inner();
    let query = format!("query($id: ID!) {{ customer(id: $id) {{ {PROFILE_FIELDS} }} }}");
    for role in [Role::Agent, Role::Analyst, Role::Marketer, Role::Steward, Role::Service] {
        let token = app.token(TENANT, &[role]);
        let grpc = app.client(TENANT, role).get_profile(pb::GetProfileRequest { id: ada.id.clone() }).await;
        let answer = graphql(app.http_addr, Some(&token), &query, json!({ "id": ada.id })).await;
        match grpc {
            Ok(profile) => {
                assert!(answer.get("errors").is_none(), "{role:?}: {answer}");
                assert_eq!(answer["data"]["customer"], expected(profile.get_ref()), "{role:?}");
            }
            Err(status) => {
                assert_eq!(
                    answer["errors"][0]["extensions"]["code"],
                    json!(c360_graphql::errors::code_name(status.code())),
                    "{role:?}"
                );
            }
        }
    }
    // Analysts see masked values, as over gRPC: the comparison above covered
    // them; this makes sure masking was in play at all.
    let analyst = app.token(TENANT, &[Role::Analyst]);
    let answer = graphql(
        app.http_addr,
        Some(&analyst),
        "query($id: ID!) { customer(id: $id) { emails { address } maskedFields } }",
        json!({"id": ada.id}),
    )
    .await;
    let address = answer["data"]["customer"]["emails"][0]["address"].as_str().expect("address");
    assert_ne!(address, "ada@example.com", "an analyst sees a masked address");
    assert!(answer["data"]["customer"]["maskedFields"].as_array().is_some_and(|f| !f.is_empty()));
}

/// Forward pagination: pages follow `endCursor`, and any edge's cursor
/// resumes right after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_page_forward_from_any_cursor() {
    let app = TestApp::spawn().await;
    let token = app.token(TENANT, &[Role::Admin]);
    let mut ids = Vec::new();
    for i in 0..7 {
        let p = app.admin().create_profile(create(person(&format!("P{i}"), "Page", ""))).await.expect("create");
        ids.push(p.into_inner().id);
    }
    let query = "query($after: String) { customers(first: 3, after: $after) { \
                   edges { cursor node { profileId } } pageInfo { hasNextPage endCursor } } }";
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let answer = graphql(app.http_addr, Some(&token), query, json!({ "after": after })).await;
        let connection = &answer["data"]["customers"];
        for edge in connection["edges"].as_array().expect("edges") {
            seen.push(edge["node"]["profileId"].as_str().expect("id").to_owned());
        }
        pages += 1;
        if connection["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ids, "every customer once, in creation order");
    assert_eq!(pages, 3);
    // From the middle of a page: the second edge's cursor resumes at the third customer.
    let first = graphql(app.http_addr, Some(&token), query, json!({ "after": null })).await;
    let cursor = first["data"]["customers"]["edges"][1]["cursor"].clone();
    let resumed = graphql(app.http_addr, Some(&token), query, json!({ "after": cursor })).await;
    let next: Vec<&str> = resumed["data"]["customers"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["node"]["profileId"].as_str())
        .collect();
    assert_eq!(next, ids[2..5].iter().map(String::as_str).collect::<Vec<_>>());
    // Searching pages the same way.
    let found = graphql(
        app.http_addr,
        Some(&token),
        "{ customers(search: {namePrefix: \"p3\"}) { edges { node { givenName } } } }",
        json!({}),
    )
    .await;
    assert_eq!(found["data"]["customers"]["edges"], json!([{"node": {"givenName": "P3"}}]));
    let bad = graphql(app.http_addr, Some(&token), query, json!({ "after": "not-a-cursor" })).await;
    assert_eq!(bad["errors"][0]["extensions"]["code"], json!("INVALID_ARGUMENT"));
}

/// Mutations write through the services; what the caller can fix comes back
/// as typed user errors, anything else as errors with the gRPC code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_answer_payloads_and_user_errors() {
    let app = TestApp::spawn().await;
    let agent = app.token(TENANT, &[Role::Agent]);
    let steward = app.token(TENANT, &[Role::Steward]);
    let create_mutation = "mutation($input: CreateCustomerInput!) { createCustomer(input: $input) { \
        customer { profileId givenName etag emails { address } } userErrors { field code message } } }";
    let created = graphql(
        app.http_addr,
        Some(&agent),
        create_mutation,
        json!({ "input": { "customer": { "kind": "PERSON", "givenName": "Grace", "familyName": "Hopper",
                 "emails": [{ "address": "grace@example.com", "primary": true }] } } }),
    )
    .await;
    let payload = &created["data"]["createCustomer"];
    assert_eq!(payload["userErrors"], json!([]), "{created}");
    let id = payload["customer"]["profileId"].as_str().expect("id").to_owned();
    let etag = payload["customer"]["etag"].as_str().expect("etag").to_owned();
    let grpc = app.agent().get_profile(pb::GetProfileRequest { id: id.clone() }).await.expect("get").into_inner();
    assert_eq!((grpc.given_name.as_str(), grpc.emails[0].address.as_str()), ("Grace", "grace@example.com"));

    // Bad input: one user error per violation, with its path in the input.
    let invalid = graphql(
        app.http_addr,
        Some(&agent),
        create_mutation,
        json!({ "input": { "customer": { "kind": "PERSON", "givenName": "X", "emails": [{ "address": "not-an-email" }] } } }),
    )
    .await;
    let errors = &invalid["data"]["createCustomer"]["userErrors"];
    assert_eq!(errors[0]["code"], json!("INVALID_ARGUMENT"), "{invalid}");
    assert_eq!(errors[0]["field"], json!(["input", "customer", "emails", "0", "address"]), "{invalid}");
    assert_eq!(invalid["data"]["createCustomer"]["customer"], Value::Null);

    // Update with the etag; then the same etag again is stale.
    let update = "mutation($input: UpdateCustomerInput!) { updateCustomer(input: $input) { \
        customer { segment familyName etag } userErrors { field code message } } }";
    let updated = graphql(
        app.http_addr,
        Some(&agent),
        update,
        json!({ "input": { "id": id, "etag": etag, "customer": { "segment": "VIP" } } }),
    )
    .await;
    assert_eq!(updated["data"]["updateCustomer"]["userErrors"], json!([]), "{updated}");
    assert_eq!(updated["data"]["updateCustomer"]["customer"]["segment"], json!("VIP"));
    assert_eq!(
        updated["data"]["updateCustomer"]["customer"]["familyName"],
        json!("Hopper"),
        "fields left out are kept"
    );
    let stale = graphql(
        app.http_addr,
        Some(&agent),
        update,
        json!({ "input": { "id": id, "etag": etag, "customer": { "segment": "SMB" } } }),
    )
    .await;
    assert_eq!(stale["data"]["updateCustomer"]["userErrors"][0]["code"], json!("ABORTED"), "{stale}");
    // Null clears a field.
    let cleared =
        graphql(app.http_addr, Some(&agent), update, json!({ "input": { "id": id, "customer": { "segment": null } } }))
            .await;
    assert_eq!(cleared["data"]["updateCustomer"]["customer"]["segment"], json!(""), "{cleared}");

    // Consent.
    let consent = graphql(
        app.http_addr,
        Some(&agent),
        "mutation($input: SetConsentInput!) { setConsent(input: $input) { \
           decision { purpose status } state { allowed reason } userErrors { code } } }",
        json!({ "input": { "profileId": id, "purpose": "SMS_MARKETING", "status": "DENIED" } }),
    )
    .await;
    assert_eq!(
        consent["data"]["setConsent"],
        json!({"decision": {"purpose": "SMS_MARKETING", "status": "DENIED"}, "state": {"allowed": false, "reason": "DENIED"}, "userErrors": []})
    );

    // An agent may not merge: a GraphQL error with the gRPC code, not a user error.
    let other =
        app.admin().create_profile(create(person("Grace", "Hopper", "g.hopper@example.com"))).await.expect("other");
    let other = other.into_inner().id;
    let merge = "mutation($input: MergeCustomersInput!) { mergeCustomers(input: $input) { \
        mergeId customer { profileId } userErrors { code } } }";
    let input = json!({ "input": { "targetId": id, "sourceIds": [other], "reason": "DUPLICATE" } });
    let denied = graphql(app.http_addr, Some(&agent), merge, input.clone()).await;
    assert_eq!(denied["errors"][0]["extensions"]["code"], json!("PERMISSION_DENIED"), "{denied}");
    assert_eq!(denied["data"]["mergeCustomers"], Value::Null);
    // A steward merges, the old id redirects, and the merge is undone.
    let merged = graphql(app.http_addr, Some(&steward), merge, input).await;
    let merge_id = merged["data"]["mergeCustomers"]["mergeId"].as_str().expect("merge id").to_owned();
    let redirected = graphql(
        app.http_addr,
        Some(&steward),
        "query($id: ID!) { customer(id: $id) { profileId redirectedFrom mergedFrom mergeHistory { mergeId reason } } }",
        json!({ "id": other }),
    )
    .await;
    assert_eq!(
        redirected["data"]["customer"],
        json!({"profileId": id, "redirectedFrom": other, "mergedFrom": [other], "mergeHistory": [{"mergeId": merge_id, "reason": "DUPLICATE"}]})
    );
    let unmerged = graphql(
        app.http_addr,
        Some(&steward),
        "mutation($input: UnmergeCustomerInput!) { unmergeCustomer(input: $input) { \
           target { profileId } sources { profileId status } userErrors { code } } }",
        json!({ "input": { "mergeId": merge_id } }),
    )
    .await;
    assert_eq!(
        unmerged["data"]["unmergeCustomer"],
        json!({"target": {"profileId": id}, "sources": [{"profileId": other, "status": "ACTIVE"}], "userErrors": []})
    );
    let again = graphql(
        app.http_addr,
        Some(&steward),
        "mutation($input: UnmergeCustomerInput!) { unmergeCustomer(input: $input) { userErrors { code message } } }",
        json!({ "input": { "mergeId": merge_id } }),
    )
    .await;
    assert_eq!(again["data"]["unmergeCustomer"]["userErrors"][0]["code"], json!("FAILED_PRECONDITION"), "{again}");

    // No token: UNAUTHENTICATED from the services.
    let anonymous = graphql(app.http_addr, None, "{ customers { edges { cursor } } }", json!({})).await;
    assert_eq!(anonymous["errors"][0]["extensions"]["code"], json!("UNAUTHENTICATED"), "{anonymous}");
}

/// The review queue through GraphQL: list, then decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_queue_is_listed_and_decided() {
    let app = TestApp::spawn().await;
    let steward = app.token(TENANT, &[Role::Steward]);
    let empty = graphql(
        app.http_addr,
        Some(&steward),
        "{ reviewQueue { edges { node { leftId } } pageInfo { hasNextPage } } }",
        json!({}),
    )
    .await;
    assert_eq!(empty["data"]["reviewQueue"], json!({"edges": [], "pageInfo": {"hasNextPage": false}}), "{empty}");
    let decided = graphql(
        app.http_addr,
        Some(&steward),
        "mutation { decideReviewItem(input: {leftId: \"0190a0a0-0000-7000-8000-000000000001\", \
           rightId: \"0190a0a0-0000-7000-8000-000000000002\", decision: REJECT}) { userErrors { code } } }",
        json!({}),
    )
    .await;
    assert_eq!(decided["data"]["decideReviewItem"]["userErrors"][0]["code"], json!("NOT_FOUND"), "{decided}");
    let analyst = app.token(TENANT, &[Role::Analyst]);
    let denied = graphql(app.http_addr, Some(&analyst), "{ reviewQueue { edges { cursor } } }", json!({})).await;
    assert_eq!(denied["errors"][0]["extensions"]["code"], json!("PERMISSION_DENIED"));
}

/// 50 customers with their organizations and consents: a handful of upstream
/// calls, not one per customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataloaders_batch_upstream_calls() {
    let app = TestApp::spawn().await;
    let admin = app.token(TENANT, &[Role::Admin]);
    let mut consents = app.consents(TENANT, &[Role::Admin]);
    for i in 0..25 {
        let contact = person(&format!("C{i}"), "Contact", &format!("c{i}@example.com"));
        let contact = app.admin().create_profile(create(contact)).await.expect("contact").into_inner();
        let mut org = organization(&format!("Org {i}"), "SMB");
        org.primary_contact_id = contact.id.clone();
        app.admin().create_profile(create(org)).await.expect("org");
        consents
            .set_consent(pb::SetConsentRequest {
                profile_id: contact.id,
                purpose: pb::ConsentPurpose::EmailMarketing as i32,
                status: pb::ConsentStatus::Granted as i32,
                ..Default::default()
            })
            .await
            .expect("consent");
    }
    let answer = graphql(
        app.http_addr,
        Some(&admin),
        "{ customers(first: 50) { edges { node { profileId primaryContact { givenName consents { allowed } } \
           primaryContactOf { companyName } consents { purpose allowed } } } } }",
        json!({}),
    )
    .await;
    assert!(answer.get("errors").is_none(), "{answer}");
    let edges = answer["data"]["customers"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 50);
    let orgs_with_contacts = edges.iter().filter(|e| e["node"]["primaryContact"]["givenName"].is_string()).count();
    assert_eq!(orgs_with_contacts, 25);
    let contacts_with_orgs =
        edges.iter().filter(|e| e["node"]["primaryContactOf"].as_array().is_some_and(|o| o.len() == 1)).count();
    assert_eq!(contacts_with_orgs, 25);
    // ListProfiles, BatchGetProfiles, BatchGetContactOrganizations, and
    // BatchGetConsents (of the page, then of the contacts reached through it):
    // 5. A loader gathers ids for a few milliseconds, so a starved machine may
    // split a batch; one call per customer would be over 100.
    let calls = answer["extensions"]["upstreamCalls"].as_u64().expect("upstreamCalls");
    assert!(calls <= 10, "{calls} upstream calls for 50 customers");
}

/// Depth, complexity, page size and query size are refused before any
/// upstream call; introspection can be turned off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_refuse_before_any_upstream_call() {
    let app = TestApp::spawn_with(
        c360_tests::TestDb::postgres().await,
        &["--graphql-max-depth", "6", "--graphql-max-complexity", "300"],
    )
    .await;
    let token = app.token(TENANT, &[Role::Admin]);
    let refused = |answer: &Value| {
        assert_eq!(answer["extensions"]["upstreamCalls"], json!(0), "{answer}");
        assert!(answer["errors"][0]["message"].is_string(), "{answer}");
        answer["errors"][0]["message"].as_str().unwrap_or_default().to_owned()
    };
    let deep =
        "{ customers { edges { node { primaryContact { primaryContact { primaryContact { profileId } } } } } } }";
    let message = refused(&graphql(app.http_addr, Some(&token), deep, json!({})).await);
    assert!(message.to_lowercase().contains("nested too deep") || message.contains("depth"), "{message}");
    let complex = "{ customers(first: 100) { edges { node { profileId givenName familyName emails { address } } } } }";
    let message = refused(&graphql(app.http_addr, Some(&token), complex, json!({})).await);
    assert!(message.to_lowercase().contains("complex"), "{message}");
    let big_page = "query($n: Int) { customers(first: $n) { edges { cursor } } }";
    let answer = graphql(app.http_addr, Some(&token), big_page, json!({ "n": 101 })).await;
    refused(&answer);
    assert_eq!(answer["errors"][0]["extensions"]["code"], json!("PAGE_SIZE_LIMIT"));
    let long = format!("{{ customers {{ edges {{ cursor }} }} }} #{}", "x".repeat(40_000));
    let answer = graphql(app.http_addr, Some(&token), &long, json!({})).await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], json!("QUERY_TOO_LARGE"), "{answer}");

    let closed = TestApp::spawn_with(c360_tests::TestDb::sqlite(), &["--graphql-no-introspection"]).await;
    let answer = graphql(
        closed.http_addr,
        Some(&closed.token(TENANT, &[Role::Admin])),
        "{ __schema { queryType { name } } }",
        json!({}),
    )
    .await;
    assert_eq!(answer["data"]["__schema"], Value::Null, "{answer}");
    let open = graphql(app.http_addr, Some(&token), "{ __schema { queryType { name } } }", json!({})).await;
    assert_eq!(open["data"]["__schema"]["queryType"]["name"], json!("Query"));
}

/// Automatic persisted queries: a hash alone finds a query sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_queries_are_found_by_hash() {
    use sha2::Digest;
    let app = TestApp::spawn_on(c360_tests::TestDb::sqlite()).await;
    let token = app.token(TENANT, &[Role::Admin]);
    let query = "{ customers { edges { cursor } } }";
    let hash = hex::encode(sha2::Sha256::digest(query.as_bytes()));
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let unknown = graphql_request(app.http_addr, Some(&token), json!({ "extensions": extensions })).await;
    assert_eq!(unknown["errors"][0]["message"], json!("PersistedQueryNotFound"), "{unknown}");
    let stored =
        graphql_request(app.http_addr, Some(&token), json!({ "query": query, "extensions": extensions })).await;
    assert!(stored.get("errors").is_none(), "{stored}");
    let found = graphql_request(app.http_addr, Some(&token), json!({ "extensions": extensions })).await;
    assert_eq!(found["data"], stored["data"]);
}

/// GET runs queries, never mutations; a browser gets GraphiQL, served with
/// its assets by c360 itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_queries_and_graphiql() {
    let app = TestApp::spawn_on(c360_tests::TestDb::sqlite()).await;
    let token = format!("Bearer {}", app.token(TENANT, &[Role::Admin]));
    let headers = [("Authorization", token.as_str())];
    let (status, _, body) = http_exchange(
        app.http_addr,
        "GET",
        "/graphql?query=%7B%20customers%20%7B%20edges%20%7B%20cursor%20%7D%20%7D%20%7D",
        &headers,
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(answer["data"]["customers"]["edges"], json!([]), "{answer}");
    let (status, ..) = http_exchange(
        app.http_addr,
        "GET",
        "/graphql?query=mutation%20%7B%20deleteCustomer(input%3A%7Bid%3A%22x%22%7D)%20%7B%20userErrors%20%7B%20code%20%7D%20%7D%20%7D",
        &headers,
        b"",
    )
    .await;
    assert_eq!(status, 405, "a mutation over GET is refused");
    // Nor can a persisted query sent by hash alone (it could be a mutation).
    let (status, ..) = http_exchange(
        app.http_addr,
        "GET",
        "/graphql?extensions=%7B%22persistedQuery%22%3A%7B%22version%22%3A1%2C%22sha256Hash%22%3A%22ab%22%7D%7D",
        &headers,
        b"",
    )
    .await;
    assert_eq!(status, 400, "a hash-only query over GET is refused");
    let (status, _, page) = http_exchange(app.http_addr, "GET", "/graphql", &[("Accept", "text/html")], b"").await;
    assert_eq!(status, 200);
    let page = String::from_utf8(page).expect("html");
    assert!(page.contains("/graphql/assets/graphiql.min.js") && !page.contains("cdn"), "served locally");
    for asset in ["graphiql.min.js", "graphiql.min.css", "react.production.min.js", "react-dom.production.min.js"] {
        let (status, headers, body) =
            http_exchange(app.http_addr, "GET", &format!("/graphql/assets/{asset}"), &[], b"").await;
        assert_eq!(status, 200, "{asset}");
        assert!(headers.contains(&("content-encoding".to_owned(), "gzip".to_owned())), "{asset}");
        assert!(body.len() > 1000, "{asset}");
    }
}

/// `c360 graphql --upstream`: the facade alone, against a separately started
/// server, answers as the in-process one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facade_runs_alone_against_a_remote_server() {
    use clap::Parser;
    let app = TestApp::spawn().await;
    let ada =
        app.admin().create_profile(create(rich_person("Ada", "ada@example.com"))).await.expect("ada").into_inner();
    let args = c360_server::cli::graphql::GraphqlServeArgs::try_parse_from([
        "graphql",
        "--upstream",
        &format!("http://{}", app.grpc_addr),
        "--http-addr",
        "127.0.0.1:0",
    ])
    .expect("args");
    let started = c360_server::cli::graphql::start(&args).await.expect("start");
    let addr = started.addr;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(started.serve(async move {
        let _ = stopped.await;
    }));
    let query = format!("query($id: ID!) {{ customer(id: $id) {{ {PROFILE_FIELDS} consents {{ purpose }} }} }}");
    for role in [Role::Agent, Role::Analyst] {
        let token = app.token(TENANT, &[role]);
        let remote = graphql(addr, Some(&token), &query, json!({ "id": ada.id })).await;
        let local = graphql(app.http_addr, Some(&token), &query, json!({ "id": ada.id })).await;
        assert!(remote.get("errors").is_none(), "{remote}");
        assert_eq!(remote["data"], local["data"], "{role:?}");
    }
    let _ = stop.send(());
    task.await.expect("join").expect("served");
}

/// A WebSocket client speaking graphql-transport-ws.
struct Subscriber {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Subscriber {
    /// Connects and initialises with `token` in `connection_init`, as a browser must.
    async fn connect(addr: std::net::SocketAddr, token: &str) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}/graphql").into_client_request().expect("request");
        request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
        let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
        let mut subscriber = Self { socket };
        subscriber
            .send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}))
            .await;
        assert_eq!(subscriber.receive().await["type"], json!("connection_ack"));
        subscriber
    }

    async fn send(&mut self, message: Value) {
        use futures::SinkExt;
        let text = tokio_tungstenite::tungstenite::Message::text(message.to_string());
        self.socket.send(text).await.expect("send");
    }

    /// The next protocol message (pings answered), within 30 s.
    async fn receive(&mut self) -> Value {
        use futures::StreamExt;
        loop {
            let message = tokio::time::timeout(std::time::Duration::from_secs(30), self.socket.next())
                .await
                .expect("a message within 30 s")
                .expect("open")
                .expect("a frame");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).expect("json");
                if value["type"] == json!("ping") {
                    self.send(json!({"type": "pong"})).await;
                    continue;
                }
                return value;
            }
        }
    }

    async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}})).await;
    }
}

/// Subscriptions follow the change stream, with the token from
/// `connection_init`, and resume after the last position received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_changes_and_resume() {
    let app = TestApp::spawn().await;
    let token = app.token(TENANT, &[Role::Admin]);
    let ada = app.admin().create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("ada");
    let mut etag = ada.get_ref().etag.clone();
    let id = ada.into_inner().id;
    let mut client = app.admin();
    let changed = "subscription($id: ID!, $after: String) { customerChanged(id: $id, after: $after) { \
                   position eventType aggregateId payload customer { segment } } }";
    let mut subscriber = Subscriber::connect(app.http_addr, &token).await;
    subscriber.subscribe("1", changed, json!({ "id": id, "after": null })).await;
    // The stream starts with the next commit once open: write until one arrives.
    let mut round = 0;
    let first = loop {
        // A change each time: an update that changes nothing publishes nothing.
        round += 1;
        let segment = format!("VIP{round}");
        let updated =
            client.update_profile(crate::set_segment(&id, &segment, &etag)).await.expect("update").into_inner();
        etag = updated.etag;
        let next = tokio::time::timeout(std::time::Duration::from_millis(500), subscriber.receive()).await;
        if let Ok(message) = next {
            break message;
        }
    };
    assert_eq!(first["type"], json!("next"), "{first}");
    let event = &first["payload"]["data"]["customerChanged"];
    assert_eq!(event["eventType"], json!("CustomerProfileUpdatedEvent"), "{first}");
    assert_eq!(event["aggregateId"], json!(id));
    assert!(event["customer"]["segment"].as_str().is_some_and(|s| s.starts_with("VIP")), "{first}");
    let position = event["position"].clone();
    drop(subscriber);

    // Changes made while away are delivered on resuming after the last position.
    let updated = client.update_profile(crate::set_segment(&id, "SMB", &etag)).await.expect("update").into_inner();
    etag = updated.etag;
    let mut resumed = Subscriber::connect(app.http_addr, &token).await;
    let updates_only = "subscription($after: String) { tenantEvents(types: [\"CustomerProfileUpdatedEvent\"], after: $after) { \
                        position eventType payload } }";
    resumed.subscribe("2", updates_only, json!({ "after": position })).await;
    // The etag is the version the event carries.
    let last: i64 = etag.parse().expect("a numeric etag");
    loop {
        let message = resumed.receive().await;
        assert_eq!(message["type"], json!("next"), "{message}");
        let event = &message["payload"]["data"]["tenantEvents"];
        assert_ne!(event["position"], position, "the event resumed after is not repeated");
        assert_eq!(event["eventType"], json!("CustomerProfileUpdatedEvent"));
        if event["payload"]["version"] == json!(last) {
            break;
        }
    }

    // Without a token the stream is refused by the service.
    let mut anonymous = Subscriber::connect(app.http_addr, "not-a-token").await;
    anonymous.subscribe("3", changed, json!({ "id": id, "after": null })).await;
    let refused = anonymous.receive().await;
    assert_eq!(refused["payload"]["errors"][0]["extensions"]["code"], json!("UNAUTHENTICATED"), "{refused}");
    assert_eq!(anonymous.receive().await["type"], json!("complete"), "the subscription ends");
}

/// Headless Chromium driven over the DevTools protocol.
struct Browser {
    process: tokio::process::Child,
    page: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium (`C360_CHROMIUM`, default `chromium`) on a free
    /// DevTools port, with everything that would reach beyond loopback off.
    async fn start() -> Self {
        let binary = std::env::var("C360_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let profile = tempfile::tempdir().expect("profile dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let process = tokio::process::Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                &format!("--remote-debugging-port={port}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (Debian package chromium; C360_CHROMIUM names another): {e}")
            });
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let mut target = None;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                let (_, _, body) = http_exchange(addr, "GET", "/json/list", &[], b"").await;
                let targets: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                target = targets
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|t| t["type"] == json!("page"))
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned));
                if target.is_some() {
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Chromium builds the URL from the request's Host header: keep only its path.
        let url = target.expect("Chromium's page target within 20 s");
        let path = url.splitn(4, '/').nth(3).expect("a path");
        let url = format!("ws://{addr}/{path}");
        let (page, _) = tokio_tungstenite::connect_async(url).await.expect("DevTools socket");
        Self { process, page, next_id: 0, _profile: profile }
    }

    /// Sends one DevTools command and waits for its answer.
    async fn command(&mut self, method: &str, params: Value) -> Value {
        use futures::{SinkExt, StreamExt};
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        self.page.send(tokio_tungstenite::tungstenite::Message::text(message)).await.expect("send");
        loop {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(30), self.page.next())
                .await
                .expect("DevTools answers within 30 s")
                .expect("open")
                .expect("frame");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).expect("json");
                if value["id"] == json!(id) {
                    return value;
                }
            }
        }
    }

    /// Evaluates `expression` in the page: its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let answer = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        answer["result"]["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy (30 s at most): its value.
    async fn until(&mut self, expression: &str) -> Value {
        for _ in 0..300 {
            let value = self.eval(expression).await;
            if !(value.is_null() || value == json!(false) || value == json!("")) {
                return value;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("never true in the page: {expression}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
    }
}

/// GraphiQL in a real browser: the page loads its assets from c360, takes
/// a token in its headers editor, runs a query and shows the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_a_query_in_a_real_browser() {
    let app = TestApp::spawn_on(c360_tests::TestDb::sqlite()).await;
    app.admin().create_profile(create(person("Ada", "Lovelace", "ada@example.com"))).await.expect("ada");
    let token = app.token(TENANT, &[Role::Agent]);
    let mut browser = Browser::start().await;
    let page = format!("http://{}/graphql", app.http_addr);
    browser.command("Page.enable", json!({})).await;
    browser.command("Page.navigate", json!({ "url": page })).await;
    browser.until("document.querySelector('.graphiql-execute-button') !== null").await;
    // What a user types: the token into the headers editor (GraphiQL keeps
    // it in storage) and a query; then the page is loaded again with them.
    let headers = json!({ "Authorization": format!("Bearer {token}") }).to_string();
    let query = "{ customers { edges { node { givenName familyName } } } }";
    browser
        .eval(&format!(
            "localStorage.setItem('graphiql:headers', {}); localStorage.setItem('graphiql:query', {}); true",
            json!(headers),
            json!(query)
        ))
        .await;
    browser.command("Page.reload", json!({})).await;
    browser.until("document.querySelector('.graphiql-execute-button') !== null").await;
    browser.eval("document.querySelector('.graphiql-execute-button').click(); true").await;
    let shown = browser
        .until("(() => { const r = document.querySelector('.result-window'); const t = r ? r.innerText : ''; return t.includes('Lovelace') ? t : ''; })()")
        .await;
    let shown = shown.as_str().expect("text").to_owned();
    assert!(shown.contains("\"givenName\": \"Ada\""), "{shown}");
    assert!(shown.contains("upstreamCalls"), "{shown}");
}
