//! No personal data where it does not belong: after a run that writes,
//! reads, looks up, checks consent and gets errors with a known email and
//! phone, neither the logs (at debug level), the error messages, the metrics,
//! Redis's key names nor the invalidation messages carry them.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use c360_proto::v1 as pb;
use c360_server::auth::Role;
use c360_tests::{TENANT, TestApp, http_get, redis_url};
use futures::StreamExt;

use crate::{create, person, update};

const EMAIL: &str = "leak.canary@example.com";
const PHONE: &str = "+1 415 555 0199";
/// How each value could appear: as sent, normalized, or in parts.
const NEEDLES: [&str; 4] = ["leak.canary", "canary@", "4155550199", "555 0199"];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_clean(place: &str, text: &str) {
    for needle in NEEDLES {
        assert!(!text.contains(needle), "{place} carries '{needle}':\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_errors_metrics_redis_keys_and_messages_carry_no_email_or_phone() {
    // This test binary runs each test in its own process: the global
    // subscriber is this test's alone.
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let app = TestApp::spawn_with_redis(&[]).await;
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut pubsub = client.get_async_pubsub().await.expect("subscribe");
    pubsub.psubscribe("c360test-*").await.expect("psubscribe");
    let messages = Arc::new(Mutex::new(String::new()));
    let collected = messages.clone();
    let listener = tokio::spawn(async move {
        let mut stream = pubsub.into_on_message();
        while let Some(message) = stream.next().await {
            let payload: String = message.get_payload().unwrap_or_default();
            collected.lock().expect("messages").push_str(&payload);
        }
    });

    let mut errors = String::new();
    let mut agent = app.agent();
    let mut ada = person("Ada", "Lovelace", EMAIL);
    ada.phones = vec![pb::PhoneNumber { number: PHONE.into(), ..Default::default() }];
    let created = agent.create_profile(create(ada.clone())).await.expect("create").into_inner();
    // A conflict, a lookup that finds nothing, a bad phone, a bad email.
    errors.push_str(&format!("{:?}", agent.create_profile(create(ada)).await.expect_err("conflict")));
    let missing = pb::LookupProfileRequest {
        r#type: pb::IdentifierType::Email as i32,
        value: "leak.canary@example.org".into(),
        source: String::new(),
    };
    errors.push_str(&format!("{:?}", agent.lookup_profile(missing).await.expect_err("not found")));
    let bad_phone = pb::Profile {
        phones: vec![pb::PhoneNumber { number: "+1 415 555 0199 99".into(), ..Default::default() }],
        ..Default::default()
    };
    errors.push_str(&format!(
        "{:?}",
        agent.update_profile(update(&created.id, &["phones"], "", bad_phone)).await.expect_err("bad phone")
    ));
    let bad_email = pb::Profile {
        emails: vec![pb::EmailAddress { address: "leak.canary@@example.com".into(), ..Default::default() }],
        ..Default::default()
    };
    errors.push_str(&format!(
        "{:?}",
        agent.update_profile(update(&created.id, &["emails"], "", bad_email)).await.expect_err("bad email")
    ));
    // An analyst may not look up by email: refused without echoing it.
    let by_email = pb::LookupProfileRequest {
        r#type: pb::IdentifierType::Email as i32,
        value: EMAIL.into(),
        source: String::new(),
    };
    errors.push_str(&format!("{:?}", app.analyst().lookup_profile(by_email.clone()).await.expect_err("analyst")));

    // Reads through the cache, consent by address, a change of email.
    for _ in 0..2 {
        agent.lookup_profile(by_email.clone()).await.expect("lookup");
        agent.get_profile(pb::GetProfileRequest { id: created.id.clone() }).await.expect("get");
    }
    let mut consents = app.consents(TENANT, &[Role::Service]);
    let check = pb::CheckConsentRequest {
        subject: Some(pb::ConsentSubject { subject: Some(pb::consent_subject::Subject::Email(EMAIL.into())) }),
        purpose: pb::ConsentPurpose::EmailMarketing as i32,
    };
    consents.check_consent(check).await.expect("check");
    let unknown = pb::CheckConsentRequest {
        subject: Some(pb::ConsentSubject {
            subject: Some(pb::consent_subject::Subject::Email("leak.canary@example.net".into())),
        }),
        purpose: pb::ConsentPurpose::EmailMarketing as i32,
    };
    errors.push_str(&format!("{:?}", consents.check_consent(unknown).await.expect_err("unknown address")));
    let moved = pb::Profile {
        emails: vec![pb::EmailAddress { address: "leak.canary2@example.com".into(), ..Default::default() }],
        ..Default::default()
    };
    agent.update_profile(update(&created.id, &["emails"], "", moved)).await.expect("change email");
    agent
        .delete_profile(pb::DeleteProfileRequest { id: created.id.clone(), etag: String::new() })
        .await
        .expect("delete");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    assert_clean("error messages", &errors);
    assert_clean("metrics", &http_get(app.http_addr, "/metrics").await);
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS").arg("c360test-*").query_async(&mut conn).await.expect("keys");
    assert!(keys.iter().any(|k| k.contains(":l:")), "lookups were cached in Redis: {keys:?}");
    assert_clean("Redis key names", &keys.join("\n"));
    let published = messages.lock().expect("messages").clone();
    assert!(published.contains("\tL\t") || published.contains("L\t"), "invalidations were published: {published}");
    assert_clean("invalidation messages", &published);
    listener.abort();
    let logged = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf-8 logs");
    assert!(logged.contains("DEBUG") || logged.contains("INFO"), "the logs were captured");
    assert_clean("logs", &logged);
}
