//! Serving: shutdown drains in-flight calls; readiness follows the database.

use std::time::Duration;

use c360_tests::TestApp;
use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::{create, person, set_segment};

/// Waits until `condition` holds, checking every 10 ms, for at most 10 s.
async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish() {
    let app = TestApp::spawn().await;
    let created = app.agent().create_profile(create(person("Ada", "Lovelace", ""))).await.expect("create").into_inner();

    // Hold the profile's row lock so the update below stays in flight.
    let db = app.db.connect().await;
    let lock = db.begin().await.expect("begin");
    lock.execute_unprepared(&format!("SELECT 1 FROM profiles WHERE id = '{}' FOR UPDATE", created.id))
        .await
        .expect("lock");
    let mut client = app.agent();
    let request = set_segment(&created.id, "VIP", "");
    let update = tokio::spawn(async move { client.update_profile(request).await });
    let observer = app.db.connect().await;
    wait_until("the update waits on the lock", || async {
        let sql = "SELECT COUNT(*) AS n FROM pg_locks WHERE NOT granted";
        let row = observer.query_one_raw(sea_orm::Statement::from_string(observer.get_database_backend(), sql)).await;
        row.ok().flatten().and_then(|r| r.try_get::<i64>("", "n").ok()).unwrap_or(0) > 0
    })
    .await;

    let grpc_addr = app.grpc_addr;
    let stopping = tokio::spawn(app.stop());
    wait_until("the server stops accepting connections", || async {
        tokio::net::TcpStream::connect(grpc_addr).await.is_err()
    })
    .await;
    assert!(!update.is_finished(), "the update is still in flight during shutdown");

    lock.commit().await.expect("release the lock");
    let updated = update.await.expect("task").expect("the in-flight update completes").into_inner();
    assert_eq!(updated.segment, "VIP");
    stopping.await.expect("task").expect("clean shutdown");
}

/// Reflection lists every service to anyone who can connect: it can be
/// turned off.
#[tokio::test]
async fn reflection_is_served_unless_turned_off() {
    for (flags, served) in [(&[][..], true), (&["--no-reflection"][..], false)] {
        let app = c360_tests::TestApp::spawn_with(c360_tests::TestDb::postgres().await, flags).await;
        let mut grpc = tonic::client::Grpc::new(app.channel());
        grpc.ready().await.expect("ready");
        let path: tonic::codegen::http::uri::PathAndQuery =
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".parse().expect("path");
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let code = match grpc.server_streaming(tonic::Request::new(()), path, codec).await {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        assert_eq!(code != tonic::Code::Unimplemented, served, "{flags:?}: {code:?}");
    }
}
