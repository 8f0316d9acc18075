//! `c360 export`: a tenant's golden records as CSV and JSON Lines.

use c360_proto::v1 as pb;
use c360_tests::{TENANT, TestApp};
use clap::Parser;

use crate::{create, person};

/// Runs `c360 export` against `app`'s database; the file's text.
async fn export(app: &TestApp, format: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(format!("out.{format}"));
    let mut args = vec![
        "c360",
        "export",
        "--tenant",
        TENANT,
        "--format",
        format,
        "--output",
        file.to_str().expect("utf-8"),
        "--database-url",
        &app.db.url,
        "--data-dir",
        dir.path().to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    c360_server::cli::Cli::try_parse_from(args).expect("export arguments").run().await.expect("export");
    std::fs::read_to_string(&file).expect("read export")
}

async fn exports_every_live_golden_record_with_its_external_ids(app: TestApp) {
    let mut client = app.agent();
    let mut ada = person("Ada", "Lovelace, \"Countess\"", "ada@example.com");
    ada.external_ids = vec![
        pb::ExternalId { source: "salesforce".into(), id: "003A".into(), lineage: None },
        pb::ExternalId { source: "pos".into(), id: "77".into(), lineage: None },
    ];
    ada.attributes = Some(prost_types::Struct {
        fields: [(
            "note".to_owned(),
            prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("line one\nline, two".into())) },
        )]
        .into(),
    });
    let ada = client.create_profile(create(ada)).await.expect("create").into_inner();
    let grace = client.create_profile(create(person("Grace", "Hopper", ""))).await.expect("create").into_inner();
    let gone = client.create_profile(create(person("Gone", "Away", "gone@example.com"))).await.expect("create");
    let gone = gone.into_inner();
    client.delete_profile(pb::DeleteProfileRequest { id: gone.id.clone(), etag: String::new() }).await.expect("delete");

    // Grace also gave Ada's email, which Ada holds: kept as held, exported.
    let store = crate::store(&app.db.url).await;
    let id = |id: &str| c360_server::domain::ProfileId::parse(id).expect("id");
    let held = c360_server::store::identities::Held {
        profile: id(&grace.id),
        key: c360_server::domain::identifiers::IdentifierKey {
            id_type: c360_server::domain::identifiers::IdentifierType::Email,
            namespace: String::new(),
            value: "ada@example.com".into(),
        },
        holder: id(&ada.id),
    };
    let tenant = c360_server::domain::TenantId::parse(TENANT).expect("tenant");
    c360_server::store::identities::record_held(store.db(), &tenant, "legacy", &[held], chrono::Utc::now())
        .await
        .expect("record held");
    store.close().await.expect("close");

    let text = export(&app, "csv", &[]).await;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    assert_eq!(headers.iter().collect::<Vec<_>>(), c360_server::cli::export::CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 2, "live profiles only: {text}");
    let column = |row: &csv::StringRecord, name: &str| {
        row.get(headers.iter().position(|h| h == name).expect(name)).expect(name).to_owned()
    };
    let first = rows.iter().find(|r| column(r, "id") == ada.id).expect("ada exported");
    assert_eq!(column(first, "family_name"), "Lovelace, \"Countess\"", "quoting survives");
    assert_eq!(column(first, "email"), "ada@example.com");
    assert_eq!(column(first, "external_ids"), "salesforce:003A; pos:77");
    let attributes: serde_json::Value = serde_json::from_str(&column(first, "attributes")).expect("attributes JSON");
    assert_eq!(attributes["note"], "line one\nline, two", "a quoted newline survives");
    assert_eq!(column(first, "version"), ada.etag);
    let second = rows.iter().find(|r| column(r, "id") == grace.id).expect("grace exported");
    assert_eq!(column(second, "held_identifiers"), "EMAIL:ada@example.com");
    assert_eq!(column(first, "held_identifiers"), "");

    let text = export(&app, "jsonl", &["--include-inactive"]).await;
    let records: Vec<serde_json::Value> =
        text.lines().map(|line| serde_json::from_str(line).expect("one JSON object per line")).collect();
    assert_eq!(records.len(), 3, "deleted ones too when asked");
    let exported = records.iter().find(|r| r["id"] == ada.id.as_str()).expect("ada");
    assert_eq!(exported["external_ids"][0]["source"], "salesforce");
    assert_eq!(exported["emails"][0]["address"], "ada@example.com");
    assert_eq!(exported["status"], "ACTIVE");
    assert!(exported.get("held_identifiers").is_none(), "only when there are any");
    let second = records.iter().find(|r| r["id"] == grace.id.as_str()).expect("grace");
    assert_eq!(second["held_identifiers"], serde_json::json!(["EMAIL:ada@example.com"]));
    assert!(records.iter().any(|r| r["id"] == gone.id.as_str() && r["status"] == "INACTIVE"));

    // Audited as the system principal, one record per page counting its rows.
    let by_export = pb::ListAuditEventsRequest { subject: "system:export".into(), ..Default::default() };
    let audited = crate::audit::events(&app, by_export).await;
    let counts: Vec<i64> = audited.iter().filter(|e| e.action == "profile.export").map(|e| e.count).collect();
    assert_eq!(counts.iter().sum::<i64>(), 5, "{audited:#?}");
}
on_both!(exports, exports_every_live_golden_record_with_its_external_ids);
