//! `/home`'s list of notifications: loaded from the inbox page by page,
//! kept current by the stream (new notifications, and read state changed
//! in another tab or on another device through the `inbox` event).

use leptos::prelude::*;

use super::clock;
use super::unread::unread;
use crate::demo::Notification;
use crate::inbox_api::{PAGE_DEFAULT, list_inbox, mark_all_read, mark_read};
use crate::sse::{InboxId, InboxItem, InboxSummary, RawEvent, SseEvent, SseHandle, StreamReset};

/// One line of the list.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    /// Stored notifications sort by id; live-only ones (no id) above them,
    /// in arrival order.
    key: i64,
    id: Option<InboxId>,
    from: String,
    text: String,
    at: u64,
    read: bool,
}

impl Row {
    fn stored(item: &InboxItem) -> Row {
        let (from, text, at) = match serde_json::from_str::<Notification>(&item.payload) {
            Ok(n) if item.event == Notification::NAME => {
                (n.from.unwrap_or_default(), n.message, n.sent_at)
            }
            _ => (
                item.event.clone(),
                item.payload.clone(),
                item.created_at.max(0) as u64,
            ),
        };
        Row {
            key: item.id.0,
            id: Some(item.id),
            from,
            text,
            at,
            read: item.read_at.is_some(),
        }
    }
}

/// Adds rows not yet listed, newest first.
fn merge(rows: &mut Vec<Row>, new: impl IntoIterator<Item = Row>) {
    for row in new {
        let known = row.id.is_some() && rows.iter().any(|r| r.id == row.id);
        if !known {
            rows.push(row);
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.key));
}

/// Applies a read-state change reported by the server.
fn apply(rows: &mut [Row], summary: &InboxSummary) {
    for row in rows.iter_mut() {
        let Some(id) = row.id else { continue };
        if summary.read.contains(&id) || summary.read_upto.is_some_and(|upto| id <= upto) {
            row.read = true;
        }
    }
}

#[component]
pub fn InboxList(sse: SseHandle) -> impl IntoView {
    let rows = RwSignal::new(Vec::<Row>::new());
    let older = RwSignal::new(None::<InboxId>);
    let error = RwSignal::new(None::<String>);
    let count = RwSignal::from(unread());
    let live_key = StoredValue::new(i64::MAX / 2);
    // Unread events that follow a stream's opening summary: already in its
    // count. Stored notifications after them are new, and count.
    let replayed = StoredValue::new(0u64);

    // The first page; again after an `sse-reset` (the stream lost its
    // place, so the list is refetched rather than trusted).
    let load = move |before: Option<InboxId>| {
        leptos::task::spawn_local(async move {
            match list_inbox(before, Some(PAGE_DEFAULT)).await {
                Ok(page) => {
                    error.set(None);
                    // The stream's count is newer, once there is one.
                    if count.get_untracked().is_none() {
                        count.set(Some(page.unread));
                    }
                    if before.is_none() || older.get_untracked().is_some() {
                        older.set(page.next_before);
                    }
                    rows.update(|r| merge(r, page.items.iter().map(Row::stored)));
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    #[cfg(feature = "hydrate")]
    load(None);
    // Unless the stream resumed every stored notification it missed (they
    // follow the reset, with an `inbox` summary): then nothing here is
    // stale, and nothing is fetched.
    sse.add_event_listener(StreamReset::EVENT, move |raw: &RawEvent| {
        let complete = serde_json::from_str::<StreamReset>(&raw.data)
            .is_ok_and(|reset| reset.stored_complete());
        if !complete {
            load(None);
        }
    });
    // Every stream opens with `connected`: what an earlier stream's
    // summary announced no longer follows.
    sse.add_event_listener("connected", move |_| replayed.set_value(0));

    sse.add_event_listener(Notification::NAME, move |raw: &RawEvent| {
        let Ok(n) = serde_json::from_str::<Notification>(&raw.data) else {
            return;
        };
        let id = raw.id.as_deref().and_then(InboxId::from_event_id);
        let key = match id {
            Some(id) => id.0,
            None => {
                let key = live_key.get_value() + 1;
                live_key.set_value(key);
                key
            }
        };
        if id.is_some() {
            let already = replayed.get_value();
            if already > 0 {
                replayed.set_value(already - 1);
            } else if !rows.with_untracked(|r| r.iter().any(|row| row.id == id)) {
                count.update(|n| *n = Some(n.unwrap_or(0) + 1));
            }
        }
        let row = Row {
            key,
            id,
            from: n.from.unwrap_or_default(),
            text: n.message,
            at: n.sent_at,
            read: false,
        };
        rows.update(|r| merge(r, [row]));
    });
    sse.add_event_listener(InboxSummary::EVENT, move |raw: &RawEvent| {
        if let Ok(summary) = serde_json::from_str::<InboxSummary>(&raw.data) {
            count.set(Some(summary.unread));
            replayed.set_value(summary.replayed);
            rows.update(|r| apply(r, &summary));
        }
    });

    let report = move |result: Result<InboxSummary, crate::error::AppError>| match result {
        Ok(summary) => {
            count.set(Some(summary.unread));
            rows.update(|r| apply(r, &summary));
        }
        Err(e) => error.set(Some(e.message)),
    };
    let read_one = move |id: InboxId| {
        leptos::task::spawn_local(async move { report(mark_read(vec![id]).await) });
    };
    let read_all = move |_| {
        let upto = rows.with_untracked(|r| r.iter().filter_map(|row| row.id).max());
        leptos::task::spawn_local(async move { report(mark_all_read(upto).await) });
    };
    let load_older = move |_| load(older.get_untracked());

    view! {
        <section class="card received" aria-labelledby="received-title">
            <div class="received-head">
                <h2 id="received-title">
                    "Inbox "
                    <span class="muted" data-testid="unread">
                        {move || count.get().map(|n| format!("({n} unread)")).unwrap_or_default()}
                    </span>
                </h2>
                <button
                    type="button"
                    class="secondary"
                    on:click=read_all
                    disabled=move || count.get().unwrap_or(0) == 0
                >
                    "Mark all read"
                </button>
            </div>
            <p class="form-error" aria-live="polite">{move || error.get()}</p>
            <Show
                when=move || !rows.with(Vec::is_empty)
                fallback=|| view! { <p class="muted">"Nothing received yet."</p> }
            >
                <ol class="notifications" aria-label="Received notifications">
                    <For
                        each=move || rows.get()
                        key=|row| (row.key, row.read)
                        children=move |row| {
                            let id = row.id;
                            view! {
                                <li class=if row.read { "read" } else { "unread" }>
                                    <time>{clock(row.at)}</time>
                                    <span class="from">{row.from.clone()}</span>
                                    <span class="message">{row.text.clone()}</span>
                                    {match id {
                                        Some(id) if !row.read => {
                                            view! {
                                                <button
                                                    type="button"
                                                    class="link-button"
                                                    on:click=move |_| read_one(id)
                                                >
                                                    "Mark read"
                                                </button>
                                            }
                                                .into_any()
                                        }
                                        _ => ().into_any(),
                                    }}
                                </li>
                            }
                        }
                    />
                </ol>
            </Show>
            <Show when=move || older.get().is_some()>
                <button type="button" class="secondary" on:click=load_older>
                    "Load older"
                </button>
            </Show>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: i64, id: Option<i64>) -> Row {
        Row {
            key,
            id: id.map(InboxId),
            from: String::new(),
            text: String::new(),
            at: 0,
            read: false,
        }
    }

    #[test]
    fn rows_merge_once_each_newest_first() {
        let mut rows = vec![row(5, Some(5)), row(3, Some(3))];
        merge(&mut rows, [row(4, Some(4)), row(5, Some(5)), row(1, None)]);
        let keys: Vec<i64> = rows.iter().map(|r| r.key).collect();
        assert_eq!(keys, vec![5, 4, 3, 1]);
    }

    #[test]
    fn read_state_applies_by_id_and_watermark() {
        let mut rows = vec![row(5, Some(5)), row(3, Some(3)), row(2, Some(2))];
        apply(
            &mut rows,
            &InboxSummary {
                unread: 1,
                read: vec![InboxId(5)],
                read_upto: Some(InboxId(2)),
                replayed: 0,
            },
        );
        let read: Vec<bool> = rows.iter().map(|r| r.read).collect();
        assert_eq!(read, vec![true, false, true]);
    }
}
