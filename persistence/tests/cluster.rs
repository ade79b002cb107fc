//! The cluster port on Postgres (`ClusterStore` for `PgStore`) and the fenced writes, each
//! test on its own fresh database: lease takeover races, epochs, release and restart,
//! fencing of journal and snapshot writes (with a real concurrent transaction holding the
//! lease row), id ranges from many tasks, and membership. Every wait is bounded.

use std::future::Future;
use std::time::Duration;

use consult_actors::cluster::{ClusterStore, Fence, NodeIdentity};
use consult_actors::{Store, StoreError};
use consult_persistence::{testing, PgStore};

/// How long any one wait in these tests may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

/// A lease TTL long enough that nothing expires during a test unless it means to.
const LONG_TTL: Duration = Duration::from_secs(600);

/// Runs `test` on a fresh Postgres database, then drops it, even if the test panicked.
/// Skips (returns) when Postgres is unreachable outside CI.
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(PgStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((store, name)) = testing::fresh_postgres().await else {
        return;
    };
    let handle = store.clone();
    let outcome = tokio::time::timeout(Duration::from_secs(120), tokio::spawn(test(store))).await;
    handle.close().await;
    testing::drop_postgres(&name).await;
    match outcome {
        Err(_) => panic!("test did not finish within 120 s"),
        Ok(Err(e)) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task did not finish: {e}"),
        },
        Ok(Ok(())) => {}
    }
}

fn node(url: &str, incarnation: i64) -> NodeIdentity {
    NodeIdentity {
        advertise_url: url.to_owned(),
        incarnation,
    }
}

fn fence(shard: u32, epoch: u64) -> Fence {
    Fence { shard, epoch }
}

/// The store's cluster port, as the engine gets it.
fn cluster(store: &PgStore) -> std::sync::Arc<dyn ClusterStore> {
    store.cluster().expect("Postgres has a cluster port")
}

// ---------------------------------------------------------------------------------------
// Shard preparation

#[tokio::test]
async fn prepare_shards_is_idempotent_and_refuses_another_shard_count() {
    on_postgres(|store| async move {
        let c = cluster(&store);
        c.prepare_shards(8).await.expect("first prepare");
        c.prepare_shards(8)
            .await
            .expect("second prepare, same count");
        let view = c.cluster_view(LONG_TTL).await.expect("view");
        assert_eq!(
            view.leases.iter().map(|l| l.shard).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        assert!(view
            .leases
            .iter()
            .all(|l| l.owner.is_none() && l.epoch == 0 && !l.live));
        match c.prepare_shards(16).await {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains("8") && message.contains("16"), "{message}");
            }
            other => panic!("another shard count must be refused, got {other:?}"),
        }
        assert_eq!(
            c.cluster_view(LONG_TTL).await.expect("view").leases.len(),
            8
        );
    })
    .await;
}
