//! Creating a connection's messages and handing them to rumqttc.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Creates a connection's messages and hands them to rumqttc.
pub(super) struct Publisher {
    pub(super) shared: Arc<FleetShared>,
    pub(super) conn: Arc<Conn>,
    pub(super) client: AsyncClient,
    pub(super) rng: Rng,
    /// Messages created per unit, for `msg_id`.
    pub(super) counters: Vec<u64>,
    pub(super) order: u64,
}

impl Publisher {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        stop: CancellationToken,
        finish: CancellationToken,
    ) {
        let shared = Arc::clone(&self.shared);
        let config = &shared.config;
        let mut heap = BinaryHeap::new();
        let start = Instant::now();
        for d in self.conn.devices.clone() {
            let at = start + self.rng.duration_below(config.heartbeat_interval);
            self.push(&mut heap, at, Job::Heartbeat(d));
        }
        #[allow(clippy::cast_precision_loss)]
        let share = self.conn.devices.len() as f64 / self.shared.ids.len() as f64;
        let alarm_rate = config.alarm_rate_per_s * share;
        let mut next_alarm = (alarm_rate > 0.0).then(|| start + self.rng.exponential(alarm_rate));
        let mut generation = self.conn.generation.subscribe();
        let mut stopping = false;
        let mut commands_open = true;
        loop {
            let next_job = heap.peek().map(|e: &Entry| e.at);
            let wake = [next_job, next_alarm]
                .into_iter()
                .flatten()
                .min()
                .filter(|_| !stopping)
                .unwrap_or_else(|| Instant::now() + Duration::from_hours(1));
            tokio::select! {
                biased;
                // Cancel-safe: cancellation tokens only report a flag.
                () = finish.cancelled() => break,
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    heap.clear();
                    next_alarm = None;
                }
                // Cancel-safe: `changed` marks nothing seen unless it completes.
                changed = generation.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if !self.reconnected(stopping, &finish).await {
                        break;
                    }
                }
                // Cancel-safe: `recv` loses no message when dropped before completing.
                cmd = commands.recv(), if commands_open && !stopping => match cmd {
                    Some(Command::Schedule(jobs)) => {
                        for (at, job) in jobs {
                            self.push(&mut heap, at, job);
                        }
                    }
                    None => commands_open = false,
                },
                // Cancel-safe: a timer holds no data; `wake` is recomputed each turn.
                () = sleep_until(wake), if !stopping => {
                    if !self.fire_due(&mut heap, &mut next_alarm, alarm_rate, &finish).await {
                        break;
                    }
                }
            }
        }
    }

    pub(super) fn push(&mut self, heap: &mut BinaryHeap<Entry>, at: Instant, job: Job) {
        self.order += 1;
        heap.push(Entry {
            at,
            order: self.order,
            job,
        });
    }

    /// Publishes every job that is due. Returns false when the fleet is finishing.
    pub(super) async fn fire_due(
        &mut self,
        heap: &mut BinaryHeap<Entry>,
        next_alarm: &mut Option<Instant>,
        alarm_rate: f64,
        finish: &CancellationToken,
    ) -> bool {
        let now = Instant::now();
        while heap.peek().is_some_and(|e| e.at <= now) {
            let Some(entry) = heap.pop() else { break };
            if let Job::Heartbeat(d) = entry.job {
                let next = entry.at + self.shared.config.heartbeat_interval;
                self.push(heap, next, Job::Heartbeat(d));
            }
            if !self.publish_job(entry.job, finish).await {
                return false;
            }
        }
        while let Some(at) = *next_alarm
            && at <= now
        {
            *next_alarm = Some(at + self.rng.exponential(alarm_rate));
            let devices = self.conn.devices.clone();
            let d = devices.start + self.rng.below(devices.len());
            if let Some(kind) = self.rng.pick(&self.shared.config.alarm_mix)
                && !self.publish_job(Job::Alarm(d, kind), finish).await
            {
                return false;
            }
        }
        true
    }

    /// After a (re)connect: every unit says it is online (unless the fleet is stopping), then
    /// messages lost with the previous connection go again.
    pub(super) async fn reconnected(&mut self, stopping: bool, finish: &CancellationToken) -> bool {
        if !stopping {
            for d in self.conn.devices.clone() {
                let msg_id = self.next_msg_id(d);
                let body = payload(Some(msg_id.clone()), self.sent_at(), |p| {
                    p.presence = Some(Presence::Online);
                });
                let idx = self.record(d, msg_id, "presence", true, None);
                if !self.hand_over(idx, body_bytes(&body), finish).await {
                    return false;
                }
            }
        }
        let retry = std::mem::take(&mut self.conn.lock().retry);
        if !retry.is_empty() {
            info!(messages = retry.len(), "publishing again after reconnect");
        }
        for idx in retry {
            let unsent = self.conn.lock().unsent.get(&idx).map(|(_, p)| p.clone());
            if let Some(bytes) = unsent
                && !self.hand_over(idx, bytes, finish).await
            {
                return false;
            }
        }
        true
    }

    pub(super) async fn publish_job(&mut self, job: Job, finish: &CancellationToken) -> bool {
        let (idx, bytes) = match job {
            Job::Heartbeat(d) => {
                let msg_id = self.next_msg_id(d);
                let interval = u32::try_from(self.shared.config.heartbeat_interval.as_secs()).ok();
                let body = payload(Some(msg_id.clone()), self.sent_at(), |p| {
                    p.heartbeat = Some(Heartbeat {
                        interval_s: interval,
                    });
                });
                (
                    self.record(d, msg_id, "heartbeat", true, None),
                    body_bytes(&body),
                )
            }
            Job::Alarm(d, kind) => {
                let msg_id = self.next_msg_id(d);
                let body = payload(Some(msg_id.clone()), self.sent_at(), |p| {
                    p.alarm = Some(Alarm {
                        kind,
                        restore: false,
                        zone: None,
                    });
                });
                (
                    self.record(d, msg_id, alarm_name(kind), true, None),
                    body_bytes(&body),
                )
            }
            Job::Raw {
                device,
                topic,
                payload,
            } => {
                let label = format!("raw-{}", self.order_next());
                let idx = self.record_raw(device, label, topic);
                (idx, payload)
            }
        };
        self.hand_over(idx, bytes, finish).await
    }

    pub(super) fn order_next(&mut self) -> u64 {
        self.order += 1;
        self.order
    }

    pub(super) fn sent_at(&self) -> Option<String> {
        if self.shared.config.sent_at {
            now_rfc3339()
        } else {
            None
        }
    }

    pub(super) fn next_msg_id(&mut self, device: usize) -> String {
        let local = device - self.conn.devices.start;
        self.counters[local] += 1;
        format!(
            "{}-{}-{}",
            self.shared.ids[device], self.shared.run_tag, self.counters[local]
        )
    }

    pub(super) fn record(
        &mut self,
        device: usize,
        msg_id: String,
        kind: &'static str,
        valid: bool,
        topic: Option<Arc<str>>,
    ) -> usize {
        let topic = topic.unwrap_or_else(|| Arc::clone(&self.shared.topics[device]));
        self.push_record(
            Arc::clone(&self.shared.ids[device]),
            msg_id.into(),
            kind,
            valid,
            topic,
        )
    }

    pub(super) fn record_raw(&mut self, device: Arc<str>, label: String, topic: Arc<str>) -> usize {
        self.push_record(device, label.into(), "raw", false, topic)
    }

    pub(super) fn push_record(
        &mut self,
        device: Arc<str>,
        msg_id: Arc<str>,
        kind: &'static str,
        valid: bool,
        topic: Arc<str>,
    ) -> usize {
        let mut state = self.conn.lock();
        state.records.push(MessageRecord {
            device,
            msg_id,
            kind,
            valid,
            queued_at: Instant::now(),
            published_at: None,
            pubacked_at: None,
            publishes: 0,
        });
        let idx = state.records.len() - 1;
        state.unsent.insert(idx, (topic, Vec::new()));
        idx
    }

    /// Hands a message to rumqttc, waiting while its channel is full. Returns false when the
    /// fleet is finishing.
    pub(super) async fn hand_over(
        &mut self,
        idx: usize,
        bytes: Vec<u8>,
        finish: &CancellationToken,
    ) -> bool {
        let topic = {
            let mut state = self.conn.lock();
            let Some(entry) = state.unsent.get_mut(&idx) else {
                // Acknowledged in the meantime (a retry that raced its PUBACK).
                return true;
            };
            entry.1.clone_from(&bytes);
            let topic = Arc::clone(&entry.0);
            // Into the FIFO before the channel, so the event loop can never see the publish
            // first.
            state.fifo.push_back(idx);
            if let Some(r) = state.records.get_mut(idx) {
                r.publishes += 1;
            }
            topic
        };
        let sent = tokio::select! {
            biased;
            // Cancel-safe: a send dropped before completing leaves nothing in the channel.
            () = finish.cancelled() => None,
            r = self.client.publish(topic.to_string(), QoS::AtLeastOnce, false, bytes) => Some(r),
        };
        match sent {
            Some(Ok(())) => true,
            Some(Err(error)) => {
                warn!(%error, "mqtt client refused a publish");
                self.conn.lock().fifo.retain(|&i| i != idx);
                true
            }
            None => {
                self.conn.lock().fifo.retain(|&i| i != idx);
                false
            }
        }
    }
}

pub(super) fn body_bytes(p: &Payload) -> Vec<u8> {
    mqtt::encode_payload(p)
}
