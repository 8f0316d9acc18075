//! `c360 import`: legacy CSV files into profiles, on PostgreSQL and SQLite.

use std::path::{Path, PathBuf};

use c360_proto::v1 as pb;
use c360_tests::{TENANT, TestApp};
use clap::Parser;
use tonic::Code;

use crate::{count, create, outbox_subjects, person};

/// Runs `c360 import` of `file` as source `legacy` against `app`'s database.
pub async fn import(app: &TestApp, tenant: &str, file: &Path, extra: &[&str]) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut args = vec![
        "c360",
        "import",
        "--tenant",
        tenant,
        "--file",
        file.to_str().expect("utf-8"),
        "--source",
        "legacy",
        "--database-url",
        &app.db.url,
        "--data-dir",
        data_dir.path().to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    c360_server::cli::Cli::try_parse_from(args).expect("import arguments").run().await.expect("import");
}

/// Writes `bytes` to `name` in `dir`.
pub fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write the file");
    path
}

/// The rows of a CSV file the import wrote, header first.
fn rows(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_path(path).expect("open");
    reader.records().map(|r| r.expect("row").iter().map(str::to_owned).collect()).collect()
}

fn lookup_external(id: &str) -> pb::LookupProfileRequest {
    pb::LookupProfileRequest {
        r#type: pb::IdentifierType::ExternalId as i32,
        value: id.into(),
        source: "legacy".into(),
    }
}

fn lookup_email(address: &str) -> pb::LookupProfileRequest {
    pb::LookupProfileRequest { r#type: pb::IdentifierType::Email as i32, value: address.into(), source: String::new() }
}

fn attribute(profile: &pb::Profile, name: &str) -> Option<String> {
    let value = profile.attributes.as_ref()?.fields.get(name)?;
    match &value.kind {
        Some(prost_types::value::Kind::StringValue(text)) => Some(text.clone()),
        _ => None,
    }
}

async fn created_events(app: &TestApp) -> usize {
    let subjects = outbox_subjects(&app.db.connect().await).await;
    subjects.iter().filter(|(event_type, _)| event_type == "CustomerProfileCreatedEvent").count()
}

/// A spreadsheet export: BOM, `;`, CRLF, a quoted newline, bad rows, a
/// duplicate key and an email another profile holds.
const MESSY: &[u8] = b"\xEF\xBB\xBFCustomer No;First Name;Surname;E-mail;Phone;Date of birth;Notes;Loyalty Tier\r\n\
C1;Ada;Lovelace;ada@example.com;+44 20 7946 0000;1985-12-10;\"likes\r\nmaths\";gold\r\n\
C2;Grace;Hopper;not-an-email;;;;silver\r\n\
;No;Key;nokey@example.com;;;;\r\n\
C3;Alan;Turing;alan@example.com;;19620623;;\r\n\
C1;Ada;Again;ada2@example.com;;;;\r\n\
C4;Bad;Date;bad@example.com;;1990-13-45;;\r\n\
C5;Taken;Email;taken@example.com;;;;\r\n";

async fn a_messy_file_loads_its_good_rows_and_says_why_of_the_others(app: TestApp) {
    let mut admin = app.admin();
    let holder = admin.create_profile(create(person("Tess", "Holder", "taken@example.com"))).await.expect("create");
    let holder = holder.into_inner();
    let before = created_events(&app).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = file(&dir, "customers.csv", MESSY);
    import(&app, TENANT, &path, &[]).await;

    let ada = admin.lookup_profile(lookup_external("C1")).await.expect("C1 loaded").into_inner();
    assert_eq!((ada.given_name.as_str(), ada.family_name.as_str()), ("Ada", "Lovelace"));
    assert_eq!(ada.emails[0].address, "ada@example.com");
    assert_eq!(ada.phones[0].number, "+442079460000");
    assert_eq!(ada.birth_date, "1985-12-10");
    assert_eq!(attribute(&ada, "notes").as_deref(), Some("likes\r\nmaths"), "a quoted line break stays in its cell");
    assert_eq!(attribute(&ada, "loyalty_tier").as_deref(), Some("gold"));
    assert_eq!(ada.lineage.get("given_name").map(|l| l.source.as_str()), Some("legacy"));
    let alan = admin.lookup_profile(lookup_email("alan@example.com")).await.expect("C3 loaded").into_inner();
    assert_eq!(alan.birth_date, "1962-06-23", "YYYYMMDD");
    let taken = admin.lookup_profile(lookup_external("C5")).await.expect("C5 loaded").into_inner();
    assert!(taken.emails.is_empty(), "loaded without the email another profile holds");
    let still = admin.lookup_profile(lookup_email("taken@example.com")).await.expect("held").into_inner();
    assert_eq!(still.id, holder.id);
    assert_eq!(created_events(&app).await - before, 3, "one CustomerProfileCreated per loaded row");

    let errors = rows(&dir.path().join("customers.csv.errors.csv"));
    assert_eq!(errors[0][..3], ["line", "reason", "Customer No"]);
    let by_line: Vec<(&str, &str)> = errors[1..].iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    assert_eq!(by_line.iter().map(|(line, _)| *line).collect::<Vec<_>>(), ["4", "5", "7", "8"], "{errors:?}");
    assert!(by_line[0].1.contains("emails[0].address"), "{}", by_line[0].1);
    assert!(by_line[1].1.contains("key"), "{}", by_line[1].1);
    assert!(by_line[2].1.contains("appeared already on line 2"), "{}", by_line[2].1);
    assert!(by_line[3].1.contains("Date of birth"), "{}", by_line[3].1);
    assert_eq!(errors[1][2..5], ["C2", "Grace", "Hopper"], "the row's own cells follow, to fix and load again");

    let report = rows(&dir.path().join("customers.csv.report.csv"));
    assert_eq!(report[0], ["line", "key", "profile_id", "issue", "identifier", "holder", "detail"]);
    assert_eq!(report.len(), 2, "{report:?}");
    assert_eq!(report[1][..6], ["9", "C5", &taken.id, "identifier_held", "EMAIL:taken@example.com", &holder.id]);
    // Kept for identity resolution too: the row said it, another holds it.
    let tenant = c360_server::domain::TenantId::parse(TENANT).expect("tenant");
    let store = crate::store(&app.db.url).await;
    let held = c360_server::store::identities::held(store.db(), &tenant, None).await.expect("held");
    store.close().await.expect("close");
    let taken_id = c360_server::domain::ProfileId::parse(&taken.id).expect("id");
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[&taken_id].iter().map(ToString::to_string).collect::<Vec<_>>(), ["EMAIL:taken@example.com"]);

    let audit = app.db.connect().await;
    let imports = crate::count(&audit, "audit_events WHERE subject = 'system:import'").await;
    assert!(imports >= 1, "the import is audited as the system principal");
}
on_both!(a_messy_file, a_messy_file_loads_its_good_rows_and_says_why_of_the_others);

/// An app sharing Redis with the imports run against it (`flags`): an
/// import then invalidates the app's cached copies as an RPC's write does.
async fn with_redis(db: c360_tests::TestDb) -> (TestApp, Vec<String>) {
    let prefix = format!("c360test-{}", uuid::Uuid::now_v7().simple());
    let flags = vec![
        "--redis-url".to_owned(),
        c360_tests::redis_url(),
        "--cache-prefix".to_owned(),
        prefix,
        "--cache-key-file".to_owned(),
        c360_tests::test_cache_key_file(),
    ];
    let borrowed: Vec<&str> = flags.iter().map(String::as_str).collect();
    (TestApp::spawn_with(db, &borrowed).await, flags)
}

mod a_re_import {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres() {
        let (app, flags) = super::with_redis(c360_tests::TestDb::postgres().await).await;
        super::a_re_import_changes_nothing_then_follows_the_file(app, flags).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite() {
        let (app, flags) = super::with_redis(c360_tests::TestDb::sqlite()).await;
        super::a_re_import_changes_nothing_then_follows_the_file(app, flags).await;
    }
}

async fn a_re_import_changes_nothing_then_follows_the_file(app: TestApp, flags: Vec<String>) {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let with_flags =
        |extra: &[&'static str]| -> Vec<&str> { flags.iter().copied().chain(extra.iter().copied()).collect() };
    let mut admin = app.admin();
    let dir = tempfile::tempdir().expect("temp dir");
    let v1 = file(
        &dir,
        "v1.csv",
        b"id,given_name,family_name,email\n1,Ada,Lovelace,ada@example.com\n2,Grace,Hopper,grace@example.com\n\
3,Alan,Turing,alan@example.com\n",
    );
    import(&app, TENANT, &v1, &with_flags(&[])).await;
    let (profiles, events) = (count(&app.db.connect().await, "profiles").await, app_events(&app).await);
    assert_eq!(profiles, 3);
    import(&app, TENANT, &v1, &with_flags(&[])).await;
    assert_eq!(count(&app.db.connect().await, "profiles").await, 3, "the same file again creates nothing");
    assert_eq!(app_events(&app).await, events, "and writes nothing");
    let ada = admin.lookup_profile(lookup_external("1")).await.expect("1").into_inner();
    assert_eq!(ada.etag, "1");

    let v2 = file(
        &dir,
        "v2.csv",
        b"id,given_name,family_name,email\n1,Ada,King,ada@example.com\n2,Grace,Hopper,grace@example.com\n\
4,Edsger,Dijkstra,edsger@example.com\n",
    );
    import(&app, TENANT, &v2, &with_flags(&[])).await;
    let ada = admin.lookup_profile(lookup_external("1")).await.expect("1").into_inner();
    assert_eq!((ada.family_name.as_str(), ada.etag.as_str()), ("King", "2"), "a changed row updates its profile");
    let grace = admin.lookup_profile(lookup_external("2")).await.expect("2").into_inner();
    assert_eq!(grace.etag, "1", "an unchanged row is not written");
    admin.lookup_profile(lookup_external("4")).await.expect("a new row is created");
    let alan = admin.lookup_profile(lookup_external("3")).await.expect("a missing row is only reported").into_inner();
    assert_eq!(alan.status, pb::ProfileStatus::Active as i32);
    let report = rows(&dir.path().join("v2.csv.report.csv"));
    assert_eq!(report[1][1..4], ["3", &alan.id, "missing"], "{report:?}");
    assert_eq!(report[1][6], "left as it is");

    import(&app, TENANT, &v2, &with_flags(&["--delete-missing"])).await;
    let gone = admin.get_profile(pb::GetProfileRequest { id: alan.id.clone() }).await.expect("get").into_inner();
    assert_eq!(gone.status, pb::ProfileStatus::Inactive as i32, "--delete-missing marks it INACTIVE");
    let status = admin.lookup_profile(lookup_email("alan@example.com")).await.expect_err("released");
    assert_eq!(status.code(), Code::NotFound);
    let report = rows(&dir.path().join("v2.csv.report.csv"));
    assert_eq!(report[1][6], "marked INACTIVE", "{report:?}");
    import(&app, TENANT, &v2, &with_flags(&["--delete-missing"])).await;
    assert!(!dir.path().join("v2.csv.report.csv").exists(), "nothing left to report: the stale report is removed");
}

async fn app_events(app: &TestApp) -> usize {
    outbox_subjects(&app.db.connect().await).await.len()
}

async fn latin1_files_with_a_mapping_of_address_parts_and_dates(app: TestApp) {
    let mut admin = app.admin();
    let dir = tempfile::tempdir().expect("temp dir");
    let latin1 = b"ACCT\tNAME\tHAUS\tSTRASSE\tORT\tPLZ\tLAND\tGEB\tSTUFE\r\n\
K-7\tM\xDCLLER, J\xDCRGEN\t12\tHauptstra\xDFe\tK\xF6ln\t50667\tde\t03.04.1970\tGold\r\n";
    let path = file(&dir, "kunden.csv", latin1);
    let mapping = file(
        &dir,
        "kunden.toml",
        br#"
key = "ACCT"
encoding = "latin-1"
date_order = "dmy"
[columns]
NAME = "full_name"
GEB = "birth_date"
STUFE = "attribute:tier"
[address]
lines = [["STRASSE", "HAUS"]]
locality = "ORT"
postal_code = "PLZ"
country = "LAND"
"#,
    );
    import(&app, TENANT, &path, &["--mapping", mapping.to_str().expect("utf-8")]).await;
    let juergen = admin.lookup_profile(lookup_external("K-7")).await.expect("loaded").into_inner();
    assert_eq!((juergen.given_name.as_str(), juergen.family_name.as_str()), ("JÜRGEN", "MÜLLER"));
    let address = &juergen.addresses[0];
    assert_eq!(
        (address.lines.clone(), address.locality.as_str(), address.postal_code.as_str(), address.country_code.as_str()),
        (vec!["Hauptstraße 12".to_owned()], "Köln", "50667", "DE")
    );
    assert_eq!(juergen.birth_date, "1970-04-03");
    assert_eq!(attribute(&juergen, "tier").as_deref(), Some("Gold"));

    // The same bytes read as UTF-8: every row refused, naming the flag.
    let again = file(&dir, "again.csv", latin1);
    import(&app, TENANT, &again, &["--mapping", mapping.to_str().expect("utf-8"), "--encoding", "utf-8"]).await;
    let errors = rows(&dir.path().join("again.csv.errors.csv"));
    assert!(errors[1][1].contains("--encoding latin-1"), "{errors:?}");
}
on_both!(latin1_files, latin1_files_with_a_mapping_of_address_parts_and_dates);

/// Runs `c360 export --format csv` of `tenant`; the rows by header.
async fn export(app: &TestApp, tenant: &str, dir: &Path) -> (PathBuf, Vec<std::collections::BTreeMap<String, String>>) {
    let path = dir.join(format!("{tenant}.csv"));
    let args = [
        "c360",
        "export",
        "--tenant",
        tenant,
        "--format",
        "csv",
        "--output",
        path.to_str().expect("utf-8"),
        "--database-url",
        &app.db.url,
        "--data-dir",
        dir.to_str().expect("utf-8"),
    ];
    c360_server::cli::Cli::try_parse_from(args).expect("export arguments").run().await.expect("export");
    let all = rows(&path);
    let records = all[1..].iter().map(|row| all[0].iter().cloned().zip(row.iter().cloned()).collect()).collect();
    (path, records)
}

async fn an_export_imported_into_a_fresh_tenant_round_trips(app: TestApp) {
    let mut admin = app.admin();
    let mut ada = person("Ada", "Lovelace", "ada@example.com");
    ada.emails.push(pb::EmailAddress {
        address: "ada@work.example".into(),
        label: String::new(),
        primary: false,
        lineage: None,
    });
    ada.emails.reverse();
    ada.phones = vec![
        pb::PhoneNumber { number: "+14155550100".into(), label: String::new(), primary: false, lineage: None },
        pb::PhoneNumber { number: "+14155550101".into(), label: String::new(), primary: true, lineage: None },
    ];
    ada.addresses = vec![
        pb::PostalAddress {
            lines: vec!["1 Main St".into(), "Apt 2".into()],
            locality: "Springfield".into(),
            region: "IL".into(),
            postal_code: "62701".into(),
            country_code: "US".into(),
            label: String::new(),
            lineage: None,
        },
        pb::PostalAddress { lines: vec!["9 Elm St".into()], country_code: "US".into(), ..Default::default() },
    ];
    ada.birth_date = "1985-12-10".into();
    ada.segment = "vip".into();
    ada.external_ids = vec![pb::ExternalId { source: "shop".into(), id: "S-1".into(), lineage: None }];
    ada.attributes = Some(prost_types::Struct {
        fields: [(
            "tier".to_owned(),
            prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("gold".into())) },
        )]
        .into(),
    });
    let ada = admin.create_profile(create(ada)).await.expect("create").into_inner();
    let mut acme = crate::organization("Acme, Inc.", "b2b");
    acme.primary_contact_id = ada.id.clone();
    admin.create_profile(create(acme)).await.expect("create");
    admin.create_profile(create(person("Grace", "Hopper", ""))).await.expect("create");

    let dir = tempfile::tempdir().expect("temp dir");
    let (exported, before) = export(&app, TENANT, dir.path()).await;
    import(&app, "fresh", &exported, &[]).await;
    let (_, after) = export(&app, "fresh", dir.path()).await;
    assert_eq!(after.len(), before.len());
    let new_id_of: std::collections::HashMap<String, String> = after
        .iter()
        .map(|row| {
            let legacy = row["external_ids"].split("; ").find_map(|x| x.strip_prefix("legacy:")).expect("legacy id");
            (legacy.to_owned(), row["id"].clone())
        })
        .collect();
    for old in &before {
        let new = after.iter().find(|row| new_id_of[&old["id"]] == row["id"]).expect("imported");
        for column in c360_server::cli::export::CSV_COLUMNS {
            match column {
                "id" | "created_at" | "updated_at" | "version" => {}
                "external_ids" => {
                    let expected = [format!("legacy:{}", old["id"])]
                        .into_iter()
                        .chain(old[column].split("; ").filter(|x| !x.is_empty()).map(str::to_owned))
                        .collect::<Vec<_>>()
                        .join("; ");
                    assert_eq!(new[column], expected, "{column} of {}", old["id"]);
                }
                "primary_contact_id" if !old[column].is_empty() => {
                    assert_eq!(new[column], new_id_of[&old[column]], "the contact is the imported one")
                }
                _ => assert_eq!(new[column], old[column], "{column} of {}", old["id"]),
            }
        }
    }
}
on_both!(export_import_round_trip, an_export_imported_into_a_fresh_tenant_round_trips);

/// An import with Redis reaches running instances' caches as an RPC's write
/// does: an instance that cached "nobody has this email" answers with the
/// imported profile as soon as the import returns.
#[tokio::test]
async fn an_import_with_redis_invalidates_a_running_instances_cache() {
    let (app, flags) = with_redis(c360_tests::TestDb::postgres().await).await;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut admin = app.admin();
    for _ in 0..2 {
        let status = admin.lookup_profile(lookup_email("ada@example.com")).await.expect_err("not yet");
        assert_eq!(status.code(), Code::NotFound);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = file(&dir, "one.csv", b"id,first name,last name,email\n1,Ada,Lovelace,ada@example.com\n");
    import(&app, TENANT, &path, &flags).await;
    let found = admin.lookup_profile(lookup_email("ada@example.com")).await.expect("the cached 'nobody' is gone");
    assert_eq!(found.into_inner().given_name, "Ada");
}

/// Imports `bytes` through the library (no files), returning the summary.
async fn import_summary(app: &TestApp, bytes: &'static [u8], delete_missing: bool) -> c360_server::import::Summary {
    use c360_server::{
        cache::ProfileCache,
        domain::{TenantId, identifiers::NormalizationPolicy},
        import::{ImportOptions, MappingFile},
        store::{SqliteDurability, Store},
    };
    let store = Store::connect(&app.db.url, 3, SqliteDurability::Full, ProfileCache::none()).await.expect("connect");
    let options = ImportOptions {
        tenant: TenantId::parse(TENANT).expect("tenant"),
        source: "legacy".into(),
        mapping: MappingFile::default(),
        delete_missing,
        batch_size: 2,
        parallel: 2,
        policy: NormalizationPolicy::default(),
    };
    let summary = c360_server::import::import(&store, &options, bytes, |_| {}).await.expect("import");
    store.close().await.expect("close");
    let rejected = summary.rejected.len() as u64;
    assert_eq!(summary.read, summary.created + summary.updated + summary.unchanged + rejected, "{summary:?}");
    summary
}

async fn a_partly_loaded_row_is_tried_again_and_deletes_are_careful(app: TestApp) {
    let mut admin = app.admin();
    let holder = admin.create_profile(create(person("Tess", "Holder", "held@example.com"))).await.expect("create");
    let holder = holder.into_inner();
    let file: &[u8] = b"id,name,email\n1,Ada Lovelace,held@example.com\n2,Grace Hopper,grace@example.com\n";
    let first = import_summary(&app, file, false).await;
    assert_eq!((first.read, first.created), (2, 2));
    assert!(matches!(first.noted[0].issue, c360_server::import::Issue::IdentifierHeld { .. }));

    // The holder lets go of the address: the same file now gives it to row 1.
    admin
        .delete_profile(pb::DeleteProfileRequest { id: holder.id.clone(), etag: String::new() })
        .await
        .expect("delete");
    let second = import_summary(&app, file, false).await;
    assert_eq!((second.updated, second.unchanged), (1, 1), "{second:?}");
    let ada = admin.lookup_profile(lookup_external("1")).await.expect("1").into_inner();
    assert_eq!(ada.emails[0].address, "held@example.com");

    // A row whose profile was deleted since comes back as a new profile.
    let grace = admin.lookup_profile(lookup_external("2")).await.expect("2").into_inner();
    admin.delete_profile(pb::DeleteProfileRequest { id: grace.id.clone(), etag: String::new() }).await.expect("delete");
    let third = import_summary(&app, file, false).await;
    assert_eq!((third.created, third.unchanged), (1, 1), "{third:?}");
    let again = admin.lookup_profile(lookup_external("2")).await.expect("2 again").into_inner();
    assert_ne!(again.id, grace.id);

    // --delete-missing touches nothing when a row was rejected (it may be a
    // row whose key could not be read) or the file is empty.
    let bad: &[u8] = b"id,name,email\n1,Ada Lovelace,held@example.com\n2,Grace Hopper,not-an-email\n";
    let careful = import_summary(&app, bad, true).await;
    assert_eq!(careful.rejected.len(), 1);
    let only_header = import_summary(&app, b"id,name,email\n", true).await;
    assert_eq!(only_header.missing(), (2, 0), "{only_header:?}");
    assert!(only_header.delete_missing_skipped.is_some());
    let live = admin.lookup_profile(lookup_external("2")).await.expect("still live").into_inner();
    assert_eq!(live.status, pb::ProfileStatus::Active as i32);
    let audit = app.db.connect().await;
    let runs = crate::count(&audit, "audit_events WHERE action = 'profile.import'").await;
    assert_eq!(runs, 5, "every run is audited, even one that changed nothing");
}
on_both!(partial_rows, a_partly_loaded_row_is_tried_again_and_deletes_are_careful);

async fn keyless_files_and_organizations_with_contacts(app: TestApp) {
    let mut admin = app.admin();
    let file: &[u8] = b"first name,last name,email,phone,company,primary contact\n\
Ada,Lovelace,ada@example.com,,,\n\
Bo,Diddley,,+1 415 555 0100,,\n\
,,,,Acme Ltd,email:ada@example.com\n\
,,,,Globex,email:nobody@example.com\n";
    let first = import_summary(&app, file, false).await;
    assert_eq!((first.created, first.rejected.len()), (4, 0), "{first:?}");
    let ada = admin.lookup_profile(lookup_external("email:ada@example.com")).await.expect("email key").into_inner();
    admin.lookup_profile(lookup_external("phone:+14155550100")).await.expect("phone key");
    let request = pb::SearchProfilesRequest {
        criterion: Some(pb::search_profiles_request::Criterion::NamePrefix("Acme".into())),
        ..Default::default()
    };
    let acme = admin.search_profiles(request).await.expect("search").into_inner().profiles.into_iter().next();
    let acme = acme.expect("the organization");
    assert_eq!(acme.kind, pb::ProfileKind::Organization as i32);
    assert_eq!(acme.primary_contact_id, ada.id, "linked to the row it names");
    let issues: Vec<_> = first.noted.iter().map(|n| &n.issue).collect();
    assert!(
        matches!(issues[..], [c360_server::import::Issue::ContactNotFound { .. }]),
        "Globex names a row that does not exist: {issues:?}"
    );
    let again = import_summary(&app, file, false).await;
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 4), "{again:?}");
}
on_both!(keyless_files, keyless_files_and_organizations_with_contacts);

/// A row keyed by the external id of a profile merged since writes onto the
/// target (which now holds that id); an unmerge gives what it wrote back to
/// the row's own profile, as for any write through a merged id.
async fn a_re_imported_row_of_a_merged_profile_goes_back_with_it_on_unmerge(app: TestApp) {
    use c360_server::auth::Role;
    let mut admin = app.admin();
    let mut identity = app.identity(TENANT, &[Role::Steward]);
    let first: &[u8] = b"id,first name,surname,email,phone,tier\n\
1,Ada,Lovelace,ada@example.com,,gold\n2,Ada,Lovelace,ada.l@example.com,,\n";
    assert_eq!(import_summary(&app, first, false).await.created, 2);
    let ada = admin.lookup_profile(lookup_external("1")).await.expect("1").into_inner();
    let target = admin.lookup_profile(lookup_external("2")).await.expect("2").into_inner();
    let merged = identity
        .merge_profiles(pb::MergeProfilesRequest {
            target_id: target.id.clone(),
            source_ids: vec![ada.id.clone()],
            reason: pb::MergeReason::Duplicate as i32,
            ..Default::default()
        })
        .await
        .expect("merge")
        .into_inner();

    // Row 1 changed in the legacy system: a phone and a new tier.
    let second: &[u8] = b"id,first name,surname,email,phone,tier\n\
1,Ada,Lovelace,ada@example.com,+44 20 7946 0000,platinum\n2,Ada,Lovelace,ada.l@example.com,,\n";
    let summary = import_summary(&app, second, false).await;
    assert_eq!((summary.updated, summary.unchanged), (1, 1), "{summary:?}");
    let written = admin.lookup_profile(lookup_external("1")).await.expect("1 after").into_inner();
    assert_eq!(written.id, target.id, "the row's key is the target's now");
    assert_eq!(written.phones.len(), 1);
    assert_eq!(attribute(&written, "tier").as_deref(), Some("platinum"));

    identity
        .unmerge_profile(pb::UnmergeProfileRequest { merge_id: merged.merge_id, reason: String::new() })
        .await
        .expect("unmerge");
    let back = admin.get_profile(pb::GetProfileRequest { id: ada.id.clone() }).await.expect("get").into_inner();
    assert_eq!(back.redirected_from, "");
    let phones: Vec<&str> = back.phones.iter().map(|p| p.number.as_str()).collect();
    assert_eq!(phones, ["+442079460000"], "what the row wrote went back with its profile");
    assert_eq!(attribute(&back, "tier").as_deref(), Some("platinum"));
    let kept = admin.get_profile(pb::GetProfileRequest { id: target.id.clone() }).await.expect("get").into_inner();
    assert!(kept.phones.is_empty(), "the target keeps nothing the row wrote: {:?}", kept.phones);
    assert_eq!(attribute(&kept, "tier"), None);
    let by_key = admin.lookup_profile(lookup_external("1")).await.expect("1 after unmerge").into_inner();
    assert_eq!(by_key.id, ada.id);

    // The next import finds the row where it belongs: nothing to change.
    let third = import_summary(&app, second, false).await;
    assert_eq!(third.unchanged, 2, "{third:?}");
}
on_both!(import_after_merge, a_re_imported_row_of_a_merged_profile_goes_back_with_it_on_unmerge);
