//! `c360 dedupe` compares the attributes a tenant maps for matching (a
//! national id): the tenant setting `match_attribute_keys`, or
//! `--match-attribute` for one run.

use std::collections::HashMap;

use c360_proto::v1 as pb;
use c360_server::auth::Role;
use c360_tests::{TENANT, TestApp};
use clap::Parser;

use crate::import::{file, import};

const GIVEN: [&str; 20] = [
    "Anna", "Bartosz", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hiroshi", "Ines", "Jonas", "Kalinda", "Lucas",
    "Marta", "Nikolai", "Olga", "Pedro", "Quentin", "Rosa", "Stefan", "Tamsin",
];
const FAMILY: [&str; 24] = [
    "Abara",
    "Bjornsson",
    "Castellano",
    "Dimitrov",
    "Eriksen",
    "Fontaine",
    "Gallagher",
    "Horvath",
    "Ivanova",
    "Jankowski",
    "Kowalczyk",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Oyelaran",
    "Petrovic",
    "Quispe",
    "Rossetti",
    "Sandoval",
    "Tanaka",
    "Ulrich",
    "Vasquez",
    "Whitfield",
    "Zielinski",
];
const CITIES: [&str; 8] = ["Leeds", "Lyon", "Porto", "Gdansk", "Graz", "Turku", "Malmo", "Cork"];

/// How many people the file holds before its duplicates.
const PEOPLE: usize = 300;
/// Duplicates that carry the same national id under a new family name, in
/// another town, with nothing else but the given name and birth date.
const RENAMED: usize = 20;

/// A file of people with a national id: every tenth duplicated (moved
/// house, or with a typo in the family name, as most duplicates are), and [`RENAMED`] people found again
/// under a new family name in another town. Each row's key is its line's
/// `id`; the renamed pairs are returned by key.
pub fn people() -> (String, Vec<(String, String)>) {
    let mut csv = String::from("id,given name,surname,date of birth,city,email,national_id\n");
    let mut state: u64 = 0x5eed;
    let mut next = |below: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % below
    };
    let mut renamed = Vec::new();
    for i in 0..PEOPLE {
        // Each person's full name is their own (20 × 24 > PEOPLE).
        let (given, family) = (GIVEN[i % GIVEN.len()], FAMILY[(i / GIVEN.len()) % FAMILY.len()]);
        let birth = format!("19{:02}-{:02}-{:02}", 40 + next(60), 1 + next(12), 1 + next(28));
        let city = CITIES[next(CITIES.len())];
        let national = format!("{:09}", 100_000_000 + next(899_999_999));
        let email = format!("{}.{}{i}@example.com", given.to_lowercase(), family.to_lowercase());
        csv += &format!("p{i},{given},{family},{birth},{city},{email},{national}\n");
        if i % 20 == 0 {
            // Moved house since.
            let town = CITIES[(CITIES.iter().position(|c| *c == city).unwrap_or(0) + 1) % CITIES.len()];
            csv += &format!("d{i},{given},{family},{birth},{town},,{national}\n");
        } else if i % 10 == 0 {
            // A typo in the family name: the last two letters swapped.
            let mut typo: Vec<char> = family.chars().collect();
            let n = typo.len();
            typo.swap(n - 1, n - 2);
            let typo: String = typo.into_iter().collect();
            csv += &format!("d{i},{given},{typo},{birth},{city},,{national}\n");
        }
        if i % (PEOPLE / RENAMED) == 1 {
            let other = FAMILY[(FAMILY.iter().position(|f| *f == family).unwrap_or(0) + 7) % FAMILY.len()];
            let town = CITIES[(CITIES.iter().position(|c| *c == city).unwrap_or(0) + 3) % CITIES.len()];
            csv += &format!("r{i},{given},{other},{birth},{town},,{national}\n");
            renamed.push((format!("p{i}"), format!("r{i}")));
        }
    }
    (csv, renamed)
}

/// Runs `c360 dedupe --dry-run` with `extra` arguments; the probability of
/// every candidate pair exported, by the pair's row keys (sorted).
pub async fn scored(app: &TestApp, extra: &[&str]) -> HashMap<(String, String), f64> {
    exported(app, &[&["--dry-run"], extra].concat()).await
}

/// Runs `c360 dedupe` with `extra` arguments, exporting every pair it
/// scored; their probabilities by the pair's row keys (sorted).
pub async fn exported(app: &TestApp, extra: &[&str]) -> HashMap<(String, String), f64> {
    let dir = tempfile::tempdir().expect("temp dir");
    let pairs = dir.path().join("pairs.csv");
    let mut args = vec![
        "c360",
        "dedupe",
        "--tenant",
        TENANT,
        "--export-pairs",
        pairs.to_str().expect("utf-8"),
        "--export-from",
        "0",
        "--source",
        "legacy",
        "--database-url",
        &app.db.url,
        "--data-dir",
        dir.path().to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    c360_server::cli::Cli::try_parse_from(args).expect("dedupe arguments").run().await.expect("dedupe");
    let mut reader = csv::Reader::from_path(&pairs).expect("pairs");
    reader
        .records()
        .map(|record| {
            let record = record.expect("row");
            let (a, b) = (record[0].to_owned(), record[1].to_owned());
            let key = if a < b { (a, b) } else { (b, a) };
            (key, record[4].parse().expect("probability"))
        })
        .collect()
}

async fn a_mapped_attribute_is_evidence_when_the_tenant_matches_on_it(app: TestApp) {
    let (csv, renamed) = people();
    let dir = tempfile::tempdir().expect("temp dir");
    import(&app, TENANT, &file(&dir, "people.csv", csv.as_bytes()), &[]).await;

    let without = scored(&app, &[]).await;
    let with = scored(&app, &["--match-attribute", "national_id"]).await;
    let probability = |pairs: &HashMap<(String, String), f64>, (a, b): &(String, String)| {
        let key = if a < b { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
        pairs.get(&key).copied().unwrap_or(0.0)
    };
    // Renamed and moved, the same person is a stranger by name and town; the
    // national id they share is what says otherwise.
    for pair in &renamed {
        let (before, after) = (probability(&without, pair), probability(&with, pair));
        assert!(before < 0.9, "{pair:?} without the national id: {before}");
        assert!(after >= 0.9, "{pair:?} with the national id: {after} (was {before})");
    }
    // People who share no national id are not brought closer by it.
    let strangers = with.iter().filter(|((a, b), _)| a[1..] != b[1..]).count();
    let raised: Vec<_> = with.iter().filter(|((a, b), p)| a[1..] != b[1..] && **p >= 0.9).collect();
    assert!(strangers > 0, "the run compared people who are not one");
    assert!(raised.is_empty(), "no two people of different national ids reach review: {raised:?}");

    // The tenant setting does what the flag did, for every run.
    let mut admin = app.tenants(TENANT, &[Role::Admin]);
    let request = pb::UpdateTenantSettingsRequest {
        settings: Some(pb::TenantSettings { match_attribute_keys: vec!["national_id".into()], ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["match_attribute_keys".into()] }),
        etag: String::new(),
    };
    let set = admin.update_tenant_settings(request).await.expect("update").into_inner();
    assert_eq!(set.match_attribute_keys, ["national_id"]);
    // Each key is a field of the model: a tenant may name twenty.
    let many = pb::UpdateTenantSettingsRequest {
        settings: Some(pb::TenantSettings {
            match_attribute_keys: (0..21).map(|i| format!("key{i}")).collect(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["match_attribute_keys".into()] }),
        etag: String::new(),
    };
    let refused = admin.update_tenant_settings(many).await.expect_err("too many keys");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(crate::violated_fields(&refused), ["match_attribute_keys"]);
    let configured = scored(&app, &[]).await;
    for pair in &renamed {
        assert_eq!(probability(&configured, pair), probability(&with, pair), "{pair:?}");
    }
}
on_both!(
    a_mapped_attribute_is_evidence_when_the_tenant_matches_on_it,
    a_mapped_attribute_is_evidence_when_the_tenant_matches_on_it
);

/// Runs `c360 model ARGS --tenant TENANT` against `app`'s database; what it printed.
async fn model(app: &TestApp, args: &[&str]) -> anyhow::Result<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut full = vec!["c360", "model"];
    full.extend_from_slice(args);
    full.extend(["--tenant", TENANT, "--database-url", &app.db.url, "--data-dir", dir.path().to_str().expect("utf-8")]);
    let mut out = Vec::new();
    c360_server::cli::Cli::try_parse_from(full)?.run_to(&mut out).await?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

/// log2 of the odds of `p`.
fn weight(p: f64) -> f64 {
    (p / (1.0 - p)).log2()
}

async fn a_pinned_model_scores_every_run_as_it_was_set(app: TestApp) {
    let (csv, _) = people();
    let dir = tempfile::tempdir().expect("temp dir");
    import(&app, TENANT, &file(&dir, "people.csv", csv.as_bytes()), &[]).await;
    let starting: serde_json::Value =
        serde_json::from_str(&model(&app, &["show", "--json"]).await.expect("show")).expect("json");
    let with_prior = |prior: f64| {
        let mut model = starting.clone();
        model["prior"] = prior.into();
        file(&dir, &format!("model-{prior}.json"), model.to_string().as_bytes())
    };

    // A model that does not say what the engine compares is refused.
    let mut broken = starting.clone();
    broken["comparisons"][0]["levels"].as_array_mut().expect("levels").pop();
    let broken = file(&dir, "broken.json", broken.to_string().as_bytes());
    let refused = model(&app, &["set", "--file", broken.to_str().expect("utf-8")]).await.expect_err("refused");
    assert!(refused.to_string().contains("given_name has the levels"), "{refused}");

    let set = model(&app, &["set", "--file", with_prior(0.01).to_str().expect("utf-8")]).await.expect("set");
    assert!(set.contains("model version 1 pinned"), "{set}");
    assert!(model(&app, &["show"]).await.expect("show").contains("pinned"));
    let low = scored(&app, &[]).await;
    model(&app, &["set", "--file", with_prior(0.5).to_str().expect("utf-8")]).await.expect("set");
    let high = scored(&app, &[]).await;
    // Scored with the weights as set, nothing estimated: the prior alone
    // moved, so every pair's weight moved by the prior's.
    let shift = weight(0.5) - weight(0.01);
    let mut compared = 0;
    for (pair, &p) in &low {
        let Some(&q) = high.get(pair) else { continue };
        if (0.001..=0.999).contains(&p) && (0.001..=0.999).contains(&q) {
            assert!((weight(q) - weight(p) - shift).abs() < 0.01, "{pair:?}: {p} then {q}");
            compared += 1;
        }
    }
    assert!(compared > 0, "pairs to compare");

    // A run that merges keeps the pinned model in force as it was.
    let data_dir = tempfile::tempdir().expect("temp dir");
    let args = ["c360", "dedupe", "--tenant", TENANT, "--database-url", &app.db.url, "--data-dir"];
    let args = [&args[..], &[data_dir.path().to_str().expect("utf-8")]].concat();
    c360_server::cli::Cli::try_parse_from(args).expect("arguments").run().await.expect("dedupe");
    let shown: serde_json::Value =
        serde_json::from_str(&model(&app, &["show", "--json"]).await.expect("show")).expect("json");
    assert_eq!(
        (shown["version"].as_u64(), shown["pinned"].as_bool(), shown["prior"].as_f64()),
        (Some(2), Some(true), Some(0.5))
    );

    let unpinned = model(&app, &["unpin"]).await.expect("unpin");
    assert!(unpinned.contains("model version 3 in force"), "{unpinned}");
    let again = model(&app, &["unpin"]).await.expect_err("not pinned");
    assert!(again.to_string().contains("not pinned"), "{again}");
}
on_both!(a_pinned_model_scores_every_run_as_it_was_set, a_pinned_model_scores_every_run_as_it_was_set);

async fn placeholders_and_the_tenants_blocklist_pair_no_one(app: TestApp) {
    let (mut csv, _) = people();
    // Strangers sharing a placeholder email, and strangers sharing the
    // shop's own address typed for customers who gave none: each second
    // one is loaded without it (another profile holds it) and kept as
    // what its record said.
    csv += "j1,Ann,Smith,1971-02-03,Leeds,noemail@noemail.example,\n";
    csv += "j2,Bob,Jones,1982-04-05,York,noemail@noemail.example,\n";
    csv += "j3,Cara,Brown,1963-06-07,Leeds,info@shop.example,\n";
    csv += "j4,Dev,Patel,1994-08-09,York,info@shop.example,\n";
    let dir = tempfile::tempdir().expect("temp dir");
    import(&app, TENANT, &file(&dir, "people.csv", csv.as_bytes()), &[]).await;
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());

    let before = scored(&app, &[]).await;
    assert!(!before.contains_key(&pair("j1", "j2")), "a placeholder pairs no one");
    assert!(before.contains_key(&pair("j3", "j4")), "a shared email pairs its holders");

    let mut admin = app.tenants(TENANT, &[Role::Admin]);
    let blocklist = |values: Vec<String>| pb::UpdateTenantSettingsRequest {
        settings: Some(pb::TenantSettings { match_blocklist: values, ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["match_blocklist".into()] }),
        etag: String::new(),
    };
    let refused = admin.update_tenant_settings(blocklist(vec!["x".repeat(201)])).await.expect_err("too long");
    assert_eq!(crate::violated_fields(&refused), ["match_blocklist[0]"]);
    let set = admin.update_tenant_settings(blocklist(vec!["Info@Shop.example".into()])).await.expect("set");
    assert_eq!(set.into_inner().match_blocklist, ["Info@Shop.example"]);
    let after = scored(&app, &[]).await;
    assert!(!after.contains_key(&pair("j3", "j4")), "the tenant's own junk pairs no one either");
    assert_eq!(after.len() + 1, before.len(), "nothing else changed: {} then {}", before.len(), after.len());
}
on_both!(placeholders_and_the_tenants_blocklist_pair_no_one, placeholders_and_the_tenants_blocklist_pair_no_one);
