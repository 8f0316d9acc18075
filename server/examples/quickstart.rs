//! A first call to c360: create a profile (or find the one an earlier run
//! created), read it back, find it by email, record and check a consent.
//! Safe to run again and again.
//!
//! ```sh
//! export C360_TOKEN=$(cargo run -q -- token --tenant demo --role agent)
//! cargo run -q --example quickstart
//! ```
//! `C360_GRPC_URL` overrides the server address (default http://127.0.0.1:50051).

use std::process::ExitCode;

use c360_proto::v1::{
    self as pb, consent_service_client::ConsentServiceClient, consent_subject::Subject,
    profile_service_client::ProfileServiceClient, search_profiles_request::Criterion,
};
use tonic::{Code, Request, Status, metadata::MetadataValue, transport::Channel};
use tonic_types::StatusExt;

const EMAIL: &str = "ada@example.com";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("quickstart: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Every failure as one line a reader can act on.
async fn run() -> Result<(), String> {
    let url = std::env::var("C360_GRPC_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let token = std::env::var("C360_TOKEN").map_err(|_| "set C360_TOKEN first (see `c360 token --help`)")?;
    let bearer: MetadataValue<_> =
        format!("Bearer {token}").parse().map_err(|_| "C360_TOKEN is not a valid header value")?;
    let channel = Channel::from_shared(url.clone())
        .map_err(|e| format!("C360_GRPC_URL {url}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot reach c360 at {url} ({e}); is `c360 serve` running?"))?;
    let auth = move |mut request: Request<()>| {
        request.metadata_mut().insert("authorization", bearer.clone());
        Ok(request)
    };
    let mut profiles = ProfileServiceClient::with_interceptor(channel.clone(), auth.clone());
    let mut consents = ConsentServiceClient::with_interceptor(channel, auth);

    let ada = pb::Profile {
        kind: pb::ProfileKind::Person as i32,
        given_name: "Ada".into(),
        family_name: "Lovelace".into(),
        emails: vec![pb::EmailAddress { address: EMAIL.into(), label: "home".into(), primary: true, lineage: None }],
        phones: vec![pb::PhoneNumber {
            number: "(415) 555-2671".into(),
            label: "mobile".into(),
            primary: true,
            lineage: None,
        }],
        ..Default::default()
    };
    let request =
        pb::CreateProfileRequest { request_id: String::new(), profile: Some(ada), source: "quickstart".into() };
    let profile = match profiles.create_profile(request).await {
        Ok(created) => {
            let created = created.into_inner();
            println!("created {} (etag {}, phone {})", created.id, created.etag, created.phones[0].number);
            created
        }
        // Run before: the email or phone already belongs to that profile.
        Err(status) if status.code() == Code::AlreadyExists => {
            let id = conflicting_profile(&status).ok_or_else(|| one_line(&status))?;
            let found = profiles.get_profile(pb::GetProfileRequest { id }).await.map_err(|s| one_line(&s))?;
            let found = found.into_inner();
            println!("found {} from an earlier run (etag {})", found.id, found.etag);
            found
        }
        Err(status) => return Err(one_line(&status)),
    };

    let fetched = profiles.get_profile(pb::GetProfileRequest { id: profile.id.clone() }).await;
    let fetched = fetched.map_err(|s| one_line(&s))?.into_inner();
    println!("read back: {} {}, completeness {:.2}", fetched.given_name, fetched.family_name, fetched.completeness);

    let email = fetched.emails.first().map_or(EMAIL.to_owned(), |e| e.address.clone());
    let search =
        pb::SearchProfilesRequest { criterion: Some(Criterion::Email(email.to_uppercase())), ..Default::default() };
    let found = profiles.search_profiles(search).await.map_err(|s| one_line(&s))?.into_inner();
    println!("found by email: {:?}", found.profiles.iter().map(|p| &p.id).collect::<Vec<_>>());

    let grant = pb::SetConsentRequest {
        profile_id: profile.id.clone(),
        purpose: pb::ConsentPurpose::EmailMarketing as i32,
        status: pb::ConsentStatus::Granted as i32,
        source: "quickstart".into(),
        evidence: "ticked 'send me news' on the signup form".into(),
        // The same request id on every run: a retry records nothing twice.
        request_id: format!("quickstart-{}", profile.id),
        ..Default::default()
    };
    consents.set_consent(grant).await.map_err(|s| one_line(&s))?;
    let check = pb::CheckConsentRequest {
        subject: Some(pb::ConsentSubject { subject: Some(Subject::Email(email.clone())) }),
        purpose: pb::ConsentPurpose::EmailMarketing as i32,
    };
    let answer = consents.check_consent(check).await.map_err(|s| one_line(&s))?.into_inner();
    let verdict = if answer.allowed { "allowed" } else { "not allowed" };
    println!("email marketing to {email}: {verdict} ({})", answer.explanation);
    Ok(())
}

/// The profile an ALREADY_EXISTS names in its ErrorInfo.
fn conflicting_profile(status: &Status) -> Option<String> {
    status.get_error_details().error_info().and_then(|info| info.metadata.get("conflicting_profile_id").cloned())
}

fn one_line(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}
