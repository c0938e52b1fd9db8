//! Acknowledging a page: from the console ("My pages"), the signed one-time link in the
//! message ([`links`]), or an SMS reply through the gateway ([`reply`]). Every way ends in
//! [`acknowledge_as`], which takes the escalation's row lock like a pass does.

use std::time::Duration;

use metrics::{counter, histogram};
use time::OffsetDateTime;
use tracing::info;
use warden_core::Timestamp;
use warden_core::oncall::Escalation;
use warden_store::Store;
use warden_telemetry as m;

use crate::{NotifyError, Oncall, links, record, reply};

/// How a page was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// "My pages" in the console.
    Console,
    /// The signed link in the message.
    Link,
    /// A reply to the SMS, through the gateway's inbound webhook.
    Sms,
}

impl Via {
    /// The name recorded in `pages.acked_via`, the history and the metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Console => "console",
            Via::Link => "link",
            Via::Sms => "sms",
        }
    }
}

/// What acknowledging did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// The incident's pages are acknowledged now; its escalation holds.
    Now { incident: i64 },
    /// They had been acknowledged already (a link works once): nothing changed.
    Already { incident: i64, at: OffsetDateTime },
}

/// Acknowledges page `page_id` for the person linked to console user `user_id`.
pub async fn acknowledge(
    store: &Store,
    page_id: i64,
    user_id: i64,
    now: OffsetDateTime,
) -> Result<Acked, NotifyError> {
    let person = store
        .person_of_user(user_id)
        .await?
        .ok_or(NotifyError::NotAPerson)?;
    acknowledge_as(store, page_id, Some(person), Via::Console, now).await
}

/// Acknowledges the page of a signed link's `token` (see [`links`]) for the person it was
/// sent to.
pub async fn acknowledge_link(
    store: &Store,
    token: &str,
    now: OffsetDateTime,
) -> Result<Acked, NotifyError> {
    let key = links::key(store).await?;
    let page = links::verify(&key, token, now.unix_timestamp())?;
    acknowledge_as(store, page, None, Via::Link, now).await
}

/// What an SMS reply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The sender's page was acknowledged (or had been already).
    Acknowledged(Acked),
    /// The text is not an acknowledgement.
    NotUnderstood,
    /// No unacknowledged page of the last 24 hours went to that number (for that alarm).
    NoOpenPage,
}

/// Acts on an SMS reply `text` from `from`: `ACK` acknowledges the newest unacknowledged
/// page sent to that number in the last 24 hours, `ACK 42` the one for alarm 42. The
/// sender's number is the only identity an SMS has: the gateway's webhook token proves the
/// reply came through the gateway, and only a page sent to that number can be acknowledged.
pub async fn acknowledge_reply(
    store: &Store,
    from: &str,
    text: &str,
    now: OffsetDateTime,
) -> Result<Reply, NotifyError> {
    let reply::Parsed::Ack(reference) = reply::parse(text) else {
        counter!(m::PAGE_REPLIES, "outcome" => "not_understood").increment(1);
        return Ok(Reply::NotUnderstood);
    };
    let pages = store
        .unacknowledged_phone_pages(now - Duration::from_hours(24))
        .await?;
    let Some(page) = pages.iter().find(|p| {
        reply::same_number(&p.address, from) && reference.is_none_or(|r| r == p.incident_id)
    }) else {
        counter!(m::PAGE_REPLIES, "outcome" => "no_open_page").increment(1);
        return Ok(Reply::NoOpenPage);
    };
    let acked = acknowledge_as(store, page.id, Some(page.person_id), Via::Sms, now).await?;
    counter!(m::PAGE_REPLIES, "outcome" => "acknowledged").increment(1);
    Ok(Reply::Acknowledged(acked))
}

/// Acknowledges page `page_id` through `via` (for `person`, when given, who must be the one
/// paged): the incident's escalation stops paging until its acknowledgement timeout, and
/// every page of the incident reads acknowledged, with who, how and when. Waits for a pass
/// holding the escalation, so a page that pass is about to send is either sent before the
/// acknowledgement or never.
pub async fn acknowledge_as(
    store: &Store,
    page_id: i64,
    person: Option<i64>,
    via: Via,
    now: OffsetDateTime,
) -> Result<Acked, NotifyError> {
    let oncall = Oncall::from_config(store.oncall_config(now).await?);
    let mut tx = store.begin_oncall().await?;
    let page = tx
        .page(page_id)
        .await?
        .ok_or(NotifyError::UnknownPage(page_id))?;
    let incident = page.incident_id;
    if person.is_some_and(|p| p != page.person_id) {
        return Err(NotifyError::NotYours(page_id));
    }
    if let Some(at) = page.acked_at {
        return Ok(Acked::Already { incident, at });
    }
    let person = page.person_id;
    if let Some(due) = tx.lock_escalation(incident).await? {
        let chain = oncall
            .chains
            .get(&due.chain_id)
            .ok_or(NotifyError::BadChain(due.chain_id))?;
        let mut esc: Escalation = serde_json::from_value(due.state)
            .map_err(|e| NotifyError::BadState(incident, e.to_string()))?;
        let actions = esc.acknowledge(chain, person, Timestamp::from(now));
        record(&mut tx, &oncall, &[], incident, &actions, now, Some(via)).await?;
        let state = serde_json::to_value(&esc)
            .map_err(|e| NotifyError::BadState(incident, e.to_string()))?;
        tx.save_escalation(incident, &state, esc.due().map(Timestamp::to_offset))
            .await?;
    }
    tx.acknowledge_pages(incident, person, via.as_str(), now)
        .await?;
    tx.commit().await?;
    counter!(m::PAGES_ACKNOWLEDGED, "via" => via.as_str()).increment(1);
    histogram!(m::PAGE_TO_ACK).record((now - page.created_at).as_seconds_f64().max(0.0));
    info!(
        page = page_id,
        incident,
        person,
        via = via.as_str(),
        "page acknowledged"
    );
    Ok(Acked::Now { incident })
}
