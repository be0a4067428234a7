//! The Web Lock that says which tab holds a shared stream (browser only).
//!
//! A tab waits for the lock in the browser's queue; the browser grants it
//! to one tab at a time and takes it back when that tab closes or
//! crashes. A follower whose leader went silent takes it (`steal`); the
//! leader it was taken from finds its lock request rejected and steps
//! down. Each request carries a generation, so that the settling of a
//! request this tab has since replaced is ignored.

use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::AbortController;

use super::event_source::{StreamCell, lead, now_ms, step_down};

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks` (web-sys has it only behind its unstable flag).
    type LockManager;

    /// Rejects where locks are not allowed (an opaque origin, site data
    /// blocked); `catch` for a browser that throws instead.
    #[wasm_bindgen(method, catch)]
    fn request(
        this: &LockManager,
        name: &str,
        options: &Object,
        granted: &Function,
    ) -> Result<Promise, JsValue>;
}

/// How to ask for the lock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Wait in the queue.
    Wait,
    /// Take it from the tab holding it.
    Steal,
}

/// `navigator.locks`, if this browser and context have it.
fn lock_manager() -> Option<LockManager> {
    let navigator = web_sys::window()?.navigator();
    let locks = Reflect::get(&navigator, &"locks".into()).ok()?;
    locks.is_object().then(|| locks.unchecked_into())
}

pub fn available() -> bool {
    lock_manager().is_some()
}

/// Asks for the lock; when granted, this handle leads. False if the
/// request could not be made at all.
pub fn request(cell: &StreamCell, ask: Ask) -> bool {
    let Some(locks) = lock_manager() else {
        return false;
    };
    let key = cell.borrow().options.share_key();
    let options = Object::new();
    // A steal cannot be withdrawn (the API refuses `signal` with it).
    let abort = match ask {
        Ask::Wait => {
            let Ok(abort) = AbortController::new() else {
                return false;
            };
            if Reflect::set(&options, &"signal".into(), &abort.signal()).is_err() {
                return false;
            }
            Some(abort)
        }
        Ask::Steal => {
            if Reflect::set(&options, &"steal".into(), &JsValue::TRUE).is_err() {
                return false;
            }
            None
        }
    };
    let generation = match cell.borrow().link.as_ref() {
        Some(link) => link.lock.generation.wrapping_add(1),
        None => return false,
    };

    let weak = Rc::downgrade(cell);
    let granted = Closure::<dyn FnMut(JsValue) -> Promise>::new(move |_lock: JsValue| {
        let give_back = || Promise::resolve(&JsValue::UNDEFINED);
        let Some(cell) = weak.upgrade() else {
            return give_back();
        };
        if cell.borrow().closed || current(&cell) != Some(generation) {
            return give_back();
        }
        // Held until `give_back` resolves it, or the tab goes.
        let mut resolve = None;
        let held = Promise::new(&mut |done, _| resolve = Some(done));
        if let Some(link) = cell.borrow_mut().link.as_mut() {
            link.lock.release = resolve;
            link.lock.abort = None;
        }
        lead(&cell);
        held
    });
    // Made before the request it replaces is withdrawn: if it cannot be
    // made, this tab keeps its place in the queue.
    let Ok(waiting) = locks.request(&key, &options, granted.as_ref().unchecked_ref()) else {
        return false;
    };
    if let Some(link) = cell.borrow_mut().link.as_mut() {
        // The request this one replaces: withdrawn (it settles unheeded).
        if let Some(old) = link.lock.abort.take() {
            old.abort();
        }
        link.lock.generation = generation;
        link.lock.abort = abort;
    }
    // Settles when the lock is given back, or rejects when the request is
    // withdrawn, refused or stolen: until then the browser may call
    // `granted`, so it lives as long.
    let weak = Rc::downgrade(cell);
    leptos::task::spawn_local(async move {
        let rejected = wasm_bindgen_futures::JsFuture::from(waiting).await.is_err();
        drop(granted);
        let Some(cell) = weak.upgrade() else { return };
        if !rejected || cell.borrow().closed || current(&cell) != Some(generation) {
            return;
        }
        if cell.borrow().leader {
            // Taken by a tab that found this one silent: follow again,
            // giving the new leader time to be heard.
            if let Some(link) = cell.borrow_mut().link.as_mut() {
                link.lock.release = None;
                link.watch.heard(now_ms());
            }
            step_down(&cell);
            request(&cell, Ask::Wait);
            cell.borrow().announce();
        } else if ask == Ask::Steal {
            // Another tab stole first: wait in the queue again.
            request(&cell, Ask::Wait);
        } else {
            // Refused (locks not allowed here): a stream of its own, as
            // where the browser has no locks at all.
            cell.borrow_mut().stop_sharing();
            lead(&cell);
        }
    });
    true
}

fn current(cell: &StreamCell) -> Option<u32> {
    cell.borrow().link.as_ref().map(|l| l.lock.generation)
}
