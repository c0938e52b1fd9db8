//! Warden's MQTT ingest running in-process against a test database (the pool
//! `#[sqlx::test]` hands a test): the group-commit writer, the device cache and, when asked,
//! the triage engine behind it, all stopped by one token. The broker is a real [`Mosquitto`].
//!
//! [`Mosquitto`]: crate::Mosquitto

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use warden_ingest::mqtt::{MqttConfig, run};
use warden_ingest::{DeviceCache, Ingest};
use warden_store::{Store, WriterConfig, spawn_writer};

/// MQTT ingest running in a task until [`IngestTask::stop`].
#[derive(Debug)]
pub struct IngestTask {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl IngestTask {
    /// Starts ingest over MQTT with `config` into `pool`'s database, with the triage engine
    /// behind it when `triage`.
    pub async fn mqtt(pool: &PgPool, config: MqttConfig, triage: bool) -> Self {
        let store = Store::from_pool(pool.clone());
        let devices = DeviceCache::load(store.clone()).await.expect("cache");
        let stop = CancellationToken::new();
        let (writer, _) = spawn_writer(store.clone(), WriterConfig::default(), stop.child_token());
        let engine = if triage {
            let (engine, _) = warden_engine::spawn(
                store.clone(),
                warden_engine::EngineConfig::default(),
                stop.child_token(),
            )
            .await
            .expect("triage engine");
            Some(engine)
        } else {
            None
        };
        let ingest = Ingest::new(writer, devices, store, engine);
        let task = tokio::spawn(run(config, ingest, stop.clone()));
        Self { stop, task }
    }

    /// Cancels ingest and waits until its task has ended.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
