//! The account cache follows registry edits at once (a trigger notifies, the cache forgets).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use warden_ingest::DeviceCache;
use warden_store::{DeviceProtocol, Store};

async fn resolves_to(
    cache: &DeviceCache,
    account: &str,
    want: Option<DeviceProtocol>,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = cache
            .resolve(account)
            .await
            .expect("resolve")
            .map(|d| d.protocol);
        if got == want {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrations = "../warden-store/migrations")]
async fn a_unit_registered_moved_or_removed_is_seen_by_the_cache_at_once(pool: PgPool) {
    let cache = DeviceCache::load(Store::from_pool(pool.clone()))
        .await
        .expect("load");
    let stop = CancellationToken::new();
    let follower = tokio::spawn(cache.clone().follow(stop.clone()));
    // "No such account" is remembered (10 s without notices); the listener must make a
    // registration visible long before that.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(resolves_to(&cache, "7777", None, Duration::ZERO).await);
    sqlx::query("INSERT INTO devices (account, protocol) VALUES ('7777', 'contact_id')")
        .execute(&pool)
        .await
        .expect("register");
    assert!(
        resolves_to(
            &cache,
            "7777",
            Some(DeviceProtocol::ContactId),
            Duration::from_secs(2)
        )
        .await,
        "a new registration is used at once"
    );
    sqlx::query("UPDATE devices SET protocol = 'mqtt' WHERE account = '7777'")
        .execute(&pool)
        .await
        .expect("move");
    assert!(
        resolves_to(
            &cache,
            "7777",
            Some(DeviceProtocol::Mqtt),
            Duration::from_secs(2)
        )
        .await,
        "a protocol change is used at once"
    );
    stop.cancel();
    follower.await.expect("follower");
}

/// Following the registry keeps what was loaded: a restart followed by a storm must not ask
/// the database once per unit on the ingest path. The cache knows every device without a
/// single `resolve` miss, also after the listener connected (it reads the registry again
/// then rather than emptying the cache).
#[sqlx::test(migrations = "../warden-store/migrations")]
async fn following_the_registry_keeps_every_device_known(pool: PgPool) {
    sqlx::query(
        "INSERT INTO devices (account, protocol) \
         SELECT 'u' || g, 'mqtt' FROM generate_series(1, 500) AS g",
    )
    .execute(&pool)
    .await
    .expect("register");
    let cache = DeviceCache::load(Store::from_pool(pool.clone()))
        .await
        .expect("load");
    assert_eq!(cache.len(), 500);
    // Registered after the load and before anyone listened: only reading the registry
    // again when the follower connects can know it.
    sqlx::query("INSERT INTO devices (account, protocol) VALUES ('late', 'mqtt')")
        .execute(&pool)
        .await
        .expect("register late");
    let stop = CancellationToken::new();
    let follower = tokio::spawn(cache.clone().follow(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while cache.len() != 501 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        cache.len(),
        501,
        "every registered device stays known while followed"
    );
    stop.cancel();
    follower.await.expect("follower");
}

/// A start while the database is unavailable attributes signals from the registry's last
/// snapshot: a unit registered while the daemon ran (notified, not read whole at start) is
/// in it, an account it does not hold is unregistered, and without a snapshot a lookup is an
/// error (not durable), never a guess.
#[sqlx::test(migrations = "../warden-store/migrations")]
async fn the_registry_snapshot_answers_a_start_without_the_database(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let cache = DeviceCache::load(store.clone()).await.expect("load");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("devices.snapshot.json");
    cache.keep_snapshot(path.clone());
    let stop = CancellationToken::new();
    let follower = tokio::spawn(cache.clone().follow(stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    store
        .upsert_device(&warden_store::NewDevice::new(
            "7001",
            DeviceProtocol::ContactId,
        ))
        .await
        .expect("register");
    assert!(
        resolves_to(
            &cache,
            "7001",
            Some(DeviceProtocol::ContactId),
            Duration::from_secs(5)
        )
        .await
    );
    // The follower reads the registry again after the notice, and keeps it.
    let kept = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if std::fs::read_to_string(&path).is_ok_and(|t| t.contains("7001")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        kept.is_ok(),
        "the snapshot holds the unit registered while running"
    );
    stop.cancel();
    let _ = follower.await;

    // Nothing listens on port 9: every question to this "database" fails.
    let absent = Store::connect_lazy("postgres://nobody@127.0.0.1:9/none", 1).expect("url");
    let restarted = DeviceCache::from_snapshot(absent.clone(), &path);
    let found = restarted.resolve("7001").await.expect("from the snapshot");
    assert_eq!(found.map(|d| d.protocol), Some(DeviceProtocol::ContactId));
    assert_eq!(restarted.resolve("9999").await.expect("answered"), None);
    let blind = DeviceCache::from_snapshot(absent, &dir.path().join("missing.json"));
    assert!(
        blind.resolve("7001").await.is_err(),
        "no snapshot: not a guess"
    );
}
